package festival

// The fixed vocabularies of the model: provinces, countries, categories.

// provinces are the Chinese provinces buyers and merchants live in, with a
// weight (roughly online-shopping population, in arbitrary units) so that the
// coastal provinces buy most, as they did in 2020.
var provinces = []struct {
	code   string
	weight float64
}{
	{"CN-GD", 120}, {"CN-ZJ", 95}, {"CN-JS", 90}, {"CN-SH", 70}, {"CN-BJ", 60},
	{"CN-SD", 55}, {"CN-FJ", 45}, {"CN-HE", 40}, {"CN-SC", 40}, {"CN-HB", 35},
	{"CN-HA", 35}, {"CN-HN", 30}, {"CN-AH", 30}, {"CN-LN", 25}, {"CN-TJ", 20},
	{"CN-CQ", 20}, {"CN-SN", 20}, {"CN-JX", 18}, {"CN-GX", 18}, {"CN-YN", 15},
	{"CN-SX", 14}, {"CN-HL", 13}, {"CN-JL", 12}, {"CN-NM", 10}, {"CN-GZ", 10},
	{"CN-XJ", 8}, {"CN-GS", 8}, {"CN-HI", 6}, {"CN-NX", 4}, {"CN-QH", 3}, {"CN-XZ", 2},
}

// topCountries are the foreign countries whose brands sold most into China in
// 2020, in order of GMV; the model keeps that order (Published figures).
var topCountries = []string{"US", "AU", "CA", "FR", "DE", "IT", "JP", "KR", "NZ", "UK"}

// topCountryShare is each top country's share of foreign GMV: decreasing with
// gaps wide enough that sampling noise cannot swap two neighbours.
var topCountryShare = []float64{0.22, 0.16, 0.12, 0.105, 0.09, 0.075, 0.065, 0.055, 0.045, 0.035}

// otherCountries sell the rest of foreign GMV, each well below the UK.
var otherCountries = []string{"ES", "NL", "CH", "SE", "BE", "AT", "DK", "NO", "IE", "PT", "SG", "TH", "MY", "IL", "BR", "CL", "MX", "ZA", "IN", "PL"}

var categories = []string{
	"apparel", "shoes", "bags", "watches", "jewellery", "beauty", "skincare", "perfume", "personal-care",
	"baby", "toys", "pets", "food", "snacks", "tea", "wine", "health", "supplements", "phones",
	"computers", "tablets", "audio", "cameras", "home-appliances", "kitchen", "furniture", "bedding",
	"decor", "tools", "garden", "sports", "outdoor", "bikes", "cars", "auto-parts", "books", "music",
	"office", "stationery", "luggage",
}

// industryCount is the number of distinct industries merchants belong to
// (published: "2,000+ industries").
const industryCount = 2100
