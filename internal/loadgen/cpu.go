package loadgen

import (
	"context"
	"syscall"
	"time"
)

// CPUReporter is a target that can say how much CPU its server process has
// used so far, so that a run reports the server's CPU per order beside the
// generator's (the budget of the 2020 peak on two cores is 3.4 µs for both).
type CPUReporter interface {
	// ServerCPU returns the server process's CPU time (user and system)
	// since it started.
	ServerCPU(ctx context.Context) (time.Duration, error)
}

// CPU is the CPU a run cost per order placed, in microseconds, from the
// processes' own accounting: the server's (when the target reports it) and
// the generator's (this process: the festival model, the client, the
// checks).
type CPU struct {
	ServerMicrosPerOrder    float64 `json:"server_us_per_order,omitempty"`
	GeneratorMicrosPerOrder float64 `json:"generator_us_per_order"`
}

// processCPU returns this process's CPU time, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter takes the processes' CPU at the start of the order phase.
type cpuMeter struct {
	target            CPUReporter // nil: the server's is not measured
	server, generator time.Duration
	serverOK          bool
}

func startCPU(ctx context.Context, t Target) *cpuMeter {
	m := &cpuMeter{generator: processCPU()}
	if r, ok := t.(CPUReporter); ok {
		if d, err := r.ServerCPU(ctx); err == nil {
			m.target, m.server, m.serverOK = r, d, true
		}
	}
	return m
}

// stop returns the CPU per order of the orders placed since start, or nil
// when none were.
func (m *cpuMeter) stop(ctx context.Context, orders int64) *CPU {
	if orders <= 0 {
		return nil
	}
	c := &CPU{}
	c.GeneratorMicrosPerOrder = float64((processCPU() - m.generator).Microseconds()) / float64(orders)
	if m.serverOK {
		if d, err := m.target.ServerCPU(ctx); err == nil {
			c.ServerMicrosPerOrder = float64((d - m.server).Microseconds()) / float64(orders)
		}
	}
	return c
}
