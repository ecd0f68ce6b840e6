// Package festival is the deterministic model of the 11.11 shopping festival
// of 2020 that `fest load` replays: a catalog (brands, merchants, SKUs,
// livestream channels), buyers, and a stream of orders with their fate (paid,
// cancelled, or left to expire) and their time over 1–11 November.
//
// The model is calibrated to the published figures (Published) at a chosen
// scale: money and order counts scale, brand counts do not (there were
// 250,000 brands whatever the number of orders we can afford to replay).
// Calibration is by construction, not by luck: order counts are allocated to
// brands exactly, prices are rescaled so that the paid GMV hits its target,
// times are placed at the quantiles of the time profile so that the peak
// second holds its share, and last year's GMV is derived from this year's plan.
//
// Everything is a pure function of Config: the same seed and scale give the
// same catalog and the same orders, byte for byte.
package festival

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"unsafe"
)

// Published are the figures of the 2020 festival the model is calibrated to.
// Money is in fen (1/100 CNY) or US cents.
var Published = struct {
	GMVFen               int64
	GMVUSDCents          int64
	PaidOrders           int64
	PeakOrdersPerSec     int64
	Brands               int
	ForeignBrands        int
	FirstTimeBrands      int
	BrandsOverThreshold  int
	ThresholdFen         int64 // 100 million CNY
	EmergingBeatLastYear int
	EmergingGrew1000     int
	EmergingTopCategory  int
	ChannelsOverThresh   int
	Growth               float64
	Factories            int64
	ExportMerchants      int64
	Industries           int
	FestivalYear         int32
}{
	GMVFen:               498_200_000_000_00,
	GMVUSDCents:          74_100_000_000_00,
	PaidOrders:           2_320_000_000,
	PeakOrdersPerSec:     583_000,
	Brands:               250_000,
	ForeignBrands:        31_000,
	FirstTimeBrands:      2_600,
	BrandsOverThreshold:  470,
	ThresholdFen:         100_000_000_00,
	EmergingBeatLastYear: 1_800,
	EmergingGrew1000:     94,
	EmergingTopCategory:  357,
	ChannelsOverThresh:   30,
	Growth:               0.26,
	Factories:            300_000,
	ExportMerchants:      1_200_000,
	Industries:           2_000,
	FestivalYear:         2020,
}

// Limits on the scale: below MinScale the counts are too small for the
// calibration to hold (a peak second of a handful of orders); above MaxScale
// the festival's order stream no longer fits comfortably in memory (about
// 48 bytes an order: 0.002 is 5.2 million orders, 250 MB).
const (
	MinScale = 0.00001
	MaxScale = 0.002
)

// Config chooses the festival to generate. The zero value is not valid: start
// from DefaultConfig.
type Config struct {
	// Seed makes the model deterministic: the same seed, the same festival.
	Seed uint64
	// Scale is the fraction of the real festival: 1.0 would be 2.32 billion
	// paid orders. Brand counts do not scale.
	Scale float64
	// PayShare and CancelShare are the shares of placed orders that are paid
	// and cancelled; the rest are left unpaid (they expire on the server).
	PayShare, CancelShare float64
	// FlashSKUs is the number of hot flash-sale SKUs; each gets a small stock
	// and FlashDemand times that many single-unit orders within seconds.
	FlashSKUs   int
	FlashDemand int
	// AmpleStock gives regular SKUs AmpleStockUnits each instead of their
	// planned demand plus a margin: for open-ended runs (the midnight profile)
	// whose order count is not known in advance.
	AmpleStock bool
	// LiveShare is the share of orders placed on livestream channels.
	LiveShare float64
	// Channels is the number of livestream channels; the first
	// BigChannels of them are calibrated above the 100 million CNY mark.
	Channels, BigChannels int
}

// AmpleStockUnits is a regular SKU's stock when Config.AmpleStock is set:
// enough for minutes at a million orders a second spread over the catalog.
const AmpleStockUnits = 100_000_000

// DefaultConfig is the calibrated festival at scale 0.0001.
func DefaultConfig() Config {
	return Config{
		Seed:        2020,
		Scale:       0.0001,
		PayShare:    0.90,
		CancelShare: 0.06,
		FlashSKUs:   12,
		FlashDemand: 3,
		LiveShare:   0.08,
		Channels:    60,
		BigChannels: 34,
	}
}

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	switch {
	case !(c.Scale >= MinScale && c.Scale <= MaxScale):
		return fmt.Errorf("scale %g out of range [%g, %g]", c.Scale, MinScale, MaxScale)
	case !(c.PayShare > 0 && c.PayShare <= 1):
		return fmt.Errorf("pay share %g out of range (0, 1]", c.PayShare)
	case !(c.CancelShare >= 0 && c.PayShare+c.CancelShare <= 1):
		return fmt.Errorf("cancel share %g out of range [0, 1-pay share]", c.CancelShare)
	case c.FlashSKUs < 0 || c.FlashSKUs > 1000:
		return fmt.Errorf("flash skus %d out of range [0, 1000]", c.FlashSKUs)
	case c.FlashDemand < 1 || c.FlashDemand > 100:
		return fmt.Errorf("flash demand %d out of range [1, 100]", c.FlashDemand)
	case !(c.LiveShare >= 0.01 && c.LiveShare <= 0.5):
		return fmt.Errorf("live share %g out of range [0.01, 0.5]", c.LiveShare)
	case c.BigChannels < 1 || c.Channels < c.BigChannels || c.Channels > 1000:
		return fmt.Errorf("channels %d (big %d): need 1 <= big <= channels <= 1000", c.Channels, c.BigChannels)
	}
	return nil
}

