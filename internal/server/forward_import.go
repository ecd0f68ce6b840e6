package server

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/fest-platform/fest/internal/engine"
)

// POST /v1/catalog:import in a cluster.
//
// Every line is parsed and checked field by field here first (a malformed
// file changes nothing, as on a single node), and located: a brand in its
// brand's partition, a merchant and its SKUs in the merchant's. A line of
// a partition with no owner fails the import with 503 unavailable before
// anything is applied. When every line is this node's, the import applies
// here exactly as on a single node.
//
// Otherwise it applies kind by kind (brands, then merchants, then SKUs,
// since each refers to the ones before), and each kind in parts, one per
// owner: this node's part on its engine, every other one forwarded at once
// to its owner as an import of its own lines, in file order. The parts of
// a kind run in parallel, bounded by the nodes of the view (one part per
// owner) and each peer's PeerInflightMax; the next kind starts when all
// have answered, and its parts come after the positions the earlier ones
// wrote (HeaderAfter, forward_write.go), so a merchant's owner has
// followed its brand before it checks it. The answer is the single node's:
// the counts of every kind, or the error of the first bad line, with its
// line number in the caller's file.
//
// What differs from a single node: each owner checks its own part before
// applying it, not the whole file, so a bad line in one part leaves the
// parts applied before it (earlier kinds, other owners' parts of the same
// kind) in place, and the error says so. A part whose owner did not answer
// (gone, timed out) fails the import with 503 unavailable at the part's
// first line: its lines may or may not have applied, as with any 503.
// Brands and merchants are upserts; a SKU line applied already needs
// stock_expected when sent again, as the contract's stock rule says.

// importPartNote is appended to the error of a split import.
const importPartNote = "; in a cluster an import applies per owner, so lines of other partitions may have been applied"

// importCluster runs an import whose lines are parsed in phases, body the
// request's body.
func (s *Server) importCluster(w http.ResponseWriter, r *http.Request, be *backend, body []byte, phases *[3]importPhase) {
	c := s.cl
	rt := c.router()
	forwardedIn := r.Header.Get(HeaderForwardedBy) != ""
	t := c.routes()
	var dest [3][]*peer // by phase and line; nil: here
	remote := false
	touched := map[int]bool{}
	for ph := range phases {
		n := phases[ph].len()
		for i := range n {
			req := engine.Request{Command: *phases[ph].cmd(i)}
			p, ok := rt.Locate(&req)
			if !ok {
				continue // the engine answers why, in this node's part
			}
			if rt.Owns(p) {
				touched[p] = true
				continue
			}
			if forwardedIn {
				s.writeNotOwner(w, p)
				return
			}
			o := t.owner(p)
			if o == nil || o == self {
				s.writeError(w, lineError(int(phases[ph].lines[i]), errNoOwner(p)))
				return
			}
			if dest[ph] == nil {
				dest[ph] = make([]*peer, n)
			}
			dest[ph][i], remote = o, true
		}
	}
	if !remote {
		if aerr := c.waitAfter(r, be); aerr != nil {
			s.writeError(w, aerr)
			return
		}
		parts := make([]int, 0, len(touched))
		for p := range touched {
			parts = append(parts, p)
		}
		slices.Sort(parts)
		w = &positionsWriter{ResponseWriter: w, c: c, header: forwardedIn, partitions: parts}
		if aerr := s.applyImport(r.Context(), be, phases); aerr != nil {
			s.writeError(w, aerr)
			return
		}
		writeJSON(w, http.StatusOK, appendImported(nil, phases))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.ForwardTimeout)
	defer cancel()
	imp := &clusterImport{s: s, r: r, be: be, body: body, phases: phases}
	for ph := range phases {
		if phases[ph].len() == 0 {
			continue
		}
		var local []int32
		parts := map[*peer][]int32{}
		for i := range phases[ph].len() {
			if dest[ph] == nil || dest[ph][i] == nil {
				local = append(local, int32(i))
			} else {
				parts[dest[ph][i]] = append(parts[dest[ph][i]], int32(i))
			}
		}
		if aerr := imp.run(ctx, ph, local, parts, t, 0); aerr != nil {
			aerr.Message += importPartNote
			s.writeError(w, aerr)
			return
		}
	}
	// Read-your-writes through this node: the caller's next request here
	// (the next kind's import, an order) finds every line. A wait that runs
	// out changes nothing of the answer: the lines are on their owners.
	c.waitPositions(ctx, be, c.seenPositions())
	writeJSON(w, http.StatusOK, appendImported(nil, phases))
}

// clusterImport is one import split across the cluster.
type clusterImport struct {
	s      *Server
	r      *http.Request
	be     *backend
	body   []byte
	phases *[3]importPhase
}

