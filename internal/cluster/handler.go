// Package cluster runs fest's engine as one node of a cluster. Handler
// turns the lease manager's ownership changes into the engine's partition
// transitions (lease acquired: serve the partition; released: hand it off;
// lost: stop serving it), and Node wires a NATS connection, the
// partitions' JetStream journals and snapshots, the leases and the engine
// together, for cmd/fest. docs/cluster.md is the design.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/lease"
)

// Engine is what a Handler drives: engine.Engine in cluster mode.
type Engine interface {
	AddPartition(ctx context.Context, partition int, epoch uint64) error
	RemovePartition(ctx context.Context, partition int) error
	LosePartition(partition int) error
	// ExtendLease says the partition's lease is surely valid for validFor
	// from now (engine.Cluster.Leased).
	ExtendLease(partition int, validFor time.Duration)
	// Err is the error that stopped the engine, or nil.
	Err() error
}

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// Engine is the engine to drive (required).
	Engine Engine
	// Partitions is the number of partitions (required).
	Partitions int
	// RetryWait is the pause before an AddPartition that failed (the
	// journal could not be opened, say) is tried again, while the lease is
	// still held; default 1 s.
	RetryWait time.Duration
	// LeaseMargin is taken off each lease's validity before the engine is
	// told it (ExtendLease): room for a command's wait in its partition's
	// queue between the check and its apply, and for the nodes' clocks
	// running at slightly different rates; default 500 ms. It must be
	// below the lease TTL less RenewEvery, or partitions answer
	// unavailable between renewals.
	LeaseMargin time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// DefaultLeaseMargin is HandlerConfig.LeaseMargin's default.
const DefaultLeaseMargin = 500 * time.Millisecond

// Validate reports the first invalid field.
func (c HandlerConfig) Validate() error {
	switch {
	case c.Engine == nil:
		return errors.New("cluster handler config: no engine")
	case c.Partitions < 1:
		return fmt.Errorf("cluster handler config: %d partitions", c.Partitions)
	case c.RetryWait < 0 || c.LeaseMargin < 0:
		return errors.New("cluster handler config: negative duration")
	}
	return nil
}

// opsMax bounds the transitions waiting per partition. The lease manager
// asks for at most one per partition per tick and each waits for the one
// before it, so a full queue means transitions far slower than ticks:
// the manager's next call then waits for room.
const opsMax = 16

// Handler is a lease.Handler that drives an engine. The lease manager calls
// it from its tick, which must not wait for a replay: Acquired and Lost
// queue their transition and return, Release waits for its own (the lease
// is deleted when it returns, so the drain must be over). The transitions
// of one partition run one at a time in the order asked, on a goroutine of
// the partition's own, so that a Lost asked while an AddPartition is under
// way runs after it.
type Handler struct {
	cfg HandlerConfig
	ops []chan func(ctx context.Context)
	// asked counts, per partition, the transitions asked: a failed
	// AddPartition is retried only while no later one (a Release or Lost
	// queued behind it, which would otherwise wait forever) was asked.
	asked  []atomic.Uint64
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	leases func(partition int) (lease.Lease, bool)
	// releasing holds, per partition, the done channel of a hand-off
	// under way, so that a Release asked again (the first one's wait
	// ended with its context) waits for the same one.
	releasingMu sync.Mutex
	releasing   map[int]chan struct{}

	stats HandlerStats

	closeOnce sync.Once
}

var (
	_ lease.Handler        = (*Handler)(nil)
	_ lease.RenewalHandler = (*Handler)(nil)
)

// HandlerStats are a handler's figures for /metrics.
type HandlerStats struct {
	// TakeOvers counts partitions taken over from a dead (or paused) node
	// and served; LastFailoverNanos is the last one's time, from when this
	// node first saw the old owner's last renewal (so a TTL or more) to
	// the partition being served here, and LastTakeOverNanos the part of
	// it after the lease was acquired (opening the journal, replaying).
	TakeOvers                            atomic.Uint64
	LastFailoverNanos, LastTakeOverNanos atomic.Int64
	// AddFailures counts AddPartitions that failed (each logged).
	AddFailures atomic.Uint64
}

// Stats returns the handler's figures.
func (h *Handler) Stats() *HandlerStats { return &h.stats }

// Renewed implements lease.RenewalHandler: the engine takes commands for
// the partition for the lease's validity less LeaseMargin.
func (h *Handler) Renewed(p int, validFor time.Duration) {
	h.checkPartition(p)
	h.cfg.Engine.ExtendLease(p, validFor-h.cfg.LeaseMargin)
}

// NewHandler starts a handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RetryWait == 0 {
		cfg.RetryWait = time.Second
	}
	if cfg.LeaseMargin == 0 {
		cfg.LeaseMargin = DefaultLeaseMargin
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, asked: make([]atomic.Uint64, cfg.Partitions), releasing: map[int]chan struct{}{}}
	h.ctx, h.stop = context.WithCancel(context.Background())
	for range cfg.Partitions {
		ops := make(chan func(context.Context), opsMax)
		h.ops = append(h.ops, ops)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			for op := range ops {
				op(h.ctx)
			}
		}()
	}
	return h, nil
}

