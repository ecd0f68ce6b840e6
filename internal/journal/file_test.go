package journal

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/vfs"
)

func TestConfigValidate(t *testing.T) {
	if err := (Config{Dir: "x"}).Validate(); err != nil {
		t.Fatalf("zero sizes must be valid: %v", err)
	}
	err := (Config{SegmentBytesMax: -1, GroupBytesMax: -1, QueueBytesMax: -1}).Validate()
	for _, want := range []string{"Dir", "SegmentBytesMax", "GroupBytesMax", "QueueBytesMax"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate() = %v, want mention of %s", err, want)
		}
	}
	c := (Config{Dir: "x"}).withDefaults()
	if c.SegmentBytesMax != DefaultSegmentBytesMax || c.GroupBytesMax != DefaultGroupBytesMax ||
		c.QueueBytesMax != DefaultQueueBytesMax || c.Logger == nil || c.Fsync == nil {
		t.Fatalf("withDefaults() = %+v", c)
	}
	if _, err := Open(Config{}); err == nil {
		t.Fatal("Open with empty Dir succeeded")
	}
}

func TestEmptyJournal(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, testConfig(dir))
	if j.End() != 0 || j.Durable() != 0 || j.Start() != 0 {
		t.Fatalf("End/Durable/Start = %d/%d/%d", j.End(), j.Durable(), j.Start())
	}
	if got := replayAll(t, j, 0); len(got) != 0 {
		t.Fatalf("replayed %d records", len(got))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if files := segFiles(t, dir); len(files) != 1 || filepath.Base(files[0]) != "00000000000000000000.seg" {
		t.Fatalf("segments = %v", files)
	}
}

func TestAppendReplayAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	j := mustOpen(t, cfg)
	var recs [][]byte
	for i := range 300 {
		recs = append(recs, payload(i, 1+(i*97)%700))
	}
	// A record larger than GroupBytesMax and SegmentBytesMax still works.
	recs = append(recs, payload(999, 10<<10))
	recs = append(recs, payload(1000, 5))
	pos := appendAll(t, j, recs)

	var end Position
	for i, r := range recs {
		end += Position(frameLen(len(r)))
		if pos[i] != end {
			t.Fatalf("record %d at %d, want %d", i, pos[i], end)
		}
	}
	if j.End() != end || j.Durable() != end {
		t.Fatalf("End/Durable = %d/%d, want %d", j.End(), j.Durable(), end)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) < 10 {
		t.Fatalf("expected rotation, got %d segments", len(files))
	}
	// Every segment but the last exceeded the limit by at most one group, and
	// every name is the position of the segment's first byte.
	var start Position
	for i, f := range files {
		if p, _ := parseSegmentName(filepath.Base(f)); p != start {
			t.Fatalf("segment %s, want start %d", f, start)
		}
		size := fileSize(t, f)
		if i < len(files)-1 && size < cfg.SegmentBytesMax {
			t.Fatalf("segment %s rotated early at %d bytes", f, size)
		}
		start += Position(size - segmentHeaderLen)
	}

	j = mustOpen(t, cfg)
	defer j.Close()
	if j.End() != end || j.Durable() != end {
		t.Fatalf("after reopen End/Durable = %d/%d, want %d", j.End(), j.Durable(), end)
	}
	checkRecords(t, replayAll(t, j, 0), recs, pos)
	// Replay from any record's end, including segment boundaries, yields
	// exactly the records after it.
	for _, k := range []int{0, 1, 57, 150, 299, 300, 301} {
		checkRecords(t, replayAll(t, j, pos[k]), recs[k+1:], pos[k+1:])
	}
	// A from inside a frame skips the record that contains it.
	checkRecords(t, replayAll(t, j, pos[10]-1), recs[10:], pos[10:])
	checkRecords(t, replayAll(t, j, end+100), nil, nil)

	// The journal keeps appending after reopen.
	more := appendSync(t, j, []byte("after reopen"))
	if more != end+Position(frameLen(12)) {
		t.Fatalf("append after reopen at %d", more)
	}
}

