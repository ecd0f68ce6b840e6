package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/fest-platform/fest/internal/loadgen"
)

// progressLineEvery is how often fest load prints a plain progress line
// when its progress output is not a terminal (a log, CI): often enough to
// see a run move, rarely enough to keep the log short.
const progressLineEvery = 10 * time.Second

// progressSteps is the resolution of the bar: tenths of a percent.
const progressSteps = 1000

// loadProgress shows a run's progress: a live bar on a terminal (the
// run's share done, rate, p99, errors and GMV, redrawn each second), plain
// lines elsewhere.
type loadProgress struct {
	w        io.Writer
	tty      bool
	bar      *progressbar.ProgressBar // the current run's, on a terminal
	lastLine time.Duration            // elapsed time of the last plain line
}

func newLoadProgress(w io.Writer, tty bool) *loadProgress { return &loadProgress{w: w, tty: tty} }

// update is loadgen.Config.OnProgress.
func (lp *loadProgress) update(p loadgen.Progress) {
	figures := fmt.Sprintf("placed %s  %s/s  p99 %.1f ms  errors %s  GMV ¥%s",
		groupDigits(p.Placed), groupDigits(p.PerSecond), p.P99ms, groupDigits(p.Errors), groupDigits(p.GMV/100))
	if p.Done {
		// The last second is partial: show the run's average instead (its
		// latency percentiles are in the report).
		perSecond := int64(0)
		if p.Elapsed > 0 {
			perSecond = int64(float64(p.Placed) / p.Elapsed.Seconds())
		}
		figures = fmt.Sprintf("placed %s  %s/s on average  errors %s  GMV ¥%s",
			groupDigits(p.Placed), groupDigits(perSecond), groupDigits(p.Errors), groupDigits(p.GMV/100))
	}
	if !lp.tty {
		if p.Done || p.Elapsed-lp.lastLine >= progressLineEvery {
			lp.lastLine = p.Elapsed
			fmt.Fprintf(lp.w, "fest load: %s %s %5.0fs  %s\n", p.Target, p.Profile, p.Elapsed.Seconds(), figures)
		}
		if p.Done {
			lp.lastLine = 0 // a comparison runs the next target from zero
		}
		return
	}
	if lp.bar == nil {
		lp.bar = progressbar.NewOptions64(progressSteps,
			progressbar.OptionSetWriter(lp.w),
			progressbar.OptionSetWidth(24),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionThrottle(0),
			progressbar.OptionUseANSICodes(true),
			progressbar.OptionSetTheme(progressbar.Theme{Saucer: "=", SaucerHead: ">", SaucerPadding: " ", BarStart: "[", BarEnd: "]"}),
		)
	}
	lp.bar.Describe(p.Target + " " + p.Profile + "  " + figures)
	if p.Done {
		lp.bar.Finish()
		fmt.Fprintln(lp.w)
		lp.bar = nil
		return
	}
	lp.bar.Set64(progressShare(p))
}

// progressShare is how far the run is, in progressSteps: by time, or by
// orders placed when the model has a fixed number, whichever ends it first.
func progressShare(p loadgen.Progress) int64 {
	var share int64
	if p.Planned > 0 {
		share = int64(p.Elapsed) * progressSteps / int64(p.Planned)
	}
	if p.Orders > 0 {
		share = max(share, p.Placed*progressSteps/p.Orders)
	}
	return min(max(share, 0), progressSteps)
}

// groupDigits formats n with thousands separators.
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	sign := ""
	if n < 0 {
		sign, s = "-", s[1:]
	}
	b := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	return sign + string(b)
}
