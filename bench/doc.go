// Package bench is lokislog's benchmark suite, a Go module of its own so
// that the handlers it compares never enter the library's go.mod.
//
// Run everything and print the table (see README.md):
//
//	cd bench && go run ./cmd/benchrun
//
// The Handle benchmarks alone:
//
//	cd bench && go test -run '^$' -bench . -benchmem
//
// Every contestant runs the same workload ([workload]) and the shipping ones
// send to the same receiver, a separate process started on 127.0.0.1 that
// fully decodes each push ([receiver]).
package bench
