package test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The acceptance checks of issue 7 against the real binary: a flipped byte
// in the active journal segment, and a damaged newest snapshot, never
// start a server with fewer acknowledged orders than it had.

// ackedOrders maps an order id to the status its last acknowledged answer
// gave it (pending_payment or paid).
type ackedOrders map[string]string

// placeAcked places n orders of the seeded SKUs s1..s4 through single
// requests, one to four lines each, and pays every other one; it records
// every acknowledged answer. after, when not nil, runs after each
// acknowledged request.
func (f *fest) placeAcked(t *testing.T, n int, acked ackedOrders, buyer string, after ...func()) {
	t.Helper()
	done := func() {
		for _, fn := range after {
			fn()
		}
	}
	for i := 0; i < n; i++ {
		items := make([]map[string]any, 0, 4)
		for k := 0; k <= i%4; k++ {
			items = append(items, map[string]any{"sku_id": "s" + strconv.Itoa(k+1), "quantity": 1 + (i+k)%3})
		}
		o := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": buyer + strconv.Itoa(i%17), "items": items, "region": "CN-ZJ"}).Body)
		acked[o.OrderID] = "pending_payment"
		done()
		if i%2 == 0 {
			f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
			acked[o.OrderID] = "paid"
			done()
		}
	}
}

// placeMore places n one-line orders and pays each, and returns those
// acknowledged; an answer other than the contract's success is an error.
func (f *fest) placeMore(t *testing.T, n int) (ackedOrders, error) {
	t.Helper()
	acked := ackedOrders{}
	for i := 0; i < n; i++ {
		r, err := f.call("POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "after", "items": []map[string]any{{"sku_id": "s1", "quantity": 1}}})
		if err != nil || r.Status != 201 {
			return nil, fmt.Errorf("place: %v %d %s", err, r.Status, strings.TrimSpace(string(r.Body)))
		}
		o := decodeOrder(t, r.Body)
		acked[o.OrderID] = "pending_payment"
		r, err = f.call("POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
		if err != nil || r.Status != 200 {
			return nil, fmt.Errorf("pay the order %s just placed: %v %d %s", o.OrderID, err, r.Status, strings.TrimSpace(string(r.Body)))
		}
		acked[o.OrderID] = "paid"
	}
	return acked, nil
}

// checkAcked fails unless every acknowledged order is readable with its
// acknowledged status.
func (f *fest) checkAcked(t *testing.T, acked ackedOrders, what string) {
	t.Helper()
	if msg := f.missingAcked(t, acked); msg != "" {
		t.Errorf("%s: %s", what, msg)
	}
}

// missingAcked returns "" when every acknowledged order is readable with
// its acknowledged status, else what is missing.
func (f *fest) missingAcked(t *testing.T, acked ackedOrders) string {
	t.Helper()
	missing := 0
	var first string
	for id, status := range acked {
		r, err := f.call("GET", "/v1/orders/"+id, storefrontToken, nil)
		if err != nil {
			return fmt.Sprintf("get order %s: %v", id, err)
		}
		if r.Status != 200 || decodeOrder(t, r.Body).Status != status {
			missing++
			if first == "" {
				first = fmt.Sprintf("order %s: %d %s, want %s", id, r.Status, strings.TrimSpace(string(r.Body)), status)
			}
		}
	}
	if missing > 0 {
		return fmt.Sprintf("started with %d of %d acknowledged orders missing or changed; first: %s", missing, len(acked), first)
	}
	return ""
}

// tryStart runs fest serve on dir and waits until it is ready (true) or
// has exited (false, the server refused to start). Its output is f.out.
func tryStart(t *testing.T, dir string, extra ...string) (*fest, bool) {
	t.Helper()
	f := &fest{t: t, Dir: dir, args: extra}
	urlCh := make(chan string, 1)
	f.spawn(append([]string{"serve", "--addr", "127.0.0.1:0", "--data", dir,
		"--admin-token", adminToken, "--storefront-token", storefrontToken, "--carrier-token", carrierToken}, extra...), urlCh)
	t.Cleanup(f.stop)
	select {
	case f.URL = <-urlCh:
	case <-f.done:
		f.cmd = nil
		return f, false
	case <-time.After(60 * time.Second):
		t.Fatalf("fest did not listen in time:\n%s", f.out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(f.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return f, true
			}
		}
		select {
		case <-f.done:
			f.cmd = nil
			return f, false
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("fest neither ready nor exited in time:\n%s", f.out)
		}
	}
}

// copyTree copies the directory src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// flipByte inverts every bit of the byte at offset off of path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var b [1]byte
	if _, err := fh.ReadAt(b[:], off); err != nil {
		t.Fatalf("read %s at %d: %v", path, off, err)
	}
	b[0] ^= 0xff
	if _, err := fh.WriteAt(b[:], off); err != nil {
		t.Fatalf("write %s at %d: %v", path, off, err)
	}
}

// newestFile returns the lexically last file of dir matching pattern (the
// journal's and the snapshots' names sort by position) and how many match.
func newestFile(t *testing.T, dir, pattern string) (string, int) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no %s in %s: %v", pattern, dir, err)
	}
	slices.Sort(paths)
	return paths[len(paths)-1], len(paths)
}

