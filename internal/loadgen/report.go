package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/fest-platform/fest/internal/festival"
)

// WriteText writes the readable report of one run.
func WriteText(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "fest load: target %s, profile %s", r.Target, r.Profile)
	if r.Scale > 0 && r.Profile != ProfileFlash {
		fmt.Fprintf(&b, ", scale %g", r.Scale)
	}
	fmt.Fprintf(&b, "\n  orders placed   %s in %.1fs: %s orders/s\n", group(r.Orders), r.Elapsed.Seconds(), group(int64(math.Round(r.OrdersPerSec))))
	if c := r.CPU; c != nil {
		server := "not measured"
		if c.ServerMicrosPerOrder > 0 {
			server = fmt.Sprintf("%.2f µs", c.ServerMicrosPerOrder)
		}
		fmt.Fprintf(&b, "  cpu per order   server %s, generator %.2f µs (the 2020 peak on 2 cores: 3.4 µs for both)\n", server, c.GeneratorMicrosPerOrder)
	}
	fmt.Fprintf(&b, "  orders paid     %s, GMV %s CNY\n", group(r.Paid), group(r.GMV/100))
	if r.ParcelsCreated > 0 {
		fmt.Fprintf(&b, "  parcels         %s created (2020: 2.32 billion", group(r.ParcelsCreated))
		if r.Scale > 0 && r.Profile == ProfileFestival {
			fmt.Fprintf(&b, ", %s at scale %g", group(int64(math.Round(PublishedParcels*r.Scale))), r.Scale)
		}
		fmt.Fprintf(&b, "), %s delivered, %s returned\n", group(r.ParcelsDelivered), group(r.ParcelsReturned))
	}
	fmt.Fprintf(&b, "  ack latency     p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms\n", r.Latency.P50, r.Latency.P99, r.Latency.P999)
	if lv := r.Live; lv != nil && lv.DealOrders+lv.DealRejected > 0 {
		fmt.Fprintf(&b, "  deal orders     %s accepted (p99 %.2f ms), %s refused (p99 %.2f ms), %s of them answered at the router\n",
			group(lv.DealOrders), lv.AcceptP99, group(lv.DealRejected), lv.RejectP99, group(lv.RouterRejected))
	}
	if len(r.Errors) == 0 {
		b.WriteString("  errors          none\n")
	} else {
		codes := make([]string, 0, len(r.Errors))
		for c := range r.Errors {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		b.WriteString("  errors         ")
		for _, c := range codes {
			fmt.Fprintf(&b, " %s %s", c, group(r.Errors[c]))
			if e := r.Expected[c]; e > 0 {
				fmt.Fprintf(&b, " (%s expected: sold-out flash sale)", group(e))
			}
			b.WriteString(";")
		}
		b.WriteString("\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	if len(r.Figures) > 0 {
		b.WriteString("\n  the published 2020 figures, scaled, beside the simulated festival (the generator's tally) and the server's board (its GMV endpoints):\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  figure\tpublished\ttarget\tsimulated\tserver\trule\tok\tserver ok")
		for _, f := range r.Figures {
			sim := fmtNum(f.Simulated)
			target := fmtNum(f.Target)
			if f.Text != "" {
				sim, target = f.Text, f.Published
			}
			server, serverOK := serverValue(&f)
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, f.Published, target, sim, server, f.Rule, okWord(f.OK), serverOK)
		}
		tw.Flush()
	}
	if r.Audit.OK {
		b.WriteString("\n  audit: ok (stock conserved per SKU; server GMV equals the acknowledged paid orders)\n")
	} else {
		fmt.Fprintf(&b, "\n  audit: FAILED, %d problems:\n", len(r.Audit.Problems))
		for _, p := range r.Audit.Problems {
			fmt.Fprintf(&b, "    - %s\n", p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// serverValue renders a figure's server value and whether it holds: "-"
// when the run had no board.
func serverValue(f *festival.Figure) (value, ok string) {
	switch {
	case f.Server != nil && f.ServerText != "":
		return fmtNum(*f.Server) + " (" + f.ServerText + ")", okWord(f.ServerOK)
	case f.Server != nil:
		return fmtNum(*f.Server), okWord(f.ServerOK)
	case f.ServerText != "" && f.Text != "":
		// A ranking.
		return f.ServerText, okWord(f.ServerOK)
	case f.ServerText != "":
		return f.ServerText, "-"
	}
	return "-", "-"
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return group(int64(v))
	case math.Abs(v) >= 1000:
		return group(int64(math.Round(v)))
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// WriteJSON writes the run as one JSON line: the contract's object.
func WriteJSON(w io.Writer, r *Result) error {
	if r.Errors == nil {
		r.Errors = map[string]int64{}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteCompareText writes the side-by-side table of a --compare run: fest
// first, then each baseline with the ratio fest/baseline.
func WriteCompareText(w io.Writer, runs []*Result) error {
	var b strings.Builder
	b.WriteString("\nfest load --compare: the same workload on each target\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\torders/s\tp50 ms\tp99 ms\tp99.9 ms\tfest/target\taudit\t")
	var fest float64
	if len(runs) > 0 && runs[0].Target == "fest" {
		fest = runs[0].OrdersPerSec
	}
	for _, r := range runs {
		ratio := "-"
		if fest > 0 && r.OrdersPerSec > 0 && r.Target != "fest" {
			ratio = fmt.Sprintf("%.1fx", fest/r.OrdersPerSec)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n", r.Target, group(int64(math.Round(r.OrdersPerSec))),
			r.Latency.P50, r.Latency.P99, r.Latency.P999, ratio, map[bool]string{true: "ok", false: "FAILED"}[r.Audit.OK])
	}
	tw.Flush()
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteCompareJSON writes {"runs": [...]} as one line.
func WriteCompareJSON(w io.Writer, runs []*Result) error {
	for _, r := range runs {
		if r.Errors == nil {
			r.Errors = map[string]int64{}
		}
	}
	b, err := json.Marshal(struct {
		Runs []*Result `json:"runs"`
	}{runs})
	if err != nil {
		return fmt.Errorf("encode runs: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
