package logistics

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// A logistics snapshot is the projection's state at a journal position, so
// that a restart resumes following after it with every parcel as it was. Its
// bulk (the parcels, their scans and the interned strings) lives in side
// files of fixed-size runs of each array, chunks, and a snapshot writes only
// the chunks that changed since the last durable one: the parcels created
// and scanned since, which at the peak are the newest. The snapshot's own
// section is small: the regions, merchants and pending orders, the counts,
// and a reference (name, length, CRC-32C) to every chunk, so a chunk lost or
// damaged is refused at load, never read as another state.
//
// Section layout (varints as in encoding/binary): magic "FESTLG02" |
// uvarint parcels, uvarint scans, uvarint strings | a chunk reference for
// each chunk of parcels, then of scans, then of strings, in order (first, so
// that the runner's collection reads only them) | varint lastAt | uvarint
// n, n region strings | uvarint n, n × (merchant id, uvarint region) |
// uvarint n, n × (uvarint order id, uvarint origin, uvarint dest) for
// pending orders | 64 × (varint second, uvarint n) of the creation ring.
//
// Chunk layouts, little-endian fixed width so that a chunk encodes at memory
// speed: a parcel is u64 order id, i64 created at, i64 last at, u64 last
// scan, u16 origin, u16 dest, u8 status (37 bytes); a scan is i64 at, u64
// previous scan and status, u32 location, u32 code (24 bytes); a string is
// uvarint length and bytes. Counters, the stale count's minutes and the index
// by order are rebuilt on load.
const snapshotMagic = "FESTLG02"

// Elements per chunk: about a megabyte of each array.
const (
	parcelsPerChunk = 1 << 15
	scansPerChunk   = 1 << 16
	stringsPerChunk = 1 << 14
)

const (
	parcelBytes = 37
	scanBytes   = 24
)

// chunkTrack follows which chunks of one array changed since the last
// durable snapshot.
type chunkTrack struct {
	stored  []projection.ChunkRef // chunk i as the last durable snapshot holds it
	dirty   []uint64              // bit i: chunk i changed since
	written []projection.ChunkRef // what the last WriteSnapshot stored
}

func (c *chunkTrack) touch(i int) {
	for len(c.dirty) <= i/64 {
		c.dirty = append(c.dirty, 0)
	}
	c.dirty[i/64] |= 1 << (i % 64)
}

func (c *chunkTrack) changed(i int) bool {
	return i >= len(c.stored) || (i/64 < len(c.dirty) && c.dirty[i/64]&(1<<(i%64)) != 0)
}

// write stores each changed chunk of an array of n elements, size a chunk,
// encoded by encode, and returns the references of all its chunks.
func (c *chunkTrack) write(files projection.Files, kind string, at uint64, n, size int, encode func(b []byte, from, to int) []byte, buf *[]byte) error {
	chunks := (n + size - 1) / size
	c.written = make([]projection.ChunkRef, chunks)
	for i := range chunks {
		if !c.changed(i) {
			c.written[i] = c.stored[i]
			continue
		}
		*buf = encode((*buf)[:0], i*size, min(n, (i+1)*size))
		ref, err := projection.StoreChunk(files, fmt.Sprintf("lg-%s-%08d-%020d", kind, i, at), *buf)
		if err != nil {
			return fmt.Errorf("logistics snapshot: %w", err)
		}
		c.written[i] = ref
	}
	return nil
}

// durable makes the last written chunks the stored ones.
func (c *chunkTrack) durable() {
	c.stored, c.written = c.written, nil
	clear(c.dirty)
}

// WriteSnapshot implements projection.Projection. The runner calls it
// between records, on the goroutine that applies them, and SnapshotDurable
// before the next record: until then the chunks written count as not
// stored, so a snapshot that never became durable is written again whole
// by the next.
func (l *Logistics) WriteSnapshot(w io.Writer, files projection.Files) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	st := l.st
	var buf []byte
	if err := st.parcelChunks.write(files, "parcels", l.applied, st.parcels.len(), parcelsPerChunk, st.appendParcels, &buf); err != nil {
		return err
	}
	if err := st.scanChunks.write(files, "scans", l.applied, st.scanLog.len(), scansPerChunk, st.appendScans, &buf); err != nil {
		return err
	}
	if err := st.strChunks.write(files, "strings", l.applied, len(st.strs), stringsPerChunk, st.appendStrings, &buf); err != nil {
		return err
	}
	s := &snapWriter{w: w, b: make([]byte, 0, 2*snapFlushBytes)}
	s.b = append(s.b, snapshotMagic...)
	s.uvarint(uint64(st.parcels.len()))
	s.uvarint(uint64(st.scanLog.len()))
	s.uvarint(uint64(len(st.strs)))
	for _, c := range [...]*chunkTrack{&st.parcelChunks, &st.scanChunks, &st.strChunks} {
		for _, ref := range c.written {
			s.b = projection.AppendChunkRef(s.b, ref)
			s.maybeFlush()
		}
	}
	s.varint(st.lastAt)
	if st.places == nil {
		st.places = st.appendPlaces(nil)
	}
	s.flush()
	if s.err == nil {
		_, s.err = s.w.Write(st.places)
	}
	s.uvarint(uint64(st.pending.Len()))
	for id, rt := range st.pending.All() {
		s.uvarint(uint64(id))
		s.uvarint(uint64(rt.origin))
		s.uvarint(uint64(rt.dest))
		s.maybeFlush()
	}
	for _, b := range st.created {
		s.varint(b.second)
		s.uvarint(b.n)
	}
	s.flush()
	if s.err != nil {
		return fmt.Errorf("write logistics snapshot: %w", s.err)
	}
	l.written, l.writtenAt = true, l.applied
	return nil
}

