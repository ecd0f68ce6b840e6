//go:build unix

package orders

import "syscall"

// processCPUNanos returns the CPU time the process has used, user and
// system, in nanoseconds: a benchmark on a machine shared with other work
// measures by it rather than by the wall clock, which counts the time it
// waited for a core.
func processCPUNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic("getrusage: " + err.Error())
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
