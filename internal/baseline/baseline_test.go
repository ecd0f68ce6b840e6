package baseline

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/festival"
)

// serverAddr returns the address of a real server from env. With neither
// the variable nor CI set (a developer's plain `go test ./...`) the test is
// skipped; otherwise a missing or unreachable server fails it.
func serverAddr(t *testing.T, env string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: CI must start the baselines (scripts/baselines.sh start DIR) and export it", env)
		}
		t.Skipf("%s not set: start the baselines with scripts/baselines.sh start DIR and export it", env)
	}
	return v
}

func stores(t *testing.T) []Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pg, err := OpenPostgres(ctx, DefaultPostgresConfig(serverAddr(t, "FEST_TEST_POSTGRES_URL")))
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	rd, err := OpenRedis(ctx, DefaultRedisConfig(serverAddr(t, "FEST_TEST_REDIS_ADDR")))
	if err != nil {
		pg.Close()
		t.Fatalf("open redis: %v", err)
	}
	t.Cleanup(func() { pg.Close(); rd.Close() })
	return []Store{pg, rd}
}

// TestLifecycle walks one SKU through place, pay and cancel on each real
// store, including the answers that are refusals.
func TestLifecycle(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.Name(), func(t *testing.T) {
			ctx := context.Background()
			m, err := festival.NewFlash(1, 20, 3)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Load(ctx, m); err != nil {
				t.Fatalf("load: %v", err)
			}
			price := m.SKUs[0].Price
			var ids []string
			for i := range 3 {
				id, total, err := s.Place(ctx, m, &m.Orders[i])
				if err != nil {
					t.Fatalf("place %d: %v", i, err)
				}
				if total != price {
					t.Fatalf("place %d: total %d, want %d", i, total, price)
				}
				ids = append(ids, id)
			}
			if _, _, err := s.Place(ctx, m, &m.Orders[3]); !errors.Is(err, ErrOutOfStock) {
				t.Fatalf("4th order on stock 3: err %v, want out of stock", err)
			}
			if err := s.Pay(ctx, ids[0], price+1); !errors.Is(err, ErrPaymentMismatch) {
				t.Fatalf("pay wrong amount: %v, want payment mismatch", err)
			}
			if err := s.Pay(ctx, ids[0], price); err != nil {
				t.Fatalf("pay: %v", err)
			}
			if err := s.Pay(ctx, ids[0], price); err != nil {
				t.Fatalf("pay again (idempotent): %v", err)
			}
			if err := s.Cancel(ctx, ids[0]); !errors.Is(err, ErrInvalidState) {
				t.Fatalf("cancel paid: %v, want invalid state", err)
			}
			if err := s.Cancel(ctx, ids[1]); err != nil {
				t.Fatalf("cancel: %v", err)
			}
			if err := s.Pay(ctx, ids[1], price); !errors.Is(err, ErrInvalidState) {
				t.Fatalf("pay cancelled: %v, want invalid state", err)
			}
			if err := s.Pay(ctx, "999999", price); !errors.Is(err, ErrNotFound) {
				t.Fatalf("pay unknown: %v, want not found", err)
			}
			stock, err := s.Stock(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if stock[0] != 1 { // 3 - 3 placed + 1 cancelled
				t.Fatalf("stock left %d, want 1", stock[0])
			}
			gmv, n, err := s.Paid(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if gmv != price || n != 1 {
				t.Fatalf("paid %d fen in %d orders, want %d in 1", gmv, n, price)
			}
		})
	}
}

// TestNoOversell races Clients clients for a SKU with less stock than
// buyers: exactly the stock is sold and the counter ends at zero.
func TestNoOversell(t *testing.T) {
	for _, s := range stores(t) {
		t.Run(s.Name(), func(t *testing.T) {
			ctx := context.Background()
			const buyers, stock = 400, 150
			m, err := festival.NewFlash(2, buyers, stock)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Load(ctx, m); err != nil {
				t.Fatalf("load: %v", err)
			}
			var next, ok, sold atomic.Int64
			var wg sync.WaitGroup
			for range Clients {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= buyers {
							return
						}
						_, _, err := s.Place(ctx, m, &m.Orders[i])
						switch {
						case err == nil:
							ok.Add(1)
						case errors.Is(err, ErrOutOfStock):
							sold.Add(0)
						default:
							t.Errorf("place: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
			if ok.Load() != stock {
				t.Fatalf("%d orders placed on stock %d", ok.Load(), stock)
			}
			left, err := s.Stock(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if left[0] != 0 {
				t.Fatalf("stock left %d, want 0", left[0])
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultPostgresConfig("").Validate(); err == nil {
		t.Error("postgres config without url validated")
	}
	rc := DefaultRedisConfig("127.0.0.1:1")
	rc.AppendFsync = "no"
	if err := rc.Validate(); err == nil {
		t.Error("redis appendfsync no validated")
	}
	if err := DefaultRedisConfig("127.0.0.1:1").Validate(); err != nil {
		t.Errorf("default redis config: %v", err)
	}
}

// TestCheckRedisNotInstalled: without redis-server on the PATH the check
// says so with ErrNotInstalled, before anything is started.
func TestCheckRedisNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if err := CheckRedis(); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("CheckRedis without redis-server: %v", err)
	}
}

// TestCheckInstalled: where the baselines run (CI starts them with
// scripts/baselines.sh, which installs both), the checks that --compare
// makes before it starts anything pass.
func TestCheckInstalled(t *testing.T) {
	serverAddr(t, "FEST_TEST_POSTGRES_URL")
	serverAddr(t, "FEST_TEST_REDIS_ADDR")
	if err := CheckPostgres(); err != nil {
		t.Errorf("CheckPostgres: %v", err)
	}
	if err := CheckRedis(); err != nil {
		t.Errorf("CheckRedis: %v", err)
	}
}
