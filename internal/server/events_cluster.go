package server

import (
	"context"
	"net/http"
	"strconv"

	"github.com/fest-platform/fest/internal/engine"
)

// GET /v1/events in a cluster. Each partition has a journal of its own
// there (a JetStream stream), whose positions are its stream sequences:
// there is no one position for the whole cluster to resume from. So the
// feed is per partition, an extension of the contract: partition=p is
// required, from is a position of p's stream (or an event's "seq:index"
// there), and the events are p's, from any node (every node follows every
// partition). A consumer of the whole cluster reads one feed per
// partition, GET /v1/cluster giving their number. Without partition the
// request is refused 422 invalid_argument naming the field.

// partitionFeed returns the follow function, the end and the durable
// position of the partition a cluster feed request names.
func partitionFeed(r *http.Request, be *backend) (func(context.Context, uint64, func(*engine.Event) error) error, uint64, uint64, *apiError) {
	n := be.eng.Partitions()
	v := r.URL.Query().Get("partition")
	p, err := strconv.Atoi(v)
	if v == "" || err != nil || p < 0 || p >= n {
		return nil, 0, 0, errInvalidArgument("partition", "in a cluster GET /v1/events follows one partition's journal: partition=0 to "+
			strconv.Itoa(n-1)+" is required, and from is a position of that partition")
	}
	follow := func(ctx context.Context, from uint64, fn func(*engine.Event) error) error {
		return be.eng.FollowPartition(ctx, p, from, fn)
	}
	return follow, be.eng.PartitionPosition(p), be.eng.PartitionDurable(p), nil
}