// SnapshotDurable implements projection.Projection: the chunks of the last
// WriteSnapshot need not be written again.
func (l *Logistics) SnapshotDurable() {
	if !l.written {
		panic("logistics: SnapshotDurable without a WriteSnapshot")
	}
	if l.applied != l.writtenAt {
		panic(fmt.Sprintf("logistics: snapshot written at %d made durable at %d: records were applied in between", l.writtenAt, l.applied))
	}
	l.written = false
	st := l.st
	for _, c := range [...]*chunkTrack{&st.parcelChunks, &st.scanChunks, &st.strChunks} {
		c.durable()
	}
}

// appendParcels and appendScans grow b once for the run and fill it in
// place, element after element of the run's chunk: at the peak a snapshot
// encodes the million or so parcels created since the last, and an append
// per field was most of that.
// appendPlaces appends the regions and the merchants with theirs, the
// merchants in the order of their numbers, which a load gives them again.
func (st *state) appendPlaces(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(st.regions)))
	for _, r := range st.regions {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	b = binary.AppendUvarint(b, uint64(len(st.merchantIDs)))
	for n, id := range st.merchantIDs {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
		b = binary.AppendUvarint(b, uint64(st.merchantRegion[n]))
	}
	return b
}

func (st *state) appendParcels(b []byte, from, to int) []byte {
	run := st.parcels.run(from, to)
	start := len(b)
	b = slices.Grow(b, len(run)*parcelBytes)[:start+len(run)*parcelBytes]
	out := b[start:]
	for i := range run {
		p, e := &run[i], out[i*parcelBytes:(i+1)*parcelBytes]
		binary.LittleEndian.PutUint64(e[0:], uint64(p.order))
		binary.LittleEndian.PutUint64(e[8:], uint64(p.createdAt))
		binary.LittleEndian.PutUint64(e[16:], uint64(p.lastAt))
		binary.LittleEndian.PutUint64(e[24:], p.lastScan)
		binary.LittleEndian.PutUint16(e[32:], p.origin)
		binary.LittleEndian.PutUint16(e[34:], p.dest)
		e[36] = byte(p.status)
	}
	return b
}

func (st *state) appendScans(b []byte, from, to int) []byte {
	run := st.scanLog.run(from, to)
	start := len(b)
	b = slices.Grow(b, len(run)*scanBytes)[:start+len(run)*scanBytes]
	out := b[start:]
	for i := range run {
		s, e := &run[i], out[i*scanBytes:(i+1)*scanBytes]
		binary.LittleEndian.PutUint64(e[0:], uint64(s.at))
		binary.LittleEndian.PutUint64(e[8:], s.prevStatus)
		binary.LittleEndian.PutUint32(e[16:], s.location)
		binary.LittleEndian.PutUint32(e[20:], s.code)
	}
	return b
}

