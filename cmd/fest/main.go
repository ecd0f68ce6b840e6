// Package main is the fest command. It runs an online shopping festival: the order and inventory
// engine behind an HTTP API, the benchmarks and the load rehearsal.
//
// Usage:
//
//	fest serve  [flags]   run the server
//	fest demo   [flags]   run the server with a small catalog and a light load
//	fest bench  [flags]   benchmark the engine and journal in-process
//	fest load   [flags]   drive a server with the festival workload
//	fest cluster [flags]  start a local cluster on loopback
//	fest nats   [flags]   run a standalone NATS server for fest's journal
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // served only when FEST_PPROF_ADDR is set
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "fest:", err)
		os.Exit(1)
	}
}

const usage = `fest runs an online shopping festival.

Usage:
  fest serve  [flags]   run the HTTP API server
  fest demo   [flags]   run the server with a small catalog and a light load
  fest bench  [flags]   benchmark the engine and journal in-process (fsync on)
  fest load   [flags]   drive a server with the festival workload and audit it
  fest cluster [flags]  start a local cluster of fest serve nodes on loopback (docs/cluster.md)
  fest nats   [flags]   run a NATS server for fest serve --journal nats --nats-url (docs/cluster.md)

Run "fest <command> -h" for the flags of a command.
`

// run dispatches to a subcommand; each lives in its own file.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	if a := os.Getenv("FEST_PPROF_ADDR"); a != "" {
		// Profiling for benchmarks only (of the server or of the load
		// generator), on its own listener.
		go http.ListenAndServe(a, nil)
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "load":
		return runLoad(ctx, args[1:], stdout, stderr)
	case "cluster":
		return runCluster(ctx, args[1:], stdout, stderr)
	case "nats":
		return runNATS(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
