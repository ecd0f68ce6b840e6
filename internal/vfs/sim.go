package vfs

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Sim is a simulated disk: an in-memory FS that is deterministic for a seed
// and loses, at a simulated power failure, exactly what a real disk may lose.
// It exists because kill -9 tests keep the page cache and so cannot tell
// "acknowledged after write" from "acknowledged after fsync". The model
// follows the spirit of Jepsen's LazyFS (unsynced writes dropped at a crash)
// and of TigerBeetle's storage fault model (torn writes, bit rot, failing
// fsync), in our own simpler form.
//
// # State
//
// A file (an inode) holds its current bytes, which reads see, and its durable
// bytes as of its last successful Sync. The writes and truncations since that
// Sync are kept in order as its unsynced operations. A directory holds its
// current namespace (name to inode) and its durable namespace as of its last
// successful SyncDir; the creations, renames and removals since are kept in
// order as its unsynced entries. MkdirAll is durable at once: directories are
// made once, at start-up, and the simulation does not model losing them.
//
// # Crash
//
// Crash simulates a power failure and the reboot after it. Each directory
// keeps its durable namespace plus a random prefix of its unsynced entries,
// replayed in order: a creation not followed by SyncDir may vanish, an
// unsynced rename may revert (the old name comes back and the target keeps its
// old inode), an unsynced removal may come back. Then every file reachable
// from a namespace keeps its durable bytes plus its unsynced operations in
// order up to a random one, of which a random byte prefix survives when it is
// a write (a truncation is either applied or not). Unsynced data therefore
// survives only as an ordered prefix, cut at any byte; synced data always
// survives, though the name leading to it survives only if its directory was
// synced after it was created. With SimFaults.CrashZeroFillProbability the
// part of the cut write that was lost may instead read back as zeros where it
// extended the file, as on file systems that persist a file's size before its
// data. Every handle opened before the crash becomes invalid (its operations
// fail with an error wrapping ErrCrashed) and every lock is released. The Sim
// is then the disk after the reboot: current bytes equal durable bytes.
//
// # Injected faults
//
//   - FlipBit and FlipBitAt flip one bit of a file's durable data (bit rot).
//     Reads see the flip at once unless an unsynced write covers the byte.
//   - FailNextSync and FailNextSyncDir make the next fsync of a matching file
//     or directory fail with an error wrapping syscall.EIO and ErrInjected.
//   - ShortNextWrite makes the next write to a matching file persist a random
//     strict prefix of its data (unsynced, like any write) and fail with an
//     error wrapping syscall.EIO and ErrInjected.
//   - NoSpaceAfter lets the next n bytes be written, across all files, and
//     then fails every write with an error wrapping syscall.ENOSPC; a write
//     that straddles the limit persists the part that fits. The disk stays
//     full until NoSpaceAfter is called with a negative n.
//   - SimFaults gives per-operation probabilities of the same faults, for
//     random tests; its Match limits them to some files.
//
// A failed file Sync follows Linux's behaviour after a writeback error (the
// "fsyncgate" semantics): the kernel may have marked the dirty pages clean
// without writing them, and a later fsync succeeds without writing them
// either. So each unsynced write at a failed Sync is, at random, kept
// (it may still become durable), dropped (it never reaches the disk, though
// reads keep seeing it until the crash) or zeroed (its range may reach the
// disk as zeros). A caller that continues after a failed Sync cannot know
// which. A failed SyncDir leaves its entries unsynced.
//
// One-shot faults stay armed, and a full disk stays full, across a Crash:
// they model the hardware, which a reboot does not repair. The helpers that
// take a name (FlipBit, ReadDurable, FileMode) look it up in the current
// namespace.
//
// # Determinism and limits
//
// Every random choice comes from one generator seeded by SimConfig.Seed, so
// the same seed and the same sequence of operations give the same result;
// concurrent callers must order their operations themselves for a replay to
// be exact. History lists the faults injected and what each crash kept, for
// printing with a failing seed. Renames across directories are modelled as a
// creation in the new directory and a removal in the old, each made durable
// by its own SyncDir (a real file system makes them atomic). Directories
// cannot be removed or renamed, and only the os.O_* flags the journal uses
// are accepted. The Sim is safe for concurrent use; one mutex serialises it.
type Sim struct {
	mu sync.Mutex
	// REQUIRES: mu for every field below.
	cfg SimConfig
	rng *rand.Rand
	// dirs maps a cleaned directory path to its state; "/" and "." always
	// exist.
	dirs map[string]*simDir
	// locks maps a cleaned path to its holder.
	locks map[string]*simLock
	// generation counts crashes; a handle from an older generation is stale.
	generation uint64
	inodeLast  uint64
	injections []simInjection
	// noSpaceBytesLeft is how many bytes may still be written before ENOSPC,
	// or negative for no limit.
	noSpaceBytesLeft int64
	stats            SimStats
	history          simHistory
	// mutations counts the operations that change the disk (writes,
	// truncations, syncs, creations, renames, removals); crashAtMutation,
	// when positive, is the count at which CrashAtMutation crashes.
	mutations       int64
	crashAtMutation int64
}

// SimConfig configures a Sim. The zero value is valid: seed 0, no
// probabilistic faults, the default history size.
type SimConfig struct {
	// Seed seeds every random choice of the simulation.
	Seed uint64
	// Faults are the probabilistic faults; zero means none.
	Faults SimFaults
	// HistoryEntriesMax bounds the fault history kept for History; beyond
	// it the oldest entries are dropped (and counted). Zero means
	// SimHistoryEntriesDefault.
	HistoryEntriesMax int
}

