package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/lease"
	"github.com/fest-platform/fest/wire"
)

// A node of a cluster accepts any request. A command or read for a
// partition this node does not serve is forwarded to the partition's owner
// (forward.go); a batch is split per owner, the parts sent at once and the
// answers merged back in request order. Which node owns which partition
// comes from the lease manager's view, cached in a routeTable that is
// rebuilt when it is older than ClusterConfig.ViewAgeMax or when a peer
// says it is stale.
//
// A forwarded request carries HeaderForwardedBy. A node never forwards such
// a request again: if it does not serve one of its partitions it refuses
// the whole request, before applying anything, with 503 unavailable and
// HeaderNotOwner, and the first node refreshes its view and retries that
// part once. Nothing is ever retried after it may have been applied.

// Headers of the cluster protocol (extensions of the contract).
const (
	// HeaderForwardedBy marks a request forwarded by another node; its
	// value is that node's name.
	HeaderForwardedBy = "Fest-Forwarded-By"
	// HeaderNotOwner is set on the 503 answer of a forwarded request naming
	// a partition the node does not serve: the partition's number.
	HeaderNotOwner = "Fest-Not-Owner"
	// HeaderForwardedTo is set on an answer part of which this node
	// forwarded to others: their names, comma-separated. A client that
	// routes by the cluster's map learns from it that its map is stale.
	HeaderForwardedTo = "Fest-Forwarded-To"
	// HeaderAfter is set on a forwarded catalog or live write: the
	// partition positions ("p:seq,p:seq") the sender has seen acknowledged
	// by their owners. The receiving node applies the write only once its
	// own state includes them, so that a reference to an entity another
	// node wrote a moment ago (a merchant's brand, a deal's channel)
	// resolves as it would on a single node.
	HeaderAfter = "Fest-After"
	// HeaderPositions is set on the answer to a forwarded catalog or live
	// write: the positions ("p:seq,...") of the partitions it wrote, as
	// the owner's journal ends after it.
	HeaderPositions = "Fest-Positions"
)

// Router is what forwarding needs of the engine: in cluster mode
// *engine.Engine implements it.
type Router interface {
	// Locate returns the partition of r, or false when it cannot tell
	// (r is invalid or names a SKU it does not know): the local engine
	// then answers r itself. Locate must not change r nor any state.
	Locate(r *engine.Request) (partition int, ok bool)
	// Owns reports whether this node serves partition now.
	Owns(partition int) bool
	// PartitionPosition is the journal position partition's state
	// includes on this node: a served partition's journal end, a followed
	// one's follower position.
	PartitionPosition(partition int) uint64
}

// Membership is the cluster's ownership as this node sees it:
// *lease.Manager implements it. View is called at most every ViewAgeMax
// (in the background) and when a peer answers that the view is stale
// (while that request waits), never per order.
type Membership interface {
	View() lease.View
}

// ClusterConfig makes a Server one node of a cluster (Config.Cluster).
// Its Router and Membership come later, with AttachCluster, since the
// engine and the lease manager are made after the server.
type ClusterConfig struct {
	// PeerConnsMax bounds the HTTP/1.1 connections kept open to one peer
	// (default 64); forwards beyond it wait for a connection.
	PeerConnsMax int
	// PeerInflightMax bounds the forwarded requests in flight to one peer
	// (default 256). One more waits for a slot until its request's
	// deadline, then its entries are answered 503 unavailable.
	PeerInflightMax int
	// ForwardTimeout bounds one forwarded request, from sending it to
	// reading its answer (default 30s).
	ForwardTimeout time.Duration
	// ViewAgeMax is how long the routing table built from Members.View is
	// used before it is built again (default 500ms).
	ViewAgeMax time.Duration
	// PeerAnswerBytesMax bounds the body of a peer's answer (default
	// 64 MiB, four times the largest batch body).
	PeerAnswerBytesMax int64
	// FollowWaitMax bounds how long a catalog or live write waits for
	// this node to follow the positions it must come after (HeaderAfter;
	// default 5s). Past it the write is answered 503 unavailable, with
	// nothing applied.
	FollowWaitMax time.Duration
	// Transport, when set, carries every forwarded request (tests); by
	// default each peer has its own HTTP/1.1 transport and pool.
	Transport http.RoundTripper
}

