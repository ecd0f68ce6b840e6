package gmv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// The snapshot holds the whole state: the catalog view, the breakdowns,
// the category cells, the pending attributions, the milestones and the
// series. The runner's snapshot file checksums its section; the decoder
// still checks every count, index and sum, so a damaged or foreign section
// is refused rather than installed.
//
// Layout: magic, an 8-byte little-endian body length, the body (varints).
// A FESTGV03 body is the whole state, in the order of encode; FESTGV03
// added the peak second at the end, and a FESTGV02 section still loads,
// its peak taken from the series it holds (the last hour).
//
// The catalog view (the rows' keys of the brands, merchants, categories,
// countries, industries and merchant kinds; the brands', merchants' and
// SKUs' fields) is most of the state, some 20 MB for the festival, and
// changes only with catalog events, which stop once the festival opens.
// So a FESTGV04 section keeps it in a side file, the catalog chunk
// (encodeCatalog), written only when a catalog event was applied since the
// last durable snapshot; its body is the chunk's reference (name, length,
// CRC-32C) first, so that the runner's collection reads only it, then the
// state without the catalog (encodeV4). A snapshot written without side
// files (Files nil) is a FESTGV03 section.
const (
	snapshotMagic   = "FESTGV04"
	snapshotMagicV3 = "FESTGV03"
	snapshotMagicV2 = "FESTGV02"
	// catalogChunkMagic starts a catalog chunk.
	catalogChunkMagic = "FESTGVC1"
	// snapshotBytesMax bounds the body a load reads: the catalog of the
	// festival (250,000 brands, 1.5 million merchants) and millions of
	// pending orders fit well under it.
	snapshotBytesMax = 8 << 30
	// stringBytesMax bounds a string of the section, as the journal does.
	stringBytesMax = 1 << 16
)

// catalogChunk is a catalog chunk written for a snapshot, and the
// catalogGen of the state it holds.
type catalogChunk struct {
	ref projection.ChunkRef
	gen uint64
	ok  bool // false: none
}

// WriteSnapshot implements projection.Projection. It writes the state as
// of the last Commit; the runner calls it between records, on the
// goroutine that applies them, and SnapshotDurable before the next record.
// Until then the catalog chunk written counts as not stored, so one that
// never became durable is written again by the next snapshot.
func (p *Projection) WriteSnapshot(w io.Writer, files projection.Files) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	st := p.st
	// The catalog chunks' bookkeeping is read and written by the runner's
	// goroutine only, never by the reads, so the read lock is enough.
	st.catalogWritten = catalogChunk{}
	magic := snapshotMagicV3
	var body []byte
	if p.bodyBytesHint == 0 {
		p.bodyBytesHint, p.catalogBytesHint = st.bodyBytesEstimate(), st.catalogBytesEstimate()
		if files == nil {
			p.bodyBytesHint += p.catalogBytesHint // the catalog is in the body
		}
	}
	if files == nil {
		body = st.encode(make([]byte, 0, p.bodyBytesHint))
	} else {
		c := st.catalogStored
		if !c.ok || c.gen != st.catalogGen {
			blob := st.encodeCatalog(make([]byte, 0, p.catalogBytesHint))
			p.catalogBytesHint = len(blob) + len(blob)/8
			name := fmt.Sprintf("gv-catalog-%020d-%d", st.position, st.catalogGen)
			ref, err := projection.StoreChunk(files, name, blob)
			if err != nil {
				return fmt.Errorf("write gmv snapshot: %w", err)
			}
			c = catalogChunk{ref: ref, gen: st.catalogGen, ok: true}
		}
		st.catalogWritten = c
		magic = snapshotMagic
		body = st.encodeV4(make([]byte, 0, p.bodyBytesHint), c.ref)
	}
	// The next body is about as long: allocating it whole at once saves
	// the copies of growing it.
	p.bodyBytesHint = len(body) + len(body)/8
	head := make([]byte, 0, len(magic)+8)
	head = append(head, magic...)
	head = binary.LittleEndian.AppendUint64(head, uint64(len(body)))
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("write gmv snapshot: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("write gmv snapshot: %w", err)
	}
	return nil
}

