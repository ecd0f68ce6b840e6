package lease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/fest-platform/fest/internal/journal"
	jsjournal "github.com/fest-platform/fest/internal/journal/jetstream"
	"github.com/fest-platform/fest/internal/natsserver"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// waitMax bounds the waits for the servers; nothing asserts a duration.
const waitMax = 2 * time.Minute

func TestPlan(t *testing.T) {
	tests := []struct {
		name       string
		partitions int
		live       []string
		owners     map[int]string
		want       []string
	}{
		{"one node takes all", 4, []string{"a"}, nil, []string{"a", "a", "a", "a"}},
		{"even over three", 6, []string{"c", "a", "b"}, nil, []string{"a", "a", "b", "b", "c", "c"}},
		{"uneven: the first names get one more", 5, []string{"a", "b"}, nil, []string{"a", "a", "a", "b", "b"}},
		{"a join moves only the excess", 4, []string{"a", "b"},
			map[int]string{0: "a", 1: "a", 2: "a", 3: "a"}, []string{"a", "a", "b", "b"}},
		{"owners keep what they have", 4, []string{"a", "b"},
			map[int]string{0: "b", 1: "a", 2: "b", 3: "a"}, []string{"b", "a", "b", "a"}},
		{"a dead owner's partitions go to the live", 4, []string{"a", "b"},
			map[int]string{0: "a", 1: "b", 2: "c", 3: "c"}, []string{"a", "b", "a", "b"}},
		{"more nodes than partitions", 2, []string{"a", "b", "c"}, nil, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.partitions, tt.live, tt.owners)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Plan = %v, want %v", got, tt.want)
			}
		})
	}
}

// fakeClock moves only when told; After never fires (tests call Tick).
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *fakeClock) After(time.Duration) <-chan time.Time { return nil }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// node is a lease manager whose handler opens each acquired partition's
// JetStream journal with the lease's epoch, as the engine will.
type node struct {
	t        *testing.T
	name     string
	nc       *nats.Conn
	clock    *fakeClock
	m        *Manager
	journals map[int]*jsjournal.Journal
	events   []string
}

func (n *node) Acquired(ctx context.Context, p int, epoch uint64) error {
	j, err := jsjournal.Open(ctx, jsjournal.Config{Conn: n.nc, Partition: p, Replicas: 3, Epoch: epoch, Logger: discard})
	if err != nil {
		return err
	}
	n.journals[p] = j
	n.events = append(n.events, fmt.Sprintf("acquired %d", p))
	return nil
}

func (n *node) Release(_ context.Context, p int) error {
	n.journals[p].Close() // drains: every done is called
	delete(n.journals, p)
	n.events = append(n.events, fmt.Sprintf("released %d", p))
	return nil
}

// Lost keeps the journal open, so the test can show that its appends are
// refused; a real node closes it.
func (n *node) Lost(p int) { n.events = append(n.events, fmt.Sprintf("lost %d", p)) }

func newNode(t *testing.T, c *natsserver.LocalCluster, name string, partitions int) *node {
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, name: name, nc: nc, clock: &fakeClock{now: time.Unix(1_700_000_000, 0)}, journals: map[int]*jsjournal.Journal{}}
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	n.m, err = New(ctx, Config{JetStream: js, Node: name, Address: "http://" + name, Partitions: partitions, TTL: 5 * time.Second, Clock: n.clock, Handler: n, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, j := range n.journals {
			j.Close()
		}
	})
	return n
}

func (n *node) tick() {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	if err := n.m.Tick(ctx); err != nil {
		n.t.Fatalf("%s: tick: %v", n.name, err)
	}
}

func appendOne(t *testing.T, j *jsjournal.Journal, rec string) error {
	t.Helper()
	done := make(chan error, 1)
	if _, err := j.Append([]byte(rec), func(err error) { done <- err }); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-time.After(waitMax):
		t.Fatalf("append not done within %v", waitMax)
		return nil
	}
}

