package assistant

import (
	"strconv"
	"time"
)

// The answers, one table per language. An entry with placeholders is a
// function; fixed answers are strings, so answering them allocates
// nothing.

// statusText names an order status for a buyer; an unknown status is
// shown as the API names it.
func statusText(l Language, status string) string {
	if s, ok := statusTexts[l][status]; ok {
		return s
	}
	return status
}

var statusTexts = [languageCount]map[string]string{
	English: {
		"pending_payment": "waiting for payment",
		"paid":            "paid and being prepared for shipment",
		"cancelled":       "cancelled",
		"expired":         "expired: it was not paid in time",
	},
	Chinese: {
		"pending_payment": "待付款",
		"paid":            "已付款，商家正在备货",
		"cancelled":       "已取消",
		"expired":         "已过期（未在时限内付款）",
	},
	Vietnamese: {
		"pending_payment": "đang chờ thanh toán",
		"paid":            "đã thanh toán và đang được chuẩn bị giao",
		"cancelled":       "đã bị hủy",
		"expired":         "đã hết hạn do chưa thanh toán kịp",
	},
}

// yuan renders an amount in fen as yuan with two decimals.
func yuan(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	cents := strconv.FormatInt(fen%100, 10)
	if len(cents) == 1 {
		cents = "0" + cents
	}
	return sign + strconv.FormatInt(fen/100, 10) + "." + cents
}

type texts struct {
	orderStatus   func(id, status string) string
	noOrders      string
	unknownOrder  func(id string) string
	unknownParcel func(id string) string
	parcel        func(id, status string, eta time.Time) string
	notShipped    func(id, status string) string
	cancelAsk     func(id string, totalFen int64) string
	cancelNot     func(id, status string) string
	cancelDone    func(id string) string
	cancelKept    func(id string) string
	cancelFailed  func(id string) string
	fixed         [intentCount]string // the answers that need no data
}

