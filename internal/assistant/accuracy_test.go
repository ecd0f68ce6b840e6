package assistant

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// heldOutEvery: every heldOutEvery-th example of each language and intent
// is held out of training for TestHeldOutAccuracy.
const heldOutEvery = 5

// split divides the examples into a training and a held-out part, the same
// share of every language and intent.
func split(examples []example) (training, heldOut []example) {
	var seen [languageCount][intentCount]int
	for _, e := range examples {
		n := seen[e.lang][e.intent]
		seen[e.lang][e.intent]++
		if n%heldOutEvery == heldOutEvery-1 {
			heldOut = append(heldOut, e)
		} else {
			training = append(training, e)
		}
	}
	return training, heldOut
}

func mustExamples(t testing.TB) []example {
	t.Helper()
	ex, err := loadExamples(dataFS, "data")
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// secondSet is the evaluation set written after the training data and
// never used to tune anything.
func secondSet(t testing.TB) []example {
	t.Helper()
	ex, err := loadExamples(os.DirFS("testdata"), "second")
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// intentOf is the intent the API would answer: below the threshold, other.
func (a *Assistant) intentOf(text string) (Intent, float64) {
	tk := analyze(text)
	defer putTokenizer(tk)
	in, c := a.model.classify(tk.features)
	if c < a.cfg.ConfidenceMin {
		in = Other
	}
	return in, c
}

func (a *Assistant) languageOf(text string) Language {
	tk := analyze(text)
	defer putTokenizer(tk)
	return a.lang.detect(tk)
}

// confusion is a confusion matrix of one language: [want][got].
type confusion [intentCount][intentCount]int

func (c *confusion) accuracy() (float64, int) {
	right, all := 0, 0
	for w := range c {
		for g := range c[w] {
			all += c[w][g]
			if w == g {
				right += c[w][g]
			}
		}
	}
	return float64(right) / float64(all), all
}

func (c *confusion) String() string {
	var b strings.Builder
	short := func(i Intent) string { s := i.String(); return s[:min(len(s), 6)] }
	fmt.Fprintf(&b, "%-16s", "want \\ got")
	for g := Intent(0); g < intentCount; g++ {
		fmt.Fprintf(&b, "%7s", short(g))
	}
	b.WriteByte('\n')
	for w := Intent(0); w < intentCount; w++ {
		fmt.Fprintf(&b, "%-16s", w.String())
		for g := Intent(0); g < intentCount; g++ {
			fmt.Fprintf(&b, "%7d", c[w][g])
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// evaluate classifies examples and returns a confusion matrix per
// language, logging the misclassified ones.
func evaluate(t *testing.T, a *Assistant, examples []example) [languageCount]confusion {
	var m [languageCount]confusion
	for _, e := range examples {
		got, c := a.intentOf(e.text)
		m[e.lang][e.intent][got]++
		if got != e.intent && testing.Verbose() {
			t.Logf("%s %q: want %s, got %s (%.2f)", e.lang, e.text, e.intent, got, c)
		}
	}
	return m
}

func checkAccuracy(t *testing.T, name string, m [languageCount]confusion, want float64) {
	t.Helper()
	for _, l := range Languages() {
		acc, n := m[l].accuracy()
		t.Logf("%s, %s: %.1f%% of %d\n%s", name, l, 100*acc, n, m[l].String())
		if acc < want {
			t.Errorf("%s, %s: accuracy %.1f%%, want at least %.0f%%", name, l, 100*acc, 100*want)
		}
	}
}

func TestHeldOutAccuracy(t *testing.T) {
	training, heldOut := split(mustExamples(t))
	start := time.Now()
	a := newWith(Config{}.WithDefaults(), fakeOrders{}, nil, training)
	t.Logf("trained on %d examples in %v; %d held out", len(training), time.Since(start), len(heldOut))
	checkAccuracy(t, "held-out split", evaluate(t, a, heldOut), 0.95)
}

func TestSecondSetAccuracy(t *testing.T) {
	a := newWith(Config{}.WithDefaults(), fakeOrders{}, nil, mustExamples(t))
	checkAccuracy(t, "second set", evaluate(t, a, secondSet(t)), 0.90)
}

func TestExampleCounts(t *testing.T) {
	var n [languageCount][intentCount]int
	for _, e := range mustExamples(t) {
		n[e.lang][e.intent]++
	}
	for _, l := range Languages() {
		for _, i := range Intents() {
			if n[l][i] < 80 {
				t.Errorf("%s %s: %d training examples, want at least 80", l, i, n[l][i])
			}
		}
	}
}

func TestLanguageDetection(t *testing.T) {
	training, heldOut := split(mustExamples(t))
	a := newWith(Config{}.WithDefaults(), fakeOrders{}, nil, training)
	for name, set := range map[string][]example{"held-out split": heldOut, "second set": secondSet(t)} {
		var right, all [languageCount]int
		for _, e := range set {
			all[e.lang]++
			if got := a.languageOf(e.text); got == e.lang {
				right[e.lang]++
			} else {
				t.Logf("%s: %q is %s, detected %s", name, e.text, e.lang, got)
			}
		}
		for _, l := range Languages() {
			acc := float64(right[l]) / float64(all[l])
			t.Logf("%s, %s: language detected for %.1f%% of %d", name, l, 100*acc, all[l])
			if acc < 0.98 {
				t.Errorf("%s, %s: language detection %.1f%%, want at least 98%%", name, l, 100*acc)
			}
		}
	}
}
