//go:build nopeers || noreceiver

package main

import "errors"

// serveReceiver fails: a nopeers or noreceiver binary runs the logging
// children only, and leaves out the receiver's decoders (Loki's and
// OpenTelemetry's protobuf types, gRPC) so that their code and
// initialisation do not count in the children's memory. The driver starts
// the receiver from the full binary.
func serveReceiver() error {
	return errors.New("-role=receiver: this binary was built with -tags nopeers or noreceiver, without the receiver; run the receiver from a build without those tags")
}
