package journal

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// quietLogger keeps expected recovery warnings out of test output.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// testConfig returns a config for dir with fsync disabled and tiny limits so
// that rotation and grouping happen with little data.
func testConfig(dir string) Config {
	return Config{
		Dir:             dir,
		SegmentBytesMax: 4 << 10,
		GroupBytesMax:   1 << 10,
		QueueBytesMax:   64 << 10,
		NoSync:          true,
		Logger:          quietLogger,
	}
}

func mustOpen(t testing.TB, cfg Config) *File {
	t.Helper()
	j, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j
}

// record is one replayed record.
type record struct {
	end Position
	rec []byte
}

func replayAll(t testing.TB, j *File, from Position) []record {
	t.Helper()
	var out []record
	err := j.Replay(from, func(end Position, rec []byte) error {
		out = append(out, record{end, bytes.Clone(rec)})
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%d): %v", from, err)
	}
	return out
}

// payload returns a deterministic record of n bytes for index i.
func payload(i, n int) []byte {
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(i*31 + k)
	}
	return b
}

// appendSync appends rec and waits for its done.
func appendSync(t testing.TB, j *File, rec []byte) Position {
	t.Helper()
	ch := make(chan error, 1)
	pos, err := j.Append(rec, func(err error) { ch <- err })
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := <-ch; err != nil {
		t.Fatalf("done: %v", err)
	}
	return pos
}

// appendAll appends recs without waiting between them, then waits for every
// done, and returns the positions.
func appendAll(t testing.TB, j *File, recs [][]byte) []Position {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(recs))
	pos := make([]Position, len(recs))
	for i, r := range recs {
		wg.Add(1)
		p, err := j.Append(r, func(err error) { errs[i] = err; wg.Done() })
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		pos[i] = p
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("done: %v", err)
	}
	return pos
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func checkRecords(t testing.TB, got []record, want [][]byte, wantEnds []Position) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].rec, want[i]) {
			t.Fatalf("record %d: payload differs (len %d vs %d)", i, len(got[i].rec), len(want[i]))
		}
		if wantEnds != nil && got[i].end != wantEnds[i] {
			t.Fatalf("record %d: end %d, want %d", i, got[i].end, wantEnds[i])
		}
	}
}

func segPath(dir string, start Position) string { return filepath.Join(dir, segmentName(start)) }

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
