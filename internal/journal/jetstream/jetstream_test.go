package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/natsserver"
)

// waitMax bounds every wait in these tests: generous, since three servers
// share two cores with other work; nothing here asserts a duration.
const waitMax = 2 * time.Minute

func startCluster(t testing.TB, n int) *natsserver.LocalCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	c, err := natsserver.StartLocalCluster(ctx, t.TempDir(), n, nil)
	if err != nil {
		t.Fatalf("start %d nats servers: %v", n, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func connect(t testing.TB, c *natsserver.LocalCluster) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func open(t testing.TB, nc *nats.Conn, replicas int, mod func(*Config)) *Journal {
	t.Helper()
	cfg := Config{Conn: nc, Partition: 7, Replicas: replicas, Logger: discard}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	j, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// recorder collects the dones of appends, checking they come in order.
type recorder struct {
	t    testing.TB
	mu   sync.Mutex
	pos  []journal.Position
	errs []error
	wg   sync.WaitGroup
}

func (r *recorder) append(j *Journal, rec []byte) journal.Position {
	r.t.Helper()
	r.wg.Add(1)
	var pos journal.Position
	var mu sync.Mutex
	mu.Lock()
	pos, err := j.Append(rec, func(err error) {
		mu.Lock()
		p := pos
		mu.Unlock()
		r.mu.Lock()
		r.pos = append(r.pos, p)
		r.errs = append(r.errs, err)
		r.mu.Unlock()
		r.wg.Done()
	})
	mu.Unlock()
	if err != nil {
		r.wg.Done()
		r.mu.Lock()
		r.pos = append(r.pos, pos)
		r.errs = append(r.errs, err)
		r.mu.Unlock()
	}
	return pos
}

func (r *recorder) wait() {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitMax):
		r.t.Fatalf("appends not done within %v", waitMax)
	}
}

func record(i int) []byte { return fmt.Appendf(nil, "record %06d of the test", i) }

type replayed struct {
	pos journal.Position
	rec string
}

func replayAll(t testing.TB, j *Journal, from journal.Position) []replayed {
	t.Helper()
	var got []replayed
	if err := j.Replay(from, func(end journal.Position, rec []byte) error {
		got = append(got, replayed{end, string(rec)})
		return nil
	}); err != nil {
		t.Fatalf("replay from %d: %v", from, err)
	}
	return got
}

func TestAppendReplay(t *testing.T) {
	for _, servers := range []int{1, 3} {
		t.Run(fmt.Sprintf("servers=%d", servers), func(t *testing.T) {
			c := startCluster(t, servers)
			nc := connect(t, c)
			j := open(t, nc, servers, nil)
			fence := j.End()
			if fence != 1 {
				t.Fatalf("a new stream's fence is at %d, want 1", fence)
			}
			// A second connection reads the stream while dones come in:
			// a done must never run before its record is stored.
			check := connect(t, c)
			cjs, _ := natsjs.New(check)
			stream, err := cjs.Stream(context.Background(), StreamName(DefaultStreamPrefix, 7))
			if err != nil {
				t.Fatal(err)
			}
			const n = 500
			r := &recorder{t: t}
			var notStored []journal.Position
			var mu sync.Mutex
			for i := range n {
				r.wg.Add(1)
				var pos journal.Position
				var pmu sync.Mutex
				pmu.Lock()
				pos, err = j.Append(record(i), func(err error) {
					defer r.wg.Done()
					pmu.Lock()
					p := pos
					pmu.Unlock()
					if err != nil {
						t.Errorf("append at %d: %v", p, err)
						return
					}
					if i%50 == 0 { // read back a sample: each read is a round trip
						if _, gerr := stream.GetMsg(context.Background(), uint64(p)); gerr != nil {
							mu.Lock()
							notStored = append(notStored, p)
							mu.Unlock()
						}
					}
					r.mu.Lock()
					r.pos = append(r.pos, p)
					r.mu.Unlock()
				})
				pmu.Unlock()
				if err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
				if want := fence + journal.Position(i+1); pos != want {
					t.Fatalf("append %d at %d, want %d", i, pos, want)
				}
			}
			r.wait()
			if len(notStored) > 0 {
				t.Fatalf("done called before the record was stored at %v", notStored)
			}
			for i, p := range r.pos {
				if p != fence+journal.Position(i+1) {
					t.Fatalf("done %d for position %d: dones out of order", i, p)
				}
			}
			if j.Durable() != j.End() || j.End() != fence+n {
				t.Fatalf("durable %d end %d, want both %d", j.Durable(), j.End(), fence+n)
			}
			// A barrier is done once everything before it is.
			r2 := &recorder{t: t}
			if pos := r2.append(j, nil); pos != fence+n {
				t.Fatalf("barrier at %d, want %d", pos, fence+n)
			}
			r2.wait()
			if r2.errs[0] != nil {
				t.Fatalf("barrier: %v", r2.errs[0])
			}
			if err := j.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}

			// A new writer replays exactly what was acknowledged, in order,
			// without the fence markers, and goes on after its own fence.
			j2 := open(t, nc, servers, nil)
			got := replayAll(t, j2, 0)
			if len(got) != n {
				t.Fatalf("replayed %d records, want %d", len(got), n)
			}
			for i, g := range got {
				if g.pos != fence+journal.Position(i+1) || g.rec != string(record(i)) {
					t.Fatalf("replayed %d: %d %q, want %d %q", i, g.pos, g.rec, fence+journal.Position(i+1), record(i))
				}
			}
			if j2.End() != fence+n+1 {
				t.Fatalf("second writer's fence at %d, want %d", j2.End(), fence+n+1)
			}
			if tail := replayAll(t, j2, fence+n-3); len(tail) != 3 || tail[0].rec != string(record(n-3)) {
				t.Fatalf("replay of the tail: %v", tail)
			}
			r3 := &recorder{t: t}
			if pos := r3.append(j2, record(n)); pos != fence+n+2 {
				t.Fatalf("second writer's first record at %d, want %d", pos, fence+n+2)
			}
			r3.wait()
			if r3.errs[0] != nil {
				t.Fatal(r3.errs[0])
			}
		})
	}
}

