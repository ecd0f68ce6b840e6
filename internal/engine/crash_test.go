package engine

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	crashMerchants = 4
	crashSKUs      = 5
	crashStock     = 1_000_000
)

// TestCrashChild is the process the crash test kills. It does nothing
// unless started by TestCrashKill9.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("FEST_CRASH_CHILD_DIR")
	if dir == "" {
		t.Skip("only run as the crash test's child process")
	}
	run := os.Getenv("FEST_CRASH_CHILD_RUN")
	retain := func() uint64 { return 0 } // keep the journal for the audit
	if os.Getenv("FEST_CRASH_CHILD_REMOVE") != "" {
		retain = nil // snapshots delete the segments before them
	}
	e, err := Open(Config{Dir: dir, Partitions: 8, SnapshotEveryBytes: 64 << 10, RetainFrom: retain, Logger: quiet, SegmentBytesMax: 256 << 10})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	if e.SKUCount() == 0 {
		testCatalog(t, e, crashMerchants, crashSKUs, crashStock)
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var last []Result
	for n := 0; ; {
		b := NewBatch(0)
		for j := 0; j < 1+rng.IntN(200); j++ {
			m := rng.IntN(crashMerchants)
			buyer := fmt.Sprintf("r%s-%d", run, n)
			n++
			b.Add(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: buyer, IdempotencyKey: buyer, RequestHash: 7, Channel: "app",
				Items: []Item{{SKUID: fmt.Sprintf("s%d-%d", m, rng.IntN(crashSKUs)), Quantity: int32(1 + rng.IntN(3))}, {SKUID: fmt.Sprintf("s%d-%d", m, rng.IntN(crashSKUs)), Quantity: 1}}}})
		}
		for _, r := range last {
			if rng.IntN(3) == 0 {
				b.Add(Command{Kind: KindPay, OrderID: r.OrderID, Amount: r.Total})
			}
		}
		e.Submit(b)
		b.Wait()
		last = last[:0]
		for _, r := range b.Requests {
			res := r.Result
			switch {
			case !res.OK():
				fmt.Fprintf(out, "error %v %v\n", r.Command.Kind, res.Err())
			case r.Command.Kind == KindPlaceOrder:
				fmt.Fprintf(out, "placed %s %s %d\n", res.OrderID, r.Command.Order.BuyerID, res.Total)
				last = append(last, res)
			case r.Command.Kind == KindPay:
				fmt.Fprintf(out, "paid %s\n", res.OrderID)
			}
		}
		out.Flush()
	}
}

type ackedOrder struct {
	buyer string
	total int64
	paid  bool
}

