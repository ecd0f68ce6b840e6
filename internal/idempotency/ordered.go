package idempotency

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fest-platform/fest/internal/vfs"
)

// The time-ordered tier holds the spilled keys that carry their minting
// time (a UUIDv7 or a ULID, see KeyTime) and were first used close to it
// (TimeOrdered). Such keys are filed by that time, not by arrival: each
// write makes one run whose entries are grouped in sections, one per
// bucket of BucketWidth of minting time, each sorted by key hash. Memory
// holds one fence (the first key hash) per block of orderedBlockEntries
// entries, about 63 KiB of file, so a key costs a small fraction of a byte
// in memory, and the tier can hold a whole window at the peak.
//
// The horizon is past the minting time of every key the tier holds (it is
// raised before a run's keys are reported durable, and only grows): a key
// minted at or after it was never spilled, so if it was ever accepted it
// is still in the engine's memory tier. A new key is minted now, above the
// horizon, and never reads the disk; a key below it reads a sub-block or
// two of each section filed under its bucket, one to three sections at
// the peak.

const (
	orderedSuffix = ".trun"
	orderedMagic  = "FESTIDT2"
	// orderedHeaderBytes: magic | u32 count | u32 sections | i64 minAt |
	// i64 maxAt | i64 minMinted | i64 maxMinted | u32 blockEntries | u64
	// bucket width in ms | u32 crc32c of the header before it.
	orderedHeaderBytes = 64
	// orderedMagicV1 runs, written before the bucket width was in the
	// header, have a header of orderedHeaderBytesV1 without it; they are
	// still read, their width unchecked.
	orderedMagicV1       = "FESTIDT1"
	orderedHeaderBytesV1 = 56
	// subBlockEntries entries are one sub-block (2,304 bytes), checked by
	// the checksum after it: what a lookup reads.
	subBlockEntries = 64
	subBlockBytes   = subBlockEntries*entryBytes + 4
	// orderedBlockEntries entries, 28 sub-blocks (64,624 bytes), are one
	// block: one fence in memory. A lookup guesses the sub-block from
	// where its key hash falls between the block's fence and the next
	// (hashes are uniform), and steps to a neighbour when it missed,
	// reading one or two sub-blocks instead of the whole block.
	orderedBlockEntries = 28 * subBlockEntries
	// sectionTableBytes per section: i64 bucket | u32 count | u64 its
	// last key hash.
	sectionTableBytes = 20
	// The memory of a run and of a section besides its fences, as counted
	// against OrderedIndexBytesMax (struct, slice headers, map entries).
	orderedRunOverheadBytes     = 256
	orderedSectionOverheadBytes = 96
)

// orderedRun layout (little-endian):
//
//	header (orderedHeaderBytes)
//	table: per section i64 bucket | u32 count | u64 last key hash, then
//	per block of every section in order u64 its first key hash, then u32
//	crc32c(table)
//	entries: each section's entries (entryBytes each, sorted by key hash)
//	in sub-blocks of subBlockEntries (a section's last may be shorter),
//	each followed by u32 crc32c(its entries); every orderedBlockEntries
//	of a section are a block, whose first key hash is its fence
//
// Open reads the header and the table only (a day at the peak is
// terabytes of entries); every lookup checks each sub-block it reads, so
// damage is refused with the file and offset when it is met, never
// answered.
type orderedRun struct {
	number   uint64
	path     string
	count    int
	minAt    int64
	maxAt    int64
	maxMint  int64
	sections []section
	bytes    int64 // counted index memory
	// f is an open handle for the newest openRunsMax runs; set and closed
	// by the writer under the tier's write lock, read under its read lock.
	f vfs.File
}

type section struct {
	bucket int64
	count  int
	offset int64 // of the first sub-block
	fences []uint64
	last   uint64 // the last key hash, which bounds the last block's guess
}

type sectionRef struct {
	run     *orderedRun
	section int
}

// orderedTier is the time-ordered tier's state. The writer changes it
// under mu; lookups hold mu shared while they read a run, so a run is
// closed and removed only when no lookup is reading it.
type orderedTier struct {
	mu      sync.RWMutex
	runs    map[uint64]*orderedRun
	buckets map[int64][]sectionRef
	open    []*orderedRun // runs with a handle, oldest first

	horizon atomic.Int64 // unix ms
	keys    atomic.Int64
	bytes   atomic.Int64
	oldest  atomic.Int64 // minAt of the oldest run, unix ns; 0 if none
	count   atomic.Int64 // runs
}

