package server

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/fest-platform/fest/internal/assistant"
)

// TestAppendReply checks the answer's JSON is valid and exactly the
// contract's fields, null ids included.
func TestAppendReply(t *testing.T) {
	for _, c := range []struct {
		r    assistant.Reply
		want map[string]any
	}{
		{assistant.Reply{Language: assistant.Chinese, Intent: assistant.OrderStatus, Confidence: 0.98765, Answer: "您的订单 \"2s\" 状态：已付款。", OrderID: "2s"},
			map[string]any{"language": "zh", "intent": "order_status", "confidence": 0.988, "answer": "您的订单 \"2s\" 状态：已付款。", "handoff": false, "order_id": "2s", "parcel_id": nil}},
		{assistant.Reply{Language: assistant.Vietnamese, Intent: assistant.Other, Confidence: 0.1, Answer: "Xin lỗi\n", Handoff: true, ParcelID: "SF1234567890"},
			map[string]any{"language": "vi", "intent": "other", "confidence": 0.1, "answer": "Xin lỗi\n", "handoff": true, "order_id": nil, "parcel_id": "SF1234567890"}},
	} {
		b := appendReply(nil, &c.r)
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("reply %s, want %v", b, c.want)
		}
	}
}

func TestAppendAssistantStats(t *testing.T) {
	var st assistant.Stats
	st.Questions, st.Automated, st.AutomatedShare = 4, 3, 0.75
	st.ByIntent[assistant.Greeting] = 4
	st.ByLanguage[assistant.Vietnamese] = 4
	b := appendAssistantStats(nil, st)
	var got struct {
		Questions      uint64            `json:"questions"`
		ByIntent       map[string]uint64 `json:"by_intent"`
		ByLanguage     map[string]uint64 `json:"by_language"`
		AutomatedShare float64           `json:"automated_share"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if got.Questions != 4 || got.AutomatedShare != 0.75 || len(got.ByIntent) != 11 || got.ByIntent["greeting"] != 4 ||
		len(got.ByLanguage) != 3 || got.ByLanguage["vi"] != 4 || got.ByLanguage["en"] != 0 {
		t.Fatalf("stats %s", b)
	}
}
