package orders

import (
	"fmt"
	"unsafe"
)

// refsPerBlock is the number of order entries in one block of a partition
// table: 8,192 entries of 32 bytes, 256 KiB.
const refsPerBlock = 8192

// refBlockBytes is the size of one block.
const refBlockBytes = refsPerBlock * int(unsafe.Sizeof(orderRef{}))

// partitionTable holds a partition's order entries in memory, in blocks
// mapped outside the Go heap like the arena (an entry holds no pointers).
// Orders 1 to base are in the cold tier; base+1 to end are in memory. A
// block whose orders are all cold is unmapped, so the table costs what the
// orders in memory need, not the festival's.
type partitionTable struct {
	base, end uint64
	// blocks[i] holds orders (first+i)*refsPerBlock+1 onwards.
	blocks [][]orderRef
	first  uint64
}

// memory is the number of the partition's orders in memory.
func (t *partitionTable) memory() int { return int(t.end - t.base) }

// at returns the entry of order seq, which must be in memory.
func (t *partitionTable) at(seq uint64) *orderRef {
	if seq <= t.base || seq > t.end {
		panic(fmt.Sprintf("orders: entry of order %d outside the orders in memory (%d, %d]", seq, t.base, t.end))
	}
	i := seq - 1
	return &t.blocks[i/refsPerBlock-t.first][i%refsPerBlock]
}

// oldest returns the entry of the i-th order in memory, oldest first.
func (t *partitionTable) oldest(i int) *orderRef { return t.at(t.base + 1 + uint64(i)) }

// push appends the entry of order end+1.
func (t *partitionTable) push(r orderRef) {
	if len(t.blocks) == 0 {
		t.first = t.end / refsPerBlock
	}
	if int(t.end/refsPerBlock-t.first) == len(t.blocks) {
		b := allocChunk(refBlockBytes)
		t.blocks = append(t.blocks, unsafe.Slice((*orderRef)(unsafe.Pointer(unsafe.SliceData(b[:refBlockBytes]))), refsPerBlock))
	}
	t.end++
	*t.at(t.end) = r
}

// dropOldest moves the oldest order in memory to the cold side of base,
// unmapping its block once every order of the block is cold.
func (t *partitionTable) dropOldest() {
	if t.base >= t.end {
		panic(fmt.Sprintf("orders: no order in memory to drop (base %d, end %d)", t.base, t.end))
	}
	*t.at(t.base + 1) = orderRef{}
	t.base++
	if t.base >= (t.first+1)*refsPerBlock {
		freeRefBlock(t.blocks[0])
		t.blocks[0] = nil
		t.blocks = t.blocks[1:]
		t.first++
		if len(t.blocks) == 0 {
			t.blocks = nil
		}
	}
}

// free unmaps every block.
func (t *partitionTable) free() {
	for i, b := range t.blocks {
		freeRefBlock(b)
		t.blocks[i] = nil
	}
	t.blocks = nil
}

func freeRefBlock(b []orderRef) {
	if b == nil {
		return
	}
	freeChunk(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), refBlockBytes))
}