// SnapshotDurable implements projection.Projection: the catalog chunk of
// the last WriteSnapshot is stored, and later snapshots name it for as long
// as no catalog event is applied.
func (p *Projection) SnapshotDurable() {
	st := p.st
	if st.catalogWritten.ok {
		st.catalogStored = st.catalogWritten
	}
	st.catalogWritten = catalogChunk{}
}

// The runner lists a section's side files through ChunkNamer before it
// removes any.
var _ projection.ChunkNamer = (*Projection)(nil)

// SnapshotChunks implements projection.ChunkNamer: a FESTGV04 section
// names its catalog chunk; older ones name none.
func (p *Projection) SnapshotChunks(section io.Reader) ([]string, error) {
	br := bufio.NewReaderSize(section, 512)
	head := make([]byte, len(snapshotMagic)+8)
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, fmt.Errorf("%w: read header: %v", ErrBadSnapshot, err)
	}
	switch magic := string(head[:len(snapshotMagic)]); magic {
	case snapshotMagicV3, snapshotMagicV2:
		return nil, nil
	case snapshotMagic:
	default:
		// Another layout (a newer fest's, after a downgrade): its files are
		// unknown, so none may be collected on its account.
		return nil, fmt.Errorf("%w: magic %q", ErrBadSnapshot, magic)
	}
	ref, err := projection.ReadChunkRef(br)
	if err != nil {
		return nil, fmt.Errorf("%w: catalog chunk: %v", ErrBadSnapshot, err)
	}
	return []string{ref.Name}, nil
}

// staged is a state loaded from a snapshot, installed by Install.
type staged struct {
	p  *Projection
	st *state
}

// Install implements projection.Staged.
func (s *staged) Install() {
	if s.p.locked {
		panic("gmv: snapshot installed in the middle of a record")
	}
	s.p.mu.Lock()
	s.p.st = s.st
	s.p.aborted = false
	s.p.mu.Unlock()
}

// StageSnapshot implements projection.Projection: it reads exactly the
// section WriteSnapshot wrote, at position pos, and checks all of it.
func (p *Projection) StageSnapshot(r io.Reader, pos uint64, files projection.Files) (projection.Staged, error) {
	head := make([]byte, len(snapshotMagic)+8)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, fmt.Errorf("%w: read header: %v", ErrBadSnapshot, err)
	}
	magic := string(head[:len(snapshotMagic)])
	if magic != snapshotMagic && magic != snapshotMagicV3 && magic != snapshotMagicV2 {
		return nil, fmt.Errorf("%w: magic %q", ErrBadSnapshot, head[:len(snapshotMagic)])
	}
	n := binary.LittleEndian.Uint64(head[len(snapshotMagic):])
	if n > snapshotBytesMax {
		return nil, fmt.Errorf("%w: body of %d bytes, more than %d", ErrBadSnapshot, n, uint64(snapshotBytesMax))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("%w: read body: %v", ErrBadSnapshot, err)
	}
	var st *state
	var err error
	if magic == snapshotMagic {
		st, err = decodeStateV4(body, files)
	} else {
		st, err = decodeState(body, magic == snapshotMagicV3)
	}
	if err != nil {
		return nil, err
	}
	if st.position != pos {
		return nil, fmt.Errorf("%w: section at position %d in the snapshot at %d", ErrBadSnapshot, st.position, pos)
	}
	st.derive(&p.cfg)
	return &staged{p: p, st: st}, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encode appends the state's whole body, FESTGV03, to b.
func (st *state) encode(b []byte) []byte {
	b = st.encodeHead(b)
	for i := range st.dims {
		d := &st.dims[i]
		b = binary.AppendUvarint(b, uint64(len(d.keys)))
		for r, k := range d.keys {
			b = appendString(b, k)
			b = binary.AppendVarint(b, d.totals[r].gmv)
			b = binary.AppendUvarint(b, d.totals[r].orders)
		}
	}
	b = st.encodeCatalogInfo(b)
	return st.encodeTail(b)
}