func (t *orderedTier) init() {
	t.runs = map[uint64]*orderedRun{}
	t.buckets = map[int64][]sectionRef{}
}

func orderedName(number uint64) string { return fileName(number, orderedSuffix) }

// TimeOrdered reports whether a key minted at mintedMs (unix ms, from
// KeyTime) and first used at atNs (unix ns) belongs to the time-ordered
// tier: it was minted at most MintedAgeMax before its first use and at
// most MintedSkewMax after it. The bounds keep the tier cheap, not
// correct: a key minted long before its first use adds a section to an
// old bucket (memory, and a block more for a retry of that bucket), and
// one minted in the future raises the horizon past the keys being minted
// now, which then look up the buckets between.
func (s *Store) TimeOrdered(mintedMs, atNs int64) bool {
	at := atNs / 1e6
	return mintedMs > 0 && mintedMs >= at-s.cfg.MintedAgeMax.Milliseconds() && mintedMs <= at+s.cfg.MintedSkewMax.Milliseconds()
}

// Horizon returns the horizon in unix ms: every time-ordered key minted at
// or after it is in no run.
func (s *Store) Horizon() int64 { return s.ordered.horizon.Load() }

func (s *Store) bucketOf(mintedMs int64) int64 {
	w := s.cfg.BucketWidth.Milliseconds()
	b := mintedMs / w
	if mintedMs < 0 && mintedMs%w != 0 {
		b--
	}
	return b
}

// LookupOrdered returns the entry of a time-ordered key of keyHash minted
// at mintedMs, placed within the window, if any. A key at or above the
// horizon costs one atomic load; one below reads a sub-block or two of
// each section of its bucket.
func (s *Store) LookupOrdered(keyHash uint64, mintedMs int64) (Entry, bool, error) {
	if mintedMs >= s.ordered.horizon.Load() {
		return Entry{}, false, nil
	}
	t := &s.ordered
	cutoff := s.cfg.Now() - int64(s.cfg.Window)
	t.mu.RLock()
	defer t.mu.RUnlock()
	refs := t.buckets[s.bucketOf(mintedMs)]
	for i := len(refs) - 1; i >= 0; i-- {
		e, ok, err := refs[i].run.find(s.cfg.FS, refs[i].section, keyHash)
		if err != nil {
			return Entry{}, false, err
		}
		if ok && e.At > cutoff {
			e.Minted = mintedMs
			return e, true, nil
		}
	}
	return Entry{}, false, nil
}

