package engine

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/fest-platform/fest/internal/journal"
)

// A snapshot holds every partition's state and, per partition, the journal
// position that state includes. Workers serialize their partitions at batch
// boundaries while the others keep running, so positions differ between
// partitions; replay skips, per partition, the events already included.
//
// Layout (little-endian, varints as in encoding/binary):
//
//	magic "FESTSNAP" | u8 version | uvarint partitions
//	per partition: u64 position | uvarint length | partition bytes
const (
	snapshotMagic   = "FESTSNAP"
	snapshotVersion = 1
)

type snapshotRequest struct {
	wg   sync.WaitGroup
	data [][]byte
	pos  []journal.Position
}

func (w *worker) snapshotPart(req *snapshotRequest) {
	// Every record of this worker has been appended (positions are given
	// at Append), and no other worker's record holds events of these
	// partitions: their state is that of the whole journal so far. Using
	// the journal's end, not this worker's last record, lets an idle
	// worker's partitions keep up, so old segments can go.
	end := w.e.journal.End()
	for _, p := range w.parts {
		req.data[p.id] = encodePartition(nil, p)
		req.pos[p.id] = end
	}
	req.wg.Done()
}

// maybeSnapshot starts a background snapshot when the journal has grown by
// SnapshotEveryBytes since the last one.
func (e *Engine) maybeSnapshot(end journal.Position) {
	every := e.cfg.SnapshotEveryBytes
	if every < 0 || e.snapshots == nil || uint64(end)-e.lastSnapshotEnd.Load() < uint64(every) {
		return
	}
	if !e.snapshotRunning.CompareAndSwap(false, true) {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer e.snapshotRunning.Store(false)
		if err := e.snapshot(); err != nil {
			e.cfg.Logger.Error("background snapshot failed", "err", err)
		}
	}()
}

// Snapshot writes a snapshot now; the journal before it may then be removed.
func (e *Engine) Snapshot() error {
	if e.snapshots == nil {
		return fmt.Errorf("snapshot: engine has no data directory")
	}
	return e.snapshot()
}

func (e *Engine) snapshot() error {
	e.snapshotMu.Lock()
	defer e.snapshotMu.Unlock()
	n := len(e.core.partitions)
	req := &snapshotRequest{data: make([][]byte, n), pos: make([]journal.Position, n)}
	e.mu.RLock()
	running := !e.mu.closed
	if running {
		req.wg.Add(len(e.workers))
		for _, w := range e.workers {
			w.queue <- shard{snap: req}
		}
	}
	e.mu.RUnlock()
	if running {
		req.wg.Wait()
	} else {
		// The workers have stopped: their state is still.
		req.wg.Add(len(e.workers))
		for _, w := range e.workers {
			w.snapshotPart(req)
		}
	}
	// Every position must be durable before a snapshot may claim it.
	durable := make(chan error, 1)
	if _, err := e.journal.Append(nil, func(err error) { durable <- err }); err != nil {
		return fmt.Errorf("journal barrier: %w", err)
	}
	if err := <-durable; err != nil {
		return fmt.Errorf("journal barrier: %w", err)
	}
	data := []byte(snapshotMagic)
	data = append(data, snapshotVersion)
	data = binary.AppendUvarint(data, uint64(n))
	minPos := req.pos[0]
	for i := 0; i < n; i++ {
		data = binary.LittleEndian.AppendUint64(data, uint64(req.pos[i]))
		data = binary.AppendUvarint(data, uint64(len(req.data[i])))
		data = append(data, req.data[i]...)
		minPos = min(minPos, req.pos[i])
	}
	if err := e.snapshots.Write(minPos, data); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	e.stats.Snapshots.Add(1)
	e.lastSnapshotEnd.Store(uint64(slices.Max(req.pos)))
	remove := minPos
	if e.cfg.RetainFrom != nil {
		remove = min(remove, journal.Position(e.cfg.RetainFrom()))
	}
	if err := e.journal.RemoveBefore(remove); err != nil {
		return fmt.Errorf("remove journal before %d: %w", remove, err)
	}
	return nil
}