func (st *state) encodeHead(b []byte) []byte {
	b = binary.AppendUvarint(b, st.position)
	b = binary.AppendVarint(b, st.at)
	b = binary.AppendVarint(b, st.gmv)
	b = binary.AppendUvarint(b, st.placed)
	return binary.AppendUvarint(b, st.paid)
}

// The first snapshot has no earlier one's lengths to size its buffers by,
// and grown by doubling from empty, its buffers of tens of megabytes at the
// peak were copied and cleared about twice over: a quarter of that
// snapshot's CPU. bodyBytesEstimate and catalogBytesEstimate are a little
// over what encodeTail and encodeCatalog (with encodeV4's rows) append, at
// the lengths of their varints for a festival's rows and amounts; a larger
// state only grows its buffer once more.
func (st *state) bodyBytesEstimate() int {
	n := 64 + 16*len(st.milestones) + 24*SeriesSeconds/8
	for i := range st.dims {
		n += 4 + 6*len(st.dims[i].totals)
		if !isCatalogDim(Dimension(i)) {
			for _, k := range st.dims[i].keys {
				n += 1 + len(k)
			}
		}
	}
	// A pending order: its id, five rows, its line count and one or two
	// lines of three rows and an amount.
	n += 8*st.cells.len() + 30*st.pending.Len()
	return n + n/8
}

func (st *state) catalogBytesEstimate() int {
	n := len(catalogChunkMagic) + 4*len(catalogDims)
	for _, dm := range catalogDims {
		for _, k := range st.dims[dm].keys {
			n += 1 + len(k)
		}
	}
	for i := range st.brands {
		n += 10 + len(st.brands[i].name)
	}
	for i := range st.merchants {
		n += 5 + len(st.merchants[i].name)
	}
	n += 12*len(st.skus) + len(st.skuIDs.bytes)
	return n + n/8
}

// encodeCatalogInfo appends what the state knows of its brands, merchants
// and SKUs besides their rows' keys.
func (st *state) encodeCatalogInfo(b []byte) []byte {
	for i := range st.brands {
		bi := &st.brands[i]
		b = appendString(b, bi.name)
		b = binary.AppendUvarint(b, uint64(bi.country))
		b = binary.AppendVarint(b, int64(bi.firstFestival))
		b = append(b, boolByte(bi.emerging))
		b = binary.AppendVarint(b, bi.lastYearGMV)
	}
	for i := range st.merchants {
		m := &st.merchants[i]
		b = appendString(b, m.name)
		b = binary.AppendUvarint(b, uint64(m.kind))
		b = binary.AppendUvarint(b, uint64(m.industry))
	}
	// SKUs in the order of their rows, so that a load rebuilds the same
	// rows.
	b = binary.AppendUvarint(b, uint64(len(st.skus)))
	for r, s := range st.skus {
		b = appendString(b, st.skuIDs.at(int32(r)))
		b = binary.AppendUvarint(b, uint64(s.brand))
		b = binary.AppendUvarint(b, uint64(s.category))
		b = binary.AppendUvarint(b, uint64(s.partition))
		b = binary.AppendUvarint(b, uint64(s.slot))
		b = binary.AppendUvarint(b, uint64(s.merchant+1))
	}
	return b
}

