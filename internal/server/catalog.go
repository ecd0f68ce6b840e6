package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

type brandJSON struct {
	Name          *string `json:"name"`
	Country       *string `json:"country"`
	FirstFestival int32   `json:"first_festival"`
	Emerging      bool    `json:"emerging"`
	LastYearGMV   int64   `json:"last_year_gmv"`
}

type merchantJSON struct {
	Name     *string `json:"name"`
	BrandID  *string `json:"brand_id"`
	Kind     *string `json:"kind"`
	Industry string  `json:"industry"`
	Region   string  `json:"region"`
}

type skuJSON struct {
	MerchantID *string `json:"merchant_id"`
	BrandID    *string `json:"brand_id"`
	Title      *string `json:"title"`
	Category   string  `json:"category"`
	Price      *int64  `json:"price"`
	Stock      *int64  `json:"stock"`
	// StockExpected is the stock_available the caller last read: on an
	// existing SKU, stock applies only if it still matches.
	StockExpected *int64 `json:"stock_expected"`
}

func required(field string) *apiError {
	return errInvalidArgument(field, field+" is required")
}

func textField(field string, v *string) (string, *apiError) {
	if aerr := textValue(field, optional(v)); aerr != nil {
		return "", aerr
	}
	return *v, nil
}

func idField(field string, v *string) (string, *apiError) {
	if aerr := idValue(field, optional(v)); aerr != nil {
		return "", aerr
	}
	return *v, nil
}

