package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/vfs"
)

// TestFullQueueAnswersOverloaded stalls the journal's fsync so the worker
// stops at its in-flight bound and its queue fills, then checks that
// further submissions are answered CodeOverloaded at once, and that
// everything accepted completes once the disk comes back.
func TestFullQueueAnswersOverloaded(t *testing.T) {
	release := make(chan struct{})
	stalled := make(chan struct{}, 1)
	var armed atomic.Bool // Open's own fsyncs go through
	e, err := Open(Config{Dir: t.TempDir(), Partitions: 1, Workers: 1, QueueDepthMax: 2, InflightRecordsMax: 1, Logger: quiet, SnapshotEveryBytes: -1,
		JournalFsync: func(f vfs.File) error {
			if !armed.Load() {
				return f.Sync()
			}
			select {
			case stalled <- struct{}{}:
			default:
			}
			<-release
			return f.Sync()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	armed.Store(true)
	first := NewBatch(1)
	first.Add(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "first"}})
	e.Submit(first)
	<-stalled // its record is waiting for fsync
	order := func() *Batch {
		b := NewBatch(1)
		b.Add(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "x"}})
		e.Submit(b)
		return b
	}
	var accepted []*Batch
	overloaded := false
	deadline := time.Now().Add(5 * time.Second)
	for !overloaded && time.Now().Before(deadline) {
		b := order()
		select {
		case <-b.Done():
			if b.Requests[0].Result.Code != CodeOverloaded {
				t.Fatalf("got %v while the journal is stalled", b.Requests[0].Result.Code)
			}
			overloaded = true
		case <-time.After(10 * time.Millisecond):
			accepted = append(accepted, b)
		}
	}
	if !overloaded {
		t.Fatal("the queue never filled")
	}
	if len(accepted) > 4 {
		t.Fatalf("%d submissions queued with a queue of 2", len(accepted))
	}
	close(release)
	accepted = append(accepted, first)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, b := range accepted {
		select {
		case <-b.Done():
			if !b.Requests[0].Result.OK() {
				t.Fatalf("accepted command failed: %v", b.Requests[0].Result.Err())
			}
		case <-ctx.Done():
			t.Fatal("accepted command never completed")
		}
	}
}