// Fate is what the buyer does with a placed order.
type Fate uint8

// Fates.
const (
	FatePay Fate = iota + 1
	FateCancel
	FateLeave // left unpaid: the server expires it after its payment timeout
)

func (f Fate) String() string {
	switch f {
	case FatePay:
		return "pay"
	case FateCancel:
		return "cancel"
	case FateLeave:
		return "leave"
	}
	return "fate(" + strconv.Itoa(int(f)) + ")"
}

// Brand is a brand of the catalog.
type Brand struct {
	ID            string
	Name          string
	Country       string // ISO 3166-1 alpha-2; CN is domestic
	FirstFestival int32
	Emerging      bool
	LastYearGMV   int64 // fen
	Category      string
	Industry      string
}

// Merchant is a shop; its Kind is brand_store, factory or trader.
type Merchant struct {
	ID       string
	Name     string
	Brand    int32 // index into Model.Brands
	Kind     string
	Industry string
	Region   string
}

// SKU is a stock-keeping unit.
type SKU struct {
	ID       string
	Merchant int32 // index into Model.Merchants
	Brand    int32 // index into Model.Brands
	Title    string
	Category string
	Price    int64 // fen
	Stock    int64 // units
	Flash    bool
}

// Channel is a livestream channel; orders on it use channel "live:<ID>".
type Channel struct {
	ID    string
	Title string
	Host  string
}

// MaxItems is the most lines an order of the model has.
const MaxItems = 3

// Item is one line of an order.
type Item struct {
	SKU int32 // index into Model.SKUs
	Qty int32
}

// Channel codes of Order.Channel below zero; zero and above index Model.Channels.
const (
	ChannelApp int16 = -1
	ChannelWeb int16 = -2
)

// Order is one order of the stream. It is small and flat (no pointers) so
// that millions of them cost little memory and no garbage-collector work.
type Order struct {
	AtMs     int64 // festival time: milliseconds since 1 November 00:00 (UTC+8)
	Buyer    int32
	Merchant int32
	Items    [MaxItems]Item
	NItems   uint8
	Fate     Fate
	Flash    bool
	// Province is the buyer's province (Region), set with Buyer: the
	// buyer's record is one more cache miss per order to whoever reads it
	// later, where the draws read it in a pass of their own (Stream.Fill).
	Province uint8
	Channel  int16
	// Deal is the index + 1 of the livestream deal the order buys on
	// (Model.Deals), 0 for none.
	Deal int16
}

// Lines returns the order's items.
func (o *Order) Lines() []Item { return o.Items[:o.NItems] }

// Model is a generated festival. It is read-only after New returns and safe
// for concurrent readers.
type Model struct {
	Config    Config
	Brands    []Brand
	Merchants []Merchant
	SKUs      []SKU
	Channels  []Channel
	// Deals are the livestream flash deals (deals.go), one per flash SKU.
	Deals  []Deal
	Buyers int
	// Orders is the festival's order stream in time order.
	Orders []Order

	// ThresholdFen is the 100 million CNY mark after scaling.
	ThresholdFen int64

	brandCum    []float64 // cumulative brand weights, for sampling (Stream)
	merchantsOf [][]int32 // brand → its merchants, brand store first

	// The catalog as the order hot path reads it: dense arrays beside SKUs
	// and Merchants, so that drawing, sending and checking an order reads
	// a few cache lines, not an 80-byte struct and a separately allocated
	// id per line (at the default scale the structs alone are 40 MB).
	skusOf        []skuSpan // merchant → its regular SKUs, most popular first
	merchantBrand []int32   // merchant → Merchants[i].Brand
	// skuLines are every SKU's price and id (SKUID), skuIDBytes of it: the
	// prices kept in step with SKUs by addSKU and calibratePrices, the ids
	// written by packSKUIDs, which points the SKUs' ID fields into them.
	skuLines     []skuLine
	skuIDBytes   int
	channelNames []string // channel → ChannelName

	flashSKUs  []int32
	channelCum []float64
	// buyers holds every buyer's record back to back, buyerBytes each: the
	// id (Model.BuyerID) and the index of the province (BuyerRegion), side
	// by side because an order reads both. At MaxScale 1.6 million buyers,
	// 16 MB.
	buyers      string
	provinceCum []float64

	// streamMerchants draws a Stream's merchants, built at the first
	// NewStream (the model is shared read-only by the driver's workers).
	streamMerchants struct {
		once  sync.Once
		table []merchantSlot
	}
}

