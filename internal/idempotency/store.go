// Package idempotency is the disk tier of the engine's idempotency keys:
// keys that leave a partition's memory tier are written here, in batches,
// by one background goroutine, as immutable sorted runs, and stay findable
// for their whole window.
//
// A lookup of a key that was never spilled must not read the disk: the store
// keeps an in-memory index of every stored key (40 bits of its hash and the
// number of the run that holds it, 8 bytes a slot), so a new key costs one
// shard read lock and one or two cache lines, whatever the number of runs.
// With 40 bits compared, a lookup reads a run only for a stored key or about
// once per 10^11 new keys. A per-run Bloom filter would take fewer bytes a
// key, but a lookup would then probe every run of the window; at the peak
// that is thousands of runs per keyed order.
//
// Keys that carry their minting time (UUIDv7 and ULID, see KeyTime and
// TimeOrdered) have a second tier, filed by that time (ordered.go): it
// needs no per-key memory, so they are kept for the whole window at any
// rate. Every other key is kept up to IndexBytesMax.
//
// Files: <Dir>/<number>.run (other keys) and <Dir>/<number>.trun
// (time-ordered keys), each written as <name>.tmp, fsynced, renamed and the
// directory fsynced before any of its keys is reported durable. A leftover
// .tmp is a write a crash interrupted: it was never reported, its keys are
// still in the engine's memory tier or its journal, and it is removed at
// Open. A .run that fails its checksum is damage: Open refuses with the
// file and offset; so does a .trun whose header or table fails, and a
// lookup that reads a .trun block failing its checksum.
package idempotency

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/vfs"
)

var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("idempotency store closed")
	// ErrBusy is returned by Submit when the writer's queue is full or the
	// writer is backing off after a failed write; the caller keeps its keys
	// and tries again later.
	ErrBusy = errors.New("idempotency store busy")
	// ErrDamaged is returned (wrapped, with the file and offset) when a run
	// file fails its checksum or its layout.
	ErrDamaged = errors.New("idempotency run damaged")
	// ErrBucketWidth is returned (wrapped, with the file) by Open when a
	// time-ordered run was written with another BucketWidth.
	ErrBucketWidth = errors.New("idempotency run of another bucket width")
)

// Entry is one key of the disk tier.
type Entry struct {
	KeyHash     uint64 // FNV-1a of the key, never zero
	RequestHash uint64 // hash of the canonical request first placed under the key
	Seq         uint64 // order sequence in Partition
	At          int64  // unix nanoseconds the order was placed (event time)
	Partition   uint32
	// Minted is the minting time of a time-ordered key (KeyTime, unix ms,
	// for which TimeOrdered held at the key's first use), which files it in
	// the time-ordered tier; 0 for every other key.
	Minted int64
}

