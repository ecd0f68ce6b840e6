//go:build race

package journal

// raceEnabled reports a -race build: it allocates on its own, so
// allocation counts are measured in the suite's non-race pass instead.
const raceEnabled = true
