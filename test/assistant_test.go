package test

import (
	"strings"
	"testing"
)

// TestAssistant asks the customer-service assistant about real orders of a
// running fest: their live status in the question's language, another
// buyer's order, an unknown buyer, the cancel confirmation through the
// engine, the contract's errors and the public stats.
func TestAssistant(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"a1": 100})
	place := func(buyer string) order {
		return decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": buyer, "items": []map[string]any{{"sku_id": "a1", "quantity": 1}}}).Body)
	}
	pending := place("u1")
	paid := place("u1")
	f.must(200, "POST", "/v1/orders/"+paid.OrderID+"/pay", storefrontToken, map[string]any{"amount": paid.Total})
	place("u2")

	asked := 0
	ask := func(buyer, session, text string) map[string]any {
		t.Helper()
		asked++
		return f.must(200, "POST", "/v1/assistant/messages", storefrontToken, map[string]any{"buyer_id": buyer, "text": text, "session_id": session}).json(t)
	}
	check := func(r map[string]any, lang, intent string, orderID any, answerHas string) {
		t.Helper()
		if r["language"] != lang || r["intent"] != intent || r["order_id"] != orderID || !strings.Contains(r["answer"].(string), answerHas) {
			t.Fatalf("reply %v, want %s %s about order %v with %q in the answer", r, lang, intent, orderID, answerHas)
		}
		if _, ok := r["parcel_id"]; !ok {
			t.Fatalf("reply %v has no parcel_id", r)
		}
		if c, ok := r["confidence"].(float64); !ok || c < 0 || c > 1 {
			t.Fatalf("reply %v: confidence out of 0 to 1", r)
		}
	}

	// The named order, then the latest (the paid one, placed last).
	check(ask("u1", "a", "what's the status of order "+paid.OrderID), "en", "order_status", paid.OrderID, "paid and being prepared")
	check(ask("u1", "a", "我的订单怎么样了"), "zh", "order_status", paid.OrderID, "已付款")
	check(ask("u1", "a", "don hang "+pending.OrderID+" sao roi"), "vi", "order_status", pending.OrderID, "chờ thanh toán")
	// Another buyer's order is unknown; so is every order of a stranger.
	check(ask("u2", "b", "what's the status of order "+paid.OrderID), "en", "order_status", nil, "couldn't find order "+paid.OrderID)
	check(ask("nobody", "c", "where is my order"), "en", "order_status", nil, "couldn't find any orders")

	// Cancel: asked, nothing happens until the yes of the same session.
	check(ask("u1", "d", "hủy đơn "+pending.OrderID), "vi", "cancel_order", pending.OrderID, pending.OrderID)
	if o := decodeOrder(t, f.must(200, "GET", "/v1/orders/"+pending.OrderID, storefrontToken, nil).Body); o.Status != "pending_payment" {
		t.Fatalf("order %s before the yes, want pending_payment", o.Status)
	}
	ask("u1", "other-session", "có")
	if o := decodeOrder(t, f.must(200, "GET", "/v1/orders/"+pending.OrderID, storefrontToken, nil).Body); o.Status != "pending_payment" {
		t.Fatalf("order %s after a yes in another session, want pending_payment", o.Status)
	}
	check(ask("u1", "d", "có"), "vi", "cancel_order", pending.OrderID, "Đã hủy")
	if o := decodeOrder(t, f.must(200, "GET", "/v1/orders/"+pending.OrderID, storefrontToken, nil).Body); o.Status != "cancelled" {
		t.Fatalf("order %s after the yes, want cancelled", o.Status)
	}
	r := ask("u1", "e", "i want to talk to a human")
	if r["handoff"] != true || r["intent"] != "human_agent" {
		t.Fatalf("reply %v, want human_agent with handoff", r)
	}

	// The contract's errors.
	const path = "/v1/assistant/messages"
	f.expectErr(401, "unauthenticated", "", "POST", path, "", map[string]any{"buyer_id": "u1", "text": "hi", "session_id": "s"})
	f.expectErr(403, "forbidden", "", "POST", path, adminToken, map[string]any{"buyer_id": "u1", "text": "hi", "session_id": "s"})
	f.expectErr(422, "invalid_argument", "buyer_id", "POST", path, storefrontToken, map[string]any{"text": "hi", "session_id": "s"})
	f.expectErr(422, "invalid_argument", "text", "POST", path, storefrontToken, map[string]any{"buyer_id": "u1", "session_id": "s"})
	f.expectErr(422, "invalid_argument", "session_id", "POST", path, storefrontToken, map[string]any{"buyer_id": "u1", "text": "hi"})
	f.expectErr(422, "invalid_argument", "text", "POST", path, storefrontToken, map[string]any{"buyer_id": "u1", "text": strings.Repeat("a", 2001), "session_id": "s"})
	f.expectErr(413, "too_large", "", "POST", path, storefrontToken, map[string]any{"buyer_id": "u1", "text": strings.Repeat("a", 1<<20), "session_id": "s"})
	f.expectErr(400, "invalid_json", "", "POST", path, storefrontToken, `{"buyer_id":`)

	// The stats count the answered questions only.
	st := f.must(200, "GET", "/v1/assistant/stats", "", nil).json(t)
	if st["questions"] != float64(asked) {
		t.Fatalf("stats %v, want %d questions", st, asked)
	}
	byIntent := st["by_intent"].(map[string]any)
	if len(byIntent) != 11 || byIntent["order_status"] != 5.0 || byIntent["human_agent"] != 1.0 {
		t.Fatalf("by_intent %v", byIntent)
	}
	byLang := st["by_language"].(map[string]any)
	if byLang["en"] != 4.0 || byLang["zh"] != 1.0 || byLang["vi"] != float64(asked-5) {
		t.Fatalf("by_language %v", byLang)
	}
	if share := st["automated_share"].(float64); share <= 0 || share >= 1 {
		t.Fatalf("automated_share %v, want between 0 and 1 (one handoff)", share)
	}
	metrics := string(f.must(200, "GET", "/metrics", "", nil).Body)
	for _, line := range []string{`fest_assistant_questions_total{intent="order_status"} 5`, `fest_assistant_questions_by_language_total{language="zh"} 1`} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics has no line %s", line)
		}
	}
}
