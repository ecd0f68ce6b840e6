package engine

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/fest-platform/fest/internal/vfs"
)

// ErrLocked is returned by Open when another process holds the data
// directory: two writers would interleave their journals.
var ErrLocked = errors.New("data directory in use by another process")

// lockDir takes an exclusive lock on dir/LOCK through fsys. The real file
// system's lock is an flock, which the kernel drops when the process dies, so
// a crashed engine never leaves it behind.
func lockDir(fsys vfs.FS, dir string) (io.Closer, error) {
	l, err := fsys.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		if errors.Is(err, vfs.ErrLocked) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	return l, nil
}
