package jetstream

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAppend measures pipelined appends to JetStream journals on one
// and on three embedded servers (all on this machine, so three servers
// share its cores and disk), each server fsyncing every write. partitions
// journals are written at once, as a node owning that many partitions
// would; their streams' leaders spread over the servers. It reports
// records/s (2048 × 74 B is a full engine batch: 2,048 orders at the
// 74 journal bytes an order takes), and stored-B/rec: the bytes the stream keeps per record,
// payload included (the headers and framing are the rest).
func BenchmarkAppend(b *testing.B) {
	for _, servers := range []int{1, 3} {
		c := startCluster(b, servers)
		nc := connect(b, c)
		for _, partitions := range []int{1, 4} {
			for _, size := range []int{128, 16 << 10, 2048 * 74} {
				name := fmt.Sprintf("servers=%d/partitions=%d/record=%dB", servers, partitions, size)
				b.Run(name, func(b *testing.B) {
					js := make([]*Journal, partitions)
					for p := range partitions {
						js[p] = open(b, nc, servers, func(c *Config) {
							c.Partition = 100*size + 10*partitions + p // a fresh stream per case
						})
					}
					rec := make([]byte, size)
					for i := range rec {
						rec[i] = byte(i)
					}
					b.SetBytes(int64(size))
					var wg sync.WaitGroup
					var failed sync.Once
					cb := func(err error) {
						if err != nil {
							failed.Do(func() { b.Error(err) })
						}
						wg.Done()
					}
					start, cpu := time.Now(), cpuTime()
					b.ResetTimer()
					for i := range b.N {
						wg.Add(1)
						if _, err := js[i%partitions].Append(rec, cb); err != nil {
							b.Fatal(err)
						}
					}
					wg.Wait()
					b.StopTimer()
					elapsed, cpu := time.Since(start), cpuTime()-cpu
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
					// The servers run in this process: the CPU time is
					// theirs and the journal's together.
					b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/rec")
					var stored, msgs uint64
					for _, j := range js {
						info, err := j.stream.Info(context.Background())
						if err != nil {
							b.Fatal(err)
						}
						stored += info.State.Bytes
						msgs += info.State.Msgs
						if j.Durable() != j.End() {
							b.Fatalf("durable %d, end %d after every done", j.Durable(), j.End())
						}
					}
					b.ReportMetric(float64(stored)/float64(msgs), "stored-B/rec")
				})
			}
		}
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(fmt.Sprintf("jetstream journal bench: getrusage: %v", err))
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