func TestFencedWriterIsRefused(t *testing.T) {
	c := startCluster(t, 3)
	old := open(t, connect(t, c), 3, func(c *Config) { c.Epoch = 5 })
	r := &recorder{t: t}
	for i := range 10 {
		r.append(old, record(i))
	}
	r.wait()
	for _, err := range r.errs {
		if err != nil {
			t.Fatalf("append before the take-over: %v", err)
		}
	}
	// Another node takes the partition over: its fence lands after the
	// old writer's records.
	taker := open(t, connect(t, c), 3, func(c *Config) { c.Epoch = 9 })
	if got := replayAll(t, taker, 0); len(got) != 10 {
		t.Fatalf("the new owner replays %d records, want 10", len(got))
	}
	// The old writer still believes it owns the partition; its append
	// expects the stream to end at its last record and is refused.
	r2 := &recorder{t: t}
	r2.append(old, []byte("written after losing the lease"))
	r2.wait()
	err := r2.errs[0]
	if !errors.Is(err, ErrFenced) || !errors.Is(err, journal.ErrStopped) {
		t.Fatalf("stale writer's append: %v, want ErrFenced and ErrStopped", err)
	}
	if _, err := old.Append(record(99), func(error) {}); !errors.Is(err, ErrFenced) {
		t.Fatalf("append after being fenced: %v, want ErrFenced at once", err)
	}
	if old.Durable() != 11 {
		t.Fatalf("fenced writer's durable end %d, want 11", old.Durable())
	}
	// The refused record is nowhere in the stream.
	r3 := &recorder{t: t}
	r3.append(taker, []byte("new owner"))
	r3.wait()
	if r3.errs[0] != nil {
		t.Fatalf("new owner's append: %v", r3.errs[0])
	}
	got := replayAll(t, taker, 0)
	if len(got) != 11 || got[10].rec != "new owner" {
		t.Fatalf("after the fence the stream holds %v", got[len(got)-2:])
	}
}

func TestKillOneServerAppendsGoOn(t *testing.T) {
	c := startCluster(t, 3)
	nc := connect(t, c)
	j := open(t, nc, 3, nil)
	r := &recorder{t: t}
	const n = 600
	var killed time.Time
	for i := range n {
		if i == n/3 {
			// Kill the stream's leader, the worst one to lose: the two
			// others elect a new leader and the journal resends what the
			// old one did not acknowledge.
			leader := streamLeader(t, c, StreamName(DefaultStreamPrefix, 7))
			if err := c.Kill(leader); err != nil {
				t.Fatalf("kill server %d: %v", leader, err)
			}
			killed = time.Now()
		}
		r.append(j, record(i))
	}
	r.wait()
	// Logged, not asserted: the stall a leader's death costs the writer.
	t.Logf("the last append after killing the leader was done %v after the kill", time.Since(killed))
	for i, err := range r.errs {
		if err != nil {
			t.Fatalf("append %d after killing a server: %v", i, err)
		}
	}
	j.Close()
	j2 := open(t, nc, 3, nil)
	got := replayAll(t, j2, 0)
	if len(got) != n {
		t.Fatalf("replayed %d records, want %d exactly once", len(got), n)
	}
	for i, g := range got {
		if g.rec != string(record(i)) {
			t.Fatalf("record %d is %q, want %q", i, g.rec, record(i))
		}
	}
}