func isCountry(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

// catalogFields are the fields of a brand, merchant or SKU as a PUT body
// or an import line gives them, decoded by encoding/json (the JSON structs
// above) or by the import's line decoder (catalogdecode.go): both build the
// command through the same checks, so they answer alike. A text or id
// field absent is "", which the checks treat as absent; has says which of
// the fields whose absence differs from their zero value were given.
type catalogFields struct {
	name, country, brandID, merchantID, kind, industry, region, title, category string

	firstFestival int32
	emerging      bool
	lastYearGMV   int64
	price         int64
	stock         int64
	stockExpected int64

	has uint8 // fieldHas bits
}

// Bits of catalogFields.has.
const (
	hasCountry uint8 = 1 << iota
	hasKind
	hasPrice
	hasStock
	hasStockExpected
)

func optional(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (f *catalogFields) setInt(bit uint8, dst *int64, v *int64) {
	if v != nil {
		f.has |= bit
		*dst = *v
	}
}

func (b *brandJSON) fields() catalogFields {
	f := catalogFields{name: optional(b.Name), country: optional(b.Country), firstFestival: b.FirstFestival, emerging: b.Emerging, lastYearGMV: b.LastYearGMV}
	if b.Country != nil {
		f.has |= hasCountry
	}
	return f
}

func (m *merchantJSON) fields() catalogFields {
	f := catalogFields{name: optional(m.Name), brandID: optional(m.BrandID), kind: optional(m.Kind), industry: m.Industry, region: m.Region}
	if m.Kind != nil {
		f.has |= hasKind
	}
	return f
}

func (k *skuJSON) fields() catalogFields {
	f := catalogFields{merchantID: optional(k.MerchantID), brandID: optional(k.BrandID), title: optional(k.Title), category: k.Category}
	f.setInt(hasPrice, &f.price, k.Price)
	f.setInt(hasStock, &f.stock, k.Stock)
	f.setInt(hasStockExpected, &f.stockExpected, k.StockExpected)
	return f
}

func textValue(field, v string) *apiError {
	if v == "" {
		return required(field)
	}
	if len(v) > textBytesMax {
		return errInvalidArgument(field, field+" is at most "+strconv.Itoa(textBytesMax)+" bytes")
	}
	return nil
}

func idValue(field, v string) *apiError {
	if v == "" {
		return required(field)
	}
	if !validID(v) {
		return errInvalidArgument(field, field+idRuleMsg)
	}
	return nil
}

func (b *brandJSON) command(id string) (engine.Command, *apiError) {
	f := b.fields()
	out := new(engine.Brand)
	if aerr := f.brand(id, out); aerr != nil {
		return engine.Command{}, aerr
	}
	return engine.Command{Kind: engine.KindUpsertBrand, Brand: out}, nil
}

func (m *merchantJSON) command(id string) (engine.Command, *apiError) {
	f := m.fields()
	out := new(engine.Merchant)
	if aerr := f.merchant(id, out); aerr != nil {
		return engine.Command{}, aerr
	}
	return engine.Command{Kind: engine.KindUpsertMerchant, Merchant: out}, nil
}

func (k *skuJSON) command(id string) (engine.Command, *apiError) {
	f := k.fields()
	out := new(engine.SKU)
	if aerr := f.sku(id, out); aerr != nil {
		return engine.Command{}, aerr
	}
	return engine.Command{Kind: engine.KindUpsertSKU, SKU: out}, nil
}

// brand checks f as brand id and fills out.
func (f *catalogFields) brand(id string, out *engine.Brand) *apiError {
	if !validID(id) {
		return errInvalidArgument("brand_id", "invalid brand_id")
	}
	if aerr := textValue("name", f.name); aerr != nil {
		return aerr
	}
	if f.has&hasCountry == 0 {
		return required("country")
	}
	if !isCountry(f.country) {
		return errInvalidArgument("country", "country must be an ISO 3166-1 alpha-2 code such as US or CN")
	}
	if f.firstFestival != 0 && (f.firstFestival < 2009 || f.firstFestival > 2100) {
		return errInvalidArgument("first_festival", "first_festival must be a year from 2009 (the first 11.11)")
	}
	if f.lastYearGMV < 0 {
		return errInvalidArgument("last_year_gmv", "last_year_gmv must not be negative")
	}
	*out = engine.Brand{ID: id, Name: f.name, Country: f.country, FirstFestival: f.firstFestival, Emerging: f.emerging, LastYearGMV: f.lastYearGMV}
	return nil
}

// merchant checks f as merchant id and fills out.
func (f *catalogFields) merchant(id string, out *engine.Merchant) *apiError {
	if !validID(id) {
		return errInvalidArgument("merchant_id", "invalid merchant_id")
	}
	if aerr := textValue("name", f.name); aerr != nil {
		return aerr
	}
	if aerr := idValue("brand_id", f.brandID); aerr != nil {
		return aerr
	}
	if f.has&hasKind == 0 {
		return required("kind")
	}
	kind, ok := engine.ParseMerchantKind(f.kind)
	if !ok {
		return errInvalidArgument("kind", "kind must be brand_store, factory or trader")
	}
	if len(f.industry) > textBytesMax || len(f.region) > regionBytesMax {
		field := "industry"
		if len(f.industry) <= textBytesMax {
			field = "region"
		}
		return errInvalidArgument(field, field+" too long")
	}
	*out = engine.Merchant{ID: id, Name: f.name, BrandID: f.brandID, Kind: kind, Industry: f.industry, Region: f.region}
	return nil
}

// sku checks f as SKU id and fills out.
func (f *catalogFields) sku(id string, out *engine.SKU) *apiError {
	if !validID(id) {
		return errInvalidArgument("sku_id", "invalid sku_id")
	}
	if aerr := idValue("merchant_id", f.merchantID); aerr != nil {
		return aerr
	}
	if aerr := idValue("brand_id", f.brandID); aerr != nil {
		return aerr
	}
	if aerr := textValue("title", f.title); aerr != nil {
		return aerr
	}
	if len(f.category) > textBytesMax {
		return errInvalidArgument("category", "category is at most "+strconv.Itoa(textBytesMax)+" bytes")
	}
	if f.has&hasPrice == 0 {
		return required("price")
	}
	if f.price < 0 || f.price > amountMax/1000 {
		return errInvalidArgument("price", "price out of range")
	}
	sku := engine.SKU{ID: id, MerchantID: f.merchantID, BrandID: f.brandID, Title: f.title, Category: f.category, Price: f.price}
	// Whether the SKU exists, and so whether stock may be omitted and
	// needs stock_expected, the engine decides: it alone knows at the
	// moment the upsert applies.
	if f.has&hasStock == 0 {
		if f.has&hasStockExpected != 0 {
			return errInvalidArgument("stock_expected", "stock_expected is given without stock")
		}
		sku.StockOmitted = true
	} else {
		if f.stock < 0 || f.stock > skuTotalMax {
			return errInvalidArgument("stock", "stock must be 0 to "+strconv.Itoa(skuTotalMax))
		}
		sku.Stock = f.stock
	}
	if f.has&hasStockExpected != 0 {
		if f.stockExpected < 0 || f.stockExpected > skuTotalMax {
			return errInvalidArgument("stock_expected", "stock_expected must be 0 to "+strconv.Itoa(skuTotalMax))
		}
		sku.StockCompared, sku.StockExpected = true, f.stockExpected
	}
	*out = sku
	return nil
}

func appendBrand(b []byte, br *engine.Brand) []byte {
	b = append(b, `{"brand_id":`...)
	b = appendString(b, br.ID)
	b = append(b, `,"name":`...)
	b = appendString(b, br.Name)
	b = append(b, `,"country":`...)
	b = appendString(b, br.Country)
	b = append(b, `,"first_festival":`...)
	b = strconv.AppendInt(b, int64(br.FirstFestival), 10)
	b = append(b, `,"emerging":`...)
	b = strconv.AppendBool(b, br.Emerging)
	b = append(b, `,"last_year_gmv":`...)
	b = strconv.AppendInt(b, br.LastYearGMV, 10)
	return append(b, "}\n"...)
}

func appendMerchant(b []byte, m *engine.Merchant) []byte {
	b = append(b, `{"merchant_id":`...)
	b = appendString(b, m.ID)
	b = append(b, `,"name":`...)
	b = appendString(b, m.Name)
	b = append(b, `,"brand_id":`...)
	b = appendString(b, m.BrandID)
	b = append(b, `,"kind":`...)
	b = appendString(b, m.Kind.String())
	b = append(b, `,"industry":`...)
	b = appendString(b, m.Industry)
	b = append(b, `,"region":`...)
	b = appendString(b, m.Region)
	return append(b, "}\n"...)
}

func appendSKU(b []byte, res *engine.Result) []byte {
	k := res.SKU
	b = append(b, `{"sku_id":`...)
	b = appendString(b, k.ID)
	b = append(b, `,"merchant_id":`...)
	b = appendString(b, k.MerchantID)
	b = append(b, `,"brand_id":`...)
	b = appendString(b, k.BrandID)
	b = append(b, `,"title":`...)
	b = appendString(b, k.Title)
	b = append(b, `,"category":`...)
	b = appendString(b, k.Category)
	b = append(b, `,"price":`...)
	b = strconv.AppendInt(b, k.Price, 10)
	b = append(b, `,"currency":"CNY","stock_available":`...)
	b = strconv.AppendInt(b, res.Available, 10)
	b = append(b, `,"stock_reserved":`...)
	b = strconv.AppendInt(b, res.Reserved, 10)
	b = append(b, `,"sold":`...)
	b = strconv.AppendInt(b, res.Sold, 10)
	return append(b, "}\n"...)
}

// decodeBody reads a single-object body into v.
func (s *Server) decodeBody(r *http.Request, v any) *apiError {
	bp, aerr := s.readBody(r, s.cfg.BodyBytesMax)
	if aerr != nil {
		return aerr
	}
	defer s.putBuf(bp)
	return decodeStrict(*bp, v)
}

// putCommand reads a PUT's body into in and builds its command with the id
// from the path, answering the error itself if that fails; in a cluster it
// forwards the command to its partition's owner. It returns the command and
// the writer to answer on, with here true when the command is to be applied
// on this node.
func (s *Server) putCommand(w http.ResponseWriter, r *http.Request, be *backend, in catalogInput, idParam string) (engine.Command, http.ResponseWriter, bool) {
	bp, aerr := s.readBody(r, s.cfg.BodyBytesMax)
	if aerr != nil {
		s.writeError(w, aerr)
		return engine.Command{}, w, false
	}
	defer s.putBuf(bp)
	if aerr := decodeStrict(*bp, in); aerr != nil {
		s.writeError(w, aerr)
		return engine.Command{}, w, false
	}
	cmd, aerr := in.command(r.PathValue(idParam))
	if aerr != nil {
		s.writeError(w, aerr)
		return engine.Command{}, w, false
	}
	// In a cluster the write goes to its partition's owner.
	w, here := s.writeHere(w, r, be, &cmd, *bp)
	return cmd, w, here
}

// catalogInput is a decoded catalog PUT body: it names its command.
type catalogInput interface {
	command(id string) (engine.Command, *apiError)
}

// putCatalog runs a catalog PUT: decode the body into in, build the command
// with the id from the path, apply it, and answer with render's body.
func (s *Server) putCatalog(w http.ResponseWriter, r *http.Request, be *backend, in catalogInput, idParam string, render func(cmd *engine.Command, res *engine.Result) []byte) {
	cmd, w, here := s.putCommand(w, r, be, in, idParam)
	if !here {
		return
	}
	res := be.eng.Do(r.Context(), cmd)
	if !res.OK() {
		s.writeError(w, resultError(&res))
		return
	}
	writeJSON(w, http.StatusOK, render(&cmd, &res))
}

func (s *Server) handlePutBrand(w http.ResponseWriter, r *http.Request, be *backend) {
	s.putCatalog(w, r, be, &brandJSON{}, "brand_id", func(cmd *engine.Command, _ *engine.Result) []byte {
		return appendBrand(nil, cmd.Brand)
	})
}

func (s *Server) handlePutMerchant(w http.ResponseWriter, r *http.Request, be *backend) {
	s.putCatalog(w, r, be, &merchantJSON{}, "merchant_id", func(cmd *engine.Command, _ *engine.Result) []byte {
		return appendMerchant(nil, cmd.Merchant)
	})
}

func (s *Server) handlePutSKU(w http.ResponseWriter, r *http.Request, be *backend) {
	s.putCatalog(w, r, be, &skuJSON{}, "sku_id", func(cmd *engine.Command, res *engine.Result) []byte {
		if res.SKU == nil {
			res.SKU = cmd.SKU
		}
		return appendSKU(nil, res)
	})
}

func (s *Server) handleGetSKU(w http.ResponseWriter, r *http.Request, be *backend) {
	id := r.PathValue("sku_id")
	if !validID(id) {
		s.writeError(w, errNotFound("sku_id", "no sku "+strconv.Quote(id)))
		return
	}
	res := be.eng.Do(r.Context(), engine.Command{Kind: engine.KindGetSKU, SKUID: id})
	if !res.OK() {
		e := resultError(&res)
		if res.Code == engine.CodeNotFound {
			e.Message = "no sku " + strconv.Quote(id)
		}
		s.writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, appendSKU(nil, &res))
}

type stockJSON struct {
	Delta *int64 `json:"delta"`
}

func (s *Server) handleAdjustStock(w http.ResponseWriter, r *http.Request, be *backend) {
	id := r.PathValue("sku_id")
	var in stockJSON
	if aerr := s.decodeBody(r, &in); aerr != nil {
		s.writeError(w, aerr)
		return
	}
	if in.Delta == nil {
		s.writeError(w, required("delta"))
		return
	}
	if *in.Delta < -skuTotalMax || *in.Delta > skuTotalMax {
		s.writeError(w, errInvalidArgument("delta", "delta out of range"))
		return
	}
	if !validID(id) {
		s.writeError(w, errNotFound("sku_id", "no sku "+strconv.Quote(id)))
		return
	}
	res := be.eng.Do(r.Context(), engine.Command{Kind: engine.KindAdjustStock, SKUID: id, Delta: *in.Delta})
	if !res.OK() {
		s.writeError(w, resultError(&res))
		return
	}
	if res.SKU == nil {
		res = be.eng.Do(r.Context(), engine.Command{Kind: engine.KindGetSKU, SKUID: id})
		if !res.OK() {
			s.writeError(w, resultError(&res))
			return
		}
	}
	writeJSON(w, http.StatusOK, appendSKU(nil, &res))
}

// Import lines: one object each, "type" plus the fields of the matching
// PUT and the object's id, as "id" or as brand_id / merchant_id / sku_id.
type importBrand struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	BrandID string `json:"brand_id"`
	brandJSON
}

type importMerchant struct {
	Type       string `json:"type"`
	ID         string `json:"id"`
	MerchantID string `json:"merchant_id"`
	merchantJSON
}

type importSKU struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	SKUID string `json:"sku_id"`
	skuJSON
}

