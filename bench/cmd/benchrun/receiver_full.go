//go:build !nopeers && !noreceiver

package main

import (
	"os"

	"github.com/lokislog/lokislog/bench/internal/receiver"
)

// serveReceiver runs the receiver (-role=receiver) until its standard input
// closes.
func serveReceiver() error { return receiver.Serve("127.0.0.1:0", os.Stdout, true) }
