package jetstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/journal"
)

// TestReaderFollowsWithoutFencing: a reader opened before any writer finds
// the stream, follows the records and fence markers (as empty records) of
// two writers in turn, never fences the writer, and reports a purged start
// as journal.ErrRemoved.
func TestReaderFollowsWithoutFencing(t *testing.T) {
	c := startCluster(t, 1)
	nc := connect(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	rd, err := OpenReader(ctx, Config{Conn: nc, Partition: 7, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	followed := make(chan replayed, 100)
	followCtx, stop := context.WithCancel(ctx)
	followErr := make(chan error, 1)
	go func() {
		followErr <- rd.Follow(followCtx, 0, func(end journal.Position, rec []byte) error {
			followed <- replayed{end, string(rec)}
			return nil
		})
	}()
	first := open(t, nc, 1, func(c *Config) { c.Epoch = 1 })
	r := &recorder{t: t}
	for i := range 3 {
		r.append(first, record(i))
	}
	r.wait()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := open(t, nc, 1, func(c *Config) { c.Epoch = 2 })
	// The reader's presence changed nothing for the writer.
	r = &recorder{t: t}
	r.append(second, record(3))
	r.wait()
	want := []replayed{{1, ""}, {2, string(record(0))}, {3, string(record(1))}, {4, string(record(2))}, {5, ""}, {6, string(record(3))}}
	for i, w := range want {
		select {
		case g := <-followed:
			if g != w {
				t.Fatalf("followed %d: %v, want %v", i, g, w)
			}
		case <-time.After(waitMax):
			t.Fatalf("reader saw %d of %d records", i, len(want))
		}
	}
	stop()
	if err := <-followErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v", err)
	}
	if last, err := rd.Last(ctx); err != nil || last != 6 {
		t.Fatalf("last %d, %v", last, err)
	}
	var got []replayed
	if err := rd.Replay(4, func(end journal.Position, rec []byte) error {
		got = append(got, replayed{end, string(rec)})
		return nil
	}); err != nil || len(got) != 2 || got[0] != want[4] || got[1] != want[5] {
		t.Fatalf("replay from 4: %v, %v", got, err)
	}
	if err := second.RemoveBefore(3); err != nil {
		t.Fatal(err)
	}
	if err := rd.Follow(ctx, 1, func(journal.Position, []byte) error { return nil }); !errors.Is(err, journal.ErrRemoved) {
		t.Fatalf("follow from a purged position: %v, want ErrRemoved", err)
	}
	if err := rd.Replay(1, func(journal.Position, []byte) error { return nil }); !errors.Is(err, journal.ErrRemoved) {
		t.Fatalf("replay from a purged position: %v, want ErrRemoved", err)
	}
}