func TestNoAckWithoutQuorum(t *testing.T) {
	c := startCluster(t, 3)
	nc := connect(t, c)
	j := open(t, nc, 3, func(c *Config) {
		c.AckTimeout = 500 * time.Millisecond
		c.RetryMax = 2
	})
	r := &recorder{t: t}
	r.append(j, record(0))
	r.wait()
	if r.errs[0] != nil {
		t.Fatal(r.errs[0])
	}
	// Two of three down: the survivor cannot store anything, so no append
	// may be reported durable.
	c.Kill(1)
	c.Kill(2)
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	r2 := &recorder{t: t}
	for i := 1; i <= 3; i++ {
		r2.append(j, record(i))
	}
	r2.wait()
	for i, err := range r2.errs {
		if err == nil || !errors.Is(err, journal.ErrStopped) {
			t.Fatalf("append %d without a quorum: %v, want a stopping error", i, err)
		}
	}
	if j.Durable() != 2 {
		t.Fatalf("durable %d without a quorum, want 2 (fence and one record)", j.Durable())
	}
}

func TestRetryOfStoredRecordIsDeduplicated(t *testing.T) {
	for _, servers := range []int{1, 3} {
		t.Run(fmt.Sprintf("servers=%d", servers), func(t *testing.T) {
			c := startCluster(t, servers)
			j := open(t, connect(t, c), servers, nil)
			r := &recorder{t: t}
			pos := r.append(j, record(1))
			r.wait()
			if r.errs[0] != nil {
				t.Fatal(r.errs[0])
			}
			// The acknowledgement was lost, as far as the writer knows: it
			// resends the same message, id and expected sequence.
			m := nats.NewMsg(j.subject)
			m.Data = record(1)
			m.Header.Set(nats.MsgIdHdr, j.msgID(uint64(pos)))
			m.Header.Set(natsjs.ExpectedLastSeqHeader, fmt.Sprint(uint64(pos)-1))
			p := &pending{seq: uint64(pos), msg: m}
			if err := j.retry(p, natsjs.ErrAsyncPublishTimeout); err != nil {
				t.Fatalf("resend of a stored record: %v", err)
			}
			// A plain resend through the server's dedup, outside the journal.
			ack, err := j.js.PublishMsg(context.Background(), nats.NewMsg(j.subject), natsjs.WithMsgID(j.msgID(uint64(pos))))
			if err != nil || !ack.Duplicate || ack.Sequence != uint64(pos) {
				t.Fatalf("publish of a known id: %+v %v, want a duplicate of %d", ack, err, pos)
			}
			info, err := j.stream.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if info.State.LastSeq != uint64(pos) || info.State.Msgs != 2 {
				t.Fatalf("stream holds %d messages up to %d after resends, want 2 up to %d", info.State.Msgs, info.State.LastSeq, pos)
			}
		})
	}
}

func TestRemoveBeforeAndFollow(t *testing.T) {
	c := startCluster(t, 1)
	nc := connect(t, c)
	j := open(t, nc, 1, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	followed := make(chan replayed, 100)
	followErr := make(chan error, 1)
	go func() {
		followErr <- j.Follow(ctx, 0, func(end journal.Position, rec []byte) error {
			followed <- replayed{end, string(rec)}
			return nil
		})
	}()
	r := &recorder{t: t}
	for i := range 20 {
		r.append(j, record(i))
	}
	r.wait()
	for i := range 20 {
		select {
		case g := <-followed:
			if g.rec != string(record(i)) || g.pos != journal.Position(i+2) {
				t.Fatalf("followed %d: %v", i, g)
			}
		case <-time.After(waitMax):
			t.Fatalf("follower saw %d of 20 records", i)
		}
	}
	cancel()
	if err := <-followErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v, want context.Canceled", err)
	}

	if err := j.RemoveBefore(11); err != nil {
		t.Fatal(err)
	}
	if err := j.Replay(5, func(journal.Position, []byte) error { return nil }); !errors.Is(err, journal.ErrRemoved) {
		t.Fatalf("replay from a purged position: %v, want ErrRemoved", err)
	}
	got := replayAll(t, j, 11)
	if len(got) != 10 || got[0].pos != 12 {
		t.Fatalf("replay after the purge: %v", got)
	}
	// Positions keep growing after a purge.
	r2 := &recorder{t: t}
	if pos := r2.append(j, record(20)); pos != 22 {
		t.Fatalf("append after the purge at %d, want 22", pos)
	}
	r2.wait()
}