// importBatchMax is the number of commands of one engine batch during an
// import: every batch of a kind is submitted at once, so the partitions
// work through a whole request without waiting for its batches one by one.
const importBatchMax = 4096

func lineError(line int, e *apiError) *apiError {
	e.Line = line
	e.Message = "line " + strconv.Itoa(line) + ": " + e.Message
	return e
}

func firstID(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// parseImportLine decodes one NDJSON line with encoding/json, strictly:
// the decoder of the lines decodeImportLine's fast path is not sure of.
func parseImportLine(line []byte, out *importLine) *apiError {
	*out = importLine{}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return jsonError(err)
	}
	switch head.Type {
	case "brand":
		var v importBrand
		if aerr := decodeStrict(line, &v); aerr != nil {
			return aerr
		}
		out.kind, out.id, out.fields = engine.KindUpsertBrand, firstID(v.ID, v.BrandID), v.fields()
		return nil
	case "merchant":
		var v importMerchant
		if aerr := decodeStrict(line, &v); aerr != nil {
			return aerr
		}
		// In a merchant line brand_id is the merchant's brand.
		out.kind, out.id, out.fields = engine.KindUpsertMerchant, firstID(v.ID, v.MerchantID), v.fields()
		return nil
	case "sku":
		var v importSKU
		if aerr := decodeStrict(line, &v); aerr != nil {
			return aerr
		}
		out.kind, out.id, out.fields = engine.KindUpsertSKU, firstID(v.ID, v.SKUID), v.fields()
		return nil
	case "":
		return required("type")
	}
	return errInvalidArgument("type", "type must be brand, merchant or sku")
}

