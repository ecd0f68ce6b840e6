package client

import (
	"context"
	"net/http"
)

// AssistantMessage is a buyer's message to the customer-service assistant.
type AssistantMessage struct {
	BuyerID   string `json:"buyer_id"`
	Text      string `json:"text"`
	SessionID string `json:"session_id"`
}

// AssistantReply is the assistant's answer.
type AssistantReply struct {
	Language   string  `json:"language"` // en, zh or vi
	Intent     string  `json:"intent"`
	Confidence float64 `json:"confidence"`
	Answer     string  `json:"answer"`
	Handoff    bool    `json:"handoff"`
	OrderID    *string `json:"order_id"`  // nil: the answer is about no order
	ParcelID   *string `json:"parcel_id"` // nil: about no parcel
}

// Ask sends a message to POST /v1/assistant/messages.
func (c *Client) Ask(ctx context.Context, m AssistantMessage) (AssistantReply, error) {
	var r AssistantReply
	err := c.do(ctx, http.MethodPost, "/v1/assistant/messages", nil, m, &r)
	return r, err
}
