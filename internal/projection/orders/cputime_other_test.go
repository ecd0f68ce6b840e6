//go:build !unix

package orders

// processCPUNanos is 0 where the process's CPU time is not read: the
// benchmark's cpu-ns/order is then 0.
func processCPUNanos() int64 { return 0 }
