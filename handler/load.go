package handler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrUnknownField is the Err of a [ConfigError] for a key that Config does
// not have. When another tool (Promtail, Fluent Bit, Alloy) uses the key,
// the error also names lokislog's key.
var ErrUnknownField = errors.New("unknown field")

// ConfigError is an error in one key of a configuration: a key of a YAML
// or JSON document read by [Config.UnmarshalYAML] or
// [Config.UnmarshalJSON], or an environment variable read by
// [Config.ApplyEnv]. Those methods return it wrapped; find it with
// errors.As. The config package uses Key to add the line of a YAML file.
type ConfigError struct {
	// Key is the key's path from the Config, with dots between levels and
	// list indexes in brackets ("batch_wait", "tls_config.ca_file",
	// "labels.env", "label_keys[2]"), or the environment variable's name
	// ("LOKI_BATCH_WAIT"). "" is the Config as a whole.
	Key string
	// Err is what is wrong, such as [ErrUnknownField] or an invalid value.
	Err error
}

// Error returns Key and Err as "key: err".
func (e *ConfigError) Error() string {
	if e.Key == "" {
		return e.Err.Error()
	}
	return e.Key + ": " + e.Err.Error()
}

// Unwrap returns Err.
func (e *ConfigError) Unwrap() error { return e.Err }

// UnmarshalJSON reads c from a JSON object with the keys of Config's json
// tags plus "level": durations are strings such as "500ms", "1s", "5m" or
// "7d" ("d" and "w" are 24h and 7×24h); byte sizes are numbers or strings
// with a unit, such as 1048576, "512KB" or "1MiB" (K, M, G and T, with or
// without "B" or "iB", are powers of 1024, as in Loki's own configuration);
// "level" is a name ("debug", "info", "warn", "error", optionally with an
// offset such as "info+2") or a number. Keys that are absent leave their
// fields as they were, as encoding/json does (maps get the keys added);
// unknown keys and keys given twice are errors. An error about a key is a
// [*ConfigError]. On error c is unchanged. The result is not validated:
// [New] does that.
func (c *Config) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := readJSON(dec, 0)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("invalid JSON: data after the object")
		}
	}
	if err != nil {
		return fmt.Errorf("handler: config: %w", err)
	}
	return c.decode(&n)
}

// UnmarshalYAML reads c from a YAML mapping with the keys and value forms
// [Config.UnmarshalJSON] describes; a scalar given for a string field
// (1, true) is read as its text ("1", "true"). It has the form yaml.v2 and
// yaml.v3 (go.yaml.in/yaml/v3, gopkg.in/yaml.v3) both call, so a Config can
// be a section of an application's own YAML file, and package handler does
// not import a YAML library. Keys that are absent leave their fields as
// they were; unknown keys are an error whatever the decoder's KnownFields
// setting. Merge keys (<<) and aliases are resolved by the YAML library.
// An error about a key is a [*ConfigError] (it has no line number: the
// config package adds one); errors of the YAML library itself, such as a
// key given twice, are returned as the library made them. On error c is
// unchanged.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	var n yamlNode
	if err := n.UnmarshalYAML(unmarshal); err != nil {
		return err
	}
	return c.decode((*node)(&n))
}

// decode lays the document n over c.
func (c *Config) decode(n *node) error {
	fc := fromConfig(*c)
	fc.Level = nil
	if err := decodeNode(n, reflect.ValueOf(&fc).Elem(), ""); err != nil {
		return fmt.Errorf("handler: config: %w", err)
	}
	*c = fc.apply(*c)
	return nil
}

// MarshalJSON writes the fields that have json names, omitting zero
// values, in the form [Config.UnmarshalJSON] reads: durations as strings,
// the level by name. Secrets (Password, BearerToken, Headers) are written
// as they are.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(fromConfig(c))
}

// MarshalYAML is [Config.MarshalJSON] for YAML.
func (c Config) MarshalYAML() (any, error) {
	return fromConfig(c), nil
}

