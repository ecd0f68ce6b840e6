package assistant

import (
	"context"
	"sync"
)

// fakeOrders is an in-memory Orders: a map of orders by id, the latest
// per buyer, and a record of cancels.
type fakeOrders map[string]*OrderView

func (f fakeOrders) Order(_ context.Context, id string) (OrderView, bool) {
	fakeMu.Lock()
	defer fakeMu.Unlock()
	o, ok := f[id]
	if !ok {
		return OrderView{}, false
	}
	return *o, true
}

func (f fakeOrders) LatestOrder(_ context.Context, buyer string) (OrderView, bool) {
	fakeMu.Lock()
	defer fakeMu.Unlock()
	var best *OrderView
	for _, o := range f {
		if o.BuyerID == buyer && (best == nil || o.CreatedAt.After(best.CreatedAt)) {
			best = o
		}
	}
	if best == nil {
		return OrderView{}, false
	}
	return *best, true
}

func (f fakeOrders) Cancel(_ context.Context, id string) error {
	fakeMu.Lock()
	defer fakeMu.Unlock()
	o, ok := f[id]
	if !ok || o.Status != statusPending {
		return ErrNotCancellable
	}
	o.Status = "cancelled"
	return nil
}

var fakeMu sync.Mutex
