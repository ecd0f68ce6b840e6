package server

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
)

// exactKeys walks a JSON document that encoding/json has already accepted
// into a value of type t and reports the first object key that t does not
// name exactly: encoding/json matches keys case-insensitively and lets a
// repeated key overwrite the first, while the contract rejects any field
// it does not define. It returns the offending key's path and whether it
// was a duplicate; "" when every key is exact.
func exactKeys(body []byte, t reflect.Type) (path string, duplicate bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	w := keyWalker{dec: dec}
	w.value(t, "")
	return w.bad, w.duplicate
}

type keyWalker struct {
	dec       *json.Decoder
	bad       string
	duplicate bool
}

// value consumes one JSON value expected to decode into t.
func (w *keyWalker) value(t reflect.Type, path string) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := w.dec.Token()
	if err != nil || w.bad != "" {
		return
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return
	}
	switch delim {
	case '{':
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Map {
			elem = t.Elem()
		}
		seen := map[string]bool{}
		for w.dec.More() && w.bad == "" {
			kt, err := w.dec.Token()
			if err != nil {
				return
			}
			key, _ := kt.(string)
			sub := key
			if path != "" {
				sub = path + "." + key
			}
			if seen[key] {
				w.bad, w.duplicate = sub, true
				return
			}
			seen[key] = true
			next := elem
			if fields != nil {
				ft, ok := fields[key]
				if !ok {
					w.bad = sub
					return
				}
				next = ft
			}
			w.value(next, sub)
		}
		w.dec.Token() // '}'
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; w.dec.More() && w.bad == ""; i++ {
			w.value(elem, path+"["+itoa(i)+"]")
		}
		w.dec.Token() // ']'
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

var jsonFieldsCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields returns the JSON names of a struct's fields, as encoding/json
// sees them (embedded structs promote their fields), with their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := jsonFieldsCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if tag == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			for k, v := range jsonFields(ft) {
				m[k] = v
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	jsonFieldsCache.Store(t, m)
	return m
}
