//go:build linux

package journal

import (
	"syscall"

	"github.com/fest-platform/fest/internal/vfs"
)

// fallocKeepSize is Linux's FALLOC_FL_KEEP_SIZE, which the syscall package
// lacks: the blocks are reserved and the file's size stays as it is.
const fallocKeepSize = 0x1

// preallocate reserves the blocks of f from off for n bytes, beyond its end,
// without changing its size: a write into blocks already reserved skips the
// file system's allocation, which cost about a fifth of the journal's writes
// (each of them extending the file). The file reads as before, so recovery
// and followers see no difference. It is an optimisation only, so a file
// that is not an operating system's (the simulated disk) or a file system
// that refuses it leaves the file as it was, and the error is dropped.
func preallocate(f vfs.File, off, n int64) {
	conn, ok := f.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.Fallocate(int(fd), fallocKeepSize, off, n)
	})
}