// run applies the lines idx of phase ph: local here, parts on their
// owners, all at once, and returns the error of the first bad line, if
// any.
func (imp *clusterImport) run(ctx context.Context, ph int, local []int32, parts map[*peer][]int32, t *routeTable, attempt int) *apiError {
	var mu sync.Mutex
	var first *apiError
	fail := func(e *apiError) {
		mu.Lock()
		defer mu.Unlock()
		if e != nil && (first == nil || e.Line < first.Line) {
			first = e
		}
	}
	var wg sync.WaitGroup
	for o, idx := range parts {
		wg.Go(func() { fail(imp.forward(ctx, ph, o, idx, t, attempt)) })
	}
	if len(local) > 0 {
		fail(imp.here(ctx, ph, local))
	}
	wg.Wait()
	return first
}

// here applies the lines idx of phase ph on this node's engine, after the
// positions this node has seen.
func (imp *clusterImport) here(ctx context.Context, ph int, idx []int32) *apiError {
	c := imp.s.cl
	if aerr := c.waitPositions(ctx, imp.be, c.seenPositions()); aerr != nil {
		return lineError(int(imp.phases[ph].lines[idx[0]]), aerr)
	}
	var sub [3]importPhase
	defer putImportBatches(sub[ph].batches)
	for _, i := range idx {
		sub[ph].add(int(imp.phases[ph].lines[i]), *imp.phases[ph].cmd(int(i)))
	}
	aerr := imp.s.applyImport(ctx, imp.be, &sub)
	// What applied here, the later kinds' parts on other nodes must come
	// after: a merchant's brand, a SKU's.
	rt := c.router()
	touched := map[int]bool{}
	for _, i := range idx {
		if p, ok := rt.Locate(&engine.Request{Command: *imp.phases[ph].cmd(int(i))}); ok && rt.Owns(p) {
			touched[p] = true
		}
	}
	c.note(c.positionsOf(slices.Collect(maps.Keys(touched))))
	if aerr != nil && aerr.Line == 0 {
		// An error of no line (a read of the check refused): the part's.
		aerr = lineError(int(imp.phases[ph].lines[idx[0]]), aerr)
	}
	return aerr
}

// forward sends the lines idx of phase ph to o as an import of their own
// and returns the error of its first bad line, numbered as in the
// caller's file. A refusal because o does not own a line (the view was
// stale) refreshes the view and runs the lines again, once.
func (imp *clusterImport) forward(ctx context.Context, ph int, o *peer, idx []int32, t *routeTable, attempt int) *apiError {
	c := imp.s.cl
	ph0 := &imp.phases[ph]
	firstLine := int(ph0.lines[idx[0]])
	size := 0
	for _, i := range idx {
		size += int(ph0.spans[i][1]-ph0.spans[i][0]) + 1
	}
	part := make([]byte, 0, size)
	for _, i := range idx {
		part = append(part, imp.body[ph0.spans[i][0]:ph0.spans[i][1]]...)
		part = append(part, '\n')
	}
	a, err := c.send(ctx, t, o, http.MethodPost, "/v1/catalog:import", imp.r.Header, c.afterHeader(), "", part, len(idx))
	if err != nil {
		return lineError(firstLine, errUnreachable(o, err))
	}
	if a.notOwner() && attempt == 0 {
		t = c.rebuild(t)
		rt := c.router()
		var local []int32
		parts := map[*peer][]int32{}
		for _, i := range idx {
			req := engine.Request{Command: *ph0.cmd(int(i))}
			p, ok := rt.Locate(&req)
			switch no := t.owner(p); {
			case !ok || rt.Owns(p):
				local = append(local, i)
			case no == nil || no == self:
				return lineError(int(ph0.lines[i]), errNoOwner(p))
			default:
				parts[no] = append(parts[no], i)
			}
		}
		return imp.run(ctx, ph, local, parts, t, 1)
	}
	if a.status == http.StatusOK {
		if entries, ok := parsePositions(a.header.Get(HeaderPositions), imp.be.eng.Partitions()); ok {
			c.note(entries)
		} else {
			c.metrics.errors.WithLabelValues(o.node, "answer").Inc()
		}
		return nil
	}
	e := peerError(a)
	if e.Line >= 1 && e.Line <= len(idx) {
		line := int(ph0.lines[idx[e.Line-1]])
		if rest, ok := strings.CutPrefix(e.Message, "line "+strconv.Itoa(e.Line)+": "); ok {
			e.Message = rest
		}
		return lineError(line, e)
	}
	return lineError(firstLine, e)
}