// importPhase holds the commands of one kind of an import, in file order,
// in engine batches of importBatchMax, with the file line of each.
type importPhase struct {
	lines   []int32
	batches []*engine.Batch
	// spans are the lines' bytes in the body, [from, to), kept in a
	// cluster only: the parts forwarded to other nodes are made of them.
	spans [][2]int32
}

func (ph *importPhase) len() int { return len(ph.lines) }

func (ph *importPhase) cmd(i int) *engine.Command {
	return &ph.batches[i/importBatchMax].Requests[i%importBatchMax].Command
}

func (ph *importPhase) add(line int, cmd engine.Command) {
	if len(ph.lines)%importBatchMax == 0 {
		ph.batches = append(ph.batches, getImportBatch())
	}
	ph.batches[len(ph.batches)-1].Add(cmd)
	ph.lines = append(ph.lines, int32(line))
}

// importBatches recycles the engine batches of imports: a batch of
// importBatchMax requests is 1.6 MB, and an import of a million lines
// would otherwise allocate (and zero) 400 MB of them.
var importBatches = sync.Pool{New: func() any { return engine.NewBatch(importBatchMax) }}

func getImportBatch() *engine.Batch { return importBatches.Get().(*engine.Batch) }

// putImportBatches recycles batches that are not, or no longer, in flight.
func putImportBatches(batches []*engine.Batch) {
	for _, b := range batches {
		b.Reset()
		importBatches.Put(b)
	}
}

