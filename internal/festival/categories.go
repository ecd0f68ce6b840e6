package festival

import (
	"cmp"
	"math/rand/v2"
	"slices"
)

// Categories. A brand sells in one category, so a category's leader is the
// brand of the most paid GMV in it. The published figure, 357 emerging
// brands that top their category, is met by construction: the largest
// established brands lead the broad categories, which every other brand
// joins under a leader that sells well above it (categoryLeadMargin), and
// emerging brands lead niches of their own until 357 do.

// categoryLeadMargin is how much more a broad category's leader sells, in
// the plan, than any brand placed under it, so that fates and sold-out
// flash sales cannot turn the ranking.
const categoryLeadMargin = 1.5

// assignCategories sets every brand's category, and its SKUs', from the
// plan; it runs once the emerging brands are chosen.
func (m *Model) assignCategories(rng *rand.Rand) {
	this := m.Plan().BrandGMV
	order := make([]int, len(m.Brands))
	for i := range order {
		order[i] = i
	}
	// Largest first, the smaller index on a tie.
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(this[b], this[a]) })
	var leaders []int // the broad categories' leaders, largest first
	for _, b := range order {
		if len(leaders) == len(categories) {
			break
		}
		if !m.Brands[b].Emerging && this[b] > 0 {
			leaders = append(leaders, b)
		}
	}
	placed := make([]bool, len(m.Brands))
	niches := 0
	ownNiche := func(b int) {
		m.Brands[b].Category = categories[niches%len(categories)] + "/niche-" + pad(niches, 4)
		placed[b] = true
		niches++
	}
	for i, b := range leaders {
		m.Brands[b].Category = categories[i]
		placed[b] = true
	}
	// Emerging brands that sell lead niches of their own until the figure
	// is met; those planned to sell the most first, so that each is sure
	// to sell. An emerging brand larger than every leader allows (below)
	// would lead whatever category it joined, so it counts among them.
	var big, selling []int
	for _, b := range order {
		if !m.Brands[b].Emerging || this[b] <= 0 {
			continue
		}
		if len(leaders) == 0 || float64(this[leaders[0]]) <= categoryLeadMargin*float64(this[b]) {
			big = append(big, b)
		} else {
			selling = append(selling, b)
		}
	}
	for _, b := range big {
		ownNiche(b)
	}
	for _, b := range selling[:max(0, min(len(selling), Published.EmergingTopCategory-len(big)))] {
		ownNiche(b)
	}
	for _, b := range order {
		if placed[b] {
			continue
		}
		// The leaders a brand may join are those selling a margin above
		// it: a prefix of the leaders, never empty for a brand that is not
		// emerging (the leaders are the largest of those).
		n := 0
		for n < len(leaders) && float64(this[leaders[n]]) > categoryLeadMargin*float64(this[b]) {
			n++
		}
		if n == 0 {
			// An established brand within the margin of the leaders: it
			// joins the largest, which it does not overtake in the plan.
			n = 1
		}
		m.Brands[b].Category = m.Brands[leaders[rng.IntN(n)]].Category
	}
	for i := range m.SKUs {
		m.SKUs[i].Category = m.Brands[m.SKUs[i].Brand].Category
	}
}

// emergingTopCategory counts the categories whose leader in t (the brand
// of the most paid GMV, the smaller id on a tie) is an emerging brand.
func (m *Model) emergingTopCategory(t *Tally) int {
	lead := map[string]int{}
	for b := range m.Brands {
		g := t.BrandGMV[b]
		if g <= 0 {
			continue
		}
		c := m.Brands[b].Category
		if l, ok := lead[c]; !ok || g > t.BrandGMV[l] || (g == t.BrandGMV[l] && m.Brands[b].ID < m.Brands[l].ID) {
			lead[c] = b
		}
	}
	n := 0
	for _, b := range lead {
		if m.Brands[b].Emerging {
			n++
		}
	}
	return n
}
