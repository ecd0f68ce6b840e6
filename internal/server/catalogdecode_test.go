package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// importLineSeeds are lines of every kind, well formed and not: the seeds
// of FuzzDecodeImportLine and the cases of TestDecodeImportLine.
var importLineSeeds = []string{
	`{"type":"brand","id":"b1","name":"Acme","country":"CN","first_festival":2015,"emerging":true,"last_year_gmv":12345}`,
	`{"type":"brand","brand_id":"b1","name":"Acme","country":"CN","emerging":false}`,
	`{"type":"merchant","id":"m1","name":"Shop","brand_id":"b1","kind":"trader","industry":"ind0001","region":"CN-ZJ"}`,
	`{"type":"merchant","merchant_id":"m1","name":"Shop","brand_id":"b1","kind":"brand_store"}`,
	`{"type":"sku","id":"s1","merchant_id":"m1","brand_id":"b1","title":"T","category":"c/d","price":100,"stock":5}`,
	`{"type":"sku","sku_id":"s1","merchant_id":"m1","brand_id":"b1","title":"T","price":100,"stock":5,"stock_expected":3}`,
	` { "type" : "sku" , "id" : "s1" , "title" : "Ünïcode" , "price" : -0 } `,
	`{"type":"sku","id":"s/1","price":1,"stock":1}`,
	`{"type":"sku","id":"s1","price":1.5}`, `{"type":"sku","id":"s1","price":1e3}`, `{"type":"sku","id":"s1","price":null}`,
	`{"type":"sku","id":"s1","price":1234567890123456789012}`, `{"type":"sku","id":"s1","stock":"5"}`,
	`{"type":"brand","first_festival":3000000000}`, `{"type":"brand","emerging":truex}`, `{"type":"brand","emerging":1}`,
	`{"type":"brand","id":"b1","title":"x"}`, `{"type":"brand","id":"b1","id":"b2"}`, `{"Type":"brand","id":"b1"}`,
	`{"type":"BRAND"}`, `{"type":""}`, `{}`, `{"id":"x"}`, `[]`, `null`, `{`, `{"type":"sku"} {}`,
	`{"type":"sku","id":"a\"b"}`, `{"type":"sku","id":"a\u0041"}`, "{\"type\":\"sku\",\"id\":\"a\x01\"}",
	"{\"type\":\"sku\",\"title\":\"\xff\"}", `{"type":"merchant","kind":7}`,
}

// decodeBoth decodes line with decodeImportLine (at an offset in a body
// of other bytes, as the handler does) and with parseImportLine alone.
func decodeBoth(line []byte) (fast, slow importLine, fastErr, slowErr *apiError, fastOK bool) {
	body := append([]byte("xx\n"), line...)
	all := string(body)
	fastOK = fastDecodeImportLine(all, 3, body[3:], &fast)
	fastErr = decodeImportLine(all, 3, body[3:], &fast)
	slowErr = parseImportLine(bytes.Clone(line), &slow)
	return
}

// checkSameLine fails unless the two decoders agree on line: the same
// error, or the same line and the same command (or validation error) from
// it.
func checkSameLine(t *testing.T, line []byte) {
	fast, slow, fastErr, slowErr, _ := decodeBoth(line)
	switch {
	case (fastErr == nil) != (slowErr == nil):
		t.Fatalf("%q: fast error %v, strict error %v", line, fastErr, slowErr)
	case fastErr != nil:
		if fastErr.Code != slowErr.Code || fastErr.Field != slowErr.Field || fastErr.Message != slowErr.Message {
			t.Fatalf("%q: fast error %+v, strict error %+v", line, fastErr, slowErr)
		}
		return
	case fast != slow:
		t.Fatalf("%q: fast %+v, strict %+v", line, fast, slow)
	}
	fc, fe := lineCommand(&fast)
	sc, se := lineCommand(&slow)
	if (fe == nil) != (se == nil) || fe != nil && (fe.Code != se.Code || fe.Field != se.Field || fe.Message != se.Message) {
		t.Fatalf("%q: validation %v vs %v", line, fe, se)
	}
	if fe == nil && fc != sc {
		t.Fatalf("%q: commands %s vs %s", line, fc, sc)
	}
}

// lineCommand validates a decoded line as the handler does and describes
// the command.
func lineCommand(in *importLine) (string, *apiError) {
	switch in.kind {
	case engine.KindUpsertBrand:
		var v engine.Brand
		aerr := in.fields.brand(in.id, &v)
		return strings.Join([]string{"brand", v.ID, v.Name, v.Country}, "|"), aerr
	case engine.KindUpsertMerchant:
		var v engine.Merchant
		aerr := in.fields.merchant(in.id, &v)
		return strings.Join([]string{"merchant", v.ID, v.Name, v.BrandID, v.Kind.String(), v.Industry, v.Region}, "|"), aerr
	case engine.KindUpsertSKU:
		var v engine.SKU
		aerr := in.fields.sku(in.id, &v)
		return strings.Join([]string{"sku", v.ID, v.MerchantID, v.BrandID, v.Title, v.Category}, "|"), aerr
	}
	panic("decoded line of no kind")
}

