// Command receiver is the benchmark suite's log receiver: it listens on a
// loopback address, fully decodes Loki (protobuf+snappy, JSON) and OTLP/HTTP
// log pushes, counts them, and can be told to answer 503 for a while. See
// package bench/internal/receiver for the endpoints.
//
//	go run ./cmd/receiver -addr 127.0.0.1:3100
//	curl -s localhost:3100/control/stats
//
// cmd/benchrun starts the same receiver by itself; this command is for
// running it by hand.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lokislog/lokislog/bench/internal/receiver"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback `address` to listen on (port 0 picks a free one)")
	stdinEOF := flag.Bool("stdin-eof", false, "exit when standard input is closed")
	flag.Parse()
	if err := receiver.Serve(*addr, os.Stdout, *stdinEOF); err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
}
