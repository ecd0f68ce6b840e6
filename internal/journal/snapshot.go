package journal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/fest-platform/fest/internal/vfs"
)

// A snapshot file is snap-<pos %020d>.bin holding a fixed header followed by
// the engine's data:
//
//	[8]  magic "FESTSNAP"
//	[4]  version (1), little endian
//	[4]  CRC32C of the data
//	[8]  journal position the snapshot covers
//	[8]  data length in bytes
//	[4]  CRC32C of the 32 bytes above
//
// The header has its own checksum so that a damaged length or position is
// rejected before any data is trusted.
const (
	snapshotMagic     = "FESTSNAP"
	snapshotVersion   = 1
	snapshotHeaderLen = 36
	snapshotPrefix    = "snap-"
	snapshotSuffix    = ".bin"
	snapshotTmpSuffix = ".tmp"
	// snapshotDamagedSuffix marks a snapshot recovery refused: kept for an
	// operator to look at, no longer listed, so it neither takes a place
	// among the kept snapshots nor holds the journal back.
	snapshotDamagedSuffix = ".damaged"
	snapshotsKept         = 2
)

// Snapshots stores the engine's snapshots in one directory. Each snapshot
// appears atomically: it is written to a temporary file, fsynced, renamed into
// place, and the directory is fsynced, so a crash leaves either the complete
// new snapshot or none. Every disk access goes through one vfs.FS. Methods
// are safe for concurrent use; writes are serialised.
type Snapshots struct {
	fs  vfs.FS
	dir string
	log *slog.Logger
	mu  sync.Mutex // serialises writers and pruning
}

// OpenSnapshots opens (creating if needed) the snapshot directory dir on
// fsys (nil means vfs.OS) and deletes temporary files left behind by a crash
// during a write.
func OpenSnapshots(fsys vfs.FS, dir string) (*Snapshots, error) {
	if fsys == nil {
		fsys = vfs.OS
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create snapshot dir: %w", err)
	}
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshot dir %s: %w", dir, err)
	}
	s := &Snapshots{fs: fsys, dir: dir, log: slog.Default()}
	removed := false
	for _, name := range names {
		if strings.HasPrefix(name, snapshotPrefix) && strings.HasSuffix(name, snapshotTmpSuffix) {
			path := filepath.Join(dir, name)
			if err := fsys.Remove(path); err != nil {
				return nil, fmt.Errorf("remove stale snapshot temp file %s: %w", path, err)
			}
			s.log.Warn("journal: removed partial snapshot", "path", path)
			removed = true
		}
	}
	if removed {
		// Not needed for correctness (a temp file is never read), but it
		// keeps a crash from bringing the clutter back.
		if err := fsys.SyncDir(dir); err != nil {
			return nil, fmt.Errorf("remove stale snapshot temp files: %w", err)
		}
	}
	return s, nil
}

func snapshotName(pos Position) string {
	return fmt.Sprintf("%s%020d%s", snapshotPrefix, uint64(pos), snapshotSuffix)
}

func parseSnapshotName(name string) (Position, bool) {
	if len(name) != len(snapshotPrefix)+20+len(snapshotSuffix) ||
		!strings.HasPrefix(name, snapshotPrefix) || !strings.HasSuffix(name, snapshotSuffix) {
		return 0, false
	}
	digits := name[len(snapshotPrefix) : len(snapshotPrefix)+20]
	if strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	return Position(v), err == nil
}

// snapshotFile is one snapshot found in the directory.
type snapshotFile struct {
	pos  Position
	path string
}

// list returns the snapshot files, newest (highest position) first.
func (s *Snapshots) list() ([]snapshotFile, error) {
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshot dir %s: %w", s.dir, err)
	}
	var files []snapshotFile
	for _, name := range names {
		if pos, ok := parseSnapshotName(name); ok {
			files = append(files, snapshotFile{pos: pos, path: filepath.Join(s.dir, name)})
		}
	}
	slices.SortFunc(files, func(a, b snapshotFile) int {
		switch {
		case a.pos > b.pos:
			return -1
		case a.pos < b.pos:
			return 1
		}
		return 0
	})
	return files, nil
}

