package handler

import (
	"maps"
	"sync"
	"sync/atomic"
)

// streamTable interns label-set strings and caps how many there are.
// Lookups are lock-free (a copy-on-write map); adding a stream copies the
// map under mu, which happens at most max times per handler tree.
type streamTable struct {
	max int
	m   atomic.Pointer[map[string]string]
	mu  sync.Mutex // serialises writers
}

func (t *streamTable) init(max int) {
	t.max = max
	m := make(map[string]string)
	t.m.Store(&m)
}

// intern returns the interned copy of the label set b, adding it when
// there is room. ok is false when b is new and the table is full.
func (t *streamTable) intern(b []byte) (s string, ok bool) {
	if s, ok := (*t.m.Load())[string(b)]; ok {
		return s, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := *t.m.Load()
	if s, ok := m[string(b)]; ok {
		return s, true
	}
	if len(m) >= t.max {
		return "", false
	}
	m2 := make(map[string]string, len(m)+1)
	maps.Copy(m2, m)
	s = string(b)
	m2[s] = s
	t.m.Store(&m2)
	return s, true
}

func (t *streamTable) len() int { return len(*t.m.Load()) }