// SimHistoryEntriesDefault is the default bound of the fault history: enough
// for the faults and crashes of a long random test, small enough to print.
const SimHistoryEntriesDefault = 4096

// SimFaults are per-operation fault probabilities, each in [0, 1], for random
// tests. An operation on a file or directory that Match rejects never fails.
type SimFaults struct {
	// Match selects the paths faults may hit; nil selects every path.
	Match func(name string) bool
	// SyncFailProbability is the chance that a file Sync fails (with the
	// fsyncgate semantics described on Sim).
	SyncFailProbability float64
	// SyncDirFailProbability is the chance that a SyncDir fails.
	SyncDirFailProbability float64
	// ShortWriteProbability is the chance that a write persists a strict
	// prefix and fails with EIO.
	ShortWriteProbability float64
	// NoSpaceWriteProbability is the chance that a write persists a strict
	// prefix and fails with ENOSPC.
	NoSpaceWriteProbability float64
	// CrashZeroFillProbability is the chance, for each file whose last
	// surviving write is cut by a crash, that the lost part of that write
	// reads back as zeros where it extended the file.
	CrashZeroFillProbability float64
}

// Validate reports whether every probability lies in [0, 1].
func (f SimFaults) Validate() error {
	for _, p := range []struct {
		name  string
		value float64
	}{
		{"sync fail", f.SyncFailProbability},
		{"sync dir fail", f.SyncDirFailProbability},
		{"short write", f.ShortWriteProbability},
		{"no space write", f.NoSpaceWriteProbability},
		{"crash zero fill", f.CrashZeroFillProbability},
	} {
		// The negated form also rejects NaN.
		if !(p.value >= 0 && p.value <= 1) {
			return fmt.Errorf("%s probability %v outside [0, 1]", p.name, p.value)
		}
	}
	return nil
}

// Validate reports whether the configuration can be used.
func (c SimConfig) Validate() error {
	if c.HistoryEntriesMax < 0 {
		return fmt.Errorf("history entries max %d is negative", c.HistoryEntriesMax)
	}
	if err := c.Faults.Validate(); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	return nil
}

// SimStats counts what a Sim has done.
type SimStats struct {
	// Operations counts the calls of FS and File methods, crashes and bit
	// flips; History entries are numbered by it.
	Operations     int64
	Writes         int64
	BytesWritten   int64
	Syncs          int64
	SyncsFailed    int64
	SyncDirs       int64
	SyncDirsFailed int64
	ShortWrites    int64
	NoSpaceWrites  int64
	BitFlips       int64
	Crashes        int64
}

var (
	// ErrCrashed is wrapped by every operation on a handle or lock taken
	// before a simulated crash.
	ErrCrashed = errors.New("handle from before a simulated crash")
	// ErrInjected is wrapped, beside the errno, by every error the
	// simulator injects, so that a test can tell them from real ones.
	ErrInjected = errors.New("fault injected by the storage simulator")
)

// NewSim returns an empty simulated disk.
func NewSim(cfg SimConfig) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("simulated disk config: %w", err)
	}
	if cfg.HistoryEntriesMax == 0 {
		cfg.HistoryEntriesMax = SimHistoryEntriesDefault
	}
	s := &Sim{
		cfg:              cfg,
		rng:              rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^simSeedStream)),
		dirs:             map[string]*simDir{"/": newSimDir(), ".": newSimDir()},
		locks:            map[string]*simLock{},
		noSpaceBytesLeft: -1,
		history:          simHistory{entriesMax: cfg.HistoryEntriesMax},
	}
	return s, nil
}

var (
	_ FS   = (*Sim)(nil)
	_ File = (*simFile)(nil)
)

// simSeedStream is the second word of the generator's state, fixed so that a
// single seed names the whole run.
const simSeedStream = 0x9e3779b97f4a7c15

// simDir is one directory.
type simDir struct {
	files   map[string]*simInode
	durable map[string]*simInode
	ops     []simDirOp
}

func newSimDir() *simDir {
	return &simDir{files: map[string]*simInode{}, durable: map[string]*simInode{}}
}

type simDirOpKind uint8

const (
	simDirCreate simDirOpKind = iota + 1
	simDirRename
	simDirRemove
)

// simDirOp is one unsynced directory entry change.
type simDirOp struct {
	kind simDirOpKind
	name string
	// newName is the target of a rename.
	newName string
	// inode is the file created, for a creation.
	inode *simInode
}

func (op simDirOp) String() string {
	switch op.kind {
	case simDirCreate:
		return "create " + op.name
	case simDirRename:
		return "rename " + op.name + " " + op.newName
	case simDirRemove:
		return "remove " + op.name
	}
	panic(fmt.Sprintf("vfs: directory operation of unknown kind %d", op.kind))
}

// apply replays op on the namespace ns.
func (op simDirOp) apply(ns map[string]*simInode) {
	switch op.kind {
	case simDirCreate:
		ns[op.name] = op.inode
	case simDirRename:
		ino, ok := ns[op.name]
		if !ok {
			panic(fmt.Sprintf("vfs: replaying rename of %s, absent from the namespace", op.name))
		}
		ns[op.newName] = ino
		delete(ns, op.name)
	case simDirRemove:
		if _, ok := ns[op.name]; !ok {
			panic(fmt.Sprintf("vfs: replaying removal of %s, absent from the namespace", op.name))
		}
		delete(ns, op.name)
	default:
		panic(fmt.Sprintf("vfs: directory operation of unknown kind %d", op.kind))
	}
}

// simInode is one file's data.
type simInode struct {
	id      uint64
	perm    os.FileMode
	data    []byte
	durable []byte
	ops     []simFileOp
}

