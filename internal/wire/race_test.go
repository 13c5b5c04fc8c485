//go:build race

package wire_test

// raceEnabled: the race detector changes allocation counts (sync.Pool drops
// items at random, runtime calls allocate), so they are not asserted.
const raceEnabled = true
