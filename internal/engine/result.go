package engine

import (
	"errors"
	"fmt"
	"strconv"
)

// Code is the outcome of a command: CodeOK or the reason it changed nothing.
// Codes (not error values) are used on the hot path so that a rejected order
// costs no allocation; Result.Err builds an error when one is wanted.
type Code uint8

// Result codes. The HTTP edge maps them to the contract's status codes.
const (
	CodeOK Code = iota
	CodeNotFound
	CodeOutOfStock
	CodeInvalidState
	CodeInvalidArgument
	CodePaymentMismatch
	CodeIdempotencyMismatch
	CodeOverloaded
	CodeDealNotActive
	CodeUnavailable // the engine stopped (journal failure) or is closed
	// CodeConflict is a failed compare-and-set precondition: a SKU upsert's
	// StockExpected differs from the available stock, which Available
	// reports (and SKUID names). With Result.Ambiguous it is a request
	// naming an id that two merchants hold (Field names it).
	CodeConflict
	// CodeLimitExceeded is an order on a deal that would take the buyer's
	// units on it (pending or paid) past the deal's LimitPerBuyer.
	CodeLimitExceeded
	codeCount
)

var codeNames = [...]string{"ok", "not_found", "out_of_stock", "invalid_state", "invalid_argument", "payment_mismatch", "idempotency_mismatch", "overloaded", "deal_not_active", "unavailable", "conflict", "limit_exceeded"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "code(" + strconv.Itoa(int(c)) + ")"
}

// Sentinel errors, one per code, so callers can use errors.Is.
var (
	ErrNotFound            = errors.New("not found")
	ErrOutOfStock          = errors.New("out of stock")
	ErrInvalidState        = errors.New("invalid state")
	ErrInvalidArgument     = errors.New("invalid argument")
	ErrPaymentMismatch     = errors.New("payment mismatch")
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	ErrOverloaded          = errors.New("overloaded")
	ErrDealNotActive       = errors.New("deal not active")
	ErrUnavailable         = errors.New("engine unavailable")
	ErrClosed              = errors.New("engine closed")
	ErrConflict            = errors.New("precondition failed")
	ErrLimitExceeded       = errors.New("limit per buyer exceeded")
)

var codeErrors = [...]error{nil, ErrNotFound, ErrOutOfStock, ErrInvalidState, ErrInvalidArgument, ErrPaymentMismatch, ErrIdempotencyMismatch, ErrOverloaded, ErrDealNotActive, ErrUnavailable, ErrConflict, ErrLimitExceeded}

// OrderStatus is the state of an order.
type OrderStatus uint8

// Order statuses.
const (
	StatusNone OrderStatus = iota
	StatusPending
	StatusPaid
	StatusCancelled
	StatusExpired
)

var statusNames = [...]string{"", "pending_payment", "paid", "cancelled", "expired"}

func (s OrderStatus) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return ""
}

// Result is the outcome of one command.
//
// An order's fields (place, pay, cancel, get order) come first, after the
// code, with the position: a worker writes them for every order and the
// caller reads them, so they share one cache line of the request's
// result, and the fields of the other commands' answers the next.
type Result struct {
	Code Code
	// Ambiguous marks a CodeConflict answering a request that names an id
	// two merchants hold (Field names it): in cluster mode, a SKU id or a
	// deal id created in two partitions at once through their two owners.
	// The id must be renamed. (It sits in Code's padding: no bigger Result.)
	Ambiguous bool

	// Order results (place, pay, cancel, get order).
	Status OrderStatus
	// ParcelStatus answers ScanParcel (the parcel's status after the scan)
	// and GetOrder (ParcelNone for an order that is not paid).
	ParcelStatus ParcelStatus
	// Replayed is set when an idempotency key returned an earlier order; the
	// order's details are then those the engine still holds (status, total,
	// times); the caller reads the rest from the order store.
	Replayed   bool
	OrderID    OrderID
	Total      int64 // fen
	CreatedAt  int64 // unix nanoseconds
	PayBy      int64 // unix nanoseconds
	ChangedAt  int64 // unix nanoseconds of paid/cancelled/expired, or of a scan
	MerchantID string

	// Position is the journal position after which this result's effects
	// are durable: projections that have consumed up to Position reflect it.
	Position uint64

	// Field names the offending field for CodeInvalidArgument and
	// CodeNotFound (e.g. "items[2].sku_id", "merchant_id").
	Field string
	// SKUID and Available detail CodeOutOfStock and CodeConflict (the
	// available stock now), and Available, Reserved and
	// Sold answer GetSKU, AdjustStock and UpsertSKU.
	SKUID     string
	Available int64
	Reserved  int64
	Sold      int64

	// SKU answers GetSKU, UpsertSKU and AdjustStock (with Available,
	// Reserved and Sold). An upsert answers with the command's own SKU,
	// whose Stock is the one asked for (Available is the stock).
	SKU *SKU

	// Deal answers PutDeal, EndDeal and GetDeal. (PutChannel answers
	// nothing but its code: the channel is the command's.)
	Deal *DealStatus
}

// OK reports whether the command succeeded.
func (r *Result) OK() bool { return r.Code == CodeOK }

// Err returns nil for CodeOK, else an *Error.
func (r *Result) Err() error {
	if r.Code == CodeOK {
		return nil
	}
	return &Error{Code: r.Code, Field: r.Field, SKUID: r.SKUID, Available: r.Available, Ambiguous: r.Ambiguous}
}

// Error is a rejected command, with the details the HTTP contract reports.
type Error struct {
	Code      Code
	Field     string
	SKUID     string
	Available int64
	Ambiguous bool // see Result.Ambiguous
}

func (e *Error) Error() string {
	switch {
	case e.Code == CodeOutOfStock:
		return fmt.Sprintf("out of stock: sku %s has %d available", e.SKUID, e.Available)
	case e.Code == CodeConflict && e.Ambiguous:
		return fmt.Sprintf("conflict: %s names an id that two merchants use; it must be renamed", e.Field)
	case e.Code == CodeConflict:
		return fmt.Sprintf("precondition failed: sku %s has %d available", e.SKUID, e.Available)
	case e.Code == CodeInvalidArgument, e.Code == CodeNotFound:
		if e.Field != "" {
			return fmt.Sprintf("%s: %s", codeErrors[e.Code], e.Field)
		}
	}
	if int(e.Code) < len(codeErrors) && codeErrors[e.Code] != nil {
		return codeErrors[e.Code].Error()
	}
	return e.Code.String()
}

// Unwrap returns the sentinel of the code.
func (e *Error) Unwrap() error {
	if int(e.Code) < len(codeErrors) {
		return codeErrors[e.Code]
	}
	return nil
}
