package engine

import (
	"errors"
	"fmt"
	"strconv"
)

// ParcelStatus is the delivery state of the parcel of a paid order. Every
// paid order has exactly one parcel, created with the payment: the engine
// keeps its status and a hash of its last scan's location (parcelState),
// which is all it needs to decide a scan; the parcel's history, carrier and
// route are the logistics read model's (internal/logistics).
type ParcelStatus uint8

// Parcel statuses, in the order of the API's state machine. ParcelNone is
// "no parcel": the order is not paid.
const (
	ParcelNone ParcelStatus = iota
	ParcelCreated
	ParcelPickedUp
	ParcelInTransit
	ParcelOutForDelivery
	ParcelDelivered
	ParcelFailedAttempt
	ParcelException
	ParcelReturned
	parcelStatusCount
)

// ParcelStatusCount is the number of parcel statuses including ParcelNone,
// for tables indexed by status.
const ParcelStatusCount = int(parcelStatusCount)

var parcelStatusNames = [...]string{"", "created", "picked_up", "in_transit", "out_for_delivery", "delivered", "failed_attempt", "exception", "returned"}

func (s ParcelStatus) String() string {
	if int(s) < len(parcelStatusNames) {
		return parcelStatusNames[s]
	}
	return "parcel_status(" + strconv.Itoa(int(s)) + ")"
}

// ParseScanStatus parses the status of a scan: any parcel status but
// "created", which only a payment sets.
func ParseScanStatus(s string) (ParcelStatus, bool) {
	for i := ParcelPickedUp; i < parcelStatusCount; i++ {
		if parcelStatusNames[i] == s {
			return i, true
		}
	}
	return ParcelNone, false
}

// parcelTransitions[from] is the set (bit i for status i) of the statuses a
// scan may move a parcel in status from to: the table of the API contract
// (docs/API: Logistics). delivered and returned are final.
var parcelTransitions = [parcelStatusCount]uint16{
	ParcelCreated:        1<<ParcelPickedUp | 1<<ParcelException,
	ParcelPickedUp:       1<<ParcelInTransit | 1<<ParcelException,
	ParcelInTransit:      1<<ParcelInTransit | 1<<ParcelOutForDelivery | 1<<ParcelException,
	ParcelOutForDelivery: 1<<ParcelDelivered | 1<<ParcelFailedAttempt | 1<<ParcelException,
	ParcelFailedAttempt:  1<<ParcelOutForDelivery | 1<<ParcelReturned | 1<<ParcelException,
	ParcelException:      1<<ParcelInTransit | 1<<ParcelReturned,
}

// ParcelTransitionAllowed reports whether a scan of status to may follow a
// parcel in status from. A repeat of the last scan (same status and
// location) is not a transition: the engine accepts it without a change,
// whatever this table says.
func ParcelTransitionAllowed(from, to ParcelStatus) bool {
	if from >= parcelStatusCount || to >= parcelStatusCount {
		return false
	}
	return parcelTransitions[from]&(1<<to) != 0
}

// Bounds of a scan's strings, checked by the gateway like the order's.
const (
	locationBytesMax    = 128 // a hub or a city, e.g. "Hangzhou hub 3"
	carrierCodeBytesMax = 64  // the carrier's raw event code
	// LocationBytesMax and CarrierCodeBytesMax are exported for the HTTP edge.
	LocationBytesMax    = locationBytesMax
	CarrierCodeBytesMax = carrierCodeBytesMax
)

// locationHash is the hash of a scan's location the engine keeps, so that a
// repeat of the last scan is recognised without keeping the string: 32 bits
// of FNV-1a, never zero (zero is "no scan yet"). Two different locations of
// the same status collide with probability 2^-32, and the repeat is then
// taken for a duplicate; the read model keeps the true location either way.
func locationHash(s string) uint32 {
	h := hashString(s)
	v := uint32(h ^ h>>32)
	if v == 0 {
		v = 1
	}
	return v
}

