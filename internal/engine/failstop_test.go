package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/fest-platform/fest/internal/vfs"
)

// TestFsyncFailureStopsEngine makes the journal's fsync fail and checks the
// engine stops: the commands waiting on that fsync and every later command
// are answered CodeUnavailable, never OK, and Err reports the cause.
func TestFsyncFailureStopsEngine(t *testing.T) {
	var fail atomic.Bool
	errDisk := errors.New("disk on fire")
	e, err := Open(Config{Dir: t.TempDir(), Partitions: 4, Logger: quiet, SnapshotEveryBytes: -1,
		JournalFsync: func(f vfs.File) error {
			if fail.Load() {
				return errDisk
			}
			return f.Sync()
		}})
	if err != nil {
		t.Fatal(err)
	}
	testCatalog(t, e, 2, 2, 100)
	fail.Store(true)
	ctx := context.Background()
	r := e.Do(ctx, Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s0-0", Quantity: 1}}}})
	if r.Code != CodeUnavailable {
		t.Fatalf("order during failing fsync: got %v, want unavailable", r.Code)
	}
	if !errors.Is(e.Err(), errDisk) {
		t.Fatalf("Err() = %v, want the fsync error", e.Err())
	}
	r = e.Do(ctx, Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s0-1", Quantity: 1}}}})
	if r.Code != CodeUnavailable {
		t.Fatalf("order after the failure: got %v, want unavailable", r.Code)
	}
	if err := e.Close(); err == nil {
		t.Fatal("Close after a journal failure returned nil")
	}
}