// encodePartition appends p's state.
func encodePartition(b []byte, p *partition) []byte {
	b = binary.AppendVarint(b, p.lastAt)
	p.brandsMu.RLock()
	b = binary.AppendUvarint(b, uint64(len(p.brands)))
	for _, br := range p.brands {
		b = appendBrand(b, br)
	}
	p.brandsMu.RUnlock()
	b = binary.AppendUvarint(b, uint64(len(p.merchants)))
	for i := range p.merchants {
		b = appendMerchant(b, &p.merchants[i].m)
	}
	b = binary.AppendUvarint(b, uint64(len(p.skus)))
	for i := range p.skus {
		s, t := &p.skus[i], &p.skuText[i]
		b = binary.AppendVarint(b, s.price)
		b = binary.AppendUvarint(b, uint64(s.available))
		b = binary.AppendUvarint(b, uint64(s.reserved))
		b = binary.AppendUvarint(b, uint64(s.sold))
		b = binary.AppendUvarint(b, uint64(s.merchant))
		b = appendString(b, t.id)
		b = appendString(b, p.brandOf(t))
		b = appendString(b, t.title)
		b = appendString(b, p.categoryOf(t))
	}
	b = binary.AppendUvarint(b, uint64(len(p.orders)))
	for _, s := range p.orders {
		b = append(b, byte(s))
	}
	b = binary.AppendUvarint(b, uint64(p.pendingCount))
	for i, po := range p.pending {
		if po == nil {
			continue
		}
		seq := p.pendingBase + uint64(i)
		b = binary.AppendUvarint(b, seq)
		b = binary.AppendVarint(b, po.total)
		b = binary.AppendVarint(b, po.createdAt)
		b = binary.AppendVarint(b, po.payBy)
		b = binary.AppendUvarint(b, uint64(po.merchant))
		b = binary.AppendUvarint(b, uint64(po.count))
		for i := 0; i < int(po.count); i++ {
			it := po.item(i)
			b = binary.AppendUvarint(b, uint64(it.slot))
			b = binary.AppendUvarint(b, uint64(it.quantity))
		}
	}
	return p.keys.encode(b)
}

func (d *decoder) count(max uint64, what string) int {
	n := d.uvarint()
	if n > max || n > uint64(len(d.b)) {
		d.fail("bad " + what + " count")
		return 0
	}
	return int(n)
}

// decodePartition restores p (new and empty) from data, and the directory
// entries of its SKUs.
func (c *core) decodePartition(p *partition, data []byte) error {
	d := &decoder{b: data}
	p.lastAt = d.varint()
	for i, n := 0, d.count(1<<32, "brand"); i < n && d.err == nil; i++ {
		br := &Brand{}
		d.brand(br)
		br.ID, br.Name, br.Country = strings.Clone(br.ID), strings.Clone(br.Name), strings.Clone(br.Country)
		p.brands[br.ID] = br
	}
	for i, n := 0, d.count(1<<32, "merchant"); i < n && d.err == nil; i++ {
		var m Merchant
		d.merchant(&m)
		m = cloneMerchant(m)
		p.merchantSlots[m.ID] = uint32(len(p.merchants))
		p.merchants = append(p.merchants, merchantState{m: m})
	}
	nskus := d.count(1<<32, "sku")
	p.skus = make([]skuState, 0, nskus)
	p.skuText = make([]skuText, 0, nskus)
	for i := 0; i < nskus && d.err == nil; i++ {
		s := skuState{price: d.varint(), available: int32(d.uvarint()), reserved: int32(d.uvarint()), sold: int32(d.uvarint()), merchant: uint32(d.uvarint())}
		t := skuText{id: d.string(), brand: p.intern(d.string()), title: strings.Clone(d.string()), category: p.intern(d.string())}
		if d.err != nil {
			break
		}
		if int(s.merchant) >= len(p.merchants) {
			d.fail("sku of unknown merchant")
			break
		}
		slot := uint32(len(p.skus))
		ref, key, _ := c.dir.insert(t.id, newSKURef(p.id, slot))
		if ref != newSKURef(p.id, slot) {
			d.fail("sku id in two partitions")
			break
		}
		t.id = key
		p.skus = append(p.skus, s)
		p.skuText = append(p.skuText, t)
		p.checkSKU(slot)
		p.updateSoldOut(slot)
	}
	norders := d.count(1<<52, "order")
	if d.err == nil {
		if norders > len(d.b)-d.off {
			d.fail("short order statuses")
		} else {
			p.orders = make([]OrderStatus, norders)
			for i := range p.orders {
				p.orders[i] = OrderStatus(d.b[d.off+i])
			}
			d.off += norders
		}
	}
	for i, n := 0, d.count(1<<52, "pending order"); i < n && d.err == nil; i++ {
		seq := d.uvarint()
		po := &pendingOrder{total: d.varint(), createdAt: d.varint(), payBy: d.varint(), merchant: uint32(d.uvarint()), count: uint32(d.count(orderItemsMax, "item"))}
		for j := 0; j < int(po.count) && d.err == nil; j++ {
			it := pendingItem{slot: uint32(d.uvarint()), quantity: uint32(d.uvarint())}
			if int(it.slot) >= len(p.skus) {
				d.fail("pending item of unknown sku")
			}
			if j < inlineItems {
				po.inline[j] = it
			} else {
				po.more = append(po.more, it)
			}
		}
		if seq == 0 || seq > uint64(len(p.orders)) || p.orders[seq-1] != StatusPending {
			d.fail("pending order with a bad sequence")
		}
		if p.pendingCount == 0 {
			// The window starts at the oldest pending order.
			p.pendingBase = seq
		}
		for p.pendingBase+uint64(len(p.pending)) < seq {
			p.pending = append(p.pending, nil)
		}
		if p.pendingBase+uint64(len(p.pending)) != seq {
			d.fail("pending orders out of order")
			break
		}
		p.addPending(seq, po)
	}
	// Keep the window's invariant: it ends just before the next order.
	if p.pendingCount == 0 {
		p.pendingBase = p.nextSeq()
	}
	for d.err == nil && p.pendingBase+uint64(len(p.pending)) < p.nextSeq() {
		p.pending = append(p.pending, nil)
	}
	c.decodeKeys(d, p)
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return fmt.Errorf("partition %d: %w", p.id, d.err)
	}
	return nil
}