// simFileOp is one unsynced write or truncation.
type simFileOp struct {
	truncate bool
	// offset is where a write starts; size is a truncation's new size.
	offset int64
	size   int64
	data   []byte
}

func (op simFileOp) String() string {
	if op.truncate {
		return fmt.Sprintf("truncate %d", op.size)
	}
	return fmt.Sprintf("write %d+%d", op.offset, len(op.data))
}

// simWrite writes p at off into buf, growing it with zeros as needed.
func simWrite(buf []byte, off int64, p []byte) []byte {
	end := int(off) + len(p)
	if oldLen := len(buf); end > oldLen {
		buf = slices.Grow(buf, end-oldLen)[:end]
		// A gap between the old end and off reads as zeros, as a hole does.
		clear(buf[oldLen:end])
	}
	copy(buf[off:], p)
	return buf
}

// simTruncate resizes buf to size, growing it with zeros.
func simTruncate(buf []byte, size int64) []byte {
	if int(size) <= len(buf) {
		// Clear what is cut off so that a later growth reads zeros.
		clear(buf[size:])
		return buf[:size]
	}
	oldLen := len(buf)
	buf = slices.Grow(buf, int(size)-oldLen)[:size]
	clear(buf[oldLen:])
	return buf
}

func (op simFileOp) apply(buf []byte) []byte {
	if op.truncate {
		return simTruncate(buf, op.size)
	}
	return simWrite(buf, op.offset, op.data)
}

// simInjection is a one-shot fault armed by FailNextSync and its siblings.
type simInjection struct {
	kind  simInjectionKind
	match func(name string) bool
}

type simInjectionKind uint8

const (
	simInjectSync simInjectionKind = iota + 1
	simInjectSyncDir
	simInjectShortWrite
)

// simHistory keeps the newest entriesMax entries in a ring.
type simHistory struct {
	entriesMax int
	entries    []string
	next       int
	dropped    int64
}

func (h *simHistory) add(entry string) {
	if len(h.entries) < h.entriesMax {
		h.entries = append(h.entries, entry)
		return
	}
	h.entries[h.next] = entry
	h.next = (h.next + 1) % h.entriesMax
	h.dropped++
}

func (h *simHistory) list() []string {
	out := make([]string, 0, len(h.entries)+1)
	if h.dropped > 0 {
		out = append(out, fmt.Sprintf("(%d older entries dropped)", h.dropped))
	}
	out = append(out, h.entries[h.next:]...)
	return append(out, h.entries[:h.next]...)
}

// logf records a history entry. REQUIRES: s.mu.
func (s *Sim) logf(format string, args ...any) {
	s.history.add(fmt.Sprintf("op %d: ", s.stats.Operations) + fmt.Sprintf(format, args...))
}

// roll reports whether a fault of probability p hits name. It draws from
// the generator only when the fault is possible, so that a configuration
// without faults makes the same other choices. REQUIRES: s.mu.
func (s *Sim) roll(p float64, name string) bool {
	if p <= 0 {
		return false
	}
	if s.cfg.Faults.Match != nil && !s.cfg.Faults.Match(name) {
		return false
	}
	return s.rng.Float64() < p
}

// takeInjection disarms and reports the first armed fault of kind matching
// name. REQUIRES: s.mu.
func (s *Sim) takeInjection(kind simInjectionKind, name string) bool {
	for i, inj := range s.injections {
		if inj.kind == kind && inj.match(name) {
			s.injections = slices.Delete(s.injections, i, i+1)
			return true
		}
	}
	return false
}

// injectedError is the error of an injected fault: it wraps both errno and
// ErrInjected.
func injectedError(op, name string, errno syscall.Errno) error {
	return &os.PathError{Op: op, Path: name, Err: fmt.Errorf("%w (%w)", errno, ErrInjected)}
}

// lookupDir returns the directory at the cleaned path dir. REQUIRES: s.mu.
func (s *Sim) lookupDir(op, name, dir string) (*simDir, error) {
	d, ok := s.dirs[dir]
	if ok {
		return d, nil
	}
	if s.isFile(dir) {
		return nil, &os.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
	}
	return nil, &os.PathError{Op: op, Path: name, Err: syscall.ENOENT}
}

// isFile reports whether the cleaned path names a file. REQUIRES: s.mu.
func (s *Sim) isFile(path string) bool {
	d, ok := s.dirs[filepath.Dir(path)]
	if !ok {
		return false
	}
	_, ok = d.files[filepath.Base(path)]
	return ok
}

// simOpenFlagsKnown are the os.O_* flags OpenFile models; others (O_SYNC,
// for one) would need semantics the simulation does not have.
const simOpenFlagsKnown = os.O_RDONLY | os.O_WRONLY | os.O_RDWR | os.O_APPEND |
	os.O_CREATE | os.O_EXCL | os.O_TRUNC | syscall.O_CLOEXEC

// simAccessMask selects O_RDONLY, O_WRONLY or O_RDWR.
const simAccessMask = os.O_RDONLY | os.O_WRONLY | os.O_RDWR

// OpenFile opens name. perm is recorded for FileMode.
func (s *Sim) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	return s.openFileAs(0, name, flag, perm)
}

