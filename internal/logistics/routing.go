package logistics

import (
	"fmt"
	"strings"
	"time"
)

// Carrier is one courier of the carrier table. A parcel's carrier is chosen
// among those serving its origin, in proportion to their shares, by a hash
// of the order id: the same order always gets the same carrier, on every
// node and after every restart.
type Carrier struct {
	Code string // e.g. "zto"; what the parcel's "carrier" field shows
	Name string // e.g. "ZTO Express"
	// Origins are the origin regions it picks up from: a province ("CN-ZJ"),
	// a country ("US"), or "CN" for every Chinese province. Empty: all.
	Origins []string
	// Share is the carrier's weight among those serving an origin (> 0).
	Share int
}

// DefaultCarriers are the couriers of the 2020 festival by their rough share
// of Chinese parcels, and Cainiao's cross-border line for imports (the
// origins of the seed's foreign brands).
func DefaultCarriers() []Carrier {
	return []Carrier{
		{Code: "zto", Name: "ZTO Express", Origins: []string{"CN"}, Share: 20},
		{Code: "yto", Name: "YTO Express", Origins: []string{"CN"}, Share: 17},
		{Code: "yunda", Name: "Yunda Express", Origins: []string{"CN"}, Share: 16},
		{Code: "sf", Name: "SF Express", Origins: []string{"CN"}, Share: 14},
		{Code: "sto", Name: "STO Express", Origins: []string{"CN"}, Share: 12},
		{Code: "jd", Name: "JD Logistics", Origins: []string{"CN"}, Share: 8},
		{Code: "ems", Name: "China Post EMS", Origins: nil, Share: 8},
		{Code: "cainiao-global", Name: "Cainiao Global", Origins: crossBorderOrigins(), Share: 40},
	}
}

// Route is an origin region and a destination region.
type Route struct {
	From, To string
}

// zones group the Chinese provinces into the regions a parcel crosses: one
// day within a province, two within a zone, three between zones, and two
// days more to or from the far west (Xinjiang, Tibet, Qinghai), where parcels
// travel by long-haul truck. These are the defaults of DefaultTransit.
var zones = map[string]string{
	"CN-SH": "east", "CN-ZJ": "east", "CN-JS": "east", "CN-AH": "east", "CN-FJ": "east", "CN-JX": "east", "CN-SD": "east",
	"CN-GD": "south", "CN-GX": "south", "CN-HI": "south",
	"CN-BJ": "north", "CN-TJ": "north", "CN-HE": "north", "CN-SX": "north", "CN-NM": "north",
	"CN-LN": "northeast", "CN-JL": "northeast", "CN-HL": "northeast",
	"CN-HA": "central", "CN-HB": "central", "CN-HN": "central",
	"CN-CQ": "southwest", "CN-SC": "southwest", "CN-GZ": "southwest", "CN-YN": "southwest", "CN-XZ": "southwest",
	"CN-SN": "northwest", "CN-GS": "northwest", "CN-QH": "northwest", "CN-NX": "northwest", "CN-XJ": "northwest",
}

var farWest = map[string]bool{"CN-XJ": true, "CN-XZ": true, "CN-QH": true}

// crossBorderDays is the international leg from each origin country of the
// seed (internal/festival) to a Chinese bonded warehouse; the domestic leg
// from the east coast follows. Countries not listed take crossBorderDaysOther.
var crossBorderDays = map[string]int{
	"JP": 3, "KR": 3, "SG": 4, "TH": 4, "MY": 4,
	"AU": 6, "NZ": 6, "US": 7, "CA": 7,
	"FR": 8, "DE": 8, "IT": 8, "UK": 8, "ES": 8, "NL": 8, "CH": 8, "SE": 8, "BE": 8, "AT": 8, "DK": 8, "NO": 8, "IE": 8, "PT": 8, "PL": 8,
	"IL": 9, "IN": 9, "ZA": 10, "BR": 12, "CL": 12, "MX": 11,
}

const (
	crossBorderDaysOther = 12
	day                  = 24 * time.Hour
	// crossBorderEntry is the zone an import enters China by (the bonded
	// warehouses of Shanghai, Ningbo and Hangzhou).
	crossBorderEntry = "CN-SH"
)

func crossBorderOrigins() []string {
	out := make([]string, 0, len(crossBorderDays))
	for c := range crossBorderDays {
		out = append(out, c)
	}
	return out
}

// domestic reports whether region is a Chinese province (or "CN").
func domestic(region string) bool { return region == "CN" || strings.HasPrefix(region, "CN-") }

// DefaultTransit is the documented transit time from one region to another:
// within China by the zones above, from abroad the country's international
// leg (crossBorderDays) plus the domestic leg from Shanghai. A region fest
// does not know (not a province of the seed, say) travels as between zones.
func DefaultTransit(from, to string) time.Duration {
	if !domestic(from) {
		days, ok := crossBorderDays[from]
		if !ok {
			days = crossBorderDaysOther
		}
		return time.Duration(days)*day + DefaultTransit(crossBorderEntry, to)
	}
	days := 3
	switch {
	case from == to:
		days = 1
	case zones[from] != "" && zones[from] == zones[to]:
		days = 2
	}
	if from != to && (farWest[from] || farWest[to]) {
		days += 2
	}
	return time.Duration(days) * day
}

// router assigns a new parcel its carrier and transit time.
type router struct {
	carriers []Carrier
	transit  map[Route]time.Duration
}

func newRouter(cfg *Config) *router {
	return &router{carriers: cfg.Carriers, transit: cfg.Transit}
}

// serves reports whether c picks up from origin.
func (c *Carrier) serves(origin string) bool {
	if len(c.Origins) == 0 {
		return true
	}
	for _, o := range c.Origins {
		if o == origin || o == "CN" && domestic(origin) {
			return true
		}
	}
	return false
}

// carrier returns the index of the carrier of the parcel whose order hashes
// to h, leaving from origin: a weighted pick among the carriers serving the
// origin, or among all when none does.
func (r *router) carrier(h uint64, origin string) int {
	total := 0
	for i := range r.carriers {
		if r.carriers[i].serves(origin) {
			total += r.carriers[i].Share
		}
	}
	all := total == 0
	if all {
		for i := range r.carriers {
			total += r.carriers[i].Share
		}
	}
	pick := int(h % uint64(total))
	for i := range r.carriers {
		c := &r.carriers[i]
		if !all && !c.serves(origin) {
			continue
		}
		if pick < c.Share {
			return i
		}
		pick -= c.Share
	}
	panic(fmt.Sprintf("logistics: carrier pick %d past the shares of %d carriers", pick, len(r.carriers)))
}

func (r *router) transitTime(from, to string) time.Duration {
	if d, ok := r.transit[Route{From: from, To: to}]; ok {
		return d
	}
	return DefaultTransit(from, to)
}

// orderHash spreads order ids over the carriers' shares (FNV-1a of the id's
// eight bytes): it must never change, or parcels would change carrier on
// restart.
func orderHash(id uint64) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < 8; i++ {
		h ^= id >> (8 * i) & 0xff
		h *= 1099511628211
	}
	return h
}