// find reads the sub-block of section i that may hold keyHash (under the
// tier's read lock).
func (r *orderedRun) find(fsys vfs.FS, i int, keyHash uint64) (Entry, bool, error) {
	sec := &r.sections[i]
	b, found := slices.BinarySearch(sec.fences, keyHash)
	if !found {
		if b == 0 {
			return Entry{}, false, nil
		}
		b--
	}
	n := min(orderedBlockEntries, sec.count-b*orderedBlockEntries)
	subs := (n + subBlockEntries - 1) / subBlockEntries
	lo, hi := sec.fences[b], sec.last
	if b+1 < len(sec.fences) {
		hi = sec.fences[b+1]
	}
	guess := 0
	if hi > lo {
		guess = int(float64(keyHash-lo) / float64(hi-lo) * float64(n) / subBlockEntries)
	}
	guess = min(max(guess, 0), subs-1)
	bp := subBlockPool.Get().(*[subBlockBytes]byte)
	defer subBlockPool.Put(bp)
	buf := bp[:]
	step := 0 // the direction of the last step, so a key between two sub-blocks ends the search
	for {
		k := min(subBlockEntries, n-guess*subBlockEntries)
		off := sec.offset + int64(b)*(orderedBlockEntries/subBlockEntries)*subBlockBytes + int64(guess)*subBlockBytes
		body, err := r.read(fsys, buf[:k*entryBytes+4], off)
		if err != nil {
			return Entry{}, false, err
		}
		first, last := binary.LittleEndian.Uint64(body), binary.LittleEndian.Uint64(body[(k-1)*entryBytes:])
		switch {
		case keyHash < first:
			if guess == 0 || step > 0 {
				return Entry{}, false, nil
			}
			guess, step = guess-1, -1
			continue
		case keyHash > last:
			if guess == subs-1 || step < 0 {
				return Entry{}, false, nil
			}
			guess, step = guess+1, 1
			continue
		}
		lo, hi := 0, k
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if binary.LittleEndian.Uint64(body[mid*entryBytes:]) < keyHash {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		if lo < k && binary.LittleEndian.Uint64(body[lo*entryBytes:]) == keyHash {
			return decodeEntry(body[lo*entryBytes:]), true, nil
		}
		return Entry{}, false, nil
	}
}

// subBlockPool holds sub-block buffers, which would escape to the heap
// through vfs.File.ReadAt.
var subBlockPool = sync.Pool{New: func() any { return new([subBlockBytes]byte) }}

// read reads a sub-block at off into buf and checks it, returning its
// entries (under the tier's read lock).
func (r *orderedRun) read(fsys vfs.FS, buf []byte, off int64) ([]byte, error) {
	var err error
	if r.f != nil {
		_, err = r.f.ReadAt(buf, off)
	} else {
		var f vfs.File
		f, err = fsys.OpenFile(r.path, os.O_RDONLY, 0)
		if err == nil {
			_, err = f.ReadAt(buf, off)
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read run %s at %d: %w", r.path, off, err)
	}
	body := buf[:len(buf)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(buf[len(body):]) {
		return nil, fmt.Errorf("%w: %s at offset %d: block checksum", ErrDamaged, r.path, off)
	}
	return body, nil
}

// sortOrdered sorts entries by bucket, then key hash: a radix sort by key
// hash, then a stable counting pass by bucket (a write spans few buckets,
// within (MintedAgeMax+MintedSkewMax)/BucketWidth of each other). It
// returns the buckets in order with their counts, and the scratch.
func (s *Store) sortOrdered(entries, tmp []Entry) ([]int64, []int, []Entry) {
	// Counted in arrival order, where neighbours mostly share a bucket.
	counts := map[int64]int{}
	last, run := s.bucketOf(entries[0].Minted), 0
	for i := range entries {
		if b := s.bucketOf(entries[i].Minted); b != last {
			counts[last] += run
			last, run = b, 0
		}
		run++
	}
	counts[last] += run
	tmp = sortByKey(entries, tmp)
	buckets := make([]int64, 0, len(counts))
	for b := range counts {
		buckets = append(buckets, b)
	}
	slices.Sort(buckets)
	sizes := make([]int, len(buckets))
	if len(buckets) == 1 {
		sizes[0] = len(entries)
		return buckets, sizes, tmp
	}
	// next[b-lo] is where the next entry of bucket b goes; a map for a
	// range too wide to index (only a test makes one).
	lo, hi := buckets[0], buckets[len(buckets)-1]
	var dense []int
	var sparse map[int64]int
	if hi-lo < 1<<16 {
		dense = make([]int, hi-lo+1)
	} else {
		sparse = make(map[int64]int, len(buckets))
	}
	sum := 0
	for i, b := range buckets {
		if dense != nil {
			dense[b-lo] = sum
		} else {
			sparse[b] = sum
		}
		sizes[i] = counts[b]
		sum += counts[b]
	}
	for i := range entries {
		b := s.bucketOf(entries[i].Minted)
		if dense != nil {
			tmp[dense[b-lo]] = entries[i]
			dense[b-lo]++
		} else {
			tmp[sparse[b]] = entries[i]
			sparse[b]++
		}
	}
	copy(entries, tmp)
	return buckets, sizes, tmp
}

// sectionBytes is the size of a section's sub-blocks.
func sectionBytes(count int) int {
	return count*entryBytes + (count+subBlockEntries-1)/subBlockEntries*4
}

func fenceCount(count int) int { return (count + orderedBlockEntries - 1) / orderedBlockEntries }

// encodeOrdered lays entries out as a run of bucketWidthMs buckets.
func encodeOrdered(entries []Entry, buckets []int64, sizes []int, bucketWidthMs int64) []byte {
	blocks, data := 0, 0
	for _, n := range sizes {
		blocks += fenceCount(n)
		data += sectionBytes(n)
	}
	size := orderedHeaderBytes + len(buckets)*sectionTableBytes + blocks*8 + 4 + data
	b := make([]byte, 0, size)
	minAt, maxAt := entries[0].At, entries[0].At
	minMint, maxMint := entries[0].Minted, entries[0].Minted
	for i := range entries {
		minAt, maxAt = min(minAt, entries[i].At), max(maxAt, entries[i].At)
		minMint, maxMint = min(minMint, entries[i].Minted), max(maxMint, entries[i].Minted)
	}
	b = append(b, orderedMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(buckets)))
	for _, v := range []int64{minAt, maxAt, minMint, maxMint} {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	b = binary.LittleEndian.AppendUint32(b, orderedBlockEntries)
	b = binary.LittleEndian.AppendUint64(b, uint64(bucketWidthMs))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	table := len(b)
	first := 0
	for i, bucket := range buckets {
		b = binary.LittleEndian.AppendUint64(b, uint64(bucket))
		b = binary.LittleEndian.AppendUint32(b, uint32(sizes[i]))
		first += sizes[i]
		b = binary.LittleEndian.AppendUint64(b, entries[first-1].KeyHash)
	}
	first = 0
	for _, n := range sizes {
		for j := first; j < first+n; j += orderedBlockEntries {
			b = binary.LittleEndian.AppendUint64(b, entries[j].KeyHash)
		}
		first += n
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[table:], castagnoli))
	first = 0
	for _, n := range sizes {
		for j := first; j < first+n; j += subBlockEntries {
			start := len(b)
			for k := j; k < min(j+subBlockEntries, first+n); k++ {
				b = appendEntry(b, &entries[k])
			}
			b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
		}
		first += n
	}
	if len(b) != size {
		panic(fmt.Sprintf("idempotency: encoded an ordered run of %d bytes, computed %d", len(b), size))
	}
	return b
}

// readOrdered reads and checks a run's header and table. A run of another
// bucket width than bucketWidthMs is refused (ErrBucketWidth): lookups
// would compute other buckets and miss its keys.
func readOrdered(fsys vfs.FS, path string, number uint64, bucketWidthMs int64) (*orderedRun, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open run %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("size of run %s: %w", path, err)
	}
	damaged := func(off int64, what string, args ...any) error {
		return fmt.Errorf("%w: %s at offset %d: %s", ErrDamaged, path, off, fmt.Sprintf(what, args...))
	}
	if size < orderedHeaderBytesV1 {
		return nil, damaged(0, "%d bytes, shorter than a header", size)
	}
	h := make([]byte, orderedHeaderBytes)
	if _, err := f.ReadAt(h[:orderedHeaderBytesV1], 0); err != nil {
		return nil, fmt.Errorf("read run %s: %w", path, err)
	}
	var hb int64 // the header's size
	switch string(h[:len(orderedMagic)]) {
	case orderedMagicV1:
		hb = orderedHeaderBytesV1
	case orderedMagic:
		hb = orderedHeaderBytes
		if size < hb {
			return nil, damaged(0, "%d bytes, shorter than a header", size)
		}
		if _, err := f.ReadAt(h[orderedHeaderBytesV1:], orderedHeaderBytesV1); err != nil {
			return nil, fmt.Errorf("read run %s: %w", path, err)
		}
	default:
		return nil, damaged(0, "not an ordered run")
	}
	if crc32.Checksum(h[:hb-4], castagnoli) != binary.LittleEndian.Uint32(h[hb-4:]) {
		return nil, damaged(0, "header checksum")
	}
	if hb == orderedHeaderBytes {
		if w := int64(binary.LittleEndian.Uint64(h[52:])); w != bucketWidthMs {
			return nil, fmt.Errorf("%w: %s has buckets of %d ms, the store's are %d ms", ErrBucketWidth, path, w, bucketWidthMs)
		}
	}
	count := int(binary.LittleEndian.Uint32(h[8:]))
	sections := int(binary.LittleEndian.Uint32(h[12:]))
	r := &orderedRun{number: number, path: path, count: count,
		minAt: int64(binary.LittleEndian.Uint64(h[16:])), maxAt: int64(binary.LittleEndian.Uint64(h[24:])),
		maxMint: int64(binary.LittleEndian.Uint64(h[40:]))}
	if count == 0 || sections == 0 || sections > count || binary.LittleEndian.Uint32(h[48:]) != orderedBlockEntries {
		return nil, damaged(8, "%d entries in %d sections", count, sections)
	}
	if hb+int64(sections)*sectionTableBytes > size {
		return nil, damaged(12, "%d sections in %d bytes", sections, size)
	}
	st := make([]byte, sections*sectionTableBytes)
	if _, err := f.ReadAt(st, hb); err != nil {
		return nil, fmt.Errorf("read run %s: %w", path, err)
	}
	blocks, total, data := 0, 0, int64(0)
	r.sections = make([]section, sections)
	for i := range r.sections {
		sec := &r.sections[i]
		sec.bucket = int64(binary.LittleEndian.Uint64(st[i*sectionTableBytes:]))
		sec.count = int(binary.LittleEndian.Uint32(st[i*sectionTableBytes+8:]))
		sec.last = binary.LittleEndian.Uint64(st[i*sectionTableBytes+12:])
		if sec.count == 0 || (i > 0 && sec.bucket <= r.sections[i-1].bucket) {
			return nil, damaged(hb+int64(i*sectionTableBytes), "section %d of bucket %d and %d entries", i, sec.bucket, sec.count)
		}
		blocks += fenceCount(sec.count)
		total += sec.count
		data += int64(sectionBytes(sec.count))
	}
	tableEnd := hb + int64(sections*sectionTableBytes+blocks*8+4)
	if total != count || size != tableEnd+data {
		return nil, damaged(8, "%d entries in %d bytes", count, size)
	}
	table := make([]byte, tableEnd-hb)
	if _, err := f.ReadAt(table, hb); err != nil {
		return nil, fmt.Errorf("read run %s: %w", path, err)
	}
	if crc32.Checksum(table[:len(table)-4], castagnoli) != binary.LittleEndian.Uint32(table[len(table)-4:]) {
		return nil, damaged(hb, "table checksum")
	}
	fences := table[sections*sectionTableBytes:]
	off := tableEnd
	for i := range r.sections {
		sec := &r.sections[i]
		sec.offset = off
		sec.fences = make([]uint64, fenceCount(sec.count))
		for j := range sec.fences {
			sec.fences[j] = binary.LittleEndian.Uint64(fences)
			fences = fences[8:]
			if sec.fences[j] == 0 || (j > 0 && sec.fences[j] < sec.fences[j-1]) {
				return nil, damaged(tableEnd-4, "fence %d of section %d out of order", j, i)
			}
		}
		if sec.last < sec.fences[len(sec.fences)-1] {
			return nil, damaged(hb+int64(i*sectionTableBytes+12), "section %d ends before its last block starts", i)
		}
		off += int64(sectionBytes(sec.count))
	}
	if r.minAt > r.maxAt {
		return nil, damaged(16, "time range")
	}
	r.bytes = r.indexBytes()
	return r, nil
}

func (r *orderedRun) indexBytes() int64 {
	n := int64(orderedRunOverheadBytes)
	for i := range r.sections {
		n += orderedSectionOverheadBytes + int64(len(r.sections[i].fences))*8
	}
	return n
}

// newOrderedRun is the in-memory run of entries as encodeOrdered wrote them.
func newOrderedRun(path string, number uint64, entries []Entry, buckets []int64, sizes []int) *orderedRun {
	r := &orderedRun{number: number, path: path, count: len(entries), minAt: entries[0].At, maxAt: entries[0].At, maxMint: entries[0].Minted}
	blocks := 0
	for _, n := range sizes {
		blocks += fenceCount(n)
	}
	off := int64(orderedHeaderBytes + len(buckets)*sectionTableBytes + blocks*8 + 4)
	first := 0
	r.sections = make([]section, len(buckets))
	for i, n := range sizes {
		sec := &r.sections[i]
		sec.bucket, sec.count, sec.offset, sec.last = buckets[i], n, off, entries[first+n-1].KeyHash
		for j := first; j < first+n; j += orderedBlockEntries {
			sec.fences = append(sec.fences, entries[j].KeyHash)
		}
		off += int64(sectionBytes(n))
		first += n
	}
	for i := range entries {
		r.minAt, r.maxAt, r.maxMint = min(r.minAt, entries[i].At), max(r.maxAt, entries[i].At), max(r.maxMint, entries[i].Minted)
	}
	r.bytes = r.indexBytes()
	return r
}

// addOrdered publishes r, a run the writer has just written, and keeps a
// handle of it: retries land most in the newest runs.
func (s *Store) addOrdered(r *orderedRun) error {
	t := &s.ordered
	t.mu.Lock()
	if t.runs[r.number] != nil {
		t.mu.Unlock()
		return fmt.Errorf("%w: %s: run %d loaded twice", ErrDamaged, r.path, r.number)
	}
	t.runs[r.number] = r
	for i := range r.sections {
		b := r.sections[i].bucket
		t.buckets[b] = append(t.buckets[b], sectionRef{run: r, section: i})
	}
	if f, err := s.cfg.FS.OpenFile(r.path, os.O_RDONLY, 0); err == nil {
		r.f = f // a failure only costs speed
		t.open = append(t.open, r)
	}
	// The oldest handles close first; a removed run's is closed already.
	for len(t.open) > openRunsMax {
		if o := t.open[0]; o.f != nil {
			o.f.Close()
			o.f = nil
		}
		t.open = t.open[1:]
	}
	t.mu.Unlock()
	// The horizon rises before the run's keys are reported durable, so
	// before the engine removes them from memory.
	t.raiseHorizon(r.maxMint + 1)
	t.keys.Add(int64(r.count))
	t.bytes.Add(r.bytes)
	s.orderedChanged()
	// The router's reservations trust a generation that no publication
	// passed; a time-ordered run is one too.
	s.generation.Add(1)
	return nil
}

// loadOrdered publishes the runs Open read, all at once: addOrdered walks
// every published run for the figures, which for each of tens of thousands
// of runs made Open quadratic in their number.
func (s *Store) loadOrdered(runs []*orderedRun) error {
	if len(runs) == 0 {
		return nil
	}
	// Oldest first, as the writer appends them: a lookup reads a bucket's
	// sections newest first.
	slices.SortFunc(runs, func(a, b *orderedRun) int { return cmp.Compare(a.number, b.number) })
	t := &s.ordered
	var horizon, keys, bytes int64
	t.mu.Lock()
	for _, r := range runs {
		if t.runs[r.number] != nil {
			t.mu.Unlock()
			return fmt.Errorf("%w: %s: run %d loaded twice", ErrDamaged, r.path, r.number)
		}
		t.runs[r.number] = r
		for i := range r.sections {
			b := r.sections[i].bucket
			t.buckets[b] = append(t.buckets[b], sectionRef{run: r, section: i})
		}
		horizon = max(horizon, r.maxMint+1)
		keys += int64(r.count)
		bytes += r.bytes
	}
	t.mu.Unlock()
	t.raiseHorizon(horizon)
	t.keys.Add(keys)
	t.bytes.Add(bytes)
	s.orderedChanged()
	s.generation.Add(1)
	return nil
}

// raiseHorizon raises the horizon to h if it is below; it never falls.
func (t *orderedTier) raiseHorizon(h int64) {
	for old := t.horizon.Load(); h > old && !t.horizon.CompareAndSwap(old, h); old = t.horizon.Load() {
	}
}

// removeOrdered takes runs out of the tier and deletes their files.
func (s *Store) removeOrdered(drop []*orderedRun) error {
	if len(drop) == 0 {
		return nil
	}
	t := &s.ordered
	gone := make(map[*orderedRun]bool, len(drop))
	t.mu.Lock()
	for _, r := range drop {
		gone[r] = true
		delete(t.runs, r.number)
		if r.f != nil {
			r.f.Close()
			r.f = nil
		}
	}
	// Each bucket is filtered once, however many of the runs it holds.
	touched := make(map[int64]bool)
	for i := range drop {
		for _, sec := range drop[i].sections {
			touched[sec.bucket] = true
		}
	}
	for bucket := range touched {
		refs := slices.DeleteFunc(t.buckets[bucket], func(x sectionRef) bool { return gone[x.run] })
		if len(refs) == 0 {
			delete(t.buckets, bucket)
		} else {
			t.buckets[bucket] = refs
		}
	}
	t.mu.Unlock()
	var errs []error
	for _, r := range drop {
		t.keys.Add(-int64(r.count))
		t.bytes.Add(-r.bytes)
		if err := s.cfg.FS.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove run %s: %w", r.path, err))
		}
	}
	s.orderedChanged()
	s.generation.Add(1)
	return errors.Join(errs...)
}