// Config configures a Store.
type Config struct {
	// FS is the file system (default vfs.OS).
	FS vfs.FS
	// Dir holds the run files; created if missing. Required.
	Dir string
	// Window is how long a key is kept (default 24h). A run is deleted
	// once its newest key is older; lookups ignore older keys at once.
	Window time.Duration
	// IndexBytesMax bounds the in-memory index (default 4 GiB, about 270
	// to 400 million keys; the index grows only as keys arrive). At the bound the oldest run is forgotten before
	// its window ends, counted in Stats.ForgottenEarly and logged: memory
	// is the one limit a store cannot exceed safely.
	IndexBytesMax int64
	// OrderedIndexBytesMax bounds the time-ordered tier's in-memory index
	// (default 1 GiB; a day at 583,000 keys a second, 50 billion keys,
	// counts about 250 MB, 360 MB of heap).
	// At the bound its oldest run is forgotten before its window ends,
	// counted in Stats.OrderedForgottenEarly and logged.
	OrderedIndexBytesMax int64
	// BucketWidth is the span of minting time filed together in the
	// time-ordered tier (default 2s, about one run's gathering time, so
	// that a bucket is one to three sections at the peak and a retry reads
	// as many blocks). Changing it makes the runs on disk unreadable to
	// lookups, which would compute other buckets, so Open refuses a run
	// of another width (ErrBucketWidth): keep it per data directory.
	BucketWidth time.Duration
	// MintedAgeMax is how long before its first use a key may have been
	// minted and still be time-ordered (default 2m); MintedSkewMax how far
	// after (default 1m, a client clock ahead of ours). See TimeOrdered:
	// a write adds at most (MintedAgeMax+MintedSkewMax)/BucketWidth
	// sections (90 by default, about 10 KiB of index), whatever the keys,
	// which bounds the index at the peak to under 1 GiB a day even if
	// every key came late; and a retry reads at most that many blocks.
	MintedAgeMax  time.Duration
	MintedSkewMax time.Duration
	// QueueDepthMax bounds the batches waiting for the writer (default 256).
	QueueDepthMax int
	// RunKeysMax bounds the keys of one run (default 1,048,576: at the
	// peak about two seconds of spills, and 40 MiB of writer scratch).
	RunKeysMax int
	// RunDelayMax is how long the writer gathers batches into one run
	// after the first arrives (default 2s), so that a day at the peak is
	// tens of thousands of runs, not millions; the keys stay in the
	// engine's memory tier meanwhile.
	RunDelayMax time.Duration
	// RetryDelay is how long Submit answers ErrBusy after a failed write
	// (default 1s), so a failing disk is not retried on every batch.
	RetryDelay time.Duration
	// Now returns the time in unix nanoseconds (default the wall clock).
	Now func() int64
	// Logger receives failures (default slog.Default()).
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("idempotency config: Dir is required")
	case c.BucketWidth < 0 || (c.BucketWidth > 0 && c.BucketWidth < time.Millisecond):
		return fmt.Errorf("idempotency config: BucketWidth %v is not zero or at least 1ms", c.BucketWidth)
	case c.MintedAgeMax < 0 || c.MintedSkewMax < 0 || c.OrderedIndexBytesMax < 0:
		return errors.New("idempotency config: limits must not be negative")
	case c.Window < 0 || c.IndexBytesMax < 0 || c.QueueDepthMax < 0 || c.RunKeysMax < 0 || c.RunDelayMax < 0 || c.RetryDelay < 0:
		return errors.New("idempotency config: limits must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.FS == nil {
		c.FS = vfs.OS
	}
	if c.Window == 0 {
		c.Window = 24 * time.Hour
	}
	if c.IndexBytesMax == 0 {
		c.IndexBytesMax = 4 << 30
	}
	if c.OrderedIndexBytesMax == 0 {
		c.OrderedIndexBytesMax = 1 << 30
	}
	if c.BucketWidth == 0 {
		c.BucketWidth = 2 * time.Second
	}
	if c.MintedAgeMax == 0 {
		c.MintedAgeMax = 2 * time.Minute
	}
	if c.MintedSkewMax == 0 {
		c.MintedSkewMax = time.Minute
	}
	if c.QueueDepthMax == 0 {
		c.QueueDepthMax = 256
	}
	if c.RunKeysMax == 0 {
		c.RunKeysMax = 1 << 20
	}
	if c.RunDelayMax == 0 {
		c.RunDelayMax = 2 * time.Second
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = time.Second
	}
	if c.Now == nil {
		c.Now = func() int64 { return time.Now().UnixNano() }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Stats are the store's figures. Keys, Runs, IndexBytes and
// ForgottenEarly are of the other keys' tier; the Ordered figures of the
// time-ordered tier.
type Stats struct {
	Keys           int64 // keys in live runs
	Runs           int
	OldestAt       int64 // unix nanoseconds of the oldest stored key, either tier; 0 if none
	IndexBytes     int64
	ForgottenEarly uint64 // keys dropped before their window by IndexBytesMax

	OrderedKeys           int64
	OrderedRuns           int
	OrderedIndexBytes     int64
	OrderedForgottenEarly uint64 // dropped before their window by OrderedIndexBytesMax
	Horizon               int64  // unix ms; 0 while the tier is empty
}

type submission struct {
	entries []Entry
	done    func(error)
}

// Store is the disk tier. Lookup is safe from any goroutine; Submit hands a
// batch to the writer goroutine.
type Store struct {
	cfg   Config
	index index
	runs  atomic.Pointer[runSet]
	// generation grows each time runs are published or removed, after the
	// index is updated: a caller that saw a miss at generation g and still
	// sees g knows no key has been published since.
	generation atomic.Uint64

	queue      chan submission
	stop       chan struct{}
	wg         sync.WaitGroup
	closed     atomic.Bool
	retryAfter atomic.Int64

	ordered orderedTier

	nextNumber            uint64  // writer only
	sortBuf               []Entry // writer only: scratch of sortByKey
	orderedBuf            []Entry // writer only: the time-ordered keys of a write
	forgottenEarly        atomic.Uint64
	orderedForgottenEarly atomic.Uint64
	failedWrites          atomic.Uint64
}

// runSet is the immutable set of live runs, replaced whole on change (runs
// change about once a second; lookups read it without a lock).
type runSet struct {
	byID map[uint32]*run
}

// Open opens the store, loads every run into the index and starts the
// writer.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{cfg: cfg, queue: make(chan submission, cfg.QueueDepthMax), stop: make(chan struct{}), nextNumber: 1}
	s.index.init()
	s.ordered.init()
	s.runs.Store(&runSet{byID: map[uint32]*run{}})
	if err := cfg.FS.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.Dir, err)
	}
	names, err := cfg.FS.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", cfg.Dir, err)
	}
	set := &runSet{byID: map[uint32]*run{}}
	var removed bool
	var ordered []*orderedRun
	for _, name := range names {
		path := filepath.Join(cfg.Dir, name)
		if strings.HasSuffix(name, ".tmp") {
			if err := cfg.FS.Remove(path); err != nil {
				return nil, fmt.Errorf("remove interrupted run %s: %w", path, err)
			}
			removed = true
			continue
		}
		if number, ok := parseFileName(name, orderedSuffix); ok {
			r, err := readOrdered(cfg.FS, path, number, cfg.BucketWidth.Milliseconds())
			if err != nil {
				return nil, err
			}
			ordered = append(ordered, r)
			s.nextNumber = max(s.nextNumber, number+1)
			continue
		}
		number, ok := parseFileName(name, runSuffix)
		if !ok {
			continue
		}
		r, entries, err := loadRun(cfg.FS, path, number)
		if err != nil {
			return nil, err
		}
		if old := set.byID[r.id]; old != nil {
			// Run ids wrap after runIDMax runs, which the writer never
			// keeps live at once: the files are not all this store's.
			return nil, fmt.Errorf("%w: %s: runs %d and %d share index id %d", ErrDamaged, cfg.Dir, old.number, r.number, r.id)
		}
		set.byID[r.id] = r
		s.runs.Store(set)
		s.index.insertAll(entries, r.id, set)
		s.nextNumber = max(s.nextNumber, number+1)
	}
	if err := s.loadOrdered(ordered); err != nil {
		return nil, err
	}
	if removed {
		if err := cfg.FS.SyncDir(cfg.Dir); err != nil {
			return nil, fmt.Errorf("sync %s: %w", cfg.Dir, err)
		}
	}
	s.generation.Add(1)
	if err := s.expire(); err != nil {
		return nil, err
	}
	// A run forgotten for the budget may be back after a crash (its
	// removal was not yet durable): the bound holds from the start.
	s.enforceBudget()
	s.enforceOrderedBudget()
	s.keepNewestOrderedOpen()
	for _, r := range s.runs.Load().byID {
		if r.number+openRunsMax >= s.nextNumber {
			r.keepOpen()
		}
	}
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

