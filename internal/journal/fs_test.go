package journal

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fest-platform/fest/internal/vfs"
)

// recordingFS passes every call to the real file system and logs it, so
// tests can check that the journal and snapshots reach the disk only through
// their FS, and in which order. failWrite, if set, makes writes to matching
// files short, failing with its error.
type recordingFS struct {
	mu        sync.Mutex
	ops       []string
	failWrite func(path string) error
}

func (r *recordingFS) log(format string, args ...any) {
	r.mu.Lock()
	r.ops = append(r.ops, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// opsMatching returns the logged operations that contain every substring.
func (r *recordingFS) opsMatching(subs ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
next:
	for _, op := range r.ops {
		for _, s := range subs {
			if !strings.Contains(op, s) {
				continue next
			}
		}
		out = append(out, op)
	}
	return out
}

func (r *recordingFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := vfs.OS.OpenFile(name, flag, perm)
	if flag&os.O_CREATE != 0 {
		r.log("create %s %o", filepath.Base(name), perm)
	} else {
		r.log("open %s", filepath.Base(name))
	}
	if err != nil {
		return nil, err
	}
	return &recordingFile{File: f, fs: r}, nil
}

func (r *recordingFS) Remove(name string) error {
	r.log("remove %s", filepath.Base(name))
	return vfs.OS.Remove(name)
}

func (r *recordingFS) Rename(oldpath, newpath string) error {
	r.log("rename %s %s", filepath.Base(oldpath), filepath.Base(newpath))
	return vfs.OS.Rename(oldpath, newpath)
}

func (r *recordingFS) MkdirAll(name string, perm os.FileMode) error {
	r.log("mkdir %s", filepath.Base(name))
	return vfs.OS.MkdirAll(name, perm)
}

func (r *recordingFS) ReadDir(name string) ([]string, error) {
	r.log("readdir %s", filepath.Base(name))
	return vfs.OS.ReadDir(name)
}

func (r *recordingFS) SyncDir(name string) error {
	r.log("syncdir %s", filepath.Base(name))
	return vfs.OS.SyncDir(name)
}

func (r *recordingFS) Lock(name string) (io.Closer, error) { return vfs.OS.Lock(name) }

type recordingFile struct {
	vfs.File
	fs *recordingFS
}

func (f *recordingFile) Write(p []byte) (int, error) {
	if f.fs.failWrite != nil {
		if err := f.fs.failWrite(f.Name()); err != nil {
			// A short write: half of it reaches the file.
			n, _ := f.File.Write(p[:len(p)/2])
			return n, err
		}
	}
	return f.File.Write(p)
}

func (f *recordingFile) Sync() error {
	f.fs.log("sync %s", filepath.Base(f.Name()))
	return f.File.Sync()
}

func (f *recordingFile) Truncate(size int64) error {
	f.fs.log("truncate %s %d", filepath.Base(f.Name()), size)
	return f.File.Truncate(size)
}
