//go:build !race

package orders

// coldRecords is how many records of a thousand events the cold-tier tests
// place before their snapshot, the memory tier in arena chunks, and one
// order and buyer in how many a check reads back.
const coldRecords, coldBudgetChunks, coldCheckEvery = 60, 3, 1