// Defaults of ClusterConfig.
const (
	defaultPeerConnsMax       = 64
	defaultPeerInflightMax    = 256
	defaultForwardTimeout     = 30 * time.Second
	defaultViewAgeMax         = 500 * time.Millisecond
	defaultPeerAnswerBytesMax = 64 << 20
	defaultFollowWaitMax      = 5 * time.Second
	// peerConnsMaxLimit keeps a node's connections to its peers well
	// inside the file descriptors a process has.
	peerConnsMaxLimit = 4096
)

func (c *ClusterConfig) setDefaults() {
	if c.PeerConnsMax == 0 {
		c.PeerConnsMax = defaultPeerConnsMax
	}
	if c.PeerInflightMax == 0 {
		c.PeerInflightMax = defaultPeerInflightMax
	}
	if c.ForwardTimeout == 0 {
		c.ForwardTimeout = defaultForwardTimeout
	}
	if c.ViewAgeMax == 0 {
		c.ViewAgeMax = defaultViewAgeMax
	}
	if c.PeerAnswerBytesMax == 0 {
		c.PeerAnswerBytesMax = defaultPeerAnswerBytesMax
	}
	if c.FollowWaitMax == 0 {
		c.FollowWaitMax = defaultFollowWaitMax
	}
}

// validate reports the first invalid field, defaults applied.
func (c ClusterConfig) validate() error {
	c.setDefaults()
	switch {
	case c.PeerConnsMax < 1 || c.PeerConnsMax > peerConnsMaxLimit:
		return fmt.Errorf("%w: cluster: peer connections max %d outside 1 to %d", ErrConfig, c.PeerConnsMax, peerConnsMaxLimit)
	case c.PeerInflightMax < 1:
		return fmt.Errorf("%w: cluster: peer in-flight max must be positive", ErrConfig)
	case c.ForwardTimeout < 0 || c.ViewAgeMax < 0 || c.FollowWaitMax < 0:
		return fmt.Errorf("%w: cluster: durations must not be negative", ErrConfig)
	case c.PeerAnswerBytesMax < 1:
		return fmt.Errorf("%w: cluster: peer answer bytes max must be positive", ErrConfig)
	}
	return nil
}

// defaultNode names a node that runs alone and was given no name.
const defaultNode = "fest-1"

// orderIDPartitionShift is where an order id's partition starts: the
// partition is the id's bits from there up. It is read from the engine's
// own layout rather than copied, and published in GET /v1/cluster so that
// a client can route payments without asking.
var orderIDPartitionShift = bits.Len64(uint64(engine.OrderIDOf(1, 1))) - 1

// clusterView is the body of GET /v1/cluster: the contract's fields, and
// the order id layout as an extension.
type clusterView struct {
	lease.View
	OrderIDPartitionShift int `json:"order_id_partition_shift"`
}

// handleCluster answers GET /v1/cluster: the membership's view in a
// cluster (as last read), or this node owning every partition when it
// runs alone.
func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request, be *backend) {
	var v lease.View
	if s.cl != nil {
		// The view the routing table was built from: at most ViewAgeMax
		// old, and no wait on the lease manager for a client's read.
		v = s.cl.routes().view
	} else {
		v = s.singleView(r, be.eng.Partitions())
	}
	b, err := json.Marshal(clusterView{View: v, OrderIDPartitionShift: orderIDPartitionShift})
	if err != nil {
		panic("server: encode cluster view: " + err.Error())
	}
	writeJSON(w, http.StatusOK, append(b, '\n'))
}

