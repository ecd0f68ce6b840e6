package wire

import "google.golang.org/protobuf/encoding/protowire"

// Field numbers of fest.proto, one constant per field, named after the
// message and the field. TestCodecMatchesProto checks that this list is
// exactly the .proto's, so the codec can use no number the contract lacks.
const (
	OrderBatchRequestOrders protowire.Number = 1

	PlaceOrderBuyerID        protowire.Number = 1
	PlaceOrderItems          protowire.Number = 2
	PlaceOrderChannel        protowire.Number = 3
	PlaceOrderRegion         protowire.Number = 4
	PlaceOrderDealID         protowire.Number = 5
	PlaceOrderIdempotencyKey protowire.Number = 6
	// PlaceOrderRehearsalTime and SettleRehearsalTime are fest's
	// extension: the command's festival time on a server with the
	// rehearsal clock.
	PlaceOrderRehearsalTime protowire.Number = 7

	ItemSKUID    protowire.Number = 1
	ItemQuantity protowire.Number = 2

	OrderBatchResponseResults protowire.Number = 1

	OrderResultOrder protowire.Number = 1
	OrderResultError protowire.Number = 2

	OrderOrderID            protowire.Number = 1
	OrderStatus             protowire.Number = 2
	OrderBuyerID            protowire.Number = 3
	OrderMerchantID         protowire.Number = 4
	OrderItems              protowire.Number = 5
	OrderTotal              protowire.Number = 6
	OrderCurrency           protowire.Number = 7
	OrderChannel            protowire.Number = 8
	OrderRegion             protowire.Number = 9
	OrderDealID             protowire.Number = 10
	OrderCreatedAtUnixNanos protowire.Number = 11
	OrderPayByUnixNanos     protowire.Number = 12
	OrderReplayed           protowire.Number = 13

	OrderItemSKUID     protowire.Number = 1
	OrderItemQuantity  protowire.Number = 2
	OrderItemUnitPrice protowire.Number = 3
	OrderItemAmount    protowire.Number = 4

	ErrorCode      protowire.Number = 1
	ErrorMessage   protowire.Number = 2
	ErrorField     protowire.Number = 3
	ErrorSKUID     protowire.Number = 4
	ErrorAvailable protowire.Number = 5

	SettleBatchRequestActions protowire.Number = 1

	SettleOrderID       protowire.Number = 1
	SettleAmount        protowire.Number = 2
	SettleCancel        protowire.Number = 3
	SettleRehearsalTime protowire.Number = 4

	SettleBatchResponseResults protowire.Number = 1

	SettleResultOrderID            protowire.Number = 1
	SettleResultStatus             protowire.Number = 2
	SettleResultTotal              protowire.Number = 3
	SettleResultChangedAtUnixNanos protowire.Number = 4
	SettleResultError              protowire.Number = 5
)
