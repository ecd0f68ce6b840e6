package assistant

import (
	"bufio"
	"embed"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"path"
	"strings"
)

// The training examples: data/<language>[-<part>].txt, in sections headed
// "== <intent>", one message a line. Blank lines and lines starting with
// "//" are skipped.
//
//go:embed data/*.txt
var dataFS embed.FS

// example is one labelled training message.
type example struct {
	lang   Language
	intent Intent
	text   string
}

// loadExamples reads every <language>.txt and <language>-<part>.txt of
// dir in fsys, in name order.
func loadExamples(fsys fs.FS, dir string) ([]example, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.txt"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("list %s: no example files", dir)
	}
	var out []example
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".txt")
		code, _, _ := strings.Cut(base, "-")
		l, ok := ParseLanguage(code)
		if !ok {
			return nil, fmt.Errorf("%s: the name does not start with a language code", name)
		}
		f, err := fsys.Open(name)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		ex, err := parseExamples(f, l, name)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, ex...)
	}
	return out, nil
}

// examplesLineBytesMax bounds a line of a training file.
const examplesLineBytesMax = 4096

func parseExamples(r fs.File, l Language, name string) ([]example, error) {
	var out []example
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, examplesLineBytesMax), examplesLineBytesMax)
	intent, inSection := Intent(0), false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "//"):
		case strings.HasPrefix(line, "== "):
			in, ok := ParseIntent(strings.TrimSpace(line[3:]))
			if !ok {
				return nil, fmt.Errorf("%s:%d: unknown intent %q", name, n, line[3:])
			}
			intent, inSection = in, true
		case !inSection:
			return nil, fmt.Errorf("%s:%d: example before the first \"== intent\" header", name, n)
		default:
			out = append(out, example{lang: l, intent: intent, text: line})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return out, nil
}

// The intent model is multinomial logistic regression over the hashed
// features, trained by averaged stochastic gradient descent. A message's
// features have equal weight, scaled by 1/sqrt(count) so long and short
// messages score on one scale; the softmax probability of the best intent
// is the confidence the threshold is compared with.

// classStride is intentCount rounded up so a bucket's weights are 48
// bytes, usually within one cache line.
const classStride = 12

type model struct {
	weights []float32 // bucketsCount × classStride
	bias    [intentCount]float32
}

// Training parameters, chosen on the held-out split (accuracy_test.go).
const (
	trainEpochs    = 40
	trainRate      = 4.0
	trainRateDecay = 0.25 // the rate of epoch e is trainRate / (1 + e×decay)
	trainSeed      = 11
	// biasRate scales the biases' steps: they see every example, and at
	// the full rate they would learn the classes' frequencies, not words.
	biasRate = 0.1
)

// featurized is an example's features, computed once for every epoch.
type featurized struct {
	features []uint32
	label    int
	scale    float32
}

func featurizeAll(examples []example, label func(example) int, latin bool) []featurized {
	out := make([]featurized, 0, len(examples))
	for _, e := range examples {
		t := analyze(e.text)
		f := t.features
		if latin {
			f = t.latinFeatures
		}
		if len(f) > 0 {
			out = append(out, featurized{features: append([]uint32(nil), f...), label: label(e), scale: float32(1 / math.Sqrt(float64(len(f))))})
		}
		putTokenizer(t)
	}
	return out
}

// train fits the intent model; it is deterministic for given examples.
// The weights are averaged over every step (averaged SGD), which keeps
// the late steps on a few examples from deciding the model, and
// generalizes better than the last weights.
func train(examples []example) *model {
	m := &model{weights: make([]float32, bucketsCount*classStride)}
	// sum accumulates step × update, so the average is w - sum/steps
	// without touching every weight at every step.
	sum := make([]float32, len(m.weights))
	var biasSum [intentCount]float32
	data := featurizeAll(examples, func(e example) int { return int(e.intent) }, false)
	rng := rand.New(rand.NewPCG(trainSeed, trainSeed))
	var p [intentCount]float32
	step := float32(1)
	for epoch := 0; epoch < trainEpochs; epoch++ {
		rate := float32(trainRate / (1 + float64(epoch)*trainRateDecay))
		rng.Shuffle(len(data), func(i, j int) { data[i], data[j] = data[j], data[i] })
		for k := range data {
			d := &data[k]
			m.probabilities(d.features, d.scale, &p)
			for c := range p {
				g := p[c]
				if c == d.label {
					g -= 1
				}
				g *= rate
				m.bias[c] -= g * biasRate
				biasSum[c] -= step * g * biasRate
				gs := g * d.scale
				for _, f := range d.features {
					i := int(f)*classStride + c
					m.weights[i] -= gs
					sum[i] -= step * gs
				}
			}
			step++
		}
	}
	for i := range m.weights {
		m.weights[i] -= sum[i] / step
	}
	for c := range m.bias {
		m.bias[c] -= biasSum[c] / step
	}
	return m
}