// encodeTail appends what follows the catalog: the category cells, the
// pending attributions, the milestones and the series.
func (st *state) encodeTail(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(st.cells.len()))
	for k, v := range st.cells.all() {
		b = binary.AppendUvarint(b, k>>32)
		b = binary.AppendUvarint(b, k&0xffffffff)
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(st.pending.Len()))
	for id, po := range st.pending.All() {
		b = binary.AppendUvarint(b, uint64(id))
		for _, v := range [...]int32{po.merchant, po.channel, po.region, po.industry, po.kind} {
			b = binary.AppendUvarint(b, uint64(v))
		}
		b = binary.AppendUvarint(b, uint64(po.lines))
		for _, l := range st.linesOf(id, &po) {
			b = binary.AppendUvarint(b, uint64(l.brand))
			b = binary.AppendUvarint(b, uint64(l.category))
			b = binary.AppendUvarint(b, uint64(l.country))
			b = binary.AppendVarint(b, l.amount)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(st.milestones)))
	for _, m := range st.milestones {
		b = append(b, byte(m.Kind))
		b = binary.AppendUvarint(b, uint64(st.dims[m.Kind].index[m.Key]))
		b = binary.AppendVarint(b, m.Threshold)
		b = binary.AppendVarint(b, m.ReachedAt)
	}
	b = binary.AppendUvarint(b, st.milestonesDropped)
	var used uint64
	for i := range st.series {
		if st.series[i].unix != 0 {
			used++
		}
	}
	b = binary.AppendUvarint(b, used)
	for i := range st.series {
		if s := &st.series[i]; s.unix != 0 {
			b = binary.AppendVarint(b, s.unix)
			b = binary.AppendUvarint(b, s.placed)
			b = binary.AppendUvarint(b, s.paid)
			b = binary.AppendVarint(b, s.gmv)
		}
	}
	b = binary.AppendVarint(b, st.peak.unix)
	b = binary.AppendUvarint(b, st.peak.placed)
	return b
}

// catalogDims are the dimensions whose rows only catalog events add, in
// the order of the catalog chunk; the others' (channels, buyer regions)
// come from orders, and their keys are in the section.
var catalogDims = [...]Dimension{DimBrand, DimMerchant, DimCategory, DimCountry, DimIndustry, DimKind}

func isCatalogDim(d Dimension) bool { return d != DimChannel && d != DimRegion }

// encodeCatalog appends the catalog chunk: its magic, the keys of the
// catalog dimensions' rows, then encodeCatalogInfo.
func (st *state) encodeCatalog(b []byte) []byte {
	b = append(b, catalogChunkMagic...)
	for _, dm := range catalogDims {
		keys := st.dims[dm].keys
		b = binary.AppendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			b = appendString(b, k)
		}
	}
	return st.encodeCatalogInfo(b)
}

// encodeV4 appends a FESTGV04 body: the catalog chunk's reference, the
// head, each dimension's rows (the key only of the rows that are not in
// the catalog chunk), then the tail.
func (st *state) encodeV4(b []byte, catalog projection.ChunkRef) []byte {
	b = projection.AppendChunkRef(b, catalog)
	b = st.encodeHead(b)
	for i := range st.dims {
		d := &st.dims[i]
		keys := isCatalogDim(Dimension(i))
		b = binary.AppendUvarint(b, uint64(len(d.keys)))
		for r := range d.totals {
			if !keys {
				b = appendString(b, d.keys[r])
			}
			b = binary.AppendVarint(b, d.totals[r].gmv)
			b = binary.AppendUvarint(b, d.totals[r].orders)
		}
	}
	return st.encodeTail(b)
}

