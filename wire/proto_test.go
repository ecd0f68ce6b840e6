package wire

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// protoField is one field of fest.proto as the test's parser reads it.
type protoField struct {
	message, name, typ string
	number             int
	repeated           bool
}

var (
	messageRe = regexp.MustCompile(`(?s)message\s+(\w+)\s*\{(.*?)\}`)
	fieldRe   = regexp.MustCompile(`^\s*(repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+)\s*;`)
)

// parseProto reads the messages of fest.proto: the file is proto3 with
// flat messages only (no nesting, oneofs, maps or options on fields), which
// the parser refuses to read past by failing on any line it does not know.
func parseProto(t *testing.T) []protoField {
	t.Helper()
	src, err := os.ReadFile("fest.proto")
	if err != nil {
		t.Fatalf("read fest.proto: %v", err)
	}
	var fields []protoField
	for _, m := range messageRe.FindAllStringSubmatch(string(src), -1) {
		for _, line := range strings.Split(m[2], "\n") {
			line, _, _ = strings.Cut(line, "//")
			if strings.TrimSpace(line) == "" {
				continue
			}
			f := fieldRe.FindStringSubmatch(line)
			if f == nil {
				t.Fatalf("fest.proto: message %s: line %q is not a plain field", m[1], line)
			}
			n, _ := strconv.Atoi(f[4])
			fields = append(fields, protoField{message: m[1], name: f[3], typ: f[2], number: n, repeated: f[1] != ""})
		}
	}
	if len(fields) == 0 {
		t.Fatal("fest.proto: no messages read")
	}
	return fields
}

// constants is every field-number constant of fields.go with the field it
// names.
var constants = map[string]protowire.Number{
	"OrderBatchRequest.orders": OrderBatchRequestOrders,
	"PlaceOrder.buyer_id":      PlaceOrderBuyerID, "PlaceOrder.items": PlaceOrderItems, "PlaceOrder.channel": PlaceOrderChannel,
	"PlaceOrder.region": PlaceOrderRegion, "PlaceOrder.deal_id": PlaceOrderDealID, "PlaceOrder.idempotency_key": PlaceOrderIdempotencyKey,
	"PlaceOrder.rehearsal_time_unix_nanos": PlaceOrderRehearsalTime,
	"Item.sku_id":                          ItemSKUID, "Item.quantity": ItemQuantity,
	"OrderBatchResponse.results": OrderBatchResponseResults,
	"OrderResult.order":          OrderResultOrder, "OrderResult.error": OrderResultError,
	"Order.order_id": OrderOrderID, "Order.status": OrderStatus, "Order.buyer_id": OrderBuyerID, "Order.merchant_id": OrderMerchantID,
	"Order.items": OrderItems, "Order.total": OrderTotal, "Order.currency": OrderCurrency, "Order.channel": OrderChannel,
	"Order.region": OrderRegion, "Order.deal_id": OrderDealID, "Order.created_at_unix_nanos": OrderCreatedAtUnixNanos,
	"Order.pay_by_unix_nanos": OrderPayByUnixNanos, "Order.replayed": OrderReplayed,
	"OrderItem.sku_id": OrderItemSKUID, "OrderItem.quantity": OrderItemQuantity, "OrderItem.unit_price": OrderItemUnitPrice,
	"OrderItem.amount": OrderItemAmount,
	"Error.code":       ErrorCode, "Error.message": ErrorMessage, "Error.field": ErrorField, "Error.sku_id": ErrorSKUID,
	"Error.available":            ErrorAvailable,
	"SettleBatchRequest.actions": SettleBatchRequestActions,
	"Settle.order_id":            SettleOrderID, "Settle.amount": SettleAmount, "Settle.cancel": SettleCancel,
	"Settle.rehearsal_time_unix_nanos": SettleRehearsalTime,
	"SettleBatchResponse.results":      SettleBatchResponseResults,
	"SettleResult.order_id":            SettleResultOrderID, "SettleResult.status": SettleResultStatus, "SettleResult.total": SettleResultTotal,
	"SettleResult.changed_at_unix_nanos": SettleResultChangedAtUnixNanos, "SettleResult.error": SettleResultError,
}

