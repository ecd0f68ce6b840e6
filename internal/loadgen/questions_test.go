package loadgen

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestRunQuestions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu       sync.Mutex
		asked    int
		sessions = map[string]bool{}
		langs    = map[string]int{}
	)
	const askedMax = 300
	ask := func(ctx context.Context, buyer, session, text string) (string, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		asked++
		if asked >= askedMax {
			cancel()
		}
		if sessions[session] {
			t.Errorf("session %s used twice", session)
		}
		sessions[session] = true
		lang := "en"
		for l, texts := range questionTexts {
			for _, q := range texts {
				if q == text {
					lang = l
				}
			}
		}
		langs[lang]++
		switch asked % 10 {
		case 0:
			return "", false, errors.New("boom")
		case 1:
			return "xx", true, nil // a wrong language, handed off
		}
		return lang, false, nil
	}
	// The rate is so high that every question is due at once: the test
	// does not depend on the clock.
	res, err := RunQuestions(ctx, QuestionConfig{Rate: 1e7, InFlight: 4, Buyers: 10, Seed: 1}, ask)
	if err != nil {
		t.Fatal(err)
	}
	// A question failing after the end (the cancel) is not counted.
	if res.Sent > uint64(asked) || res.Sent < uint64(asked-4) || res.Answered+res.Failed != res.Sent {
		t.Fatalf("sent %d answered %d failed %d, asked %d", res.Sent, res.Answered, res.Failed, asked)
	}
	if res.Failed == 0 || res.FirstError != "boom" || res.Handoffs == 0 || res.Mislabelled != res.Handoffs {
		t.Fatalf("result %+v: want the failures, handoffs and wrong languages counted", res)
	}
	for _, l := range questionLanguages {
		if langs[l] < asked/4 {
			t.Errorf("%s: %d of %d questions, want about a third", l, langs[l], asked)
		}
	}
	if res.P99 < res.P50 {
		t.Fatalf("p99 %v below p50 %v", res.P99, res.P50)
	}
}

func TestQuestionConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg QuestionConfig
		ok  bool
	}{
		{QuestionConfig{Rate: 100, Buyers: 1}, true},
		{QuestionConfig{Rate: 0, Buyers: 1}, false},
		{QuestionConfig{Rate: 100, Buyers: 0}, false},
		{QuestionConfig{Rate: 100, Buyers: 1, InFlight: -1}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v, want ok %v", c.cfg, err, c.ok)
		}
	}
	// The published 2.1 billion over the festival at scale 1 and speed 1.
	if r := QuestionRate(1, 1); r < 2209 || r > 2210 {
		t.Errorf("QuestionRate(1, 1) = %v, want 2.1e9 / 950,400 s", r)
	}
}
