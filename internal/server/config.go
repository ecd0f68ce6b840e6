// Package server is fest's HTTP edge: routing, authentication, decoding and
// validation of JSON and protobuf bodies, admission control, metrics and the
// OpenAPI document. It converts requests into engine commands and engine
// results into the contract's responses; errors become HTTP statuses only
// here. Domain packages never import it.
package server

import (
	"errors"
	"fmt"
	"github.com/fest-platform/fest/wire"
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

	// ReadHeaderTimeout bounds reading a request's headers (default 5s):
	// a client that trickles its headers is cut off after it.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, headers and body
	// (default 60s): a 16 MiB batch needs 280 KB/s to arrive in time,
	// a client trickling a body has its read fail after it, and the
	// handler answers and returns.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its answer: reading the body, the engine's work and fsync, the
	// order store's catch-up (ReadWaitMax) and writing (default 90s; it
	// must exceed ReadTimeout and ReadWaitMax). A client that stops
	// reading its answer loses the connection after it.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no request
	// for this long (default 2m).
	IdleTimeout time.Duration
	// ShutdownTimeout bounds Detach's wait for the single orders the fast
	// path is serving (0: no bound), as the one given to
	// http.Server.Shutdown bounds net/http's requests: a request stuck in
	// the engine does not hold the shutdown forever.
	ShutdownTimeout time.Duration
	// ConnectionsMax bounds the open client connections (default 10,000).
	// A connection beyond it is answered at once with 503 unavailable and
	// Retry-After, then closed, rather than left waiting in the accept
	// queue, so a client knows to back off and retry (see LimitListener).
	ConnectionsMax int
	// NetHTTPOnly serves every request through net/http, single orders
	// included; by default LimitListener serves keep-alive connections
	// sending single orders on its own loop (fastconn.go), which a cluster
	// node never does. For comparison and as a fallback.
	NetHTTPOnly bool
	// StreamsMax bounds the concurrent GET /v1/gmv/stream clients (default
	// 1,000, or half of ConnectionsMax if less); one past it is answered
	// 503 unavailable with Retry-After.
	StreamsMax int
	// StreamEvery is how often GET /v1/gmv/stream sends an event (default
	// 1s; at most 1s, the contract's "at least once a second").
	StreamEvery time.Duration

	// EventFeedsMax bounds the open GET /v1/events feeds (default 64); one
	// more is answered 503 unavailable with Retry-After. Each feed holds a
	// journal reader and a goroutine for as long as its client stays.
	EventFeedsMax int
	// EventFeedWriteTimeout bounds writing one record's events to a feed's
	// client (default 30s): a client that stops reading loses its feed, and
	// resumes from its last position.
	EventFeedWriteTimeout time.Duration
	// EventFeedBufferBytes is the write buffer of each feed (default 64 KiB):
	// events wait in it, at most this many bytes, until their record is
	// complete or it fills.
	EventFeedBufferBytes int

	// Node names this node in GET /v1/cluster when it runs alone (default
	// "fest-1"); in a cluster the membership's view names it.
	Node string
	// Address is this node's API address as clients reach it
	// ("http://10.0.0.1:8080"), shown by GET /v1/cluster when it runs
	// alone; default: the scheme and Host of each request.
	Address string
	// RehearsalClock lets clients give each command its festival time
	// (docs/api.md, The rehearsal clock): the engine must run with
	// engine.Config.RehearsalClock too. Without it (the default) a request
	// that gives a time is answered 422 invalid_argument naming the field.
	RehearsalClock bool
	// Cluster makes this node one of a cluster: requests for partitions
	// owned elsewhere are forwarded to their owners (see ClusterConfig).
	// Nil is a single node owning every partition, whose order paths do no
	// cluster work at all.
	Cluster *ClusterConfig
}

