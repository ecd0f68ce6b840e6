package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/fest-platform/fest/internal/assistant"
	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

// cancelElsewhere cancels, for the assistant, an order of a partition
// another node owns: the assistant's answer is built here, but the cancel
// is the owner's, forwarded as POST /v1/orders/{id}/cancel with the
// storefront token (every node of a cluster has the same tokens). It
// reports false when the order's partition is served here (or moved
// here): cancel it on the local engine.
func (c *clusterState) cancelElsewhere(ctx context.Context, id engine.OrderID) (bool, error) {
	rt := c.router()
	req := engine.Request{Command: engine.Command{Kind: engine.KindCancel, OrderID: id}}
	p, ok := rt.Locate(&req)
	if !ok || rt.Owns(p) {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ForwardTimeout)
	defer cancel()
	from := http.Header{"Authorization": {"Bearer " + c.s.cfg.StorefrontToken}}
	t := c.routes()
	for attempt := 0; ; attempt++ {
		o := t.owner(p)
		if o == nil || o == self {
			return true, fmt.Errorf("cancel order %s: %s", id, errNoOwner(p).Message)
		}
		a, err := c.send(ctx, t, o, http.MethodPost, "/v1/orders/"+id.String()+"/cancel", from, "", "", nil, 1)
		if err != nil {
			return true, fmt.Errorf("cancel order %s: %s", id, errUnreachable(o, err).Message)
		}
		switch {
		case a.notOwner() && attempt == 0:
			t = c.rebuild(t)
			if c.router().Owns(p) {
				return false, nil
			}
			continue
		case a.status == http.StatusOK:
			return true, nil
		}
		e := peerError(a)
		if e.Code == wire.CodeInvalidState {
			return true, fmt.Errorf("cancel order %s: %w", id, assistant.ErrNotCancellable)
		}
		return true, fmt.Errorf("cancel order %s on node %s: %s: %s", id, o.node, e.Code, e.Message)
	}
}
