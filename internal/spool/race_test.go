//go:build race

package spool

// raceEnabled: the race detector's shadow memory takes page faults of its
// own in the writing thread, at unforeseeable moments, so the tests that
// count page faults skip under it (scripts/test.sh runs them without it).
const raceEnabled = true
