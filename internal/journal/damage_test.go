package journal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fest-platform/fest/internal/vfs"
)

// TestLengthBitFlipIsNotATornTail is the reproduction of issue 7, defect 2:
// a flipped bit in the length field of record 10 of 1,000 in the active
// segment made the length run past the end of the file, recovery took it
// for a torn tail, and 990 acknowledged records were dropped with only a
// warning. Open must refuse instead, naming the file and the offset.
func TestLengthBitFlipIsNotATornTail(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SegmentBytesMax = 1 << 30
	j := mustOpen(t, cfg)
	var recs [][]byte
	for i := range 1000 {
		recs = append(recs, payload(i, 100))
	}
	ends := appendAll(t, j, recs)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	path := segPath(dir, 0)
	// Record 10's frame starts where record 9's ends; its length field is
	// the first four bytes of the frame. Bit 4 of the third byte makes the
	// length 1 MiB larger: below the maximum, and past the end of the file.
	off := segmentHeaderLen + int64(ends[9])
	mutate(t, path, func(b []byte) []byte { b[off+2] ^= 0x10; return b })

	j, err := Open(cfg)
	if err == nil {
		n := len(replayAll(t, j, 0))
		j.Close()
		t.Fatalf("Open succeeded after a length bit flip and replays %d of %d records", n, len(recs))
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
	for _, want := range []string{path, fmt.Sprintf("offset %d", off)} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
	if size := fileSize(t, path); size != segmentHeaderLen+int64(ends[len(ends)-1]) {
		t.Fatalf("refusing to open truncated the segment to %d bytes", size)
	}
}

// TestEveryBitFlip flips, one at a time, every bit of every byte of a small
// journal of several segments. Open must either refuse with ErrCorrupt naming
// the damaged file and an offset at or before the flipped byte, or replay
// every record unchanged; it must never replay fewer records.
func TestEveryBitFlip(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SegmentBytesMax = 300
	j := mustOpen(t, cfg)
	var recs [][]byte
	var ends []Position
	for i := range 14 {
		recs = append(recs, payload(i, 1+(i*37)%120))
		ends = append(ends, appendSync(t, j, recs[i]))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("journal has %d segments, want several", len(segs))
	}
	offsetRE := regexp.MustCompile(`offset (\d+)`)
	opens, refusals := 0, 0
	for _, path := range segs {
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fh, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		for off := range orig {
			for bit := range 8 {
				if _, err := fh.WriteAt([]byte{orig[off] ^ 1<<bit}, int64(off)); err != nil {
					t.Fatal(err)
				}
				j, err := Open(cfg)
				opens++
				if err != nil {
					refusals++
					m := offsetRE.FindStringSubmatch(err.Error())
					if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || m == nil {
						t.Fatalf("%s byte %d bit %d: Open = %v, want ErrCorrupt naming the file and offset", path, off, bit, err)
					}
					if named, _ := strconv.Atoi(m[1]); named > off {
						t.Fatalf("%s byte %d bit %d: error names offset %d, after the damage", path, off, bit, named)
					}
				} else {
					got := replayAll(t, j, 0)
					j.Close()
					if len(got) != len(recs) {
						t.Fatalf("%s byte %d bit %d: Open succeeded and replays %d of %d records", path, off, bit, len(got), len(recs))
					}
					checkRecords(t, got, recs, ends)
				}
				if _, err := fh.WriteAt(orig[off:off+1], int64(off)); err != nil {
					t.Fatal(err)
				}
				if size := fileSize(t, path); size != int64(len(orig)) {
					t.Fatalf("%s byte %d bit %d: segment changed size to %d", path, off, bit, size)
				}
			}
		}
		fh.Close()
	}
	t.Logf("%d flips over %d segments, %d refused", opens, len(segs), refusals)
}

// TestSnapshotEveryBitFlip flips every bit of the newest snapshot file in
// turn: Latest and LatestReader must fall back to the older snapshot each
// time, never return damaged data.
func TestSnapshotEveryBitFlip(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSnapshots(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	s.log = quietLogger
	if err := s.Write(10, []byte("older")); err != nil {
		t.Fatal(err)
	}
	newer := payload(3, 40)
	if err := s.Write(20, newer); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, snapshotName(20))
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := range orig {
		for bit := range 8 {
			b := bytes.Clone(orig)
			b[off] ^= 1 << bit
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			pos, data, ok, err := latest(s)
			if err != nil || !ok || pos != 10 || string(data) != "older" {
				t.Fatalf("byte %d bit %d: Latest = %d %q %v %v, want the older snapshot", off, bit, pos, data, ok, err)
			}
			if _, _, err := s.Open(20); err == nil {
				t.Fatalf("byte %d bit %d: Open(20) accepted a damaged snapshot", off, bit)
			}
		}
	}
}

// TestFailStopTruncatesToDurable checks that after a failed fsync, and after
// a failed write, the active segment is cut back to the durable position
// before the journal stops, so that records whose clients were told they
// failed do not come back on a restart that follows no crash.
func TestFailStopTruncatesToDurable(t *testing.T) {
	boom := errors.New("boom: EIO")
	for _, failing := range []string{"fsync", "write"} {
		t.Run(failing, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(dir)
			cfg.SegmentBytesMax = 1 << 20
			mustOpen(t, cfg).Close()
			rfs := &recordingFS{}
			cfg.FS = rfs
			cfg.NoSync = false
			var fail atomic.Bool
			cfg.Fsync = func(f vfs.File) error {
				if fail.Load() && failing == "fsync" {
					return boom
				}
				return nil
			}
			j := mustOpen(t, cfg)
			good := appendSync(t, j, payload(1, 200))
			fail.Store(true)
			var bad error
			done := make(chan struct{})
			if failing == "write" {
				rfs.failWrite = func(path string) error { return boom }
			}
			if _, err := j.Append(payload(2, 300), func(err error) { bad = err; close(done) }); err != nil {
				t.Fatal(err)
			}
			<-done
			if !errors.Is(bad, ErrStopped) || !errors.Is(bad, boom) {
				t.Fatalf("done = %v, want ErrStopped wrapping the cause", bad)
			}
			j.Close()
			path := segPath(dir, 0)
			if size := fileSize(t, path); size != segmentHeaderLen+int64(good) {
				t.Fatalf("after the failed %s the segment is %d bytes, want %d (the durable position)", failing, size, segmentHeaderLen+int64(good))
			}
			if len(rfs.opsMatching("truncate", segmentName(0))) != 1 {
				t.Fatalf("truncations: %v", rfs.opsMatching("truncate"))
			}
			rfs.failWrite = nil
			cfg.Fsync = nil
			j = mustOpen(t, cfg)
			defer j.Close()
			checkRecords(t, replayAll(t, j, 0), [][]byte{payload(1, 200)}, []Position{good})
		})
	}
}