func (s *Sim) openFileAs(generation uint64, name string, flag int, perm os.FileMode) (File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Operations++
	if generation != 0 && generation-1 != s.generation {
		return nil, &os.PathError{Op: "open", Path: name, Err: ErrCrashed}
	}
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		if err := s.mutateLocked("open", name); err != nil {
			return nil, err
		}
	}
	if flag&^simOpenFlagsKnown != 0 {
		return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("flags %#x not simulated: %w", flag&^simOpenFlagsKnown, syscall.EINVAL)}
	}
	access := flag & simAccessMask
	if access != os.O_RDONLY && access != os.O_WRONLY && access != os.O_RDWR {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EINVAL}
	}
	path := filepath.Clean(name)
	if _, ok := s.dirs[path]; ok {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	}
	d, err := s.lookupDir("open", name, filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	base := filepath.Base(path)
	writable := access != os.O_RDONLY
	ino, ok := d.files[base]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EEXIST}
	case ok:
		if flag&os.O_TRUNC != 0 && writable {
			ino.data = simTruncate(ino.data, 0)
			ino.ops = append(ino.ops, simFileOp{truncate: true, size: 0})
		}
	case flag&os.O_CREATE == 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOENT}
	default:
		ino = s.createLocked(d, base, perm)
	}
	return &simFile{
		sim:        s,
		inode:      ino,
		name:       name,
		path:       path,
		generation: s.generation,
		readable:   access != os.O_WRONLY,
		writable:   writable,
		appending:  flag&os.O_APPEND != 0,
	}, nil
}

// createLocked creates an empty file base in d. REQUIRES: s.mu.
func (s *Sim) createLocked(d *simDir, base string, perm os.FileMode) *simInode {
	s.inodeLast++
	ino := &simInode{id: s.inodeLast, perm: perm.Perm()}
	d.files[base] = ino
	d.ops = append(d.ops, simDirOp{kind: simDirCreate, name: base, inode: ino})
	return ino
}

// Remove removes the file name; the removal is unsynced until SyncDir.
func (s *Sim) Remove(name string) error { return s.removeAs(0, name) }

func (s *Sim) removeAs(generation uint64, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Operations++
	if generation != 0 && generation-1 != s.generation {
		return &os.PathError{Op: "remove", Path: name, Err: ErrCrashed}
	}
	if err := s.mutateLocked("remove", name); err != nil {
		return err
	}
	path := filepath.Clean(name)
	if _, ok := s.dirs[path]; ok {
		return &os.PathError{Op: "remove", Path: name, Err: fmt.Errorf("directories not simulated: %w", syscall.EISDIR)}
	}
	d, err := s.lookupDir("remove", name, filepath.Dir(path))
	if err != nil {
		return err
	}
	base := filepath.Base(path)
	if _, ok := d.files[base]; !ok {
		return &os.PathError{Op: "remove", Path: name, Err: syscall.ENOENT}
	}
	delete(d.files, base)
	d.ops = append(d.ops, simDirOp{kind: simDirRemove, name: base})
	return nil
}

// Rename moves the file oldpath to newpath, replacing any file there; the
// change is unsynced until SyncDir.
func (s *Sim) Rename(oldpath, newpath string) error { return s.renameAs(0, oldpath, newpath) }

func (s *Sim) renameAs(generation uint64, oldpath, newpath string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Operations++
	if generation != 0 && generation-1 != s.generation {
		return &os.PathError{Op: "rename", Path: oldpath, Err: ErrCrashed}
	}
	if err := s.mutateLocked("rename", oldpath); err != nil {
		return err
	}
	linkError := func(errno error) error {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errno}
	}
	oldClean, newClean := filepath.Clean(oldpath), filepath.Clean(newpath)
	if _, ok := s.dirs[oldClean]; ok {
		return linkError(fmt.Errorf("directories not simulated: %w", syscall.EISDIR))
	}
	if _, ok := s.dirs[newClean]; ok {
		return linkError(syscall.EISDIR)
	}
	oldDir, ok := s.dirs[filepath.Dir(oldClean)]
	if !ok {
		return linkError(syscall.ENOENT)
	}
	oldBase, newBase := filepath.Base(oldClean), filepath.Base(newClean)
	ino, ok := oldDir.files[oldBase]
	if !ok {
		return linkError(syscall.ENOENT)
	}
	newDir, ok := s.dirs[filepath.Dir(newClean)]
	if !ok {
		return linkError(syscall.ENOENT)
	}
	if oldClean == newClean {
		return nil
	}
	if oldDir == newDir {
		oldDir.files[newBase] = ino
		delete(oldDir.files, oldBase)
		oldDir.ops = append(oldDir.ops, simDirOp{kind: simDirRename, name: oldBase, newName: newBase})
		return nil
	}
	newDir.files[newBase] = ino
	newDir.ops = append(newDir.ops, simDirOp{kind: simDirCreate, name: newBase, inode: ino})
	delete(oldDir.files, oldBase)
	oldDir.ops = append(oldDir.ops, simDirOp{kind: simDirRemove, name: oldBase})
	return nil
}

// MkdirAll creates name and its parents, durably at once.
func (s *Sim) MkdirAll(name string, perm os.FileMode) error { return s.mkdirAllAs(0, name, perm) }

func (s *Sim) mkdirAllAs(generation uint64, name string, perm os.FileMode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Operations++
	if generation != 0 && generation-1 != s.generation {
		return &os.PathError{Op: "mkdir", Path: name, Err: ErrCrashed}
	}
	var missing []string
	for p := filepath.Clean(name); ; p = filepath.Dir(p) {
		if _, ok := s.dirs[p]; ok {
			break
		}
		if s.isFile(p) {
			return &os.PathError{Op: "mkdir", Path: p, Err: syscall.ENOTDIR}
		}
		missing = append(missing, p)
	}
	for _, p := range missing {
		s.dirs[p] = newSimDir()
	}
	return nil
}

