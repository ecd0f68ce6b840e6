// Package simulation holds fest's storage-fault simulation: seeded runs of
// the real engine, journal, snapshots and projections on a simulated disk
// (vfs.Sim) that loses what was not fsynced, tears writes, drops unsynced
// directory entries, fails fsyncs and flips bits, with crashes at exact
// points. After every crash the run recovers and checks what fest
// promises: every acknowledged result is present exactly once with its
// status, stock is conserved per SKU against the order lines, GMV equals
// the paid orders, and injected damage is either repaired or refused with
// the file and offset, never silently dropped.
//
// The package has no production code; the simulation is its test
// (crash_test.go). `FEST_SIM_SEEDS=N` runs N seeds, `FEST_SIM_SEED=S` replays
// one seed exactly.
package simulation
