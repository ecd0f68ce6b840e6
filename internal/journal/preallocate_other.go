//go:build !linux

package journal

import "github.com/fest-platform/fest/internal/vfs"

// preallocate reserves blocks ahead of the file's end on Linux alone
// (preallocate_linux.go); elsewhere the writes extend the file as they go.
func preallocate(vfs.File, int64, int64) {}
