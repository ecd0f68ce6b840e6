package journal

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func snapNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestSnapshotRoundTripAndPrune(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSnapshots(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := latest(s); ok || err != nil {
		t.Fatalf("Latest on empty dir: ok=%v err=%v", ok, err)
	}
	for i, pos := range []Position{100, 300, 200, 400} {
		if err := s.Write(pos, payload(i, 1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	pos, data, ok, err := latest(s)
	if err != nil || !ok || pos != 400 || !bytes.Equal(data, payload(3, 1003)) {
		t.Fatalf("Latest = %d, %d bytes, %v, %v", pos, len(data), ok, err)
	}
	want := []string{snapshotName(300), snapshotName(400)}
	if got := snapNames(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
	// Rewriting the same position replaces it; empty data is fine.
	if err := s.Write(400, nil); err != nil {
		t.Fatal(err)
	}
	if pos, data, ok, _ := latest(s); !ok || pos != 400 || len(data) != 0 {
		t.Fatalf("Latest after rewrite = %d, %d bytes", pos, len(data))
	}
}

func TestSnapshotStreaming(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSnapshots(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	big := payload(7, 3<<20+17)
	err = s.WriteFrom(42, func(w io.Writer) error {
		// Small writes exercise the buffering.
		for b := big; len(b) > 0; {
			n := min(len(b), 1000)
			if _, err := w.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pos, rc, size, ok, err := latestReader(s)
	if err != nil || !ok || pos != 42 || size != int64(len(big)) {
		t.Fatalf("LatestReader = %d, size %d, %v, %v", pos, size, ok, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	_, data, _, _ := latest(s)
	if !bytes.Equal(data, big) {
		t.Fatal("Latest and LatestReader disagree")
	}
}

func TestSnapshotFallback(t *testing.T) {
	tests := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"data bit flip", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"truncated data", func(b []byte) []byte { return b[:len(b)-1] }},
		{"truncated header", func(b []byte) []byte { return b[:20] }},
		{"empty file", func(b []byte) []byte { return nil }},
		{"header bit flip", func(b []byte) []byte { b[20] ^= 1; return b }},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := OpenSnapshots(nil, dir)
			if err != nil {
				t.Fatal(err)
			}
			s.log = quietLogger
			if err := s.Write(10, []byte("older")); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(20, []byte("newer")); err != nil {
				t.Fatal(err)
			}
			mutate(t, filepath.Join(dir, snapshotName(20)), tt.damage)
			pos, data, ok, err := latest(s)
			if err != nil || !ok || pos != 10 || string(data) != "older" {
				t.Fatalf("Latest = %d %q %v %v, want the older snapshot", pos, data, ok, err)
			}
			pos, rc, _, ok, err := latestReader(s)
			if err != nil || !ok || pos != 10 {
				t.Fatalf("LatestReader = %d %v %v", pos, ok, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(got) != "older" {
				t.Fatalf("LatestReader data %q, %v", got, err)
			}
			// With both damaged there is no snapshot at all.
			mutate(t, filepath.Join(dir, snapshotName(10)), tt.damage)
			if _, _, ok, err := latest(s); ok || err != nil {
				t.Fatalf("Latest with no valid snapshot: ok=%v err=%v", ok, err)
			}
		})
	}
}

func TestSnapshotWriteIsAtomic(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSnapshots(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(10, []byte("good")); err != nil {
		t.Fatal(err)
	}
	// A writer that fails half-way publishes nothing and leaves no file.
	boom := errors.New("engine failed")
	err = s.WriteFrom(20, func(w io.Writer) error {
		w.Write(make([]byte, 2<<20))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteFrom = %v", err)
	}
	if got := snapNames(t, dir); !slices.Equal(got, []string{snapshotName(10)}) {
		t.Fatalf("files after failed write: %v", got)
	}
	// A crash during a write leaves a temp file; it is never read and is
	// cleaned up on open.
	tmp := filepath.Join(dir, "snap-123"+snapshotTmpSuffix)
	if err := os.WriteFile(tmp, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pos, data, ok, _ := latest(s); !ok || pos != 10 || string(data) != "good" {
		t.Fatalf("Latest = %d %q", pos, data)
	}
	s.log = quietLogger
	s2, err := OpenSnapshots(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file survived OpenSnapshots: %v", err)
	}
	if pos, _, ok, _ := latest(s2); !ok || pos != 10 {
		t.Fatalf("Latest after reopen = %d %v", pos, ok)
	}
}

func TestSnapshotReaderDetectsChange(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSnapshots(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(5, []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	_, rc, _, ok, err := latestReader(s)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	defer rc.Close()
	// Damage the file after validation but before reading.
	f, err := os.OpenFile(filepath.Join(dir, snapshotName(5)), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("X"), snapshotHeaderLen+3)
	f.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadAll = %v, want ErrCorrupt", err)
	}
}

// TestQuarantineSetsARefusedSnapshotAside checks that a quarantined
// snapshot is no longer listed nor counted among the kept ones, so the next
// snapshot keeps the good older one, and that its bytes stay for an
// operator.
func TestQuarantineSetsARefusedSnapshotAside(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSnapshots(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []Position{10, 20} {
		if err := s.Write(pos, []byte("state")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Quarantine(20); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(30, []byte("state")); err != nil {
		t.Fatal(err)
	}
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []Position{30, 10}) {
		t.Fatalf("snapshots kept after quarantining 20 and writing 30: %v, want [30 10]", got)
	}
	if _, err := os.Stat(filepath.Join(dir, snapshotName(20)+snapshotDamagedSuffix)); err != nil {
		t.Fatalf("the quarantined snapshot is gone: %v", err)
	}
}

// latestReader opens the newest snapshot that verifies, as recovery walks
// List and Open: damaged ones are skipped.
func latestReader(s *Snapshots) (pos Position, rc io.ReadCloser, size int64, ok bool, err error) {
	list, err := s.List()
	if err != nil {
		return 0, nil, 0, false, err
	}
	for _, p := range list {
		rc, size, err := s.Open(p)
		if err == nil {
			return p, rc, size, true, nil
		}
	}
	return 0, nil, 0, false, nil
}

// latest reads the newest snapshot that verifies (see latestReader).
func latest(s *Snapshots) (pos Position, data []byte, ok bool, err error) {
	pos, rc, _, ok, err := latestReader(s)
	if !ok || err != nil {
		return 0, nil, ok, err
	}
	defer rc.Close()
	data, err = io.ReadAll(rc)
	if err != nil {
		return 0, nil, false, nil
	}
	return pos, data, true, nil
}
