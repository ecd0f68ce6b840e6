package assistant

import (
	"context"
	"errors"
	"strings"
)

// Answer answers one message. Its only error is a *MessageError (wrapping
// ErrInvalidMessage) for a message with a missing or oversized field:
// unknown buyers, unknown orders and failed look-ups are answered
// politely.
func (a *Assistant) Answer(ctx context.Context, m Message) (Reply, error) {
	if err := a.validate(&m); err != nil {
		return Reply{}, err
	}
	t := analyze(m.Text)
	defer putTokenizer(t)
	r := a.answer(ctx, &m, t)
	a.stats.count(&r)
	return r, nil
}

func (a *Assistant) answer(ctx context.Context, m *Message, t *tokenizer) Reply {
	// Any message takes the session's pending cancel: a yes or no settles
	// it, and anything else drops it (and is answered as itself, so a
	// second "cancel my order" asks again).
	if p, ok := a.sessions.take(m.SessionID, m.BuyerID, m.At); ok {
		if yn := yesNo(t, p.lang); yn != answerNeither {
			return a.confirm(ctx, p, yn)
		}
	}
	lang := a.lang.detect(t)
	intent, confidence := a.model.classify(t.features)
	r := Reply{Language: lang, Intent: intent, Confidence: confidence}
	if confidence < a.cfg.ConfidenceMin {
		r.Intent = Other
	}
	tx := &replies[lang]
	switch r.Intent {
	case OrderStatus:
		a.orderStatus(ctx, m, t, &r)
	case ParcelTracking:
		a.parcelTracking(ctx, m, t, &r)
	case CancelOrder:
		a.cancelAsk(ctx, m, t, &r)
	case HumanAgent, Other:
		// Other is also the classifier's own verdict: either way nothing
		// here can answer it, so a person takes over.
		r.Handoff = true
		r.Answer = tx.fixed[r.Intent]
	default:
		r.Answer = tx.fixed[r.Intent]
	}
	if r.Answer == "" {
		panic("assistant: no answer for intent " + r.Intent.String() + " in " + lang.String())
	}
	return r
}

// entities returns the order and parcel ids the message names ("" for
// none); only the intents that need them pay for the look-up.
func (a *Assistant) entities(m *Message, t *tokenizer) (order, parcel string) {
	parcel, ps, pe := a.parcelID(m.Text)
	return orderID(t, ps, pe), parcel
}

// namedOrder returns the order named id, else (id "") the buyer's latest.
// ok is false when there is none (named: an unknown id or another buyer's
// order; unnamed: a buyer with no orders) and the answer is set.
func (a *Assistant) namedOrder(ctx context.Context, m *Message, id string, r *Reply) (OrderView, bool) {
	tx := &replies[r.Language]
	if id != "" {
		o, ok := a.orders.Order(ctx, id)
		if !ok || o.BuyerID != m.BuyerID {
			// Another buyer's order is answered exactly as an unknown one,
			// so ids cannot be probed.
			r.Answer = tx.unknownOrder(id)
			return OrderView{}, false
		}
		r.OrderID = o.ID
		return o, true
	}
	o, ok := a.orders.LatestOrder(ctx, m.BuyerID)
	if !ok || o.BuyerID != m.BuyerID {
		r.Answer = tx.noOrders
		return OrderView{}, false
	}
	r.OrderID = o.ID
	return o, true
}

func (a *Assistant) orderStatus(ctx context.Context, m *Message, t *tokenizer, r *Reply) {
	id, _ := a.entities(m, t)
	o, ok := a.namedOrder(ctx, m, id, r)
	if !ok {
		return
	}
	r.Answer = replies[r.Language].orderStatus(o.ID, statusText(r.Language, o.Status))
}

// parcelTracking answers from the named parcel, else the parcel of the
// named or latest order; a parcel id is reported only when it is the
// buyer's (an unknown one is answered like an unknown order).
func (a *Assistant) parcelTracking(ctx context.Context, m *Message, t *tokenizer, r *Reply) {
	tx := &replies[r.Language]
	id, pid := a.entities(m, t)
	if pid != "" {
		if a.parcels != nil {
			if p, ok := a.parcels.Parcel(ctx, pid); ok && p.BuyerID == m.BuyerID {
				r.ParcelID, r.OrderID = p.ID, p.OrderID
				r.Answer = tx.parcel(p.ID, p.Status, p.ETA)
				return
			}
		}
		r.Answer = tx.unknownParcel(pid)
		return
	}
	o, ok := a.namedOrder(ctx, m, id, r)
	if !ok {
		return
	}
	if a.parcels != nil {
		if p, ok := a.parcels.OrderParcel(ctx, o.ID); ok && p.BuyerID == m.BuyerID {
			r.ParcelID = p.ID
			r.Answer = tx.parcel(p.ID, p.Status, p.ETA)
			return
		}
	}
	r.Answer = tx.notShipped(o.ID, statusText(r.Language, o.Status))
}

