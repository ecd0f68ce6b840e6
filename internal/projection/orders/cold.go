package orders

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/fest-platform/fest/internal/engine"
)

// The cold tier keeps the orders that left memory in Pebble, an embedded
// LSM key-value store, under three kinds of key:
//
//	'o' id(8, big endian)                 -> the order's arena record body, u8 status, varint changed_at
//	's' id(8)                             -> u8 status, varint changed_at (a change after the order left memory)
//	'h' uvarint len, buyer, ^created_at(8), id(8) -> empty (the buyer's history, newest first)
//
// Every write is blind (no read before it), so eviction and the follower
// never wait on the disk. Pebble's write-ahead log is off: the journal is
// the source of truth, and a projection snapshot is written only after a
// Flush has made everything the snapshot counts as cold durable. Writes
// after the snapshot that a crash loses are made again by the replay from
// it, with the same keys and values, since the store is a function of the
// journal; writes that survive the crash are duplicates of what the replay
// puts back in memory, and memory wins (a hot order is never read from the
// cold tier, and the history scan skips hot orders).
const (
	keyOrder   = 'o'
	keyStatus  = 's'
	keyHistory = 'h'
)

// coldKeyBytesMax bounds a history key: a buyer id is bounded by the engine.
const coldKeyBytesMax = 1 + binary.MaxVarintLen64 + engine.IDBytesMax + 16

// ErrColdTier wraps a failure of the cold tier's disk.
var ErrColdTier = errors.New("order store cold tier")

type cold struct {
	db    *pebble.DB
	cache *pebble.Cache
	// batch gathers the follower's status writes for the current record;
	// Commit applies it (follower-owned).
	batch *pebble.Batch
	key   []byte // follower-owned scratch
	val   []byte
}

// pebbleLogger sends Pebble's log lines to slog.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	// Pebble calls Fatalf for an invariant it cannot continue past.
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// openCold opens (creating) the Pebble store in dir with a cache of
// cacheBytes and memtables of memtableBytes.
func openCold(dir string, cacheBytes, memtableBytes int64, log *slog.Logger) (*cold, error) {
	cache := pebble.NewCache(cacheBytes)
	opts := &pebble.Options{
		Cache:        cache,
		DisableWAL:   true,
		MemTableSize: uint64(memtableBytes),
		// Two memtables: one filling while the other flushes. A third
		// would cost memory the budget counts.
		MemTableStopWritesThreshold: 2,
		Logger:                      pebbleLogger{log},
	}
	// A Bloom filter on every level: most reads of a status key miss
	// (an order's status rarely changes after it left memory), and a miss
	// then costs no block read.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		cache.Unref()
		return nil, fmt.Errorf("%w: open %s: %w", ErrColdTier, dir, err)
	}
	c := &cold{db: db, cache: cache}
	c.batch = db.NewBatch()
	return c, nil
}

func (c *cold) close() error {
	err := c.batch.Close()
	if cerr := c.db.Close(); err == nil {
		err = cerr
	}
	c.cache.Unref()
	return err
}

func orderKey(b []byte, kind byte, id engine.OrderID) []byte {
	b = append(b, kind)
	return binary.BigEndian.AppendUint64(b, uint64(id))
}

// historyPrefix is the start of every history key of buyer.
func historyPrefix(b []byte, buyer string) []byte {
	b = append(b, keyHistory)
	b = binary.AppendUvarint(b, uint64(len(buyer)))
	return append(b, buyer...)
}

// historyKey sorts a buyer's orders newest first: by creation time
// descending, then by id descending.
func historyKey(b []byte, buyer string, createdAt int64, id engine.OrderID) []byte {
	b = historyPrefix(b, buyer)
	b = binary.BigEndian.AppendUint64(b, math.MaxUint64-uint64(createdAt))
	return binary.BigEndian.AppendUint64(b, math.MaxUint64-uint64(id))
}

// prefixEnd is the smallest key after every key that starts with prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// putStatus adds a status change of a cold order to the follower's batch.
func (c *cold) putStatus(id engine.OrderID, status engine.OrderStatus, changedAt int64) error {
	c.key = orderKey(c.key[:0], keyStatus, id)
	c.val = append(c.val[:0], byte(status))
	c.val = binary.AppendVarint(c.val, changedAt)
	if err := c.batch.Set(c.key, c.val, nil); err != nil {
		return fmt.Errorf("%w: status of %v: %w", ErrColdTier, id, err)
	}
	return nil
}

// commitStatuses applies the follower's batch, so that a read after the
// record's Commit sees its status changes.
func (c *cold) commitStatuses() error {
	if c.batch.Empty() {
		return nil
	}
	err := c.db.Apply(c.batch, pebble.NoSync)
	c.batch.Reset()
	if err != nil {
		return fmt.Errorf("%w: apply status changes: %w", ErrColdTier, err)
	}
	return nil
}

// get reads a cold order: its record and, if it changed since it left
// memory, its status.
func (c *cold) get(id engine.OrderID) (Order, error) {
	var kb [9]byte
	v, closer, err := c.db.Get(orderKey(kb[:0], keyOrder, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return Order{}, ErrNotFound
	}
	if err != nil {
		return Order{}, fmt.Errorf("%w: read order %v: %w", ErrColdTier, id, err)
	}
	o, status, changedAt, derr := decodeColdOrder(v)
	closer.Close()
	if derr != nil {
		return Order{}, fmt.Errorf("%w: order %v: %w", ErrColdTier, id, derr)
	}
	o.ID, o.Status, o.ChangedAt = id, status, changedAt
	v, closer, err = c.db.Get(orderKey(kb[:0], keyStatus, id))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return Order{}, fmt.Errorf("%w: read status of %v: %w", ErrColdTier, id, err)
	default:
		d := decoder{b: v}
		if len(v) == 0 {
			d.err = ErrCorruptRecord
		} else {
			o.Status = engine.OrderStatus(v[0])
			d.b = v[1:]
			o.ChangedAt = d.varint()
		}
		closer.Close()
		if d.err != nil || o.Status < engine.StatusPending || o.Status > engine.StatusExpired {
			return Order{}, fmt.Errorf("%w: status of %v: %w", ErrColdTier, id, ErrCorruptRecord)
		}
	}
	return o, nil
}

// appendColdOrder encodes the value of an 'o' key.
func appendColdOrder(b, body []byte, status engine.OrderStatus, changedAt int64) []byte {
	b = binary.AppendUvarint(b, uint64(len(body)))
	b = append(b, body...)
	b = append(b, byte(status))
	return binary.AppendVarint(b, changedAt)
}

func decodeColdOrder(v []byte) (Order, engine.OrderStatus, int64, error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || n > uint64(len(v)-k) {
		return Order{}, 0, 0, ErrCorruptRecord
	}
	o, err := decodeOrder(v[k : k+int(n)])
	if err != nil {
		return Order{}, 0, 0, err
	}
	rest := v[k+int(n):]
	if len(rest) < 2 {
		return Order{}, 0, 0, ErrCorruptRecord
	}
	status := engine.OrderStatus(rest[0])
	d := decoder{b: rest[1:]}
	changedAt := d.varint()
	if d.err != nil || len(d.b) != 0 || status < engine.StatusPending || status > engine.StatusExpired {
		return Order{}, 0, 0, ErrCorruptRecord
	}
	return o, status, changedAt, nil
}
