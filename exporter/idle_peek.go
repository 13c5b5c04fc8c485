//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package exporter

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// idleQuiet reports whether nothing came on conn while it was idle: no byte
// (a late answer, or the 408 some load balancers send before they close an
// idle connection) and no end (the server closed it). Either would make the
// connection answer the next request wrongly or not at all. It peeks at the
// socket without reading or waiting. A TLS connection is peeked at below
// TLS: records the TLS layer already holds are not seen. Where the socket
// cannot be reached (a net.Conn that is not a socket), it reports true.
func idleQuiet(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	quiet := true
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
			// nothing there
		case err != nil, n >= 0: // an error, the end (0), or bytes
			quiet = false
		}
		return true // never wait for the socket to become readable
	})
	return quiet && err == nil
}

// idlePeek tells whether idleQuiet looks at the socket.
const idlePeek = true
