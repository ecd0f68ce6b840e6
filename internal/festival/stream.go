package festival

import (
	"fmt"
	"math/rand/v2"
)

// FlashShare is the share of a Stream's orders that go to the flash-sale
// SKUs: after their small stock is gone, these are the orders the server
// must turn away (409 out_of_stock) without harm.
const FlashShare = 0.002

// Stream draws an endless order stream from the festival's distributions:
// brands by their GMV weight, the same merchants, lines, channels and fates
// as the festival's own orders. It is what the midnight profile sends, for
// as long as it runs. A Stream is deterministic for (model, seed) and not
// safe for concurrent use: give each goroutine its own.
type Stream struct {
	m   *Model
	rng *rand.Rand
	// coins and spans are Fill's per-order scratch, kept from batch to batch.
	coins []float64
	spans []skuSpan
}

// NewStream returns a stream seeded by seed (mixed with the model's seed).
func (m *Model) NewStream(seed uint64) *Stream {
	m.streamMerchants.once.Do(func() { m.streamMerchants.table = m.merchantSlots(m.merchantTable()) })
	return &Stream{m: m, rng: rand.New(rand.NewPCG(m.Config.Seed^0x5bd1e995, seed))}
}

// merchantTable is the alias table of the merchants' order weights: a
// brand's weight (brandCum) shared among its merchants by merchantWeight,
// exactly the distribution of fillOrder's two draws (a brand, then one of
// its merchants) in one draw and one cache line.
func (m *Model) merchantTable() aliasTable {
	w := make([]float64, len(m.Merchants))
	prev := 0.0
	for b, ms := range m.merchantsOf {
		brand := m.brandCum[b] - prev
		prev = m.brandCum[b]
		var sum float64
		for _, mi := range ms {
			sum += m.merchantWeight(mi)
		}
		for _, mi := range ms {
			w[mi] = brand * m.merchantWeight(mi) / sum
		}
	}
	return newAliasTable(w)
}

// merchantSlot is a slot of the merchants' alias table with the SKUs of
// both merchants it may draw: a Stream's draw reads one slot (32 bytes, one
// cache line) and neither the merchant nor its SKU list.
type merchantSlot struct {
	prob      float64
	alias     int32
	skus      skuSpan // slot j's own merchant's
	aliasSKUs skuSpan // the alias's
	_         int32   // pads the slot to 32 bytes: two a cache line
}

// merchantSlots is t with each slot's SKU spans.
func (m *Model) merchantSlots(t aliasTable) []merchantSlot {
	out := make([]merchantSlot, len(t))
	for j, sl := range t {
		out[j] = merchantSlot{prob: sl.prob, alias: sl.alias, skus: m.skusOf[j], aliasSKUs: m.skusOf[sl.alias]}
	}
	return out
}

// Next fills o with the next order. AtMs is left zero: the driver paces a
// stream by wall-clock time.
func (s *Stream) Next(o *Order) {
	var coin float64
	if !s.begin(o, &coin) {
		s.finish(o, s.resolve(o, coin))
	}
	o.Province = s.m.buyerProvince(o.Buyer)
}

// Fill fills orders with the next len(orders) orders, as Next would one by
// one but in passes over the batch: each order's first draws (among them
// its merchant's slot), then the slots' reads, then the rest of the draws,
// then the buyers' provinces. The slots and the buyers are tables of
// megabytes read at random, a cache miss per order; in a pass of nothing
// but reads the processor has many of them under way at once, where
// between Next's other draws it waits for each in turn.
// The orders are the same distribution as Next's, from the stream's draws
// taken in another order: deterministic for (model, seed, batch sizes).
func (s *Stream) Fill(orders []Order) {
	if cap(s.coins) < len(orders) {
		s.coins = make([]float64, len(orders))
		s.spans = make([]skuSpan, len(orders))
	}
	coins, spans := s.coins[:len(orders)], s.spans[:len(orders)]
	for i := range orders {
		s.begin(&orders[i], &coins[i])
	}
	for i := range orders {
		if !orders[i].Flash {
			spans[i] = s.resolve(&orders[i], coins[i])
		}
	}
	for i := range orders {
		if !orders[i].Flash {
			s.finish(&orders[i], spans[i])
		}
	}
	for i := range orders {
		orders[i].Province = s.m.buyerProvince(orders[i].Buyer)
	}
}