// Errors of New.
var ErrConfig = errors.New("invalid festival config")

// New generates the festival described by c.
func New(c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	m := &Model{Config: c}
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15))
	m.ThresholdFen = int64(math.Round(float64(Published.ThresholdFen) * c.Scale))

	targetGMV := int64(math.Round(float64(Published.GMVFen) * c.Scale))
	paidOrders := int64(math.Round(float64(Published.PaidOrders) * c.Scale))

	m.genProvinces()
	m.genBuyers(rng)
	brandWeights, err := m.genBrands(rng, targetGMV)
	if err != nil {
		return nil, fmt.Errorf("generate brands: %w", err)
	}
	m.genChannels(targetGMV)
	m.genMerchants(rng)

	// Flash-sale SKUs come first in the paid-order budget: their sales are
	// exactly their stock (demand exceeds it), so the regular orders make up
	// the rest.
	flashPaid, flashGMV := m.planFlash()
	regPaid := paidOrders - flashPaid
	if regPaid < 1000 {
		return nil, fmt.Errorf("generate orders: %d regular paid orders is too few (scale %g)", regPaid, c.Scale)
	}
	regPlaced := int64(math.Round(float64(regPaid) / c.PayShare))
	brandOrders := allocate(brandWeights, regPlaced)
	m.genSKUs(rng, brandOrders)
	if err := m.genOrders(rng, brandOrders, regPaid); err != nil {
		return nil, fmt.Errorf("generate orders: %w", err)
	}
	m.calibratePrices(targetGMV - flashGMV)
	m.genFlashOrders(rng)
	m.setStock()
	m.genFlashDeals()
	m.genLastYear(rng)
	m.assignCountries(rng)
	m.assignCategories(rng)
	m.packSKUIDs()
	m.nameChannels()
	m.setProvinces()
	return m, nil
}

// TargetGMVFen is the scaled published GMV.
func (m *Model) TargetGMVFen() int64 {
	return int64(math.Round(float64(Published.GMVFen) * m.Config.Scale))
}

// ChannelName is the order's channel as the API spells it.
func (m *Model) ChannelName(o *Order) string {
	switch o.Channel {
	case ChannelApp:
		return "app"
	case ChannelWeb:
		return "web"
	}
	return m.channelNames[o.Channel]
}

// nameChannels spells every livestream channel's name once, "live:" and
// its id, so that ChannelName builds no string per order.
func (m *Model) nameChannels() {
	m.channelNames = make([]string, len(m.Channels))
	for i := range m.Channels {
		m.channelNames[i] = "live:" + m.Channels[i].ID
	}
}

// Total is the order's amount in fen at catalog prices.
func (m *Model) Total(o *Order) int64 {
	var t int64
	for _, it := range o.Lines() {
		t += int64(it.Qty) * m.skuLines[it.SKU].price
	}
	return t
}

// skuLine is a SKU as an order line reads it: its price, to check the
// total, and its id, to send, side by side (24 bytes), so that the line's
// check and its encoding read one place in memory, not a cache miss each
// in two arrays of hundreds of thousands of SKUs.
type skuLine struct {
	price int64 // fen
	id    [skuIDBytesMax]byte
}

// skuIDBytesMax bounds a SKU id's length in skuLine: New's are nine bytes,
// NewFlash's six.
const skuIDBytesMax = 16

// SKUID is SKU i's id, m.SKUs[i].ID, read from the packed ids: the SKUs of
// one merchant, which an order's lines share, have theirs side by side.
func (m *Model) SKUID(i int32) string {
	// The bytes are never written again once packSKUIDs has run: the model
	// is read-only after New.
	return unsafe.String(&m.skuLines[i].id[0], m.skuIDBytes)
}

// skuSpan is a merchant's regular SKUs: indexes first to first+n-1 of
// Model.SKUs (genSKUs adds a merchant's SKUs one after another).
type skuSpan struct{ first, n int32 }

// packSKUIDs copies every SKU's id into its skuLine and points the SKUs' ID
// fields there (SKUID). All ids have one length: New spells them "s" and
// eight digits, NewFlash has one SKU.
func (m *Model) packSKUIDs() {
	if len(m.SKUs) == 0 {
		return
	}
	width := len(m.SKUs[0].ID)
	if width == 0 || width > skuIDBytesMax {
		panic(fmt.Sprintf("festival: sku id %q is not 1 to %d bytes long", m.SKUs[0].ID, skuIDBytesMax))
	}
	for i := range m.SKUs {
		if len(m.SKUs[i].ID) != width {
			panic(fmt.Sprintf("festival: sku %d id %q is not %d bytes long like the others", i, m.SKUs[i].ID, width))
		}
		copy(m.skuLines[i].id[:], m.SKUs[i].ID)
	}
	m.skuIDBytes = width
	for i := range m.SKUs {
		m.SKUs[i].ID = m.SKUID(int32(i))
	}
}

