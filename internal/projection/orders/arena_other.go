//go:build !unix

package orders

// allocChunk returns an empty arena chunk of capacity size (in the Go heap
// where memory mapping is not available).
func allocChunk(size int) []byte { return make([]byte, 0, size) }

// freeChunk lets the collector have the chunk.
func freeChunk([]byte) {}