// slab hands out values of T from chunks of importBatchMax: one
// allocation per chunk instead of one per import line, and a value never
// moves (the engine's commands point at it).
type slab[T any] struct{ free []T }

func (s *slab[T]) next() *T {
	if len(s.free) == 0 {
		s.free = make([]T, importBatchMax)
	}
	v := &s.free[0]
	s.free = s.free[1:]
	return v
}

// importSlabs are the values an import's commands point at.
type importSlabs struct {
	brands    slab[engine.Brand]
	merchants slab[engine.Merchant]
	skus      slab[engine.SKU]
}

// importLineTooLongMsg is the message of a line longer than a single-object
// body may be: the one bufio.Scanner's limit gave, which the contract's
// tests know.
const importLineTooLongMsg = "line too long or unreadable: bufio.Scanner: token too long"

func (s *Server) handleImport(w http.ResponseWriter, r *http.Request, be *backend) {
	bp, aerr := s.readBody(r, s.cfg.BatchBodyBytesMax)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	defer s.putBuf(bp)
	body := *bp
	// The strings of the commands are substrings of one copy of the body:
	// one allocation per request, and the engine copies what it keeps.
	all := string(body)
	// Every line is parsed and validated before anything is applied, so a
	// malformed file changes nothing.
	var phases [3]importPhase // brands, merchants, skus: references point backwards
	// The batches are recycled when the handler returns: either they were
	// never submitted, or the handler waited for each.
	defer func() {
		for ph := range phases {
			putImportBatches(phases[ph].batches)
		}
	}()
	var slabs importSlabs
	var in importLine
	lineNo := 0
	for at := 0; at < len(body); {
		end := bytes.IndexByte(body[at:], '\n')
		next := at + end + 1
		if end < 0 {
			end, next = len(body)-at, len(body)
		}
		lineNo++
		// A line is bounded like a single-object body (bufio.Scanner's
		// buffer was): the limit counts the line without its newline.
		if int64(end) >= s.cfg.BodyBytesMax {
			s.writeError(w, lineError(lineNo, errInvalidJSON(importLineTooLongMsg)))
			return
		}
		raw := body[at : at+end : at+end]
		line := bytes.TrimSpace(raw)
		// The trimmed line is a subslice of raw: its capacity says where it
		// starts, its offset in the body for decodeImportLine's substrings.
		from := at + cap(raw) - cap(line)
		at = next
		if len(line) == 0 {
			continue
		}
		if aerr := decodeImportLine(all, from, line, &in); aerr != nil {
			s.writeError(w, lineError(lineNo, aerr))
			return
		}
		var cmd engine.Command
		var ph int
		switch in.kind {
		case engine.KindUpsertBrand:
			v := slabs.brands.next()
			aerr = in.fields.brand(in.id, v)
			cmd = engine.Command{Kind: engine.KindUpsertBrand, Brand: v}
		case engine.KindUpsertMerchant:
			v := slabs.merchants.next()
			aerr = in.fields.merchant(in.id, v)
			cmd, ph = engine.Command{Kind: engine.KindUpsertMerchant, Merchant: v}, 1
		case engine.KindUpsertSKU:
			v := slabs.skus.next()
			aerr = in.fields.sku(in.id, v)
			cmd, ph = engine.Command{Kind: engine.KindUpsertSKU, SKU: v}, 2
		default:
			panic(fmt.Sprintf("server: import line %d decoded as command kind %v", lineNo, in.kind))
		}
		if aerr != nil {
			s.writeError(w, lineError(lineNo, aerr))
			return
		}
		phases[ph].add(lineNo, cmd)
		if s.cl != nil {
			phases[ph].spans = append(phases[ph].spans, [2]int32{int32(from), int32(from + len(line))})
		}
	}
	if s.cl != nil {
		s.importCluster(w, r, be, body, &phases)
		return
	}
	if aerr := s.applyImport(r.Context(), be, &phases); aerr != nil {
		s.writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, appendImported(nil, &phases))
}

