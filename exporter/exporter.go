package exporter

import (
	"context"
	"errors"
	"fmt"
)

// LabelPair is one name/value pair: a stream label or a structured metadata field.
type LabelPair struct {
	Name  string
	Value string
}

// Entry is one log line of a stream.
type Entry struct {
	// Timestamp is the entry's time in nanoseconds since the Unix epoch.
	Timestamp int64
	// Line is the log line, already encoded (logfmt or JSON).
	Line string
	// Metadata is the entry's structured metadata; nil when it has none.
	Metadata []LabelPair
}

// Stream is a set of entries sharing one label set.
type Stream struct {
	// Labels is the stream's label set in Loki's form, names sorted:
	// {app="api", env="prod"}. Names are valid Loki label names and unique.
	Labels string
	// Entries are the stream's entries, oldest first.
	Entries []Entry
}

// Batch is what one push request carries: streams of one tenant.
type Batch struct {
	// Tenant is sent as X-Scope-OrgID when not empty; it overrides the
	// exporter's own tenant.
	Tenant  string
	Streams []Stream
}

// Len returns the number of entries in b.
func (b *Batch) Len() int {
	n := 0
	for i := range b.Streams {
		n += len(b.Streams[i].Entries)
	}
	return n
}

// Size returns an estimate of b's size in bytes: lines, metadata and labels.
func (b *Batch) Size() int {
	n := 0
	for i := range b.Streams {
		s := &b.Streams[i]
		n += len(s.Labels)
		for j := range s.Entries {
			n += EntrySize(&s.Entries[j])
		}
	}
	return n
}

// EntrySize returns the bytes e counts for in batch bounds (BatchSize):
// its line, its metadata and a fixed overhead for the timestamp and
// framing.
func EntrySize(e *Entry) int {
	n := len(e.Line) + 16
	for _, m := range e.Metadata {
		n += len(m.Name) + len(m.Value) + 4
	}
	return n
}

// Split cuts b into two batches of about equal entry count, keeping each
// stream's entries in order. It returns ok=false when b has fewer than two
// entries and cannot be split.
func Split(b *Batch) (first, second *Batch, ok bool) {
	total := b.Len()
	if total < 2 {
		return nil, nil, false
	}
	half := total / 2
	first = &Batch{Tenant: b.Tenant}
	second = &Batch{Tenant: b.Tenant}
	n := 0
	for _, s := range b.Streams {
		switch {
		case n >= half:
			second.Streams = append(second.Streams, s)
		case n+len(s.Entries) <= half:
			first.Streams = append(first.Streams, s)
		default:
			k := half - n
			first.Streams = append(first.Streams, Stream{Labels: s.Labels, Entries: s.Entries[:k:k]})
			second.Streams = append(second.Streams, Stream{Labels: s.Labels, Entries: s.Entries[k:]})
		}
		n += len(s.Entries)
	}
	return first, second, true
}

// Exporter sends batches to Loki (or anything that stores log streams).
//
// Concurrency: the pipeline calls Export from a single goroutine, one call at
// a time; Shutdown may be called concurrently with Export and must make a
// running Export return promptly.
//
// Context: ctx bounds the whole Export call, retries included. An
// implementation returns ctx's error (wrapped) when ctx ends before the
// batch was delivered.
//
// Retention: Export must not keep b, its streams, entries or strings after it
// returns; the caller reuses their memory.
//
// Errors: nil means every entry of b was accepted. A *PermanentError means the
// receiver refused (part of) the batch for good: it must not be sent again,
// and its entries are counted as dropped with the error's reason. A
// *PartialError means part of b was delivered and only its Remaining batch
// is still to be sent. Any other error means nothing of b is known to be
// delivered and it may be sent again later (retryable).
type Exporter interface {
	Export(ctx context.Context, b *Batch) error
	Shutdown(ctx context.Context) error
}

// ErrShutdown is returned by Export after Shutdown was called.
var ErrShutdown = errors.New("exporter: shut down")

// PermanentError reports that the receiver rejected a batch for good: a 4xx
// other than 408, 413 and 429, a 501, a redirect not followed, or a 413 for
// a single entry. The batch must not be sent again.
type PermanentError struct {
	// Status is the HTTP status code, or 0 when the exporter refused the
	// entries without sending them (for example labels it cannot encode).
	Status int
	// Reason is the receiver's answer text, cut to at most 1 KiB.
	Reason string
	// Entries is how many entries were rejected.
	Entries int
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("loki rejected %d entries: status %d: %s", e.Entries, e.Status, e.Reason)
}

// PartialError reports that part of a batch was delivered (or permanently
// rejected) and Remaining still has to be sent. Err is why Remaining was not.
type PartialError struct {
	Remaining *Batch
	// Rejected holds the parts that were permanently rejected, if any.
	Rejected *PermanentError
	Err      error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("partial export: %d entries left: %v", e.Remaining.Len(), e.Err)
}

func (e *PartialError) Unwrap() error { return e.Err }
