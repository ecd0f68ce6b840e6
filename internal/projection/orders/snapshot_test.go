package orders

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// memChunks is an in-memory ChunkStore that records what was written.
type memChunks struct {
	files   map[string][]byte
	written []string // names written since the last reset
}

func newMemChunks() *memChunks { return &memChunks{files: make(map[string][]byte)} }

func (m *memChunks) WriteChunk(name string, data []byte) error {
	m.files[name] = bytes.Clone(data)
	m.written = append(m.written, name)
	return nil
}

func (m *memChunks) ReadChunk(name string) ([]byte, error) {
	b, ok := m.files[name]
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", name, fs.ErrNotExist)
	}
	return bytes.Clone(b), nil
}

// feeder applies synthetic events to a store in journal order.
type feeder struct {
	s      *Store
	seqs   [8]uint64
	placed int
	pos    uint64
	ids    []engine.OrderID
}

func (f *feeder) place(t testing.TB, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		p := f.placed % len(f.seqs)
		f.seqs[p]++
		f.placed++
		id := orderIDOf(p, f.seqs[p])
		f.ids = append(f.ids, id)
		f.apply(t, &engine.Event{Kind: engine.EventOrderPlaced, OrderID: id, BuyerID: fmt.Sprintf("buyer-%d", f.placed%97),
			MerchantID: "m", Channel: "app", Region: "CN-ZJ", Total: int64(100 + f.placed), At: int64(f.placed), PayBy: int64(f.placed) + 1000,
			Items: []engine.Item{{SKUID: "sku-" + strings.Repeat("x", f.placed%40), Quantity: 1, UnitPrice: int64(100 + f.placed)}}}, i%100 == 99 || i == n-1)
	}
}

func (f *feeder) status(t testing.TB, kind engine.EventKind, id engine.OrderID) {
	t.Helper()
	f.apply(t, &engine.Event{Kind: kind, OrderID: id, At: int64(f.placed) + 7}, true)
}

func (f *feeder) apply(t testing.TB, ev *engine.Event, last bool) {
	t.Helper()
	if last {
		f.pos += 10
	}
	ev.Position, ev.Last = f.pos, last
	if err := f.s.Apply(ev); err != nil {
		t.Fatal(err)
	}
	if last {
		f.s.Commit(ev.Position, ev.At)
	}
}

func snapshot(t testing.TB, s *Store, cs *memChunks) []byte {
	t.Helper()
	cs.written = nil
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf, cs); err != nil {
		t.Fatal(err)
	}
	s.SnapshotDurable()
	return buf.Bytes()
}

func load(t *testing.T, manifest []byte, pos uint64, cs projection.Files) *Store {
	t.Helper()
	s, _ := Open(Config{})
	if err := s.LoadSnapshot(bytes.NewReader(manifest), pos, cs); err != nil {
		t.Fatal(err)
	}
	return s
}

// sameStores checks that b answers every query as a does.
func sameStores(t *testing.T, a, b *Store, ids []engine.OrderID) {
	t.Helper()
	for _, id := range ids {
		oa, errA := a.Get(id)
		ob, errB := b.Get(id)
		if errA != nil || errB != nil || fmt.Sprint(oa) != fmt.Sprint(ob) {
			t.Fatalf("order %v: %+v (%v) then %+v (%v)", id, oa, errA, ob, errB)
		}
	}
	for i := 0; i < 97; i++ {
		buyer := fmt.Sprintf("buyer-%d", i)
		la, _, _ := a.ListByBuyer(buyer, listLimitMax, "")
		lb, _, _ := b.ListByBuyer(buyer, listLimitMax, "")
		if fmt.Sprint(la) != fmt.Sprint(lb) {
			t.Fatalf("history of %s differs: %d orders then %d", buyer, len(la), len(lb))
		}
	}
	if a.Stats().Orders != b.Stats().Orders || a.Stats().ArenaBytes != b.Stats().ArenaBytes {
		t.Fatalf("stats %+v then %+v", a.Stats(), b.Stats())
	}
}

// TestOrderIDLayout checks that orderIDOf builds ids as the engine does.
func TestOrderIDLayout(t *testing.T) {
	for _, p := range []int{0, 1, 63, partitionsMax - 1} {
		for _, seq := range []uint64{1, 2, 1 << 40, 1<<orderSeqBits - 1} {
			id := orderIDOf(p, seq)
			if id.Partition() != p || id.Seq() != seq {
				t.Fatalf("orderIDOf(%d, %d) = %v: partition %d seq %d", p, seq, id, id.Partition(), id.Seq())
			}
		}
	}
}

// TestOrderRefSize checks that the buyer index a snapshot needs took what
// was padding: a partition entry is still 32 bytes an order.
func TestOrderRefSize(t *testing.T) {
	if n := unsafe.Sizeof(orderRef{}); n != 32 {
		t.Fatalf("orderRef is %d bytes, want 32", n)
	}
}

