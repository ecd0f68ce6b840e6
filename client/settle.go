package client

import (
	"context"
	"time"

	"github.com/fest-platform/fest/wire"
)

// Settled is the answer of SettlePay and SettleCancel: the order's new
// status and, when this call changed it, its total and the time of the
// change. Paying an order already paid (or cancelling one already
// cancelled) succeeds with the status alone (Total 0, ChangedAt zero).
type Settled struct {
	OrderID   string
	Status    string // paid or cancelled
	Total     int64  // fen; set when this call changed the order
	ChangedAt time.Time
}

// settleCall is one SettlePay or SettleCancel waiting for its batch.
type settleCall struct {
	act  wire.Settle
	res  Settled
	err  error
	done chan struct{} // capacity 1
}

// SettlePay pays an order with its total (fen). Concurrent SettlePay and
// SettleCancel calls share protobuf POST /v1/orders:settle requests; the
// answer is the order's status, not the full order (Pay returns that).
// Failures are *Error: not_found, invalid_state, payment_mismatch,
// overloaded...
func (c *Client) SettlePay(ctx context.Context, orderID string, amount int64) (Settled, error) {
	return c.settleOne(ctx, wire.Settle{OrderID: orderID, Amount: amount})
}

// SettleCancel cancels a pending order, batched like SettlePay.
func (c *Client) SettleCancel(ctx context.Context, orderID string) (Settled, error) {
	return c.settleOne(ctx, wire.Settle{OrderID: orderID, Cancel: true})
}

func (c *Client) settleOne(ctx context.Context, act wire.Settle) (Settled, error) {
	cl := c.scalls.Get().(*settleCall)
	cl.act = act
	if err := handOff(ctx, c, c.settle, cl, cl.done); err != nil {
		return Settled{}, err
	}
	res, err := cl.res, cl.err
	*cl = settleCall{done: cl.done}
	c.scalls.Put(cl)
	return res, err
}

// settleState is one settle sender's reusable buffers.
type settleState struct {
	calls []*settleCall
	batch SettleBatch
}

// settleSender sends settle batches until Close.
func (c *Client) settleSender() {
	defer c.wg.Done()
	st := &settleState{calls: make([]*settleCall, 0, c.cfg.BatchMax)}
	for first := range c.settle {
		st.calls = collect(st.calls[:0], first, c.settle, c.cfg.BatchMax)
		if c.route != nil {
			c.settleRouted(st)
		} else {
			c.settleCalls(st, c.base, st.calls)
		}
		clear(st.calls)
	}
}

// settleCalls sends calls as one settle batch to the node at base and
// hands each its answer.
func (c *Client) settleCalls(st *settleState, base string, calls []*settleCall) {
	st.batch.Reset()
	for _, cl := range calls {
		st.batch.acts = append(st.batch.acts, cl.act)
	}
	hdr, err := c.sendSettleBatchTo(context.Background(), base, &st.batch)
	for i, cl := range calls {
		if err != nil {
			cl.err = err
		} else if r := st.batch.settledOf(i); r.Err != nil {
			cl.err = r.Err
		} else {
			cl.res = r.Settled
		}
		cl.done <- struct{}{}
	}
	if c.route != nil {
		c.route.observeSettle(base, hdr, err, st.batch.view.Results)
	}
	clear(st.batch.view.Results)
}
