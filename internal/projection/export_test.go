package projection

import "github.com/fest-platform/fest/internal/journal"

// The runner's internals the black-box tests of package projection_test
// (which need the real read models, and those import this package) drive.

const ChunksDirName, ChunkTmpSuffix = chunksDirName, chunkTmpSuffix

func (r *Runner) SnapshotAt(pos uint64)                             { r.snapshot(pos) }
func (r *Runner) Snapshots() *journal.Snapshots                     { return r.snaps }
func (r *Runner) ChunkNames(pos journal.Position) ([]string, error) { return r.chunkNames(pos) }
func (r *Runner) LoadAt(pos uint64) ([]Staged, error) {
	staged, _, err := r.loadAt(pos)
	return staged, err
}

// Check panics when the table's count disagrees with its contents.
func (t *Pending[V]) Check() { t.check() }
