package festival

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// The festival's clock: 1 November 00:00 to 12 November 00:00, China time.
const (
	FestivalDays    = 11
	FestivalSeconds = FestivalDays * 86400
	// PeakSecond is when the peak second starts, in festival seconds:
	// 11 November 00:00:26.
	PeakSecond = 10*86400 + 26
)

// FestivalStart is 1 November 2020 00:00 in China (UTC+8).
var FestivalStart = time.Date(2020, 10, 31, 16, 0, 0, 0, time.UTC)

// dayShare is each day's share of the orders: the first wave (1–3
// November, the first window to pay), the quiet days, and 11 November.
var dayShare = [FestivalDays]float64{0.14, 0.07, 0.05, 0.025, 0.025, 0.025, 0.025, 0.025, 0.025, 0.025, 0.565}

// hourShape is the diurnal curve (relative; late evening is busiest).
var hourShape = [24]float64{1.0, 0.6, 0.3, 0.15, 0.15, 0.15, 0.15, 0.15, 0.4, 0.8, 0.8, 0.8, 1.0, 1.0, 0.9, 0.9, 0.9, 0.9, 1.0, 1.3, 1.3, 1.3, 1.2, 1.2}

// The midnight spikes: orders rise linearly to the peak second, then decay
// exponentially. The 1 November spike (the first wave opening) takes a
// fixed share of its day; the 11 November spike is sized so that its peak
// second holds exactly the published 583,000 orders per second, scaled.
const (
	peakRampSeconds    = 26
	peakDecaySeconds   = 600
	firstWaveShare     = 0.25 // of 1 November's orders
	firstWavePeak      = 30
	firstWaveDecaySecs = 900
)

// timeProfile maps an order's rank in the stream to its festival time, by
// the quantiles of the per-second density: order i of n lands in the second
// where the cumulative share crosses (i+0.5)/n. So a second whose share is p
// holds n·p orders, give or take one: the peak second is exact by design.
type timeProfile struct {
	cum []float64 // cumulative share at the end of each festival second
	n   int64
	sec int // cursor: quantiles are asked for in increasing order
}

func newTimeProfile(n int64, scale float64) (*timeProfile, error) {
	density := make([]float64, FestivalSeconds)
	// Spikes first, in shares of all orders.
	peakShare := float64(Published.PeakOrdersPerSec) * scale / float64(n)
	spike11 := spikeShape(peakShare, peakRampSeconds, peakDecaySeconds)
	var spike11Mass float64
	for _, v := range spike11 {
		spike11Mass += v
	}
	if spike11Mass >= dayShare[10]*0.9 {
		return nil, fmt.Errorf("time profile: the 11 November spike (%.3f of orders) leaves too little of the day", spike11Mass)
	}
	spike1 := spikeShape(1, firstWavePeak, firstWaveDecaySecs)
	var spike1Mass float64
	for _, v := range spike1 {
		spike1Mass += v
	}
	for d := range FestivalDays {
		rest := dayShare[d]
		switch d {
		case 0:
			rest -= firstWaveShare * dayShare[0]
		case 10:
			rest -= spike11Mass
		}
		var shape float64
		for h := range 24 {
			shape += hourShape[h] * 3600
		}
		for s := range 86400 {
			density[d*86400+s] = rest * hourShape[s/3600] / shape
		}
	}
	for s, v := range spike1 {
		density[s] += v / spike1Mass * firstWaveShare * dayShare[0]
	}
	base := 10 * 86400
	// The peak second holds the published rate in total: the diurnal base
	// under it is taken out of the spike.
	spike11[peakRampSeconds] -= density[base+peakRampSeconds]
	for s, v := range spike11 {
		density[base+s] += v
	}
	cum := make([]float64, FestivalSeconds)
	var c float64
	for s, v := range density {
		c += v
		cum[s] = c
	}
	for s := range cum {
		cum[s] /= c // exactly 1 at the end despite rounding
	}
	return &timeProfile{cum: cum, n: n}, nil
}

// afterPeak is the level of the seconds around the peak second relative to
// it: the peak stands clear of its neighbours, so it is the busiest second
// even with a rounding of one order either way.
const afterPeak = 0.8

// spikeShape is a linear ramp to peak at second rampSecs, then an
// exponential decay over decaySecs, cut at 8 time constants.
func spikeShape(peak float64, rampSecs, decaySecs int) []float64 {
	out := make([]float64, rampSecs+8*decaySecs)
	for s := range out {
		switch {
		case s < rampSecs:
			out[s] = afterPeak * peak * float64(s+1) / float64(rampSecs+1)
		case s == rampSecs:
			out[s] = peak
		default:
			out[s] = afterPeak * peak * math.Exp(-float64(s-rampSecs)/float64(decaySecs))
		}
	}
	return out
}

// at is the festival time in milliseconds of order i; i must not decrease
// between calls.
func (p *timeProfile) at(i int64, rng *rand.Rand) int64 {
	u := (float64(i) + 0.5) / float64(p.n)
	for p.sec < len(p.cum)-1 && p.cum[p.sec] < u {
		p.sec++
	}
	// Spread uniformly within the second; rank order within it does not matter.
	return int64(p.sec)*1000 + rng.Int64N(1000)
}
