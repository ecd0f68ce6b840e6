package gmv

import (
	"fmt"
	"strings"
	"unsafe"
)

// skuIDs holds the SKUs' ids, row after row, in one byte arena: no pointer
// per SKU for the collector to mark and no allocation per SKU (a map by id
// took about 50 bytes a SKU and was most of the projection's cost of a
// catalog import). Bytes are only ever appended, so a string aliasing them
// stays valid.
type skuIDs struct {
	bytes []byte
	ends  []uint32 // ends[r] is the end of row r's id in bytes
}

func (ids *skuIDs) add(id string) {
	if len(ids.bytes)+len(id) > skuIDBytesMax {
		panic(fmt.Sprintf("gmv: sku ids past %d bytes", uint64(skuIDBytesMax)))
	}
	ids.bytes = append(ids.bytes, id...)
	ids.ends = append(ids.ends, uint32(len(ids.bytes)))
}

// at returns row r's id, aliasing the arena.
func (ids *skuIDs) at(r int32) string {
	start := uint32(0)
	if r > 0 {
		start = ids.ends[r-1]
	}
	end := ids.ends[r]
	if start == end {
		return ""
	}
	return unsafe.String(&ids.bytes[start], int(end-start))
}

// skuIDBytesMax bounds the arena so that its offsets fit in 32 bits: 4
// GiB of ids, some 400 million SKUs.
const skuIDBytesMax = 1<<32 - 1

// findSKU returns the row of SKU id, which the engine keeps in slot of
// partition, or false for a new SKU.
//
// The engine gives a SKU id one slot for ever (a SKU never moves between
// merchants, whose partition it is in, and is never removed), and the
// slot's SKU event is the first this projection sees of it, so an empty
// slot is a new SKU and a full one holds it: an array read, not a hash of
// the id. The slot decides whenever it is in bounds and empty or holds id,
// whether or not the index by id is on, so that the rows never depend on
// when the index was built (in a cluster one id may name a SKU in each of
// two partitions: two rows, each found by its slot). Only events that do
// not keep to that (another id in the slot, a slot past the engine's
// bounds: hand-written ones in tests) are looked up by id, which turns the
// index on; it is kept from then on.
func (st *state) findSKU(id string, partition int, slot uint32) (int32, bool) {
	if slotInBounds(partition, slot) {
		r := st.slotRow(partition, slot)
		if r < 0 {
			return -1, false
		}
		if st.skuIDs.at(r) == id {
			return r, true
		}
	}
	return st.skuByLineID(id)
}

// skuByLineID finds a SKU by its id: an order line the engine did not
// resolve, or a SKU event findSKU cannot place by its slot. It builds the
// index by id on first use.
func (st *state) skuByLineID(id string) (int32, bool) {
	if st.skuByID == nil {
		st.indexSKUIDs()
	}
	r, ok := st.skuByID[id]
	return r, ok
}

// indexSKUIDs builds the index by id, kept from then on by addSKU.
func (st *state) indexSKUIDs() {
	st.skuByID = make(map[string]int32, len(st.skus))
	for r := range st.skus {
		st.skuByID[strings.Clone(st.skuIDs.at(int32(r)))] = int32(r)
	}
}

// addSKU appends a SKU row and indexes it.
func (st *state) addSKU(id string, info skuInfo) int32 {
	r := int32(len(st.skus))
	st.skus = append(st.skus, info)
	st.skuIDs.add(id)
	if st.skuByID != nil {
		st.skuByID[strings.Clone(id)] = r
	}
	st.indexSlot(r)
	return r
}

func slotInBounds(partition int, slot uint32) bool {
	return partition >= 0 && partition < partitionsMax && slot < skuSlotsMax
}

// slotRow returns the row of the SKU in slot of partition, -1 if none.
func (st *state) slotRow(partition int, slot uint32) int32 {
	if e := st.slotEntry(partition, slot); e != nil {
		return e.row - 1
	}
	return -1
}

// slotEntry returns the bySlot entry of slot of partition, nil past the
// slots indexed.
func (st *state) slotEntry(partition int, slot uint32) *slotEntry {
	if partition >= 0 && partition < len(st.bySlot) && slot < uint32(len(st.bySlot[partition])) {
		return &st.bySlot[partition][slot]
	}
	return nil
}
