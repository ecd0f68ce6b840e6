package festival

import "strconv"

// Deal is a livestream flash deal: a channel sells Stock units of a SKU at
// Price to the buyers who order in its first seconds. Orders on it carry
// the deal (Order.Deal) and the channel live:<channel id>.
type Deal struct {
	ID      string
	Channel int16 // index into Model.Channels
	SKU     int32 // index into Model.SKUs
	Price   int64 // fen
	Stock   int64 // units, carved out of the SKU's stock
	// LimitPerBuyer is the units one buyer may hold (0: no limit).
	LimitPerBuyer int64
}

// flashDealLimitPerBuyer is the limit of the festival's deals: a flash
// order is one unit, and a buyer drawn twice may take two.
const flashDealLimitPerBuyer = 2

// genFlashDeals makes each flash sale a deal of a livestream channel,
// carrying the flash SKU's whole stock at its price, and moves the sale's
// orders onto the channel and the deal. Sale k is sold by channel k of the
// big (calibrated) ones, so the deals add to channels that already pass the
// 100 million CNY mark and leave the calibration of the others alone. The
// deal's price is the SKU's, so no order's total changes.
func (m *Model) genFlashDeals() {
	if len(m.Channels) == 0 || len(m.flashSKUs) == 0 {
		return
	}
	big := max(1, min(m.Config.BigChannels, len(m.Channels)))
	byDeal := make(map[int32]int16, len(m.flashSKUs))
	for k, s := range m.flashSKUs {
		id := "d" + strconv.Itoa(k)
		if len(m.flashSKUs) == 1 {
			id = "dflash"
		}
		m.Deals = append(m.Deals, Deal{ID: id, Channel: int16(k % big), SKU: s, Price: m.SKUs[s].Price, Stock: m.SKUs[s].Stock})
		byDeal[s] = int16(k + 1)
	}
	if len(m.Deals) > 1 {
		for i := range m.Deals {
			m.Deals[i].LimitPerBuyer = flashDealLimitPerBuyer
		}
	}
	for i := range m.Orders {
		o := &m.Orders[i]
		if !o.Flash {
			continue
		}
		if d, ok := byDeal[o.Items[0].SKU]; ok {
			o.Deal = d
			o.Channel = m.Deals[d-1].Channel
		}
	}
}

// DealOf returns the deal order o buys on, or nil.
func (m *Model) DealOf(o *Order) *Deal {
	if o.Deal == 0 {
		return nil
	}
	return &m.Deals[o.Deal-1]
}

// DealID is the id of the deal o buys on, "" for none.
func (m *Model) DealID(o *Order) string {
	if o.Deal == 0 {
		return ""
	}
	return m.Deals[o.Deal-1].ID
}
