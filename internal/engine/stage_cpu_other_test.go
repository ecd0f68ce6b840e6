//go:build !linux

package engine

import "testing"

// cpuPerOrder reports nothing where the thread's CPU time cannot be read
// (stage_cpu_linux_test.go): the benchmarks then give wall time only.
func cpuPerOrder(b *testing.B) func(orders int) { return func(int) {} }