func TestHandOffExpiryTakeOverAndFencing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	c, err := natsserver.StartLocalCluster(ctx, t.TempDir(), 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const partitions = 4
	a := newNode(t, c, "a", partitions)
	a.tick()
	if got := a.m.Owned(); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("a alone owns %v, want all four", got)
	}
	for p := range partitions {
		if err := appendOne(t, a.journals[p], fmt.Sprintf("a writes %d", p)); err != nil {
			t.Fatalf("a appends to %d: %v", p, err)
		}
	}

	// b joins: the planned hand-off takes two rounds, a releasing first.
	b := newNode(t, c, "b", partitions)
	b.tick()
	if got := b.m.Owned(); len(got) != 0 {
		t.Fatalf("b took %v while a held every lease", got)
	}
	a.tick()
	b.tick()
	if got, want := a.m.Owned(), []int{0, 1}; !slices.Equal(got, want) {
		t.Fatalf("after the hand-off a owns %v, want %v", got, want)
	}
	if got, want := b.m.Owned(), []int{2, 3}; !slices.Equal(got, want) {
		t.Fatalf("after the hand-off b owns %v, want %v", got, want)
	}
	// The new owner's journal replays what the old one wrote.
	var recs []string
	b.journals[2].Replay(0, func(_ journal.Position, rec []byte) error {
		recs = append(recs, string(rec))
		return nil
	})
	if !slices.Equal(recs, []string{"a writes 2"}) {
		t.Fatalf("b replays partition 2 as %q", recs)
	}
	aLease0, _ := a.m.Lease(0)

	// a stops (SIGSTOP): no renewals. b sees a's keys unchanged for a TTL
	// on its own clock and takes them over.
	b.tick()
	b.clock.Advance(5 * time.Second)
	b.tick()
	if got := b.m.Owned(); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("after a's leases expired b owns %v, want all four", got)
	}
	bLease0, _ := b.m.Lease(0)
	if bLease0.Epoch <= aLease0.Epoch {
		t.Fatalf("b's epoch %d for partition 0 is not above a's %d", bLease0.Epoch, aLease0.Epoch)
	}

	// a resumes, unaware. Its journal is fenced by b's, whatever it thinks.
	err = appendOne(t, a.journals[0], "a writes after losing the lease")
	if !errors.Is(err, jsjournal.ErrFenced) {
		t.Fatalf("a's append after the take-over: %v, want ErrFenced", err)
	}
	// Its lease revision is stale: renewing is refused.
	stale := aLease0
	if err := a.m.Renew(ctx, &stale); !errors.Is(err, ErrLost) {
		t.Fatalf("renewal at a stale revision: %v, want ErrLost", err)
	}
	a.tick()
	if got := a.m.Owned(); len(got) != 0 {
		t.Fatalf("a still owns %v after its leases were taken", got)
	}
	if !slices.Contains(a.events, "lost 0") || !slices.Contains(a.events, "lost 1") {
		t.Fatalf("a was not told it lost 0 and 1: %v", a.events)
	}
	// a rejoins as an ordinary node and gets its share back by hand-off.
	for range 4 {
		b.tick()
		a.tick()
	}
	if got := a.m.Owned(); len(got) != 2 {
		t.Fatalf("a rejoined with %v, want two partitions", got)
	}
	v := a.m.View()
	if v.Node != "a" || len(v.Nodes) != 2 || !v.Nodes[1].Alive || v.Nodes[1].Addr != "http://b" || len(v.Partitions) != partitions {
		t.Fatalf("a's view: %+v", v)
	}
	for _, pv := range v.Partitions {
		if pv.Owner == "" || pv.LeaseRevision == 0 {
			t.Fatalf("a's view of partition %d: %+v", pv.Partition, pv)
		}
	}
	if got := b.m.Owned(); len(got) != 2 {
		t.Fatalf("b kept %v, want two partitions", got)
	}
	for _, p := range a.m.Owned() {
		if err := appendOne(t, a.journals[p], "a writes again"); err != nil {
			t.Fatalf("a appends to %d after rejoining: %v", p, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	js := natsjs.JetStream(nil)
	var h Handler = (*node)(nil)
	ok := Config{JetStream: &struct{ natsjs.JetStream }{js}, Handler: h, Node: "n1", Partitions: 8}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"minimal", func(*Config) {}, true},
		{"no node", func(c *Config) { c.Node = "" }, false},
		{"a dot in the node", func(c *Config) { c.Node = "n.1" }, false},
		{"no partitions", func(c *Config) { c.Partitions = 0 }, false},
		{"slow renewal", func(c *Config) { c.TTL = time.Second; c.RenewEvery = time.Second }, false},
		{"no handler", func(c *Config) { c.Handler = nil }, false},
	}
	for _, tt := range tests {
		c := ok
		tt.mod(&c)
		err := c.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v does not wrap ErrConfig", tt.name, err)
		}
	}
}

