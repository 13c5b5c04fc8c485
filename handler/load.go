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
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxConfigSize is the largest configuration [LoadConfig] and
// [LoadConfigFile] read.
const MaxConfigSize = 1 << 20

// LoadConfigFile reads a Config from a YAML (.yaml, .yml) or JSON (.json)
// file, chosen by the file's extension. See [LoadConfig].
func LoadConfigFile(path string) (Config, error) {
	var format string
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		format = "yaml"
	case ".json":
		format = "json"
	default:
		return Config{}, fmt.Errorf("handler: config %s: unknown extension, want .yaml, .yml or .json", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("handler: config: %w", err)
	}
	defer f.Close()
	c, err := loadConfig(f, format)
	if err != nil {
		return Config{}, fmt.Errorf("handler: config %s: %w", path, err)
	}
	return c, nil
}

// LoadConfig reads a Config in format "yaml" or "json" from r, at most
// [MaxConfigSize] bytes. The keys are the fields' json/yaml names
// ("batch_wait", "tls_config", ...) plus "level"; durations are strings
// such as "500ms", "1s", "5m" or "7d" ("d" and "w" are 24h and 7×24h);
// byte sizes are numbers or strings with a unit, such as 1048576, "512KB"
// or "1MiB" (K, M, G and T, with or without "B" or "iB", are powers of
// 1024, as in Loki's own configuration); "level" is a name ("debug",
// "info", "warn", "error", optionally with an offset such as "info+2") or
// a number. An unknown key is an error that names it. An empty YAML
// document is the zero Config. The result is not validated: [New] does
// that.
func LoadConfig(r io.Reader, format string) (Config, error) {
	c, err := loadConfig(r, format)
	if err != nil {
		return Config{}, fmt.Errorf("handler: config: %w", err)
	}
	return c, nil
}

func loadConfig(r io.Reader, format string) (Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxConfigSize+1))
	if err != nil {
		return Config{}, err
	}
	if len(data) > MaxConfigSize {
		return Config{}, fmt.Errorf("larger than %d bytes", MaxConfigSize)
	}
	var c Config
	switch strings.ToLower(format) {
	case "yaml", "yml":
		err = yaml.Unmarshal(data, &c)
	case "json":
		err = json.Unmarshal(data, &c)
	default:
		return Config{}, fmt.Errorf("format %q: want \"yaml\" or \"json\"", format)
	}
	if err != nil {
		return Config{}, err
	}
	return c, nil
}

// UnmarshalJSON reads c from a JSON object with the keys [LoadConfig]
// describes. Keys that are absent leave their fields as they were, as
// encoding/json does; unknown keys are an error. On error c is unchanged.
func (c *Config) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	fc := fromConfig(*c)
	fc.Level = nil
	if err := decodeJSONObject(data, reflect.ValueOf(&fc).Elem(), ""); err != nil {
		return err
	}
	*c = fc.apply(*c)
	return nil
}

// UnmarshalYAML reads c from a YAML mapping with the keys [LoadConfig]
// describes. Keys that are absent leave their fields as they were; unknown
// keys are an error, whatever the decoder's KnownFields setting. On error
// c is unchanged.
func (c *Config) UnmarshalYAML(node *yaml.Node) error {
	fc := fromConfig(*c)
	fc.Level = nil
	if err := decodeYAMLMapping(node, reflect.ValueOf(&fc).Elem(), ""); err != nil {
		return err
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

func unknownKey(path, key string) error {
	if to, ok := renamedKey(key); ok {
		return fmt.Errorf("unknown field %q (lokislog calls it %s)", path+key, to)
	}
	return fmt.Errorf("unknown field %q", path+key)
}

// fieldIndex maps the names of a struct's fields in one format ("json" or
// "yaml") to their indexes.
type fieldKey struct {
	t      reflect.Type
	format string
}

var fieldIndexes sync.Map // fieldKey -> map[string]int

func fieldIndex(t reflect.Type, format string) map[string]int {
	k := fieldKey{t, format}
	if m, ok := fieldIndexes.Load(k); ok {
		return m.(map[string]int)
	}
	m := make(map[string]int)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get(format), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	fieldIndexes.Store(k, m)
	return m
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
)

// decodeJSONObject decodes the JSON object data into the struct v field by
// field, so that an error names its key and an unknown key is an error.
func decodeJSONObject(data []byte, v reflect.Value, path string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s: %w", pathOr(path), err)
	}
	if tok == nil { // null
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%s: want a JSON object", pathOr(path))
	}
	idx := fieldIndex(v.Type(), "json")
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%s: %w", pathOr(path), err)
		}
		key := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("%s: %w", path+key, err)
		}
		i, ok := idx[key]
		if !ok {
			return unknownKey(path, key)
		}
		if seen[key] {
			return fmt.Errorf("%s: given twice", path+key)
		}
		seen[key] = true
		f := v.Field(i)
		if f.Kind() == reflect.Struct && !reflect.PointerTo(f.Type()).Implements(jsonUnmarshaler) {
			if err := decodeJSONObject(raw, f, path+key+"."); err != nil {
				return err
			}
			continue
		}
		if err := json.Unmarshal(raw, f.Addr().Interface()); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Type != nil {
				where := path + key
				if te.Field != "" {
					where += "." + te.Field
				}
				return fmt.Errorf("%s: cannot use a JSON %s as %s", where, te.Value, kindName(te.Type))
			}
			return fmt.Errorf("%s: %w", path+key, err)
		}
	}
	return nil
}

