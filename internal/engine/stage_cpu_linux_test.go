package engine

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// rusageThread is Linux's RUSAGE_THREAD, which the syscall package lacks.
const rusageThread = 1

// threadCPU returns the CPU time of the calling thread.
func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		b.Fatalf("read the thread's cpu time: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerOrder runs a benchmark body on one locked thread and reports its
// CPU time per order besides the wall time: on a machine shared with other
// work the wall time counts the time the benchmark waited for a core.
// It is called where the measured part begins; the function it returns
// reports once b.Loop has ended, given the orders done.
func cpuPerOrder(b *testing.B) func(orders int) {
	runtime.LockOSThread()
	start := threadCPU(b)
	return func(orders int) {
		used := threadCPU(b) - start
		runtime.UnlockOSThread()
		if orders > 0 {
			b.ReportMetric(float64(used.Nanoseconds())/float64(orders), "cpu-ns/order")
		}
	}
}
