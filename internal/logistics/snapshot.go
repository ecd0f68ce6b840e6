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

// A logistics snapshot is the projection's state at a journal position, so
// that a restart resumes following after it with every parcel as it was.
//
// Layout (varints as in encoding/binary): magic "FESTLG01" | varint lastAt |
// uvarint n, n region strings | uvarint n, n × (merchant id, uvarint region)
// | uvarint n, n × (u64 order id, uvarint origin, uvarint dest) for pending
// orders | uvarint n, n interned strings | 64 × (varint second, uvarint n)
// of the creation ring | uvarint n parcels, each: uvarint order id, varint
// created at, varint last scan minus created, uvarint origin, uvarint dest,
// u8 status, uvarint scans, each scan: varint at, uvarint location, uvarint
// code, u8 status. Counters and the index are rebuilt on load.
const snapshotMagic = "FESTLG01"

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

// WriteSnapshot implements projection.Projection. The runner calls it
// between records, on the goroutine that applies them.
func (l *Logistics) WriteSnapshot(w io.Writer, _ projection.Files) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	st := l.st
	s := &snapWriter{w: w, b: make([]byte, 0, 2*snapFlushBytes)}
	s.b = append(s.b, snapshotMagic...)
	s.varint(st.lastAt)
	s.uvarint(uint64(len(st.regions)))
	for _, r := range st.regions {
		s.string(r)
	}
	s.uvarint(uint64(len(st.merchants)))
	for id, n := range st.merchants {
		s.string(id)
		s.uvarint(uint64(st.merchantRegion[n]))
	}
	s.uvarint(uint64(st.pending.Len()))
	for id, rt := range st.pending.All() {
		s.uvarint(uint64(id))
		s.uvarint(uint64(rt.origin))
		s.uvarint(uint64(rt.dest))
		s.maybeFlush()
	}
	s.uvarint(uint64(len(st.strs)))
	for _, v := range st.strs {
		s.string(v)
	}
	for _, b := range st.created {
		s.varint(b.second)
		s.uvarint(b.n)
	}
	s.uvarint(uint64(len(st.parcels)))
	for p, ix := range st.index {
		for i, n := range ix {
			if n == parcelIndexNone {
				continue
			}
			pc := &st.parcels[n-1]
			s.uvarint(uint64(engine.OrderIDOf(p, uint64(i)+1)))
			s.varint(pc.createdAt)
			s.varint(pc.lastAt - pc.createdAt)
			s.uvarint(uint64(pc.origin))
			s.uvarint(uint64(pc.dest))
			s.byte1(byte(pc.status))
			scans := st.scansOf(pc)
			s.uvarint(uint64(len(scans)))
			for _, sc := range scans {
				s.varint(sc.at)
				s.uvarint(uint64(sc.location))
				s.uvarint(uint64(sc.code))
				s.byte1(byte(sc.status()))
			}
			s.maybeFlush()
		}
	}
	s.flush()
	if s.err != nil {
		return fmt.Errorf("write logistics snapshot: %w", s.err)
	}
	return nil
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
	l  *Logistics
	st *state
}

// Install implements projection.Staged.
func (s *staged) Install() {
	s.l.mu.Lock()
	s.l.st = s.st
	s.l.mu.Unlock()
}

// StageSnapshot implements projection.Projection: it reads and checks a
// whole snapshot without changing what readers see.
func (l *Logistics) StageSnapshot(r io.Reader, pos uint64, _ projection.Files) (projection.Staged, error) {
	d := &snapReader{r: bufio.NewReaderSize(r, 1<<16)}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(d.r, magic); err != nil || string(magic) != snapshotMagic {
		return nil, fmt.Errorf("%w: at %d: magic %q: %v", ErrBadSnapshot, pos, magic, err)
	}
	st := decodeState(d)
	if d.err != nil {
		return nil, fmt.Errorf("logistics snapshot at %d: %w", pos, d.err)
	}
	return &staged{l: l, st: st}, nil
}

func decodeState(d *snapReader) *state {
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
	regionOK := func(v uint64) uint16 {
		if v >= uint64(len(st.regions)) {
			d.fail("region %d of %d", v, len(st.regions))
			return 0
		}
		return uint16(v)
	}
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
		if !st.pending.Put(id, route{origin: regionOK(d.uvarint()), dest: regionOK(d.uvarint())}) && d.err == nil {
			d.fail("pending order %v twice", id)
		}
	}
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
		if d.err == nil && (id.Seq() == 0 || id.Partition() >= partitionsMax) {
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
		if *s != parcelIndexNone {
			d.fail("order %v has two parcels", id)
			break
		}
		st.parcels = append(st.parcels, p)
		*s = uint32(len(st.parcels))
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
