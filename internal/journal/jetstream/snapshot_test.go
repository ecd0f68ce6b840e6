package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/fest-platform/fest/internal/journal"
)

func TestSnapshotsKeepTheNewestAndBoundReplay(t *testing.T) {
	c := startCluster(t, 3)
	nc := connect(t, c)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	snaps, err := OpenSnapshots(ctx, SnapshotConfig{JetStream: js, Partition: 7})
	if err != nil {
		t.Fatal(err)
	}
	other, err := OpenSnapshots(ctx, SnapshotConfig{JetStream: js, Partition: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.WriteFrom(ctx, 3, func(w io.Writer) error { _, err := w.Write([]byte("other")); return err }); err != nil {
		t.Fatal(err)
	}
	j := open(t, nc, 3, nil)
	r := &recorder{t: t}
	for i := range 30 {
		r.append(j, record(i))
		if i%10 == 9 {
			r.wait()
			pos := j.Durable()
			// A snapshot larger than one object chunk (128 KiB).
			data := bytes.Repeat(fmt.Appendf(nil, "state at %d;", pos), 20_000)
			if err := snaps.WriteFrom(ctx, pos, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
				t.Fatalf("write snapshot at %d: %v", pos, err)
			}
		}
	}
	r.wait()
	// The listing goes through a new consumer each time, which may lag a
	// busy server for a moment: wait for it (generously), never for less.
	var list []journal.Position
	want := []journal.Position{31, 21}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		list, err = snaps.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(list, want) || time.Now().After(deadline) {
			break
		}
	}
	if !slices.Equal(list, want) {
		t.Fatalf("snapshots kept %v, want %v (the two newest, partition 8's apart)", list, want)
	}
	rc, err := snaps.Open(ctx, list[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.HasPrefix(got, []byte("state at 31;")) || len(got) != 20_000*len("state at 31;") {
		t.Fatalf("read snapshot: %d bytes, %v", len(got), err)
	}
	// Purging behind the oldest snapshot kept leaves a tail that replays
	// from it.
	oldest, err := snaps.Oldest(ctx)
	if err != nil || oldest != 21 {
		t.Fatalf("oldest snapshot %d, %v", oldest, err)
	}
	if err := j.RemoveBefore(oldest); err != nil {
		t.Fatal(err)
	}
	if tail := replayAll(t, j, oldest); len(tail) != 10 || tail[0].rec != string(record(20)) {
		t.Fatalf("tail after the oldest snapshot: %d records", len(tail))
	}
	if err := j.Replay(oldest-1, func(journal.Position, []byte) error { return nil }); !errors.Is(err, journal.ErrRemoved) {
		t.Fatalf("replay before the oldest snapshot: %v, want ErrRemoved", err)
	}
}