// ReadDir returns the sorted names of the files in name.
func (s *Sim) ReadDir(name string) ([]string, error) { return s.readDirAs(0, name) }

func (s *Sim) readDirAs(generation uint64, name string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Operations++
	if generation != 0 && generation-1 != s.generation {
		return nil, &os.PathError{Op: "open", Path: name, Err: ErrCrashed}
	}
	d, err := s.lookupDir("open", name, filepath.Clean(name))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(d.files))
	for n := range d.files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// SyncDir makes the entry changes of name durable, unless a fault fails it.
func (s *Sim) SyncDir(name string) error { return s.syncDirAs(0, name) }

func (s *Sim) syncDirAs(generation uint64, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Operations++
	if generation != 0 && generation-1 != s.generation {
		return &os.PathError{Op: "sync", Path: name, Err: ErrCrashed}
	}
	if err := s.mutateLocked("sync", name); err != nil {
		return err
	}
	path := filepath.Clean(name)
	d, err := s.lookupDir("open", name, path)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", name, err)
	}
	s.stats.SyncDirs++
	if s.takeInjection(simInjectSyncDir, path) || s.roll(s.cfg.Faults.SyncDirFailProbability, path) {
		s.stats.SyncDirsFailed++
		s.logf("fail fsync of directory %s, %d entries stay unsynced", path, len(d.ops))
		return fmt.Errorf("fsync directory %s: %w", name, injectedError("sync", name, syscall.EIO))
	}
	d.durable = maps.Clone(d.files)
	d.ops = nil
	return nil
}

// simLock is a lock taken with Lock.
type simLock struct {
	sim        *Sim
	path       string
	generation uint64
	released   bool
}

// Lock takes the lock on name, creating the file as the real Lock does.
func (s *Sim) Lock(name string) (io.Closer, error) { return s.lockAs(0, name) }