// recover loads the newest valid snapshot and replays the journal after it.
func (e *Engine) recover() error {
	n := len(e.core.partitions)
	pos := make([]journal.Position, n)
	if e.snapshots != nil {
		at, data, ok, err := e.snapshots.Latest()
		if err != nil {
			return fmt.Errorf("load snapshot: %w", err)
		}
		if ok {
			if err := e.loadSnapshot(data, pos); err != nil {
				return fmt.Errorf("load snapshot at %d: %w", at, err)
			}
			e.lastSnapshotEnd.Store(uint64(slices.Max(pos)))
			e.cfg.Logger.Info("loaded snapshot", "position", at, "bytes", len(data))
		}
	}
	from := slices.Min(pos)
	var ev Event
	events := 0
	err := e.journal.Replay(from, func(end journal.Position, rec []byte) error {
		return decodeRecord(rec, n, &ev, func(ev *Event) error {
			if end <= pos[ev.Partition] {
				return nil
			}
			e.core.evolve(e.core.partitions[ev.Partition], ev)
			events++
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("replay journal from %d: %w", from, err)
	}
	e.cfg.Logger.Info("recovered", "from", from, "to", e.journal.End(), "events", events, "skus", e.core.dir.count())
	return nil
}

func (e *Engine) loadSnapshot(data []byte, pos []journal.Position) error {
	d := &decoder{b: data}
	if len(data) < len(snapshotMagic)+1 || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return fmt.Errorf("%w: not a snapshot", ErrBadRecord)
	}
	d.off = len(snapshotMagic)
	if v := d.byte1(); v != snapshotVersion {
		return fmt.Errorf("%w: snapshot version %d", ErrBadRecord, v)
	}
	if n := d.uvarint(); d.err == nil && n != uint64(len(pos)) {
		return fmt.Errorf("snapshot has %d partitions, the directory %d", n, len(pos))
	}
	for i := range pos {
		pos[i] = journal.Position(d.uint64())
		size := d.count(1<<40, "partition bytes")
		if d.err != nil {
			return d.err
		}
		if err := e.core.decodePartition(e.core.partitions[i], d.b[d.off:d.off+size]); err != nil {
			return err
		}
		d.off += size
	}
	return d.err
}