// decodeStateV4 reads a FESTGV04 body and its catalog chunk, and checks
// them.
func decodeStateV4(body []byte, files projection.Files) (*state, error) {
	if files == nil {
		return nil, fmt.Errorf("%w: a section with a catalog chunk, staged without side files", ErrBadSnapshot)
	}
	rd := bytes.NewReader(body)
	br := bufio.NewReaderSize(rd, 512)
	ref, err := projection.ReadChunkRef(br)
	if err != nil {
		return nil, fmt.Errorf("%w: catalog chunk: %v", ErrBadSnapshot, err)
	}
	catalog, err := projection.LoadChunk(files, ref)
	switch {
	case err != nil && projection.ChunkDamaged(err):
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	case err != nil:
		return nil, fmt.Errorf("load gmv snapshot: %w", err)
	}
	st := newState()
	cd := &decoder{b: catalog}
	if !bytes.HasPrefix(catalog, []byte(catalogChunkMagic)) {
		return nil, fmt.Errorf("%w: catalog chunk %s: magic %q", ErrBadSnapshot, ref.Name, catalog[:min(len(catalog), len(catalogChunkMagic))])
	}
	cd.off = len(catalogChunkMagic)
	for _, dim := range catalogDims {
		dm := &st.dims[dim]
		n := cd.count("rows", 1)
		for r := 0; r < n && cd.err == nil; r++ {
			dm.addDecoded(cd, dim, cd.string())
		}
	}
	st.decodeCatalogInfo(cd)
	if cd.err == nil && cd.off != len(cd.b) {
		cd.fail("trailing bytes")
	}
	if cd.err != nil {
		return nil, fmt.Errorf("catalog chunk %s: %w", ref.Name, cd.err)
	}
	// The decoder of the body starts after the reference, which the
	// buffered reader read past.
	d := &decoder{b: body, off: len(body) - rd.Len() - br.Buffered()}
	st.decodeHead(d)
	for i := range st.dims {
		dm := &st.dims[i]
		keys := isCatalogDim(Dimension(i))
		n := d.count("rows", 2)
		if keys && n != len(dm.keys) && d.err == nil {
			d.fail(fmt.Sprintf("%d %v rows, the catalog chunk has %d", n, Dimension(i), len(dm.keys)))
		}
		for r := 0; r < n && d.err == nil; r++ {
			if !keys {
				dm.addDecoded(d, Dimension(i), d.string())
			}
			dm.decodeTotal(d, r)
		}
	}
	st, err = st.finishDecode(d, true)
	if err != nil {
		return nil, err
	}
	// The chunk is the one the snapshot names, so the next snapshot names
	// it too for as long as no catalog event is applied.
	st.catalogStored = catalogChunk{ref: ref, gen: st.catalogGen, ok: true}
	return st, nil
}

