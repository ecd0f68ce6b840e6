package journal

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fest-platform/fest/internal/vfs"
)

// BenchmarkAppend measures throughput for ~100 KB records appended by several
// goroutines, each waiting for durability before its next append, which is
// how partition workers use the journal. It reports fsyncs per record to show
// group commit at work.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(bc.name, func(b *testing.B) {
			var syncs atomic.Int64
			cfg := Config{
				Dir:    b.TempDir(),
				NoSync: bc.noSync,
				Logger: quietLogger,
				Fsync:  func(f vfs.File) error { syncs.Add(1); return f.Sync() },
			}
			j, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			rec := payload(1, 100<<10)
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			syncs.Store(0)
			b.ResetTimer()
			const workers = 16
			var wg sync.WaitGroup
			var next atomic.Int64
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					done := make(chan error, 1)
					cb := func(err error) { done <- err }
					for next.Add(1) <= int64(b.N) {
						if _, err := j.Append(rec, cb); err != nil {
							b.Error(err)
							return
						}
						if err := <-done; err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(syncs.Load())/float64(b.N), "fsyncs/op")
			if err := j.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
