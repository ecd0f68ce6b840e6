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
			t := p.record(uint32(i))
			ref, _ := c.dir.lookup(t.id)
			fmt.Fprintf(&b, "  sku %d %q ref=%x price=%d available=%d reserved=%d sold=%d merchant=%d brand=%q title=%q category=%q soldout=%v\n",
				i, t.id, uint64(ref), s.price(), s.available, s.reserved, s.sold, s.merchant(), p.interned[t.brand], t.title, p.interned[t.category], p.soldOut.get(uint32(i)))
		}
		fmt.Fprintf(&b, "  orders %v\n", p.orders)
		fmt.Fprintf(&b, "  parcels %v locations %v\n", p.parcelStatus, p.parcelLocation)
		for i, po := range p.pending {
			if po == nil {
				continue
			}
			seq := p.pendingBase + uint64(i)
			fmt.Fprintf(&b, "  pending %d total=%d created=%d payBy=%d merchant=%d deal=%d items=", seq, po.total, po.createdAt, po.payBy, po.merchant, po.deal)
			for i := 0; i < int(po.count); i++ {
				fmt.Fprintf(&b, "%v", po.item(i))
			}
			b.WriteByte('\n')
		}
		for _, id := range slices.Sorted(maps.Keys(p.channels)) {
			fmt.Fprintf(&b, "  channel %+v\n", *p.channels[id])
		}
		for i, d := range p.deals {
			fmt.Fprintf(&b, "  deal %d %+v sku=%d left=%d reserved=%d sold=%d returned=%d ended=%v at %d gate=%d\n",
				i, d.deal, d.skuSlot, d.left, d.reserved, d.sold, d.returned, d.ended, d.endedAt, d.entry.gate.Load())
			for _, buyer := range slices.Sorted(maps.Keys(d.buyers)) {
				fmt.Fprintf(&b, "    buyer %q %d\n", buyer, d.buyers[buyer])
			}
			for _, seq := range slices.Sorted(maps.Keys(d.pendingBuyer)) {
				fmt.Fprintf(&b, "    pending %d %q\n", seq, d.pendingBuyer[seq])
			}
		}
		fmt.Fprintf(&b, "  deals open %v next end %d carved %v\n", p.dealsOpen, p.dealEndNext, p.dealCarved)
		for _, k := range slices.Sorted(maps.Keys(p.keys.entries)) {
			fmt.Fprintf(&b, "  key %x %+v\n", k, p.keys.entries[k])
		}
	}
	return b.String()
}
