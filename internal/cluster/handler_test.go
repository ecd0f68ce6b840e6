package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
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

func (e *recordingEngine) RemovePartition(context.Context, int) error { e.record("remove"); return nil }
func (e *recordingEngine) LosePartition(int) error                    { e.record("lose"); return nil }
func (e *recordingEngine) Err() error                                 { return nil }

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
	h.SetLeases(func(p int) (lease.Lease, bool) { return lease.Lease{Partition: p, Epoch: 7}, true })
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
	if err := h.Acquired(context.Background(), 0, 9); err != nil {
		t.Fatal(err)
	}
	h.Close()
	calls := slices.Compact(slices.Clone(eng.calls))
	if want := []string{"add", "remove", "lose", "add"}; !slices.Equal(calls, want) {
		t.Fatalf("transitions %v, want %v (repeats folded)", eng.calls, want)
	}
}