// probabilities fills p with the softmax of the intents' scores.
func (m *model) probabilities(features []uint32, scale float32, p *[intentCount]float32) {
	*p = m.bias
	for _, f := range features {
		w := m.weights[int(f)*classStride : int(f)*classStride+int(intentCount)]
		for c := range p {
			p[c] += w[c] * scale
		}
	}
	best := p[0]
	for _, v := range p {
		best = max(best, v)
	}
	var sum float32
	for c := range p {
		p[c] = float32(math.Exp(float64(p[c] - best)))
		sum += p[c]
	}
	for c := range p {
		p[c] /= sum
	}
}

// classify returns the most likely intent and its probability.
func (m *model) classify(features []uint32) (Intent, float64) {
	if len(features) == 0 {
		return Other, 0
	}
	var p [intentCount]float32
	m.probabilities(features, float32(1/math.Sqrt(float64(len(features)))), &p)
	best := 0
	for c := range p {
		if p[c] > p[best] {
			best = c
		}
	}
	return Intent(best), float64(p[best])
}

// The language model only separates English from Vietnamese typed
// without diacritics: Han characters and diacritics decide the rest (see
// detect). It is binary logistic regression over the Latin words'
// features, trained on the English and Vietnamese examples.
type langModel struct {
	weights []float32 // bucketsCount; positive: Vietnamese
	bias    float32
}

const (
	langEpochs = 8
	langRate   = 0.5
)

func trainLang(examples []example) *langModel {
	m := &langModel{weights: make([]float32, bucketsCount)}
	var latin []example
	for _, e := range examples {
		if e.lang != Chinese {
			latin = append(latin, e)
		}
	}
	data := featurizeAll(latin, func(e example) int {
		if e.lang == Vietnamese {
			return 1
		}
		return 0
	}, true)
	rng := rand.New(rand.NewPCG(trainSeed, trainSeed+1))
	for epoch := 0; epoch < langEpochs; epoch++ {
		rate := float32(langRate / (1 + float64(epoch)*trainRateDecay))
		rng.Shuffle(len(data), func(i, j int) { data[i], data[j] = data[j], data[i] })
		for k := range data {
			d := &data[k]
			g := float32(m.probability(d.features, d.scale)) - float32(d.label)
			g *= rate
			m.bias -= g * biasRate
			gs := g * d.scale
			for _, f := range d.features {
				m.weights[f] -= gs
			}
		}
	}
	return m
}

// probability returns the probability that the features are Vietnamese.
func (m *langModel) probability(features []uint32, scale float32) float64 {
	s := m.bias
	for _, f := range features {
		s += m.weights[f] * scale
	}
	return 1 / (1 + math.Exp(-float64(s)))
}

// detect returns the language of a tokenized message. A message with as
// many Han characters as Latin words is Chinese (so "我的order在哪" is);
// a Latin word with a Vietnamese diacritic makes it Vietnamese; otherwise
// the language model decides between English and Vietnamese.
func (lm *langModel) detect(t *tokenizer) Language {
	han, words, marks := 0, 0, 0
	for i := range t.tokens {
		tk := &t.tokens[i]
		if tk.kind == tokenHan {
			han++
			continue
		}
		if wordClass(t.word(i), tk.hash) != 'w' || !hasLetter(t.word(i)) {
			continue
		}
		words++
		if tk.mark {
			marks++
		}
	}
	switch {
	case han > words:
		return Chinese
	case marks > 0:
		return Vietnamese
	case words == 0:
		return English
	}
	if lm.probability(t.latinFeatures, float32(1/math.Sqrt(float64(len(t.latinFeatures))))) > 0.5 {
		return Vietnamese
	}
	return English
}

func hasLetter(w []byte) bool {
	for _, c := range w {
		if c >= 'a' && c <= 'z' {
			return true
		}
	}
	return false
}