// Write stores data as the snapshot at pos. See WriteFrom.
func (s *Snapshots) Write(pos Position, data []byte) error {
	return s.WriteFrom(pos, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// crcWriter passes writes through while counting them and updating a CRC32C,
// so a streamed snapshot is checksummed without a second pass.
type crcWriter struct {
	w   io.Writer
	crc uint32
	n   uint64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.n += uint64(n)
	return n, err
}

// snapshotWriteBuffer batches the engine's (possibly small) writes into large
// file writes.
const snapshotWriteBuffer = 1 << 20

// WriteFrom stores the snapshot at pos with the data that fn writes to w. The
// data is streamed to a temporary file, so it can be far larger than memory
// allows to hold twice. Once the new snapshot is durable, all but the newest
// two snapshots are deleted. A snapshot at the same position is replaced.
//
// The temporary file is named after the final one (writes are serialised, so
// the name is free) and is created 0600: snapshots hold buyer ids.
func (s *Snapshots) WriteFrom(pos Position, fn func(w io.Writer) error) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	final := filepath.Join(s.dir, snapshotName(pos))
	tmpPath := final + snapshotTmpSuffix
	tmp, err := s.fs.OpenFile(tmpPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create snapshot temp file %s: %w", tmpPath, err)
	}
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				tmp.Close()
			}
			s.fs.Remove(tmpPath)
		}
	}()
	// Reserve the header; its length and checksum are known only at the end.
	if _, err := tmp.Write(make([]byte, snapshotHeaderLen)); err != nil {
		return fmt.Errorf("write snapshot %s: %w", tmp.Name(), err)
	}
	cw := &crcWriter{w: tmp}
	bw := bufio.NewWriterSize(cw, snapshotWriteBuffer)
	if err := fn(bw); err != nil {
		return fmt.Errorf("write snapshot %s: %w", tmp.Name(), err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write snapshot %s: %w", tmp.Name(), err)
	}
	hdr := encodeSnapshotHeader(pos, cw.n, cw.crc)
	if _, err := tmp.WriteAt(hdr[:], 0); err != nil {
		return fmt.Errorf("write snapshot header %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync snapshot %s: %w", tmp.Name(), err)
	}
	closed = true
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close snapshot %s: %w", tmp.Name(), err)
	}
	if err := s.fs.Rename(tmpPath, final); err != nil {
		return fmt.Errorf("rename snapshot to %s: %w", final, err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("publish snapshot %s: %w", final, err)
	}
	return s.pruneLocked()
}

// pruneLocked deletes all but the newest snapshotsKept snapshots. The older of
// the two kept is the fallback should the newest turn out unreadable.
func (s *Snapshots) pruneLocked() error {
	files, err := s.list()
	if err != nil {
		return err
	}
	old := files[min(len(files), snapshotsKept):]
	for _, f := range old {
		if err := s.fs.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove old snapshot %s: %w", f.path, err)
		}
	}
	if len(old) > 0 {
		// A removal a crash undoes only brings back an older snapshot,
		// which recovery never prefers; the fsync keeps the directory tidy.
		if err := s.fs.SyncDir(s.dir); err != nil {
			return fmt.Errorf("remove old snapshots: %w", err)
		}
	}
	return nil
}

func encodeSnapshotHeader(pos Position, n uint64, crc uint32) [snapshotHeaderLen]byte {
	var h [snapshotHeaderLen]byte
	copy(h[0:8], snapshotMagic)
	binary.LittleEndian.PutUint32(h[8:12], snapshotVersion)
	binary.LittleEndian.PutUint32(h[12:16], crc)
	binary.LittleEndian.PutUint64(h[16:24], uint64(pos))
	binary.LittleEndian.PutUint64(h[24:32], n)
	binary.LittleEndian.PutUint32(h[32:36], crc32.Checksum(h[0:32], castagnoli))
	return h
}

// snapshotHeader is a decoded, self-consistent header.
type snapshotHeader struct {
	pos Position
	n   uint64
	crc uint32
}