func (s *Sim) lockAs(generation uint64, name string) (io.Closer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Operations++
	if generation != 0 && generation-1 != s.generation {
		return nil, &os.PathError{Op: "lock", Path: name, Err: ErrCrashed}
	}
	path := filepath.Clean(name)
	if _, ok := s.dirs[path]; ok {
		return nil, fmt.Errorf("open lock file: %w", &os.PathError{Op: "open", Path: name, Err: syscall.EISDIR})
	}
	d, err := s.lookupDir("open", name, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if _, ok := d.files[filepath.Base(path)]; !ok {
		s.createLocked(d, filepath.Base(path), 0o600)
	}
	if _, held := s.locks[path]; held {
		return nil, fmt.Errorf("%w: %s", ErrLocked, filepath.Dir(name))
	}
	l := &simLock{sim: s, path: path, generation: s.generation}
	s.locks[path] = l
	return l, nil
}

// Close releases the lock.
func (l *simLock) Close() error {
	s := l.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Operations++
	if l.released {
		return &os.PathError{Op: "close", Path: l.path, Err: os.ErrClosed}
	}
	l.released = true
	if l.generation != s.generation {
		return &os.PathError{Op: "close", Path: l.path, Err: ErrCrashed}
	}
	if s.locks[l.path] != l {
		panic(fmt.Sprintf("vfs: lock on %s released while another holder has it", l.path))
	}
	delete(s.locks, l.path)
	return nil
}

// simFile is an open handle.
type simFile struct {
	sim   *Sim
	inode *simInode
	// name is as opened, for Name and errors; path is cleaned, for faults'
	// Match.
	name       string
	path       string
	generation uint64
	offset     int64
	readable   bool
	writable   bool
	appending  bool
	closed     bool
}

// simAccess is the access an operation on a handle needs.
type simAccess uint8

const (
	simAccessAny simAccess = iota
	simAccessRead
	simAccessWrite
)

// check reports why op may not run on f. REQUIRES: f.sim.mu.
func (f *simFile) check(op string, access simAccess) error {
	f.sim.stats.Operations++
	if (access == simAccessWrite || op == "sync") && !f.closed && f.generation == f.sim.generation {
		if err := f.sim.mutateLocked(op, f.name); err != nil {
			return err
		}
	}
	switch {
	case f.closed:
		return &os.PathError{Op: op, Path: f.name, Err: os.ErrClosed}
	case f.generation != f.sim.generation:
		return &os.PathError{Op: op, Path: f.name, Err: ErrCrashed}
	case access == simAccessWrite && !f.writable:
		return &os.PathError{Op: op, Path: f.name, Err: syscall.EBADF}
	case access == simAccessRead && !f.readable:
		return &os.PathError{Op: op, Path: f.name, Err: syscall.EBADF}
	}
	return nil
}

func (f *simFile) Name() string { return f.name }

func (f *simFile) Read(p []byte) (int, error) {
	f.sim.mu.Lock()
	defer f.sim.mu.Unlock()
	if err := f.check("read", simAccessRead); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.offset >= int64(len(f.inode.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.inode.data[f.offset:])
	f.offset += int64(n)
	return n, nil
}

func (f *simFile) ReadAt(p []byte, off int64) (int, error) {
	f.sim.mu.Lock()
	defer f.sim.mu.Unlock()
	if err := f.check("read", simAccessRead); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &os.PathError{Op: "readat", Path: f.name, Err: syscall.EINVAL}
	}
	if off >= int64(len(f.inode.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, f.inode.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *simFile) Write(p []byte) (int, error) {
	f.sim.mu.Lock()
	defer f.sim.mu.Unlock()
	if err := f.check("write", simAccessWrite); err != nil {
		return 0, err
	}
	off := f.offset
	if f.appending {
		off = int64(len(f.inode.data))
	}
	n, err := f.writeLocked(p, off)
	f.offset = off + int64(n)
	return n, err
}

func (f *simFile) WriteAt(p []byte, off int64) (int, error) {
	f.sim.mu.Lock()
	defer f.sim.mu.Unlock()
	if err := f.check("write", simAccessWrite); err != nil {
		return 0, err
	}
	if f.appending {
		return 0, &os.PathError{Op: "writeat", Path: f.name, Err: fmt.Errorf("file opened with O_APPEND: %w", syscall.EINVAL)}
	}
	if off < 0 {
		return 0, &os.PathError{Op: "writeat", Path: f.name, Err: syscall.EINVAL}
	}
	return f.writeLocked(p, off)
}

// writeLocked writes p at off, after the faults decide how much of it gets
// written. REQUIRES: f.sim.mu.
func (f *simFile) writeLocked(p []byte, off int64) (int, error) {
	s := f.sim
	if len(p) == 0 {
		return 0, nil
	}
	path := f.path
	n := len(p)
	var err error
	switch {
	case s.takeInjection(simInjectShortWrite, path) || s.roll(s.cfg.Faults.ShortWriteProbability, path):
		n = s.rng.IntN(len(p))
		err = injectedError("write", f.name, syscall.EIO)
		s.stats.ShortWrites++
		s.logf("short write to %s at %d: %d of %d bytes", path, off, n, len(p))
	case s.roll(s.cfg.Faults.NoSpaceWriteProbability, path):
		n = s.rng.IntN(len(p))
		err = injectedError("write", f.name, syscall.ENOSPC)
		s.stats.NoSpaceWrites++
		s.logf("no space writing %s at %d: %d of %d bytes", path, off, n, len(p))
	}
	if s.noSpaceBytesLeft >= 0 && int64(n) > s.noSpaceBytesLeft {
		n = int(s.noSpaceBytesLeft)
		err = injectedError("write", f.name, syscall.ENOSPC)
		s.stats.NoSpaceWrites++
		s.logf("disk full writing %s at %d: %d of %d bytes", path, off, n, len(p))
	}
	if s.noSpaceBytesLeft >= 0 {
		s.noSpaceBytesLeft -= int64(n)
	}
	if n > 0 {
		ino := f.inode
		ino.data = simWrite(ino.data, off, p[:n])
		ino.ops = append(ino.ops, simFileOp{offset: off, data: slices.Clone(p[:n])})
	}
	s.stats.Writes++
	s.stats.BytesWritten += int64(n)
	return n, err
}

func (f *simFile) Seek(offset int64, whence int) (int64, error) {
	f.sim.mu.Lock()
	defer f.sim.mu.Unlock()
	if err := f.check("seek", simAccessAny); err != nil {
		return 0, err
	}
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = f.offset
	case io.SeekEnd:
		base = int64(len(f.inode.data))
	default:
		return 0, &os.PathError{Op: "seek", Path: f.name, Err: syscall.EINVAL}
	}
	if base+offset < 0 {
		return 0, &os.PathError{Op: "seek", Path: f.name, Err: syscall.EINVAL}
	}
	f.offset = base + offset
	return f.offset, nil
}

func (f *simFile) Close() error {
	f.sim.mu.Lock()
	defer f.sim.mu.Unlock()
	err := f.check("close", simAccessAny)
	f.closed = true
	return err
}

// Sync makes the file's unsynced operations durable, unless a fault fails
// it; then each unsynced write is kept, dropped or zeroed at random (see
// Sim).
func (f *simFile) Sync() error {
	s := f.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	// fsync is allowed on a read-only descriptor, as on Linux.
	if err := f.check("sync", simAccessAny); err != nil {
		return err
	}
	s.stats.Syncs++
	path := f.path
	ino := f.inode
	if s.takeInjection(simInjectSync, path) || s.roll(s.cfg.Faults.SyncFailProbability, path) {
		s.stats.SyncsFailed++
		s.failSyncLocked(path, ino)
		return injectedError("sync", f.name, syscall.EIO)
	}
	for _, op := range ino.ops {
		ino.durable = op.apply(ino.durable)
	}
	ino.ops = nil
	return nil
}

// simWriteFate is what a failed fsync did to one unsynced write.
type simWriteFate int

const (
	simWriteKept simWriteFate = iota
	simWriteDropped
	simWriteZeroed
	simWriteFates
)

// failSyncLocked decides the fate of each unsynced write of ino at a failed
// fsync. REQUIRES: s.mu.
func (s *Sim) failSyncLocked(path string, ino *simInode) {
	var fates [simWriteFates]int
	kept := ino.ops[:0]
	for _, op := range ino.ops {
		if op.truncate {
			kept = append(kept, op)
			continue
		}
		fate := simWriteFate(s.rng.IntN(int(simWriteFates)))
		fates[fate]++
		switch fate {
		case simWriteKept:
			kept = append(kept, op)
		case simWriteDropped:
		case simWriteZeroed:
			clear(op.data)
			kept = append(kept, op)
		default:
			panic(fmt.Sprintf("vfs: write fate %d out of range", fate))
		}
	}
	clear(ino.ops[len(kept):])
	ino.ops = kept
	s.logf("fail fsync of %s: unsynced writes kept %d, dropped %d, zeroed %d",
		path, fates[simWriteKept], fates[simWriteDropped], fates[simWriteZeroed])
}

func (f *simFile) Truncate(size int64) error {
	f.sim.mu.Lock()
	defer f.sim.mu.Unlock()
	if err := f.check("truncate", simAccessWrite); err != nil {
		return err
	}
	if size < 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	ino := f.inode
	ino.data = simTruncate(ino.data, size)
	ino.ops = append(ino.ops, simFileOp{truncate: true, size: size})
	return nil
}

func (f *simFile) Size() (int64, error) {
	f.sim.mu.Lock()
	defer f.sim.mu.Unlock()
	if err := f.check("stat", simAccessAny); err != nil {
		return 0, err
	}
	return int64(len(f.inode.data)), nil
}

// CrashAtMutation arranges a Crash just before the n-th operation that
// changes the disk from now on (a write, truncation, sync, creation, rename
// or removal; reads do not count), which then fails with ErrCrashed. With
// one writer at a time, that names a crash point exactly: the same seed and
// n crash at the same place. n <= 0 disarms it.
func (s *Sim) CrashAtMutation(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		s.crashAtMutation = 0
		return
	}
	s.crashAtMutation = s.mutations + n
}

// Mutations returns the number of disk-changing operations so far.
func (s *Sim) Mutations() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mutations
}

