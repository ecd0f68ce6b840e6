package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// LiveChannel is a livestream channel. Its orders carry the channel
// "live:<ID>"; GMV and Orders (read only) count its paid orders, deal or
// not, and Deals its deals.
type LiveChannel struct {
	ID       string     `json:"channel_id,omitempty"`
	Title    string     `json:"title"`
	Host     string     `json:"host"`
	StartsAt time.Time  `json:"starts_at"`
	EndsAt   time.Time  `json:"ends_at"`
	GMV      int64      `json:"gmv,omitempty"` // fen
	Orders   int64      `json:"orders,omitempty"`
	Deals    []LiveDeal `json:"deals,omitempty"`
}

// LiveDeal is a deal as a channel lists it.
type LiveDeal struct {
	DealID    string `json:"deal_id"`
	SKUID     string `json:"sku_id"`
	Price     int64  `json:"price"` // fen
	Stock     int64  `json:"stock"`
	StockLeft int64  `json:"stock_left"`
	Sold      int64  `json:"sold"`
	Ended     bool   `json:"ended"`
}

// Deal is a flash deal: Stock units of a SKU carved out of its available
// stock, sold at Price inside [StartsAt, EndsAt) to orders on the channel
// live:<ChannelID>, at most LimitPerBuyer units per buyer (0: no limit).
// The fields after LimitPerBuyer are the engine's figures, read only.
type Deal struct {
	ID            string    `json:"deal_id,omitempty"`
	ChannelID     string    `json:"channel_id"`
	SKUID         string    `json:"sku_id"`
	Price         int64     `json:"price"` // fen
	Stock         int64     `json:"stock"`
	StartsAt      time.Time `json:"starts_at"`
	EndsAt        time.Time `json:"ends_at"`
	LimitPerBuyer int64     `json:"limit_per_buyer,omitempty"`

	StockLeft int64     `json:"stock_left,omitempty"`
	Reserved  int64     `json:"reserved,omitempty"`
	Sold      int64     `json:"sold,omitempty"`
	Returned  int64     `json:"returned,omitempty"`
	Ended     bool      `json:"ended,omitempty"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
}

// Leaderboard is GET /v1/live/leaderboard: channels by GMV, largest first,
// and the running deals closest to selling out.
type Leaderboard struct {
	Channels     []LiveChannel `json:"channels"`
	SellingDeals []LiveDeal    `json:"selling_deals"`
}

// PutChannel creates or replaces a livestream channel (admin).
func (c *Client) PutChannel(ctx context.Context, ch LiveChannel) (LiveChannel, error) {
	body := map[string]any{"title": ch.Title, "host": ch.Host, "starts_at": ch.StartsAt.UTC().Format(time.RFC3339Nano), "ends_at": ch.EndsAt.UTC().Format(time.RFC3339Nano)}
	var out LiveChannel
	err := c.do(ctx, http.MethodPut, "/v1/live/channels/"+url.PathEscape(ch.ID), nil, body, &out)
	return out, err
}

// PutDeal creates a deal (admin): its stock leaves the SKU's available
// stock (409 out_of_stock if there is not enough). The same deal again
// changes nothing; other terms for an existing id are 409 conflict.
func (c *Client) PutDeal(ctx context.Context, d Deal) (Deal, error) {
	body := map[string]any{"channel_id": d.ChannelID, "sku_id": d.SKUID, "price": d.Price, "stock": d.Stock,
		"starts_at": d.StartsAt.UTC().Format(time.RFC3339Nano), "ends_at": d.EndsAt.UTC().Format(time.RFC3339Nano)}
	if d.LimitPerBuyer > 0 {
		body["limit_per_buyer"] = d.LimitPerBuyer
	}
	var out Deal
	err := c.do(ctx, http.MethodPut, "/v1/live/deals/"+url.PathEscape(d.ID), nil, body, &out)
	return out, err
}

// EndDeal ends a deal early (admin); its unsold stock returns to the SKU
// once. Ending an ended deal changes nothing.
func (c *Client) EndDeal(ctx context.Context, id string) (Deal, error) {
	var out Deal
	err := c.do(ctx, http.MethodPost, "/v1/live/deals/"+url.PathEscape(id)+"/end", nil, nil, &out)
	return out, err
}

// Channel reads a channel with its GMV, orders and deals (public).
func (c *Client) Channel(ctx context.Context, id string) (LiveChannel, error) {
	var out LiveChannel
	err := c.do(ctx, http.MethodGet, "/v1/live/channels/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// Leaderboard reads the top channels by GMV (public); top is 1 to 1000.
func (c *Client) Leaderboard(ctx context.Context, top int) (Leaderboard, error) {
	var out Leaderboard
	err := c.do(ctx, http.MethodGet, "/v1/live/leaderboard?top="+strconv.Itoa(top), nil, nil, &out)
	return out, err
}