// TestSnapshotIncremental checks that each snapshot writes only the chunks
// that changed since the last durable one, and that every snapshot loads
// into a store that answers as the original did and keeps following.
func TestSnapshotIncremental(t *testing.T) {
	s, _ := Open(Config{})
	f := &feeder{s: s}
	cs := newMemChunks()
	f.place(t, 60_000) // about four arena chunks
	m := snapshot(t, s, cs)
	chunks := len(s.mu.arena)
	if chunks < 3 || len(cs.written) != 2*chunks {
		t.Fatalf("first snapshot: %d chunks, wrote %d files: %v", chunks, len(cs.written), cs.written)
	}
	sameStores(t, s, load(t, m, f.pos, cs), f.ids)

	steps := []struct {
		name   string
		change func()
		want   []string // prefixes of the chunk names written
	}{
		{"nothing changed", func() {}, nil},
		{"an old order paid", func() { f.status(t, engine.EventOrderPaid, f.ids[0]) }, []string{"os-status-00000000-"}},
		{"old orders cancelled and expired", func() {
			f.status(t, engine.EventOrderCancelled, f.ids[1])
			f.status(t, engine.EventOrderExpired, f.ids[len(f.ids)-1])
		}, []string{"os-status-00000000-", fmt.Sprintf("os-status-%08d-", chunks-1)}},
		{"new orders", func() { f.place(t, 10) }, []string{fmt.Sprintf("os-arena-%08d-", chunks-1), fmt.Sprintf("os-status-%08d-", chunks-1)}},
	}
	for _, step := range steps {
		step.change()
		m = snapshot(t, s, cs)
		if len(cs.written) != len(step.want) {
			t.Fatalf("%s: wrote %v, want %v", step.name, cs.written, step.want)
		}
		for i, w := range step.want {
			if !strings.HasPrefix(cs.written[i], w) {
				t.Fatalf("%s: wrote %v, want %v", step.name, cs.written, step.want)
			}
		}
		sameStores(t, s, load(t, m, f.pos, cs), f.ids)
	}

	// A loaded store goes on incrementally: its first snapshot rewrites
	// only what changed after the load, and names the same full chunks.
	l := load(t, m, f.pos, cs)
	names, err := (*Store)(nil).SnapshotChunks(bytes.NewReader(m))
	if err != nil {
		t.Fatal(err)
	}
	f.s = l
	f.place(t, 20_000)
	f.status(t, engine.EventOrderPaid, f.ids[2])
	m2 := snapshot(t, l, cs)
	names2, _ := (*Store)(nil).SnapshotChunks(bytes.NewReader(m2))
	if !slices.Contains(names2, names[2]) || !slices.Contains(names2, names[len(names)-4]) {
		t.Fatalf("full chunks not reused: %v then %v", names, names2)
	}
	for _, w := range cs.written {
		if slices.Contains(names, w) {
			t.Fatalf("rewrote %s under the same name", w)
		}
	}
	sameStores(t, l, load(t, m2, f.pos, cs), f.ids)
	for name := range maps.Keys(cs.files) {
		if !strings.HasPrefix(name, "os-arena-") && !strings.HasPrefix(name, "os-status-") {
			t.Fatalf("unexpected chunk name %s", name)
		}
	}
}

// TestSnapshotNotDurableIsWrittenAgain checks that chunks of a snapshot that
// never became durable are written again by the next one.
func TestSnapshotNotDurableIsWrittenAgain(t *testing.T) {
	s, _ := Open(Config{})
	f := &feeder{s: s}
	cs := newMemChunks()
	f.place(t, 100)
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf, cs); err != nil {
		t.Fatal(err)
	}
	// No SnapshotDurable: the manifest was lost.
	first := len(cs.written)
	cs.written = nil
	snapshot(t, s, cs)
	if len(cs.written) != first {
		t.Fatalf("wrote %v after a snapshot that did not become durable, want %d chunks", cs.written, first)
	}
}

// TestLoadSnapshotRefusesDamage checks that a manifest or chunk that does
// not match is refused with ErrBadSnapshot, never loaded in part silently.
func TestLoadSnapshotRefusesDamage(t *testing.T) {
	s, _ := Open(Config{})
	f := &feeder{s: s}
	cs := newMemChunks()
	f.place(t, 2000)
	f.status(t, engine.EventOrderPaid, f.ids[5])
	m := snapshot(t, s, cs)
	names, _ := (*Store)(nil).SnapshotChunks(bytes.NewReader(m))
	arena, status := names[0], names[1]
	cases := []struct {
		name     string
		manifest []byte
		damage   func(files map[string][]byte)
	}{
		{"empty manifest", nil, nil},
		{"bad magic", append([]byte("FESTOS99"), m[8:]...), nil},
		{"legacy magic on a manifest", append([]byte("FESTOS01"), m[8:]...), nil},
		{"truncated manifest", m[:len(m)-3], nil},
		{"missing arena chunk", m, func(files map[string][]byte) { delete(files, arena) }},
		{"missing status chunk", m, func(files map[string][]byte) { delete(files, status) }},
		{"flipped arena byte", m, func(files map[string][]byte) { files[arena][100] ^= 1 }},
		{"short status chunk", m, func(files map[string][]byte) { files[status] = files[status][:len(files[status])-1] }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := newMemChunks()
			maps.Copy(bad.files, cs.files)
			for k, v := range bad.files {
				bad.files[k] = bytes.Clone(v)
			}
			if c.damage != nil {
				c.damage(bad.files)
			}
			l, _ := Open(Config{})
			err := l.LoadSnapshot(bytes.NewReader(c.manifest), f.pos, bad)
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("load: %v, want ErrBadSnapshot", err)
			}
			// The refused snapshot left the store as it was: empty, and
			// able to load the good one.
			if st := l.Stats(); st.Orders != 0 || l.Applied() != 0 || st.ArenaBytes != 0 {
				t.Fatalf("after the refused load: %+v, want an empty store", st)
			}
			if err := l.LoadSnapshot(bytes.NewReader(m), f.pos, cs); err != nil {
				t.Fatalf("load after reset: %v", err)
			}
			sameStores(t, s, l, f.ids)
		})
	}
}