// flipPositions returns the byte offsets of a segment of size n to damage,
// each named by what it is: the first bytes (the first frame's header and
// the start of its payload), spread positions, the last bytes (the last
// frame), and the header and payload of the second, a middle and the last
// two frames. Frame boundaries are known without knowing the frame format:
// bounds holds the segment's size after each acknowledged request, and a
// request is acknowledged only once its record is written whole, so each
// is where a frame ends and the next begins.
func flipPositions(n int64, bounds []int64) map[int64]string {
	pos := map[int64]string{}
	add := func(off int64, what string) {
		if off >= 0 && off < n {
			if _, ok := pos[off]; !ok {
				pos[off] = what
			}
		}
	}
	for _, off := range []int64{0, 1, 3, 4, 6, 7, 8, 9, 12, 16, 24} {
		add(off, "start of the file (first frame header or payload)")
	}
	for _, frac := range []int64{1, 2, 3} {
		add(n*frac/4, fmt.Sprintf("%d/4 of the file", frac))
	}
	for _, back := range []int64{1, 2, 5, 9, 16} {
		add(n-back, "end of the file (last frame)")
	}
	// starts are the frame starts after the first: the boundaries inside
	// the file, deduplicated and in order.
	var starts []int64
	for _, b := range bounds {
		if b > 0 && b < n && (len(starts) == 0 || b > starts[len(starts)-1]) {
			starts = append(starts, b)
		}
	}
	if len(starts) < 4 {
		return pos
	}
	frames := []struct {
		name       string
		start, end int64
	}{
		{"early frame", starts[0], starts[1]},
		{"middle frame", starts[len(starts)/2], starts[len(starts)/2+1]},
		{"last but one frame", starts[len(starts)-2], starts[len(starts)-1]},
		{"last frame", starts[len(starts)-1], n},
	}
	for _, fr := range frames {
		for k := int64(0); k < 4; k++ {
			add(fr.start+k, fmt.Sprintf("%s at %d: header byte %d", fr.name, fr.start, k))
		}
		add(fr.start+5, fmt.Sprintf("%s at %d: header byte 5", fr.name, fr.start))
		add((fr.start+fr.end)/2, fmt.Sprintf("%s at %d: middle of the frame (payload)", fr.name, fr.start))
		add(fr.end-1, fmt.Sprintf("%s at %d: last byte (payload)", fr.name, fr.start))
	}
	return pos
}

