// Package vfs is the small file-system interface through which fest's
// journal, snapshots and data-directory metadata reach the disk.
//
// Production uses OS, a thin layer over package os. Tests use Sim (sim.go), a
// simulated disk that keeps, per file, what is durable and what was only
// written, so that a simulated crash loses exactly what a power failure
// could lose: unsynced bytes (an arbitrary prefix of each unsynced write
// survives), and directory entries (creates, renames, removals) not made
// durable by an fsync of their directory. It also injects storage faults: a
// flipped bit in durable data, a short write, ENOSPC and a failing fsync.
// kill -9 tests cannot see those, because the page cache survives SIGKILL.
//
// The interface is deliberately small: only what the journal and snapshot
// code need, so that the simulation stays simple enough to trust.
package vfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// FS is a file system. Paths are slash-separated and are passed through
// filepath.Clean by implementations that care.
type FS interface {
	// OpenFile opens name with os.O_* flags and, when creating, permission
	// perm (fest creates its data files 0600: they hold buyer ids).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Remove deletes a file. The removal is durable only after SyncDir of
	// its directory.
	Remove(name string) error
	// Rename atomically replaces newpath by oldpath. It is durable only
	// after SyncDir of the directory.
	Rename(oldpath, newpath string) error
	// MkdirAll creates a directory and its parents; the new entries are
	// durable when it returns (directories are created once, at start-up).
	MkdirAll(name string, perm os.FileMode) error
	// ReadDir returns the names of the regular files in a directory, sorted.
	ReadDir(name string) ([]string, error)
	// SyncDir fsyncs a directory, making its entries' creations, renames and
	// removals durable.
	SyncDir(name string) error
	// Lock takes an exclusive lock on the file name, held until the
	// returned closer is closed or the process dies. It fails with an error
	// wrapping ErrLocked when another holder has it.
	Lock(name string) (io.Closer, error)
}

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Seeker
	io.Closer
	// Name returns the path the file was opened with.
	Name() string
	// Sync makes the file's written data durable. After a failed Sync the
	// file's state is unknown: callers must not retry it (see journal.File).
	Sync() error
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Size returns the file's current size in bytes.
	Size() (int64, error)
}

// ErrLocked is returned (wrapped) by Lock when the lock is held elsewhere.
var ErrLocked = errors.New("file locked by another process")

// OS is the real file system.
var OS FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error             { return os.Remove(name) }
func (osFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// MkdirAll creates the missing directories of name and fsyncs the parent of
// each one it created, so that a crash soon after the first start cannot
// take journal/ or snapshots/ away with everything in them.
func (osFS) MkdirAll(name string, perm os.FileMode) error {
	var missing []string
	for dir := filepath.Clean(name); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		missing = append(missing, dir)
		if parent := filepath.Dir(dir); parent == dir {
			break
		}
	}
	if err := os.MkdirAll(name, perm); err != nil {
		return err
	}
	for _, dir := range missing {
		if err := (osFS{}).SyncDir(filepath.Dir(dir)); err != nil {
			return fmt.Errorf("make directory %s durable: %w", dir, err)
		}
	}
	return nil
}

func (osFS) ReadDir(name string) ([]string, error) {
	ents, err := os.ReadDir(name)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

func (osFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", name, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", name, err)
	}
	return nil
}

// Lock takes an flock on name. The kernel drops it when the process dies,
// so a crashed server never leaves it behind.
func (osFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, filepath.Dir(name))
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return f, nil
}

// WriteFileAtomic writes data to name so that a crash leaves either the old
// content or the new one: WriteFileRenamed, then the directory is fsynced.
func WriteFileAtomic(fsys FS, name string, data []byte, perm os.FileMode) error {
	if err := WriteFileRenamed(fsys, name, data, perm); err != nil {
		return err
	}
	return fsys.SyncDir(filepath.Dir(name))
}

// WriteFileRenamed writes data to name+".tmp", fsyncs it and renames it over
// name; on failure the temporary file is removed (best effort: a crash can
// still leave one, which its owner removes at open). The new name is durable
// only after SyncDir of its directory, which a caller writing many files
// does once for all of them.
func WriteFileRenamed(fsys FS, name string, data []byte, perm os.FileMode) (err error) {
	tmp := name + ".tmp"
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			fsys.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := fsys.Rename(tmp, name); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// ReadFile reads a whole file.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
