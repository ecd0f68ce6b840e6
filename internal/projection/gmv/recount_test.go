package gmv

// The counts recounted from scratch, the plain way, to check the kept ones.

func (st *state) recountBrands(cfg *Config) BrandCounts {
	c := BrandCounts{Total: len(st.brands)}
	leading := make([]bool, len(st.brands))
	for _, b := range st.leaders {
		if b >= 0 {
			leading[b] = true
		}
	}
	domestic, hasDomestic := st.dims[DimCountry].index[DomesticCountry]
	threshold := cfg.MilestoneThresholds[0]
	bd := &st.dims[DimBrand]
	for i := range st.brands {
		b := &st.brands[i]
		g := bd.totals[i].gmv
		selling := bd.totals[i].orders > 0
		foreign := !hasDomestic || b.country != domestic
		firstTime := b.firstFestival == cfg.FestivalYear
		count(&c.Foreign, foreign)
		count(&c.FirstTime, firstTime)
		count(&c.Emerging, b.emerging)
		count(&c.Selling, selling)
		count(&c.ForeignSelling, foreign && selling)
		count(&c.FirstTimeSelling, firstTime && selling)
		count(&c.EmergingSelling, b.emerging && selling)
		count(&c.EmergingTopCategory, b.emerging && leading[i])
		count(&c.EmergingBeatLastYear, b.emerging && b.lastYearGMV > 0 && g > b.lastYearGMV)
		grew := b.lastYearGMV > 0 && g > growthFactor1000*b.lastYearGMV
		count(&c.Grew1000, grew)
		count(&c.EmergingGrew1000, b.emerging && grew)
		count(&c.OverThreshold, g >= threshold)
	}
	return c
}

func count(n *int, cond bool) {
	if cond {
		*n++
	}
}

func (st *state) recountMerchants() MerchantCounts {
	c := MerchantCounts{Total: len(st.merchants)}
	kinds := &st.dims[DimKind]
	industries := make([]bool, len(st.dims[DimIndustry].keys))
	for _, m := range st.merchants {
		switch kinds.keys[m.kind] {
		case "factory":
			c.Factories++
		case "trader":
			c.Traders++
		}
		if !industries[m.industry] {
			industries[m.industry] = true
			c.Industries++
		}
	}
	return c
}
