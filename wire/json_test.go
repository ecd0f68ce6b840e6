package wire

import (
	"encoding/json"
	"testing"
)

var jsonStringSeeds = []string{"", "plain-id_123", `quote " and \ backslash`, "tab\tnewline\ncr\r", "\x00\x01\x1f\x7f",
	"<script>&amp;</script>", "店铺 ☃ 🎉", "\u2028\u2029", "bad utf-8 \xff\xfe end", "\xe2\x82"}

// sameJSONString fails unless got is one valid JSON string that reads as
// the string encoding/json writes for s (the bytes may differ: \u0008
// where encoding/json writes \b).
func sameJSONString(t *testing.T, s string, got []byte) {
	t.Helper()
	want, _ := json.Marshal(s)
	var g, w string
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%q: %s is no JSON string: %v", s, got, err)
	}
	json.Unmarshal(want, &w)
	if g != w {
		t.Fatalf("%q: %s reads as %q, encoding/json's %s as %q", s, got, g, want, w)
	}
}

// TestAppendJSONString: the contract's JSON strings read as what
// encoding/json writes for the same string, and are byte for byte the same
// for the strings of the seeds.
func TestAppendJSONString(t *testing.T) {
	for _, s := range jsonStringSeeds {
		got := AppendJSONString(nil, s)
		sameJSONString(t, s, got)
		if want, _ := json.Marshal(s); string(got) != string(want) {
			t.Errorf("%q: got %s, encoding/json %s", s, got, want)
		}
	}
}

// FuzzAppendJSONString: for any string, AppendJSONString appends a JSON
// string that reads as what encoding/json writes.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range jsonStringSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendJSONString([]byte("x"), s)
		if got[0] != 'x' {
			t.Fatalf("%q: the buffer's first byte was overwritten", s)
		}
		sameJSONString(t, s, got[1:])
	})
}
