//go:build unix

package orders

import (
	"fmt"
	"syscall"
)

// allocChunk returns an empty arena chunk of capacity size, mapped outside
// the Go heap. The arena is most of the store's memory and holds no
// pointers: in the heap it would count towards the collector's goal, which
// lets the heap grow to twice what is live (GOGC), so that a 2 GiB budget
// took 4 to 5 GB of resident memory. Mapped, the budget is what is
// resident. Every chunk is unmapped by freeChunk, once nothing refers to it.
func allocChunk(size int) []byte {
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		// As the runtime's own allocation failing would: nothing to do.
		panic(fmt.Sprintf("orders: map an arena chunk of %d bytes: %v", size, err))
	}
	return b[:0]
}

// freeChunk unmaps a chunk from allocChunk.
func freeChunk(b []byte) {
	if cap(b) == 0 {
		return
	}
	if err := syscall.Munmap(b[:cap(b)]); err != nil {
		panic(fmt.Sprintf("orders: unmap an arena chunk: %v", err))
	}
}
