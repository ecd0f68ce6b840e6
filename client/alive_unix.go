//go:build unix

package client

import (
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open and quiet: a
// peek that does not wait finds nothing to read. End of stream (the server
// closed it), an error, or bytes nobody asked for (a server's parting 408)
// all mean the connection cannot carry a request.
func alive(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	var n int
	var rerr error
	if err := raw.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	return n <= 0 && (rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK)
}
