package festival

// aliasTable draws index i with probability weight[i] / sum in constant
// time (Walker's alias method, built as Vose describes): slot j is chosen
// uniformly, then j itself with probability prob, else its alias. A draw
// reads one slot, where a binary search over cumulative weights reads a
// cache line per level (eighteen over 250,000 brands).
type aliasTable []aliasSlot

type aliasSlot struct {
	prob  float64
	alias int32
}

func newAliasTable(weights []float64) aliasTable {
	n := len(weights)
	t := make(aliasTable, n)
	var sum float64
	for _, w := range weights {
		sum += w
	}
	scaled := make([]float64, n)
	var small, large []int32
	for i, w := range weights {
		scaled[i] = w * float64(n) / sum
		if scaled[i] < 1 {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		t[s] = aliasSlot{prob: scaled[s], alias: l}
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left is 1 up to rounding.
	for _, i := range append(small, large...) {
		t[i] = aliasSlot{prob: 1, alias: i}
	}
	return t
}