// mutateLocked counts a disk-changing operation and crashes first if
// CrashAtMutation named it. REQUIRES: s.mu.
func (s *Sim) mutateLocked(op, name string) error {
	s.mutations++
	if s.crashAtMutation > 0 && s.mutations >= s.crashAtMutation {
		s.crashAtMutation = 0
		s.logf("crash before mutation %d (%s %s)", s.mutations, op, name)
		s.crashLocked()
		return &os.PathError{Op: op, Path: name, Err: ErrCrashed}
	}
	return nil
}

// Crash simulates a power failure and the reboot after it (see Sim).
func (s *Sim) Crash() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crashLocked()
}

// crashLocked is Crash. REQUIRES: s.mu.
func (s *Sim) crashLocked() {
	s.stats.Operations++
	s.stats.Crashes++
	s.generation++
	clear(s.locks)
	s.logf("crash %d", s.stats.Crashes)
	paths := make([]string, 0, len(s.dirs))
	for p := range s.dirs {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		s.crashDirLocked(p, s.dirs[p])
	}
	// A file reachable under two names (after a cross-directory rename half
	// made durable) is crashed once.
	crashed := map[*simInode]bool{}
	for _, p := range paths {
		d := s.dirs[p]
		for _, name := range sortedNames(d.files) {
			ino := d.files[name]
			if !crashed[ino] {
				crashed[ino] = true
				s.crashInodeLocked(filepath.Join(p, name), ino)
			}
		}
	}
}