// appendImported appends the answer of an import of phases.
func appendImported(out []byte, phases *[3]importPhase) []byte {
	out = append(out, `{"imported":{"brand":`...)
	out = strconv.AppendInt(out, int64(phases[0].len()), 10)
	out = append(out, `,"merchant":`...)
	out = strconv.AppendInt(out, int64(phases[1].len()), 10)
	out = append(out, `,"sku":`...)
	out = strconv.AppendInt(out, int64(phases[2].len()), 10)
	return append(out, "}}\n"...)
}

// applyImport checks the parsed lines of an import (checkImport) and
// applies them on this node's engine.
func (s *Server) applyImport(ctx context.Context, be *backend, phases *[3]importPhase) *apiError {
	if aerr := s.checkImport(ctx, be, phases); aerr != nil {
		return aerr
	}
	// Brands, then merchants, then SKUs, so references resolve: the
	// batches of a kind go to the engine together, and the next kind waits
	// for them. Every line was checked above, so the engine rejects one
	// only if the catalog changed meanwhile (a concurrent PUT); that line is
	// reported.
	for ph := range phases {
		batches := phases[ph].batches
		for _, b := range batches {
			be.eng.Submit(b)
		}
		var failed *apiError
		for k, b := range batches {
			<-b.Done()
			for i := range b.Requests {
				if res := &b.Requests[i].Result; failed == nil && !res.OK() {
					// The catalog changed between the check and now (a
					// concurrent PUT, or an order taking stock): the
					// lines before this one have applied.
					failed = resultError(res)
					failed.Message += "; the catalog changed during the import, lines before this one were applied"
					failed = lineError(int(phases[ph].lines[k*importBatchMax+i]), failed)
				}
			}
		}
		if failed != nil {
			return failed
		}
	}
	return nil
}

// Engine limits of a SKU stricter than the edge's: checked before an import
// is applied so the engine rejects none of its lines: the engine's own
// limits (internal/engine/limits.go).
const (
	skuPriceMax = engine.PriceMax
	skuStockMax = engine.StockMax
	skuTotalMax = engine.StockTotalMax
)