// orderedChanged refreshes the figures Stats reads without the lock.
func (s *Store) orderedChanged() {
	t := &s.ordered
	t.mu.RLock()
	var oldest int64
	for _, r := range t.runs {
		if oldest == 0 || r.minAt < oldest {
			oldest = r.minAt
		}
	}
	n := len(t.runs)
	t.mu.RUnlock()
	t.oldest.Store(oldest)
	t.count.Store(int64(n))
}

// writeOrdered makes entries (all time-ordered) one durable run and
// publishes it.
func (s *Store) writeOrdered(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	buckets, sizes, tmp := s.sortOrdered(entries, s.sortBuf)
	s.sortBuf = tmp
	number := s.nextNumber
	s.nextNumber++
	path := filepath.Join(s.cfg.Dir, orderedName(number))
	if err := vfs.WriteFileAtomic(s.cfg.FS, path, encodeOrdered(entries, buckets, sizes, s.cfg.BucketWidth.Milliseconds()), 0o600); err != nil {
		return fmt.Errorf("write run %s: %w", path, err)
	}
	if err := s.addOrdered(newOrderedRun(path, number, entries, buckets, sizes)); err != nil {
		return err
	}
	s.enforceOrderedBudget()
	return nil
}

// expireOrdered removes the runs whose newest key is older than cutoff.
func (s *Store) expireOrdered(cutoff int64) error {
	t := &s.ordered
	var old []*orderedRun
	t.mu.RLock()
	for _, r := range t.runs {
		if r.maxAt <= cutoff {
			old = append(old, r)
		}
	}
	t.mu.RUnlock()
	return s.removeOrdered(old)
}