func (st *state) appendStrings(b []byte, from, to int) []byte {
	for _, v := range st.strs[from:to] {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// SnapshotChunks implements projection.ChunkNamer.
func (l *Logistics) SnapshotChunks(section io.Reader) ([]string, error) {
	d := &snapReader{r: bufio.NewReaderSize(section, 1<<16)}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(d.r, magic); err != nil {
		return nil, fmt.Errorf("%w: magic: %v", ErrBadSnapshot, err)
	}
	switch string(magic) {
	case snapshotMagicV1:
		return nil, nil
	case snapshotMagic:
	default:
		// Another layout (a newer fest's, after a downgrade): its files are
		// unknown, so none may be collected on its account.
		return nil, fmt.Errorf("%w: magic %q", ErrBadSnapshot, magic)
	}
	_, refs := decodeChunkRefs(d)
	if d.err != nil {
		return nil, d.err
	}
	names := make([]string, 0, len(refs))
	for _, r := range refs {
		names = append(names, r.Name)
	}
	return names, nil
}

// StageSnapshot implements projection.Projection: it reads and checks a
// whole snapshot, its chunks included, without changing what readers see.
func (l *Logistics) StageSnapshot(r io.Reader, pos uint64, files projection.Files) (projection.Staged, error) {
	d := &snapReader{r: bufio.NewReaderSize(r, 1<<16)}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(d.r, magic); err != nil {
		return nil, fmt.Errorf("%w: at %d: magic %q: %v", ErrBadSnapshot, pos, magic, err)
	}
	var st *state
	switch string(magic) {
	case snapshotMagicV1:
		st = decodeStateV1(d)
	case snapshotMagic:
		var counts manifestCounts
		var refs []projection.ChunkRef
		st, counts, refs = decodeManifest(d)
		if d.err == nil {
			d.err = st.loadChunks(files, counts, refs)
		}
		if d.err == nil {
			if _, err := d.r.ReadByte(); err != io.EOF {
				d.fail("trailing bytes")
			}
		}
	default:
		return nil, fmt.Errorf("%w: at %d: magic %q", ErrBadSnapshot, pos, magic)
	}
	if d.err != nil {
		return nil, fmt.Errorf("logistics snapshot at %d: %w", pos, d.err)
	}
	return &staged{l: l, st: st, pos: pos}, nil
}

// manifestCounts are the lengths of the chunked arrays a manifest holds.
type manifestCounts struct{ parcels, scans, strs int }

// decodeManifest reads a FESTLG02 section after its magic: the arrays'
// lengths, the references of their chunks (parcels, then scans, then
// strings), then the state's head.
func decodeManifest(d *snapReader) (*state, manifestCounts, []projection.ChunkRef) {
	n, refs := decodeChunkRefs(d)
	st := decodeHead(d)
	for i := range st.created {
		st.created[i] = rateBucket{second: d.varint(), n: d.uvarint()}
	}
	return st, n, refs
}

// decodeChunkRefs reads the arrays' lengths and the chunk references that
// open a FESTLG02 section after its magic: all that SnapshotChunks needs.
func decodeChunkRefs(d *snapReader) (manifestCounts, []projection.ChunkRef) {
	n := manifestCounts{
		parcels: d.count(snapshotCountMax, "parcels"),
		scans:   d.count(snapshotCountMax, "scans"),
		strs:    d.count(snapshotCountMax, "strings"),
	}
	chunks := ceilDiv(n.parcels, parcelsPerChunk) + ceilDiv(n.scans, scansPerChunk) + ceilDiv(n.strs, stringsPerChunk)
	var refs []projection.ChunkRef
	for i := 0; i < chunks && d.err == nil; i++ {
		ref, err := projection.ReadChunkRef(d.r)
		if err != nil {
			d.fail("chunk %d of %d: %v", i, chunks, err)
			break
		}
		refs = append(refs, ref)
	}
	return n, refs
}

func ceilDiv(n, size int) int { return (n + size - 1) / size }

// loadChunks reads and checks every chunk of the manifest into st, then
// rebuilds the counters and the index; the chunks loaded are st's stored
// ones.
func (st *state) loadChunks(files projection.Files, n manifestCounts, refs []projection.ChunkRef) error {
	parts := [...]struct {
		track *chunkTrack
		count int
		size  int
		load  func(data []byte, from, to int) error
	}{
		{&st.strChunks, n.strs, stringsPerChunk, st.loadStrings},
		{&st.scanChunks, n.scans, scansPerChunk, st.loadScans},
		{&st.parcelChunks, n.parcels, parcelsPerChunk, st.loadParcels},
	}
	// The references are in the order parcels, scans, strings; strings and
	// scans load first, so that each parcel and scan is checked against
	// what it refers to.
	offsets := [...]int{ceilDiv(n.parcels, parcelsPerChunk) + ceilDiv(n.scans, scansPerChunk), ceilDiv(n.parcels, parcelsPerChunk), 0}
	st.strs, st.strIndex = st.strs[:0], map[string]uint32{}
	for k, p := range parts {
		chunks := ceilDiv(p.count, p.size)
		p.track.stored = make([]projection.ChunkRef, chunks)
		for i := range chunks {
			ref := refs[offsets[k]+i]
			data, err := projection.LoadChunk(files, ref)
			switch {
			case err != nil && projection.ChunkDamaged(err):
				return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
			case err != nil:
				return fmt.Errorf("load logistics snapshot: %w", err)
			}
			if err := p.load(data, i*p.size, min(p.count, (i+1)*p.size)); err != nil {
				return fmt.Errorf("%w: chunk %s: %w", ErrBadSnapshot, ref.Name, err)
			}
			p.track.stored[i] = ref
		}
	}
	st.parcelChunks.dirty, st.scanChunks.dirty, st.strChunks.dirty = nil, nil, nil
	st.scans = uint64(st.scanLog.len()) // every scan is in the log once
	if len(st.strs) == 0 || st.strs[0] != "" {
		return fmt.Errorf("%w: string 0 is not empty", ErrBadSnapshot)
	}
	return nil
}

func (st *state) loadStrings(data []byte, from, to int) error {
	for i := from; i < to; i++ {
		l, k := binary.Uvarint(data)
		if k <= 0 || l > stringBytesMax || uint64(len(data)-k) < l {
			return fmt.Errorf("string %d: bad length", i)
		}
		v := string(data[k : k+int(l)])
		data = data[k+int(l):]
		if len(st.strIndex) < internedMax {
			if _, dup := st.strIndex[v]; !dup {
				st.strIndex[v] = uint32(i)
			}
		}
		st.strs = append(st.strs, v)
	}
	if len(data) != 0 {
		return fmt.Errorf("%d bytes after string %d", len(data), to-1)
	}
	return nil
}

func (st *state) loadScans(data []byte, from, to int) error {
	if len(data) != (to-from)*scanBytes {
		return fmt.Errorf("%d bytes for %d scans", len(data), to-from)
	}
	for i := from; i < to; i++ {
		s := scan{
			at:         int64(binary.LittleEndian.Uint64(data)),
			prevStatus: binary.LittleEndian.Uint64(data[8:]),
			location:   binary.LittleEndian.Uint32(data[16:]),
			code:       binary.LittleEndian.Uint32(data[20:]),
		}
		data = data[scanBytes:]
		switch {
		case s.prev() > uint64(i):
			// A parcel's scans link backwards, to an earlier scan.
			return fmt.Errorf("scan %d links to scan %d", i, s.prev()-1)
		case s.status() < engine.ParcelPickedUp || int(s.status()) >= engine.ParcelStatusCount:
			return fmt.Errorf("scan %d: status %d", i, s.status())
		case uint64(s.location) >= uint64(len(st.strs)) || uint64(s.code) >= uint64(len(st.strs)):
			return fmt.Errorf("scan %d: string %d or %d of %d", i, s.location, s.code, len(st.strs))
		}
		st.scanLog.push(s)
	}
	return nil
}

func (st *state) loadParcels(data []byte, from, to int) error {
	if len(data) != (to-from)*parcelBytes {
		return fmt.Errorf("%d bytes for %d parcels", len(data), to-from)
	}
	for i := from; i < to; i++ {
		p := parcel{
			order:     engine.OrderID(binary.LittleEndian.Uint64(data)),
			createdAt: int64(binary.LittleEndian.Uint64(data[8:])),
			lastAt:    int64(binary.LittleEndian.Uint64(data[16:])),
			lastScan:  binary.LittleEndian.Uint64(data[24:]),
			origin:    binary.LittleEndian.Uint16(data[32:]),
			dest:      binary.LittleEndian.Uint16(data[34:]),
			status:    engine.ParcelStatus(data[36]),
		}
		data = data[parcelBytes:]
		switch {
		case p.order.Seq() == 0:
			return fmt.Errorf("parcel %d of order %v", i, p.order)
		case int(p.status) >= engine.ParcelStatusCount:
			return fmt.Errorf("parcel %d: status %d", i, p.status)
		case uint64(p.origin) >= uint64(len(st.regions)) || uint64(p.dest) >= uint64(len(st.regions)):
			return fmt.Errorf("parcel %d: region %d or %d of %d", i, p.origin, p.dest, len(st.regions))
		case p.lastScan > uint64(st.scanLog.len()):
			return fmt.Errorf("parcel %d: scan %d of %d", i, p.lastScan, st.scanLog.len())
		case p.lastScan != 0 && st.scanLog.at(int(p.lastScan-1)).status() != p.status:
			return fmt.Errorf("parcel %d: status %v, its last scan %v", i, p.status, st.scanLog.at(int(p.lastScan-1)).status())
		case p.lastScan == 0 && p.status != engine.ParcelCreated:
			return fmt.Errorf("parcel %d: status %v without a scan", i, p.status)
		}
		s := st.slot(p.order)
		switch {
		case s == nil:
			return fmt.Errorf("parcel %d of order %v, past the index", i, p.order)
		case *s != parcelIndexNone:
			return fmt.Errorf("order %v has two parcels", p.order)
		}
		st.parcels.push(p)
		*s = uint32(st.parcels.len())
		st.byStatus[p.status]++
		if !final(p.status) {
			st.active[p.lastAt/int64(staleBucket)]++
		}
	}
	return nil
}