func TestConfigValidate(t *testing.T) {
	nc := &nats.Conn{}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"no connection", Config{}, false},
		{"minimal", Config{Conn: nc}, true},
		{"negative partition", Config{Conn: nc, Partition: -1}, false},
		{"six replicas", Config{Conn: nc, Replicas: 6}, false},
		{"negative timeout", Config{Conn: nc, AckTimeout: -1}, false},
		{"negative inflight", Config{Conn: nc, InflightMax: -1}, false},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v does not wrap ErrConfig", tt.name, err)
		}
	}
}

// streamLeader waits until one of the servers leads the stream.
func streamLeader(t testing.TB, c *natsserver.LocalCluster, stream string) int {
	t.Helper()
	deadline := time.Now().Add(waitMax)
	for time.Now().Before(deadline) {
		for k, s := range c.Servers {
			if s != nil && s.IsStreamLeader(stream) {
				return k
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no server leads %s within %v", stream, waitMax)
	return -1
}

// TestOpenRefusesStaleEpoch: an Open with an older lease epoch than the
// stream's last writer (a retried or delayed take-over) fails with
// ErrStaleEpoch and appends nothing, so the current owner goes on.
func TestOpenRefusesStaleEpoch(t *testing.T) {
	c := startCluster(t, 1)
	nc := connect(t, c)
	owner := open(t, nc, 1, func(c *Config) { c.Epoch = 20 })
	r := &recorder{t: t}
	r.append(owner, record(1))
	r.wait()
	for _, epoch := range []uint64{7, 19} {
		ctx, cancel := context.WithTimeout(context.Background(), waitMax)
		stale, err := Open(ctx, Config{Conn: nc, Partition: 7, Replicas: 1, Epoch: epoch, Logger: discard})
		cancel()
		if err == nil {
			stale.Close()
			t.Fatalf("open at epoch %d after epoch 20 wrote: no error", epoch)
		}
		if !errors.Is(err, ErrStaleEpoch) || !errors.Is(err, ErrFenced) {
			t.Fatalf("open at epoch %d: %v, want ErrStaleEpoch and ErrFenced", epoch, err)
		}
	}
	// The owner was not fenced: its next record is stored.
	r2 := &recorder{t: t}
	r2.append(owner, record(2))
	r2.wait()
	if r2.errs[0] != nil {
		t.Fatalf("owner's append after the stale opens: %v", r2.errs[0])
	}
	// A later epoch still takes the partition.
	taker := open(t, nc, 1, func(c *Config) { c.Epoch = 21 })
	if got := replayAll(t, taker, 0); len(got) != 2 {
		t.Fatalf("the later owner replays %d records, want 2", len(got))
	}
}

// TestReplayStopsAtTheFence: a writer whose stream another writer fenced
// after it opened (before it replayed) fails its Replay with ErrFenced
// instead of delivering the other writer's records.
func TestReplayStopsAtTheFence(t *testing.T) {
	c := startCluster(t, 1)
	nc := connect(t, c)
	first := open(t, nc, 1, func(c *Config) { c.Epoch = 3 })
	r := &recorder{t: t}
	for i := range 3 {
		r.append(first, record(i))
	}
	r.wait()
	slow := open(t, nc, 1, func(c *Config) { c.Epoch = 4 })
	if got := replayAll(t, slow, 0); len(got) != 3 {
		t.Fatalf("replay to the fence: %d records, want 3", len(got))
	}
	// Another writer takes the partition and appends before slow replays
	// again (as a take-over that was retried would).
	fast := open(t, nc, 1, func(c *Config) { c.Epoch = 5 })
	r2 := &recorder{t: t}
	r2.append(fast, []byte("the later owner's"))
	r2.wait()
	var got []string
	err := slow.Replay(0, func(_ journal.Position, rec []byte) error {
		got = append(got, string(rec))
		return nil
	})
	if !errors.Is(err, ErrFenced) || len(got) != 0 {
		t.Fatalf("replay after another writer's fence: %v with %q, want ErrFenced and nothing", err, got)
	}
}

// TestDuplicateInProcessIsResent: JetStream's "duplicate message id is in
// process" means the first copy is still being stored, so the resend loop
// must go on rather than stop the journal; other API errors stay final.
func TestDuplicateInProcessIsResent(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&natsjs.APIError{ErrorCode: 10158, Description: "duplicate message id is in process"}, true},
		{fmt.Errorf("publish: %w", &natsjs.APIError{ErrorCode: 10158}), true},
		{&natsjs.APIError{ErrorCode: natsjs.JSErrCodeStreamWrongLastSequence}, false},
		{errors.New("timeout"), false},
	} {
		if got := isDuplicateInProcess(c.err); got != c.want {
			t.Errorf("isDuplicateInProcess(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
