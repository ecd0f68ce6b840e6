package assistant

import (
	"hash/maphash"
	"sync"
	"time"
)

// Sessions. The only state a conversation carries is a pending cancel: the
// assistant asked "cancel order X?" and waits for yes or no. So a session
// exists only between that question and the next message of the same
// session id, which takes it whatever it says. They are bounded twice:
//   - in age: a pending cancel older than ageMax is ignored (and removed
//     when met), so a "yes" an hour later cancels nothing;
//   - in number: at most max pending cancels, spread over shards; a full
//     shard forgets its least recently asked one, whose buyer then has to
//     ask again.

// pendingCancel is a cancel waiting for its confirmation.
type pendingCancel struct {
	buyerID string
	orderID string
	lang    Language
	at      time.Time
}

const sessionShards = 16

type sessions struct {
	seed   maphash.Seed
	ageMax time.Duration
	shards [sessionShards]sessionShard
}

type sessionShard struct {
	mu  sync.Mutex
	max int
	m   map[string]*sessionEntry
	// head is the sentinel of a ring ordered by time asked: head.next is
	// the oldest.
	head sessionEntry
}

type sessionEntry struct {
	id         string
	p          pendingCancel
	prev, next *sessionEntry
}

func newSessions(max int, ageMax time.Duration) *sessions {
	s := &sessions{seed: maphash.MakeSeed(), ageMax: ageMax}
	per := (max + sessionShards - 1) / sessionShards
	for i := range s.shards {
		sh := &s.shards[i]
		sh.max = per
		sh.m = make(map[string]*sessionEntry)
		sh.head.prev, sh.head.next = &sh.head, &sh.head
	}
	return s
}

func (s *sessions) shard(id string) *sessionShard {
	return &s.shards[maphash.String(s.seed, id)%sessionShards]
}

// put remembers p as the pending cancel of session id, replacing any.
func (s *sessions) put(id string, p pendingCancel) {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[id]; ok {
		sh.unlink(e)
		delete(sh.m, id)
	}
	// Expired entries go first, then the oldest if the shard is still full.
	for e := sh.head.next; e != &sh.head && p.at.Sub(e.p.at) > s.ageMax; e = sh.head.next {
		sh.unlink(e)
		delete(sh.m, e.id)
	}
	if len(sh.m) >= sh.max {
		e := sh.head.next
		sh.unlink(e)
		delete(sh.m, e.id)
	}
	e := &sessionEntry{id: id, p: p}
	e.prev, e.next = sh.head.prev, &sh.head
	sh.head.prev.next = e
	sh.head.prev = e
	sh.m[id] = e
}

// take removes and returns the pending cancel of session id if buyerID
// asked it no longer than ageMax before now. Another buyer's pending
// cancel under the same session id is left alone and not returned.
func (s *sessions) take(id, buyerID string, now time.Time) (pendingCancel, bool) {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[id]
	if !ok || e.p.buyerID != buyerID {
		return pendingCancel{}, false
	}
	sh.unlink(e)
	delete(sh.m, id)
	if now.Sub(e.p.at) > s.ageMax {
		return pendingCancel{}, false
	}
	return e.p, true
}

// len returns the number of sessions held.
func (s *sessions) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// unlink removes e from the ring. REQUIRES: sh.mu held.
func (sh *sessionShard) unlink(e *sessionEntry) {
	if e.prev == nil || e == &sh.head {
		panic("assistant: unlinking a session entry that is not in its ring: " + e.id)
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}
