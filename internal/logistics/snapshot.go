package logistics

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// The first snapshot layout, FESTLG01, held the whole state in the
// snapshot's section and was rewritten whole every time: at the peak, with
// millions of parcels, that was a stall of the follower and a tenth of the
// read side's CPU. It is still read (an older fest's data directory); the
// current layout is in chunks.go.
//
// Layout (varints as in encoding/binary): magic "FESTLG01" | varint lastAt |
// uvarint n, n region strings | uvarint n, n × (merchant id, uvarint region)
// | uvarint n, n × (uvarint order id, uvarint origin, uvarint dest) for pending
// orders | uvarint n, n interned strings | 64 × (varint second, uvarint n)
// of the creation ring | uvarint n parcels, each: uvarint order id, varint
// created at, varint last scan minus created, uvarint origin, uvarint dest,
// u8 status, uvarint scans, each scan: varint at, uvarint location, uvarint
// code, u8 status. Counters and the index are rebuilt on load.
const snapshotMagicV1 = "FESTLG01"

// Bounds a snapshot's counts are checked against, so a damaged one cannot
// make a load allocate without bound.
const (
	snapshotCountMax = 1 << 40
	stringBytesMax   = 1 << 16
	scansPerParcel   = 1 << 20
)

// ErrBadSnapshot is returned by StageSnapshot for a snapshot that does not
// decode.
var ErrBadSnapshot = fmt.Errorf("logistics: %w", projection.ErrBadSnapshot)

// snapWriter encodes into a buffer written out every snapFlushBytes; its
// first write error is sticky.
type snapWriter struct {
	w   io.Writer
	b   []byte
	err error
}

const snapFlushBytes = 1 << 16

func (s *snapWriter) uvarint(v uint64) { s.b = binary.AppendUvarint(s.b, v) }
func (s *snapWriter) varint(v int64)   { s.b = binary.AppendVarint(s.b, v) }
func (s *snapWriter) byte1(v byte)     { s.b = append(s.b, v) }
func (s *snapWriter) string(v string) {
	s.uvarint(uint64(len(v)))
	s.b = append(s.b, v...)
	s.maybeFlush()
}

func (s *snapWriter) maybeFlush() {
	if len(s.b) >= snapFlushBytes {
		s.flush()
	}
}

func (s *snapWriter) flush() {
	if s.err == nil && len(s.b) > 0 {
		_, s.err = s.w.Write(s.b)
	}
	s.b = s.b[:0]
}

// snapReader reads a snapshot; its first error is sticky.
type snapReader struct {
	r   *bufio.Reader
	err error
}

func (d *snapReader) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrBadSnapshot}, args...)...)
	}
}

func (d *snapReader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(d.r)
	if err != nil {
		d.fail("uvarint: %v", err)
	}
	return v
}

func (d *snapReader) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(d.r)
	if err != nil {
		d.fail("varint: %v", err)
	}
	return v
}

func (d *snapReader) byte1() byte {
	if d.err != nil {
		return 0
	}
	b, err := d.r.ReadByte()
	if err != nil {
		d.fail("byte: %v", err)
	}
	return b
}

func (d *snapReader) count(max uint64, what string) int {
	n := d.uvarint()
	if n > max {
		d.fail("%d %s, more than %d", n, what, max)
		return 0
	}
	return int(n)
}

func (d *snapReader) string() string {
	n := d.count(stringBytesMax, "string bytes")
	if d.err != nil {
		return ""
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.fail("string: %v", err)
	}
	return string(b)
}

// staged is a snapshot loaded to the side of the projection.
type staged struct {
	l   *Logistics
	st  *state
	pos uint64
}

// Install implements projection.Staged.
func (s *staged) Install() {
	s.l.mu.Lock()
	s.l.st = s.st
	s.l.applied = s.pos
	s.l.mu.Unlock()
}