// BuyerID is buyer i's id.
func BuyerID(i int32) string { return string(appendBuyerID(make([]byte, 0, buyerIDBytes), i)) }

// BuyerID is buyer i's id, as the package's BuyerID spells it, without
// allocating: a substring of the ids precomputed by New, so that the
// generator's hot path formats no string per order.
func (m *Model) BuyerID(i int32) string {
	at := int(i) * buyerBytes
	return m.buyers[at : at+buyerIDBytes]
}

// buyerIDBytes is the length of a buyer id: "u" and eight digits. MaxScale
// keeps buyers well under 10^8, so every id has this width. buyerBytes is
// a buyer's record in Model.buyers: the id and a province index.
const (
	buyerIDBytes = 1 + 8
	buyerBytes   = buyerIDBytes + 1
)

// appendBuyerID appends buyer i's id, zero-padded to eight digits.
func appendBuyerID(b []byte, i int32) []byte {
	if i < 0 || i >= 100_000_000 {
		panic(fmt.Sprintf("festival: buyer %d outside the eight-digit ids", i))
	}
	b = append(b, 'u')
	var digits [8]byte
	for k := len(digits) - 1; k >= 0; k-- {
		digits[k] = byte('0' + i%10)
		i /= 10
	}
	return append(b, digits[:]...)
}

// BuyerRegion is buyer i's province.
func (m *Model) BuyerRegion(i int32) string { return provinces[m.buyerProvince(i)].code }

// Region is the order's buyer's province, BuyerRegion(o.Buyer), from the
// order itself.
func (m *Model) Region(o *Order) string { return provinces[o.Province].code }

// buyerProvince is the index of buyer i's province.
func (m *Model) buyerProvince(i int32) uint8 { return m.buyers[int(i)*buyerBytes+buyerIDBytes] }

// setProvinces sets every order's Province from its buyer.
func (m *Model) setProvinces() {
	for i := range m.Orders {
		m.Orders[i].Province = m.buyerProvince(m.Orders[i].Buyer)
	}
}

// BrandOf is the brand index of an order (its merchant's brand).
func (m *Model) BrandOf(o *Order) int32 { return m.merchantBrand[o.Merchant] }

func pad(n, width int) string {
	s := strconv.Itoa(n)
	for len(s) < width {
		s = "0" + s
	}
	return s
}

func (m *Model) genProvinces() {
	m.provinceCum = make([]float64, len(provinces))
	var sum float64
	for i, p := range provinces {
		sum += p.weight
		m.provinceCum[i] = sum
	}
}

func pick(rng *rand.Rand, cum []float64) int {
	x := rng.Float64() * cum[len(cum)-1]
	i, _ := slices.BinarySearch(cum, x)
	return min(i, len(cum)-1)
}

func (m *Model) genBuyers(rng *rand.Rand) {
	// Tmall served about 800 million buyers in 2020.
	m.Buyers = max(1000, int(math.Round(800e6*m.Config.Scale)))
	regions := make([]uint8, m.Buyers)
	for i := range regions {
		regions[i] = uint8(pick(rng, m.provinceCum))
	}
	b := make([]byte, 0, m.Buyers*buyerBytes)
	for i := range m.Buyers {
		b = append(appendBuyerID(b, int32(i)), regions[i])
	}
	m.buyers = string(b)
}

// brandRankOffset flattens the head of the brand distribution (rank
// r weighs (r+offset)^-alpha): with 250,000 brands a pure power law cannot
// put 470 brands over the mark without a few giants taking most of the GMV.
const brandRankOffset = 300

// thresholdMargin is how far above the 100 million CNY mark the expected GMV
// of the 470th brand is set, so that price noise cannot pull the count of
// brands over the mark below 470.
const thresholdMargin = 1.2

