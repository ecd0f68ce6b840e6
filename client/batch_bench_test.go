package client

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fest-platform/fest/wire"
)

// benchOrders is the size of the benchmarks' batches, the load
// generator's.
const benchOrders = 1000

// placeAnswer is fest's answer to benchOrders orders: every order placed,
// whole (buyer, merchant, an item, currency, channel, region, times).
func placeAnswer() []byte {
	var body []byte
	for i := range benchOrders {
		r := wire.Result{Order: wire.Order{OrderID: strconv.FormatInt(int64(1<<40+i), 36), Status: "pending_payment", BuyerID: fmt.Sprintf("u%08d", i),
			MerchantID: "m00000042", Items: []wire.OrderItem{{SKUID: fmt.Sprintf("s%08d", i), Quantity: 1, UnitPrice: 29900, Amount: 29900}},
			Total: 29900, Currency: "CNY", Channel: "app", Region: "CN-ZJ", CreatedAtUnixNanos: 1 << 60, PayByUnixNanos: 1<<60 + 1}}
		body = wire.AppendResponseResult(body, &r)
	}
	return body
}

// fillBatch adds benchOrders orders of one item to b.
func fillBatch(b *OrderBatch, buyers, skus []string) {
	b.Reset()
	for i := range benchOrders {
		b.Add(wire.PlaceOrder{BuyerID: buyers[i], Channel: "app", Region: "CN-ZJ"})
		b.AddItem(skus[i], 1)
	}
}

func benchIDs(prefix string) []string {
	ids := make([]string, benchOrders)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%08d", prefix, i)
	}
	return ids
}

// answerServer is a loopback server that answers every request with body,
// chunked as fest's net/http frames a batch answer, at as little cost as a
// server can: one read of the request (two when its body comes apart from
// its head) and one write. Both transports of the client are measured
// against it, so the difference between them is the client's.
func answerServer(b *testing.B, body []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	answer := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nDate: Wed, 11 Nov 2020 00:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", len(body))
	answer = append(append(answer, body...), "\r\n0\r\n\r\n"...)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveAnswers(c, answer)
		}
	}()
	return "http://" + ln.Addr().String()
}

// serveAnswers reads requests framed by Content-Length and answers each.
func serveAnswers(c net.Conn, answer []byte) {
	defer c.Close()
	buf := make([]byte, 0, 1<<20)
	for {
		end, want := -1, 0
		for end < 0 || len(buf) < end+want {
			if len(buf) == cap(buf) {
				return
			}
			n, err := c.Read(buf[len(buf):cap(buf)])
			if err != nil {
				return
			}
			buf = buf[:len(buf)+n]
			if end < 0 {
				if end = bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
					end += 4
					head := bytes.ToLower(buf[:end])
					at := bytes.Index(head, []byte("content-length: "))
					if at < 0 {
						return
					}
					v := head[at+len("content-length: "):]
					want, _ = strconv.Atoi(string(v[:bytes.IndexByte(v, '\r')]))
				}
			}
		}
		buf = buf[:copy(buf, buf[end+want:])]
		if _, err := c.Write(answer); err != nil {
			return
		}
	}
}

// processCPU is the process's CPU time, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportPerOrder reports the loop's figures per order: wall and CPU
// nanoseconds (the CPU includes answerServer's) and allocations (the
// process's: answerServer makes none per request).
func reportPerOrder(b *testing.B, orders int, run func()) {
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := processCPU()
	for b.Loop() {
		run()
	}
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&after)
	n := float64(b.N * orders)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/order")
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/order")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/order")
}

// transports are the two ways the client sends a batch.
var transports = []struct {
	name string
	own  bool
}{{"net-http", false}, {"own-conns", true}}

// BenchmarkPlaceBatch is the client's side of one 1,000-order protobuf
// batch against answerServer: encoding, the HTTP round trip on loopback
// and decoding, over net/http and over the client's own connections.
func BenchmarkPlaceBatch(b *testing.B) {
	url := answerServer(b, placeAnswer())
	buyers, skus := benchIDs("u"), benchIDs("s")
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			c, err := New(Config{Addr: url, Conns: 1, OwnConns: tr.own})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var batch OrderBatch
			ctx := context.Background()
			reportPerOrder(b, benchOrders, func() {
				fillBatch(&batch, buyers, skus)
				if err := c.PlaceBatch(ctx, &batch); err != nil {
					b.Fatal(err)
				}
			})
			if batch.Results[benchOrders-1].Status != "pending_payment" {
				b.Fatalf("result %+v", batch.Results[benchOrders-1])
			}
		})
	}
}

// BenchmarkSettleBatch is SettleBatch's: 1,000 payments.
func BenchmarkSettleBatch(b *testing.B) {
	ids := make([]string, benchOrders)
	var body []byte
	for i := range ids {
		ids[i] = strconv.FormatInt(int64(1<<40+i), 36)
		body = wire.AppendSettleResult(body, &wire.SettleResult{OrderID: ids[i], Status: "paid", Total: 29900, ChangedAtUnixNanos: 1 << 60})
	}
	url := answerServer(b, body)
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			c, err := New(Config{Addr: url, Conns: 1, OwnConns: tr.own})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var batch SettleBatch
			ctx := context.Background()
			reportPerOrder(b, benchOrders, func() {
				batch.Reset()
				for _, id := range ids {
					batch.Pay(id, 29900)
				}
				if err := c.SettleBatch(ctx, &batch); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkDecodePlaceAnswer is the decoding of a 1,000-order answer into
// Results alone: the strict view and fillResults, against the lean
// decoder.
func BenchmarkDecodePlaceAnswer(b *testing.B) {
	answer := placeAnswer()
	var batch OrderBatch
	fillBatch(&batch, benchIDs("u"), benchIDs("s"))
	batch.resp = answer
	b.Run("strict", func(b *testing.B) {
		batch.view.SkipItems = true
		reportPerOrder(b, benchOrders, func() {
			if err := batch.decodeView(); err != nil {
				b.Fatal(err)
			}
			batch.fillResults()
		})
	})
	b.Run("lean", func(b *testing.B) {
		reportPerOrder(b, benchOrders, func() {
			if !batch.decodeLean() {
				b.Fatal("lean decoder declined")
			}
		})
	})
}

// BenchmarkEncodeBatch is the encoding of a 1,000-order request: wire's
// two passes over the orders once they are all added, against Add and
// AddItem encoding each order as it comes.
func BenchmarkEncodeBatch(b *testing.B) {
	buyers, skus := benchIDs("u"), benchIDs("s")
	b.Run("wire.AppendRequest", func(b *testing.B) {
		orders := make([]wire.PlaceOrder, benchOrders)
		items := make([]wire.Item, benchOrders)
		var body []byte
		reportPerOrder(b, benchOrders, func() {
			for i := range orders {
				items[i] = wire.Item{SKUID: skus[i], Quantity: 1}
				orders[i] = wire.PlaceOrder{BuyerID: buyers[i], Channel: "app", Region: "CN-ZJ", Items: items[i : i+1]}
			}
			body = wire.AppendRequest(body[:0], orders)
		})
	})
	b.Run("Add", func(b *testing.B) {
		var batch OrderBatch
		reportPerOrder(b, benchOrders, func() {
			fillBatch(&batch, buyers, skus)
			batch.encodeProto()
		})
	})
}