const runSuffix = ".run"

func runName(number uint64) string { return fileName(number, runSuffix) }

// fileName names file number of a kind: the number in 16 digits, so that
// the names sort as the numbers do, then the kind's suffix.
func fileName(number uint64, suffix string) string { return fmt.Sprintf("%016d%s", number, suffix) }

// parseFileName returns the number of a file named by fileName with
// suffix, and false for any other name.
func parseFileName(name, suffix string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, suffix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(base, 10, 64)
	return n, err == nil && n > 0
}

// Generation returns the publication counter (see Store.generation).
func (s *Store) Generation() uint64 { return s.generation.Load() }

// Lookup returns the stored entry of keyHash placed within the window, if
// any. It reads the disk only when the index holds the key's 40 hash bits.
func (s *Store) Lookup(keyHash uint64) (Entry, bool, error) {
	var ids [lookupCandidatesMax]uint32
	n := s.index.candidates(keyHash, &ids)
	if n == 0 {
		return Entry{}, false, nil
	}
	set := s.runs.Load()
	cutoff := s.cfg.Now() - int64(s.cfg.Window)
	for _, id := range ids[:n] {
		r := set.byID[id]
		if r == nil {
			continue // removed since the index was read
		}
		e, ok, err := r.find(keyHash)
		if err != nil {
			return Entry{}, false, err
		}
		if ok && e.At > cutoff {
			return e, true, nil
		}
	}
	return Entry{}, false, nil
}