// decodeSnapshotHeader checks the header of the file named for pos whose total
// size is size.
func decodeSnapshotHeader(h []byte, pos Position, size int64) (snapshotHeader, error) {
	if len(h) < snapshotHeaderLen {
		return snapshotHeader{}, fmt.Errorf("%w: short header", ErrCorrupt)
	}
	if !bytes.Equal(h[0:8], []byte(snapshotMagic)) {
		return snapshotHeader{}, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if crc32.Checksum(h[0:32], castagnoli) != binary.LittleEndian.Uint32(h[32:36]) {
		return snapshotHeader{}, fmt.Errorf("%w: header crc mismatch", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(h[8:12]); v != snapshotVersion {
		return snapshotHeader{}, fmt.Errorf("unsupported version %d", v)
	}
	hdr := snapshotHeader{
		crc: binary.LittleEndian.Uint32(h[12:16]),
		pos: Position(binary.LittleEndian.Uint64(h[16:24])),
		n:   binary.LittleEndian.Uint64(h[24:32]),
	}
	if hdr.pos != pos {
		return snapshotHeader{}, fmt.Errorf("%w: header position %d does not match file name", ErrCorrupt, hdr.pos)
	}
	if hdr.n != uint64(size-snapshotHeaderLen) {
		return snapshotHeader{}, fmt.Errorf("%w: header length %d but file holds %d data bytes", ErrCorrupt, hdr.n, size-snapshotHeaderLen)
	}
	return hdr, nil
}

// List returns the positions of the snapshot files present, newest first,
// without checking them. Recovery walks it to fall back from a damaged or
// undecodable snapshot to an older one, and retention keeps the journal
// back to the oldest of them.
func (s *Snapshots) List() ([]Position, error) {
	files, err := s.list()
	if err != nil {
		return nil, err
	}
	pos := make([]Position, len(files))
	for i, f := range files {
		pos[i] = f.pos
	}
	return pos, nil
}

// Quarantine renames the snapshot at pos, which recovery refused (its
// checksum failed or it did not decode), to snap-<pos>.bin.damaged and
// makes the rename durable. Without it a refused snapshot would stay among
// the newest two kept, so that the next snapshot would prune the good
// older one and leave no fallback.
func (s *Snapshots) Quarantine(pos Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := filepath.Join(s.dir, snapshotName(pos))
	to := from + snapshotDamagedSuffix
	if err := s.fs.Rename(from, to); err != nil {
		return fmt.Errorf("quarantine snapshot %s: %w", from, err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("quarantine snapshot %s: %w", from, err)
	}
	s.log.Warn("journal: set a refused snapshot aside", "path", to)
	return nil
}

// Open verifies the snapshot at pos (header and data checksums, in one
// pass) and returns a reader over its data that checks the checksum again
// at EOF, and the data length. The caller must close rc.
func (s *Snapshots) Open(pos Position) (rc io.ReadCloser, size int64, err error) {
	r, err := s.openSnapshot(snapshotFile{pos: pos, path: filepath.Join(s.dir, snapshotName(pos))})
	if err != nil {
		return nil, 0, fmt.Errorf("open snapshot %s: %w", filepath.Join(s.dir, snapshotName(pos)), err)
	}
	return r, int64(r.hdr.n), nil
}

// snapshotReader streams a snapshot's data and verifies it at EOF.
type snapshotReader struct {
	f    vfs.File
	path string
	hdr  snapshotHeader
	r    *bufio.Reader
	left uint64
	crc  uint32
}

func (s *Snapshots) openSnapshot(sf snapshotFile) (_ *snapshotReader, err error) {
	f, err := s.fs.OpenFile(sf.path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	var h [snapshotHeaderLen]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	hdr, err := decodeSnapshotHeader(h[:], sf.pos, size)
	if err != nil {
		return nil, err
	}
	crc := crc32.New(castagnoli)
	if _, err := io.Copy(crc, bufio.NewReaderSize(f, snapshotWriteBuffer)); err != nil {
		return nil, fmt.Errorf("read data: %w", err)
	}
	if crc.Sum32() != hdr.crc {
		return nil, fmt.Errorf("%w: data crc mismatch", ErrCorrupt)
	}
	if _, err := f.Seek(snapshotHeaderLen, io.SeekStart); err != nil {
		return nil, err
	}
	return &snapshotReader{
		f: f, path: sf.path, hdr: hdr, left: hdr.n,
		r: bufio.NewReaderSize(f, snapshotWriteBuffer),
	}, nil
}

func (r *snapshotReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		if r.crc != r.hdr.crc {
			return 0, fmt.Errorf("%w: snapshot %s: data crc mismatch", ErrCorrupt, r.path)
		}
		return 0, io.EOF
	}
	if uint64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.r.Read(p)
	r.crc = crc32.Update(r.crc, castagnoli, p[:n])
	r.left -= uint64(n)
	if err == io.EOF {
		if r.left > 0 {
			return n, fmt.Errorf("%w: snapshot %s: %w", ErrCorrupt, r.path, io.ErrUnexpectedEOF)
		}
		err = nil
	}
	return n, err
}

func (r *snapshotReader) Close() error { return r.f.Close() }