func sortedNames(ns map[string]*simInode) []string {
	names := make([]string, 0, len(ns))
	for n := range ns {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// crashDirLocked keeps the durable namespace of d plus a random prefix of its
// unsynced entries. REQUIRES: s.mu.
func (s *Sim) crashDirLocked(path string, d *simDir) {
	kept := s.rng.IntN(len(d.ops) + 1)
	ns := maps.Clone(d.durable)
	for _, op := range d.ops[:kept] {
		op.apply(ns)
	}
	if len(d.ops) > 0 {
		lost := make([]string, 0, len(d.ops)-kept)
		for _, op := range d.ops[kept:] {
			lost = append(lost, op.String())
		}
		s.logf("crash: directory %s kept %d of %d unsynced entries, lost [%s]", path, kept, len(d.ops), strings.Join(lost, ", "))
	}
	d.files = ns
	d.durable = maps.Clone(ns)
	d.ops = nil
}

// crashInodeLocked keeps the durable bytes of ino plus its unsynced
// operations up to a random one, cut at a random byte. REQUIRES: s.mu.
func (s *Sim) crashInodeLocked(path string, ino *simInode) {
	kept := s.rng.IntN(len(ino.ops) + 1)
	for _, op := range ino.ops[:kept] {
		ino.durable = op.apply(ino.durable)
	}
	if kept < len(ino.ops) {
		cut := ino.ops[kept]
		detail := cut.String() + " lost"
		if !cut.truncate {
			cutBytes := s.rng.IntN(len(cut.data))
			ino.durable = simWrite(ino.durable, cut.offset, cut.data[:cutBytes])
			detail = fmt.Sprintf("%s cut at %d bytes", cut, cutBytes)
			end := cut.offset + int64(len(cut.data))
			if s.roll(s.cfg.Faults.CrashZeroFillProbability, path) && end > int64(len(ino.durable)) {
				ino.durable = simTruncate(ino.durable, end)
				detail += ", the rest zero-filled"
			}
		}
		s.logf("crash: file %s kept %d of %d unsynced operations, %s", path, kept, len(ino.ops), detail)
	}
	ino.ops = nil
	ino.data = slices.Clone(ino.durable)
}

// FailNextSync makes the next Sync of a file whose cleaned path match
// accepts fail with an error wrapping syscall.EIO and ErrInjected.
func (s *Sim) FailNextSync(match func(name string) bool) {
	s.inject(simInjectSync, match)
}

// FailNextSyncDir makes the next SyncDir of a directory whose cleaned path
// match accepts fail; its entries stay unsynced.
func (s *Sim) FailNextSyncDir(match func(name string) bool) {
	s.inject(simInjectSyncDir, match)
}

// ShortNextWrite makes the next write to a file whose cleaned path match
// accepts persist a random strict prefix and fail with an error wrapping
// syscall.EIO and ErrInjected.
func (s *Sim) ShortNextWrite(match func(name string) bool) {
	s.inject(simInjectShortWrite, match)
}

func (s *Sim) inject(kind simInjectionKind, match func(name string) bool) {
	if match == nil {
		panic("vfs: fault injected with a nil match")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.injections = append(s.injections, simInjection{kind: kind, match: match})
}

// ClearInjections disarms every one-shot fault that has not fired yet (a
// test that armed one for a window of operations ends the window).
func (s *Sim) ClearInjections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.injections = nil
}

// NoSpaceAfter lets the next bytes bytes be written and fails every write
// after them with an error wrapping syscall.ENOSPC, until it is called with
// a negative bytes, which lifts the limit.
func (s *Sim) NoSpaceAfter(bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noSpaceBytesLeft = max(bytes, -1)
}

// SetFaults replaces the probabilistic faults, for example to recover
// without them.
func (s *Sim) SetFaults(faults SimFaults) error {
	if err := faults.Validate(); err != nil {
		return fmt.Errorf("simulated disk faults: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Faults = faults
	return nil
}

// lookupFileLocked returns the file at name in the current namespace.
// REQUIRES: s.mu.
func (s *Sim) lookupFileLocked(op, name string) (*simInode, error) {
	path := filepath.Clean(name)
	d, err := s.lookupDir(op, name, filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	ino, ok := d.files[filepath.Base(path)]
	if !ok {
		return nil, &os.PathError{Op: op, Path: name, Err: syscall.ENOENT}
	}
	return ino, nil
}

// FlipBit flips one random bit of the durable data of the file name and
// returns where.
func (s *Sim) FlipBit(name string) (offset int64, bit int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ino, err := s.lookupFileLocked("flipbit", name)
	if err != nil {
		return 0, 0, err
	}
	if len(ino.durable) == 0 {
		return 0, 0, fmt.Errorf("flip a bit of %s: no durable data", name)
	}
	offset = s.rng.Int64N(int64(len(ino.durable)))
	bit = s.rng.IntN(8)
	s.flipLocked(name, ino, offset, bit)
	return offset, bit, nil
}

// FlipBitAt flips bit (0 is the least significant) of the durable byte at
// offset of the file name.
func (s *Sim) FlipBitAt(name string, offset int64, bit int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ino, err := s.lookupFileLocked("flipbit", name)
	if err != nil {
		return err
	}
	if offset < 0 || offset >= int64(len(ino.durable)) || bit < 0 || bit > 7 {
		return fmt.Errorf("flip bit %d at %d of %s: outside its %d durable bytes", bit, offset, name, len(ino.durable))
	}
	s.flipLocked(name, ino, offset, bit)
	return nil
}

// flipLocked flips a durable bit, and the current one too unless an unsynced
// operation since replaced that byte: the flip is bit rot on the medium, seen
// once the page is read again. REQUIRES: s.mu.
func (s *Sim) flipLocked(name string, ino *simInode, offset int64, bit int) {
	s.stats.Operations++
	s.stats.BitFlips++
	ino.durable[offset] ^= 1 << bit
	replaced := false
	for _, op := range ino.ops {
		if op.truncate && op.size <= offset ||
			!op.truncate && offset >= op.offset && offset < op.offset+int64(len(op.data)) {
			replaced = true
			break
		}
	}
	if !replaced && offset < int64(len(ino.data)) {
		ino.data[offset] ^= 1 << bit
	}
	s.logf("flip bit %d of byte %d of %s", bit, offset, filepath.Clean(name))
}

// Stats returns the counters.
func (s *Sim) Stats() SimStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Files returns the cleaned path of every file in the current namespace,
// sorted.
func (s *Sim) Files() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p, d := range s.dirs {
		for name := range d.files {
			out = append(out, filepath.Join(p, name))
		}
	}
	slices.Sort(out)
	return out
}

// ReadDurable returns the durable bytes of the file name in the current
// namespace: what a crash keeps of it for sure, should its entry survive.
func (s *Sim) ReadDurable(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ino, err := s.lookupFileLocked("readdurable", name)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ino.durable), nil
}

// FileMode returns the permission the file name was created with.
func (s *Sim) FileMode(name string) (os.FileMode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ino, err := s.lookupFileLocked("stat", name)
	if err != nil {
		return 0, err
	}
	return ino.perm, nil
}

// History returns the faults injected and what each crash kept, oldest
// first, for printing beside a failing seed.
func (s *Sim) History() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.history.list()
}

// Process returns a view of the disk for one process: every operation
// through it, and through the files and locks it opened, fails with
// ErrCrashed once the disk has crashed. A crash kills the process that used
// the disk; without the fence, its goroutines still running in a test could
// go on writing to the disk "after the reboot", which no real process can.
func (s *Sim) Process() FS {
	s.mu.Lock()
	defer s.mu.Unlock()
	return simProcess{s: s, generation: s.generation + 1}
}

// simProcess is the FS of one simulated process (see Process).
type simProcess struct {
	s *Sim
	// generation is the disk's generation when the view was made, plus one:
	// zero in the internal methods means "any generation".
	generation uint64
}

func (p simProcess) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	return p.s.openFileAs(p.generation, name, flag, perm)
}
func (p simProcess) Remove(name string) error { return p.s.removeAs(p.generation, name) }
func (p simProcess) Rename(oldpath, newpath string) error {
	return p.s.renameAs(p.generation, oldpath, newpath)
}
func (p simProcess) MkdirAll(name string, perm os.FileMode) error {
	return p.s.mkdirAllAs(p.generation, name, perm)
}
func (p simProcess) ReadDir(name string) ([]string, error) { return p.s.readDirAs(p.generation, name) }
func (p simProcess) SyncDir(name string) error             { return p.s.syncDirAs(p.generation, name) }
func (p simProcess) Lock(name string) (io.Closer, error)   { return p.s.lockAs(p.generation, name) }
