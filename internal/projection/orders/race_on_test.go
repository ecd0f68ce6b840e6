//go:build race

package orders

// The cold-tier tests scale down under the race detector, which makes
// Pebble's reads about ten times slower: fewer records, a memory tier of
// one arena chunk, and one order and buyer in sixteen read back.
const coldRecords, coldBudgetChunks, coldCheckEvery = 45, 1, 16