// genBrands creates the brands and returns their GMV weights (summing to 1),
// largest first: brand i has rank i+1. The exponent is solved so that the
// 470th brand's expected GMV is thresholdMargin times the scaled mark.
func (m *Model) genBrands(rng *rand.Rand, targetGMV int64) ([]float64, error) {
	n := Published.Brands
	want := thresholdMargin * float64(m.ThresholdFen) / float64(targetGMV)
	share := func(alpha float64) float64 {
		var sum float64
		for r := 1; r <= n; r++ {
			sum += math.Pow(float64(r+brandRankOffset), -alpha)
		}
		return math.Pow(float64(Published.BrandsOverThreshold+brandRankOffset), -alpha) / sum
	}
	// share(alpha) rises with alpha over this range: bisect.
	lo, hi := 0.6, 3.0
	if share(lo) > want || share(hi) < want {
		return nil, fmt.Errorf("brand exponent: no alpha in [%g, %g] gives share %g", lo, hi, want)
	}
	for range 30 { // 2^-30 of the range: far finer than any count depends on
		mid := (lo + hi) / 2
		if share(mid) < want {
			lo = mid
		} else {
			hi = mid
		}
	}
	alpha := (lo + hi) / 2
	w := make([]float64, n)
	var sum float64
	for i := range w {
		w[i] = math.Pow(float64(i+1+brandRankOffset), -alpha)
		sum += w[i]
	}
	m.brandCum = make([]float64, n)
	var cum float64
	for i := range w {
		w[i] /= sum
		cum += w[i]
		m.brandCum[i] = cum
	}

	m.Brands = make([]Brand, n)
	firstTime := choose(rng, n, Published.FirstTimeBrands)
	for i := range m.Brands {
		b := &m.Brands[i]
		b.ID = "br" + pad(i+1, 6)
		b.Name = "Brand " + strconv.Itoa(i+1)
		b.Country = "CN"
		b.FirstFestival = int32(2009 + rng.IntN(11)) // 2009..2019
		b.Category = categories[rng.IntN(len(categories))]
		b.Industry = "ind" + pad(i%industryCount, 4)
	}
	for _, i := range firstTime {
		m.Brands[i].FirstFestival = Published.FestivalYear
	}
	return w, nil
}

// choose returns k distinct indexes out of n, in increasing order.
func choose(rng *rand.Rand, n, k int) []int {
	p := rng.Perm(n)[:k]
	slices.Sort(p)
	return p
}

// allocate splits total into integer parts proportional to weights (summing
// to 1) by largest remainder, so the parts add up to total exactly.
func allocate(weights []float64, total int64) []int64 {
	parts := make([]int64, len(weights))
	type rem struct {
		i int
		r float64
	}
	rems := make([]rem, len(weights))
	var used int64
	for i, w := range weights {
		x := w * float64(total)
		parts[i] = int64(x)
		used += parts[i]
		rems[i] = rem{i, x - float64(parts[i])}
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		switch {
		case a.r > b.r:
			return -1
		case a.r < b.r:
			return 1
		}
		return a.i - b.i
	})
	for j := 0; used < total; j++ {
		parts[rems[j%len(rems)].i]++
		used++
	}
	return parts
}

// smallChannelShare is a small channel's expected GMV relative to the
// scaled 100 million CNY mark: well below it, so only the big ones pass.
const smallChannelShare = 0.3

func (m *Model) genChannels(targetGMV int64) {
	c := m.Config
	m.Channels = make([]Channel, c.Channels)
	w := make([]float64, c.Channels)
	liveGMV := c.LiveShare * float64(targetGMV)
	small := smallChannelShare * float64(m.ThresholdFen) / liveGMV
	var bigSum float64
	for i := range c.BigChannels {
		w[i] = 1 / math.Sqrt(float64(i+3))
		bigSum += w[i]
	}
	bigShare := 1 - small*float64(c.Channels-c.BigChannels)
	for i := range w {
		if i < c.BigChannels {
			w[i] = w[i] / bigSum * bigShare
		} else {
			w[i] = small
		}
		m.Channels[i] = Channel{ID: "ch" + pad(i+1, 3), Title: "Live " + strconv.Itoa(i+1), Host: "host" + strconv.Itoa(i+1)}
	}
	m.channelCum = make([]float64, len(w))
	var cum float64
	for i := range w {
		cum += w[i]
		m.channelCum[i] = cum
	}
}

// genMerchants gives every brand its brand store and adds factories and
// traders (scaled: 300,000 factories and 1.2 million export merchants in
// 2020), each selling one brand of the busy head of the catalog.
func (m *Model) genMerchants(rng *rand.Rand) {
	n := len(m.Brands)
	factories := int(math.Max(10, math.Round(float64(Published.Factories)*m.Config.Scale)))
	traders := int(math.Max(10, math.Round(float64(Published.ExportMerchants)*m.Config.Scale))) - factories
	m.Merchants = make([]Merchant, 0, n+factories+traders)
	m.merchantsOf = make([][]int32, n)
	m.merchantBrand = make([]int32, 0, cap(m.Merchants))
	add := func(brand int, kind string, industry string) {
		i := int32(len(m.Merchants))
		m.Merchants = append(m.Merchants, Merchant{
			ID:       "m" + pad(int(i)+1, 7),
			Name:     "Shop " + strconv.Itoa(int(i)+1),
			Brand:    int32(brand),
			Kind:     kind,
			Industry: industry,
			Region:   provinces[pick(rng, m.provinceCum)].code,
		})
		m.merchantsOf[brand] = append(m.merchantsOf[brand], i)
		m.merchantBrand = append(m.merchantBrand, int32(brand))
	}
	for b := range n {
		add(b, "brand_store", m.Brands[b].Industry)
	}
	head := min(n, 20_000)
	for range factories {
		add(rng.IntN(head), "factory", "ind"+pad(rng.IntN(industryCount), 4))
	}
	for range traders {
		add(rng.IntN(head), "trader", "ind"+pad(rng.IntN(industryCount), 4))
	}
}

