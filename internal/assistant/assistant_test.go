package assistant

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)

// Alice has a pending order (her latest) and a paid one; Bob has one.
const (
	alicePending = "2s9k1"
	alicePaid    = "17ne9a7ax1ts1"
	bobOrder     = "9k3"
)

func newFake() fakeOrders {
	return fakeOrders{
		alicePending: {ID: alicePending, BuyerID: "alice", Status: "pending_payment", Total: 12345, CreatedAt: t0.Add(time.Hour)},
		alicePaid:    {ID: alicePaid, BuyerID: "alice", Status: "paid", Total: 9900, CreatedAt: t0},
		bobOrder:     {ID: bobOrder, BuyerID: "bob", Status: "paid", Total: 500, CreatedAt: t0},
	}
}

var (
	sharedOnce  sync.Once
	sharedModel *model
	sharedLang  *langModel
)

// newTest returns an assistant over orders with the models trained on all
// the examples, once per test binary.
func newTest(t testing.TB, cfg Config, orders Orders) *Assistant {
	t.Helper()
	sharedOnce.Do(func() {
		ex := mustExamples(t)
		sharedModel, sharedLang = train(ex), trainLang(ex)
	})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return assemble(cfg.WithDefaults(), orders, nil, sharedModel, sharedLang)
}

func ask(t testing.TB, a *Assistant, buyer, session, text string, at time.Time) Reply {
	t.Helper()
	r, err := a.Answer(context.Background(), Message{BuyerID: buyer, SessionID: session, Text: text, At: at})
	if err != nil {
		t.Fatalf("%q: %v", text, err)
	}
	return r
}

func TestGroundedOrderStatus(t *testing.T) {
	a := newTest(t, Config{}, newFake())
	for _, c := range []struct {
		text   string
		lang   Language
		order  string
		status string
	}{
		{"what's the status of order " + alicePaid, English, alicePaid, "paid"},
		{"订单号 " + alicePaid + " 什么状态", Chinese, alicePaid, "paid"},
		{"đơn " + alicePaid + " trạng thái gì", Vietnamese, alicePaid, "paid"},
		{"don hang " + alicePaid + " sao roi", Vietnamese, alicePaid, "paid"},
		{"check order #" + alicePending, English, alicePending, "pending_payment"},
		{"where is my order", English, alicePending, "pending_payment"},
		{"我的订单怎么样了", Chinese, alicePending, "pending_payment"},
		{"đơn hàng của tôi thế nào rồi", Vietnamese, alicePending, "pending_payment"},
		{"kiem tra don hang giup minh", Vietnamese, alicePending, "pending_payment"},
	} {
		r := ask(t, a, "alice", "s", c.text, t0)
		if r.Intent != OrderStatus {
			t.Errorf("%q: intent %s, want order_status", c.text, r.Intent)
			continue
		}
		if r.Language != c.lang {
			t.Errorf("%q: language %s, want %s", c.text, r.Language, c.lang)
		}
		if r.OrderID != c.order {
			t.Errorf("%q: order_id %q, want %q", c.text, r.OrderID, c.order)
		}
		if want := statusText(c.lang, c.status); !strings.Contains(r.Answer, want) || !strings.Contains(r.Answer, c.order) {
			t.Errorf("%q: answer %q, want it to name %s and %q", c.text, r.Answer, c.order, want)
		}
		if r.Handoff {
			t.Errorf("%q: handoff, want an automated answer", c.text)
		}
	}
}

func TestAnotherBuyersOrderIsUnknown(t *testing.T) {
	a := newTest(t, Config{}, newFake())
	for _, c := range []struct {
		text string
		lang Language
		id   string
	}{
		{"what's the status of order " + alicePaid, English, alicePaid},
		{"订单号 " + alicePaid + " 什么状态", Chinese, alicePaid},
		{"đơn " + alicePaid + " trạng thái gì", Vietnamese, alicePaid},
		{"cancel order " + alicePending, English, alicePending},
		// An id nobody has gets the very same answer.
		{"what's the status of order 5zz9kq1", English, "5zz9kq1"},
	} {
		r := ask(t, a, "bob", "s", c.text, t0)
		if r.OrderID != "" {
			t.Errorf("%q: order_id %q, want none", c.text, r.OrderID)
		}
		if want := replies[c.lang].unknownOrder(c.id); r.Answer != want {
			t.Errorf("%q: answer %q, want %q", c.text, r.Answer, want)
		}
		if r.Handoff {
			t.Errorf("%q: an unknown order is answered, not handed off", c.text)
		}
	}
	if o, _ := newFake().Order(context.Background(), alicePending); o.Status != "pending_payment" {
		t.Fatal("fake changed")
	}
}

