package lokiproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DecodeJSON decodes Loki's JSON push body:
//
//	{"streams":[{"stream":{"k":"v"},"values":[["<unix ns>","line",{"meta":"v"}]]}]}
//
// The timestamp is a string holding decimal Unix nanoseconds; the line and
// the third element (structured metadata, string values) are optional, a
// missing or null line being empty, and a fourth element is an error, as in
// Loki's decoder. (Unlike Loki's, invalid UTF-8 in a string becomes U+FFFD.)
// Label names must be valid Loki label
// names. Each stream's Labels is the canonical label-set string of its
// "stream" object (sorted, values quoted), so that [ParseLabels] handles both
// encodings alike; metadata is sorted by name.
func DecodeJSON(b []byte) (*PushRequest, error) {
	var raw struct {
		Streams []struct {
			Stream map[string]string `json:"stream"`
			Values []json.RawMessage `json:"values"`
		} `json:"streams"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("decode json push: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("decode json push: data after the top-level object")
	}
	req := &PushRequest{Streams: make([]Stream, 0, len(raw.Streams))}
	for i, rs := range raw.Streams {
		ls := make([]LabelPair, 0, len(rs.Stream))
		for k, v := range rs.Stream {
			if !ValidLabelName(k) {
				return nil, fmt.Errorf("stream %d: invalid label name %s", i, quoteCut(k))
			}
			ls = append(ls, LabelPair{Name: k, Value: v})
		}
		slices.SortFunc(ls, func(a, b LabelPair) int { return strings.Compare(a.Name, b.Name) })
		s := Stream{Labels: FormatLabels(ls), Entries: make([]Entry, 0, len(rs.Values))}
		for j, v := range rs.Values {
			e, err := decodeJSONEntry(v)
			if err != nil {
				return nil, fmt.Errorf("stream %d: entry %d: %w", i, j, err)
			}
			s.Entries = append(s.Entries, e)
		}
		req.Streams = append(req.Streams, s)
	}
	return req, nil
}

func decodeJSONEntry(v json.RawMessage) (Entry, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(v, &parts); err != nil {
		return Entry{}, err
	}
	if len(parts) > 3 {
		return Entry{}, errors.New("array must have at least 2 and up to 3 values")
	}
	var e Entry
	if len(parts) == 0 {
		return e, nil // Loki keeps it, with the zero time: validation refuses it
	}
	var ts string
	if err := unmarshalString(parts[0], &ts); err != nil {
		return Entry{}, fmt.Errorf("timestamp: %w", err)
	}
	ns, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Entry{}, fmt.Errorf("timestamp: %w", err)
	}
	e.Timestamp = time.Unix(0, ns).UTC()
	if len(parts) > 1 && !isNull(parts[1]) { // Loki reads a missing or null line as ""
		if err := unmarshalString(parts[1], &e.Line); err != nil {
			return Entry{}, fmt.Errorf("line: %w", err)
		}
	}
	if len(parts) > 2 && !isNull(parts[2]) {
		var md map[string]string
		if err := json.Unmarshal(parts[2], &md); err != nil {
			return Entry{}, fmt.Errorf("structured metadata: %w", err)
		}
		if len(md) > 0 {
			e.Metadata = make([]LabelPair, 0, len(md))
			for k, v := range md {
				e.Metadata = append(e.Metadata, LabelPair{Name: k, Value: v})
			}
			slices.SortFunc(e.Metadata, func(a, b LabelPair) int { return strings.Compare(a.Name, b.Name) })
		}
	}
	return e, nil
}

// isNull reports whether raw is the JSON null.
func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// unmarshalString decodes a JSON string, refusing null and other types.
func unmarshalString(raw json.RawMessage, s *string) error {
	if len(raw) == 0 || raw[0] != '"' {
		return errors.New("not a string")
	}
	return json.Unmarshal(raw, s)
}