func TestReplayErrors(t *testing.T) {
	j := mustOpen(t, testConfig(t.TempDir()))
	defer j.Close()
	appendSync(t, j, []byte("x"))
	err := j.Replay(0, func(Position, []byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "after Append") {
		t.Fatalf("Replay after Append = %v", err)
	}

	dir := t.TempDir()
	j2 := mustOpen(t, testConfig(dir))
	appendAll(t, j2, [][]byte{[]byte("a"), []byte("b")})
	j2.Close()
	j2 = mustOpen(t, testConfig(dir))
	defer j2.Close()
	stop := errors.New("stop")
	n := 0
	err = j2.Replay(0, func(Position, []byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Replay callback error: %v after %d calls", err, n)
	}
}

func TestTooLarge(t *testing.T) {
	j := mustOpen(t, testConfig(t.TempDir()))
	defer j.Close()
	_, err := j.Append(make([]byte, MaxRecordBytes+1), func(error) { t.Error("done called") })
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append = %v, want ErrTooLarge", err)
	}
	if j.End() != 0 {
		t.Fatalf("End = %d", j.End())
	}
}

// gate is an Fsync hook that blocks every fsync until released and counts
// calls.
type gate struct {
	calls   atomic.Int64
	entered chan struct{}
	release chan struct{}
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}, 1000), release: make(chan struct{})}
}

func (g *gate) fsync(vfs.File) error {
	g.calls.Add(1)
	g.entered <- struct{}{}
	<-g.release
	return nil
}

