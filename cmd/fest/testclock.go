package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// testClockEnv names a file whose content, a unix time in nanoseconds, is
// the engine's clock instead of the wall clock. It exists for black-box
// tests of time windows (a deal's start and end to the nanosecond): the
// test writes the time it wants the next batch to see. It is read at
// every batch, which only a test can afford; never set it in production.
const testClockEnv = "FEST_TEST_CLOCK_FILE"

// testClock returns the engine clock of the file named by
// FEST_TEST_CLOCK_FILE, or nil when it is not set. A read that fails or
// does not parse keeps the last good time, so a test that rewrites the
// file cannot make the clock jump.
func testClock() (func() int64, error) {
	path := os.Getenv(testClockEnv)
	if path == "" {
		return nil, nil
	}
	read := func() (int64, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	first, err := read()
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", testClockEnv, path, err)
	}
	var mu sync.Mutex
	last := first
	return func() int64 {
		mu.Lock()
		defer mu.Unlock()
		if v, err := read(); err == nil {
			last = v
		}
		return last
	}, nil
}