// checkImport checks every parsed line of an import against the catalog as
// the engine holds it and the other lines of the file, so that applying
// them cannot fail: a merchant's brand and a SKU's merchant and brand must
// exist in the catalog or on any line of the file, and a SKU that exists
// (in the catalog or on an earlier line) keeps its merchant. The first bad
// line of the file is reported with the error a PUT of that line would
// get. Only SKU lines depend on the lines before them (of the same SKU),
// so merchants and SKUs are checked apart, each kind in file order, and the
// earlier of their first bad lines is the file's.
func (s *Server) checkImport(ctx context.Context, be *backend, phases *[3]importPhase) *apiError {
	brandLines, merchantLines, skuLines := &phases[0], &phases[1], &phases[2]
	var brands map[string]struct{}
	if brandLines.len() > 0 && merchantLines.len()+skuLines.len() > 0 {
		brands = make(map[string]struct{}, brandLines.len())
		for i := range brandLines.len() {
			brands[brandLines.cmd(i).Brand.ID] = struct{}{}
		}
	}
	// merchants finds the file's merchants by id: the index of the line
	// (the last of that merchant).
	var merchants map[string]int32
	if merchantLines.len() > 0 && skuLines.len() > 0 {
		merchants = make(map[string]int32, merchantLines.len())
		for i := range merchantLines.len() {
			merchants[merchantLines.cmd(i).Merchant.ID] = int32(i)
		}
	}
	// The lines of a merchant's SKUs and a brand's merchants come
	// together, so the last id found is remembered.
	var brandFound, merchantFound, merchantBrand string
	brandExists := func(id string) bool {
		if id == brandFound {
			return true
		}
		_, ok := brands[id]
		if !ok {
			_, ok = be.eng.Brand(id)
		}
		if ok {
			brandFound = id
		}
		return ok
	}
	// merchantsChecked is the number of merchant lines whose brand is
	// known to exist.
	merchantsChecked := int32(merchantLines.len())
	// merchantExists reports whether a merchant exists, and its brand if
	// that brand is known to exist: a SKU of the merchant's own brand then
	// needs no second look-up.
	merchantExists := func(id string) (bool, string) {
		if id == merchantFound {
			return true, merchantBrand
		}
		if i, ok := merchants[id]; ok {
			merchantFound, merchantBrand = id, ""
			if i < merchantsChecked {
				merchantBrand = merchantLines.cmd(int(i)).Merchant.BrandID
			}
			return true, merchantBrand
		}
		// A merchant of the catalog had its brand when it was put, and
		// brands are never removed.
		m, ok := be.eng.Merchant(id)
		if ok {
			merchantFound, merchantBrand = id, m.BrandID
		}
		return ok, merchantBrand
	}
	var bad *apiError
	badLine := int32(-1)
	for i := range merchantLines.len() {
		if m := merchantLines.cmd(i).Merchant; !brandExists(m.BrandID) {
			bad, badLine = errNotFound("brand_id", "not found: brand_id"), merchantLines.lines[i]
			merchantsChecked = int32(i)
			break
		}
	}
	if skuLines.len() > 0 {
		// The SKUs of the file as the engine holds them now: batches of
		// reads, answered in order with the partitions' other commands.
		reads := make([]*engine.Batch, len(skuLines.batches))
		for k, lines := range skuLines.batches {
			b := getImportBatch()
			for i := range lines.Requests {
				b.Add(engine.Command{Kind: engine.KindGetSKU, SKUID: lines.Requests[i].Command.SKU.ID})
			}
			be.eng.Submit(b)
			reads[k] = b
		}
		for _, b := range reads {
			select {
			case <-b.Done():
			case <-ctx.Done():
				// The reads still in flight are left to the collector.
				return newError(wire.CodeUnavailable, "request cancelled")
			}
			for i := range b.Requests {
				if res := &b.Requests[i].Result; !res.OK() && res.Code != engine.CodeNotFound {
					if res.Code == engine.CodeUnavailable && res.Field == engine.UnavailableFollowing {
						// In a cluster, "not found while this node follows
						// others": the line's merchant is this node's, so a
						// SKU of it would be found; one of another partition
						// not followed yet is two merchants naming one id,
						// which the followers resolve (ambiguous ids). Under
						// an import through three owners some follower is
						// always behind, and this failed the import.
						*res = engine.Result{Code: engine.CodeNotFound}
						continue
					}
					if s.elsewhereSKU(&b.Requests[i]) {
						// The SKU exists in a partition of another owner,
						// so under another merchant than the line's (whose
						// partition is this node's): the line is refused
						// as a single node refuses it.
						*res = engine.Result{SKU: &engine.SKU{ID: b.Requests[i].Command.SKUID}}
						continue
					}
					return resultError(res)
				}
			}
		}
		existing := func(i int) *engine.Result {
			res := &reads[i/importBatchMax].Requests[i%importBatchMax].Result
			if !res.OK() {
				return nil
			}
			return res
		}
		// skuSeen holds the SKUs of earlier lines of the file: the merchant
		// they keep and the available stock they leave, so each line's
		// stock precondition is checked as the engine will check it when
		// the lines apply in file order.
		defer putImportBatches(reads)
		skuSeen := make(map[string]skuLineState, skuLines.len())
		for i := range skuLines.len() {
			line := skuLines.lines[i]
			if badLine >= 0 && line > badLine {
				break
			}
			if aerr := checkImportSKU(skuLines.cmd(i).SKU, existing(i), skuSeen, merchantExists, brandExists); aerr != nil {
				bad, badLine = aerr, line
				break
			}
		}
	}
	if bad != nil {
		return lineError(int(badLine), bad)
	}
	return nil
}

