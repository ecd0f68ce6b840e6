package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Ready returns nil once GET /readyz answers 200 (recovery done), else the
// answer as an *Error (503 before) or the transport's error.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil)
}

// ParcelEvent is one scan of a parcel.
type ParcelEvent struct {
	Status      string    `json:"status"`
	Location    string    `json:"location"`
	At          time.Time `json:"at"`
	CarrierCode string    `json:"carrier_code,omitempty"`
}

// Parcel is a paid order's parcel.
type Parcel struct {
	ID          string        `json:"parcel_id"`
	OrderID     string        `json:"order_id"`
	Status      string        `json:"status"`
	Carrier     string        `json:"carrier"`
	Warehouse   string        `json:"warehouse"`
	Destination string        `json:"destination"`
	Stale       bool          `json:"stale"`
	Events      []ParcelEvent `json:"events"`
}

// Scan is a carrier's scan of a parcel (POST /v1/parcels/{id}/scans).
type Scan struct {
	Status      string    `json:"status"`
	Location    string    `json:"location"`
	At          time.Time `json:"at,omitzero"` // zero: the server's clock
	CarrierCode string    `json:"carrier_code,omitempty"`
}

// ScanParcel records a scan (carrier token) and returns the parcel once the
// scan is durable; a transition the parcel's state does not allow is a 409
// invalid_state *Error.
func (c *Client) ScanParcel(ctx context.Context, parcelID string, s Scan) (Parcel, error) {
	var p Parcel
	err := c.do(ctx, http.MethodPost, "/v1/parcels/"+url.PathEscape(parcelID)+"/scans", nil, s, &p)
	return p, err
}

// LogisticsStats is GET /v1/logistics/stats.
type LogisticsStats struct {
	Parcels          int64            `json:"parcels"`
	ByStatus         map[string]int64 `json:"by_status"`
	ParcelsPerSecond float64          `json:"parcels_per_second"`
	Stale            int64            `json:"stale"`
}

// LogisticsStats reads the parcel counts (public).
func (c *Client) LogisticsStats(ctx context.Context) (LogisticsStats, error) {
	var s LogisticsStats
	err := c.do(ctx, http.MethodGet, "/v1/logistics/stats", nil, nil, &s)
	return s, err
}
