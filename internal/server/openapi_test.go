package server

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

func newTestServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openTestEngine opens an engine of the given partitions on a temporary
// directory, without fsync or snapshots, closed when the test ends.
func openTestEngine(t *testing.T, partitions int) *engine.Engine {
	t.Helper()
	eng, err := engine.Open(engine.Config{Dir: t.TempDir(), Partitions: partitions, NoSync: true, SnapshotEveryBytes: -1})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng
}

// documentedRoutes returns "METHOD path" for every operation of doc.
func documentedRoutes(t *testing.T, doc []byte) map[string]map[string]any {
	t.Helper()
	var d struct {
		Paths map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	ops := map[string]map[string]any{}
	for path, item := range d.Paths {
		for method, o := range item {
			ops[strings.ToUpper(method)+" "+path] = o
		}
	}
	return ops
}

// TestOpenAPIMatchesRoutes keeps the document and the router in step: the
// routes are the patterns routes() registered, the operations those of the
// served document.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := newTestServer(t)
	routes := map[string]bool{}
	for _, p := range s.patterns {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			// A pattern without a method is a catch-all (the contract's 404
			// for unknown /v1 paths), not an operation.
			continue
		}
		routes[method+" "+strings.TrimSuffix(path, "{$}")] = true
	}
	if len(routes) < 10 {
		t.Fatalf("only %d routes recorded: %v", len(routes), s.patterns)
	}
	for _, doc := range [][]byte{openAPIDoc(), openAPI30Doc()} {
		ops := documentedRoutes(t, doc)
		var missing, extra []string
		for r := range routes {
			if ops[r] == nil {
				missing = append(missing, r)
			}
		}
		for r := range ops {
			if !routes[r] {
				extra = append(extra, r)
			}
		}
		sort.Strings(missing)
		sort.Strings(extra)
		if len(missing) > 0 {
			t.Errorf("routes missing from the OpenAPI document: %v", missing)
		}
		if len(extra) > 0 {
			t.Errorf("documented operations with no route: %v", extra)
		}
	}
}

// TestOpenAPIOperations checks what generators and linters need of every
// operation: a unique operationId, an explicit security list, and an error
// answer.
func TestOpenAPIOperations(t *testing.T) {
	ids := map[string]string{}
	for r, o := range documentedRoutes(t, openAPIDoc()) {
		id, _ := o["operationId"].(string)
		if id == "" {
			t.Errorf("%s: no operationId", r)
		} else if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share operationId %s", r, other, id)
		}
		ids[id] = r
		if _, ok := o["security"].([]any); !ok {
			t.Errorf("%s: no security list (public operations say [])", r)
		}
		has4xx := false
		for code := range o["responses"].(map[string]any) {
			has4xx = has4xx || code[0] == '4'
		}
		if !has4xx {
			t.Errorf("%s: no 4xx answer", r)
		}
	}
}

func TestOperationID(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"get", "/", "getIndex"},
		{"put", "/v1/skus/{sku_id}", "putSku"},
		{"post", "/v1/skus/{sku_id}/stock", "postSkuStock"},
		{"post", "/v1/orders:batch", "postOrdersBatch"},
		{"get", "/v1/buyers/{buyer_id}/orders", "getBuyerOrders"},
		{"get", "/v1/openapi-3.0.json", "getOpenapi30Json"},
		{"get", "/healthz", "getHealthz"},
	} {
		if got := operationID(c.method, c.path); got != c.want {
			t.Errorf("operationID(%s, %s) = %s, want %s", c.method, c.path, got, c.want)
		}
	}
}

// TestOpenAPI30 checks the 3.0 document has only 3.0 spellings.
func TestOpenAPI30(t *testing.T) {
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ty, ok := v["type"]; ok {
				if _, isString := ty.(string); !isString && path != "" && !strings.HasSuffix(path, "/properties") {
					t.Errorf("%s: type %v is not one name", path, ty)
				}
			}
			if _, ok := v["contentMediaType"]; ok {
				t.Errorf("%s: contentMediaType is 3.1 only", path)
			}
			for k, e := range v {
				walk(path+"/"+k, e)
			}
		case []any:
			for _, e := range v {
				walk(path+"[]", e)
			}
		}
	}
	var doc map[string]any
	if err := json.Unmarshal(openAPI30Doc(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["openapi"] != "3.0.3" {
		t.Fatalf("openapi %v", doc["openapi"])
	}
	walk("", doc)
	// The conversion must not change the 3.1 document it starts from.
	if !strings.Contains(string(openAPIDoc()), `"null"`) {
		t.Fatal("the 3.1 document lost its null types")
	}
}