func TestUnknownBuyer(t *testing.T) {
	a := newTest(t, Config{}, newFake())
	for _, c := range []struct {
		text string
		lang Language
	}{
		{"where is my order", English},
		{"我的订单怎么样了", Chinese},
		{"don hang cua toi the nao roi", Vietnamese},
		{"cancel my order", English},
		{"track my parcel", English},
	} {
		r := ask(t, a, "carol", "s", c.text, t0)
		if r.Answer != replies[c.lang].noOrders || r.OrderID != "" || r.Handoff {
			t.Errorf("%q: reply %+v, want the no-orders answer in %s", c.text, r, c.lang)
		}
	}
}

func TestCancelFlow(t *testing.T) {
	for _, c := range []struct {
		lang            Language
		ask, yes, no    string
		otherTopic      string
		otherTopicWants Intent
	}{
		{English, "cancel my order", "yes", "no", "where is my parcel", ParcelTracking},
		{English, "i want to cancel my order", "yes please", "no thanks", "how do coupons work", PromotionRules},
		{Chinese, "我要取消订单", "是的", "不要", "我的快递到哪了", ParcelTracking},
		{Chinese, "帮我取消订单", "确认", "算了", "满减规则", PromotionRules},
		{Vietnamese, "hủy đơn hàng", "có", "không", "kiện hàng của tôi đang ở đâu", ParcelTracking},
		{Vietnamese, "huy don giup toi", "co", "khong", "ma giam gia dung the nao", PromotionRules},
		{Vietnamese, "tôi muốn hủy đơn", "đúng rồi", "thôi", "hoàn tiền", RefundReturn},
	} {
		name := c.lang.String() + " " + c.ask
		t.Run(name, func(t *testing.T) {
			t.Run("yes cancels", func(t *testing.T) {
				f := newFake()
				a := newTest(t, Config{}, f)
				r := ask(t, a, "alice", "s1", c.ask, t0)
				if r.Intent != CancelOrder || r.OrderID != alicePending || r.Language != c.lang {
					t.Fatalf("ask: %+v, want cancel_order of %s in %s", r, alicePending, c.lang)
				}
				if r.Answer != replies[c.lang].cancelAsk(alicePending, 12345) {
					t.Fatalf("ask: answer %q is not the confirmation question", r.Answer)
				}
				if f[alicePending].Status != "pending_payment" {
					t.Fatal("cancelled before the yes")
				}
				r = ask(t, a, "alice", "s1", c.yes, t0.Add(time.Minute))
				if f[alicePending].Status != "cancelled" {
					t.Fatalf("yes %q: order %s, want cancelled (reply %+v)", c.yes, f[alicePending].Status, r)
				}
				if r.Answer != replies[c.lang].cancelDone(alicePending) || r.Intent != CancelOrder || r.Language != c.lang {
					t.Fatalf("yes: reply %+v", r)
				}
				// The session is spent: another yes cancels nothing more.
				if a.sessions.len() != 0 {
					t.Fatalf("%d sessions left after the confirmation", a.sessions.len())
				}
			})
			t.Run("no keeps", func(t *testing.T) {
				f := newFake()
				a := newTest(t, Config{}, f)
				ask(t, a, "alice", "s1", c.ask, t0)
				r := ask(t, a, "alice", "s1", c.no, t0.Add(time.Minute))
				if f[alicePending].Status != "pending_payment" {
					t.Fatalf("no %q cancelled the order", c.no)
				}
				if r.Answer != replies[c.lang].cancelKept(alicePending) {
					t.Fatalf("no %q: answer %q", c.no, r.Answer)
				}
				ask(t, a, "alice", "s1", c.yes, t0.Add(2*time.Minute))
				if f[alicePending].Status != "pending_payment" {
					t.Fatal("a yes after the no cancelled the order")
				}
			})
			t.Run("another topic drops it", func(t *testing.T) {
				f := newFake()
				a := newTest(t, Config{}, f)
				ask(t, a, "alice", "s1", c.ask, t0)
				r := ask(t, a, "alice", "s1", c.otherTopic, t0.Add(time.Minute))
				if r.Intent != c.otherTopicWants {
					t.Errorf("%q: intent %s, want %s", c.otherTopic, r.Intent, c.otherTopicWants)
				}
				ask(t, a, "alice", "s1", c.yes, t0.Add(2*time.Minute))
				if f[alicePending].Status != "pending_payment" {
					t.Fatal("a yes after another topic cancelled the order")
				}
			})
		})
	}
}

