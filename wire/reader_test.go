package wire

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// FuzzReader: on any input, the reader's one-byte fast paths (tags,
// lengths, varints) read what protowire's general functions read, and fail
// where they fail.
func FuzzReader(f *testing.F) {
	f.Add([]byte{0x0a, 0x03, 'a', 'b', 'c', 0x10, 0x96, 0x01, 0x18, 0x05})
	f.Add([]byte{0x00, 0x01})             // field number 0
	f.Add([]byte{0x0a, 0x05, 'a'})        // truncated bytes
	f.Add([]byte{0x80, 0x01, 0x02, 0x7f}) // two-byte tag
	f.Add([]byte{0x0a, 0x80, 0x01, 'x'})  // two-byte length, truncated
	f.Add([]byte{0x08, 0xff, 0xff, 0xff}) // truncated varint
	f.Add(AppendResponse(nil, []Result{{Order: Order{OrderID: "o1", Status: "pending_payment", Total: 100}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := reader{b: b}
		ref := b
		for range 64 {
			num, typ, ok, err := r.next()
			if len(ref) == 0 {
				if ok || err != nil {
					t.Fatalf("next at end: ok %t err %v", ok, err)
				}
				return
			}
			rnum, rtyp, n := protowire.ConsumeTag(ref)
			if n < 0 {
				if err == nil {
					t.Fatalf("next read field %d where ConsumeTag fails", num)
				}
				return
			}
			if err != nil || !ok || num != rnum || typ != rtyp {
				t.Fatalf("next = %d %d %t %v, ConsumeTag = %d %d", num, typ, ok, err, rnum, rtyp)
			}
			ref = ref[n:]
			switch typ {
			case protowire.BytesType:
				v, err := r.bytes(path{order: -1, item: -1}, typ)
				rv, n := protowire.ConsumeBytes(ref)
				if (err != nil) != (n < 0) || err == nil && !bytes.Equal(v, rv) {
					t.Fatalf("bytes = %q %v, ConsumeBytes = %q %d", v, err, rv, n)
				}
				if n < 0 {
					return
				}
				ref = ref[n:]
			case protowire.VarintType:
				v, err := r.varint(path{order: -1, item: -1}, typ)
				rv, n := protowire.ConsumeVarint(ref)
				if (err != nil) != (n < 0) || err == nil && v != rv {
					t.Fatalf("varint = %d %v, ConsumeVarint = %d %d", v, err, rv, n)
				}
				if n < 0 {
					return
				}
				ref = ref[n:]
			default:
				return
			}
			if !bytes.Equal(r.b, ref) {
				t.Fatalf("reader at %d bytes left, protowire at %d", len(r.b), len(ref))
			}
		}
	})
}
