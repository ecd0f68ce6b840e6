package engine

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// dump renders the whole state as text, in a fixed order, so that tests
// can compare a live state with one rebuilt by replay line by line.
func (c *core) dump() string {
	var b strings.Builder
	for _, p := range c.partitions {
		fmt.Fprintf(&b, "partition %d\n", p.id)
		for _, id := range slices.Sorted(maps.Keys(p.brands)) {
			fmt.Fprintf(&b, "  brand %+v\n", *p.brands[id])
		}
		for i, m := range p.merchants {
			fmt.Fprintf(&b, "  merchant %d %+v\n", i, m.m)
		}
		for i, s := range p.skus {
			t := p.skuText[i]
			ref, _ := c.dir.lookup(t.id)
			fmt.Fprintf(&b, "  sku %d %q ref=%x price=%d available=%d reserved=%d sold=%d merchant=%d brand=%q title=%q category=%q soldout=%v\n",
				i, t.id, uint64(ref), s.price, s.available, s.reserved, s.sold, s.merchant, p.brandOf(&t), t.title, p.categoryOf(&t), p.soldOut.get(uint32(i)))
		}
		fmt.Fprintf(&b, "  orders %v\n", p.orders)
		fmt.Fprintf(&b, "  parcels %v locations %v\n", p.parcelStatus, p.parcelLocation)
		for i, po := range p.pending {
			if po == nil {
				continue
			}
			seq := p.pendingBase + uint64(i)
			fmt.Fprintf(&b, "  pending %d total=%d created=%d payBy=%d merchant=%d items=", seq, po.total, po.createdAt, po.payBy, po.merchant)
			for i := 0; i < int(po.count); i++ {
				fmt.Fprintf(&b, "%v", po.item(i))
			}
			b.WriteByte('\n')
		}
		for _, k := range slices.Sorted(maps.Keys(p.keys.entries)) {
			fmt.Fprintf(&b, "  key %x %+v\n", k, p.keys.entries[k])
		}
	}
	return b.String()
}
