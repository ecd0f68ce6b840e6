package assistant

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// readOnlyOrders answers from a map that is never written, so the
// benchmark measures the assistant and not a lock of the fake.
type readOnlyOrders struct {
	byID     map[string]OrderView
	byBuyer  map[string]OrderView
	cancels  atomic.Int64
	notFound OrderView
}

func (o *readOnlyOrders) Order(_ context.Context, id string) (OrderView, bool) {
	v, ok := o.byID[id]
	return v, ok
}

func (o *readOnlyOrders) LatestOrder(_ context.Context, buyer string) (OrderView, bool) {
	v, ok := o.byBuyer[buyer]
	return v, ok
}

func (o *readOnlyOrders) Cancel(context.Context, string) error {
	o.cancels.Add(1)
	return nil
}

func benchOrders() *readOnlyOrders {
	o := &readOnlyOrders{byID: map[string]OrderView{}, byBuyer: map[string]OrderView{}}
	statuses := []string{"pending_payment", "paid", "cancelled", "expired"}
	for i := 0; i < 1000; i++ {
		v := OrderView{ID: "17ne9a7ax" + strconv.Itoa(1000+i), BuyerID: "b" + strconv.Itoa(i), Status: statuses[i%4], Total: int64(i * 100)}
		o.byID[v.ID] = v
		o.byBuyer[v.BuyerID] = v
	}
	return o
}

// benchQuestions is a mix of the three languages and the intents, some
// naming an order.
var benchQuestions = []string{
	"where is my order",
	"what's the status of order 17ne9a7ax1001",
	"track my parcel please",
	"how does the cross-store discount work",
	"i want a refund, the item is broken",
	"我的订单怎么样了",
	"查一下物流",
	"订单号 17ne9a7ax1002 什么状态",
	"跨店满减怎么算",
	"转人工",
	"đơn hàng của tôi thế nào rồi",
	"don hang cua toi the nao roi",
	"bao lâu thì nhận được hàng",
	"mã giảm giá dùng thế nào",
	"cancel my order",
	"hủy đơn hàng",
}

// benchBuyers and benchSessions are the ids of the messages, built once
// so that building a message allocates nothing.
var benchBuyers, benchSessions = func() (buyers, sessions []string) {
	for i := 0; i < 1000; i++ {
		buyers = append(buyers, "b"+strconv.Itoa(i))
		sessions = append(sessions, "s"+strconv.Itoa(i))
	}
	return buyers, sessions
}()

func benchAssistant(b *testing.B) *Assistant {
	a, err := New(Config{}, benchOrders(), nil)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkAnswer answers one question after another on one goroutine.
func BenchmarkAnswer(b *testing.B) {
	a := benchAssistant(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		q := benchQuestions[i%len(benchQuestions)]
		if _, err := a.Answer(ctx, Message{BuyerID: benchBuyers[i%1000], SessionID: "s", Text: q, At: t0}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnswerParallel answers from GOMAXPROCS goroutines and reports
// the throughput and the 99th percentile of one answer's latency.
func BenchmarkAnswerParallel(b *testing.B) {
	a := benchAssistant(b)
	ctx := context.Background()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		next      atomic.Int64
	)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1<<16)
		for pb.Next() {
			i := int(next.Add(1))
			m := Message{BuyerID: benchBuyers[i%1000], SessionID: benchSessions[i%1000], Text: benchQuestions[i%len(benchQuestions)], At: t0}
			t := time.Now()
			if _, err := a.Answer(ctx, m); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(t))
		}
		mu.Lock()
		latencies = append(latencies, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		b.ReportMetric(float64(latencies[n*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "questions/s")
	}
}

// BenchmarkTrain is the start-up training (both models, every example).
func BenchmarkTrain(b *testing.B) {
	for b.Loop() {
		if _, err := New(Config{}, benchOrders(), nil); err != nil {
			b.Fatal(err)
		}
	}
}
