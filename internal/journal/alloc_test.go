package journal

import "testing"

func TestAppendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are checked in the non-race pass of scripts/test.sh")
	}
	cfg := testConfig(t.TempDir())
	cfg.SegmentBytesMax = 1 << 30
	j := mustOpen(t, cfg)
	defer j.Close()
	rec := payload(1, 1000)
	done := make(chan error, 1)
	cb := func(err error) { done <- err }
	appendWait := func() {
		if _, err := j.Append(rec, cb); err != nil {
			t.Fatal(err)
		}
		<-done
	}
	for range 100 {
		appendWait()
	}
	if n := testing.AllocsPerRun(1000, appendWait); n > 0.1 {
		t.Fatalf("Append allocates %.2f times per call", n)
	}
}