// singleView is the view of a node that runs alone: itself, alive, owning
// every partition (lease revision 0: it holds no leases).
func (s *Server) singleView(r *http.Request, partitions int) lease.View {
	addr := s.cfg.Address
	if addr == "" {
		scheme := "http://"
		if r.TLS != nil {
			scheme = "https://"
		}
		addr = scheme + r.Host
	}
	v := lease.View{Node: s.cfg.Node, Nodes: []lease.NodeView{{Node: s.cfg.Node, Addr: addr, Alive: true}},
		Partitions: make([]lease.PartitionView, partitions)}
	for p := range v.Partitions {
		v.Partitions[p] = lease.PartitionView{Partition: p, Owner: s.cfg.Node}
	}
	return v
}

// clusterState is a node's forwarding machinery.
type clusterState struct {
	s       *Server
	cfg     ClusterConfig
	deps    atomic.Pointer[clusterDeps] // set by AttachCluster
	table   atomic.Pointer[routeTable]
	buildMu sync.Mutex  // one rebuild at a time
	aging   atomic.Bool // a rebuild for age runs in the background
	peersMu sync.Mutex
	peers   map[string]*peer // by node name; bounded by the nodes of the view
	metrics forwardMetrics
	// seen holds, by partition, the highest journal position a peer's
	// answer to a catalog or live write reported (HeaderPositions): what
	// later such writes must come after. Bounded by the partitions.
	seenMu sync.Mutex
	seen   map[int]uint64
}

// clusterDeps are what AttachCluster gives.
type clusterDeps struct {
	router  Router
	members Membership
}

// AttachCluster gives a cluster node (Config.Cluster set) its router, the
// engine in cluster mode, and its membership, the lease manager. Call it
// before Attach, which panics on a cluster node without them; on a node
// without Config.Cluster it panics.
func (s *Server) AttachCluster(router Router, members Membership) {
	if s.cl == nil {
		panic("server: AttachCluster on a node without Config.Cluster")
	}
	if router == nil || members == nil {
		panic("server: AttachCluster needs a router and a membership")
	}
	s.cl.deps.Store(&clusterDeps{router: router, members: members})
	s.cl.table.Store(nil) // the next request builds it from members
}

// router is the attached Router.
func (c *clusterState) router() Router { return c.deps.Load().router }

// routeTable is who owns each partition, built from one view.
type routeTable struct {
	view   lease.View
	node   string  // this node's name in the view
	owners []*peer // by partition; nil: no owner; self: this node
	built  time.Time
}

// self marks the partitions the view gives to this node.
var self = &peer{node: "self"}

func newClusterState(s *Server, cfg ClusterConfig) *clusterState {
	c := &clusterState{s: s, cfg: cfg, peers: map[string]*peer{}, seen: map[int]uint64{}}
	c.metrics = newForwardMetrics(s.metrics.reg)
	return c
}

// routes returns the routing table. The first is built at once; one
// older than ViewAgeMax is rebuilt in the background while it goes on
// serving, because Members.View may wait (lease.Manager.View waits for a
// tick in progress, KV round trips included) and requests must not.
func (c *clusterState) routes() *routeTable {
	t := c.table.Load()
	if t == nil {
		return c.rebuild(nil)
	}
	if time.Since(t.built) > c.cfg.ViewAgeMax && c.aging.CompareAndSwap(false, true) {
		go func() {
			defer c.aging.Store(false)
			c.rebuild(t)
		}()
	}
	return t
}