// TestFieldConstantsMatchProto: fields.go has one constant per field of
// fest.proto, with its number, and none besides.
func TestFieldConstantsMatchProto(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range parseProto(t) {
		key := f.message + "." + f.name
		seen[key] = true
		c, ok := constants[key]
		switch {
		case !ok:
			t.Errorf("fest.proto field %s = %d has no constant in fields.go", key, f.number)
		case int(c) != f.number:
			t.Errorf("fest.proto field %s is %d, its constant %d", key, f.number, c)
		}
	}
	for key := range constants {
		if !seen[key] {
			t.Errorf("constant for %s names no field of fest.proto", key)
		}
	}
}

var scalarTypes = map[string]descriptorpb.FieldDescriptorProto_Type{
	"string": descriptorpb.FieldDescriptorProto_TYPE_STRING,
	"int32":  descriptorpb.FieldDescriptorProto_TYPE_INT32,
	"int64":  descriptorpb.FieldDescriptorProto_TYPE_INT64,
	"bool":   descriptorpb.FieldDescriptorProto_TYPE_BOOL,
}

// protoFile builds fest.proto's descriptor from the parsed fields, so that
// the stock protobuf runtime (dynamicpb) can read and write its messages.
func protoFile(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	fd := &descriptorpb.FileDescriptorProto{Name: proto.String("fest.proto"), Package: proto.String("fest.v1"), Syntax: proto.String("proto3")}
	index := map[string]*descriptorpb.DescriptorProto{}
	for _, f := range parseProto(t) {
		m := index[f.message]
		if m == nil {
			m = &descriptorpb.DescriptorProto{Name: proto.String(f.message)}
			index[f.message] = m
			fd.MessageType = append(fd.MessageType, m)
		}
		label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		if f.repeated {
			label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		}
		fp := &descriptorpb.FieldDescriptorProto{Name: proto.String(f.name), Number: proto.Int32(int32(f.number)), Label: &label, JsonName: proto.String(f.name)}
		if typ, ok := scalarTypes[f.typ]; ok {
			fp.Type = &typ
		} else {
			typ := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
			fp.Type, fp.TypeName = &typ, proto.String(".fest.v1."+f.typ)
		}
		m.Field = append(m.Field, fp)
	}
	file, err := protodesc.NewFile(fd, nil)
	if err != nil {
		t.Fatalf("fest.proto descriptor: %v", err)
	}
	return file
}

// noUnknown fails if m or a message inside it holds fields its descriptor
// lacks: a number the codec wrote that the .proto does not have, or a wire
// type that differs from the field's type.
func noUnknown(t *testing.T, at string, m protoreflect.Message) {
	t.Helper()
	if u := m.GetUnknown(); len(u) > 0 {
		t.Errorf("%s: the codec wrote %d bytes that fest.proto does not read: %x", at, len(u), u)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			for i := 0; i < v.List().Len(); i++ {
				noUnknown(t, at+"."+string(fd.Name())+"["+strconv.Itoa(i)+"]", v.List().Get(i).Message())
			}
		} else {
			noUnknown(t, at+"."+string(fd.Name()), v.Message())
		}
		return true
	})
}

