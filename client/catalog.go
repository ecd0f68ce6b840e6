package client

// CatalogLines builds the NDJSON body of ImportCatalog line by line in a
// reusable buffer: one object a line with "type", "id" and the fields of
// the matching PUT. It allocates nothing once its buffer has grown.
type CatalogLines struct {
	o jsonObject
}

// Reset empties the body, keeping its buffer.
func (l *CatalogLines) Reset() { l.o.b = l.o.b[:0] }

// Bytes is the body so far; it is valid until the next call.
func (l *CatalogLines) Bytes() []byte { return l.o.b }

// Len is the body's size in bytes.
func (l *CatalogLines) Len() int { return len(l.o.b) }

// Detach returns the body and starts a new buffer, for a body handed to
// another goroutine while the next is built.
func (l *CatalogLines) Detach() []byte {
	b := l.o.b
	l.o.b = nil
	return b
}

// line starts a line of type kind with id.
func (l *CatalogLines) line(kind, id string) *jsonObject {
	return l.o.open().str("type", kind).str("id", id)
}

func (l *CatalogLines) end() {
	l.o.close()
	l.o.b = append(l.o.b, '\n')
}

// Brand appends a brand line.
func (l *CatalogLines) Brand(b *Brand) {
	l.line("brand", b.ID).str("name", b.Name).str("country", b.Country).num("first_festival", int64(b.FirstFestival)).
		boolean("emerging", b.Emerging).num("last_year_gmv", b.LastYearGMV)
	l.end()
}

// Merchant appends a merchant line.
func (l *CatalogLines) Merchant(m *Merchant) {
	l.line("merchant", m.ID).str("name", m.Name).str("brand_id", m.BrandID).str("kind", m.Kind).
		str("industry", m.Industry).str("region", m.Region)
	l.end()
}

// SKU appends a SKU line with s.Stock as the stock of a new SKU (an
// existing SKU refuses it without stock_expected, the contract's rule).
func (l *CatalogLines) SKU(s *SKU) {
	l.line("sku", s.ID).str("merchant_id", s.MerchantID).str("brand_id", s.BrandID).str("title", s.Title).
		str("category", s.Category).num("price", s.Price).num("stock", s.Stock)
	l.end()
}