// countingHandler only counts; safe for Run's goroutine and the test's.
type countingHandler struct {
	mu    sync.Mutex
	owned map[int]bool
}

func (h *countingHandler) Acquired(_ context.Context, p int, _ uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.owned[p] = true
	return nil
}

func (h *countingHandler) Release(_ context.Context, p int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.owned, p)
	return nil
}

func (h *countingHandler) Lost(p int) { h.Release(context.Background(), p) }

func (h *countingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.owned)
}

// TestRunOnTheSystemClock runs two managers' loops for real: they settle on
// an even spread, and a planned stop hands everything to the other.
func TestRunOnTheSystemClock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	c, err := natsserver.StartLocalCluster(ctx, t.TempDir(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const partitions = 6
	start := func(name string) (*Manager, *countingHandler, context.CancelFunc, chan error) {
		nc, err := nats.Connect(c.URLs())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := natsjs.New(nc)
		h := &countingHandler{owned: map[int]bool{}}
		m, err := New(ctx, Config{JetStream: js, Replicas: 1, Node: name, Partitions: partitions,
			TTL: time.Second, Handler: h, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(rctx) }()
		return m, h, rcancel, done
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	a, ha, stopA, doneA := start("a")
	waitFor("a to own everything", func() bool { return len(a.Owned()) == partitions && ha.count() == partitions })
	b, hb, stopB, doneB := start("b")
	defer func() { stopB(); <-doneB }()
	waitFor("an even spread", func() bool { return len(a.Owned()) == 3 && len(b.Owned()) == 3 })
	stopA()
	if err := <-doneA; err != nil {
		t.Fatalf("a's planned stop: %v", err)
	}
	if ha.count() != 0 {
		t.Fatalf("a stopped still serving %d partitions", ha.count())
	}
	waitFor("b to take a's partitions", func() bool { return len(b.Owned()) == partitions && hb.count() == partitions })
}

// TestLeasesSurviveAServerLoss kills one of the three NATS servers under
// two nodes: renewals go on (the bucket has two of its three replicas),
// nobody loses a lease, and the journals keep appending.
func TestLeasesSurviveAServerLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	c, err := natsserver.StartLocalCluster(ctx, t.TempDir(), 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const partitions = 4
	a := newNode(t, c, "a", partitions)
	b := newNode(t, c, "b", partitions)
	for range 3 {
		a.tick()
		b.tick()
	}
	if len(a.m.Owned()) != 2 || len(b.m.Owned()) != 2 {
		t.Fatalf("spread before the loss: a %v, b %v", a.m.Owned(), b.m.Owned())
	}
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	// Ticks may fail while the connections move to the other servers and
	// the bucket elects a leader: tick until one goes through whole.
	settle := func(n *node) {
		for {
			err := n.m.Tick(ctx)
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: no tick went through after the server loss: %v", n.name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for range 2 {
		settle(a)
		settle(b)
	}
	if len(a.m.Owned()) != 2 || len(b.m.Owned()) != 2 {
		t.Fatalf("spread after the loss: a %v, b %v", a.m.Owned(), b.m.Owned())
	}
	for _, n := range []*node{a, b} {
		for _, ev := range n.events {
			if strings.HasPrefix(ev, "lost") {
				t.Fatalf("%s: %s after a server loss", n.name, ev)
			}
		}
		for _, p := range n.m.Owned() {
			if err := appendOne(t, n.journals[p], "after the server loss"); err != nil {
				t.Fatalf("%s appends to %d after the server loss: %v", n.name, p, err)
			}
		}
	}
}

// blockingHandler holds every Release until release is closed.
type blockingHandler struct {
	countingHandler
	release  chan struct{}
	releases chan int
	lost     chan int
}

func (h *blockingHandler) Release(ctx context.Context, p int) error {
	select {
	case h.releases <- p:
	default:
	}
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return h.countingHandler.Release(ctx, p)
}

func (h *blockingHandler) Lost(p int) {
	select {
	case h.lost <- p:
	default:
	}
	h.countingHandler.Lost(p)
}

// TestSlowHandOffKeepsRenewing: while a hand-off hangs in a tick (the
// handler's Release does not return), Run's renewer goes on renewing the
// node's other leases, none is lost, and the hand-off is asked again until
// it finishes.
func TestSlowHandOffKeepsRenewing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	c, err := natsserver.StartLocalCluster(ctx, t.TempDir(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const partitions = 4
	start := func(name string, h Handler) (*Manager, context.CancelFunc, chan error) {
		nc, err := nats.Connect(c.URLs())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := natsjs.New(nc)
		m, err := New(ctx, Config{JetStream: js, Replicas: 1, Node: name, Partitions: partitions,
			TTL: time.Second, ReleaseTimeout: 100 * time.Millisecond, Handler: h, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(rctx) }()
		return m, rcancel, done
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	ha := &blockingHandler{countingHandler: countingHandler{owned: map[int]bool{}}, release: make(chan struct{}), releases: make(chan int, 16), lost: make(chan int, 16)}
	a, stopA, doneA := start("a", ha)
	waitFor("a to own everything", func() bool { return len(a.Owned()) == partitions })
	_, stopB, doneB := start("b", &countingHandler{owned: map[int]bool{}})
	defer func() { stopB(); <-doneB }()
	// The plan gives b the upper half; a's hand-off of each hangs.
	handed := <-ha.releases
	kept := -1
	for _, p := range a.Owned() {
		if p != handed && p < partitions/2 {
			kept = p
		}
	}
	if kept < 0 {
		t.Fatalf("a owns %v while handing %d off; no partition it keeps", a.Owned(), handed)
	}
	l0, _ := a.Lease(kept)
	// Renewals of the kept lease go on while the hand-off hangs, for
	// several TTLs, and the hand-off is asked again at later ticks.
	waitFor("renewals during the hung hand-off", func() bool {
		l, ok := a.Lease(kept)
		return ok && l.Revision >= l0.Revision+5*partitions
	})
	// b's share is the upper half: a hands off each of them, at every
	// tick, until the handler lets go.
	for range 4 {
		if p := <-ha.releases; p < partitions/2 {
			t.Fatalf("hand-off asked for %d, which a keeps", p)
		}
	}
	select {
	case p := <-ha.lost:
		t.Fatalf("partition %d lost while a hand-off hung", p)
	default:
	}
	if !a.Valid(kept) || !a.Valid(handed) {
		t.Fatalf("a's leases not valid while its hand-off hangs: kept %v, handed %v", a.Valid(kept), a.Valid(handed))
	}
	if got := a.Stats().Lost.Load(); got != 0 {
		t.Fatalf("%d leases lost", got)
	}
	// Once the handler lets go, the hand-off completes.
	close(ha.release)
	waitFor("the hand-off", func() bool { return len(a.Owned()) == partitions/2 })
	stopA()
	if err := <-doneA; err != nil {
		t.Fatalf("a's planned stop: %v", err)
	}
}