var replies = [languageCount]texts{
	English: {
		orderStatus: func(id, st string) string { return "Your order " + id + " is " + st + "." },
		noOrders:    "I couldn't find any orders on your account. If you ordered with another account, please sign in with that one and ask me again.",
		unknownOrder: func(id string) string {
			return "I couldn't find order " + id + " on your account. Please check the order number in your order confirmation."
		},
		unknownParcel: func(id string) string {
			return "I couldn't find parcel " + id + " on your account. Please check the tracking number."
		},
		parcel: func(id, st string, eta time.Time) string {
			s := "Your parcel " + id + " is " + st
			if !eta.IsZero() {
				s += ", expected on " + eta.UTC().Format("2 January")
			}
			return s + "."
		},
		notShipped: func(id, st string) string {
			return "Your order " + id + " is " + st + ". Tracking details appear here as soon as the merchant hands the parcel to the carrier."
		},
		cancelAsk: func(id string, total int64) string {
			return "Do you want to cancel order " + id + " (" + yuan(total) + " yuan)? Reply yes to cancel it or no to keep it."
		},
		cancelNot: func(id, st string) string {
			return "Order " + id + " is " + st + ", so it can no longer be cancelled here. For a paid order you can ask for a refund or a return."
		},
		cancelDone: func(id string) string { return "Done: order " + id + " is cancelled. Nothing was charged." },
		cancelKept: func(id string) string { return "OK, order " + id + " stays as it is." },
		cancelFailed: func(id string) string {
			return "Sorry, I couldn't cancel order " + id + " just now. A colleague will take over and help you."
		},
		fixed: [intentCount]string{
			RefundReturn:   "You can ask for a refund or a return within 7 days of delivery: My Orders → the order → Refund/Return. A paid order that has not shipped is refunded in full, and refunds reach your payment method within 1 to 3 business days.",
			PaymentHelp:    "An order waits for its payment for a limited time, then expires. Pay from My Orders → the order → Pay. If a payment failed, nothing was charged: please try again or use another payment method.",
			PromotionRules: "The cross-store discount: every 300 yuan in one checkout, across any stores, takes 50 yuan off, on top of each store's own coupons. The discount is shared among the orders of the checkout in proportion to their amounts.",
			DeliveryTime:   "Paid orders usually ship within 48 hours and arrive 2 to 5 days later; during the festival, allow one or two extra days.",
			ChangeAddress:  "You can change the delivery address until the parcel ships: My Orders → the order → Change address. Once it has shipped, ask me for an agent and we will contact the carrier.",
			Greeting:       "Hello! I can help with your orders, parcels, cancellations, refunds, payments and the festival's promotions. What can I do for you?",
			HumanAgent:     "I'm connecting you with a customer-service agent now. Please stay in this chat.",
			Other:          "Sorry, I'm not sure I understood. I'm passing your message to a colleague, who will reply shortly.",
		},
	},
	Chinese: {
		orderStatus: func(id, st string) string { return "您的订单 " + id + " 状态：" + st + "。" },
		noOrders:    "没有找到您账户下的订单。如果您是用其他账户下的单，请登录该账户后再问我。",
		unknownOrder: func(id string) string {
			return "在您的账户下没有找到订单 " + id + "，请核对订单确认信息中的订单号。"
		},
		unknownParcel: func(id string) string {
			return "在您的账户下没有找到包裹 " + id + "，请核对运单号。"
		},
		parcel: func(id, st string, eta time.Time) string {
			s := "您的包裹 " + id + " 状态：" + st
			if !eta.IsZero() {
				s += "，预计 " + eta.UTC().Format("1月2日") + " 送达"
			}
			return s + "。"
		},
		notShipped: func(id, st string) string {
			return "您的订单 " + id + " 状态：" + st + "。商家把包裹交给快递后，这里就能看到物流信息。"
		},
		cancelAsk: func(id string, total int64) string {
			return "确定要取消订单 " + id + "（" + yuan(total) + " 元）吗？回复“是”取消，回复“不”保留订单。"
		},
		cancelNot: func(id, st string) string {
			return "订单 " + id + " " + st + "，无法在这里取消。已付款的订单可以申请退款或退货。"
		},
		cancelDone: func(id string) string { return "已为您取消订单 " + id + "，不会扣款。" },
		cancelKept: func(id string) string { return "好的，订单 " + id + " 保持不变。" },
		cancelFailed: func(id string) string {
			return "抱歉，暂时无法取消订单 " + id + "，已为您转接人工客服。"
		},
		fixed: [intentCount]string{
			RefundReturn:   "签收后 7 天内可以申请退款或退货：我的订单 → 选择订单 → 退款/退货。已付款未发货的订单全额退款，款项 1 到 3 个工作日内原路退回。",
			PaymentHelp:    "订单在付款时限内等待付款，超时会自动关闭。请在 我的订单 → 选择订单 → 付款 完成支付。如果付款失败，不会扣款，请重试或换一种支付方式。",
			PromotionRules: "跨店满减：同一次结算中，不限店铺，每满 300 元减 50 元，可以与店铺优惠券叠加使用。优惠按各订单金额的比例分摊。",
			DeliveryTime:   "已付款的订单一般 48 小时内发货，发货后 2 到 5 天送达；大促期间请多预留一到两天。",
			ChangeAddress:  "包裹发出前都可以修改收货地址：我的订单 → 选择订单 → 修改地址。已经发货的话，请转人工客服，我们帮您联系快递。",
			Greeting:       "您好！我可以帮您查询订单和物流，办理取消、退款，解答付款和活动规则的问题。请问有什么可以帮您？",
			HumanAgent:     "正在为您转接人工客服，请不要离开对话。",
			Other:          "抱歉，我没有完全理解您的问题。已将您的消息转给人工客服，稍后会回复您。",
		},
	},
	Vietnamese: {
		orderStatus: func(id, st string) string { return "Đơn hàng " + id + " của bạn " + st + "." },
		noOrders:    "Mình không tìm thấy đơn hàng nào trong tài khoản của bạn. Nếu bạn đặt hàng bằng tài khoản khác, vui lòng đăng nhập tài khoản đó rồi hỏi lại nhé.",
		unknownOrder: func(id string) string {
			return "Mình không tìm thấy đơn hàng " + id + " trong tài khoản của bạn. Vui lòng kiểm tra lại mã đơn trong email xác nhận."
		},
		unknownParcel: func(id string) string {
			return "Mình không tìm thấy kiện hàng " + id + " trong tài khoản của bạn. Vui lòng kiểm tra lại mã vận đơn."
		},
		parcel: func(id, st string, eta time.Time) string {
			s := "Kiện hàng " + id + " của bạn: " + st
			if !eta.IsZero() {
				s += ", dự kiến giao ngày " + eta.UTC().Format("2/1")
			}
			return s + "."
		},
		notShipped: func(id, st string) string {
			return "Đơn hàng " + id + " của bạn " + st + ". Thông tin vận chuyển sẽ hiện ở đây ngay khi người bán giao kiện hàng cho đơn vị vận chuyển."
		},
		cancelAsk: func(id string, total int64) string {
			return "Bạn có chắc muốn hủy đơn hàng " + id + " (" + yuan(total) + " tệ) không? Trả lời \"có\" để hủy hoặc \"không\" để giữ đơn."
		},
		cancelNot: func(id, st string) string {
			return "Đơn hàng " + id + " " + st + " nên không thể hủy ở đây. Với đơn đã thanh toán, bạn có thể yêu cầu hoàn tiền hoặc trả hàng."
		},
		cancelDone: func(id string) string {
			return "Đã hủy đơn hàng " + id + " cho bạn. Bạn không bị trừ tiền."
		},
		cancelKept: func(id string) string { return "Vâng, đơn hàng " + id + " được giữ nguyên." },
		cancelFailed: func(id string) string {
			return "Xin lỗi, hiện mình chưa hủy được đơn hàng " + id + ". Nhân viên sẽ hỗ trợ bạn ngay."
		},
		fixed: [intentCount]string{
			RefundReturn:   "Bạn có thể yêu cầu hoàn tiền hoặc trả hàng trong 7 ngày sau khi nhận hàng: Đơn hàng của tôi → chọn đơn → Hoàn tiền/Trả hàng. Đơn đã thanh toán mà chưa giao được hoàn tiền toàn bộ, tiền về tài khoản trong 1 đến 3 ngày làm việc.",
			PaymentHelp:    "Mỗi đơn hàng chờ thanh toán trong một thời gian giới hạn, quá hạn sẽ tự hủy. Hãy thanh toán tại Đơn hàng của tôi → chọn đơn → Thanh toán. Nếu thanh toán lỗi thì bạn không bị trừ tiền, vui lòng thử lại hoặc dùng phương thức khác.",
			PromotionRules: "Giảm giá liên cửa hàng: trong một lần thanh toán, cứ mỗi 300 tệ ở bất kỳ cửa hàng nào sẽ được giảm 50 tệ, cộng dồn với mã giảm giá riêng của từng cửa hàng. Khoản giảm được chia cho các đơn theo tỷ lệ giá trị.",
			DeliveryTime:   "Đơn đã thanh toán thường được gửi đi trong 48 giờ và đến nơi sau 2 đến 5 ngày; trong dịp lễ hội, vui lòng chờ thêm một đến hai ngày.",
			ChangeAddress:  "Bạn có thể đổi địa chỉ giao hàng cho đến khi kiện hàng được gửi đi: Đơn hàng của tôi → chọn đơn → Đổi địa chỉ. Nếu đã gửi đi, hãy yêu cầu gặp nhân viên để chúng tôi liên hệ đơn vị vận chuyển.",
			Greeting:       "Xin chào! Mình có thể giúp bạn về đơn hàng, vận chuyển, hủy đơn, hoàn tiền, thanh toán và khuyến mãi. Bạn cần gì ạ?",
			HumanAgent:     "Mình đang chuyển bạn đến nhân viên chăm sóc khách hàng. Bạn vui lòng giữ cuộc trò chuyện nhé.",
			Other:          "Xin lỗi, mình chưa hiểu rõ ý bạn. Mình đã chuyển tin nhắn cho nhân viên, họ sẽ trả lời bạn ngay.",
		},
	},
}
