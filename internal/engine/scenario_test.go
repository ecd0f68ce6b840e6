package engine

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/scenarios")

// TestScenarios runs the scripts in testdata/scenarios through the
// deterministic core. Each block is a command line, a line "----", and the
// expected output, ending at a blank line. Run with -rewrite to regenerate
// the outputs, then review the diff.
//
// Commands:
//
//	brand ID
//	merchant ID [brand=ID]
//	sku ID merchant=ID price=FEN stock=N
//	stock SKU delta=N
//	order BUYER [key=K hash=H] SKU:Q...   (the order is named o1, o2, ... in the output)
//	pay ORDER [amount=FEN]                 (default: the order's total)
//	cancel ORDER
//	tick SECONDS                           (time passes; expiry runs)
//	get SKU
//	status ORDER
//	scan ORDER STATUS LOCATION [code=C]    (a carrier's scan; the output counts its events)
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			runScenario(t, file)
		})
	}
}

type scenario struct {
	h      *harness
	names  map[string]OrderID
	totals map[string]int64
	byID   map[OrderID]string
}

func runScenario(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := &scenario{h: newHarness(4), names: map[string]OrderID{}, totals: map[string]int64{}, byID: map[OrderID]string{}}
	s.h.c.paymentTimeout = 900 * 1e9
	var out strings.Builder
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s:%d: command without ---- after it", file, i+1)
		}
		var want []string
		j := i + 2
		for ; j < len(lines) && lines[j] != ""; j++ {
			want = append(want, lines[j])
		}
		got := s.run(t, line)
		if !*rewrite && got != strings.Join(want, "\n") {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", file, i+1, line, got, strings.Join(want, "\n"))
		}
		out.WriteString(line + "\n----\n" + got + "\n")
		i = j - 1
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *scenario) run(t *testing.T, line string) string {
	f := strings.Fields(line)
	args := map[string]string{}
	var pos []string
	for _, a := range f[1:] {
		if k, v, ok := strings.Cut(a, "="); ok {
			args[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	num := func(k string) int64 {
		v, err := strconv.ParseInt(args[k], 10, 64)
		if err != nil {
			t.Fatalf("%s: bad %s=%q", line, k, args[k])
		}
		return v
	}
	switch f[0] {
	case "brand":
		return s.result(s.h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: pos[0], Name: pos[0], Country: "CN"}}))
	case "merchant":
		return s.result(s.h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: pos[0], BrandID: args["brand"], Kind: MerchantBrandStore}}))
	case "sku":
		return s.result(s.h.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: pos[0], MerchantID: args["merchant"], BrandID: "b", Price: num("price"), Stock: num("stock")}}))
	case "stock":
		return s.result(s.h.do(Command{Kind: KindAdjustStock, SKUID: pos[0], Delta: num("delta")}))
	case "order":
		var items []Item
		for _, p := range pos[1:] {
			sku, q, _ := strings.Cut(p, ":")
			n, _ := strconv.Atoi(q)
			items = append(items, Item{SKUID: sku, Quantity: int32(n)})
		}
		var hash uint64 = 1
		if args["hash"] != "" {
			hash = uint64(num("hash"))
		}
		r := s.h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: pos[0], Items: items, IdempotencyKey: args["key"], RequestHash: hash}})
		if r.OK() && !r.Replayed {
			name := "o" + strconv.Itoa(len(s.names)+1)
			s.names[name], s.byID[r.OrderID], s.totals[name] = r.OrderID, name, r.Total
		}
		return s.result(r)
	case "pay":
		amount := s.totals[pos[0]]
		if args["amount"] != "" {
			amount = num("amount")
		}
		return s.result(s.h.do(Command{Kind: KindPay, OrderID: s.order(pos[0]), Amount: amount}))
	case "cancel":
		return s.result(s.h.do(Command{Kind: KindCancel, OrderID: s.order(pos[0])}))
	case "scan":
		status, ok := ParseScanStatus(pos[1])
		if !ok {
			status = ParcelCreated // refused by the gateway
		}
		location := ""
		if len(pos) > 2 {
			location = pos[2]
		}
		before := len(s.h.records)
		r := s.h.do(Command{Kind: KindScanParcel, OrderID: s.order(pos[0]), Scan: &Scan{Status: status, Location: location, CarrierCode: args["code"], At: s.h.now}})
		events := 0
		for _, rec := range s.h.records[before:] {
			DecodeRecord(rec, 4, func(ev *Event) error {
				if ev.Kind == EventParcelScanned {
					events++
				}
				return nil
			})
		}
		return s.result(r) + fmt.Sprintf(" scans=%d", events)
	case "status":
		return s.result(s.h.do(Command{Kind: KindGetOrder, OrderID: s.order(pos[0])}))
	case "get":
		return s.result(s.h.do(Command{Kind: KindGetSKU, SKUID: pos[0]}))
	case "tick":
		sec, _ := strconv.ParseFloat(pos[0], 64)
		s.h.now += int64(sec * 1e9)
		before := len(s.h.records)
		s.h.do(Command{Kind: KindGetOrder, OrderID: newOrderID(0, 1)})
		expired := 0
		for _, rec := range s.h.records[before:] {
			DecodeRecord(rec, 4, func(ev *Event) error {
				if ev.Kind == EventOrderExpired {
					expired++
				}
				return nil
			})
		}
		return fmt.Sprintf("now %gs, %d expired", float64(s.h.now)/1e9, expired)
	}
	t.Fatalf("unknown command %q", line)
	return ""
}

func (s *scenario) order(name string) OrderID {
	if id, ok := s.names[name]; ok {
		return id
	}
	return newOrderID(3, 999) // an order that does not exist
}

// result renders a result in the fields that matter for its command.
func (s *scenario) result(r Result) string {
	var b strings.Builder
	if r.Code != CodeOK {
		b.WriteString("error " + r.Code.String())
		if r.Field != "" {
			b.WriteString(" field=" + r.Field)
		}
		if r.Code == CodeOutOfStock {
			fmt.Fprintf(&b, " sku=%s available=%d", r.SKUID, r.Available)
		}
		return b.String()
	}
	b.WriteString("ok")
	if r.OrderID != 0 {
		name := s.byID[r.OrderID]
		fmt.Fprintf(&b, " %s %s total=%d", name, r.Status, r.Total)
		if r.Replayed {
			b.WriteString(" (replayed)")
		}
		if r.ParcelStatus != ParcelNone {
			b.WriteString(" parcel=" + r.ParcelStatus.String())
		}
	}
	if r.SKU != nil {
		fmt.Fprintf(&b, " %s available=%d reserved=%d sold=%d", r.SKU.ID, r.Available, r.Reserved, r.Sold)
	}
	return b.String()
}