func TestDurableLagsEndDuringFsync(t *testing.T) {
	g := newGate()
	cfg := testConfig(t.TempDir())
	cfg.NoSync = false
	cfg.Fsync = g.fsync
	// The empty directory needs a segment, whose header is fsynced.
	go func() { <-g.entered; g.release <- struct{}{} }()
	j := mustOpen(t, cfg)

	var order []int
	var mu sync.Mutex
	done := func(i int) func(error) {
		return func(err error) {
			if err != nil {
				t.Errorf("done %d: %v", i, err)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}
	}
	p1, _ := j.Append([]byte("one"), done(1))
	<-g.entered // the writer is fsyncing the group holding record 1
	if j.End() != p1 || j.Durable() != 0 {
		t.Fatalf("during fsync End/Durable = %d/%d, want %d/0", j.End(), j.Durable(), p1)
	}
	// Records appended while the fsync runs form the next group.
	p2, _ := j.Append([]byte("two"), done(2))
	p3, _ := j.Append(nil, done(3)) // barrier
	p4, _ := j.Append([]byte("four"), done(4))
	if p3 != p2 || j.End() != p4 {
		t.Fatalf("barrier at %d (want %d), End %d (want %d)", p3, p2, j.End(), p4)
	}
	g.release <- struct{}{}
	<-g.entered
	if d := j.Durable(); d != p1 {
		t.Fatalf("after first group Durable = %d, want %d", d, p1)
	}
	g.release <- struct{}{}
	closeErr := make(chan error)
	go func() { closeErr <- j.Close() }()
	if err := <-closeErr; err != nil {
		t.Fatal(err)
	}
	if j.Durable() != p4 {
		t.Fatalf("Durable = %d, want %d", j.Durable(), p4)
	}
	if !slices.Equal(order, []int{1, 2, 3, 4}) {
		t.Fatalf("done order %v", order)
	}
	if c := g.calls.Load(); c != 3 {
		t.Fatalf("fsync calls = %d, want 3 (segment header + two groups)", c)
	}
}

func TestConcurrentAppendDoneOrder(t *testing.T) {
	cfg := testConfig(t.TempDir())
	var syncs atomic.Int64
	cfg.NoSync = false
	cfg.Fsync = func(vfs.File) error { syncs.Add(1); return nil }
	j := mustOpen(t, cfg)

	const workers, per = 8, 250
	// done may run before Append returns, so the callbacks record a pointer
	// to the position and the Durable they saw; both are checked at the end.
	type seen struct {
		pos     *Position
		durable Position
	}
	var (
		mu    sync.Mutex
		order []seen
		wg    sync.WaitGroup
		dones sync.WaitGroup
	)
	dones.Add(workers * per)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				var rec []byte
				if i%50 != 0 { // every 50th append is a barrier
					rec = payload(w*per+i, 1+(i*13)%200)
				}
				pos := new(Position)
				p, err := j.Append(rec, func(err error) {
					defer dones.Done()
					if err != nil {
						t.Errorf("done: %v", err)
					}
					mu.Lock()
					order = append(order, seen{pos, j.Durable()})
					mu.Unlock()
				})
				if err != nil {
					t.Errorf("Append: %v", err)
				}
				mu.Lock()
				*pos = p
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	dones.Wait()
	for i, s := range order {
		if s.durable < *s.pos {
			t.Fatalf("done for %d called with Durable %d", *s.pos, s.durable)
		}
		if i > 0 && *s.pos < *order[i-1].pos {
			t.Fatalf("done for %d after done for %d", *s.pos, *order[i-1].pos)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// Group commit: far fewer fsyncs than records.
	t.Logf("%d records, %d fsyncs", workers*per, syncs.Load())
	j = mustOpen(t, cfg)
	defer j.Close()
	if n := len(replayAll(t, j, 0)); n != workers*per-workers*per/50 {
		t.Fatalf("replayed %d records", n)
	}
}

func TestBarrierOnIdleJournal(t *testing.T) {
	j := mustOpen(t, testConfig(t.TempDir()))
	defer j.Close()
	p := appendSync(t, j, nil)
	if p != 0 || j.End() != 0 {
		t.Fatalf("barrier at %d, End %d", p, j.End())
	}
	a := appendSync(t, j, []byte("abc"))
	if b := appendSync(t, j, nil); b != a {
		t.Fatalf("barrier at %d, want %d", b, a)
	}
}

func TestRemoveBefore(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	j := mustOpen(t, cfg)
	var recs [][]byte
	for i := range 100 {
		recs = append(recs, payload(i, 500))
	}
	pos := appendAll(t, j, recs)
	before := segFiles(t, dir)
	if len(before) < 5 {
		t.Fatalf("only %d segments", len(before))
	}
	if err := j.RemoveBefore(0); err != nil {
		t.Fatal(err)
	}
	if got := segFiles(t, dir); len(got) != len(before) {
		t.Fatalf("RemoveBefore(0) removed segments")
	}
	// Remove up to record 50: only segments ending at or before it go.
	cut := pos[50]
	if err := j.RemoveBefore(cut); err != nil {
		t.Fatal(err)
	}
	after := segFiles(t, dir)
	start := j.Start()
	if start > cut || start == 0 {
		t.Fatalf("Start = %d after RemoveBefore(%d)", start, cut)
	}
	for _, f := range after {
		p, _ := parseSegmentName(filepath.Base(f))
		if p < start {
			t.Fatalf("segment %s before Start %d survived", f, start)
		}
	}
	if len(after) != len(before)-(len(before)-len(after)) || len(after) >= len(before) {
		t.Fatalf("segments %d -> %d", len(before), len(after))
	}
	// Removing everything keeps the active segment.
	if err := j.RemoveBefore(j.End() + 1000); err != nil {
		t.Fatal(err)
	}
	if got := segFiles(t, dir); len(got) != 1 {
		t.Fatalf("%d segments left, want the active one", len(got))
	}
	last := j.Start()
	p := appendSync(t, j, []byte("still appending"))
	j.Close()

	// The journal reopens starting at the surviving segment.
	j = mustOpen(t, cfg)
	defer j.Close()
	if j.Start() != last || j.End() != p {
		t.Fatalf("reopened Start/End = %d/%d, want %d/%d", j.Start(), j.End(), last, p)
	}
	if err := j.Replay(0, func(Position, []byte) error { return nil }); !errors.Is(err, ErrRemoved) {
		t.Fatalf("Replay(0) = %v, want ErrRemoved", err)
	}
	got := replayAll(t, j, last)
	if len(got) == 0 || got[len(got)-1].end != p || string(got[len(got)-1].rec) != "still appending" {
		t.Fatalf("replay after RemoveBefore: %d records", len(got))
	}
}

func TestFailStop(t *testing.T) {
	for _, failAt := range []int64{1, 2} {
		t.Run("", func(t *testing.T) {
			boom := errors.New("boom: EIO")
			var calls atomic.Int64
			g := newGate()
			cfg := testConfig(t.TempDir())
			j := mustOpen(t, cfg) // creates the segment without the hook
			j.Close()
			cfg.NoSync = false
			// Fsync #failAt fails; each call first waits for the test.
			cfg.Fsync = func(f vfs.File) error {
				n := calls.Add(1)
				g.entered <- struct{}{}
				<-g.release
				if n == failAt {
					return boom
				}
				if n > failAt {
					t.Errorf("fsync retried after failure")
				}
				return nil
			}
			j = mustOpen(t, cfg)

			var (
				mu     sync.Mutex
				errs   = map[int]error{}
				called sync.WaitGroup
			)
			add := func(i int, rec []byte) error {
				called.Add(1)
				_, err := j.Append(rec, func(err error) {
					mu.Lock()
					if _, dup := errs[i]; dup {
						t.Errorf("done %d called twice", i)
					}
					errs[i] = err
					mu.Unlock()
					called.Done()
				})
				if err != nil {
					called.Done()
				}
				return err
			}
			if err := add(0, payload(0, 100)); err != nil {
				t.Fatal(err)
			}
			<-g.entered // group 1 (record 0) is being fsynced
			// Records 1-5 and the barrier queue up as group 2.
			for i := 1; i < 6; i++ {
				if err := add(i, payload(i, 100)); err != nil {
					t.Fatal(err)
				}
			}
			add(6, nil) // barrier behind the failing group
			g.release <- struct{}{}
			if failAt == 2 {
				<-g.entered
				g.release <- struct{}{}
			}
			called.Wait()
			for i := range 7 {
				err := errs[i]
				okGroup := failAt == 2 && i == 0
				if okGroup {
					if err != nil {
						t.Fatalf("done %d before failure: %v", i, err)
					}
					continue
				}
				if !errors.Is(err, ErrStopped) || !errors.Is(err, boom) {
					t.Fatalf("done %d = %v, want ErrStopped wrapping cause", i, err)
				}
			}
			_, err := j.Append([]byte("late"), func(error) { t.Error("done called for rejected append") })
			if !errors.Is(err, ErrStopped) || !errors.Is(err, boom) {
				t.Fatalf("Append after failure = %v", err)
			}
			if err := j.Close(); !errors.Is(err, ErrStopped) {
				t.Fatalf("Close = %v, want ErrStopped", err)
			}
			if _, err := j.Append(nil, nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("Append after Close = %v", err)
			}
		})
	}
}

func TestCloseDrains(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.NoSync = false
	cfg.Fsync = func(vfs.File) error { time.Sleep(100 * time.Microsecond); return nil }
	j := mustOpen(t, cfg)
	var ok atomic.Int64
	var recs [][]byte
	for i := range 200 {
		recs = append(recs, payload(i, 300))
		if _, err := j.Append(recs[i], func(err error) {
			if err == nil {
				ok.Add(1)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	end := j.End()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 200 || j.Durable() != end {
		t.Fatalf("after Close: %d done ok, Durable %d of %d", ok.Load(), j.Durable(), end)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := j.Append([]byte("x"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	j = mustOpen(t, cfg)
	defer j.Close()
	checkRecords(t, replayAll(t, j, 0), recs, nil)
}

func TestAppendBlocksWhenQueueFull(t *testing.T) {
	g := newGate()
	cfg := testConfig(t.TempDir())
	mustOpen(t, cfg).Close()
	cfg.NoSync = false
	cfg.Fsync = g.fsync
	cfg.QueueBytesMax = 1000
	cfg.GroupBytesMax = 1000
	j := mustOpen(t, cfg)
	defer j.Close()

	rec := make([]byte, 400-frameHeaderLen)
	j.Append(rec, nil)
	<-g.entered // writer holds group 1 in fsync; the queue is empty again
	j.Append(rec, nil)
	j.Append(rec, nil) // queue: 800 of 1000 bytes
	returned := make(chan struct{})
	go func() {
		j.Append(rec, nil) // 1200 > 1000: must wait
		close(returned)
	}()
	select {
	case <-returned:
		t.Fatal("Append did not block on a full queue")
	case <-time.After(50 * time.Millisecond):
	}
	g.release <- struct{}{} // writer takes the queued group, making room
	<-returned
	go func() {
		for range g.entered {
			g.release <- struct{}{}
		}
	}()
}
