package logistics

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// FuzzStageSnapshot feeds arbitrary sections (seeded with a snapshot of
// each layout) to the loader, with the chunks of a real snapshot beside
// them: it must refuse what does not decode with ErrBadSnapshot, never
// panic, and a section it accepts must load a state that answers reads.
func FuzzStageSnapshot(f *testing.F) {
	feed, ids := goldenFeed(&testing.T{})
	files := newMemFiles()
	f.Add(feed.snapshot(files))
	if v1, err := os.ReadFile("testdata/snapshot-v1.bin"); err == nil {
		f.Add(v1)
	}
	f.Fuzz(func(t *testing.T, section []byte) {
		l, _ := New(Config{})
		st, err := l.StageSnapshot(bytes.NewReader(section), 7, files)
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("error without ErrBadSnapshot: %v", err)
			}
			return
		}
		st.Install()
		l.Stats()
		for _, id := range ids {
			l.Parcel(id)
		}
	})
}

// FuzzChunks feeds arbitrary bytes to each chunk decoder, which a CRC
// normally guards: they must refuse what does not decode, never panic.
func FuzzChunks(f *testing.F) {
	feed, _ := goldenFeed(&testing.T{})
	st := feed.l.st
	f.Add(byte(0), st.appendParcels(nil, 0, st.parcels.len()))
	f.Add(byte(1), st.appendScans(nil, 0, st.scanLog.len()))
	f.Add(byte(2), st.appendStrings(nil, 0, len(st.strs)))
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		l, _ := New(Config{})
		into := l.st
		into.regions = st.regions
		into.strs = st.strs
		into.scanLog = st.scanLog
		switch kind % 3 {
		case 0:
			into.loadParcels(data, 0, len(data)/parcelBytes)
		case 1:
			into.scanLog = newChunked[scan](scansPerChunk)
			into.loadScans(data, 0, len(data)/scanBytes)
		case 2:
			into.strs = nil
			into.loadStrings(data, 0, 3)
		}
	})
}