// TestCrashKill9 runs a real process placing and paying orders, kills it
// with SIGKILL at random moments, restarts it, and finally checks that
// every acknowledged order is present exactly once with its total and
// status, and that stock is conserved.
func TestCrashKill9(t *testing.T) {
	kills := 20
	if s := os.Getenv("FEST_CRASH_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	crashKill9(t, kills, false)
}

// TestCrashKill9RemovingSegments is the same with snapshots deleting old
// journal segments as they go, so recovery must rest on them.
func TestCrashKill9RemovingSegments(t *testing.T) {
	crashKill9(t, 10, true)
}

func crashKill9(t *testing.T, kills int, remove bool) {
	dir := t.TempDir()
	acked := map[OrderID]*ackedOrder{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	// With removal, the runs go on (up to ten times as many) until a
	// snapshot has removed the first segment: on a busy machine a child
	// killed early may not have written enough journal to snapshot.
	firstSegment := func() bool {
		first, _ := filepath.Glob(filepath.Join(dir, "journal", "00000000000000000000.seg"))
		return len(first) != 0
	}
	for run := 0; run < kills || remove && run < 10*kills && firstSegment(); run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), "FEST_CRASH_CHILD_DIR="+dir, "FEST_CRASH_CHILD_RUN="+strconv.Itoa(run))
		if remove {
			cmd.Env = append(cmd.Env, "FEST_CRASH_CHILD_REMOVE=1")
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		lines.Buffer(make([]byte, 1<<20), 1<<20)
		if !lines.Scan() || lines.Text() != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("run %d: child did not start: %q", run, lines.Text())
		}
		killAt := time.Now().Add(time.Duration(20+rng.IntN(300)) * time.Millisecond)
		go func() {
			time.Sleep(time.Until(killAt))
			cmd.Process.Signal(syscall.SIGKILL)
		}()
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			switch f[0] {
			case "placed":
				id, _ := ParseOrderID(f[1])
				total, _ := strconv.ParseInt(f[3], 10, 64)
				if _, dup := acked[id]; dup {
					t.Fatalf("order %v acknowledged twice", id)
				}
				acked[id] = &ackedOrder{buyer: f[2], total: total}
			case "paid":
				id, _ := ParseOrderID(f[1])
				acked[id].paid = true
			default:
				t.Fatalf("child: %s", lines.Text())
			}
		}
		cmd.Wait()
	}
	if len(acked) == 0 {
		t.Fatal("no order was acknowledged")
	}

	// Recover in this process and audit.
	e, err := Open(Config{Dir: dir, Logger: quiet, SnapshotEveryBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	for id, a := range acked {
		r := e.Do(ctx, Command{Kind: KindGetOrder, OrderID: id})
		if r.Code != CodeOK {
			t.Fatalf("acknowledged order %v (%s) lost: %v", id, a.buyer, r.Err())
		}
		if a.paid && r.Status != StatusPaid {
			t.Fatalf("acknowledged payment of %v lost: status %v", id, r.Status)
		}
	}
	if remove {
		segs, _ := filepath.Glob(filepath.Join(dir, "journal", "*.seg"))
		if firstSegment() {
			t.Fatalf("no journal segment was removed (%d segments)", len(segs))
		}
		checkStockConserved(t, e)
		t.Logf("%d kills with segment removal, %d acknowledged orders present; stock conserved", kills, len(acked))
		return
	}
	// Exactly once: each acknowledged buyer's order appears once in the
	// journal, with the acknowledged id and total.
	byBuyer := map[string][]OrderID{}
	totals := map[OrderID]int64{}
	fctx, cancel := context.WithCancel(ctx)
	end := e.Durable()
	err = e.Follow(fctx, 0, func(ev *Event) error {
		if ev.Kind == EventOrderPlaced {
			buyer := strings.Clone(ev.BuyerID)
			byBuyer[buyer] = append(byBuyer[buyer], ev.OrderID)
			totals[ev.OrderID] = ev.Total
		}
		if ev.Position >= end {
			cancel()
		}
		return nil
	})
	if err != context.Canceled {
		t.Fatalf("follow: %v", err)
	}
	t.Logf("journal end %d, %d buyers in the journal", end, len(byBuyer))
	for id, a := range acked {
		if ids := byBuyer[a.buyer]; len(ids) != 1 || ids[0] != id || totals[id] != a.total {
			t.Fatalf("buyer %s: journal has orders %v (want exactly %v with total %d, got %d)", a.buyer, ids, id, a.total, totals[id])
		}
	}
	checkStockConserved(t, e)
	t.Logf("%d kills, %d acknowledged orders, all present once; stock conserved", kills, len(acked))
}

// checkStockConserved checks available + reserved + sold on every SKU of
// the crash test's catalog.
func checkStockConserved(t *testing.T, e *Engine) {
	t.Helper()
	for m := 0; m < crashMerchants; m++ {
		for i := 0; i < crashSKUs; i++ {
			r := e.Do(context.Background(), Command{Kind: KindGetSKU, SKUID: fmt.Sprintf("s%d-%d", m, i)})
			if r.Available < 0 || r.Available+r.Reserved+r.Sold != crashStock {
				t.Fatalf("sku s%d-%d: %d + %d + %d != %d", m, i, r.Available, r.Reserved, r.Sold, crashStock)
			}
		}
	}
}