// SetLeases gives the handler the lease manager's Lease, so that an
// AddPartition that failed is tried again for as long as the lease it was
// for is held. Without it a failed AddPartition is only logged, and the
// partition answers unavailable until the lease moves. Call it before the
// manager's first tick.
func (h *Handler) SetLeases(leases func(partition int) (lease.Lease, bool)) { h.leases = leases }

func (h *Handler) checkPartition(p int) {
	if p < 0 || p >= len(h.ops) {
		panic(fmt.Sprintf("cluster: partition %d outside 0..%d", p, len(h.ops)-1))
	}
}

func (h *Handler) queue(p int, op func(ctx context.Context)) {
	h.checkPartition(p)
	h.ops[p] <- op
}

// Acquired implements lease.Handler: AddPartition in the background; the
// partition answers unavailable until it is done. Every attempt, the first
// one too, goes only while the lease is still held at epoch and nothing
// was asked after it: an AddPartition at an old epoch would fence the
// current owner.
func (h *Handler) Acquired(_ context.Context, p int, epoch uint64) error {
	h.checkPartition(p)
	asked := h.asked[p].Add(1)
	acquired := time.Now()
	var takeOverWait time.Duration
	if h.leases != nil {
		if l, ok := h.leases(p); ok && l.Epoch == epoch {
			takeOverWait = l.TakeOverWait
		}
	}
	h.queue(p, func(ctx context.Context) {
		for try := 0; ; try++ {
			if !h.held(p, epoch, asked, try) {
				h.cfg.Logger.Warn("not serving a partition whose lease moved on before its take-over ran", "partition", p, "epoch", epoch)
				return
			}
			err := h.cfg.Engine.AddPartition(ctx, p, epoch)
			if err == nil && takeOverWait > 0 {
				took := time.Since(acquired)
				h.stats.TakeOvers.Add(1)
				h.stats.LastTakeOverNanos.Store(int64(took))
				h.stats.LastFailoverNanos.Store(int64(takeOverWait + took))
				h.cfg.Logger.Info("partition taken over", "partition", p, "epoch", epoch,
					"failover", (takeOverWait + took).Round(time.Millisecond), "lease_wait", takeOverWait.Round(time.Millisecond), "take_over", took.Round(time.Millisecond))
			}
			if err == nil || errors.Is(err, engine.ErrPartitionServed) {
				return
			}
			h.stats.AddFailures.Add(1)
			held := h.leases != nil && h.held(p, epoch, asked, try)
			if !held || errors.Is(err, engine.ErrClosed) || h.cfg.Engine.Err() != nil || ctx.Err() != nil {
				h.cfg.Logger.Error("serving an acquired partition failed", "partition", p, "epoch", epoch, "err", err)
				return
			}
			h.cfg.Logger.Warn("serving an acquired partition failed; trying again", "partition", p, "epoch", epoch, "err", err, "wait", h.cfg.RetryWait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(h.cfg.RetryWait):
			}
		}
	})
	return nil
}

// held reports whether partition p's lease is still held at epoch with no
// transition asked since asked. Without SetLeases only the first try goes.
func (h *Handler) held(p int, epoch, asked uint64, try int) bool {
	if h.asked[p].Load() != asked {
		return false
	}
	if h.leases == nil {
		return try == 0
	}
	l, ok := h.leases(p)
	return ok && l.Epoch == epoch
}

// Release implements lease.Handler: RemovePartition, waited for until ctx
// ends. A Release asked again while the first is under way waits for the
// same hand-off.
func (h *Handler) Release(ctx context.Context, p int) error {
	h.checkPartition(p)
	h.releasingMu.Lock()
	done, ok := h.releasing[p]
	if !ok {
		done = make(chan struct{})
		h.releasing[p] = done
	}
	h.releasingMu.Unlock()
	if !ok {
		h.asked[p].Add(1)
		h.queue(p, func(ctx context.Context) {
			defer func() {
				h.releasingMu.Lock()
				delete(h.releasing, p)
				h.releasingMu.Unlock()
				close(done)
			}()
			if err := h.cfg.Engine.RemovePartition(ctx, p); err != nil {
				h.cfg.Logger.Error("handing a partition off failed", "partition", p, "err", err)
			}
		})
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: hand partition %d off: still draining: %w", p, ctx.Err())
	}
}

// Lost implements lease.Handler: LosePartition in the background.
func (h *Handler) Lost(p int) {
	h.checkPartition(p)
	h.asked[p].Add(1)
	h.queue(p, func(context.Context) {
		if err := h.cfg.Engine.LosePartition(p); err != nil {
			h.cfg.Logger.Error("a partition whose lease was lost had a record fail; the engine has stopped", "partition", p, "err", err)
		}
	})
}

// Close ends the retries of failed AddPartitions, waits for the queued
// transitions and stops the handler; the lease manager must not call it
// afterwards.
func (h *Handler) Close() {
	h.closeOnce.Do(func() {
		h.stop()
		for _, ops := range h.ops {
			close(ops)
		}
		h.wg.Wait()
	})
}