// fastSeeds is the number of importLineSeeds, first in the list, that the
// fast path takes.
const fastSeeds = 8

// TestDecodeImportLine checks that the line decoder's fast path takes the
// common lines and agrees with encoding/json on all of them.
func TestDecodeImportLine(t *testing.T) {
	for i, s := range importLineSeeds {
		if _, _, _, _, ok := decodeBoth([]byte(s)); ok != (i < fastSeeds) {
			t.Errorf("%q: fast path %t, want %t", s, ok, i < fastSeeds)
		}
		checkSameLine(t, []byte(s))
	}
}

// FuzzDecodeImportLine checks that the fast path of the import's line
// decoder and encoding/json agree on every line.
func FuzzDecodeImportLine(f *testing.F) {
	for _, s := range importLineSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkSameLine(t, bytes.TrimSpace(line))
	})
}

// TestImportLineAllocations keeps the decoding and checking of a line free
// of allocations.
func TestImportLineAllocations(t *testing.T) {
	line := []byte(importLineSeeds[4])
	all := string(line)
	var in importLine
	var sku engine.SKU
	n := testing.AllocsPerRun(100, func() {
		if aerr := decodeImportLine(all, 0, line, &in); aerr != nil {
			t.Fatal(aerr)
		}
		if aerr := in.fields.sku(in.id, &sku); aerr != nil {
			t.Fatal(aerr)
		}
	})
	if n != 0 {
		t.Fatalf("%.1f allocations per line", n)
	}
}

// TestImportFirstBadLine runs imports whose first bad line the checks of
// different kinds find, against a catalog of brand b and merchant m: the
// answer names the first bad line of the file, whichever kind it is, and
// nothing applies.
func TestImportFirstBadLine(t *testing.T) {
	eng := openTestEngine(t, 4)
	s := newTestServer(t)
	s.Attach(eng, nil, nil)
	defer s.Detach()
	post := func(body string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/catalog:import", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer a")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := post(`{"type":"brand","id":"b","name":"B","country":"CN"}
{"type":"merchant","id":"m","name":"M","brand_id":"b","kind":"trader"}
`); code != http.StatusOK {
		t.Fatalf("seed: %d %s", code, body)
	}
	sku := func(id, merchant, brand string) string {
		return `{"type":"sku","id":"` + id + `","merchant_id":"` + merchant + `","brand_id":"` + brand + `","title":"T","price":1,"stock":1}` + "\n"
	}
	merchant := func(id, brand string) string {
		return `{"type":"merchant","id":"` + id + `","name":"M","brand_id":"` + brand + `","kind":"trader"}` + "\n"
	}
	for _, tc := range []struct {
		name, body string
		line       int
		field      string
	}{
		// The SKU of line 1 names a merchant of the file whose brand does
		// not exist: line 1 is the first bad line, not the merchant's.
		{"sku before its merchant of an unknown brand", sku("s1", "m2", "nope") + merchant("m2", "nope"), 1, "brand_id"},
		{"merchant of an unknown brand before its sku", merchant("m2", "nope") + sku("s1", "m2", "nope"), 1, "brand_id"},
		{"sku of its merchant's brand after a bad merchant", merchant("m3", "nope") + sku("s1", "m", "b") + sku("s2", "m", "nope"), 1, "brand_id"},
		{"bad sku before a bad merchant", sku("s1", "m", "b") + sku("s2", "nope", "b") + merchant("m3", "nope"), 2, "merchant_id"},
		{"a sku of the catalog's merchant under another brand", sku("s1", "m", "b") + sku("s2", "m", "nope"), 2, "brand_id"},
	} {
		code, body := post(tc.body)
		want := `"line":` + strconv.Itoa(tc.line)
		if code != http.StatusNotFound || !strings.Contains(body, want) || !strings.Contains(body, `"field":"`+tc.field+`"`) {
			t.Errorf("%s: %d %s, want 404 at %s on %s", tc.name, code, body, want, tc.field)
		}
	}
	if n := eng.SKUCount(); n != 0 {
		t.Errorf("%d SKUs applied by refused imports", n)
	}
	if code, body := post(sku("s1", "m", "b") + merchant("m2", "b") + sku("s2", "m2", "b")); code != http.StatusOK || !strings.Contains(body, `"sku":2`) {
		t.Fatalf("good import: %d %s", code, body)
	}
}
