package logistics

import "fmt"

// chunked is an append-only array kept in fixed-size chunks. A plain slice
// that grows by doubling copies every element it holds at each doubling and
// touches twice its memory for fresh pages; with millions of parcels, that
// copy was 6% of the server's CPU at the midnight peak. A chunk, once
// allocated, never moves, so an element's address stays valid as the array
// grows. The chunk size is a power of two and equals the snapshot's chunk
// size (chunks.go), so that a snapshot chunk is one contiguous run.
type chunked[T any] struct {
	chunks [][]T
	n      int
	shift  uint // log2 of the elements per chunk
}

func newChunked[T any](perChunk int) chunked[T] {
	shift := uint(0)
	for 1<<shift < perChunk {
		shift++
	}
	if 1<<shift != perChunk {
		panic("logistics: a chunk size must be a power of two")
	}
	return chunked[T]{shift: shift}
}

func (v *chunked[T]) len() int { return v.n }

// at returns element i, which must be below len.
func (v *chunked[T]) at(i int) *T {
	return &v.chunks[i>>v.shift][i&(1<<v.shift-1)]
}

// run returns elements from to to, which must lie in one chunk: a
// snapshot chunk's run.
func (v *chunked[T]) run(from, to int) []T {
	if from == to {
		return nil
	}
	c := from >> v.shift
	if (to-1)>>v.shift != c || to > v.n || from > to {
		panic(fmt.Sprintf("logistics: run %d to %d of %d is not within one chunk of %d", from, to, v.n, 1<<v.shift))
	}
	off := from & (1<<v.shift - 1)
	return v.chunks[c][off : off+to-from]
}

// push appends x.
func (v *chunked[T]) push(x T) {
	c := v.n >> v.shift
	if c == len(v.chunks) {
		v.chunks = append(v.chunks, make([]T, 0, 1<<v.shift))
	}
	v.chunks[c] = append(v.chunks[c], x)
	v.n++
}