// begin clears o and takes its first draws: a flash order whole (true),
// else its merchant slot's index into o.Merchant and the alias coin.
func (s *Stream) begin(o *Order, coin *float64) bool {
	m, rng := s.m, s.rng
	*o = Order{}
	if len(m.flashSKUs) > 0 && rng.Float64() < FlashShare {
		sku := m.flashSKUs[rng.IntN(len(m.flashSKUs))]
		o.Merchant = m.SKUs[sku].Merchant
		o.Items[0] = Item{SKU: sku, Qty: 1}
		o.NItems = 1
		o.Buyer = int32(rng.IntN(m.Buyers))
		o.Channel = ChannelApp
		o.Fate = FatePay
		o.Flash = true
		return true
	}
	o.Merchant = int32(s.rng.IntN(len(m.streamMerchants.table)))
	*coin = rng.Float64()
	return false
}

// resolve reads the slot begin drew uniformly (o.Merchant), as the alias
// method does (aliasTable): the slot's merchant when the coin is under its
// probability, else its alias. It sets o.Merchant and returns the
// merchant's SKUs.
func (s *Stream) resolve(o *Order, coin float64) skuSpan {
	sl := &s.m.streamMerchants.table[o.Merchant]
	if coin >= sl.prob {
		o.Merchant = sl.alias
		return sl.aliasSKUs
	}
	return sl.skus
}

// finish draws the lines, buyer, channel and fate of a merchant's order.
func (s *Stream) finish(o *Order, skus skuSpan) {
	m, rng := s.m, s.rng
	m.fillLines(rng, o, skus)
	switch r := rng.Float64(); {
	case r < m.Config.PayShare:
		o.Fate = FatePay
	case r < m.Config.PayShare+m.Config.CancelShare:
		o.Fate = FateCancel
	default:
		o.Fate = FateLeave
	}
}

// NewFlash is the flash profile's model: one brand, one shop, one SKU with
// stock units, and buyers single-unit orders on it from buyers distinct
// buyers, all due at once. Every order whose reservation succeeds is paid.
func NewFlash(seed uint64, buyers int, stock int64) (*Model, error) {
	if buyers < 1 || buyers > 10_000_000 || stock < 0 {
		return nil, fmt.Errorf("%w: flash needs 1..10,000,000 buyers (got %d) and stock >= 0 (got %d)", ErrConfig, buyers, stock)
	}
	c := DefaultConfig()
	c.Seed = seed
	c.FlashSKUs = 1
	m := &Model{Config: c, Buyers: buyers, ThresholdFen: Published.ThresholdFen}
	m.Brands = []Brand{{ID: "brflash", Name: "Flash Brand", Country: "CN", FirstFestival: Published.FestivalYear, Category: categories[0], Industry: "ind0000"}}
	m.Merchants = []Merchant{{ID: "mflash", Name: "Flash Shop", Brand: 0, Kind: "brand_store", Industry: "ind0000", Region: "CN-ZJ"}}
	m.merchantsOf = [][]int32{{0}}
	m.merchantBrand = []int32{0}
	m.skusOf = make([]skuSpan, 1)
	s := m.addSKU(0, flashPrice, true)
	m.SKUs[s].ID = "sflash"
	m.packSKUIDs()
	m.SKUs[s].Stock = stock
	m.flashSKUs = []int32{s}
	m.genProvinces()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m.genBuyers(rng)
	m.Orders = make([]Order, buyers)
	for i := range m.Orders {
		o := &m.Orders[i]
		o.Merchant, o.NItems, o.Fate, o.Flash, o.Channel = 0, 1, FatePay, true, ChannelApp
		o.Items[0] = Item{SKU: s, Qty: 1}
		o.Buyer = int32(i)
	}
	// The flash sale is one livestream deal carrying the SKU's whole stock.
	m.Channels = []Channel{{ID: "cflash", Title: "Flash Live", Host: "Flash Host"}}
	m.nameChannels()
	m.genFlashDeals()
	m.setProvinces()
	return m, nil
}