// linesOf returns all the lines of a pending order.
func (st *state) linesOf(id engine.OrderID, po *pendingOrder) []line {
	ls := po.inline[:min(int(po.lines), inlineLines)]
	if po.lines > inlineLines {
		ls = append(ls[:len(ls):len(ls)], st.wide[id]...)
	}
	return ls
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// decoder reads a body; its first error is sticky and names the offset.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrBadSnapshot, what, d.off)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) byte1() byte {
	if d.err != nil || d.off >= len(d.b) {
		d.fail("short byte")
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

// count reads a count of elements each at least minBytes long, so a
// damaged count cannot make the load allocate past the body's size.
func (d *decoder) count(what string, minBytes int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64((len(d.b)-d.off)/minBytes) {
		d.fail(what + " count past the end")
		return 0
	}
	return int(n)
}

// index reads a row number below n.
func (d *decoder) index(what string, n int) int32 {
	v := d.uvarint()
	if d.err == nil && v >= uint64(n) {
		d.fail(fmt.Sprintf("%s %d of %d", what, v, n))
		return 0
	}
	return int32(v)
}

// string reads a string, copied out of the body so that the state does
// not pin it.
func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > stringBytesMax || n > uint64(len(d.b)-d.off) {
		d.fail("bad string length")
		return ""
	}
	if n == 0 {
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

// decodeState reads a FESTGV03 body (FESTGV02 without hasPeak) and checks
// it.
func decodeState(body []byte, hasPeak bool) (*state, error) {
	d := &decoder{b: body}
	st := newState()
	st.decodeHead(d)
	for i := range st.dims {
		dm := &st.dims[i]
		n := d.count("rows", 3)
		for r := 0; r < n && d.err == nil; r++ {
			dm.addDecoded(d, Dimension(i), d.string())
			dm.decodeTotal(d, r)
		}
	}
	st.decodeCatalogInfo(d)
	return st.finishDecode(d, hasPeak)
}

func (st *state) decodeHead(d *decoder) {
	st.position = d.uvarint()
	st.at = d.varint()
	st.gmv = d.varint()
	st.placed = d.uvarint()
	st.paid = d.uvarint()
}

// addDecoded adds a row read from a snapshot, refusing a repeated key.
func (dm *dim) addDecoded(d *decoder, dimension Dimension, k string) {
	if _, dup := dm.index[k]; dup && d.err == nil {
		d.fail(fmt.Sprintf("%v row %q twice", dimension, k))
	}
	dm.add(k)
}

// decodeTotal reads row r's sums.
func (dm *dim) decodeTotal(d *decoder, r int) {
	dm.totals[r].gmv = d.varint()
	dm.totals[r].orders = d.uvarint()
	if dm.totals[r].gmv < 0 {
		d.fail("negative gmv")
	}
}

// decodeCatalogInfo reads what encodeCatalogInfo wrote, once the rows of
// every catalog dimension are read.
func (st *state) decodeCatalogInfo(d *decoder) {
	st.brands = make([]brandInfo, len(st.dims[DimBrand].keys))
	for i := range st.brands {
		bi := &st.brands[i]
		bi.name = d.string()
		bi.country = d.index("country", len(st.dims[DimCountry].keys))
		bi.firstFestival = int32(d.varint())
		bi.emerging = d.byte1() == 1
		bi.lastYearGMV = d.varint()
	}
	st.merchants = make([]merchantInfo, len(st.dims[DimMerchant].keys))
	for i := range st.merchants {
		m := &st.merchants[i]
		m.name = d.string()
		m.kind = d.index("kind", len(st.dims[DimKind].keys))
		m.industry = d.index("industry", len(st.dims[DimIndustry].keys))
		m.brand = -1
	}
	nBrands, nCats := len(st.brands), len(st.dims[DimCategory].keys)
	n := d.count("skus", 3)
	st.skus = make([]skuInfo, 0, n)
	for r := 0; r < n && d.err == nil; r++ {
		id := d.string()
		info := skuInfo{brand: d.index("sku brand", nBrands), category: d.index("sku category", nCats)}
		info.partition = d.index("sku partition", partitionsMax)
		info.slot = uint32(d.index("sku slot", skuSlotsMax))
		info.merchant = d.index("sku merchant", len(st.merchants)+1) - 1
		if d.err != nil {
			break
		}
		// A row in a slot already taken turns the index by id on
		// (findSKU), which then finds a repeated id.
		if _, dup := st.findSKU(id, int(info.partition), info.slot); dup {
			d.fail(fmt.Sprintf("sku %q twice", id))
			break
		}
		st.addSKU(id, info)
	}
	// The SKUs' copies of their brands' and merchants' fields are derived
	// at the first placement, once the whole state is read.
	st.skusStale = true
	st.leaders = make([]int32, nCats)
	st.leaderGMV = make([]int64, nCats)
	for i := range st.leaders {
		st.leaders[i] = -1
	}
}

// finishDecode reads what encodeTail wrote and checks the whole state.
func (st *state) finishDecode(d *decoder, hasPeak bool) (*state, error) {
	var cellsSum int64
	nBrands, nCats := len(st.brands), len(st.dims[DimCategory].keys)
	n := d.count("cells", 3)
	for i := 0; i < n && d.err == nil; i++ {
		b, c := d.index("cell brand", nBrands), d.index("cell category", nCats)
		v := d.varint()
		k := cellKey(b, c)
		if _, dup := st.cells.get(k); dup && d.err == nil {
			d.fail("cell twice")
		}
		if v < 0 {
			d.fail("negative cell")
		}
		st.cells.add(k, v)
		cellsSum += v
	}
	for k, v := range st.cells.all() {
		if d.err != nil {
			break // the indices may be the zeros of a failed read
		}
		b, c := int32(k>>32), int32(uint32(k))
		if lead := st.leaders[c]; lead < 0 || st.leads(b, v, lead, st.leaderGMV[c]) {
			st.leaders[c], st.leaderGMV[c] = b, v
		}
	}
	st.decodePending(d)
	n = d.count("milestones", 4)
	for i := 0; i < n && d.err == nil; i++ {
		kind := Dimension(d.byte1())
		if kind != DimBrand && kind != DimChannel {
			d.fail(fmt.Sprintf("milestone of %v", kind))
			break
		}
		row := d.index("milestone row", len(st.dims[kind].keys))
		if d.err != nil {
			break
		}
		m := Milestone{Kind: kind, Key: st.dims[kind].keys[row], Threshold: d.varint(), ReachedAt: d.varint()}
		k := milestoneKey{kind: kind, row: row, threshold: m.Threshold}
		if _, dup := st.reached[k]; dup && d.err == nil {
			d.fail("milestone twice")
		}
		st.reached[k] = struct{}{}
		st.milestones = append(st.milestones, m)
	}
	st.milestonesDropped = d.uvarint()
	n = d.count("seconds", 4)
	if n > SeriesSeconds {
		d.fail("more seconds than the series holds")
	}
	for i := 0; i < n && d.err == nil; i++ {
		u := d.varint()
		if u <= 0 {
			d.fail("bad second")
			break
		}
		s := &st.series[u%SeriesSeconds]
		if s.unix != 0 {
			d.fail("second twice")
		}
		*s = second{unix: u, placed: d.uvarint(), paid: d.uvarint(), gmv: d.varint()}
	}
	if hasPeak {
		st.peak = second{unix: d.varint(), placed: d.uvarint()}
		if st.peak.unix < 0 || (st.peak.unix == 0) != (st.peak.placed == 0) || st.peak.placed > st.placed {
			d.fail("bad peak second")
		}
	} else {
		for i := range st.series {
			if s := &st.series[i]; s.placed > st.peak.placed {
				st.peak = second{unix: s.unix, placed: s.placed}
			}
		}
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	if err := st.check(cellsSum); err != nil {
		return nil, err
	}
	return st, nil
}

func (st *state) decodePending(d *decoder) {
	n := d.count("pending orders", 8)
	dims := &st.dims
	for i := 0; i < n && d.err == nil; i++ {
		id := engine.OrderID(d.uvarint())
		po := pendingOrder{
			merchant: d.index("pending merchant", len(dims[DimMerchant].keys)),
			channel:  d.index("pending channel", len(dims[DimChannel].keys)),
			region:   d.index("pending region", len(dims[DimRegion].keys)),
			industry: d.index("pending industry", len(dims[DimIndustry].keys)),
			kind:     d.index("pending kind", len(dims[DimKind].keys)),
		}
		lines := d.count("pending lines", 4)
		if lines == 0 && d.err == nil {
			d.fail("pending order without lines")
		}
		var extra []line
		for j := 0; j < lines && d.err == nil; j++ {
			l := line{
				brand:    d.index("line brand", len(dims[DimBrand].keys)),
				category: d.index("line category", len(dims[DimCategory].keys)),
				country:  d.index("line country", len(dims[DimCountry].keys)),
				amount:   d.varint(),
			}
			if l.amount < 0 {
				d.fail("negative line")
			}
			if j < inlineLines {
				po.inline[j] = l
			} else {
				extra = append(extra, l)
			}
		}
		po.lines = int32(lines)
		switch {
		case d.err != nil:
		case id.Seq() == 0:
			d.fail("pending order without a sequence number")
		case !st.pending.Put(id, po):
			d.fail("pending order twice")
		}
		if extra != nil {
			st.wide[id] = extra
		}
	}
}

// check verifies what every state holds: each breakdown and the category
// cells add up to the total.
func (st *state) check(cellsSum int64) error {
	for i := range st.dims {
		var sum int64
		for _, t := range st.dims[i].totals {
			g := t.gmv
			sum += g
		}
		if sum != st.gmv {
			return fmt.Errorf("%w: the %v rows add up to %d fen, the total is %d", ErrBadSnapshot, Dimension(i), sum, st.gmv)
		}
	}
	if cellsSum != st.gmv {
		return fmt.Errorf("%w: the category cells add up to %d fen, the total is %d", ErrBadSnapshot, cellsSum, st.gmv)
	}
	if len(st.leaders) != len(st.dims[DimCategory].keys) || len(st.brands) != len(st.dims[DimBrand].keys) || len(st.merchants) != len(st.dims[DimMerchant].keys) {
		panic("gmv: decoded tables of different lengths")
	}
	return nil
}