// Submit hands entries to the writer, which writes them to a run, fsyncs it
// and then calls done(nil); or done(err) if the run could not be made
// durable (the entries are then not stored). done runs on the writer's
// goroutine. Submit never blocks: it returns ErrBusy when the queue is full
// or a recent write failed. The store owns entries until done.
func (s *Store) Submit(entries []Entry, done func(error)) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.cfg.Now() < s.retryAfter.Load() {
		return ErrBusy
	}
	select {
	case s.queue <- submission{entries: entries, done: done}:
		return nil
	default:
		return ErrBusy
	}
}

// expireTick is how often an idle writer deletes runs past the window.
const expireTick = time.Minute

func (s *Store) writer() {
	defer s.wg.Done()
	tick := time.NewTicker(expireTick)
	defer tick.Stop()
	var batch []submission
	var merged []Entry
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			if err := s.expire(); err != nil {
				s.cfg.Logger.Error("idempotency: remove expired runs", "err", err)
			}
			continue
		case sub := <-s.queue:
			batch = append(batch[:0], sub)
		}
		keys := len(batch[0].entries)
		linger := time.NewTimer(s.cfg.RunDelayMax)
	more:
		for keys < s.cfg.RunKeysMax {
			select {
			case sub := <-s.queue:
				batch = append(batch, sub)
				keys += len(sub.entries)
			case <-linger.C:
				break more
			case <-s.stop:
				linger.Stop()
				for i := range batch {
					batch[i].done(ErrClosed)
				}
				return
			}
		}
		linger.Stop()
		merged = merged[:0]
		for _, sub := range batch {
			merged = append(merged, sub.entries...)
		}
		err := s.writeBoth(merged)
		if err != nil {
			s.failedWrites.Add(1)
			s.retryAfter.Store(s.cfg.Now() + int64(s.cfg.RetryDelay))
			s.cfg.Logger.Error("idempotency: write run; the keys stay in memory and are retried", "keys", len(merged), "err", err)
		}
		// Expired runs go before the batch is answered, so that a spill's
		// answer finds the store as of that write, expiry included.
		if err := s.expire(); err != nil {
			s.cfg.Logger.Error("idempotency: remove expired runs", "err", err)
		}
		for i := range batch {
			batch[i].done(err)
			batch[i] = submission{}
		}
	}
}

