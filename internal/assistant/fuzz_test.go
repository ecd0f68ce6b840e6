package assistant

import (
	"context"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzAnswer feeds arbitrary text to the whole pipeline (tokenizer, both
// models, entity extraction, yes/no, answers): it must never panic, and
// every reply must be complete and consistent.
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{
		"where is my order 17ne9a7ax1ts1", "订单2s9k1的快递SF1234567890到哪了", "đơn hàng #2s của tôi", "don't", "#",
		"", "\xff\xfe", "ĐƠN HÀNG", "ｏｒｄｅｒ １２３", "🙂🙂", "a#b#c 1 2 3", "不", "k",
	} {
		f.Add(s)
	}
	a := newTest(f, Config{}, newFake())
	f.Fuzz(func(t *testing.T, text string) {
		for _, session := range []string{"s1", "s1"} { // twice: a pending cancel meets the same text
			r, err := a.Answer(context.Background(), Message{BuyerID: "alice", SessionID: session, Text: text, At: t0})
			if err != nil {
				var me *MessageError
				if !errors.As(err, &me) || !errors.Is(err, ErrInvalidMessage) {
					t.Fatalf("%q: error %v is not a MessageError", text, err)
				}
				if text != "" && utf8.ValidString(text) && len(text) <= TextBytesMaxDefault {
					t.Fatalf("%q: valid text rejected: %v", text, err)
				}
				return
			}
			if r.Language >= languageCount || r.Intent >= intentCount || r.Answer == "" {
				t.Fatalf("%q: incomplete reply %+v", text, r)
			}
			if r.Confidence < 0 || r.Confidence > 1 {
				t.Fatalf("%q: confidence %v", text, r.Confidence)
			}
			if (r.Intent == HumanAgent || r.Intent == Other) && !r.Handoff {
				t.Fatalf("%q: %s without a handoff", text, r.Intent)
			}
			if r.OrderID != "" && r.OrderID != alicePending && r.OrderID != alicePaid {
				t.Fatalf("%q: answered about order %q, not alice's", text, r.OrderID)
			}
		}
	})
}
