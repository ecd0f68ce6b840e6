package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/lease"
)

// recordingEngine records the transitions a Handler asks for; its
// AddPartition fails while failAdds is set.
type recordingEngine struct {
	mu       sync.Mutex
	calls    []string
	failAdds bool
	added    chan struct{}
	// removing, if set, holds RemovePartition until it is closed.
	removing chan struct{}
}

func (e *recordingEngine) record(s string) {
	e.mu.Lock()
	e.calls = append(e.calls, s)
	e.mu.Unlock()
}

func (e *recordingEngine) AddPartition(_ context.Context, p int, epoch uint64) error {
	e.record("add")
	select {
	case e.added <- struct{}{}:
	default:
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failAdds {
		return errors.New("stream unavailable")
	}
	return nil
}

func (e *recordingEngine) RemovePartition(context.Context, int) error {
	e.record("remove")
	if e.removing != nil {
		<-e.removing
	}
	return nil
}
func (e *recordingEngine) LosePartition(int) error        { e.record("lose"); return nil }
func (e *recordingEngine) Err() error                     { return nil }
func (e *recordingEngine) ExtendLease(int, time.Duration) {}

// TestHandlerOrderAndRetry: transitions of a partition run in the order
// asked; an AddPartition that fails is retried while its lease is held,
// and a Release asked meanwhile ends the retries instead of waiting for
// them forever.
func TestHandlerOrderAndRetry(t *testing.T) {
	eng := &recordingEngine{failAdds: true, added: make(chan struct{}, 1)}
	h, err := NewHandler(HandlerConfig{Engine: eng, Partitions: 2, RetryWait: time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var epoch atomic.Uint64
	epoch.Store(7)
	h.SetLeases(func(p int) (lease.Lease, bool) { return lease.Lease{Partition: p, Epoch: epoch.Load()}, true })
	if err := h.Acquired(context.Background(), 0, 7); err != nil {
		t.Fatal(err)
	}
	for range 3 { // a few failed tries
		select {
		case <-eng.added:
		case <-time.After(waitMax):
			t.Fatal("AddPartition was not retried")
		}
	}
	h.Release(context.Background(), 0) // returns: the retries stopped
	h.Lost(0)
	eng.mu.Lock()
	eng.failAdds = false
	eng.mu.Unlock()
	epoch.Store(9)
	if err := h.Acquired(context.Background(), 0, 9); err != nil {
		t.Fatal(err)
	}
	h.Close()
	calls := slices.Compact(slices.Clone(eng.calls))
	if want := []string{"add", "remove", "lose", "add"}; !slices.Equal(calls, want) {
		t.Fatalf("transitions %v, want %v (repeats folded)", eng.calls, want)
	}
}

// TestHandlerSkipsStaleEpoch: an AddPartition whose lease has moved on to
// another epoch by the time it runs (queued behind a slow transition, or
// lost and taken again) is not tried at all, so it cannot fence the
// partition's current owner.
func TestHandlerSkipsStaleEpoch(t *testing.T) {
	eng := &recordingEngine{added: make(chan struct{}, 1), removing: make(chan struct{})}
	h, err := NewHandler(HandlerConfig{Engine: eng, Partitions: 1, RetryWait: time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var epoch atomic.Uint64
	epoch.Store(5)
	h.SetLeases(func(p int) (lease.Lease, bool) {
		return lease.Lease{Partition: p, Epoch: epoch.Load()}, epoch.Load() != 0
	})
	// A hand-off holds the partition's queue; the Acquired at epoch 5
	// waits behind it, and by the time it runs the lease is at epoch 8.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	if err := h.Release(ctx, 0); err == nil {
		t.Fatal("a Release whose hand-off is held returned nil before its context ended")
	}
	cancel()
	if err := h.Acquired(context.Background(), 0, 5); err != nil {
		t.Fatal(err)
	}
	epoch.Store(8)
	close(eng.removing)
	h.Close()
	if want := []string{"remove"}; !slices.Equal(eng.calls, want) {
		t.Fatalf("transitions %v, want %v: the stale AddPartition ran", eng.calls, want)
	}
}

// TestHandlerReleaseIsBounded: a Release whose hand-off is slow returns an
// error when its context ends (the lease manager keeps the lease and asks
// again next tick), and asked again it waits for the same hand-off rather
// than queue a second one.
func TestHandlerReleaseIsBounded(t *testing.T) {
	eng := &recordingEngine{removing: make(chan struct{})}
	h, err := NewHandler(HandlerConfig{Engine: eng, Partitions: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		err := h.Release(ctx, 0)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("slow hand-off: %v, want the context's deadline", err)
		}
	}
	close(eng.removing)
	h.Close() // waits for the queued transitions
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if want := []string{"remove"}; !slices.Equal(eng.calls, want) {
		t.Fatalf("transitions %v, want one hand-off", eng.calls)
	}
}