func TestCancelNeedsSameSessionBuyerAndTime(t *testing.T) {
	for _, c := range []struct {
		name    string
		buyer   string
		session string
		after   time.Duration
	}{
		{"another session", "alice", "s2", time.Minute},
		{"another buyer in the session", "bob", "s1", time.Minute},
		{"too late", "alice", "s1", SessionAgeMaxDefault + time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFake()
			a := newTest(t, Config{}, f)
			ask(t, a, "alice", "s1", "cancel my order", t0)
			ask(t, a, c.buyer, c.session, "yes", t0.Add(c.after))
			if f[alicePending].Status != "pending_payment" {
				t.Fatal("cancelled")
			}
		})
	}
}

func TestCancelNotCancellable(t *testing.T) {
	f := newFake()
	a := newTest(t, Config{}, f)
	r := ask(t, a, "alice", "s1", "cancel order "+alicePaid, t0)
	if r.Intent != CancelOrder || r.Answer != replies[English].cancelNot(alicePaid, statusText(English, "paid")) {
		t.Fatalf("reply %+v, want the not-cancellable answer", r)
	}
	if a.sessions.len() != 0 {
		t.Fatal("a paid order left a pending cancel")
	}
	// Paid between the question and the yes.
	ask(t, a, "alice", "s1", "cancel my order", t0)
	f[alicePending].Status = "paid"
	r = ask(t, a, "alice", "s1", "yes", t0.Add(time.Second))
	if r.Answer != replies[English].cancelNot(alicePending, statusText(English, "paid")) || r.Handoff {
		t.Fatalf("reply %+v, want the not-cancellable answer", r)
	}
}

func TestHandoff(t *testing.T) {
	a := newTest(t, Config{}, newFake())
	for _, c := range []struct {
		text string
		lang Language
	}{
		{"i want to talk to a human", English},
		{"转人工", Chinese},
		{"gặp nhân viên", Vietnamese},
		{"cho gap nhan vien tu van", Vietnamese},
	} {
		r := ask(t, a, "alice", "s", c.text, t0)
		if r.Intent != HumanAgent || !r.Handoff || r.Language != c.lang || r.Answer != replies[c.lang].fixed[HumanAgent] {
			t.Errorf("%q: reply %+v, want human_agent with handoff in %s", c.text, r, c.lang)
		}
	}
	// Below the threshold every message is other, handed off, in its
	// language.
	strict := newTest(t, Config{ConfidenceMin: 0.999}, newFake())
	for _, c := range []struct {
		text string
		lang Language
	}{
		{"refund or cancel or track my order", English},
		{"退款还是取消还是查物流", Chinese},
		{"hoan tien hay huy don hay theo doi van chuyen", Vietnamese},
	} {
		r := ask(t, strict, "alice", "s", c.text, t0)
		if r.Intent != Other || !r.Handoff || r.Language != c.lang || r.Answer != replies[c.lang].fixed[Other] {
			t.Errorf("%q: reply %+v, want other with handoff in %s", c.text, r, c.lang)
		}
		if r.Confidence >= 0.999 {
			t.Errorf("%q: confidence %v is not below the threshold", c.text, r.Confidence)
		}
	}
}

