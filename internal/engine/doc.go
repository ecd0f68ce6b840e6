// Package engine is fest's order and inventory engine: it reserves stock,
// records orders, and never oversells.
//
// It has two layers. The deterministic core (core, apply.go, state.go)
// applies commands to the state of logical partitions with no I/O, no
// goroutines and no clock: time comes in with each batch, and every change
// is an event that the same code applies again on replay. The runtime
// (Engine, worker.go) routes commands to partitions, runs one goroutine
// per group of partitions that applies batches and hands each batch's
// events to the journal as one record, and releases replies only after
// that record's fsync. Snapshots bound recovery. docs/architecture.md
// describes the design and the byte layouts.
package engine