// fileConfig is the serialisable part of Config, with types that read and
// write durations, byte sizes and the level in their human forms. Its tags
// must match Config's (a test checks).
type fileConfig struct {
	URL          string            `json:"url,omitempty" yaml:"url,omitempty"`
	TenantID     string            `json:"tenant_id,omitempty" yaml:"tenant_id,omitempty"`
	Labels       map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	LabelKeys    []string          `json:"label_keys,omitempty" yaml:"label_keys,omitempty"`
	MetadataKeys []string          `json:"metadata_keys,omitempty" yaml:"metadata_keys,omitempty"`
	Level        *levelValue       `json:"level,omitempty" yaml:"level,omitempty"`
	AddSource    bool              `json:"add_source,omitempty" yaml:"add_source,omitempty"`
	Format       string            `json:"format,omitempty" yaml:"format,omitempty"`

	Protocol       string   `json:"protocol,omitempty" yaml:"protocol,omitempty"`
	Compression    string   `json:"compression,omitempty" yaml:"compression,omitempty"`
	BatchWait      duration `json:"batch_wait,omitempty" yaml:"batch_wait,omitempty"`
	BatchSize      byteSize `json:"batch_size,omitempty" yaml:"batch_size,omitempty"`
	MaxBufferBytes byteSize `json:"max_buffer_bytes,omitempty" yaml:"max_buffer_bytes,omitempty"`
	MaxStreams     intValue `json:"max_streams,omitempty" yaml:"max_streams,omitempty"`
	MaxLineSize    byteSize `json:"max_line_size,omitempty" yaml:"max_line_size,omitempty"`

	Timeout      duration          `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	MinBackoff   duration          `json:"min_backoff,omitempty" yaml:"min_backoff,omitempty"`
	MaxBackoff   duration          `json:"max_backoff,omitempty" yaml:"max_backoff,omitempty"`
	MaxRetryTime duration          `json:"max_retry_time,omitempty" yaml:"max_retry_time,omitempty"`
	Username     string            `json:"username,omitempty" yaml:"username,omitempty"`
	Password     string            `json:"password,omitempty" yaml:"password,omitempty"`
	BearerToken  string            `json:"bearer_token,omitempty" yaml:"bearer_token,omitempty"`
	Headers      map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	TLS          TLSConfig         `json:"tls_config,omitzero" yaml:"tls_config,omitempty"`

	SpoolDir          string   `json:"spool_dir,omitempty" yaml:"spool_dir,omitempty"`
	SpoolMode         string   `json:"spool_mode,omitempty" yaml:"spool_mode,omitempty"`
	SpoolSync         string   `json:"spool_sync,omitempty" yaml:"spool_sync,omitempty"`
	SpoolSyncInterval duration `json:"spool_sync_interval,omitempty" yaml:"spool_sync_interval,omitempty"`
	MaxSpoolBytes     byteSize `json:"max_spool_bytes,omitempty" yaml:"max_spool_bytes,omitempty"`
	MaxAge            duration `json:"max_age,omitempty" yaml:"max_age,omitempty"`
	SpillAfter        duration `json:"spill_after,omitempty" yaml:"spill_after,omitempty"`
}

// fromConfig copies the serialisable fields of c (maps and slices cloned).
func fromConfig(c Config) fileConfig {
	fc := fileConfig{
		URL: c.URL, TenantID: c.TenantID,
		Labels: maps.Clone(c.Labels), LabelKeys: slices.Clone(c.LabelKeys), MetadataKeys: slices.Clone(c.MetadataKeys),
		AddSource: c.AddSource, Format: c.Format,
		Protocol: c.Protocol, Compression: c.Compression,
		BatchWait: duration(c.BatchWait), BatchSize: byteSize(c.BatchSize), MaxBufferBytes: byteSize(c.MaxBufferBytes),
		MaxStreams: intValue(c.MaxStreams), MaxLineSize: byteSize(c.MaxLineSize),
		Timeout: duration(c.Timeout), MinBackoff: duration(c.MinBackoff), MaxBackoff: duration(c.MaxBackoff),
		MaxRetryTime: duration(c.MaxRetryTime),
		Username:     c.Username, Password: c.Password, BearerToken: c.BearerToken, Headers: maps.Clone(c.Headers),
		TLS:      c.TLS,
		SpoolDir: c.SpoolDir, SpoolMode: c.SpoolMode, SpoolSync: c.SpoolSync,
		SpoolSyncInterval: duration(c.SpoolSyncInterval), MaxSpoolBytes: byteSize(c.MaxSpoolBytes),
		MaxAge: duration(c.MaxAge), SpillAfter: duration(c.SpillAfter),
	}
	if c.Level != nil {
		l := levelValue(c.Level.Level())
		fc.Level = &l
	}
	return fc
}

// apply returns base with fc's fields; the fields fc does not hold
// (functions, clients, the provider) are kept, and so is base.Level unless
// fc names a level.
func (fc fileConfig) apply(base Config) Config {
	c := base
	c.URL, c.TenantID = fc.URL, fc.TenantID
	c.Labels, c.LabelKeys, c.MetadataKeys = fc.Labels, fc.LabelKeys, fc.MetadataKeys
	if fc.Level != nil {
		c.Level = slog.Level(*fc.Level)
	}
	c.AddSource, c.Format = fc.AddSource, fc.Format
	c.Protocol, c.Compression = fc.Protocol, fc.Compression
	c.BatchWait, c.BatchSize, c.MaxBufferBytes = time.Duration(fc.BatchWait), int(fc.BatchSize), int(fc.MaxBufferBytes)
	c.MaxStreams, c.MaxLineSize = int(fc.MaxStreams), int(fc.MaxLineSize)
	c.Timeout, c.MinBackoff, c.MaxBackoff = time.Duration(fc.Timeout), time.Duration(fc.MinBackoff), time.Duration(fc.MaxBackoff)
	c.MaxRetryTime = time.Duration(fc.MaxRetryTime)
	c.Username, c.Password, c.BearerToken, c.Headers = fc.Username, fc.Password, fc.BearerToken, fc.Headers
	c.TLS = fc.TLS
	c.SpoolDir, c.SpoolMode, c.SpoolSync = fc.SpoolDir, fc.SpoolMode, fc.SpoolSync
	c.SpoolSyncInterval, c.MaxSpoolBytes = time.Duration(fc.SpoolSyncInterval), int64(fc.MaxSpoolBytes)
	c.MaxAge, c.SpillAfter = time.Duration(fc.MaxAge), time.Duration(fc.SpillAfter)
	return c
}

// renamedKey returns our name for a key other tools use, for the error
// about an unknown key. A switch, not a map: nothing is built at init.
func renamedKey(key string) (string, bool) {
	switch key {
	case "batchwait":
		return "batch_wait", true
	case "batchsize":
		return "batch_size", true
	case "external_labels":
		return "labels", true
	case "backoff_config":
		return "min_backoff, max_backoff and max_retry_time", true
	case "min_period":
		return "min_backoff", true
	case "max_period":
		return "max_backoff", true
	case "basic_auth":
		return "username and password", true
	case "bearer_token_file":
		return "bearer_token (or the environment variable LOKI_BEARER_TOKEN_FILE)", true
	case "password_file":
		return "password (or the environment variable LOKI_PASSWORD_FILE)", true
	case "tenant":
		return "tenant_id", true
	case "structured_metadata":
		return "metadata_keys", true
	case "line_format":
		return "format", true
	case "http_user":
		return "username", true
	case "http_passwd":
		return "password", true
	case "tls":
		return "tls_config", true
	case "storage.total_limit_size":
		return "max_spool_bytes", true
	}
	return "", false
}

func unknownKey(key string) error {
	if to, ok := renamedKey(key); ok {
		return fmt.Errorf("%w (lokislog calls it %s)", ErrUnknownField, to)
	}
	return ErrUnknownField
}

// A node is one value of a configuration document, YAML or JSON: the one
// form the decoder reads, so that both formats follow the same rules.
type node struct {
	kind nodeKind
	text string   // the scalar kinds
	list []node   // listNode
	keys []string // mapNode, in the document's order (YAML: sorted)
	vals []node   // mapNode, vals[i] is the value of keys[i]
	json bool     // from JSON: errors say "object", not "mapping"
}

type nodeKind uint8

const (
	nullNode   nodeKind = iota
	scalarNode          // a YAML scalar: its type is read from its text
	stringNode          // a JSON string
	numberNode          // a JSON number
	boolNode            // a JSON boolean
	listNode
	mapNode
)

// name names a kind of node for errors.
func (n *node) name() string {
	switch n.kind {
	case scalarNode:
		return "a scalar"
	case stringNode:
		return "a string"
	case numberNode:
		return "a number"
	case boolNode:
		return "a boolean"
	case listNode:
		return "a list"
	case mapNode:
		return n.mappingName()
	}
	return "null"
}

func (n *node) mappingName() string {
	if n.json {
		return "an object"
	}
	return "a mapping"
}

// maxDepth bounds the nesting readJSON follows; Config needs three levels.
const maxDepth = 32

// readJSON reads one JSON value from dec (with UseNumber) as a node.
func readJSON(dec *json.Decoder, depth int) (node, error) {
	if depth > maxDepth {
		return node{}, &ConfigError{Err: fmt.Errorf("nested deeper than %d levels", maxDepth)}
	}
	tok, err := dec.Token()
	if err != nil {
		return node{}, err
	}
	n := node{json: true}
	switch t := tok.(type) {
	case nil:
		n.kind = nullNode
	case string:
		n.kind, n.text = stringNode, t
	case json.Number:
		n.kind, n.text = numberNode, t.String()
	case bool:
		n.kind, n.text = boolNode, strconv.FormatBool(t)
	case json.Delim:
		if t == '{' {
			n.kind = mapNode
		} else {
			n.kind = listNode
		}
		for dec.More() {
			if n.kind == mapNode {
				k, err := dec.Token()
				if err != nil {
					return node{}, err
				}
				n.keys = append(n.keys, k.(string)) // object keys are strings
			}
			v, err := readJSON(dec, depth+1)
			if err != nil {
				return node{}, err
			}
			if n.kind == mapNode {
				n.vals = append(n.vals, v)
			} else {
				n.list = append(n.list, v)
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return node{}, err
		}
	}
	return n, nil
}

// yamlNode reads a YAML value as a node through the function yaml.v2 and
// yaml.v3 both pass to an UnmarshalYAML method, so that this package needs
// no YAML library. A YAML null never reaches it: the libraries leave the
// zero yamlNode, which is null.
type yamlNode node

// UnmarshalYAML tries the value as a scalar, a mapping, then a list. A
// failed try decodes nothing below the value, so each value is decoded
// once.
func (n *yamlNode) UnmarshalYAML(unmarshal func(any) error) error {
	var s *string // a scalar's text as written; nil for null
	errScalar := detach(unmarshal(&s))
	if errScalar == nil {
		if s == nil {
			*n = yamlNode{kind: nullNode}
		} else {
			*n = yamlNode{kind: scalarNode, text: *s}
		}
		return nil
	}
	var m map[string]yamlNode
	errMap := detach(unmarshal(&m))
	if errMap == nil {
		*n = yamlNode{kind: mapNode, keys: slices.Sorted(maps.Keys(m))}
		n.vals = make([]node, len(n.keys))
		for i, k := range n.keys {
			n.vals[i] = node(m[k])
		}
		return nil
	}
	var l []yamlNode
	errList := unmarshal(&l)
	if errList == nil {
		*n = yamlNode{kind: listNode, list: make([]node, len(l))}
		for i := range l {
			n.list[i] = node(l[i])
		}
		return nil
	}
	// All three failed: the value is a mapping or a list with a bad value
	// inside, or a scalar the library refuses (a bad !!int or !!binary).
	// The libraries' type errors name the kind of the value ("cannot
	// unmarshal !!map into string"); return the error of that kind's try.
	switch msg := errScalar.Error(); {
	case strings.Contains(msg, "!!map"):
		return errMap
	case strings.Contains(msg, "!!seq"):
		return errList
	}
	return errScalar
}

// detach gives a YAML library's type error (yaml.v2's and yaml.v3's
// *TypeError) its own copy of its messages: the library hands out a window
// on its list of errors, which the next unmarshal call overwrites, so that
// the error of a failed try would end up saying what a later try found.
// Other errors are returned as they are.
func detach(err error) error {
	v := reflect.ValueOf(err)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return err
	}
	if f := v.Elem().FieldByName("Errors"); f.IsValid() && f.CanSet() && f.Type() == reflect.TypeFor[[]string]() {
		f.Set(reflect.ValueOf(slices.Clone(f.Interface().([]string))))
	}
	return err
}

// textValue is a field type read from a scalar's text: durations, byte
// sizes, whole numbers and the level.
type textValue interface{ set(string) error }

var textValueType = reflect.TypeFor[textValue]()

// decodeNode decodes n into v (fileConfig, or one of its fields or their
// elements), whose path in the document is path. It is the one decoder of
// both formats. A null leaves v as it is, except that it makes maps,
// lists and the level nil, as encoding/json and yaml.v3 do.
func decodeNode(n *node, v reflect.Value, path string) error {
	if n.kind == nullNode {
		switch v.Kind() {
		case reflect.Map, reflect.Slice, reflect.Pointer:
			v.SetZero()
		}
		return nil
	}
	if v.Kind() == reflect.Pointer { // *levelValue
		p := reflect.New(v.Type().Elem())
		if err := decodeNode(n, p.Elem(), path); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	if reflect.PointerTo(v.Type()).Implements(textValueType) {
		if n.kind == listNode || n.kind == mapNode {
			return mismatch(n, path, "a scalar")
		}
		if err := v.Addr().Interface().(textValue).set(n.text); err != nil {
			return &ConfigError{Key: path, Err: err}
		}
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		if n.kind != scalarNode && n.kind != stringNode {
			return mismatch(n, path, "a string")
		}
		v.SetString(n.text)
	case reflect.Bool:
		if n.kind != scalarNode && n.kind != boolNode {
			return mismatch(n, path, "a boolean")
		}
		b, err := parseBool(n.text)
		if err != nil {
			return &ConfigError{Key: path, Err: err}
		}
		v.SetBool(b)
	case reflect.Slice:
		if n.kind != listNode {
			return mismatch(n, path, "a list")
		}
		s := reflect.MakeSlice(v.Type(), len(n.list), len(n.list))
		for i := range n.list {
			if err := decodeNode(&n.list[i], s.Index(i), path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
		v.Set(s)
	case reflect.Map:
		if n.kind != mapNode {
			return mismatch(n, path, n.mappingName())
		}
		if v.IsNil() {
			v.Set(reflect.MakeMapWithSize(v.Type(), len(n.keys)))
		}
		seen := make(map[string]bool, len(n.keys))
		for i, k := range n.keys {
			if seen[k] {
				return &ConfigError{Key: join(path, k), Err: errTwice}
			}
			seen[k] = true
			e := reflect.New(v.Type().Elem()).Elem()
			if err := decodeNode(&n.vals[i], e, join(path, k)); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(k), e)
		}
	case reflect.Struct:
		if n.kind != mapNode {
			return mismatch(n, path, n.mappingName())
		}
		idx := fieldIndex(v.Type())
		seen := make(map[string]bool, len(n.keys))
		for i, k := range n.keys {
			fi, ok := idx[k]
			if !ok {
				return &ConfigError{Key: join(path, k), Err: unknownKey(k)}
			}
			if seen[k] {
				return &ConfigError{Key: join(path, k), Err: errTwice}
			}
			seen[k] = true
			if err := decodeNode(&n.vals[i], v.Field(fi), join(path, k)); err != nil {
				return err
			}
		}
	default: // a field type this decoder does not know: a bug, caught by tests
		return &ConfigError{Key: path, Err: fmt.Errorf("cannot decode into %s", v.Type())}
	}
	return nil
}

var errTwice = errors.New("given twice")

func mismatch(n *node, path, want string) error {
	return &ConfigError{Key: path, Err: fmt.Errorf("want %s, got %s", want, n.name())}
}

// join returns the path of key under path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var fieldIndexes sync.Map // reflect.Type -> map[string]int

// fieldIndex maps the json names of a struct's fields (which are also
// their yaml names: a test checks) to their indexes.
func fieldIndex(t reflect.Type) map[string]int {
	if m, ok := fieldIndexes.Load(t); ok {
		return m.(map[string]int)
	}
	m := make(map[string]int)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	fieldIndexes.Store(t, m)
	return m
}

// duration is a time.Duration written as a string ("1m30s") and read from
// one; see [parseDuration].
type duration time.Duration

func (d duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func (d *duration) set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// parseDuration parses a Go duration ("1h30m", "500ms") that may also use
// the units "d" (24h) and "w" (7d), as Prometheus and Loki durations do.
// A bare "0" is zero; any other number needs a unit.
func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q: want a number with a unit such as 500ms, 10s, 5m, 1h or 7d", s)
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "dw") {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, bad
		}
		return d, nil
	}
	rest, neg := s, false
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		neg, rest = rest[0] == '-', rest[1:]
	}
	if rest == "" {
		return 0, bad
	}
	var total float64 // nanoseconds; float so that overflow is visible
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		if num == "" || unit == "" {
			return 0, bad
		}
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, bad
			}
			mult := 24 * time.Hour
			if unit == "w" {
				mult *= 7
			}
			total += f * float64(mult)
		default:
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, bad
			}
			total += float64(d)
		}
		rest = rest[j:]
	}
	if total >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid duration %q: too long", s)
	}
	if neg {
		total = -total
	}
	return time.Duration(total), nil
}

// byteSize is a size in bytes read from a number or a string with a unit;
// see [parseBytes]. It is written as a number.
type byteSize int64

func (b *byteSize) set(s string) error {
	v, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(v)
	return nil
}

// sizeShift returns the shift of a size unit parseBytes accepts,
// lower-cased.
func sizeShift(unit string) (uint, bool) {
	switch unit {
	case "", "b":
		return 0, true
	case "k", "kb", "kib":
		return 10, true
	case "m", "mb", "mib":
		return 20, true
	case "g", "gb", "gib":
		return 30, true
	case "t", "tb", "tib":
		return 40, true
	}
	return 0, false
}

// parseBytes parses a size in bytes: a whole number, or a number (which
// may have a fraction) followed by a unit, case-insensitive, with optional
// space: B, K/KB/KiB (1024), M/MB/MiB (1024²), G/GB/GiB (1024³),
// T/TB/TiB (1024⁴). Like Loki's own configuration, KB and KiB are the same.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	shift, ok := sizeShift(unit)
	if num == "" || !ok {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes such as 1048576, or one with a unit such as 512KiB or 1MiB", s)
	}
	tooLarge := fmt.Errorf("invalid size %q: too large", s)
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64>>shift {
			return 0, tooLarge
		}
		return n << shift, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: bad number", s)
	}
	v := f * float64(uint64(1)<<shift)
	if v >= math.MaxInt64 {
		return 0, tooLarge
	}
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("invalid size %q: not a whole number of bytes", s)
	}
	return int64(v), nil
}

// intValue is an int read from a whole number's text: 1.5 is an error,
// not 1.
type intValue int

func (n *intValue) set(s string) error {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("invalid number %q: want a whole number", s)
	}
	*n = intValue(v)
	return nil
}

// levelValue is a slog.Level read from a name or a number; see
// [parseLevel]. It is written as a name.
type levelValue slog.Level

func (l levelValue) MarshalText() ([]byte, error) { return []byte(slog.Level(l).String()), nil }

func (l levelValue) MarshalYAML() (any, error) { return slog.Level(l).String(), nil }

func (l *levelValue) set(s string) error {
	v, err := parseLevel(s)
	if err != nil {
		return err
	}
	*l = levelValue(v)
	return nil
}

// parseLevel parses a level: a name as slog reads it ("debug", "INFO",
// "warn+2", case-insensitive), "warning", or a number (-4 is debug, 0 info,
// 4 warn, 8 error).
func parseLevel(s string) (slog.Level, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 32); err == nil {
		return slog.Level(n), nil
	}
	if strings.EqualFold(s, "warning") {
		return slog.LevelWarn, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid level %q: want debug, info, warn or error (optionally with +N or -N), or a number", s)
	}
	return l, nil
}