// TestJournalByteFlip stops a server after acknowledged orders (cleanly,
// and by SIGKILL so that the orders are in the journal only), then for
// each of many byte positions of the active journal segment flips that
// byte on a fresh copy of the data directory and starts the server: it
// must refuse to start naming the file and the offset, or start with every
// acknowledged order present; never with fewer.
func TestJournalByteFlip(t *testing.T) {
	t.Parallel()
	for _, stop := range []string{"clean", "kill"} {
		t.Run("stop="+stop, func(t *testing.T) {
			f := startFest(t, "")
			f.seedCatalog(map[string]int{"s1": 1_000_000, "s2": 1_000_000, "s3": 1_000_000, "s4": 1_000_000})
			acked := ackedOrders{}
			var bounds []int64
			f.placeAcked(t, 120, acked, "flip-", func() {
				path, _ := newestFile(t, filepath.Join(f.Dir, "journal"), "*.seg")
				if info, err := os.Stat(path); err == nil {
					bounds = append(bounds, info.Size())
				}
			})
			if stop == "clean" {
				f.stop()
			} else {
				f.kill()
			}
			segPath, _ := newestFile(t, filepath.Join(f.Dir, "journal"), "*.seg")
			seg, err := os.ReadFile(segPath)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(f.Dir, segPath)
			positions := flipPositions(int64(len(seg)), bounds)
			// -1 is the control: the copy undamaged, which must start and
			// pass every check, so that a failure below is the damage's.
			positions[-1] = "no damage"
			offsets := make([]int64, 0, len(positions))
			for off := range positions {
				offsets = append(offsets, off)
			}
			slices.Sort(offsets)
			var refused, started, failed []string
			for _, off := range offsets {
				what := fmt.Sprintf("byte %d of %s (%s)", off, rel, positions[off])
				dir := t.TempDir()
				copyTree(t, f.Dir, dir)
				if off < 0 {
					what = "control: " + rel + " undamaged"
				} else {
					flipByte(t, filepath.Join(dir, rel), off)
				}
				g, ok := tryStart(t, dir)
				if !ok {
					out := g.out.String()
					if !strings.Contains(out, filepath.Base(segPath)) || !strings.Contains(out, "offset") {
						failed = append(failed, what+": refused without naming the file and offset: "+lastLine(out))
						continue
					}
					refused = append(refused, what)
					continue
				}
				if msg := g.missingAcked(t, acked); msg != "" {
					failed = append(failed, what+": "+msg)
					g.stop()
					continue
				}
				// A server that started must also keep what it
				// acknowledges next: records written after a start on a
				// damaged journal must not be invisible to the next
				// recovery.
				more, err := g.placeMore(t, 3)
				if err != nil {
					failed = append(failed, what+": after the start: "+err.Error())
					g.stop()
					continue
				}
				g.kill()
				if g, ok = tryStart(t, dir); !ok {
					failed = append(failed, what+": after a start and three more orders, refused to start again: "+lastLine(g.out.String()))
					continue
				}
				if msg := g.missingAcked(t, more); msg != "" {
					failed = append(failed, what+": the orders acknowledged after the start: "+msg)
				} else if msg := g.missingAcked(t, acked); msg != "" {
					failed = append(failed, what+": on the second start: "+msg)
				} else {
					started = append(started, what)
				}
				g.stop()
			}
			if !slices.Contains(started, "control: "+rel+" undamaged") {
				t.Fatalf("the undamaged copy did not start and keep every order: %v", failed)
			}
			t.Logf("%d positions of a %d-byte segment and the control: %d refused, %d started with every order, %d failed", len(offsets)-1, len(seg), len(refused), len(started), len(failed))
			if len(failed) > 0 {
				t.Errorf("%d positions started with fewer acknowledged orders or refused without naming the file and offset:\n%s", len(failed), strings.Join(failed, "\n"))
			}
			for _, s := range refused {
				t.Logf("refused: %s", s)
			}
		})
	}
}

// TestSnapshotFallback takes two engine snapshots (two clean stops) with
// small journal segments, so that segments roll between them, then damages
// the newest snapshot on a copy of the data directory: the server must
// start from the older one with every acknowledged order present.
func TestSnapshotFallback(t *testing.T) {
	t.Parallel()
	flags := []string{"--segment-bytes-max", "2048", "--snapshot-every-bytes", "-1"}
	f := startFest(t, "", flags...)
	f.seedCatalog(map[string]int{"s1": 1_000_000, "s2": 1_000_000, "s3": 1_000_000, "s4": 1_000_000})
	acked := ackedOrders{}
	f.placeAcked(t, 150, acked, "snap-a-")
	f.stop()
	f.restart()
	f.placeAcked(t, 150, acked, "snap-b-")
	f.stop()
	snaps := filepath.Join(f.Dir, "snapshots")
	newest, count := newestFile(t, snaps, "snap-*.bin")
	if count < 2 {
		t.Fatalf("%d engine snapshots after two clean stops, want 2", count)
	}
	segs, _ := filepath.Glob(filepath.Join(f.Dir, "journal", "*.seg"))
	t.Logf("%d snapshots, %d journal segments", count, len(segs))
	info, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(f.Dir, newest)
	for _, damage := range []struct {
		name string
		do   func(path string)
	}{
		{"a flipped byte in the middle", func(path string) { flipByte(t, path, info.Size()/2) }},
		{"a flipped byte near the end", func(path string) { flipByte(t, path, info.Size()-3) }},
		{"a flipped byte in the header", func(path string) { flipByte(t, path, 5) }},
		{"cut in half", func(path string) {
			if err := os.Truncate(path, info.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(damage.name, func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, f.Dir, dir)
			damage.do(filepath.Join(dir, rel))
			g, ok := tryStart(t, dir, flags...)
			if !ok {
				t.Fatalf("refused to start with %s %s instead of falling back to the older snapshot:\n%s", rel, damage.name, g.out)
			}
			g.checkAcked(t, acked, rel+" "+damage.name)
			for _, line := range strings.Split(g.out.String(), "\n") {
				if strings.Contains(line, "snapshot") {
					t.Logf("server: %s", line)
				}
			}
			g.stop()
		})
	}
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
