package wire

// Limits of the contract: the server enforces them (its Config defaults to
// them), and clients size their requests by them. The limits of an order's
// fields (items, quantities, id lengths) are the engine's, in
// internal/engine/limits.go.
const (
	// BodyBytesMax is the largest body of a single request (1 MiB); over it
	// the answer is 413 too_large.
	BodyBytesMax = 1 << 20
	// BatchBodyBytesMax is the largest body of a batch, a settle or a
	// catalog import (16 MiB).
	BatchBodyBytesMax = 16 << 20
	// BatchOrdersMax is the most orders of one POST /v1/orders:batch and
	// the most actions of one POST /v1/orders:settle.
	BatchOrdersMax = 10_000
	// ListTopMax is the largest top (or limit) of a list.
	ListTopMax = 1000
)