func TestStats(t *testing.T) {
	a := newTest(t, Config{}, newFake())
	ask(t, a, "alice", "s", "where is my order", t0)
	ask(t, a, "alice", "s", "转人工", t0)
	ask(t, a, "alice", "s", "xin chào", t0)
	ask(t, a, "alice", "s", "hello", t0)
	s := a.Stats()
	if s.Questions != 4 || s.Automated != 3 || s.AutomatedShare != 0.75 {
		t.Fatalf("stats %+v, want 4 questions, 3 automated", s)
	}
	if s.ByIntent[OrderStatus] != 1 || s.ByIntent[HumanAgent] != 1 || s.ByIntent[Greeting] != 2 {
		t.Fatalf("by intent %v", s.ByIntent)
	}
	if s.ByLanguage[English] != 2 || s.ByLanguage[Chinese] != 1 || s.ByLanguage[Vietnamese] != 1 {
		t.Fatalf("by language %v", s.ByLanguage)
	}
	if _, err := a.Answer(context.Background(), Message{BuyerID: "alice", SessionID: "s"}); err == nil {
		t.Fatal("empty text accepted")
	}
	if a.Stats().Questions != 4 {
		t.Fatal("a rejected message was counted")
	}
}

func TestMessageErrors(t *testing.T) {
	a := newTest(t, Config{TextBytesMax: 10}, newFake())
	for _, c := range []struct {
		m     Message
		field string
	}{
		{Message{SessionID: "s", Text: "hi"}, "buyer_id"},
		{Message{BuyerID: "b", Text: "hi"}, "session_id"},
		{Message{BuyerID: "b", SessionID: "s"}, "text"},
		{Message{BuyerID: "b", SessionID: "s", Text: "hello there you"}, "text"},
		{Message{BuyerID: "b", SessionID: "s", Text: "\xff"}, "text"},
		{Message{BuyerID: strings.Repeat("b", idBytesMax+1), SessionID: "s", Text: "hi"}, "buyer_id"},
		{Message{BuyerID: "b", SessionID: strings.Repeat("s", idBytesMax+1), Text: "hi"}, "session_id"},
	} {
		_, err := a.Answer(context.Background(), c.m)
		var me *MessageError
		if !errors.As(err, &me) || me.Field != c.field || !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%+v: error %v, want a MessageError for %s", c.m, err, c.field)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{SessionsMax: 1, SessionAgeMax: time.Second, ConfidenceMin: 0.5, TextBytesMax: 1, ParcelPattern: `P\d+`}, true},
		{Config{SessionsMax: -1}, false},
		{Config{SessionsMax: sessionsMaxLimit + 1}, false},
		{Config{SessionAgeMax: -time.Second}, false},
		{Config{ConfidenceMin: 1}, false},
		{Config{ConfidenceMin: -0.1}, false},
		{Config{TextBytesMax: textBytesLimit + 1}, false},
		{Config{ParcelPattern: `(`}, false},
	} {
		err := c.cfg.Validate()
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: Validate() = %v, want ok %v", c.cfg, err, c.ok)
		}
	}
	if _, err := New(Config{}, nil, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("New without orders: %v, want ErrConfig", err)
	}
}

func TestEntities(t *testing.T) {
	a := newTest(t, Config{}, newFake())
	for _, c := range []struct {
		text          string
		order, parcel string
	}{
		{"where is order 2s9k1", "2s9k1", ""},
		{"check #2s", "2s", ""},
		{"check #abc", "abc", ""},
		{"order status please", "", ""},       // "status" is base 36, but no digit
		{"i bought 2 items on 11.11", "", ""}, // quantities are not ids
		{"Order 17NE9A7AX1TS1 status", "17ne9a7ax1ts1", ""},
		{"status 17ne9a7ax1ts1", "17ne9a7ax1ts1", ""},
		{"订单2s9k1怎么样了", "2s9k1", ""},
		{"单号：9k3", "9k3", ""},
		{"đơn hàng 2s9k1 sao rồi", "2s9k1", ""},
		{"track SF1234567890", "", "SF1234567890"},
		{"kiện rr123456789cn ở đâu", "", "RR123456789CN"},
		{"订单 2s9k1 的快递 YT1234567890123", "2s9k1", "YT1234567890123"},
		{"iphone15 pro max", "", ""},
		{"zzzzzzzzzzzzzzzzzz1", "", ""}, // too long for an id
	} {
		tk := analyze(c.text)
		parcel, ps, pe := a.parcelID(c.text)
		order := orderID(tk, ps, pe)
		putTokenizer(tk)
		if order != c.order || parcel != c.parcel {
			t.Errorf("%q: order %q parcel %q, want %q and %q", c.text, order, parcel, c.order, c.parcel)
		}
	}
}

