package journal

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestFollowAcrossSegments appends records while a follower reads them,
// with segments rotating underneath, and checks it sees each exactly once
// in order.
func TestFollowAcrossSegments(t *testing.T) {
	f, err := Open(Config{Dir: t.TempDir(), SegmentBytesMax: 4096, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const n = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan string, n)
	errc := make(chan error, 1)
	go func() {
		errc <- f.Follow(ctx, 0, func(end Position, rec []byte) error {
			got <- string(rec)
			return nil
		})
	}()
	for i := 0; i < n; i++ {
		if _, err := f.Append([]byte(fmt.Sprintf("record %d", i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case s := <-got:
			if want := fmt.Sprintf("record %d", i); s != want {
				t.Fatalf("got %q want %q", s, want)
			}
		case err := <-errc:
			t.Fatalf("follow stopped after %d records: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("timed out after %d records", i)
		}
	}
	cancel()
	if err := <-errc; err != context.Canceled {
		t.Fatalf("follow returned %v", err)
	}
}