// enforceOrderedBudget forgets the oldest runs while the tier's index is
// over OrderedIndexBytesMax, the newest always kept (writer or Open only:
// nothing else changes the runs meanwhile). The runs to forget are chosen
// in one pass and removed at once, so that Open over a directory far past
// the bound (the bound was lowered) costs no more than a sort.
func (s *Store) enforceOrderedBudget() {
	t := &s.ordered
	over := t.bytes.Load() - s.cfg.OrderedIndexBytesMax
	if over <= 0 {
		return
	}
	t.mu.RLock()
	runs := make([]*orderedRun, 0, len(t.runs))
	for _, r := range t.runs {
		runs = append(runs, r)
	}
	t.mu.RUnlock()
	slices.SortFunc(runs, func(a, b *orderedRun) int { return cmp.Compare(a.number, b.number) })
	var drop []*orderedRun
	for _, r := range runs[:max(0, len(runs)-1)] {
		if over <= 0 {
			break
		}
		drop = append(drop, r)
		over -= r.bytes
		s.orderedForgottenEarly.Add(uint64(r.count))
		s.cfg.Logger.Error("idempotency: time-ordered keys forgotten before their window; a retry of one places a second order",
			"reason", "index over OrderedIndexBytesMax", "keys", r.count, "run", r.path)
	}
	if err := s.removeOrdered(drop); err != nil {
		s.cfg.Logger.Error("idempotency: remove run", "err", err)
	}
}

// closeOrdered closes the kept handles.
func (s *Store) closeOrdered() {
	t := &s.ordered
	t.mu.Lock()
	for _, r := range t.runs {
		if r.f != nil {
			r.f.Close()
			r.f = nil
		}
	}
	t.mu.Unlock()
}

// keepNewestOrderedOpen opens the newest openRunsMax runs' handles (Open
// only, before the writer starts).
func (s *Store) keepNewestOrderedOpen() {
	t := &s.ordered
	t.mu.Lock()
	defer t.mu.Unlock()
	runs := make([]*orderedRun, 0, len(t.runs))
	for _, r := range t.runs {
		runs = append(runs, r)
	}
	slices.SortFunc(runs, func(a, b *orderedRun) int { return cmp.Compare(a.number, b.number) })
	for _, r := range runs[max(0, len(runs)-openRunsMax):] {
		if f, err := s.cfg.FS.OpenFile(r.path, os.O_RDONLY, 0); err == nil {
			r.f = f
			t.open = append(t.open, r)
		}
	}
}