// rebuild builds the table from a fresh view unless another caller did
// since seen was loaded.
func (c *clusterState) rebuild(seen *routeTable) *routeTable {
	c.buildMu.Lock()
	defer c.buildMu.Unlock()
	if t := c.table.Load(); t != seen && t != nil {
		return t
	}
	prev := c.table.Load()
	v := c.deps.Load().members.View()
	t := &routeTable{view: v, node: v.Node, built: time.Now()}
	addrs := make(map[string]string, len(v.Nodes))
	for _, n := range v.Nodes {
		addrs[n.Node] = n.Addr
	}
	c.peersMu.Lock()
	live := make(map[string]bool, len(v.Nodes))
	for _, pv := range v.Partitions {
		if pv.Partition < 0 || pv.Partition >= 1<<16 {
			panic("server: cluster view has partition " + strconv.Itoa(pv.Partition))
		}
		for len(t.owners) <= pv.Partition {
			t.owners = append(t.owners, nil)
		}
		switch {
		case pv.Owner == "":
			// No owner in the view: a lease being taken over, or one whose
			// renewals this node has not seen within a TTL because its own
			// ticks ran late (a loaded node). The last owner known is kept:
			// a node that does not serve the partition refuses a forward
			// with HeaderNotOwner before applying anything, so trying it
			// is never a wrong answer, and it saves a 503 while only this
			// node's view is behind.
			if prev != nil {
				if o := prev.owner(pv.Partition); o != nil && o != self && addrs[o.node] != "" {
					t.owners[pv.Partition] = c.peerLocked(o.node, addrs[o.node])
					live[o.node] = true
				}
			}
		case pv.Owner == v.Node:
			t.owners[pv.Partition] = self
		case addrs[pv.Owner] != "":
			t.owners[pv.Partition] = c.peerLocked(pv.Owner, addrs[pv.Owner])
			live[pv.Owner] = true
		}
	}
	// Peers that own nothing any more are dropped with their connections,
	// so the map stays bounded by the nodes of the view.
	for name, p := range c.peers {
		if !live[name] {
			delete(c.peers, name)
			p.close()
		}
	}
	c.peersMu.Unlock()
	c.table.Store(t)
	return t
}

// owner returns the owner of partition p in t, nil when it has none.
func (t *routeTable) owner(p int) *peer {
	if p < 0 || p >= len(t.owners) {
		return nil
	}
	return t.owners[p]
}

// forwardMetrics are the series of forwarding, by peer.
type forwardMetrics struct {
	requests *prometheus.CounterVec // forwarded requests, by peer
	orders   *prometheus.CounterVec // commands in them, by peer
	errors   *prometheus.CounterVec // failed forwards, by peer and reason
}

func newForwardMetrics(reg *prometheus.Registry) forwardMetrics {
	m := forwardMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fest_forward_requests_total", Help: "Requests forwarded to the owner of their partition, by peer."}, []string{"peer"}),
		orders:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fest_forward_orders_total", Help: "Orders, actions and other commands forwarded, by peer."}, []string{"peer"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fest_forward_errors_total",
			Help: "Forwards that failed, by peer and reason: unreachable, not_owner (the peer did not serve the partition), answer (an answer outside the protocol), busy (in-flight bound)."}, []string{"peer", "reason"}),
	}
	reg.MustRegister(m.requests, m.orders, m.errors)
	return m
}

// errNoOwner answers a command for a partition no node serves now.
func errNoOwner(p int) *apiError {
	return newError(wire.CodeUnavailable, "partition "+strconv.Itoa(p)+" has no owner now (failing over); retry shortly")
}

// errNotOwner refuses a forwarded request naming a partition this node
// does not serve.
func errNotOwner(p int) *apiError {
	return newError(wire.CodeUnavailable, "partition "+strconv.Itoa(p)+" is not served by this node; the sender's view is stale")
}

// writeNotOwner answers a forwarded request with errNotOwner and the
// HeaderNotOwner the first node retries on.
func (s *Server) writeNotOwner(w http.ResponseWriter, p int) {
	w.Header().Set(HeaderNotOwner, strconv.Itoa(p))
	s.writeError(w, errNotOwner(p))
}

// normalizeAddr gives a node's address a scheme.
func normalizeAddr(addr string) string {
	addr = strings.TrimRight(addr, "/")
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return addr
}

// errPeerBusy is the forward refused by the in-flight bound.
var errPeerBusy = errors.New("too many forwards in flight to the peer")