// parcel returns the status and last-location hash of the parcel of order
// seq (ParcelNone when the order is not paid).
func (p *partition) parcel(seq uint64) (ParcelStatus, uint32) {
	if seq == 0 || seq > uint64(len(p.parcelStatus)) {
		return ParcelNone, 0
	}
	return p.parcelStatus[seq-1], p.parcelLocation[seq-1]
}

// setParcel records the parcel of order seq. The tables are indexed by seq
// and grow to the highest paid order, so an unpaid order below it costs its
// five bytes too; seqs are dense and most orders are paid.
func (p *partition) setParcel(seq uint64, s ParcelStatus, location uint32) {
	if seq == 0 || seq > uint64(len(p.orders)) {
		panic(fmt.Sprintf("engine: partition %d parcel of order %d past the last order %d", p.id, seq, len(p.orders)))
	}
	if n := int(seq); len(p.parcelStatus) < n {
		p.parcelStatus = extendDoubling(p.parcelStatus, n) // ParcelNone
		p.parcelLocation = extendDoubling(p.parcelLocation, n)
	}
	p.parcelStatus[seq-1], p.parcelLocation[seq-1] = s, location
}

func (c *core) scanParcel(p *partition, now int64, cmd *Command, res *Result, out *emitter) {
	sc := cmd.Scan
	seq := cmd.OrderID.Seq()
	if seq == 0 || seq >= p.nextSeq() || p.orders[seq-1] != StatusPaid {
		res.Code, res.Field = CodeNotFound, "parcel_id"
		return
	}
	res.OrderID, res.Status = cmd.OrderID, StatusPaid
	cur, loc := p.parcel(seq)
	if cur == ParcelNone {
		panic(fmt.Sprintf("engine: partition %d paid order %d has no parcel", p.id, seq))
	}
	res.ParcelStatus = cur
	hash := locationHash(sc.Location)
	if sc.Status == cur && hash == loc {
		return // the last scan again: accepted, nothing changes
	}
	if !ParcelTransitionAllowed(cur, sc.Status) {
		res.Code = CodeInvalidState
		return
	}
	ev := &out.ev
	*ev = Event{Kind: EventParcelScanned, Partition: p.id, At: now, OrderID: cmd.OrderID,
		ParcelStatus: sc.Status, Location: sc.Location, CarrierCode: sc.CarrierCode, ScanAt: sc.At}
	c.emit(p, ev, out)
	res.ParcelStatus = sc.Status
	res.ChangedAt = now
}

func (c *core) evolveScanned(p *partition, ev *Event) {
	seq := ev.OrderID.Seq()
	if seq == 0 || seq > uint64(len(p.orders)) || p.orders[seq-1] != StatusPaid {
		panic(fmt.Sprintf("engine: partition %d parcel scan of order %d which is not paid", p.id, seq))
	}
	cur, _ := p.parcel(seq)
	if !ParcelTransitionAllowed(cur, ev.ParcelStatus) {
		panic(fmt.Sprintf("engine: partition %d parcel of order %d scanned %v from %v", p.id, seq, ev.ParcelStatus, cur))
	}
	p.setParcel(seq, ev.ParcelStatus, locationHash(ev.Location))
}

// ErrBadParcelID is returned by ParseParcelID for a malformed id.
var ErrBadParcelID = errors.New("malformed parcel id")

// parcelIDPrefix starts every parcel id: a parcel id is "P" and the id of
// its order, so a scan routes to the order's partition with no look-up and
// the two ids can never be confused (order ids are lower case).
const parcelIDPrefix = 'P'

// ParcelID renders the id of the parcel of order id.
func ParcelID(id OrderID) string { return string(AppendParcelID(nil, id)) }

// AppendParcelID appends the parcel id of order id to b.
func AppendParcelID(b []byte, id OrderID) []byte {
	return id.AppendText(append(b, parcelIDPrefix))
}

// ParseParcelID parses a parcel id into its order's id. It checks the form
// only; whether the parcel exists is the engine's answer.
func ParseParcelID(s string) (OrderID, error) {
	if len(s) < 2 || s[0] != parcelIDPrefix {
		return 0, ErrBadParcelID
	}
	id, err := ParseOrderID(s[1:])
	if err != nil {
		return 0, ErrBadParcelID
	}
	return id, nil
}