// FuzzLoadSnapshot loads arbitrary arena and status chunks, named by a
// manifest with their right checksums (the case a checksum cannot catch: a
// snapshot written by a buggy encoder): the load may fail but never
// panics, and a store that loads answers every query without panicking.
func FuzzLoadSnapshot(f *testing.F) {
	s, _ := Open(Config{})
	fd := &feeder{s: s}
	cs := newMemChunks()
	fd.place(f, 50)
	fd.status(f, engine.EventOrderPaid, fd.ids[3])
	m := snapshot(f, s, cs)
	names, _ := (*Store)(nil).SnapshotChunks(bytes.NewReader(m))
	f.Add(cs.files[names[0]], cs.files[names[1]])
	f.Add([]byte{}, []byte{})
	f.Add([]byte{3, 0, 1, 'b'}, []byte{1, 0})
	f.Fuzz(func(t *testing.T, arena, status []byte) {
		cs := newMemChunks()
		cs.WriteChunk("a", arena)
		cs.WriteChunk("s", status)
		var b []byte
		b = append(b, storeSnapshotMagic...)
		b = append(b, 0) // orders: checked after the chunks
		b = append(b, 0) // buyers
		b = append(b, 1)
		ra, _ := writeChunk(cs, "a", arena)
		rs, _ := writeChunk(cs, "s", status)
		b = appendChunkRef(b, ra)
		b = appendChunkRef(b, rs)
		l, _ := Open(Config{})
		err := l.LoadSnapshot(bytes.NewReader(b), 1, cs)
		if err == nil || !errors.Is(err, ErrBadSnapshot) {
			// Only an empty arena matches the manifest's zero orders.
			if err != nil || l.Stats().Orders != 0 {
				t.Fatalf("load: %v with %d orders", err, l.Stats().Orders)
			}
		}
		// Load again without the order count check, to query what loaded.
		l, _ = Open(Config{})
		l.mu.Lock()
		l.mu.arena = [][]byte{bytes.Clone(arena)}
		err = l.restoreChunkLocked(0, status)
		l.mu.Unlock()
		if err != nil {
			return
		}
		for p, tb := range l.mu.partitions {
			if tb == nil {
				continue
			}
			for seq := tb.base + 1; seq <= tb.end; seq++ {
				o, err := l.Get(orderIDOf(p, seq))
				if err != nil {
					t.Fatalf("get of a loaded order: %v", err)
				}
				l.ListByBuyer(o.BuyerID, listLimitMax, "")
			}
		}
	})
}

// TestStagedSnapshotInvisibleUntilInstalled checks that a staged snapshot
// changes nothing a reader of the store sees, that Install makes all of it
// visible at once, and that a staged snapshot installs once only.
func TestStagedSnapshotInvisibleUntilInstalled(t *testing.T) {
	s, _ := Open(Config{})
	f := &feeder{s: s}
	cs := newMemChunks()
	f.place(t, 3000)
	f.status(t, engine.EventOrderPaid, f.ids[7])
	m := snapshot(t, s, cs)

	l, _ := Open(Config{})
	staged, err := l.StageSnapshot(bytes.NewReader(m), f.pos, cs)
	if err != nil {
		t.Fatal(err)
	}
	st := staged.(*Staged)
	if got := l.Stats(); l.Applied() != 0 || got.Orders != 0 || got.ArenaBytes != 0 {
		t.Fatalf("staged, not installed: %+v, want an empty store", got)
	}
	if _, err := l.Get(f.ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get before Install: %v, want ErrNotFound", err)
	}
	if n := st.loaded.Stats().Orders; n != uint64(len(f.ids)) {
		t.Fatalf("the staged snapshot holds %d orders, want %d", n, len(f.ids))
	}
	st.Install()
	if l.Applied() != f.pos {
		t.Fatalf("installed at %d, want %d", l.Applied(), f.pos)
	}
	sameStores(t, s, l, f.ids)
	defer func() {
		if recover() == nil {
			t.Fatal("a second Install of one staged snapshot did not panic")
		}
	}()
	st.Install()
}