// ordersPerSKU sizes a merchant's range: one SKU per this many expected
// orders, between 1 and maxSKUsPerMerchant.
const (
	ordersPerSKU       = 40
	maxSKUsPerMerchant = 25
	storeWeight        = 3 // a brand store sells 3 times what a factory or trader of the brand does
)

func (m *Model) merchantWeight(i int32) float64 {
	if m.Merchants[i].Kind == "brand_store" {
		return storeWeight
	}
	return 1
}

func (m *Model) genSKUs(rng *rand.Rand, brandOrders []int64) {
	m.skusOf = make([]skuSpan, len(m.Merchants))
	m.SKUs = make([]SKU, 0, len(m.Merchants)+len(m.Merchants)/4)
	m.skuLines = make([]skuLine, 0, cap(m.SKUs))
	for b := range m.Brands {
		ms := m.merchantsOf[b]
		var wsum float64
		for _, mi := range ms {
			wsum += m.merchantWeight(mi)
		}
		// A brand's price level: median 120 CNY, heavy right tail.
		level := 12000 * math.Exp(0.5*rng.NormFloat64())
		for _, mi := range ms {
			expected := float64(brandOrders[b]) * m.merchantWeight(mi) / wsum
			k := int(math.Ceil(expected / ordersPerSKU))
			k = max(1, min(maxSKUsPerMerchant, k))
			for range k {
				m.addSKU(mi, int64(level*math.Exp(0.35*rng.NormFloat64())), false)
			}
		}
	}
}

func (m *Model) addSKU(merchant int32, price int64, flash bool) int32 {
	i := int32(len(m.SKUs))
	b := m.Merchants[merchant].Brand
	m.SKUs = append(m.SKUs, SKU{
		ID:       "s" + pad(int(i)+1, 8),
		Merchant: merchant,
		Brand:    b,
		Title:    "Item " + strconv.Itoa(int(i)+1),
		Category: m.Brands[b].Category,
		Price:    max(100, price/10*10),
		Flash:    flash,
	})
	m.skuLines = append(m.skuLines, skuLine{price: m.SKUs[i].Price})
	if !flash {
		// Flash SKUs are sold only by their flash orders, never picked by
		// regular ones: their stock is the sale's, whole.
		sp := &m.skusOf[merchant]
		if sp.n == 0 {
			sp.first = i
		}
		if sp.first+sp.n != i {
			panic(fmt.Sprintf("festival: sku %d of merchant %d does not follow its others (%d from %d)", i, merchant, sp.n, sp.first))
		}
		sp.n++
	}
	return i
}

// fillOrder picks the merchant (weighted: brand store first), lines,
// quantities and channel of an order of brand b.
func (m *Model) fillOrder(rng *rand.Rand, o *Order, b int32) {
	ms := m.merchantsOf[b]
	o.Merchant = ms[0]
	if len(ms) > 1 {
		var wsum float64
		for _, mi := range ms {
			wsum += m.merchantWeight(mi)
		}
		x := rng.Float64() * wsum
		for _, mi := range ms {
			x -= m.merchantWeight(mi)
			if x < 0 {
				o.Merchant = mi
				break
			}
		}
	}
	m.fillLines(rng, o, m.skusOf[o.Merchant])
}

// fillLines draws the lines, buyer and channel of an order of merchant
// o.Merchant, whose SKUs are skus.
func (m *Model) fillLines(rng *rand.Rand, o *Order, skus skuSpan) {
	n := 1
	switch r := rng.Float64(); {
	case r < 0.10:
		n = 3
	case r < 0.30:
		n = 2
	}
	n = min(n, int(skus.n))
	o.NItems = 0
	for range n {
		// Popularity within a shop: the first SKUs sell most (quadratic bias).
		f := rng.Float64()
		s := skus.first + int32(f*f*float64(skus.n))
		dup := false
		for _, it := range o.Lines() {
			dup = dup || it.SKU == s
		}
		if dup {
			continue
		}
		q := int32(1)
		switch r := rng.Float64(); {
		case r < 0.05:
			q = 3
		case r < 0.20:
			q = 2
		}
		o.Items[o.NItems] = Item{SKU: s, Qty: q}
		o.NItems++
	}
	o.Buyer = int32(rng.IntN(m.Buyers))
	switch r := rng.Float64(); {
	case r < m.Config.LiveShare:
		o.Channel = int16(pick(rng, m.channelCum))
	case r < m.Config.LiveShare+(1-m.Config.LiveShare)*0.75:
		o.Channel = ChannelApp
	default:
		o.Channel = ChannelWeb
	}
}

