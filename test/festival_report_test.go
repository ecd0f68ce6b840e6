package test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/wire"
)

// TestFestivalReportOnRehearsalClock is issue 8's last acceptance item:
// `fest load --profile festival --scale 0.0001` against `fest serve
// --rehearsal-clock`, and the report shows the server's own value (read
// from its GMV endpoints) beside the generator's for every published 2020
// figure, each of them ok, the peak second and "busiest second is the peak
// second" included. --speed 0 replays as fast as the server takes it, so
// the batches in flight give times far out of order (hours of festival
// time in the quiet days): the server must still put each order in its own
// festival second. The payment timeout (festival time) outlasts the
// festival, since at that pace a payment may arrive festival hours after
// its order: the server's default on the rehearsal clock (720h) is used.
// fest load is not told of the clock: the festival profile reads it from
// GET /v1/gmv.
func TestFestivalReportOnRehearsalClock(t *testing.T) {
	t.Parallel()
	f := startFest(t, "", "--rehearsal-clock")
	cmd := exec.Command(binPath, "load", "--addr", f.URL, "--admin-token", adminToken, "--storefront-token", storefrontToken,
		"--carrier-token", carrierToken, "--profile", "festival", "--scale", "0.0001", "--speed", "0",
		"--questions", "0", "--scan-window", "0", "--quiet")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fest load: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	report := stdout.String()
	if !strings.Contains(report, "audit: ok") {
		t.Errorf("audit not ok:\n%s", report)
	}
	// The figures' table: a header, then one row per figure ending in its
	// two verdicts, the generator's and the server's.
	var rows []string
	in := false
	for _, line := range strings.Split(report, "\n") {
		switch {
		case strings.Contains(line, "figure") && strings.HasSuffix(strings.TrimSpace(line), "server ok"):
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in:
			rows = append(rows, line)
		}
	}
	if len(rows) < 18 {
		t.Fatalf("%d figure rows, want the 18 published figures:\n%s", len(rows), report)
	}
	for _, want := range []string{"orders in the peak second", "busiest second is the peak second"} {
		if !strings.Contains(report, want) {
			t.Errorf("no figure %q in the report", want)
		}
	}
	for _, row := range rows {
		fields := strings.Fields(row)
		if n := len(fields); n < 3 || fields[n-2] != "ok" || fields[n-1] != "ok" {
			t.Errorf("figure not ok for both the generator and the server: %s", strings.TrimSpace(row))
		}
	}
	// The board itself names the peak second: 11-11 00:00:26 China time.
	c, err := client.New(client.Config{Addr: f.URL, Token: storefrontToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g, err := c.GMV(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	peak := time.Date(2020, 11, 11, 0, 0, 26, 0, time.FixedZone("CST", 8*3600))
	if g.PeakSecond == nil || !g.PeakSecond.At.Equal(peak) || g.PeakSecond.Orders < 55 || g.PeakSecond.Orders > 62 {
		t.Errorf("peak_second %+v, want %v with about 58 orders", g.PeakSecond, peak)
	}
	// JSON requests give their time in the header, unix ms or RFC 3339.
	f.seedCatalog(map[string]int{"rehearsal-sku": 5})
	body := map[string]any{"buyer_id": "u1", "items": []map[string]any{{"sku_id": "rehearsal-sku", "quantity": 1}}}
	o := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, body, "Fest-Rehearsal-Time", "2020-11-11T23:59:00+08:00").Body)
	if at, _ := time.Parse(time.RFC3339Nano, o.CreatedAt); !at.Equal(time.Date(2020, 11, 11, 15, 59, 0, 0, time.UTC)) {
		t.Errorf("order placed with Fest-Rehearsal-Time created at %s", o.CreatedAt)
	}
	p := decodeOrder(t, f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total},
		"Fest-Rehearsal-Time", "1605110345000").Body)
	if at, _ := time.Parse(time.RFC3339Nano, p.PaidAt); !at.Equal(time.UnixMilli(1605110345000)) {
		t.Errorf("order paid with Fest-Rehearsal-Time paid at %s", p.PaidAt)
	}
}

// TestRehearsalTimeRefused: a server without --rehearsal-clock answers a
// request that gives a festival time 422 invalid_argument naming the
// field, and places nothing.
func TestRehearsalTimeRefused(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 5})
	body := map[string]any{"buyer_id": "u1", "items": []map[string]any{{"sku_id": "s1", "quantity": 1}}}
	f.expectErr(422, "invalid_argument", "Fest-Rehearsal-Time", "POST", "/v1/orders", storefrontToken, body, "Fest-Rehearsal-Time", "1605024026000")
	c, err := client.New(client.Config{Addr: f.URL, Token: storefrontToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b client.OrderBatch
	b.Add(wire.PlaceOrder{BuyerID: "u1", RehearsalTime: 1_605_024_026_000_000_000})
	b.AddItem("s1", 1)
	err = c.PlaceBatch(context.Background(), &b)
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Status != 422 || ae.Code != "invalid_argument" || ae.Field != "orders[0].rehearsal_time_unix_nanos" {
		t.Fatalf("protobuf batch with a time: %v", err)
	}
	if s := f.sku("s1"); s.Available != 5 {
		t.Fatalf("a refused request changed the stock: %+v", s)
	}
	// fest load told of a rehearsal clock the server does not run on stops
	// before it imports anything.
	out, err := exec.Command(binPath, "load", "--addr", f.URL, "--admin-token", adminToken, "--storefront-token", storefrontToken,
		"--carrier-token", carrierToken, "--profile", "festival", "--scale", "0.00001", "--rehearsal-clock", "--quiet").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the server runs on its wall clock") {
		t.Fatalf("fest load --rehearsal-clock against a wall-clock server: %v\n%s", err, out)
	}
}
