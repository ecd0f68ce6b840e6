package loadgen

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"

	"github.com/fest-platform/fest/internal/festival"
)

// WriteHTML writes a self-contained HTML report of one or more runs: the
// summary, throughput and p50/p99 latency over time as inline SVG (no
// scripts, nothing fetched), the figures table and the audit.
func WriteHTML(w io.Writer, runs []*Result) error {
	type view struct {
		R          *Result
		Throughput template.HTML
		Latency    template.HTML
	}
	var views []view
	for _, r := range runs {
		views = append(views, view{
			R:          r,
			Throughput: plot("orders placed per second", r.Series, func(p Point) float64 { return float64(p.Placed) }, nil, "orders/s"),
			Latency: plot("acknowledgement latency (p50 blue, p99 red)", r.Series,
				func(p Point) float64 { return p.P50ms }, func(p Point) float64 { return p.P99ms }, "ms"),
		})
	}
	funcs := template.FuncMap{
		"group": func(v any) string {
			switch x := v.(type) {
			case int64:
				return group(x)
			case float64:
				return group(int64(math.Round(x)))
			}
			return fmt.Sprint(v)
		},
		"num":      fmtNum,
		"server":   func(f festival.Figure) string { v, _ := serverValue(&f); return v },
		"serverOK": func(f festival.Figure) string { _, ok := serverValue(&f); return ok },
		"f2":       func(v float64) string { return fmt.Sprintf("%.2f", v) },
		"cny":      func(fen int64) string { return group(fen / 100) },
	}
	t, err := template.New("report").Funcs(funcs).Parse(htmlTemplate)
	if err != nil {
		return fmt.Errorf("parse report template: %w", err)
	}
	if err := t.Execute(w, views); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

const htmlTemplate = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fest load report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td:first-child{text-align:left}.bad{color:#b00;font-weight:bold}.ok{color:#080}
svg{background:#fafafa;border:1px solid #ddd;margin:0.5em 0}
</style></head><body>
<h1>fest load</h1>
{{range .}}
<h2>{{.R.Target}}: profile {{.R.Profile}}</h2>
<table>
<tr><th>orders placed</th><th>orders/s</th><th>paid</th><th>GMV (CNY)</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>audit</th></tr>
<tr><td>{{group .R.Orders}}</td><td>{{group .R.OrdersPerSec}}</td><td>{{group .R.Paid}}</td><td>{{cny .R.GMV}}</td>
<td>{{f2 .R.Latency.P50}}</td><td>{{f2 .R.Latency.P99}}</td><td>{{f2 .R.Latency.P999}}</td>
<td>{{if .R.Audit.OK}}<span class="ok">ok</span>{{else}}<span class="bad">FAILED</span>{{end}}</td></tr>
</table>
{{if .R.Errors}}<p>errors by code: {{range $k, $v := .R.Errors}}{{$k}} {{group $v}}; {{end}}</p>{{end}}
{{.Throughput}}
{{.Latency}}
{{if .R.Figures}}
<h3>The published 2020 figures, scaled, beside the simulated festival</h3>
<table><tr><th>figure</th><th>published</th><th>target</th><th>simulated</th><th>server</th><th>rule</th><th>ok</th><th>server ok</th></tr>
{{range .R.Figures}}<tr><td>{{.Name}}</td><td>{{.Published}}</td>
{{if .Text}}<td>{{.Published}}</td><td>{{.Text}}</td>{{else}}<td>{{num .Target}}</td><td>{{num .Simulated}}</td>{{end}}
<td>{{server .}}</td>
<td>{{.Rule}}</td><td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="bad">missed</span>{{end}}</td>
<td>{{serverOK .}}</td></tr>
{{end}}</table>
{{end}}
{{if not .R.Audit.OK}}<h3>Audit problems</h3><ul>{{range .R.Audit.Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{end}}
</body></html>
`

// plot draws one or two series against time as an SVG line chart.
func plot(title string, pts []Point, f, g func(Point) float64, unit string) template.HTML {
	const width, height, padL, padB, padT = 900.0, 260.0, 70.0, 30.0, 25.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" role="img">`, width, height)
	fmt.Fprintf(&b, `<text x="%.0f" y="16" font-size="13">%s</text>`, padL, template.HTMLEscapeString(title))
	if len(pts) == 0 {
		b.WriteString(`<text x="70" y="120" font-size="12">no samples (the run was shorter than a second)</text></svg>`)
		return template.HTML(b.String())
	}
	var ymax, tmax float64
	for _, p := range pts {
		ymax = math.Max(ymax, f(p))
		if g != nil {
			ymax = math.Max(ymax, g(p))
		}
		tmax = math.Max(tmax, p.T)
	}
	ymax = niceCeil(ymax)
	tmax = math.Max(tmax, 1)
	x := func(t float64) float64 { return padL + (width-padL-10)*t/tmax }
	y := func(v float64) float64 { return height - padB - (height-padB-padT)*v/ymax }
	// Axes and four gridlines with labels.
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, padL, width-10, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%s</text>`, padL-5, y(v)+4, fmtAxis(v))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11">%s</text>`, 5.0, padT-5, unit)
	for i := 0; i <= 5; i++ {
		t := tmax * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%.0fs</text>`, x(t), height-10, t)
	}
	line := func(h func(Point) float64, color string) {
		b.WriteString(`<polyline fill="none" stroke-width="1.5" stroke="` + color + `" points="`)
		for _, p := range pts {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(p.T), y(h(p)))
		}
		b.WriteString(`"/>`)
	}
	line(f, "#1f5fbf")
	if g != nil {
		line(g, "#c0392b")
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fmtAxis(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