func (m *Model) genOrders(rng *rand.Rand, brandOrders []int64, paid int64) error {
	var total int64
	for _, n := range brandOrders {
		total += n
	}
	brandSeq := make([]int32, 0, total)
	for b, n := range brandOrders {
		for range n {
			brandSeq = append(brandSeq, int32(b))
		}
	}
	rng.Shuffle(len(brandSeq), func(i, j int) { brandSeq[i], brandSeq[j] = brandSeq[j], brandSeq[i] })
	cancels := int64(math.Round(float64(total) * m.Config.CancelShare))
	cancels = min(cancels, total-paid)
	fates := make([]Fate, total)
	for i := range fates {
		switch {
		case int64(i) < paid:
			fates[i] = FatePay
		case int64(i) < paid+cancels:
			fates[i] = FateCancel
		default:
			fates[i] = FateLeave
		}
	}
	rng.Shuffle(len(fates), func(i, j int) { fates[i], fates[j] = fates[j], fates[i] })
	times, err := newTimeProfile(total, m.Config.Scale)
	if err != nil {
		return err
	}
	m.Orders = make([]Order, total, total+int64(m.flashOrderCount()))
	for i := range m.Orders {
		o := &m.Orders[i]
		m.fillOrder(rng, o, brandSeq[i])
		o.Fate = fates[i]
		o.AtMs = times.at(int64(i), rng)
	}
	return nil
}

// calibratePrices rescales every regular SKU's price so that the paid
// regular orders add up to target (fen), within rounding.
func (m *Model) calibratePrices(target int64) {
	var gmv float64
	for i := range m.Orders {
		if m.Orders[i].Fate == FatePay {
			gmv += float64(m.Total(&m.Orders[i]))
		}
	}
	f := float64(target) / gmv
	for i := range m.SKUs {
		if !m.SKUs[i].Flash {
			m.SKUs[i].Price = max(10, int64(math.Round(float64(m.SKUs[i].Price)*f)))
			m.skuLines[i].price = m.SKUs[i].Price
		}
	}
}

// Flash sales: FlashSKUs hot SKUs of big brands, FlashStockPerScale units
// each (times scale; at least flashStockMin), FlashPrice each, their demand
// packed into flashWindowMs of festival time.
const (
	flashStockPerScale = 1_000_000
	flashStockMin      = 5
	flashPrice         = 9_900 // 99 CNY
	flashWindowMs      = 20_000
)

func (m *Model) flashStock() int64 {
	return max(flashStockMin, int64(math.Round(flashStockPerScale*m.Config.Scale)))
}

func (m *Model) flashOrderCount() int {
	return m.Config.FlashSKUs * m.Config.FlashDemand * int(m.flashStock())
}

func (m *Model) planFlash() (paid, gmv int64) {
	st := m.flashStock()
	return int64(m.Config.FlashSKUs) * st, int64(m.Config.FlashSKUs) * st * flashPrice
}

// FlashSKUs are the indexes of the flash-sale SKUs.
func (m *Model) FlashSKUs() []int32 { return m.flashSKUs }

func (m *Model) genFlashOrders(rng *rand.Rand) {
	c := m.Config
	for k := range c.FlashSKUs {
		// Brand stores of head brands, 7 ranks apart.
		merchant := m.merchantsOf[(k*7)%len(m.Brands)][0]
		s := m.addSKU(merchant, flashPrice, true)
		m.flashSKUs = append(m.flashSKUs, s)
		// Sale k starts at 20:00 on day 1+k%11, an hour later each round,
		// away from the midnight peaks.
		startMs := (int64(k%11)*86400 + 20*3600 + int64(k/11)*3600) * 1000
		for range c.FlashDemand * int(m.flashStock()) {
			o := Order{AtMs: startMs + rng.Int64N(flashWindowMs), Merchant: merchant, NItems: 1, Fate: FatePay, Flash: true, Channel: ChannelApp}
			o.Items[0] = Item{SKU: s, Qty: 1}
			o.Buyer = int32(rng.IntN(m.Buyers))
			m.Orders = append(m.Orders, o)
		}
	}
	slices.SortStableFunc(m.Orders, func(a, b Order) int {
		switch {
		case a.AtMs < b.AtMs:
			return -1
		case a.AtMs > b.AtMs:
			return 1
		}
		return 0
	})
}

// Stock: planned demand (every placed order reserves) plus this margin, so
// that regular SKUs never sell out; flash SKUs get their small stock.
const (
	stockMarginFactor = 1.25
	stockMarginUnits  = 10
)

func (m *Model) setStock() {
	demand := make([]int64, len(m.SKUs))
	for i := range m.Orders {
		for _, it := range m.Orders[i].Lines() {
			demand[it.SKU] += int64(it.Qty)
		}
	}
	for i := range m.SKUs {
		s := &m.SKUs[i]
		switch {
		case s.Flash:
			s.Stock = m.flashStock()
		case m.Config.AmpleStock:
			s.Stock = AmpleStockUnits
		default:
			s.Stock = int64(float64(demand[i])*stockMarginFactor) + stockMarginUnits
		}
	}
}

