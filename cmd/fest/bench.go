package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fest-platform/fest/internal/bench"
)

// runBench runs the in-process engine benchmark (fsync on).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bench.Config
	fs.DurationVar(&cfg.Duration, "duration", 0, "length of the measured run (default 10s)")
	fs.IntVar(&cfg.Partitions, "partitions", 0, "engine partitions (default 64)")
	fs.IntVar(&cfg.Workers, "workers", 0, "engine worker goroutines (default 2)")
	fs.IntVar(&cfg.BatchSize, "batch", 0, "orders per generator batch (default 2048)")
	fs.IntVar(&cfg.Generators, "generators", 0, "generator goroutines (default 4)")
	fs.IntVar(&cfg.SKUs, "skus", 0, "SKUs in the catalog (default 100000)")
	fs.IntVar(&cfg.Merchants, "merchants", 0, "merchants (default 1000)")
	fs.IntVar(&cfg.FlashSKUs, "flash-skus", 0, "flash-sale SKUs with small stock (default 100)")
	fs.StringVar(&cfg.Dir, "data", "", "data directory (default: a temporary directory, removed afterwards)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed (default 1)")
	fs.BoolVar(&cfg.NoSync, "no-sync", false, "skip fsync (not for reported figures)")
	fs.Int64Var(&cfg.SnapshotEveryBytes, "snapshot-every-bytes", -1, "snapshot in the background after this much journal, as fest serve does (default -1: none during the run); reports the ack latency during snapshots")
	fs.BoolVar(&cfg.Recovery, "recovery", false, "after the run, measure recovery time from the snapshot and from the journal alone")
	asJSON := fs.Bool("json", false, "print one JSON object on the last line")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured run to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: create the cpu profile: %w", err)
		}
		defer f.Close()
		cfg.CPUProfile = f
	}
	cfg.Progress = func(p bench.Progress) {
		fmt.Fprintf(stderr, "\r%5.1fs  %12d orders  %10.0f orders/s", p.Elapsed.Seconds(), p.Orders, float64(p.Orders)/p.Elapsed.Seconds())
	}
	// The engine runs with the collector of fest serve (GOGC 400 unless
	// set): its heap is mostly state that lives the whole run, as the
	// server's is, and at Go's default of 100 every cycle marks it again.
	setLoadGCPercent()
	fmt.Fprintln(stderr, "fest bench: loading the catalog, then measuring (fsync on)...")
	r, err := bench.Run(ctx, cfg)
	fmt.Fprintln(stderr)
	if r != nil {
		fmt.Fprintf(stdout, "orders            %d in %.1fs (%d accepted, %d rejected out of stock)\n", r.Orders, r.DurationSec, r.OrdersAccepted, r.RejectedOutOfStock)
		fmt.Fprintf(stdout, "throughput        %.0f orders/s\n", r.OrdersPerSec)
		fmt.Fprintf(stdout, "paid / cancelled  %d / %d\n", r.Paid, r.Cancelled)
		fmt.Fprintf(stdout, "ack latency       p50 %.2f ms, p99 %.2f ms (batches of %d)\n", r.P50AckMs, r.P99AckMs, r.BatchSize)
		if r.Snapshots > 0 || r.AcksDuringSnapshot > 0 {
			fmt.Fprintf(stdout, "during snapshots  p99 %.2f ms over %d acknowledgements (%d snapshots)\n", r.P99AckDuringSnapshotMs, r.AcksDuringSnapshot, r.Snapshots)
		}
		fmt.Fprintf(stdout, "allocations       %.3f per order\n", r.AllocsPerOrder)
		fmt.Fprintf(stdout, "journal           %.1f bytes per order, %d fsyncs\n", r.BytesPerOrderJournal, r.Fsyncs)
		fmt.Fprintf(stdout, "books             %d SKUs oversold, %d not conserved (of %d)\n", r.Oversold, r.Unconserved, r.SKUs)
		fmt.Fprintf(stdout, "engine            %d partitions, %d workers, %.2f µs CPU per order, %.2f cores used\n", r.Partitions, r.Workers, r.CPUMicrosPerOrder, r.CPUCores)
		if cfg.Recovery {
			fmt.Fprintf(stdout, "recovery          %.0f ms from the snapshot, %.0f ms replaying the whole journal\n", r.RecoverySnapshotMs, r.RecoveryJournalMs)
		}
		if *asJSON {
			b, _ := json.Marshal(r)
			fmt.Fprintln(stdout, string(b))
		}
	}
	if err != nil {
		return err
	}
	if r.Oversold > 0 || r.Unconserved > 0 {
		return fmt.Errorf("bench: the books do not balance: %d oversold, %d not conserved", r.Oversold, r.Unconserved)
	}
	return nil
}
