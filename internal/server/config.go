// Package server is fest's HTTP edge: routing, authentication, decoding and
// validation of JSON and protobuf bodies, admission control, metrics and the
// OpenAPI document. It converts requests into engine commands and engine
// results into the contract's responses; errors become HTTP statuses only
// here. Domain packages never import it.
package server

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Role is an authorization role of the API.
type Role uint8

// Roles.
const (
	RoleNone Role = iota
	RoleAdmin
	RoleStorefront
	RoleCarrier
)

var roleNames = [...]string{"none", "admin", "storefront", "carrier"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "none"
}

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// AdminToken, StorefrontToken and CarrierToken are the bearer tokens of
	// the three roles; each is required and they must differ.
	AdminToken      string
	StorefrontToken string
	CarrierToken    string

	// BodyBytesMax limits single-object bodies (default 1 MiB).
	BodyBytesMax int64
	// BatchBodyBytesMax limits POST /v1/orders:batch and
	// POST /v1/catalog:import bodies (default 16 MiB).
	BatchBodyBytesMax int64
	// BatchOrdersMax is the most orders one batch request may hold
	// (default 10,000).
	BatchOrdersMax int
	// GatewayBatchMax is the most single orders the gateway coalesces into
	// one engine batch (default 256).
	GatewayBatchMax int
	// ReadWaitMax bounds how long a read waits for the order store to catch
	// up with orders already acknowledged (default 5s).
	ReadWaitMax time.Duration
	// RetryAfter is the Retry-After header of 429 and 503 answers
	// (default 1s; whole seconds).
	RetryAfter time.Duration
	// Logger receives request failures (default: discard).
	Logger *slog.Logger
}

// Defaults.
const (
	defaultBodyBytesMax      = 1 << 20
	defaultBatchBodyBytesMax = 16 << 20
	defaultBatchOrdersMax    = 10_000
	defaultGatewayBatchMax   = 256
	defaultReadWaitMax       = 5 * time.Second
	defaultRetryAfter        = time.Second
)

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("invalid server config")

func (c *Config) setDefaults() {
	if c.BodyBytesMax == 0 {
		c.BodyBytesMax = defaultBodyBytesMax
	}
	if c.BatchBodyBytesMax == 0 {
		c.BatchBodyBytesMax = defaultBatchBodyBytesMax
	}
	if c.BatchOrdersMax == 0 {
		c.BatchOrdersMax = defaultBatchOrdersMax
	}
	if c.GatewayBatchMax == 0 {
		c.GatewayBatchMax = defaultGatewayBatchMax
	}
	if c.ReadWaitMax == 0 {
		c.ReadWaitMax = defaultReadWaitMax
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = defaultRetryAfter
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first invalid field (after defaults are applied).
func (c *Config) Validate() error {
	cc := *c
	cc.setDefaults()
	switch {
	case cc.AdminToken == "" || cc.StorefrontToken == "" || cc.CarrierToken == "":
		return fmt.Errorf("%w: all three role tokens are required", ErrConfig)
	case cc.AdminToken == cc.StorefrontToken || cc.AdminToken == cc.CarrierToken || cc.StorefrontToken == cc.CarrierToken:
		return fmt.Errorf("%w: role tokens must differ", ErrConfig)
	case cc.BodyBytesMax < 0 || cc.BatchBodyBytesMax < 0:
		return fmt.Errorf("%w: body limits must be positive", ErrConfig)
	case cc.BatchOrdersMax < 1 || cc.GatewayBatchMax < 1:
		return fmt.Errorf("%w: batch limits must be positive", ErrConfig)
	case cc.ReadWaitMax < 0 || cc.RetryAfter < 0:
		return fmt.Errorf("%w: durations must not be negative", ErrConfig)
	}
	return nil
}
