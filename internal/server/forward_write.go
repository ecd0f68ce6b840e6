package server

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

// Catalog and live writes in a cluster.
//
// A brand, merchant, SKU, channel or deal lives in one partition, and its
// write is forwarded to that partition's owner like an order. Unlike an
// order, such a write may name an entity of another partition that was
// written a moment ago through this node: a merchant's brand, a SKU's
// brand, a deal's channel. Its owner checks the reference against its own
// state, which follows the other partitions a few milliseconds behind, and
// would answer 404 for an entity that exists. So these writes are causal:
// every answer to a forwarded one carries the positions it wrote
// (HeaderPositions), this node remembers the highest per partition
// (clusterState.seen), and every later catalog or live write carries them
// (HeaderAfter) and is applied, wherever that is, only once the applying
// node has followed them (waitPositions, bounded by FollowWaitMax). This
// node also waits for them itself before relaying an answer, so a caller
// that goes on through the same node (an import of brands, then of
// merchants, then orders) finds what it wrote.

// partitionPosition is one entry of HeaderAfter or HeaderPositions.
type partitionPosition struct {
	partition int
	position  uint64
}

// formatPositions writes entries as "p:seq,p:seq".
func formatPositions(entries []partitionPosition) string {
	b := make([]byte, 0, 16*len(entries))
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(e.partition), 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, e.position, 10)
	}
	return string(b)
}

// parsePositions reads "p:seq,p:seq"; every partition must be below
// partitions. An empty value is no entries.
func parsePositions(v string, partitions int) ([]partitionPosition, bool) {
	if v == "" {
		return nil, true
	}
	var out []partitionPosition
	for item := range strings.SplitSeq(v, ",") {
		ps, qs, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok {
			return nil, false
		}
		p, err := strconv.Atoi(ps)
		if err != nil || p < 0 || p >= partitions {
			return nil, false
		}
		q, err := strconv.ParseUint(qs, 10, 64)
		if err != nil {
			return nil, false
		}
		out = append(out, partitionPosition{p, q})
	}
	return out, true
}

// afterHeader is HeaderAfter for the next causal write: every position
// seen, in partition order.
func (c *clusterState) afterHeader() string {
	c.seenMu.Lock()
	entries := make([]partitionPosition, 0, len(c.seen))
	for p, q := range c.seen {
		entries = append(entries, partitionPosition{p, q})
	}
	c.seenMu.Unlock()
	slices.SortFunc(entries, func(a, b partitionPosition) int { return a.partition - b.partition })
	return formatPositions(entries)
}

// seenPositions are the positions seen, for a local causal write.
func (c *clusterState) seenPositions() []partitionPosition {
	v, _ := parsePositions(c.afterHeader(), 1<<16)
	return v
}

// note records positions a peer reported.
func (c *clusterState) note(entries []partitionPosition) {
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	for _, e := range entries {
		if e.position > c.seen[e.partition] {
			c.seen[e.partition] = e.position
		}
	}
}

// learn records the positions of a peer's HeaderPositions and waits,
// within FollowWaitMax, for this node to follow them. A malformed header
// or a wait that runs out is not the caller's failure (the write is done
// on its owner): the answer goes on, and only read-your-writes through
// this node is lost for that write.
func (c *clusterState) learn(ctx context.Context, header string) {
	be := c.s.be.Load()
	if header == "" || be == nil {
		return
	}
	entries, ok := parsePositions(header, be.eng.Partitions())
	if !ok {
		c.metrics.errors.WithLabelValues("", "answer").Inc()
		return
	}
	c.note(entries)
	c.waitPositions(ctx, be, entries)
}

// followPollMin and followPollMax bound the pause between two looks at a
// partition's position while waiting for it.
const (
	followPollMin = 100 * time.Microsecond
	followPollMax = 5 * time.Millisecond
)