// TestRemoveBeforeSyncsDir checks that each segment removal is followed by an
// fsync of the directory before the next removal: otherwise a crash could
// bring back an older segment without a newer one, leaving a gap.
func TestRemoveBeforeSyncsDir(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	rfs := &recordingFS{}
	cfg.FS = rfs
	cfg.NoSync = false
	cfg.Fsync = func(vfs.File) error { return nil }
	j := mustOpen(t, cfg)
	defer j.Close()
	var recs [][]byte
	for i := range 40 {
		recs = append(recs, payload(i, 500))
	}
	pos := appendAll(t, j, recs)
	rfs.mu.Lock()
	rfs.ops = nil
	rfs.mu.Unlock()
	if err := j.RemoveBefore(pos[30]); err != nil {
		t.Fatal(err)
	}
	ops := rfs.opsMatching("")
	if len(ops) < 4 {
		t.Fatalf("RemoveBefore did %v, want several removals", ops)
	}
	for i, op := range ops {
		want := "remove "
		if i%2 == 1 {
			want = "syncdir "
		}
		if !strings.HasPrefix(op, want) {
			t.Fatalf("RemoveBefore did %v: operation %d is not a %q", ops, i, want)
		}
	}
}

// TestFilesGoThroughFSAndAre0600 checks that segments and snapshots are
// created through the configured FS with mode 0600 (they hold buyer ids),
// and that a snapshot is written as temp file, fsync, rename, directory
// fsync.
func TestFilesGoThroughFSAndAre0600(t *testing.T) {
	dir := t.TempDir()
	rfs := &recordingFS{}
	cfg := testConfig(filepath.Join(dir, "journal"))
	cfg.FS = rfs
	cfg.SegmentBytesMax = 600
	j := mustOpen(t, cfg)
	for i := range 5 {
		appendSync(t, j, payload(i, 500))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSnapshots(rfs, filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(77, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if _, data, ok, err := latest(s); !ok || err != nil || string(data) != "state" {
		t.Fatalf("Latest = %q %v %v", data, ok, err)
	}
	creates := rfs.opsMatching("create")
	if len(creates) < 4 {
		t.Fatalf("creates %v", creates)
	}
	for _, c := range creates {
		if !strings.HasSuffix(c, " 600") {
			t.Fatalf("%q: not created 0600", c)
		}
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm() != 0o600 {
			return fmt.Errorf("%s has mode %o", path, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tmp := snapshotName(77) + snapshotTmpSuffix
	var seq []string
	for _, op := range rfs.opsMatching("") {
		if strings.Contains(op, snapshotName(77)) || strings.HasPrefix(op, "syncdir snapshots") {
			seq = append(seq, op)
		}
	}
	want := []string{"create " + tmp + " 600", "sync " + tmp, "rename " + tmp + " " + snapshotName(77), "syncdir snapshots"}
	if len(seq) < len(want) || !slices.Equal(seq[:len(want)], want) {
		t.Fatalf("snapshot write did %v, want %v first", seq, want)
	}
}
