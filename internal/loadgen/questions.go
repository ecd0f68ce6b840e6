package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/festival"
)

// The assistant's question stream: buyers ask the customer-service
// assistant about their orders in English, Chinese and Vietnamese while
// the orders are placed. It is a separate, open-loop stream beside the
// order driver: question i is due at start + i/rate whatever the answers
// take, so a slow assistant shows as latency, not as a lower rate.

// QuestionsPublished is the 2020 festival's chatbot figure: 2.1 billion
// questions over the 11 days.
const QuestionsPublished = 2_100_000_000

// QuestionRate is the question rate, per wall second, of a festival replay
// at scale and speed (festival seconds per wall second): the published
// questions times scale, spread evenly over the festival.
func QuestionRate(scale, speed float64) float64 {
	return QuestionsPublished * scale / festival.FestivalSeconds * speed
}

// QuestionConfig is one question stream.
type QuestionConfig struct {
	// Rate is the questions per wall second; it must be positive.
	Rate float64
	// InFlight bounds the questions waiting for their answer (default
	// 32); when all are taken, the stream falls behind its schedule.
	InFlight int
	// Buyers is how many buyers ask (the model's buyers, u00000000 on).
	Buyers int
	// Seed chooses the buyers and the questions.
	Seed uint64
}

// Validate reports the first thing wrong with c.
func (c QuestionConfig) Validate() error {
	switch {
	case c.Rate <= 0 || c.Rate > 1e7:
		return fmt.Errorf("question rate %g out of range (0, 10,000,000]", c.Rate)
	case c.InFlight < 0 || c.InFlight > 10_000:
		return fmt.Errorf("questions in flight %d out of range [0, 10,000]", c.InFlight)
	case c.Buyers < 1:
		return errors.New("questions need at least one buyer")
	}
	return nil
}

// Ask sends one question and returns the answer's language and whether it
// was handed to a person.
type Ask func(ctx context.Context, buyerID, sessionID, text string) (language string, handoff bool, err error)

// QuestionResult is what a question stream did.
type QuestionResult struct {
	Sent, Answered, Failed uint64
	Handoffs               uint64
	// Mislabelled counts answers in another language than the question's.
	Mislabelled uint64
	ByLanguage  map[string]uint64 // answered, by the answer's language
	Elapsed     time.Duration
	P50, P99    time.Duration
	// FirstError is an example of a failed question.
	FirstError string
}

// questionTexts are the buyers' questions by language. None asks to cancel
// or says yes: the order driver's books must balance.
var questionTexts = map[string][]string{
	"en": {
		"where is my order", "what's the status of my order", "has my parcel shipped yet", "track my package please",
		"how does the cross-store discount work", "when will my order arrive", "i want a refund, the item is broken",
		"my payment failed, what now", "i need to change my delivery address", "hi there", "can i talk to a human",
	},
	"zh": {
		"我的订单怎么样了", "查一下我的订单状态", "我的快递到哪了", "帮我查物流", "跨店满减怎么算", "多久能到",
		"我要退款", "付款失败了怎么办", "我要改收货地址", "你好", "转人工",
	},
	"vi": {
		"đơn hàng của tôi thế nào rồi", "don hang cua toi sao roi", "kiện hàng của tôi đang ở đâu", "tra cuu van don",
		"giảm giá liên cửa hàng tính thế nào", "bao lâu thì nhận được hàng", "tôi muốn hoàn tiền", "thanh toan that bai",
		"tôi muốn đổi địa chỉ giao hàng", "xin chào", "cho gặp nhân viên",
	},
}

var questionLanguages = []string{"en", "zh", "vi"}

// latencySamplesMax bounds the latencies kept for the percentiles; beyond
// it the n-th latency replaces a random kept one with probability max/n
// (reservoir sampling), so the kept ones stay a uniform sample.
const latencySamplesMax = 1 << 18

// questionRun is one running stream; its counters are shared by the
// workers.
type questionRun struct {
	cfg      QuestionConfig
	ask      Ask
	start    time.Time
	interval float64 // nanoseconds between questions
	next     atomic.Int64
	sent     atomic.Uint64
	answered atomic.Uint64
	failed   atomic.Uint64
	handoffs atomic.Uint64
	wrong    atomic.Uint64

	mu struct {
		sync.Mutex
		byLanguage map[string]uint64
		samples    []time.Duration // a uniform sample of the latencies
		seen       int             // latencies offered to samples
		firstError string
	}
}

// RunQuestions sends questions at cfg.Rate until ctx ends.
func RunQuestions(ctx context.Context, cfg QuestionConfig, ask Ask) (*QuestionResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.InFlight == 0 {
		cfg.InFlight = 32
	}
	r := &questionRun{cfg: cfg, ask: ask, start: time.Now(), interval: float64(time.Second) / cfg.Rate}
	r.mu.byLanguage = map[string]uint64{}
	var wg sync.WaitGroup
	for w := 0; w < cfg.InFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx, rand.New(rand.NewPCG(cfg.Seed, uint64(w))))
		}()
	}
	wg.Wait()
	res := &QuestionResult{
		Elapsed: time.Since(r.start), Sent: r.sent.Load(), Answered: r.answered.Load(), Failed: r.failed.Load(),
		Handoffs: r.handoffs.Load(), Mislabelled: r.wrong.Load(),
		ByLanguage: r.mu.byLanguage, FirstError: r.mu.firstError,
	}
	samples := r.mu.samples
	slices.Sort(samples)
	if n := len(samples); n > 0 {
		res.P50, res.P99 = samples[n/2], samples[n*99/100]
	}
	return res, nil
}

// worker takes the next question, waits until it is due, asks it and
// records the answer, until ctx ends.
func (r *questionRun) worker(ctx context.Context, rng *rand.Rand) {
	for {
		i := r.next.Add(1) - 1
		due := r.start.Add(time.Duration(float64(i) * r.interval))
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		lang := questionLanguages[i%int64(len(questionLanguages))]
		texts := questionTexts[lang]
		text := texts[rng.IntN(len(texts))]
		buyer := festival.BuyerID(int32(rng.IntN(r.cfg.Buyers)))
		// A session per question: nothing waits for a yes.
		session := "load-" + strconv.FormatInt(i, 10)
		r.sent.Add(1)
		t := time.Now()
		got, handoff, err := r.ask(ctx, buyer, session, text)
		lat := time.Since(t)
		if err != nil && ctx.Err() != nil {
			// Cut off by the end of the run: not a question the assistant
			// failed.
			r.sent.Add(^uint64(0))
			return
		}
		r.record(rng, lang, got, handoff, lat, err)
	}
}

func (r *questionRun) record(rng *rand.Rand, want, got string, handoff bool, lat time.Duration, err error) {
	if err != nil {
		r.failed.Add(1)
		r.mu.Lock()
		if r.mu.firstError == "" {
			r.mu.firstError = err.Error()
		}
		r.mu.Unlock()
		return
	}
	r.answered.Add(1)
	if handoff {
		r.handoffs.Add(1)
	}
	if got != want {
		r.wrong.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.byLanguage[got]++
	r.mu.seen++
	if len(r.mu.samples) < latencySamplesMax {
		r.mu.samples = append(r.mu.samples, lat)
	} else if k := rng.IntN(r.mu.seen); k < latencySamplesMax {
		r.mu.samples[k] = lat
	}
}