func TestYesNo(t *testing.T) {
	for _, c := range []struct {
		text string
		lang Language
		want answerYesNo
	}{
		{"yes", English, answerYes},
		{"Yes please", English, answerYes},
		{"ok", English, answerYes},
		{"k", English, answerYes},
		{"do it", English, answerYes},
		{"no", English, answerNo},
		{"Nope.", English, answerNo},
		{"don't", English, answerNo},
		{"do not cancel", English, answerNo},
		{"where is my parcel", English, answerNeither},
		{"是", Chinese, answerYes},
		{"好的，取消吧", Chinese, answerYes},
		{"确认取消", Chinese, answerYes},
		{"不", Chinese, answerNo},
		{"不要取消", Chinese, answerNo},
		{"不好", Chinese, answerNo},
		{"算了", Chinese, answerNo},
		{"我的快递呢", Chinese, answerNeither},
		{"có", Vietnamese, answerYes},
		{"Có, hủy đi", Vietnamese, answerYes},
		{"vâng", Vietnamese, answerYes},
		{"đồng ý", Vietnamese, answerYes},
		{"đúng rồi", Vietnamese, answerYes},
		{"không", Vietnamese, answerNo},
		{"khong", Vietnamese, answerNo},
		{"ko", Vietnamese, answerNo},
		{"k", Vietnamese, answerNo},
		{"đừng hủy", Vietnamese, answerNo},
		{"dung", Vietnamese, answerNeither},
		{"thôi", Vietnamese, answerNo},
		{"hàng đâu rồi", Vietnamese, answerNeither},
	} {
		tk := analyze(c.text)
		got := yesNo(tk, c.lang)
		putTokenizer(tk)
		if got != c.want {
			t.Errorf("%q (%s): %d, want %d", c.text, c.lang, got, c.want)
		}
	}
}

func TestDetectLanguageCases(t *testing.T) {
	a := newTest(t, Config{}, newFake())
	for _, c := range []struct {
		text string
		want Language
	}{
		{"where is my order", English},
		{"don hang cua toi dau roi", Vietnamese},
		{"huy don giup minh", Vietnamese},
		{"cho minh hoi order cua minh sao roi", Vietnamese},
		{"đơn hàng của tôi", Vietnamese},
		{"我的订单呢", Chinese},
		{"我的order在哪", Chinese},
		{"where is my 快递 please", English},
		{"12345", English},
	} {
		if got := a.languageOf(c.text); got != c.want {
			t.Errorf("%q: %s, want %s", c.text, got, c.want)
		}
	}
}

func TestSessionsBounded(t *testing.T) {
	s := newSessions(32, time.Minute)
	for i := 0; i < 1000; i++ {
		s.put(strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('0'+i%10))+time.Duration(i).String(), pendingCancel{buyerID: "b", at: t0})
	}
	if n := s.len(); n > 32 {
		t.Fatalf("%d sessions held, bound 32", n)
	}
	// Expired entries are dropped by the next put in their shard.
	s = newSessions(1600, time.Minute)
	for i := 0; i < 1000; i++ {
		s.put("old"+time.Duration(i).String(), pendingCancel{buyerID: "b", at: t0})
	}
	for i := 0; i < 1000; i++ {
		s.put("new"+time.Duration(i).String(), pendingCancel{buyerID: "b", at: t0.Add(time.Hour)})
	}
	if n := s.len(); n != 1000 {
		t.Fatalf("%d sessions held, want the 1,000 fresh ones", n)
	}
	if _, ok := s.take("new1ns", "b", t0.Add(time.Hour)); !ok {
		t.Fatal("a fresh session was lost")
	}
}