// TestCodecMatchesProto: for each of the four bodies, a value with every
// field set that the hand-written codec encodes is read by the stock
// protobuf runtime from fest.proto as the expected message (field names,
// numbers and types), and that message as the runtime encodes it is
// decoded by the codec into the same value.
func TestCodecMatchesProto(t *testing.T) {
	file := protoFile(t)
	errorJSON := `{"code":"out_of_stock","message":"not enough stock for sku s2","field":"items[0].sku_id","sku_id":"s2","available":"3"}`
	orderValue := Order{OrderID: "abc", Status: "pending_payment", BuyerID: "u1", MerchantID: "m1",
		Items: []OrderItem{{SKUID: "s1", Quantity: 2, UnitPrice: 100, Amount: 200}}, Total: 200, Currency: "CNY",
		Channel: "live:c", Region: "CN-ZJ", DealID: "d", CreatedAtUnixNanos: 11, PayByUnixNanos: 12, Replayed: true}
	orderJSON := `{"order_id":"abc","status":"pending_payment","buyer_id":"u1","merchant_id":"m1",
		"items":[{"sku_id":"s1","quantity":2,"unit_price":"100","amount":"200"}],"total":"200","currency":"CNY",
		"channel":"live:c","region":"CN-ZJ","deal_id":"d","created_at_unix_nanos":"11","pay_by_unix_nanos":"12","replayed":true}`
	errValue := &Error{Code: "out_of_stock", Message: "not enough stock for sku s2", Field: "items[0].sku_id", SKUID: "s2", Available: 3}
	cases := []struct {
		message string
		encode  func() []byte
		decode  func(b []byte) (any, error)
		value   any
		json    string
	}{
		{
			message: "OrderBatchRequest",
			value: []PlaceOrder{{BuyerID: "u1", Items: []Item{{SKUID: "s1", Quantity: 2}, {SKUID: "s2", Quantity: 1}},
				Channel: "web", Region: "CN-ZJ", DealID: "d", IdempotencyKey: "k"}},
			json: `{"orders":[{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":2},{"sku_id":"s2","quantity":1}],
				"channel":"web","region":"CN-ZJ","deal_id":"d","idempotency_key":"k"}]}`,
		},
		{
			message: "OrderBatchResponse",
			value:   []Result{{Order: orderValue}, {Error: errValue}},
			json:    `{"results":[{"order":` + orderJSON + `},{"error":` + errorJSON + `}]}`,
		},
		{
			message: "SettleBatchRequest",
			value:   []Settle{{OrderID: "o1", Amount: 200}, {OrderID: "o2", Cancel: true}},
			json:    `{"actions":[{"order_id":"o1","amount":"200"},{"order_id":"o2","cancel":true}]}`,
		},
		{
			message: "SettleBatchResponse",
			value: []SettleResult{{OrderID: "o1", Status: "paid", Total: 200, ChangedAtUnixNanos: 13},
				{OrderID: "o2", Error: errValue}},
			json: `{"results":[{"order_id":"o1","status":"paid","total":"200","changed_at_unix_nanos":"13"},
				{"order_id":"o2","error":` + errorJSON + `}]}`,
		},
	}
	for _, c := range cases {
		t.Run(c.message, func(t *testing.T) {
			var encoded []byte
			var decode func([]byte) (any, error)
			switch v := c.value.(type) {
			case []PlaceOrder:
				encoded = AppendRequest(nil, v)
				decode = func(b []byte) (any, error) { return DecodeRequest(b, nil, 10) }
			case []Result:
				encoded = AppendResponse(nil, v)
				decode = func(b []byte) (any, error) { return DecodeResponse(b, nil) }
			case []Settle:
				encoded = AppendSettleRequest(nil, v)
				decode = func(b []byte) (any, error) { return DecodeSettleRequest(b, nil, 10) }
			case []SettleResult:
				encoded = AppendSettleResponse(nil, v)
				decode = func(b []byte) (any, error) { return DecodeSettleResponse(b, nil) }
			default:
				t.Fatalf("no codec for %T", v)
			}
			md := file.Messages().ByName(protoreflect.Name(c.message))
			if md == nil {
				t.Fatalf("fest.proto has no message %s", c.message)
			}
			// Codec → stock runtime.
			m := dynamicpb.NewMessage(md)
			if err := proto.Unmarshal(encoded, m); err != nil {
				t.Fatalf("stock runtime reads the codec's %s: %v", c.message, err)
			}
			noUnknown(t, c.message, m)
			got, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var gotJSON, wantJSON any
			if err := json.Unmarshal(got, &gotJSON); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(c.json), &wantJSON); err != nil {
				t.Fatalf("test's json: %v", err)
			}
			if !reflect.DeepEqual(gotJSON, wantJSON) {
				t.Errorf("codec's %s as fest.proto reads it:\n got %s\nwant %s", c.message, got, c.json)
			}
			// Stock runtime → codec.
			want := dynamicpb.NewMessage(md)
			if err := protojson.Unmarshal([]byte(c.json), want); err != nil {
				t.Fatalf("test's json as %s: %v", c.message, err)
			}
			b, err := proto.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			back, err := decode(b)
			if err != nil {
				t.Fatalf("codec reads the stock runtime's %s: %v", c.message, err)
			}
			if !reflect.DeepEqual(back, c.value) {
				t.Errorf("stock runtime's %s as the codec reads it:\n got %+v\nwant %+v", c.message, back, c.value)
			}
		})
	}
}