// Defaults.
const (
	defaultBodyBytesMax          = wire.BodyBytesMax      // the contract's limits
	defaultBatchBodyBytesMax     = wire.BatchBodyBytesMax //
	defaultBatchOrdersMax        = wire.BatchOrdersMax    //
	defaultGatewayBatchMax       = 256
	defaultReadWaitMax           = 5 * time.Second
	defaultRetryAfter            = time.Second
	defaultReadHeaderTimeout     = 5 * time.Second
	defaultReadTimeout           = 60 * time.Second
	defaultWriteTimeout          = 90 * time.Second
	defaultIdleTimeout           = 2 * time.Minute
	defaultConnectionsMax        = 10_000
	defaultEventFeedsMax         = 64
	defaultEventFeedWriteTimeout = 30 * time.Second
	defaultEventFeedBufferBytes  = 64 << 10
	defaultStreamsMax            = 1_000
	defaultStreamEvery           = time.Second
)

// Bounds of the connection settings.
const (
	// connectionsMaxLimit keeps the bound below what one process can hold
	// open (file descriptors) with room for the journal and the store.
	connectionsMaxLimit = 1_000_000
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
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = defaultReadHeaderTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.ConnectionsMax == 0 {
		c.ConnectionsMax = defaultConnectionsMax
	}
	if c.StreamsMax == 0 {
		// A stream holds a connection: leave most of them to the API.
		c.StreamsMax = max(1, min(defaultStreamsMax, c.ConnectionsMax/2))
	}
	if c.StreamEvery == 0 {
		c.StreamEvery = defaultStreamEvery
	}
	if c.EventFeedsMax == 0 {
		c.EventFeedsMax = defaultEventFeedsMax
	}
	if c.EventFeedWriteTimeout == 0 {
		c.EventFeedWriteTimeout = defaultEventFeedWriteTimeout
	}
	if c.EventFeedBufferBytes == 0 {
		c.EventFeedBufferBytes = defaultEventFeedBufferBytes
	}
	if c.Node == "" {
		c.Node = defaultNode
	}
}

// WithDefaults returns c with every zero field set to its default, so
// that flags can show the defaults they stand for.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
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
	case cc.ReadHeaderTimeout < 0 || cc.ReadTimeout < 0 || cc.WriteTimeout < 0 || cc.IdleTimeout < 0:
		return fmt.Errorf("%w: timeouts must be positive", ErrConfig)
	case cc.ReadHeaderTimeout > cc.ReadTimeout:
		return fmt.Errorf("%w: read header timeout %v exceeds the read timeout %v", ErrConfig, cc.ReadHeaderTimeout, cc.ReadTimeout)
	case cc.WriteTimeout <= cc.ReadTimeout || cc.WriteTimeout <= cc.ReadWaitMax:
		// The write deadline starts when the headers are read, so it also
		// covers reading the body and waiting for the order store.
		return fmt.Errorf("%w: write timeout %v must exceed the read timeout %v and the read wait %v", ErrConfig, cc.WriteTimeout, cc.ReadTimeout, cc.ReadWaitMax)
	case cc.ConnectionsMax < 1 || cc.ConnectionsMax > connectionsMaxLimit:
		return fmt.Errorf("%w: connections max %d outside 1 to %d", ErrConfig, cc.ConnectionsMax, connectionsMaxLimit)
	case cc.StreamsMax < 1 || cc.StreamsMax > cc.ConnectionsMax:
		return fmt.Errorf("%w: streams max %d outside 1 to the connections max %d", ErrConfig, cc.StreamsMax, cc.ConnectionsMax)
	case cc.StreamEvery < 0 || cc.StreamEvery > time.Second:
		return fmt.Errorf("%w: stream interval %v outside 0 to 1s", ErrConfig, cc.StreamEvery)
	case cc.EventFeedsMax < 1 || cc.EventFeedWriteTimeout < 0 || cc.EventFeedBufferBytes < 1:
		return fmt.Errorf("%w: event feed bounds must be positive", ErrConfig)
	case cc.Cluster != nil:
		return cc.Cluster.validate()
	}
	return nil
}