func TestYuan(t *testing.T) {
	for fen, want := range map[int64]string{0: "0.00", 5: "0.05", 12345: "123.45", 100: "1.00", -250: "-2.50"} {
		if got := yuan(fen); got != want {
			t.Errorf("yuan(%d) = %q, want %q", fen, got, want)
		}
	}
}

// TestConcurrentAnswers answers from many goroutines at once (run it with
// -race): every question is counted, and each buyer's own confirmed
// cancel happens exactly once.
func TestConcurrentAnswers(t *testing.T) {
	f := fakeOrders{}
	const buyers = 8
	for b := 0; b < buyers; b++ {
		id := "1" + strings.Repeat(string(rune('a'+b)), 8) + "1" // 10 characters: an id without a cue
		f[id] = &OrderView{ID: id, BuyerID: "buyer" + string(rune('a'+b)), Status: "pending_payment", CreatedAt: t0}
	}
	a := newTest(t, Config{}, f)
	var wg sync.WaitGroup
	const rounds = 50
	for b := 0; b < buyers; b++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buyer := "buyer" + string(rune('a'+b))
			for i := 0; i < rounds; i++ {
				ask(t, a, buyer, buyer+"-q", benchQuestions[i%len(benchQuestions)], t0)
			}
			ask(t, a, buyer, buyer+"-c", "cancel my order", t0)
			ask(t, a, buyer, buyer+"-c", "yes", t0.Add(time.Second))
		}()
	}
	wg.Wait()
	if got, want := a.Stats().Questions, uint64(buyers*(rounds+2)); got != want {
		t.Fatalf("%d questions counted, want %d", got, want)
	}
	for id, o := range f {
		if o.Status != "cancelled" {
			t.Errorf("order %s of %s is %s, want cancelled", id, o.BuyerID, o.Status)
		}
	}
}

// fakeParcels is logistics as it may look: alice's paid order shipped.
type fakeParcels map[string]ParcelView

func (f fakeParcels) Parcel(_ context.Context, id string) (ParcelView, bool) {
	p, ok := f[id]
	return p, ok
}

func (f fakeParcels) OrderParcel(_ context.Context, orderID string) (ParcelView, bool) {
	for _, p := range f {
		if p.OrderID == orderID {
			return p, true
		}
	}
	return ParcelView{}, false
}

func TestParcelTracking(t *testing.T) {
	eta := time.Date(2026, 11, 14, 0, 0, 0, 0, time.UTC)
	parcels := fakeParcels{"SF1234567890": {ID: "SF1234567890", OrderID: alicePaid, BuyerID: "alice", Status: "in_transit", ETA: eta}}
	newTest(t, Config{}, newFake()) // trains the shared models
	a := assemble(Config{}.WithDefaults(), newFake(), parcels, sharedModel, sharedLang)
	for _, c := range []struct {
		buyer, text   string
		lang          Language
		order, parcel string
		answer        string
	}{
		{"alice", "where is parcel SF1234567890", English, alicePaid, "SF1234567890", replies[English].parcel("SF1234567890", "in_transit", eta)},
		{"alice", "包裹SF1234567890在哪", Chinese, alicePaid, "SF1234567890", replies[Chinese].parcel("SF1234567890", "in_transit", eta)},
		{"alice", "track the parcel of order " + alicePaid, English, alicePaid, "SF1234567890", replies[English].parcel("SF1234567890", "in_transit", eta)},
		// Not shipped yet: the order's status.
		{"alice", "track my parcel", English, alicePending, "", replies[English].notShipped(alicePending, statusText(English, "pending_payment"))},
		// Another buyer's parcel is unknown, and not reported.
		{"bob", "where is parcel SF1234567890", English, "", "", replies[English].unknownParcel("SF1234567890")},
	} {
		r := ask(t, a, c.buyer, "s", c.text, t0)
		if r.Intent != ParcelTracking || r.OrderID != c.order || r.ParcelID != c.parcel || r.Answer != c.answer || r.Language != c.lang {
			t.Errorf("%s %q: reply %+v, want order %q parcel %q answer %q", c.buyer, c.text, r, c.order, c.parcel, c.answer)
		}
	}
}
