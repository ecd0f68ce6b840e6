// Package assistant is fest's customer-service assistant: it answers a
// buyer's message in English, Chinese or Vietnamese (typed with or without
// diacritics), classifies its intent with a model trained at start-up from
// the examples in data/, and builds the answer from the live state of the
// buyer's own orders, read through the small Orders interface the caller
// provides.
//
// A question goes through four pure steps and at most one live look-up:
// language detection, tokenization into hashed features, the intent
// classifier, and entity extraction (order and parcel ids); then the
// answer of the intent, grounded in the named order or the buyer's latest.
// Cancelling is the one action with an effect, so it is a two-step
// conversation: the assistant asks, remembers the pending cancel under the
// session id, and cancels only when the next message of that session says
// yes.
package assistant

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/fest-platform/fest/internal/engine"
)

// Config sets the assistant's bounds. The zero value means the defaults.
type Config struct {
	// SessionsMax bounds the sessions remembered at once. Only a session
	// waiting for a cancel confirmation is remembered; at the bound the
	// least recently asked is forgotten, and its buyer's "yes" is then
	// answered as a new message. The bound is spread over 16 shards and
	// rounded up to a multiple of 16. Default 100,000.
	SessionsMax int
	// SessionAgeMax is how long a pending cancel waits for its yes.
	// Default 10 minutes.
	SessionAgeMax time.Duration
	// ConfidenceMin is the classifier's probability below which the
	// message is answered as intent other and handed to a person.
	// Default 0.3.
	ConfidenceMin float64
	// TextBytesMax bounds a message's text in bytes. Default 2,000.
	TextBytesMax int
	// ParcelPattern is the regular expression (RE2 syntax) of a parcel id
	// in a message. Default ParcelPatternDefault.
	ParcelPattern string
}

// Defaults of Config.
const (
	SessionsMaxDefault   = 100_000
	SessionAgeMaxDefault = 10 * time.Minute
	ConfidenceMinDefault = 0.3
	TextBytesMaxDefault  = 2000
	// ParcelPatternDefault matches the international postal form (two
	// letters, nine digits, two letters: RR123456789CN) and the domestic
	// carriers' form (a carrier prefix and 10 to 13 digits:
	// SF1234567890). Logistics does not exist yet; when it does, its ids
	// are set here.
	ParcelPatternDefault = `(?i)\b(?:[a-z]{2}[0-9]{9}[a-z]{2}|(?:sf|yt|zt|jd|fp)[0-9]{10,13})\b`

	sessionsMaxLimit = 10_000_000
	textBytesLimit   = 64 << 10
)

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.SessionsMax == 0 {
		c.SessionsMax = SessionsMaxDefault
	}
	if c.SessionAgeMax == 0 {
		c.SessionAgeMax = SessionAgeMaxDefault
	}
	if c.ConfidenceMin == 0 {
		c.ConfidenceMin = ConfidenceMinDefault
	}
	if c.TextBytesMax == 0 {
		c.TextBytesMax = TextBytesMaxDefault
	}
	if c.ParcelPattern == "" {
		c.ParcelPattern = ParcelPatternDefault
	}
	return c
}

// Validate reports the first field out of range; zero fields are valid
// (they take the defaults).
func (c Config) Validate() error {
	switch {
	case c.SessionsMax < 0 || c.SessionsMax > sessionsMaxLimit:
		return fmt.Errorf("%w: sessions max %d: want 1 to %d", ErrConfig, c.SessionsMax, sessionsMaxLimit)
	case c.SessionAgeMax < 0:
		return fmt.Errorf("%w: session age max %v: want positive", ErrConfig, c.SessionAgeMax)
	case c.ConfidenceMin < 0 || c.ConfidenceMin >= 1:
		return fmt.Errorf("%w: confidence min %v: want 0 to 1 (excluded)", ErrConfig, c.ConfidenceMin)
	case c.TextBytesMax < 0 || c.TextBytesMax > textBytesLimit:
		return fmt.Errorf("%w: text bytes max %d: want 1 to %d", ErrConfig, c.TextBytesMax, textBytesLimit)
	}
	if c.ParcelPattern != "" {
		if _, err := regexp.Compile(c.ParcelPattern); err != nil {
			return fmt.Errorf("%w: parcel pattern: %v", ErrConfig, err)
		}
	}
	return nil
}

// Errors.
var (
	// ErrConfig is a Config field out of range.
	ErrConfig = errors.New("invalid assistant config")
	// ErrInvalidMessage is a message the assistant will not read; it is
	// returned wrapped in a *MessageError naming the field.
	ErrInvalidMessage = errors.New("invalid message")
	// ErrNotCancellable is what Orders.Cancel returns when the order's
	// state does not allow it (already paid, cancelled or expired).
	ErrNotCancellable = errors.New("order not cancellable")
)

// MessageError names the field of a message that is missing or too long.
type MessageError struct {
	Field  string // buyer_id, text or session_id
	Reason string
}

func (e *MessageError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalidMessage) hold.
func (e *MessageError) Unwrap() error { return ErrInvalidMessage }

// Message is one buyer message.
type Message struct {
	BuyerID   string
	SessionID string
	Text      string
	// At is the time the message arrived; it ages sessions, so tests pass
	// a logical time and the server passes the wall clock.
	At time.Time
}

// Reply is the assistant's answer to a message.
type Reply struct {
	Language Language
	Intent   Intent
	// Confidence is the classifier's probability of its best intent, 0 to
	// 1; below Config.ConfidenceMin that intent is replaced by Other.
	Confidence float64
	Answer     string // in Language
	Handoff    bool   // a person should take over
	OrderID    string // the order the answer is about, or ""
	ParcelID   string // the buyer's parcel the answer is about, or ""
}

// OrderView is what the assistant reads of an order.
type OrderView struct {
	ID        string // the order id as the API prints it
	BuyerID   string
	Status    string // pending_payment, paid, cancelled or expired
	Total     int64  // fen
	CreatedAt time.Time
}

// Orders is the live order data. Implementations must be safe for
// concurrent use; a missing order or buyer is (zero, false), not an error.
type Orders interface {
	// Order returns the order with id, whoever its buyer is (the assistant
	// checks the buyer).
	Order(ctx context.Context, id string) (OrderView, bool)
	// LatestOrder returns the buyer's most recent order.
	LatestOrder(ctx context.Context, buyerID string) (OrderView, bool)
	// Cancel cancels a pending order and returns once the cancellation is
	// durable: ErrNotCancellable when its state does not allow it.
	Cancel(ctx context.Context, id string) error
}

// ParcelView is what the assistant reads of a parcel.
type ParcelView struct {
	ID      string
	OrderID string
	BuyerID string
	Status  string    // the carrier's status, e.g. in_transit
	ETA     time.Time // zero when unknown
}

// Parcels is the live parcel data, once logistics exists; nil until then.
type Parcels interface {
	Parcel(ctx context.Context, id string) (ParcelView, bool)
	// OrderParcel returns the parcel of an order, if it has shipped.
	OrderParcel(ctx context.Context, orderID string) (ParcelView, bool)
}

// Assistant answers messages. It is safe for concurrent use.
type Assistant struct {
	cfg      Config
	orders   Orders
	parcels  Parcels // may be nil
	model    *model
	lang     *langModel
	parcelRE *regexp.Regexp
	sessions *sessions
	stats    counters
}

// New trains the classifier from the embedded examples and returns an
// assistant reading orders (required) and parcels (nil until logistics
// exists).
func New(cfg Config, orders Orders, parcels Parcels) (*Assistant, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if orders == nil {
		return nil, fmt.Errorf("%w: orders is nil", ErrConfig)
	}
	cfg = cfg.WithDefaults()
	examples, err := loadExamples(dataFS, "data")
	if err != nil {
		return nil, fmt.Errorf("load training examples: %w", err)
	}
	return newWith(cfg, orders, parcels, examples), nil
}

// newWith builds an assistant trained on examples; tests train on a split.
func newWith(cfg Config, orders Orders, parcels Parcels, examples []example) *Assistant {
	return assemble(cfg, orders, parcels, train(examples), trainLang(examples))
}

func assemble(cfg Config, orders Orders, parcels Parcels, m *model, lm *langModel) *Assistant {
	return &Assistant{
		cfg: cfg, orders: orders, parcels: parcels, model: m, lang: lm,
		parcelRE: regexp.MustCompile(cfg.ParcelPattern),
		sessions: newSessions(cfg.SessionsMax, cfg.SessionAgeMax),
	}
}

// Config returns the resolved configuration.
func (a *Assistant) Config() Config { return a.cfg }

// validate checks a message's fields.
func (a *Assistant) validate(m *Message) error {
	switch {
	case m.BuyerID == "":
		return &MessageError{"buyer_id", "buyer_id is required"}
	case len(m.BuyerID) > idBytesMax:
		return &MessageError{"buyer_id", fmt.Sprintf("buyer_id over %d bytes", idBytesMax)}
	case m.SessionID == "":
		return &MessageError{"session_id", "session_id is required"}
	case len(m.SessionID) > idBytesMax:
		return &MessageError{"session_id", fmt.Sprintf("session_id over %d bytes", idBytesMax)}
	case m.Text == "":
		return &MessageError{"text", "text is required"}
	case len(m.Text) > a.cfg.TextBytesMax:
		return &MessageError{"text", fmt.Sprintf("text over %d bytes", a.cfg.TextBytesMax)}
	case !utf8.ValidString(m.Text):
		return &MessageError{"text", "text is not valid UTF-8"}
	}
	return nil
}

// idBytesMax bounds buyer and session ids as the engine bounds its ids.
const idBytesMax = engine.IDBytesMax
