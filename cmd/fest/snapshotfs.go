package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fest-platform/fest/internal/vfs"
)

// snapshotTimer is the engine's file system, observing how long each
// snapshot file takes to write: from the creation of its temporary file to
// its rename into place. It feeds fest_engine_snapshot_seconds without the
// engine knowing about metrics.
type snapshotTimer struct {
	vfs.FS
	dir     string // the engine's snapshot directory
	observe func(time.Duration)

	mu sync.Mutex
	// started holds the snapshots being written, by temporary file. The
	// engine writes one at a time; startedMax bounds the map should files
	// be created and never renamed or removed.
	started map[string]time.Time
}

const startedMax = 16

func newSnapshotTimer(fs vfs.FS, dataDir string, observe func(time.Duration)) *snapshotTimer {
	return &snapshotTimer{FS: fs, dir: filepath.Join(dataDir, "snapshots"), observe: observe, started: map[string]time.Time{}}
}

func (t *snapshotTimer) isSnapshotTemp(name string) bool {
	return filepath.Dir(name) == t.dir && strings.HasSuffix(name, ".tmp")
}

func (t *snapshotTimer) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := t.FS.OpenFile(name, flag, perm)
	if err == nil && flag&os.O_CREATE != 0 && t.isSnapshotTemp(name) {
		t.mu.Lock()
		if len(t.started) < startedMax {
			t.started[name] = time.Now()
		}
		t.mu.Unlock()
	}
	return f, err
}

func (t *snapshotTimer) Rename(oldpath, newpath string) error {
	err := t.FS.Rename(oldpath, newpath)
	t.mu.Lock()
	start, ok := t.started[oldpath]
	delete(t.started, oldpath)
	t.mu.Unlock()
	if ok && err == nil {
		t.observe(time.Since(start))
	}
	return err
}

func (t *snapshotTimer) Remove(name string) error {
	t.mu.Lock()
	delete(t.started, name)
	t.mu.Unlock()
	return t.FS.Remove(name)
}