// PlannedBrandGMV is each brand's GMV if every order meets its fate.
func (m *Model) PlannedBrandGMV() []int64 {
	g := make([]int64, len(m.Brands))
	for i := range m.Orders {
		o := &m.Orders[i]
		if o.Fate == FatePay {
			g[m.BrandOf(o)] += m.Total(o)
		}
	}
	return g
}

// Emerging brands: EmergingBeaters beat last year (of which
// Published.EmergingGrew1000 grew over 1,000%), emergingOthers did not.
const emergingOthers = 2_000

// genLastYear sets last year's GMV per brand from this year's plan: 1,800
// emerging brands beat it (94 by over 1,000%), other emerging brands fall
// short, and the rest are scaled so that the festival grows by exactly 26%.
func (m *Model) genLastYear(rng *rand.Rand) {
	this := m.Plan().BrandGMV
	var total int64
	var selling []int
	for b, g := range this {
		total += g
		// Beaters come from the middle of the catalog: a few orders at least
		// (so they cannot miss by a cancelled order), not the giants.
		if b >= 1000 && g > 0 {
			selling = append(selling, b)
		}
	}
	lastTotal := float64(total) / (1 + Published.Growth)
	rng.Shuffle(len(selling), func(i, j int) { selling[i], selling[j] = selling[j], selling[i] })
	beaters := selling[:min(len(selling), Published.EmergingBeatLastYear)]
	var fixed float64
	isEmerging := make([]bool, len(m.Brands))
	for k, b := range beaters {
		var f float64
		if k < Published.EmergingGrew1000 {
			f = 0.02 + 0.06*rng.Float64() // grew 12x to 50x
		} else {
			f = 0.5 + 0.45*rng.Float64() // grew 5% to 100%
		}
		m.Brands[b].LastYearGMV = max(1, int64(float64(this[b])*f))
		m.Brands[b].Emerging = true
		isEmerging[b] = true
		fixed += float64(m.Brands[b].LastYearGMV)
	}
	for _, b := range choose(rng, len(m.Brands), emergingOthers) {
		if isEmerging[b] {
			continue
		}
		isEmerging[b] = true
		m.Brands[b].Emerging = true
		// Fell short of last year: a year ago it sold 1.05x to 1.5x today's
		// (or, selling nothing today, a token amount).
		m.Brands[b].LastYearGMV = max(100_00, int64(float64(this[b])*(1.05+0.45*rng.Float64())))
		fixed += float64(m.Brands[b].LastYearGMV)
	}
	// The rest: noisy growth around a common factor solved for the total.
	u := make([]float64, len(m.Brands))
	var weighted float64
	for b := range m.Brands {
		if !isEmerging[b] && this[b] > 0 {
			u[b] = 0.7 + 0.6*rng.Float64()
			weighted += float64(this[b]) * u[b]
		}
	}
	k := (lastTotal - fixed) / weighted
	for b := range m.Brands {
		if u[b] > 0 {
			m.Brands[b].LastYearGMV = int64(math.Round(float64(this[b]) * u[b] * k))
		}
	}
}

// otherCountriesShare is the share of foreign GMV sold by countries outside
// the top ten: each of them far below the UK.
const otherCountriesShare = 1 - 0.87

// assignCountries makes Published.ForeignBrands brands foreign and gives
// them countries so that foreign GMV by country follows the published
// order: brands, largest first, go to the country furthest below its target.
func (m *Model) assignCountries(rng *rand.Rand) {
	this := m.Plan().BrandGMV
	foreign := choose(rng, len(m.Brands), Published.ForeignBrands)
	slices.SortStableFunc(foreign, func(a, b int) int {
		switch {
		case this[a] > this[b]:
			return -1
		case this[a] < this[b]:
			return 1
		}
		return a - b
	})
	var foreignGMV float64
	for _, b := range foreign {
		foreignGMV += float64(this[b])
	}
	codes := append(slices.Clone(topCountries), otherCountries...)
	target := make([]float64, len(codes))
	for i := range codes {
		if i < len(topCountries) {
			target[i] = topCountryShare[i] * foreignGMV
		} else {
			target[i] = otherCountriesShare / float64(len(otherCountries)) * foreignGMV
		}
	}
	got := make([]float64, len(codes))
	for j, b := range foreign {
		if this[b] == 0 {
			// Brands selling nothing this year change no total: spread them.
			m.Brands[b].Country = codes[j%len(codes)]
			continue
		}
		best := 0
		for c := range codes {
			if target[c]-got[c] > target[best]-got[best] {
				best = c
			}
		}
		m.Brands[b].Country = codes[best]
		got[best] += float64(this[b])
	}
}