// elsewhereSKU reports whether a SKU read of an import's check was
// refused because the SKU lives in a partition another node serves.
func (s *Server) elsewhereSKU(r *engine.Request) bool {
	if s.cl == nil || r.Result.Code != engine.CodeUnavailable {
		return false
	}
	rt := s.cl.router()
	p, ok := rt.Locate(&engine.Request{Command: r.Command})
	return ok && !rt.Owns(p)
}

// skuLineState is a SKU as the earlier lines of an import leave it.
type skuLineState struct {
	merchant  string
	available int64
}

// checkImportSKU checks one SKU line against the SKU as the catalog holds
// it (existing, nil if it does not exist) and as earlier lines left it
// (seen), and records the state the line leaves.
func checkImportSKU(k *engine.SKU, existing *engine.Result, seen map[string]skuLineState, merchantExists func(string) (bool, string), brandExists func(string) bool) *apiError {
	before, earlier := seen[k.ID]
	exists := earlier
	if !earlier && existing != nil {
		before, exists = skuLineState{merchant: existing.SKU.MerchantID, available: existing.Available}, true
	}
	var aerr *apiError
	merchantFound, merchantBrand := merchantExists(k.MerchantID)
	switch {
	case k.Price > skuPriceMax:
		aerr = errInvalidArgument("price", "invalid argument: price")
	case k.Stock > skuStockMax:
		aerr = errInvalidArgument("stock", "invalid argument: stock")
	case !merchantFound:
		aerr = errNotFound("merchant_id", "not found: merchant_id")
	case k.BrandID != merchantBrand && !brandExists(k.BrandID):
		aerr = errNotFound("brand_id", "not found: brand_id")
	case exists && before.merchant != k.MerchantID:
		aerr = errInvalidArgument("merchant_id", "invalid argument: merchant_id")
	case !k.StockOmitted && existing != nil && existing.Reserved+existing.Sold+k.Stock > skuTotalMax:
		aerr = errInvalidArgument("stock", "invalid argument: stock")
	default:
		aerr = checkImportStock(k, exists, before.available)
	}
	if aerr != nil {
		return aerr
	}
	after := skuLineState{merchant: k.MerchantID, available: k.Stock}
	if exists {
		after.merchant = before.merchant
		if k.StockOmitted {
			after.available = before.available
		}
	}
	seen[k.ID] = after
	return nil
}

// checkImportStock checks the stock rule of one SKU line against the SKU's
// available stock now, as the catalog or an earlier line leaves it. exists
// says whether the SKU exists in the catalog or on an earlier line. The
// rule is the engine's (upsertSKU): the engine checks it again when the
// line applies.
func checkImportStock(k *engine.SKU, exists bool, now int64) *apiError {
	switch {
	case exists && k.StockOmitted:
		return nil
	case exists && !k.StockCompared:
		return errInvalidArgument("stock_expected", "invalid argument: stock_expected")
	case !exists && k.StockOmitted:
		return errInvalidArgument("stock", "invalid argument: stock")
	case k.StockCompared && k.StockExpected != now:
		return resultError(&engine.Result{Code: engine.CodeConflict, SKUID: k.ID, Available: now})
	}
	return nil
}
