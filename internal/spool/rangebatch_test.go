package spool

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/lokislog/lokislog/exporter"
)

// flatEntry is one entry yielded by Range or found in a decoded batch,
// with its strings copied.
type flatEntry struct {
	tenant, labels string
	e              exporter.Entry
}

// rangeAll collects what Range yields, copying every string.
func rangeAll(d *BatchDecoder, p []byte) ([]flatEntry, error) {
	var out []flatEntry
	err := d.Range(p, func(tenant, labels string, e exporter.Entry) {
		c := exporter.Entry{Timestamp: e.Timestamp, Line: strings.Clone(e.Line)}
		for _, m := range e.Metadata {
			c.Metadata = append(c.Metadata, exporter.LabelPair{Name: strings.Clone(m.Name), Value: strings.Clone(m.Value)})
		}
		out = append(out, flatEntry{strings.Clone(tenant), strings.Clone(labels), c})
	})
	return out, err
}

// flatten lists the entries of b in the order Range yields them.
func flatten(b *exporter.Batch) []flatEntry {
	var out []flatEntry
	for _, st := range b.Streams {
		for _, e := range st.Entries {
			out = append(out, flatEntry{b.Tenant, st.Labels, e})
		}
	}
	return out
}

func TestRangeBatch(t *testing.T) {
	tests := map[string]*exporter.Batch{
		"sample":      sampleBatch(),
		"empty":       {},
		"tenant only": {Tenant: "x"},
		"no entries":  {Tenant: "t", Streams: []exporter.Stream{{Labels: `{a="b"}`}}},
		"unicode":     {Streams: []exporter.Stream{{Labels: `{a="ü"}`, Entries: []exporter.Entry{{Timestamp: -5, Line: "日本語\x00\xff"}}}}},
		"metadata per entry": {Tenant: "t", Streams: []exporter.Stream{{Labels: "{}", Entries: []exporter.Entry{
			{Line: "a", Metadata: []exporter.LabelPair{{Name: "k1", Value: "v1"}, {Name: "k2", Value: "v2"}}},
			{Line: "b"},
			{Line: "c", Metadata: []exporter.LabelPair{{Name: "k3", Value: "v3"}}},
		}}}},
	}
	var d BatchDecoder
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			p := AppendBatch(nil, b)
			got, err := rangeAll(&d, p)
			if err != nil {
				t.Fatalf("Range: %v", err)
			}
			if want := flatten(b); !reflect.DeepEqual(got, want) {
				t.Fatalf("Range yielded\n %+v\nwant\n %+v", got, want)
			}
			if tenant, err := BatchTenant(p); err != nil || tenant != b.Tenant {
				t.Fatalf("BatchTenant = %q, %v; want %q", tenant, err, b.Tenant)
			}
			// Every strict prefix is an error, and fn is never called.
			for i := range len(p) {
				calls := 0
				err := d.Range(p[:i], func(string, string, exporter.Entry) { calls++ })
				if !errors.Is(err, ErrBadBatch) || calls != 0 {
					t.Fatalf("prefix of %d/%d bytes: %v after %d calls", i, len(p), err, calls)
				}
			}
		})
	}
}

// TestRangeBatchAliases checks that nothing is copied: the strings point
// into p.
func TestRangeBatchAliases(t *testing.T) {
	p := AppendBatch(nil, sampleBatch())
	var d BatchDecoder
	inside := func(s string) bool {
		if s == "" {
			return true
		}
		for i := range p {
			if strings.HasPrefix(string(p[i:]), s) && &p[i] == unsafeData(s) {
				return true
			}
		}
		return false
	}
	n := 0
	err := d.Range(p, func(tenant, labels string, e exporter.Entry) {
		n++
		ok := inside(tenant) && inside(labels) && inside(e.Line)
		for _, m := range e.Metadata {
			ok = ok && inside(m.Name) && inside(m.Value)
		}
		if !ok {
			t.Errorf("entry %d: a string does not alias p", n)
		}
	})
	if err != nil || n != sampleBatch().Len() {
		t.Fatalf("Range: %d entries, %v", n, err)
	}
}

func TestBatchTenantErrors(t *testing.T) {
	tests := map[string][]byte{
		"empty":       nil,
		"bad version": {9, 0},
		"huge tenant": {batchVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad varint":  {batchVersion, 0xff},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			if s, err := BatchTenant(p); !errors.Is(err, ErrBadBatch) || s != "" {
				t.Fatalf("BatchTenant = %q, %v; want ErrBadBatch", s, err)
			}
		})
	}
}

func TestRangeBatchDoesNotAllocate(t *testing.T) {
	p := AppendBatch(nil, sampleBatch())
	var d BatchDecoder
	total := 0
	fn := func(tenant, labels string, e exporter.Entry) { total += len(e.Line) + len(e.Metadata) }
	d.Range(p, fn) // grows the metadata scratch
	allocs := testing.AllocsPerRun(200, func() {
		if err := d.Range(p, fn); err != nil {
			t.Fatal(err)
		}
		if _, err := BatchTenant(p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Range allocates %v times per call", allocs)
	}
	if total == 0 {
		t.Fatal("fn saw nothing")
	}
}

// TestRangeBatchScratchBounded checks that an entry with many metadata
// pairs does not leave a large scratch behind.
func TestRangeBatchScratchBounded(t *testing.T) {
	e := exporter.Entry{Line: "x"}
	for i := range 1000 {
		e.Metadata = append(e.Metadata, exporter.LabelPair{Name: "k", Value: strings.Repeat("v", i%3)})
	}
	b := &exporter.Batch{Streams: []exporter.Stream{{Labels: "{}", Entries: []exporter.Entry{e}}}}
	var d BatchDecoder
	got, err := rangeAll(&d, AppendBatch(nil, b))
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0].e, e) {
		t.Fatalf("Range: %v, %d entries", err, len(got))
	}
	if cap(d.meta) > maxKeptMeta {
		t.Fatalf("kept a scratch of %d pairs", cap(d.meta))
	}
}

// FuzzRangeBatch checks Range against DecodeBatch on arbitrary bytes: both
// accept the same inputs with the same error, and yield the same entries.
func FuzzRangeBatch(f *testing.F) {
	f.Add(AppendBatch(nil, sampleBatch()))
	f.Add(AppendBatch(nil, &exporter.Batch{}))
	f.Add(AppendBatch(nil, &exporter.Batch{Tenant: "t", Streams: []exporter.Stream{{Labels: "{}"}}}))
	f.Add([]byte{batchVersion, 0, 0xff, 0xff, 0x7f})
	f.Add([]byte{batchVersion, 0, 1, 0, 1, 0, 0, 2, 1, 'a', 0, 0})
	var d BatchDecoder
	f.Fuzz(func(t *testing.T, p []byte) {
		b, derr := DecodeBatch(p)
		got, rerr := rangeAll(&d, p)
		if (derr == nil) != (rerr == nil) {
			t.Fatalf("DecodeBatch: %v; Range: %v", derr, rerr)
		}
		if derr != nil {
			if !errors.Is(rerr, ErrBadBatch) || rerr.Error() != derr.Error() || len(got) != 0 {
				t.Fatalf("Range = %d entries, %v; DecodeBatch: %v", len(got), rerr, derr)
			}
			return
		}
		if want := flatten(b); !reflect.DeepEqual(got, want) {
			t.Fatalf("Range yielded\n %+v\nDecodeBatch\n %+v", got, want)
		}
		if tenant, err := BatchTenant(p); err != nil || tenant != b.Tenant {
			t.Fatalf("BatchTenant = %q, %v; want %q", tenant, err, b.Tenant)
		}
	})
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }
