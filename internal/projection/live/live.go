// Package live is the livestream read model: per channel its GMV and paid
// orders (every paid order on live:<channel_id>, deal or not), per deal its
// units sold and left, and the leaderboard of channels by GMV. It is a
// projection of the journal (internal/projection), fed the engine's
// channel, deal and order events, and snapshotted with the other read
// models at one journal position.
//
// Channel milestones are not kept here: the GMV projection already has
// milestones of kind channel (its channel breakdown is keyed by the order's
// channel, live:<channel_id>), and the board shows them.
package live

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// Config configures the projection.
type Config struct {
	// ChannelsMax bounds the channels kept (default 1<<16). A channel put
	// past it is not tracked and is counted in Stats.ChannelsDropped; its
	// orders and deals are then ignored.
	ChannelsMax int
	// DealsMax bounds the deals kept (default 1<<20), likewise counted in
	// Stats.DealsDropped past it.
	DealsMax int
}

// Default bounds.
const (
	DefaultChannelsMax = 1 << 16
	DefaultDealsMax    = 1 << 20
)

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.ChannelsMax < 0:
		return fmt.Errorf("live config: ChannelsMax %d is negative", c.ChannelsMax)
	case c.DealsMax < 0:
		return fmt.Errorf("live config: DealsMax %d is negative", c.DealsMax)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.ChannelsMax == 0 {
		c.ChannelsMax = DefaultChannelsMax
	}
	if c.DealsMax == 0 {
		c.DealsMax = DefaultDealsMax
	}
	return c
}

// ErrBadSnapshot wraps a snapshot section that does not decode. It wraps
// projection.ErrBadSnapshot, so that the runner sets a damaged snapshot
// aside and rebuilds from an older one or the journal.
var ErrBadSnapshot = fmt.Errorf("live: %w", projection.ErrBadSnapshot)

// ErrNotFound is a channel the projection does not know.
var ErrNotFound = errors.New("channel not found")

// Channel is a channel's figures.
type Channel struct {
	ID       string
	Title    string
	Host     string
	StartsAt int64 // unix nanoseconds
	EndsAt   int64 // unix nanoseconds
	GMV      int64 // fen, of paid orders on live:<ID>
	Orders   int64 // paid orders on live:<ID>
	Deals    []Deal
}

// Deal is a deal's figures as the journal tells them.
type Deal struct {
	ID        string
	SKUID     string
	Price     int64 // fen
	Stock     int64 // units carved for the deal
	StockLeft int64 // units still for sale (0 once ended)
	Sold      int64 // units in paid orders
	Ended     bool
}

// Stats are the projection's counters.
type Stats struct {
	Channels        int
	Deals           int
	Pending         int // unpaid orders on tracked channels
	ChannelsDropped uint64
	DealsDropped    uint64
}

type channelState struct {
	ch     Channel // Deals unused: deals holds the indexes
	deals  []int32
	gmv    int64
	orders int64
}

type dealState struct {
	d       Deal
	channel int32
}

// pendingOrder is an unpaid order on a tracked channel: enough to count it
// when it is paid and to give a deal its units back when it is not.
type pendingOrder struct {
	channel  int32
	deal     int32 // -1: not a deal order
	quantity int32
	total    int64
}

type state struct {
	channels     []*channelState
	channelIndex map[string]int32
	deals        []*dealState
	dealIndex    map[string]int32
	// pending holds the unpaid orders of tracked channels. It mirrors the
	// engine's pending orders on those channels, which the payment
	// timeout bounds; an entry leaves when its order is paid, cancelled or
	// expired.
	// (projection.Pending: the payment of an order on no tracked channel,
	// most of them, is then an index into a ring, not a map miss.)
	pending         *projection.Pending[pendingOrder]
	channelsDropped uint64
	dealsDropped    uint64
}

func newState() *state {
	return &state{channelIndex: map[string]int32{}, dealIndex: map[string]int32{}, pending: projection.NewPending[pendingOrder]()}
}

// Live is the projection.
type Live struct {
	cfg    Config
	mu     sync.RWMutex // held for writing from a record's first Apply to its Commit
	locked bool
	st     *state
}

// New returns an empty projection.
func New(cfg Config) (*Live, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Live{cfg: cfg.withDefaults(), st: newState()}, nil
}

// Name implements projection.Projection.
func (l *Live) Name() string { return "live" }

// Apply implements projection.Projection.
func (l *Live) Apply(ev *engine.Event) error {
	if !l.locked {
		l.mu.Lock()
		l.locked = true
	}
	l.st.apply(&l.cfg, ev)
	return nil
}

// Commit implements projection.Projection.
func (l *Live) Commit(pos uint64, at int64) { l.unlock() }

// Abort implements projection.Projection.
func (l *Live) Abort() { l.unlock() }

func (l *Live) unlock() {
	if l.locked {
		l.locked = false
		l.mu.Unlock()
	}
}

// SnapshotDurable implements projection.Projection; snapshots are whole.
func (l *Live) SnapshotDurable() {}

const livePrefix = "live:"

func (st *state) apply(cfg *Config, ev *engine.Event) {
	switch ev.Kind {
	case engine.EventChannelPut:
		e := &ev.LiveChannel
		c := Channel{ID: strings.Clone(e.ID), Title: strings.Clone(e.Title), Host: strings.Clone(e.Host), StartsAt: e.StartsAt, EndsAt: e.EndsAt}
		if i, ok := st.channelIndex[c.ID]; ok {
			c.ID = st.channels[i].ch.ID
			st.channels[i].ch = c
			return
		}
		if len(st.channels) >= cfg.ChannelsMax {
			st.channelsDropped++
			return
		}
		st.channelIndex[c.ID] = int32(len(st.channels))
		st.channels = append(st.channels, &channelState{ch: c})
	case engine.EventDealPut:
		d := ev.Deal
		ci, ok := st.channelIndex[d.ChannelID]
		if !ok {
			return // its channel was dropped
		}
		if _, ok := st.dealIndex[d.ID]; ok {
			return
		}
		if len(st.deals) >= cfg.DealsMax {
			st.dealsDropped++
			return
		}
		i := int32(len(st.deals))
		ds := &dealState{channel: ci, d: Deal{ID: strings.Clone(d.ID), SKUID: strings.Clone(d.SKUID), Price: d.Price, Stock: d.Stock, StockLeft: d.Stock}}
		st.dealIndex[ds.d.ID] = i
		st.deals = append(st.deals, ds)
		st.channels[ci].deals = append(st.channels[ci].deals, i)
	case engine.EventDealEnded:
		if i, ok := st.dealIndex[ev.DealID]; ok {
			d := &st.deals[i].d
			d.StockLeft, d.Ended = 0, true
		}
	case engine.EventOrderPlaced:
		if !strings.HasPrefix(ev.Channel, livePrefix) {
			return
		}
		ci, ok := st.channelIndex[ev.Channel[len(livePrefix):]]
		if !ok {
			return
		}
		po := pendingOrder{channel: ci, deal: -1, total: ev.Total}
		if ev.DealID != "" {
			if di, ok := st.dealIndex[ev.DealID]; ok {
				q := int32(0)
				for i := range ev.Items {
					q += ev.Items[i].Quantity
				}
				po.deal, po.quantity = di, q
				st.deals[di].d.StockLeft -= int64(q)
			}
		}
		st.pending.Put(ev.OrderID, po)
	case engine.EventOrderPaid, engine.EventOrderCancelled, engine.EventOrderExpired:
		po, ok := st.pending.Take(ev.OrderID)
		if !ok {
			return
		}
		if ev.Kind == engine.EventOrderPaid {
			c := st.channels[po.channel]
			c.gmv += po.total
			c.orders++
			if po.deal >= 0 {
				st.deals[po.deal].d.Sold += int64(po.quantity)
			}
			return
		}
		if po.deal >= 0 && !st.deals[po.deal].d.Ended {
			st.deals[po.deal].d.StockLeft += int64(po.quantity)
		}
	}
}

// Channel returns a channel's figures and its deals in the order they were
// put.
func (l *Live) Channel(id string) (Channel, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	i, ok := l.st.channelIndex[id]
	if !ok {
		return Channel{}, ErrNotFound
	}
	c := l.st.channels[i]
	out := c.ch
	out.GMV, out.Orders = c.gmv, c.orders
	out.Deals = make([]Deal, 0, len(c.deals))
	for _, di := range c.deals {
		out.Deals = append(out.Deals, l.st.deals[di].d)
	}
	return out, nil
}

// Leaderboard returns the top channels by GMV, largest first (ties by
// id), without their deals.
func (l *Live) Leaderboard(top int) []Channel {
	l.mu.RLock()
	out := make([]Channel, 0, len(l.st.channels))
	for _, c := range l.st.channels {
		ch := c.ch
		ch.GMV, ch.Orders = c.gmv, c.orders
		out = append(out, ch)
	}
	l.mu.RUnlock()
	slices.SortFunc(out, func(a, b Channel) int {
		switch {
		case a.GMV != b.GMV:
			if a.GMV > b.GMV {
				return -1
			}
			return 1
		default:
			return strings.Compare(a.ID, b.ID)
		}
	})
	if top < len(out) {
		out = out[:top]
	}
	return out
}

// SellingDeals returns up to top deals not ended, those with the smallest
// share of their stock left first: the deals selling out now.
func (l *Live) SellingDeals(top int) []Deal {
	l.mu.RLock()
	var out []Deal
	for _, d := range l.st.deals {
		if !d.d.Ended {
			out = append(out, d.d)
		}
	}
	l.mu.RUnlock()
	slices.SortFunc(out, func(a, b Deal) int {
		// a.left/a.stock < b.left/b.stock, without division.
		x, y := a.StockLeft*b.Stock, b.StockLeft*a.Stock
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	if top < len(out) {
		out = out[:top]
	}
	return out
}

// Stats returns the projection's counters.
func (l *Live) Stats() Stats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return Stats{Channels: len(l.st.channels), Deals: len(l.st.deals), Pending: l.st.pending.Len(),
		ChannelsDropped: l.st.channelsDropped, DealsDropped: l.st.dealsDropped}
}

// snapshotMagic starts the projection's section; the version is its last
// byte.
const snapshotMagic = "FESTLIV1"

// sectionBytesMax bounds the section a load reads.
const sectionBytesMax = 1 << 32

// WriteSnapshot implements projection.Projection.
func (l *Live) WriteSnapshot(w io.Writer, _ projection.Files) error {
	st := l.st // the runner's goroutine is the only writer
	b := []byte(snapshotMagic)
	b = binary.AppendUvarint(b, st.channelsDropped)
	b = binary.AppendUvarint(b, st.dealsDropped)
	b = binary.AppendUvarint(b, uint64(len(st.channels)))
	for _, c := range st.channels {
		b = appendString(b, c.ch.ID)
		b = appendString(b, c.ch.Title)
		b = appendString(b, c.ch.Host)
		b = binary.AppendVarint(b, c.ch.StartsAt)
		b = binary.AppendVarint(b, c.ch.EndsAt)
		b = binary.AppendVarint(b, c.gmv)
		b = binary.AppendVarint(b, c.orders)
	}
	b = binary.AppendUvarint(b, uint64(len(st.deals)))
	for _, d := range st.deals {
		b = appendString(b, d.d.ID)
		b = appendString(b, d.d.SKUID)
		b = binary.AppendUvarint(b, uint64(d.channel))
		b = binary.AppendVarint(b, d.d.Price)
		b = binary.AppendVarint(b, d.d.Stock)
		b = binary.AppendVarint(b, d.d.StockLeft)
		b = binary.AppendVarint(b, d.d.Sold)
		if d.d.Ended {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	b = binary.AppendUvarint(b, uint64(st.pending.Len()))
	for id, po := range st.pending.All() {
		b = binary.AppendUvarint(b, uint64(id))
		b = binary.AppendUvarint(b, uint64(po.channel))
		b = binary.AppendVarint(b, int64(po.deal))
		b = binary.AppendUvarint(b, uint64(po.quantity))
		b = binary.AppendVarint(b, po.total)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write live snapshot: %w", err)
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at %d bytes from the end", ErrBadSnapshot, what, len(r.b))
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads the length of what follows: at most max, and at most the
// bytes left, since every element takes at least one byte. It is for
// lengths only: an index says nothing about the bytes left and is read
// with value.
func (r *reader) count(max uint64, what string) int {
	n := r.uvarint()
	if n > max || n > uint64(len(r.b)) {
		r.fail("bad " + what + " count")
		return 0
	}
	return int(n)
}

// value reads a uvarint below end: an index or a quantity.
func (r *reader) value(end uint64, what string) uint64 {
	n := r.uvarint()
	if n >= end {
		r.fail(what + " out of range")
		return 0
	}
	return n
}

func (r *reader) string() string {
	n := r.count(uint64(len(r.b)), "string")
	if r.err != nil {
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) byte1() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail("short byte")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

type staged struct {
	l  *Live
	st *state
}

// Install implements projection.Staged.
func (s *staged) Install() {
	s.l.mu.Lock()
	s.l.st = s.st
	s.l.mu.Unlock()
}

// StageSnapshot implements projection.Projection: it reads and checks the
// whole section without changing what readers see.
func (l *Live) StageSnapshot(rd io.Reader, pos uint64, _ projection.Files) (projection.Staged, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(rd, sectionBytesMax+1))
	if err != nil {
		return nil, fmt.Errorf("read live snapshot at %d: %w", pos, err)
	}
	if n > sectionBytesMax {
		return nil, fmt.Errorf("%w: at %d: over %d bytes", ErrBadSnapshot, pos, int64(sectionBytesMax))
	}
	b := buf.Bytes()
	if !bytes.HasPrefix(b, []byte(snapshotMagic)) {
		return nil, fmt.Errorf("%w: at %d: bad magic", ErrBadSnapshot, pos)
	}
	r := &reader{b: b[len(snapshotMagic):]}
	st := decodeState(r, &l.cfg)
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return nil, fmt.Errorf("live snapshot at %d: %w", pos, r.err)
	}
	return &staged{l: l, st: st}, nil
}

func decodeState(r *reader, cfg *Config) *state {
	st := newState()
	st.channelsDropped = r.uvarint()
	st.dealsDropped = r.uvarint()
	for i, n := 0, r.count(uint64(cfg.ChannelsMax), "channel"); i < n && r.err == nil; i++ {
		c := &channelState{ch: Channel{ID: r.string(), Title: r.string(), Host: r.string(), StartsAt: r.varint(), EndsAt: r.varint()}, gmv: r.varint(), orders: r.varint()}
		if _, dup := st.channelIndex[c.ch.ID]; dup || c.gmv < 0 || c.orders < 0 {
			r.fail("bad channel " + c.ch.ID)
			return st
		}
		st.channelIndex[c.ch.ID] = int32(len(st.channels))
		st.channels = append(st.channels, c)
	}
	for i, n := 0, r.count(uint64(cfg.DealsMax), "deal"); i < n && r.err == nil; i++ {
		d := &dealState{d: Deal{ID: r.string(), SKUID: r.string()}}
		ci := int(r.value(uint64(len(st.channels)), "deal channel"))
		d.d.Price, d.d.Stock, d.d.StockLeft, d.d.Sold = r.varint(), r.varint(), r.varint(), r.varint()
		d.d.Ended = r.byte1() == 1
		if r.err != nil {
			return st
		}
		if _, dup := st.dealIndex[d.d.ID]; dup || ci >= len(st.channels) || d.d.StockLeft < 0 || d.d.Sold < 0 || d.d.StockLeft+d.d.Sold > d.d.Stock {
			r.fail("bad deal " + d.d.ID)
			return st
		}
		d.channel = int32(ci)
		di := int32(len(st.deals))
		st.dealIndex[d.d.ID] = di
		st.deals = append(st.deals, d)
		st.channels[ci].deals = append(st.channels[ci].deals, di)
	}
	for i, n := 0, r.count(uint64(len(r.b)), "pending"); i < n && r.err == nil; i++ {
		id := engine.OrderID(r.uvarint())
		channel := r.value(uint64(len(st.channels)), "pending channel")
		deal := r.varint()
		po := pendingOrder{channel: int32(channel), quantity: int32(r.value(math.MaxInt32+1, "pending quantity")), total: r.varint()}
		if r.err != nil {
			return st
		}
		if id.Seq() == 0 || deal < -1 || deal >= int64(len(st.deals)) {
			r.fail("bad pending order")
			return st
		}
		po.deal = int32(deal)
		if !st.pending.Put(id, po) {
			r.fail("pending order twice")
			return st
		}
	}
	return st
}
