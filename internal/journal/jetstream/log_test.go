package jetstream

import (
	"io"
	"log/slog"
)

// discard keeps the journal's retry warnings out of the test output.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))