// writeBoth writes the other keys of entries as one run and the
// time-ordered ones as another. If either fails the batch fails and is
// retried whole: a key then stored twice is harmless, both copies say the
// same.
func (s *Store) writeBoth(entries []Entry) error {
	ordered := s.orderedBuf[:0]
	other := entries[:0]
	for _, e := range entries {
		if e.Minted != 0 {
			ordered = append(ordered, e)
		} else {
			other = append(other, e)
		}
	}
	s.orderedBuf = ordered
	if err := s.write(other); err != nil {
		return err
	}
	return s.writeOrdered(ordered)
}

// write makes entries one durable run and publishes it.
func (s *Store) write(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	s.sortBuf = sortByKey(entries, s.sortBuf)
	number := s.nextNumber
	s.nextNumber++
	path := filepath.Join(s.cfg.Dir, runName(number))
	data := encodeRun(entries)
	if err := vfs.WriteFileAtomic(s.cfg.FS, path, data, 0o600); err != nil {
		// WriteFileAtomic removed the half-written run; Open removes one a
		// crash left.
		return fmt.Errorf("write run %s: %w", path, err)
	}
	r := newRun(s.cfg.FS, path, number, entries)
	old := s.runs.Load()
	if o := old.byID[r.id]; o != nil {
		// The id wrapped onto a live run (runIDMax runs within one
		// window): the old run goes first, its slots with it, so that none
		// of them can name the new run.
		without := s.without(old)
		s.forget(without, o, "run id reused")
		s.runs.Store(without)
		s.index.compact(without)
		s.generation.Add(1)
		old = without
	}
	next := &runSet{byID: make(map[uint32]*run, len(old.byID)+1)}
	for id, o := range old.byID {
		next.byID[id] = o
	}
	next.byID[r.id] = r
	r.keepOpen()
	if number > openRunsMax {
		if o := next.byID[runID(number-openRunsMax)]; o != nil && o.number == number-openRunsMax {
			o.dropOpen()
		}
	}
	s.runs.Store(next)
	s.index.insertAll(entries, r.id, next)
	s.generation.Add(1)
	s.enforceBudget()
	return nil
}

