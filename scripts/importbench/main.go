// Package main is importbench, which measures POST /v1/catalog:import against a running
// fest server: it builds the catalog's NDJSON bodies first (so their cost is
// not counted), then posts them (-inflight at a time), brands, then merchants, then
// SKUs, and prints the lines per second of the posting alone.
//
//	go run ./scripts/importbench -addr 127.0.0.1:8080 -admin-token a -catalog 2020
//	go run ./scripts/importbench -catalog full   # 250k brands, 1.2M merchants, 10M SKUs
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/internal/festival"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "fest server address")
	token := flag.String("admin-token", "a", "admin token")
	catalog := flag.String("catalog", "2020", "2020 (the festival model at its default scale) or full (250,000 brands, 1,200,000 merchants, 10,000,000 SKUs, synthetic)")
	chunkBytes := flag.Int("chunk-bytes", 8<<20, "bytes per request")
	inFlight := flag.Int("inflight", 2, "requests in flight")
	prefix := flag.String("prefix", "", "prefix of every id, to import a second catalog beside the first")
	profile := flag.String("profile", "", "while posting, fetch the server's CPU profile to this file (the server runs with FEST_PPROF_ADDR=-pprof-addr)")
	pprofAddr := flag.String("pprof-addr", "127.0.0.1:6060", "the server's FEST_PPROF_ADDR, for -profile")
	profilePhase := flag.String("profile-phase", "", "start the -profile when this kind's lines start (brand, merchant, sku; default: at the first)")
	profileSeconds := flag.Int("profile-seconds", 3, "length of the -profile")
	flag.Parse()
	if *profile != "" {
		startProfile = func() func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				resp, err := http.Get("http://" + *pprofAddr + "/debug/pprof/profile?seconds=" + strconv.Itoa(*profileSeconds))
				if err != nil {
					fmt.Fprintln(os.Stderr, "importbench: profile:", err)
					return
				}
				defer resp.Body.Close()
				f, err := os.Create(*profile)
				if err != nil {
					fmt.Fprintln(os.Stderr, "importbench: profile:", err)
					return
				}
				defer f.Close()
				io.Copy(f, resp.Body)
			}()
			return func() { <-done }
		}
	}
	profileKind = *profilePhase
	if err := run(*addr, *token, *catalog, *chunkBytes, *inFlight, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "importbench:", err)
		os.Exit(1)
	}
}

// startProfile starts fetching the server's CPU profile and returns a
// function that waits for it; nil without -profile.
var startProfile func() func()

// profileKind is the kind whose lines start the profile, "" for the first.
var profileKind string

type phase struct {
	kind   string
	bodies [][]byte
	lines  int
}

func run(addr, token, catalog string, chunkBytes, inFlight int, prefix string) error {
	var phases []phase
	build := func(kind string, n int, line func(*client.CatalogLines, int)) {
		p := phase{kind: kind, lines: n}
		var l client.CatalogLines
		for i := range n {
			line(&l, i)
			if l.Len() >= chunkBytes-4096 || i == n-1 {
				p.bodies = append(p.bodies, l.Detach())
			}
		}
		phases = append(phases, p)
	}
	switch catalog {
	case "2020":
		m, err := festival.New(festival.DefaultConfig())
		if err != nil {
			return err
		}
		build("brand", len(m.Brands), func(l *client.CatalogLines, i int) {
			b := &m.Brands[i]
			l.Brand(&client.Brand{ID: prefix + b.ID, Name: b.Name, Country: b.Country, FirstFestival: int(b.FirstFestival), Emerging: b.Emerging, LastYearGMV: b.LastYearGMV})
		})
		build("merchant", len(m.Merchants), func(l *client.CatalogLines, i int) {
			mc := &m.Merchants[i]
			l.Merchant(&client.Merchant{ID: prefix + mc.ID, Name: mc.Name, BrandID: prefix + m.Brands[mc.Brand].ID, Kind: mc.Kind, Industry: mc.Industry, Region: mc.Region})
		})
		build("sku", len(m.SKUs), func(l *client.CatalogLines, i int) {
			s := &m.SKUs[i]
			l.SKU(&client.SKU{ID: prefix + s.ID, MerchantID: prefix + m.Merchants[s.Merchant].ID, BrandID: prefix + m.Brands[s.Brand].ID, Title: s.Title, Category: s.Category, Price: s.Price, Stock: s.Stock})
		})
	case "full":
		const brands, merchants, skus = 250_000, 1_200_000, 10_000_000
		brandID := func(i int) string { return prefix + "b" + strconv.Itoa(i) }
		merchantID := func(i int) string { return prefix + "m" + strconv.Itoa(i) }
		build("brand", brands, func(l *client.CatalogLines, i int) {
			l.Brand(&client.Brand{ID: brandID(i), Name: "Brand " + strconv.Itoa(i), Country: "CN", FirstFestival: 2015, LastYearGMV: int64(i)})
		})
		build("merchant", merchants, func(l *client.CatalogLines, i int) {
			l.Merchant(&client.Merchant{ID: merchantID(i), Name: "Shop " + strconv.Itoa(i), BrandID: brandID(i * brands / merchants), Kind: "trader", Industry: "ind" + strconv.Itoa(i%40), Region: "CN-ZJ"})
		})
		build("sku", skus, func(l *client.CatalogLines, i int) {
			// A merchant's SKUs come together, as a catalog export lists
			// them (and as the festival model does).
			mi := int(int64(i) * merchants / skus)
			l.SKU(&client.SKU{ID: prefix + "s" + strconv.Itoa(i), MerchantID: merchantID(mi), BrandID: brandID(mi * brands / merchants), Title: "Item " + strconv.Itoa(i), Category: "cat/" + strconv.Itoa(i%500), Price: 100 + int64(i%10000), Stock: 1000})
		})
	default:
		return fmt.Errorf("catalog %q: want 2020 or full", catalog)
	}
	c, err := client.New(client.Config{Addr: addr, Token: token, Timeout: 5 * time.Minute})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	if startProfile != nil && profileKind == "" {
		defer startProfile()()
	}
	total, start := 0, time.Now()
	for _, p := range phases {
		if startProfile != nil && profileKind == p.kind {
			defer startProfile()()
		}
		t0 := time.Now()
		bodies := make(chan []byte)
		errs := make(chan error, inFlight)
		var wg sync.WaitGroup
		for range inFlight {
			wg.Go(func() {
				for b := range bodies {
					if _, err := c.ImportCatalog(ctx, bytes.NewReader(b)); err != nil {
						errs <- err
						for range bodies {
						}
						return
					}
				}
			})
		}
		for _, b := range p.bodies {
			bodies <- b
		}
		close(bodies)
		wg.Wait()
		select {
		case err := <-errs:
			return fmt.Errorf("import %ss: %w", p.kind, err)
		default:
		}
		d := time.Since(t0)
		fmt.Printf("%-8s %10d lines in %6.2fs: %9.0f lines/s\n", p.kind, p.lines, d.Seconds(), float64(p.lines)/d.Seconds())
		total += p.lines
	}
	d := time.Since(start)
	fmt.Printf("%-8s %10d lines in %6.2fs: %9.0f lines/s\n", "all", total, d.Seconds(), float64(total)/d.Seconds())
	return nil
}
