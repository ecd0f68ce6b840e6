package projection

import "testing"

// TestNextSnapshotEvery checks the snapshot cadence: a configured interval
// is kept as it is, and the default grows with the last snapshot file,
// within its bounds.
func TestNextSnapshotEvery(t *testing.T) {
	for _, c := range []struct {
		configured, written, want uint64
	}{
		{4 << 10, 0, 4 << 10},
		{4 << 10, 1 << 30, 4 << 10},
		{0, 0, snapshotEveryBytesMin},
		{0, 10 << 20, snapshotEveryBytesMin},
		{0, 100 << 20, 800 << 20},
		{0, 1 << 30, snapshotEveryBytesMax},
	} {
		if got := nextSnapshotEvery(c.configured, c.written); got != c.want {
			t.Errorf("nextSnapshotEvery(%d, %d) = %d, want %d", c.configured, c.written, got, c.want)
		}
	}
}