// sortByKey sorts entries by key hash with a radix sort of one byte a pass,
// a quarter of the cost of a comparison sort of these 40-byte entries,
// which was the writer's main cost. tmp is scratch, returned grown for reuse.
func sortByKey(entries, tmp []Entry) []Entry {
	if cap(tmp) < len(entries) {
		tmp = make([]Entry, len(entries))
	}
	tmp = tmp[:len(entries)]
	src, dst := entries, tmp
	for shift := 0; shift < 64; shift += 8 {
		var counts [256]int
		for i := range src {
			counts[byte(src[i].KeyHash>>shift)]++
		}
		if counts[byte(src[0].KeyHash>>shift)] == len(src) {
			continue // every key has this byte: the pass would change nothing
		}
		sum := 0
		for d, n := range counts {
			counts[d] = sum
			sum += n
		}
		for i := range src {
			d := byte(src[i].KeyHash >> shift)
			dst[counts[d]] = src[i]
			counts[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &entries[0] {
		copy(entries, src)
	}
	return tmp
}

// enforceBudget forgets the oldest runs while the index is over its bound.
func (s *Store) enforceBudget() {
	for s.index.bytes.Load() > s.cfg.IndexBytesMax {
		set := s.runs.Load()
		if len(set.byID) <= 1 {
			return
		}
		var oldest *run
		for _, r := range set.byID {
			if oldest == nil || r.number < oldest.number {
				oldest = r
			}
		}
		next := s.without(set, oldest)
		s.forget(next, oldest, "index over IndexBytesMax")
		s.runs.Store(next)
		s.index.compact(next)
		s.generation.Add(1)
	}
}

func (s *Store) forget(set *runSet, r *run, why string) {
	s.forgottenEarly.Add(uint64(r.count))
	s.cfg.Logger.Error("idempotency: keys forgotten before their window", "reason", why, "keys", r.count, "run", r.path)
	delete(set.byID, r.id)
	s.index.stale.Store(true)
	r.dropOpen()
	s.removeFile(r)
}

func (s *Store) without(set *runSet, drop ...*run) *runSet {
	next := &runSet{byID: make(map[uint32]*run, len(set.byID))}
	for id, r := range set.byID {
		next.byID[id] = r
	}
	for _, r := range drop {
		delete(next.byID, r.id)
	}
	return next
}

func (s *Store) removeFile(r *run) {
	if err := s.cfg.FS.Remove(r.path); err != nil {
		s.cfg.Logger.Error("idempotency: remove run", "run", r.path, "err", err)
	}
}

// expire removes the runs whose newest key is older than the window.
func (s *Store) expire() error {
	cutoff := s.cfg.Now() - int64(s.cfg.Window)
	if err := s.expireOrdered(cutoff); err != nil {
		return err
	}
	set := s.runs.Load()
	var old []*run
	for _, r := range set.byID {
		if r.maxAt <= cutoff {
			old = append(old, r)
		}
	}
	if len(old) == 0 {
		return nil
	}
	next := s.without(set, old...)
	s.index.stale.Store(true)
	s.runs.Store(next)
	// Rehashing costs a pass over the whole index, so it waits until
	// removed runs hold half the slots; until then inserts reuse them.
	var live int64
	for _, r := range next.byID {
		live += int64(r.count)
	}
	if s.index.used.Load() > 2*live {
		s.index.compact(next)
	}
	s.generation.Add(1)
	for _, r := range old {
		r.dropOpen()
		if err := s.cfg.FS.Remove(r.path); err != nil {
			return fmt.Errorf("remove run %s: %w", r.path, err)
		}
	}
	// Removal needs no directory fsync for safety: a run that reappears
	// after a crash holds keys past their window, which lookups ignore.
	return nil
}

// Stats returns the store's figures.
func (s *Store) Stats() Stats {
	set := s.runs.Load()
	st := Stats{Runs: len(set.byID), IndexBytes: s.index.bytes.Load(), ForgottenEarly: s.forgottenEarly.Load()}
	for _, r := range set.byID {
		st.Keys += int64(r.count)
		if st.OldestAt == 0 || r.minAt < st.OldestAt {
			st.OldestAt = r.minAt
		}
	}
	t := &s.ordered
	st.OrderedKeys, st.OrderedRuns, st.OrderedIndexBytes = t.keys.Load(), int(t.count.Load()), t.bytes.Load()
	st.OrderedForgottenEarly, st.Horizon = s.orderedForgottenEarly.Load(), t.horizon.Load()
	if at := t.oldest.Load(); at != 0 && (st.OldestAt == 0 || at < st.OldestAt) {
		st.OldestAt = at
	}
	return st
}

// Close stops the writer; batches still queued are answered ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	close(s.stop)
	s.wg.Wait()
	for {
		select {
		case sub := <-s.queue:
			sub.done(ErrClosed)
			continue
		default:
		}
		break
	}
	for _, r := range s.runs.Load().byID {
		r.dropOpen()
	}
	s.closeOrdered()
	return nil
}

// Run layout (little-endian):
//
//	header: "FESTIDX1" | u32 count | i64 minAt | i64 maxAt | u32 crc32c(header[:28])
//	blocks of blockEntries entries (the last may be shorter), each followed
//	by u32 crc32c(its entries)
//	entry (entryBytes): u64 keyHash | u64 requestHash | u64 seq | i64 at | u32 partition
//
// Entries are sorted by keyHash. A lookup reads and checks one block, so
// damage that happens after Open is refused (ErrDamaged), never answered.
const (
	runMagic    = "FESTIDX1"
	headerBytes = 32
	entryBytes  = 36
	// blockEntries is the number of entries per block and per in-memory
	// fence (the first key hash of each block): a lookup reads one block of
	// 2,308 bytes.
	blockEntries = 64
	blockBytes   = blockEntries*entryBytes + 4
)

// runBytes is the size of a run of count entries.
func runBytes(count int) int {
	return headerBytes + count*entryBytes + (count+blockEntries-1)/blockEntries*4
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeRun(entries []Entry) []byte {
	b := make([]byte, 0, runBytes(len(entries)))
	minAt, maxAt := entries[0].At, entries[0].At
	for i := range entries {
		minAt, maxAt = min(minAt, entries[i].At), max(maxAt, entries[i].At)
	}
	b = append(b, runMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	b = binary.LittleEndian.AppendUint64(b, uint64(minAt))
	b = binary.LittleEndian.AppendUint64(b, uint64(maxAt))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	for first := 0; first < len(entries); first += blockEntries {
		start := len(b)
		for i := first; i < min(first+blockEntries, len(entries)); i++ {
			b = appendEntry(b, &entries[i])
		}
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
	}
	return b
}

func appendEntry(b []byte, e *Entry) []byte {
	b = binary.LittleEndian.AppendUint64(b, e.KeyHash)
	b = binary.LittleEndian.AppendUint64(b, e.RequestHash)
	b = binary.LittleEndian.AppendUint64(b, e.Seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(e.At))
	return binary.LittleEndian.AppendUint32(b, e.Partition)
}

func decodeEntry(b []byte) Entry {
	return Entry{
		KeyHash:     binary.LittleEndian.Uint64(b),
		RequestHash: binary.LittleEndian.Uint64(b[8:]),
		Seq:         binary.LittleEndian.Uint64(b[16:]),
		At:          int64(binary.LittleEndian.Uint64(b[24:])),
		Partition:   binary.LittleEndian.Uint32(b[32:]),
	}
}

// decodeRun checks a whole run file and returns its entries.
func decodeRun(path string, b []byte) ([]Entry, error) {
	if len(b) < headerBytes+4 || string(b[:len(runMagic)]) != runMagic {
		return nil, fmt.Errorf("%w: %s at offset 0: not a run", ErrDamaged, path)
	}
	if crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
		return nil, fmt.Errorf("%w: %s at offset 0: header checksum", ErrDamaged, path)
	}
	count := int(binary.LittleEndian.Uint32(b[8:]))
	if count == 0 || len(b) != runBytes(count) {
		return nil, fmt.Errorf("%w: %s at offset 8: %d entries in %d bytes", ErrDamaged, path, count, len(b))
	}
	for off := headerBytes; off < len(b); off += blockBytes {
		end := min(off+blockBytes, len(b)) - 4
		if crc32.Checksum(b[off:end], castagnoli) != binary.LittleEndian.Uint32(b[end:]) {
			return nil, fmt.Errorf("%w: %s at offset %d: block checksum", ErrDamaged, path, off)
		}
	}
	minAt, maxAt := int64(binary.LittleEndian.Uint64(b[12:])), int64(binary.LittleEndian.Uint64(b[20:]))
	entries := make([]Entry, count)
	for i := range entries {
		off := headerBytes + i/blockEntries*blockBytes + i%blockEntries*entryBytes
		e := decodeEntry(b[off:])
		switch {
		case e.KeyHash == 0:
			return nil, fmt.Errorf("%w: %s at offset %d: zero key hash", ErrDamaged, path, off)
		case i > 0 && e.KeyHash < entries[i-1].KeyHash:
			return nil, fmt.Errorf("%w: %s at offset %d: keys out of order", ErrDamaged, path, off)
		case e.At < minAt || e.At > maxAt:
			return nil, fmt.Errorf("%w: %s at offset %d: time outside the run's range", ErrDamaged, path, off)
		}
		entries[i] = e
	}
	return entries, nil
}

// run is one live run file.
type run struct {
	id     uint32
	number uint64
	path   string
	// fs opens the file for a lookup that reads it: a day of runs is
	// tens of thousands of files, too many to hold open. The newest
	// openRunsMax runs, where retries land most, keep a handle in f,
	// guarded by mu: readers hold it shared while they read, and the
	// writer closes the handle under it exclusively.
	fs     vfs.FS
	mu     sync.RWMutex
	f      vfs.File
	count  int
	minAt  int64
	maxAt  int64
	fences []uint64
}

func newRun(fsys vfs.FS, path string, number uint64, entries []Entry) *run {
	r := &run{id: runID(number), number: number, path: path, fs: fsys, count: len(entries), minAt: entries[0].At, maxAt: entries[0].At}
	r.fences = make([]uint64, 0, (len(entries)+blockEntries-1)/blockEntries)
	for i := range entries {
		r.minAt, r.maxAt = min(r.minAt, entries[i].At), max(r.maxAt, entries[i].At)
		if i%blockEntries == 0 {
			r.fences = append(r.fences, entries[i].KeyHash)
		}
	}
	return r
}

func loadRun(fsys vfs.FS, path string, number uint64) (*run, []Entry, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open run %s: %w", path, err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("size of run %s: %w", path, err)
	}
	b := make([]byte, size)
	_, err = f.ReadAt(b, 0)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("read run %s: %w", path, err)
	}
	entries, err := decodeRun(path, b)
	if err != nil {
		return nil, nil, err
	}
	return newRun(fsys, path, number, entries), entries, nil
}

// openRunsMax is the number of newest runs that keep an open handle.
const openRunsMax = 256

// keepOpen opens r's handle (writer only); a failure only costs speed.
func (r *run) keepOpen() {
	f, err := r.fs.OpenFile(r.path, os.O_RDONLY, 0)
	if err != nil {
		return
	}
	r.mu.Lock()
	if r.f == nil {
		r.f, f = f, nil
	}
	r.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

// dropOpen closes r's handle once no lookup is reading through it.
func (r *run) dropOpen() {
	r.mu.Lock()
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.mu.Unlock()
}

// readAt reads r at off through its handle, or by opening the file.
func (r *run) readAt(buf []byte, off int64) error {
	r.mu.RLock()
	if r.f != nil {
		_, err := r.f.ReadAt(buf, off)
		r.mu.RUnlock()
		return err
	}
	r.mu.RUnlock()
	f, err := r.fs.OpenFile(r.path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.ReadAt(buf, off)
	f.Close()
	return err
}

// find reads the block that may hold keyHash.
func (r *run) find(keyHash uint64) (Entry, bool, error) {
	// The last fence not above keyHash starts the only block that can
	// hold it (keys are unique within a run).
	i, found := slices.BinarySearch(r.fences, keyHash)
	if !found {
		if i == 0 {
			return Entry{}, false, nil
		}
		i--
	}
	n := min(blockEntries, r.count-i*blockEntries)
	buf := make([]byte, n*entryBytes+4)
	off := int64(headerBytes + i*blockBytes)
	err := r.readAt(buf, off)
	if errors.Is(err, os.ErrNotExist) {
		return Entry{}, false, nil // removed since the caller loaded the run set: past its window
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("read run %s at %d: %w", r.path, off, err)
	}
	body := buf[:n*entryBytes]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(buf[n*entryBytes:]) {
		return Entry{}, false, fmt.Errorf("%w: %s at offset %d: block checksum", ErrDamaged, r.path, off)
	}
	for j := 0; j < n; j++ {
		if binary.LittleEndian.Uint64(buf[j*entryBytes:]) == keyHash {
			return decodeEntry(buf[j*entryBytes:]), true, nil
		}
	}
	return Entry{}, false, nil
}
