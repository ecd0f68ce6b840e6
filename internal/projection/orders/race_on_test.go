//go:build race

package orders

// coldRecords, coldBudgetChunks and coldCheckEvery (one order and buyer in so many checked) scale the cold-tier tests down under the race detector,
// which makes Pebble's reads about ten times slower.
const coldRecords, coldBudgetChunks, coldCheckEvery = 45, 1, 16