func pathOr(path string) string {
	if path == "" {
		return "config"
	}
	return strings.TrimSuffix(path, ".")
}

// kindName names a field's type for errors.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return kindName(t.Elem())
	case reflect.Map:
		return "a map of strings"
	case reflect.Slice:
		return "a list of strings"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Struct:
		return "an object"
	}
	return "a string"
}

// stripYAMLLine removes yaml's "line N: " prefix from an error text (the
// caller adds its own, with the key). No regexp: nothing to build at init.
func stripYAMLLine(s string) string {
	rest, ok := strings.CutPrefix(s, "line ")
	if !ok {
		return s
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 {
		return s
	}
	if after, ok := strings.CutPrefix(rest[i:], ": "); ok {
		return after
	}
	return s
}

// decodeYAMLMapping decodes the YAML mapping node into the struct v key by
// key, so that an error names its key and line and an unknown key is an
// error.
func decodeYAMLMapping(node *yaml.Node, v reflect.Value, path string) error {
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	if node.Kind == yaml.AliasNode && node.Alias != nil {
		node = node.Alias
	}
	if node.Kind == yaml.ScalarNode && node.ShortTag() == "!!null" {
		return nil
	}
	if node.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: want a mapping", node.Line, pathOr(path))
	}
	idx := fieldIndex(v.Type(), "yaml")
	seen := make(map[string]bool)
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, val := node.Content[i], node.Content[i+1]
		key := k.Value
		if k.ShortTag() == "!!merge" {
			return fmt.Errorf("line %d: merge keys (<<) are not supported", k.Line)
		}
		fi, ok := idx[key]
		if !ok {
			return fmt.Errorf("line %d: %w", k.Line, unknownKey(path, key))
		}
		if seen[key] {
			return fmt.Errorf("line %d: %s: given twice", k.Line, path+key)
		}
		seen[key] = true
		f := v.Field(fi)
		if f.Kind() == reflect.Struct && !reflect.PointerTo(f.Type()).Implements(yamlUnmarshaler) {
			if err := decodeYAMLMapping(val, f, path+key+"."); err != nil {
				return err
			}
			continue
		}
		if err := val.Decode(f.Addr().Interface()); err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) && len(te.Errors) > 0 {
				err = errors.New(stripYAMLLine(te.Errors[0]))
			}
			return fmt.Errorf("line %d: %s: %w", val.Line, path+key, err)
		}
	}
	return nil
}

// duration is a time.Duration written as a string ("1m30s") and read from
// one; see [parseDuration].
type duration time.Duration

func (d duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func (d *duration) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		return d.set(s)
	case string(b) == "0":
		*d = 0
		return nil
	}
	return fmt.Errorf("invalid duration %s: want a string such as \"1s\"", b)
}

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a duration such as 1s")
	}
	if n.ShortTag() == "!!null" {
		return nil
	}
	return d.set(n.Value)
}

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

func (b *byteSize) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	s := string(data)
	if len(data) > 0 && data[0] == '"' {
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
	}
	return b.set(s)
}

func (b *byteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a size such as 1048576 or 1MiB")
	}
	if n.ShortTag() == "!!null" {
		return nil
	}
	return b.set(n.Value)
}

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

// intValue is an int that must be written as a whole number: YAML would
// otherwise truncate 1.5 to 1.
type intValue int

func (n *intValue) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	return n.set(s)
}

func (n *intValue) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return errors.New("want a whole number")
	}
	if node.ShortTag() == "!!null" {
		return nil
	}
	return n.set(node.Value)
}

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

func (l *levelValue) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	return l.set(s)
}

func (l *levelValue) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a level such as info")
	}
	return l.set(n.Value)
}

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