// waitPositions waits until this node's state includes every entry, or
// FollowWaitMax passes, or ctx ends: then it answers the first entry not
// reached as 503 unavailable.
func (c *clusterState) waitPositions(ctx context.Context, be *backend, entries []partitionPosition) *apiError {
	rt := c.router()
	var deadline time.Time
	pause := followPollMin
	for _, e := range entries {
		if e.partition >= be.eng.Partitions() {
			return errInvalidArgument(HeaderAfter, HeaderAfter+" names partition "+strconv.Itoa(e.partition)+" of "+strconv.Itoa(be.eng.Partitions()))
		}
		for {
			at := rt.PartitionPosition(e.partition)
			if at >= e.position {
				break
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(c.cfg.FollowWaitMax)
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return newError(wire.CodeUnavailable, "partition "+strconv.Itoa(e.partition)+" is behind on this node (at "+
					strconv.FormatUint(at, 10)+", the write must come after "+strconv.FormatUint(e.position, 10)+"); retry shortly")
			}
			time.Sleep(pause)
			pause = min(2*pause, followPollMax)
		}
	}
	return nil
}

// writeHere prepares a catalog or live write, whose command is cmd and
// body body, in a cluster: it forwards it to its partition's owner, or
// waits for what it must come after (HeaderAfter on a forwarded request,
// the positions seen on one from a client) and returns the writer to
// answer it on here, which reports the partition's position to a
// forwarding node. It returns false when it answered the request itself.
// On a single node it returns w.
func (s *Server) writeHere(w http.ResponseWriter, r *http.Request, be *backend, cmd *engine.Command, body []byte) (http.ResponseWriter, bool) {
	c := s.cl
	if c == nil {
		return w, true
	}
	rt := c.router()
	req := engine.Request{Command: *cmd}
	p, ok := rt.Locate(&req)
	if !ok {
		return w, true // the engine answers why
	}
	forwardedIn := r.Header.Get(HeaderForwardedBy) != ""
	if !rt.Owns(p) {
		if forwardedIn {
			s.writeNotOwner(w, p)
			return nil, false
		}
		if c.forwardSingle(w, r, p, body, true) {
			return nil, false
		}
	}
	if aerr := c.waitAfter(r, be); aerr != nil {
		s.writeError(w, aerr)
		return nil, false
	}
	return &positionsWriter{ResponseWriter: w, c: c, header: forwardedIn, partitions: []int{p}}, true
}

// waitAfter waits for what a causal write must come after: HeaderAfter on
// a forwarded request, the positions this node has seen on a client's.
func (c *clusterState) waitAfter(r *http.Request, be *backend) *apiError {
	if r.Header.Get(HeaderForwardedBy) == "" {
		return c.waitPositions(r.Context(), be, c.seenPositions())
	}
	entries, ok := parsePositions(r.Header.Get(HeaderAfter), be.eng.Partitions())
	if !ok {
		return errInvalidArgument(HeaderAfter, HeaderAfter+" is not a list of partition:position")
	}
	return c.waitPositions(r.Context(), be, entries)
}

// positionsWriter takes the positions of its partitions when the answer
// of a causal write applied here is written (after the write applied):
// they are noted as seen, so that this node's next causal writes
// forwarded elsewhere come after this one, and on the answer to a
// forwarded write (header) they are sent back as HeaderPositions.
type positionsWriter struct {
	http.ResponseWriter
	c          *clusterState
	header     bool
	partitions []int
	wrote      bool
}

func (pw *positionsWriter) WriteHeader(status int) {
	if !pw.wrote {
		pw.wrote = true
		entries := pw.c.positionsOf(pw.partitions)
		pw.c.note(entries)
		if pw.header {
			pw.Header().Set(HeaderPositions, formatPositions(entries))
		}
	}
	pw.ResponseWriter.WriteHeader(status)
}

// positionsOf is the positions of partitions on this node now.
func (c *clusterState) positionsOf(partitions []int) []partitionPosition {
	rt := c.router()
	entries := make([]partitionPosition, len(partitions))
	for i, p := range partitions {
		entries[i] = partitionPosition{p, rt.PartitionPosition(p)}
	}
	return entries
}

func (pw *positionsWriter) Write(b []byte) (int, error) {
	if !pw.wrote {
		pw.WriteHeader(http.StatusOK)
	}
	return pw.ResponseWriter.Write(b)
}
