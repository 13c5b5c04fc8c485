//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package exporter

import "net"

// idleQuiet cannot peek at a socket on this platform (Windows among
// others): it reports true. A kept connection that the server closed while
// it was idle still costs no retry (roundTrip sends the request again on a
// new one when nothing of the answer came); bytes that came while it was
// idle are read as the next answer.
func idleQuiet(net.Conn) bool { return true }

// idlePeek tells whether idleQuiet looks at the socket.
const idlePeek = false