// cancelAsk asks to confirm cancelling the named or latest order, if it
// can still be cancelled, and remembers the question in the session.
func (a *Assistant) cancelAsk(ctx context.Context, m *Message, t *tokenizer, r *Reply) {
	id, _ := a.entities(m, t)
	o, ok := a.namedOrder(ctx, m, id, r)
	if !ok {
		return
	}
	tx := &replies[r.Language]
	if o.Status != statusPending {
		r.Answer = tx.cancelNot(o.ID, statusText(r.Language, o.Status))
		return
	}
	a.sessions.put(m.SessionID, pendingCancel{buyerID: m.BuyerID, orderID: o.ID, lang: r.Language, at: m.At})
	r.Answer = tx.cancelAsk(o.ID, o.Total)
}

// statusPending is the one status an order can be cancelled in.
const statusPending = "pending_payment"

// confirm settles a pending cancel with the buyer's yes or no, in the
// language the question was asked in.
func (a *Assistant) confirm(ctx context.Context, p pendingCancel, yn answerYesNo) Reply {
	tx := &replies[p.lang]
	r := Reply{Language: p.lang, Intent: CancelOrder, Confidence: 1, OrderID: p.orderID}
	if yn == answerNo {
		r.Answer = tx.cancelKept(p.orderID)
		return r
	}
	switch err := a.orders.Cancel(ctx, p.orderID); {
	case err == nil:
		r.Answer = tx.cancelDone(p.orderID)
	case errors.Is(err, ErrNotCancellable):
		status := "cancelled"
		if o, ok := a.orders.Order(ctx, p.orderID); ok {
			status = o.Status
		}
		r.Answer = tx.cancelNot(p.orderID, statusText(p.lang, status))
	default:
		r.Answer, r.Handoff = tx.cancelFailed(p.orderID), true
	}
	return r
}

type answerYesNo uint8

const (
	answerNeither answerYesNo = iota
	answerYes
	answerNo
)

// Yes and no, by the message's first word (folded: "không" is "khong").
// "dung" is both đúng (right: yes) and đừng (don't: no) once folded, so it
// is read from the diacritics or not at all.
var (
	yesWords = map[string]bool{
		"yes": true, "y": true, "yeah": true, "yea": true, "yep": true, "yup": true, "ya": true, "yess": true,
		"sure": true, "ok": true, "okay": true, "oke": true, "okie": true, "confirm": true, "confirmed": true,
		"correct": true, "right": true, "absolutely": true, "definitely": true,
		"co": true, "vang": true, "u": true, "uh": true, "uk": true, "duoc": true, "dc": true, "phai": true,
		"chac": true, "xac": true, "dong": true, "roi": true,
	}
	noWords = map[string]bool{
		"no": true, "n": true, "nope": true, "nah": true, "nay": true, "never": true, "nevermind": true,
		"stop": true, "keep": true, "wait": true, "not": true,
		"khong": true, "ko": true, "kh": true, "hong": true, "hok": true, "thoi": true, "chua": true, "khoan": true,
	}
	// Chinese answers by their first characters; no is checked first, so
	// 不好 and 不要 are no.
	noHan  = []string{"不", "别", "否", "算了", "先不", "暂时不"}
	yesHan = []string{"是", "好", "对", "确认", "确定", "嗯", "可以", "行", "要", "没问题", "当然"}
)

// yesNo reads a confirmation from the start of a message.
func yesNo(t *tokenizer, lang Language) answerYesNo {
	if len(t.tokens) == 0 {
		return answerNeither
	}
	first := &t.tokens[0]
	if first.kind == tokenHan {
		var head [4]rune
		n := 0
		for i := 0; i < len(t.tokens) && n < len(head) && t.tokens[i].kind == tokenHan && (i == 0 || t.tokens[i].joined); i++ {
			head[n] = t.tokens[i].han
			n++
		}
		s := string(head[:n])
		for _, p := range noHan {
			if strings.HasPrefix(s, p) {
				return answerNo
			}
		}
		for _, p := range yesHan {
			if strings.HasPrefix(s, p) {
				return answerYes
			}
		}
		return answerNeither
	}
	w := string(t.word(0))
	original := strings.ToLower(t.text[first.textStart:first.textEnd])
	second := ""
	if len(t.tokens) > 1 && t.tokens[1].kind == tokenWord {
		second = string(t.word(1))
	}
	switch {
	case original == "đúng":
		return answerYes
	case original == "đừng":
		return answerNo
	case w == "dung":
		return answerNeither
	case w == "don" && second == "t", w == "do" && second == "not":
		return answerNo
	case w == "do" && second == "it", w == "go" && second == "ahead":
		return answerYes
	case w == "k" && lang == Vietnamese:
		return answerNo // Vietnamese slang for không
	case w == "k":
		return answerYes // English slang for ok
	case noWords[w]:
		return answerNo
	case yesWords[w]:
		return answerYes
	}
	return answerNeither
}