// decodeHead reads the part both layouts share: the clock, the regions,
// the merchants and the pending orders.
func decodeHead(d *snapReader) *state {
	st := newState()
	st.lastAt = d.varint()
	st.regions, st.regionIndex = st.regions[:0], map[string]uint16{}
	for i, n := 0, d.count(regionsMax, "regions"); i < n && d.err == nil; i++ {
		r := d.string()
		st.regionIndex[r] = uint16(i)
		st.regions = append(st.regions, r)
	}
	if len(st.regions) == 0 || st.regions[0] != defaultMerchantRegion {
		d.fail("region 0 is not %q", defaultMerchantRegion)
	}
	regionOK := func(v uint64) uint16 { return d.regionOK(st, v) }
	for i, n := 0, d.count(snapshotCountMax, "merchants"); i < n && d.err == nil; i++ {
		id := d.string()
		r := regionOK(d.uvarint())
		if _, dup := st.merchants[id]; dup && d.err == nil {
			d.fail("merchant %q twice", id)
		}
		st.addMerchant(id, r)
	}
	for i, n := 0, d.count(snapshotCountMax, "pending orders"); i < n && d.err == nil; i++ {
		id := engine.OrderID(d.uvarint())
		rt := route{origin: regionOK(d.uvarint()), dest: regionOK(d.uvarint())}
		switch {
		case d.err != nil:
		case id.Seq() == 0:
			d.fail("pending order %v", id)
		case !st.pending.Put(id, rt):
			d.fail("pending order %v twice", id)
		}
	}
	return st
}

// regionOK checks a region number against the regions loaded.
func (d *snapReader) regionOK(st *state, v uint64) uint16 {
	if v >= uint64(len(st.regions)) {
		d.fail("region %d of %d", v, len(st.regions))
		return 0
	}
	return uint16(v)
}

// decodeStateV1 reads a whole-state snapshot of the first layout, which
// older fests wrote; the next snapshot writes every chunk.
func decodeStateV1(d *snapReader) *state {
	st := decodeHead(d)
	regionOK := func(v uint64) uint16 { return d.regionOK(st, v) }
	st.strs, st.strIndex = st.strs[:0], map[string]uint32{}
	for i, n := 0, d.count(math.MaxUint32, "strings"); i < n && d.err == nil; i++ {
		v := d.string()
		if len(st.strIndex) < internedMax {
			if _, dup := st.strIndex[v]; !dup {
				st.strIndex[v] = uint32(i)
			}
		}
		st.strs = append(st.strs, v)
	}
	if len(st.strs) == 0 || st.strs[0] != "" {
		d.fail("string 0 is not empty")
	}
	for i := range st.created {
		st.created[i] = rateBucket{second: d.varint(), n: d.uvarint()}
	}
	strOK := func(v uint64) uint32 {
		if v >= uint64(len(st.strs)) {
			d.fail("string %d of %d", v, len(st.strs))
			return 0
		}
		return uint32(v)
	}
	statusOK := func(b byte, min engine.ParcelStatus) engine.ParcelStatus {
		s := engine.ParcelStatus(b)
		if s < min || int(s) >= engine.ParcelStatusCount {
			d.fail("parcel status %d", b)
		}
		return s
	}
	for i, n := 0, d.count(snapshotCountMax, "parcels"); i < n && d.err == nil; i++ {
		id := engine.OrderID(d.uvarint())
		if d.err == nil && id.Seq() == 0 {
			d.fail("parcel of order %v", id)
		}
		p := parcel{createdAt: d.varint()}
		p.lastAt = p.createdAt + d.varint()
		p.origin, p.dest = regionOK(d.uvarint()), regionOK(d.uvarint())
		p.status = statusOK(d.byte1(), engine.ParcelCreated)
		scans := d.count(scansPerParcel, "scans")
		for j := 0; j < scans && d.err == nil; j++ {
			sc := scan{at: d.varint(), location: strOK(d.uvarint()), code: strOK(d.uvarint())}
			st.addScan(&p, sc, statusOK(d.byte1(), engine.ParcelPickedUp))
		}
		if d.err != nil {
			break
		}
		s := st.slot(id)
		if s == nil || *s != parcelIndexNone {
			d.fail("order %v: a second parcel, or past the index", id)
			break
		}
		st.parcels.push(p)
		*s = uint32(st.parcels.len())
		st.byStatus[p.status]++
		st.scans += uint64(scans)
		if !final(p.status) {
			st.active[p.lastAt/int64(staleBucket)]++
		}
	}
	if d.err == nil {
		if _, err := d.r.ReadByte(); err != io.EOF {
			d.fail("trailing bytes")
		}
	}
	return st
}
