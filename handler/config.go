package handler

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/metric"

	"github.com/lokislog/lokislog/buffer"
	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/header"
	"github.com/lokislog/lokislog/internal/labels"
	"github.com/lokislog/lokislog/internal/linked"
)

// Defaults for the zero values of [Config].
const (
	DefaultURL            = "http://localhost:3100"
	DefaultBatchWait      = buffer.DefaultBatchWait      // 1s
	DefaultBatchSize      = buffer.DefaultBatchSize      // 1 MiB
	DefaultMaxBufferBytes = buffer.DefaultMaxBufferBytes // 8 MiB
	// DefaultSpoolMaxBufferBytes is MaxBufferBytes' default with a
	// SpoolDir: the spool holds what memory does not. 4 MiB.
	DefaultSpoolMaxBufferBytes = buffer.DefaultSpoolMaxBufferBytes
	DefaultMaxStreams          = 1000
	DefaultMaxLineSize         = 256 << 10

	// MinMaxLineSize is the smallest MaxLineSize New accepts: a cut line
	// must still have room for its truncation marker.
	MinMaxLineSize = 64
)

// Config configures a [Handler]. The zero value works: it sends logfmt
// lines over protobuf+snappy to http://localhost:3100 with the label
// service_name set to the executable's name, keeping up to 8 MiB in memory.
//
// The json and yaml tags use the names Promtail and Alloy users know.
type Config struct {
	// URL is Loki's base URL; the push path /loki/api/v1/push is added
	// unless the URL already ends with it. Default "http://localhost:3100".
	// Only http and https URLs with a host (and a port from 1 to 65535)
	// are accepted.
	URL string `json:"url" yaml:"url"`
	// TenantID is sent as X-Scope-OrgID when not empty: at most 150 bytes
	// of a-z, A-Z, 0-9 and !-_.*'(), not "." or "..", as Loki requires.
	// Default: none.
	TenantID string `json:"tenant_id" yaml:"tenant_id"`

	// Labels are static stream labels added to every entry. Names must be
	// valid Loki label names ([a-zA-Z_][a-zA-Z0-9_]*, no "__" prefix) and
	// values valid UTF-8 of at most 2048 bytes; at most 15 labels. A label
	// with an empty value is not sent. Default: only service_name, set to
	// the executable's base name when Labels does not name it.
	Labels map[string]string `json:"labels" yaml:"labels"`
	// LabelKeys names attributes promoted to stream labels. An attribute
	// inside groups is named by its dotted path ("http.method") and becomes
	// the label of that path sanitised to Loki's rules ("http_method").
	// "level" makes the record level a label (and takes it out of the
	// line). Default: none; only Labels are stream labels.
	LabelKeys []string `json:"label_keys" yaml:"label_keys"`
	// MetadataKeys names attributes sent as structured metadata instead of
	// in the line, by dotted path as for LabelKeys; the metadata name is
	// the sanitised path. Default: none (trace_id and span_id are always
	// sent when the record's context carries a valid span).
	MetadataKeys []string `json:"metadata_keys" yaml:"metadata_keys"`

	// Level is the minimum level handled. Default (nil): slog.LevelInfo.
	Level slog.Leveler `json:"-" yaml:"-"`
	// AddSource adds the caller's file:line as the "source" attribute.
	// Default false.
	AddSource bool `json:"add_source" yaml:"add_source"`
	// ReplaceAttr rewrites each non-group attribute before it is used,
	// exactly as slog.HandlerOptions.ReplaceAttr, including for the
	// built-in time, level, msg and source attributes. LabelKeys and
	// MetadataKeys match the attribute it returns. Default nil.
	ReplaceAttr func(groups []string, a slog.Attr) slog.Attr `json:"-" yaml:"-"`
	// Format is the line format: "logfmt" (default) or "json".
	Format string `json:"format" yaml:"format"`

	// Protocol is the push encoding: "protobuf" (default, snappy) or
	// "json" (gzip).
	Protocol string `json:"protocol" yaml:"protocol"`
	// Compression is the body compression of "json" pushes: "gzip"
	// (default) or "none". Protobuf pushes are always snappy-compressed, so
	// with "protobuf" it must be "" or "snappy". Gzip needs the program to
	// import github.com/lokislog/lokislog/exporter/jsongzip (New says so).
	Compression string `json:"compression" yaml:"compression"`
	// BatchWait is the longest an entry waits before its batch is sent.
	// Default 1s.
	BatchWait time.Duration `json:"batch_wait" yaml:"batch_wait"`
	// BatchSize is the batch size in bytes that triggers a send. Default
	// 1 MiB.
	BatchSize int `json:"batch_size" yaml:"batch_size"`
	// MaxBufferBytes bounds the memory held by unsent entries; when it is
	// full, new records go to the spool when there is one, and are
	// otherwise dropped and counted (buffer_full). An entry counts its
	// line, its metadata and its structs (48 bytes an entry, 32 a
	// metadata pair, on 64-bit platforms).
	// Default 8 MiB, or 4 MiB with a SpoolDir (the spool holds the rest;
	// batches start spilling at three quarters of the bound).
	MaxBufferBytes int `json:"max_buffer_bytes" yaml:"max_buffer_bytes"`
	// MaxStreams caps the distinct label sets this handler (and all its
	// WithAttrs/WithGroup clones) sends. A record that would open one more
	// stream is sent on the static labels' stream with its attribute labels
	// as structured metadata, and counted in Stats.StreamOverflow.
	// Default 1000.
	MaxStreams int `json:"max_streams" yaml:"max_streams"`
	// MaxLineSize is the longest line sent, in bytes; a longer line is cut
	// with a visible marker and counted in Stats.Truncated. Default 256 KiB
	// (Loki's default max_line_size); at least 64.
	MaxLineSize int `json:"max_line_size" yaml:"max_line_size"`

	// Timeout bounds each push request. Default: the exporter's (10s).
	Timeout time.Duration `json:"timeout" yaml:"timeout"`
	// MinBackoff is the first wait before a push is retried (after a 429,
	// a 5xx or a connection error); the wait doubles, with jitter, up to
	// MaxBackoff. Defaults 500ms and 30s; MaxBackoff must not be less than
	// MinBackoff.
	MinBackoff time.Duration `json:"min_backoff" yaml:"min_backoff"`
	MaxBackoff time.Duration `json:"max_backoff" yaml:"max_backoff"`
	// MaxRetryTime bounds the time spent pushing one batch, retries
	// included. When it runs out the batch stays queued (and spills to the
	// spool when there is one) and is tried again later; it is not dropped.
	// Default 1m.
	MaxRetryTime time.Duration `json:"max_retry_time" yaml:"max_retry_time"`
	// Username and Password enable HTTP basic auth when Username is set;
	// a Password without a Username is an error, and so is a Username
	// with ':' (basic auth splits there). Default: the user information
	// of URL, if any.
	Username string `json:"username" yaml:"username"`
	Password string `json:"password" yaml:"password"`
	// BearerToken is sent as "Authorization: Bearer ..." when set. Setting
	// it together with Username is an error.
	BearerToken string `json:"bearer_token" yaml:"bearer_token"`
	// Headers are added to every push request. Names must be HTTP tokens,
	// values must not hold control characters other than tab, and two
	// names that differ only in case are an error.
	Headers map[string]string `json:"headers" yaml:"headers"`
	// TLS configures certificates for https URLs. Default: system roots.
	// A client certificate (CertFile, KeyFile) needs the program to import
	// github.com/lokislog/lokislog/exporter/clientcert (New says so).
	TLS TLSConfig `json:"tls_config" yaml:"tls_config"`
	// HTTPClient, when set, sends the pushes instead of the client's own
	// (HTTP/1.1, proxies from the environment, TLS; see
	// [exporter.Config.HTTPClient]); an *http.Client is one. Set one for
	// HTTP/2 or a SOCKS proxy. Without a SpoolDir it may be called by two
	// goroutines at once (two pushes in flight), as an *http.Client
	// allows. Default: the client's own.
	HTTPClient exporter.Doer `json:"-" yaml:"-"`

	// ErrorHandler receives asynchronous errors: failed pushes, spool
	// problems, and drops as a *buffer.DropError (at most one a second).
	// It is called from a goroutine of the library's, one error at a time,
	// never while a lock is held: it may log through this handler. It
	// should not block (errors that find the queue of 64 full are counted
	// and reported as one). Default: a rate-limited line on stderr. It is
	// never slog.Default().
	ErrorHandler func(error) `json:"-" yaml:"-"`

	// SpoolDir is the directory of the on-disk spool; "" (default) keeps
	// data in memory only.
	SpoolDir string `json:"spool_dir" yaml:"spool_dir"`
	// SpoolMode is "spill" (default: batches go to disk when memory passes
	// three quarters of MaxBufferBytes, when a push fails or runs longer than
	// SpillAfter, and at Shutdown) or "always" (every record is written to
	// the spool before Handle returns).
	SpoolMode string `json:"spool_mode" yaml:"spool_mode"`
	// SpoolSync is "interval" (default: fsync every SpoolSyncInterval),
	// "batch" (fsync every write) or "never" (leave it to the OS).
	SpoolSync string `json:"spool_sync" yaml:"spool_sync"`
	// SpoolSyncInterval is the fsync period of SpoolSync "interval".
	// Default 1s.
	SpoolSyncInterval time.Duration `json:"spool_sync_interval" yaml:"spool_sync_interval"`
	// SpillAfter is how long a push may run or keep failing before the
	// batches in memory are written to the spool ("spill" mode). Default 5s.
	SpillAfter time.Duration `json:"spill_after" yaml:"spill_after"`
	// MaxSpoolBytes bounds the spool's records on disk; when it would be
	// passed, the oldest segment is deleted and its entries counted as
	// dropped (spool_full). Default 256 MiB. On Linux the segment being
	// written and the next one, prepared ahead, are preallocated in full:
	// the directory can hold up to two segments more (8 MiB each, or a
	// quarter of MaxSpoolBytes when that is smaller).
	MaxSpoolBytes int64 `json:"max_spool_bytes" yaml:"max_spool_bytes"`
	// MaxAge drops spooled entries older than this at replay. Default 7 days.
	MaxAge time.Duration `json:"max_age" yaml:"max_age"`

	// MeterProvider receives the handler's own metrics (see the package
	// documentation, "Metrics"). Default (nil): the global provider,
	// otel.GetMeterProvider(), which records nothing until the application
	// installs an SDK. Pass noop.NewMeterProvider() to turn them off.
	MeterProvider metric.MeterProvider `json:"-" yaml:"-"`
}

// keyClass says where an attribute goes.
type keyClass uint8

const (
	classLine keyClass = iota
	classLabel
	classMeta
)

type keyInfo struct {
	class keyClass
	name  string // sanitised label or metadata name
}

// settings is a validated Config with defaults applied.
type settings struct {
	Config
	json       bool
	static     []labels.Pair // sorted
	keys       map[string]keyInfo
	keyLens    uint64 // bit n set: some key has length n (n < 64)
	keyLong    bool   // some key is 64 bytes or longer
	levelInfo  keyInfo
	msgInfo    keyInfo
	sourceInfo keyInfo
}

// problems collects what is wrong with a Config, all of it reported at once.
type problems []error

// add appends a problem. Not inlined: validate calls it from about thirty
// places, and inlined copies of the append would cost the binary about
// 3 KB (issue 4's footprint target).
//
//go:noinline
func (p *problems) add(format string, args ...any) {
	*p = append(*p, fmt.Errorf(format, args...))
}

// validate checks cfg and fills in defaults.
func validate(cfg Config) (*settings, error) {
	var errs problems
	bad := errs.add

	if cfg.URL == "" {
		cfg.URL = DefaultURL
	}
	if u, err := url.Parse(cfg.URL); err != nil {
		// The *url.Error would repeat the URL, password included.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		bad("url: %v", err)
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		if shown := redactURL(u); shown != "" {
			bad("url %q: want http:// or https:// with a host", shown)
		} else {
			bad("url: want http:// or https:// with a host")
		}
	} else if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			bad("url: port %.20q: want 1 to 65535", p)
		}
	}
	if err := checkTenant(cfg.TenantID); err != nil {
		bad("tenant_id: %v", err)
	}
	switch {
	case cfg.Password != "" && cfg.Username == "":
		bad("password: set without username")
	case cfg.Username != "" && cfg.BearerToken != "":
		bad("username and bearer_token: both set (basic auth or a bearer token, not both)")
	}
	if !header.ValidValue(cfg.BearerToken) {
		bad("bearer_token: has a control character (value not shown)")
	}
	if strings.Contains(cfg.Username, ":") {
		// RFC 7617: the server splits user and password at the first colon.
		bad("username: must not contain \":\" (basic auth would split it there)")
	}
	checkHeaders(cfg.Headers, bad)

	s := &settings{Config: cfg}
	switch cfg.Format {
	case "", "logfmt":
		s.Format = "logfmt"
	case "json":
		s.json = true
	default:
		bad("format %q: want \"logfmt\" or \"json\"", cfg.Format)
	}
	switch cfg.Protocol {
	case "":
		s.Protocol = "protobuf"
	case "protobuf", "json":
	default:
		bad("protocol %q: want \"protobuf\" or \"json\"", cfg.Protocol)
	}
	compression := strings.ToLower(cfg.Compression)
	switch compression {
	case "":
	case exporter.CompressionSnappy:
		if s.Protocol == "json" {
			bad("compression %q: want \"gzip\" or \"none\" with protocol json", cfg.Compression)
		}
	case exporter.CompressionGzip, exporter.CompressionNone:
		if s.Protocol != "json" {
			bad("compression %q: protobuf pushes are always snappy-compressed (set protocol json)", cfg.Compression)
		}
	default:
		bad("compression %q: want \"gzip\" or \"none\" (json), \"snappy\" (protobuf)", cfg.Compression)
	}
	if s.Protocol == "json" && (compression == "" || compression == exporter.CompressionGzip) && linked.AppendGzip == nil {
		bad("%s", linked.NoGzip)
	}
	switch cfg.SpoolMode {
	case "", "spill", "always":
	default:
		bad("spool_mode %q: want \"spill\" or \"always\"", cfg.SpoolMode)
	}
	switch cfg.SpoolSync {
	case "", "interval", "batch", "never":
	default:
		bad("spool_sync %q: want \"interval\", \"batch\" or \"never\"", cfg.SpoolSync)
	}

	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"batch_wait", cfg.BatchWait}, {"timeout", cfg.Timeout}, {"max_age", cfg.MaxAge},
		{"min_backoff", cfg.MinBackoff}, {"max_backoff", cfg.MaxBackoff}, {"max_retry_time", cfg.MaxRetryTime},
		{"spool_sync_interval", cfg.SpoolSyncInterval}, {"spill_after", cfg.SpillAfter},
	} {
		if d.v < 0 {
			bad("%s %v: must not be negative", d.name, d.v)
		}
	}
	if minB, maxB := cmp.Or(cfg.MinBackoff, exporter.DefaultMinBackoff), cmp.Or(cfg.MaxBackoff, exporter.DefaultMaxBackoff); minB > 0 && maxB > 0 && maxB < minB {
		bad("max_backoff %v is less than min_backoff %v", maxB, minB)
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"batch_size", int64(cfg.BatchSize)}, {"max_buffer_bytes", int64(cfg.MaxBufferBytes)},
		{"max_streams", int64(cfg.MaxStreams)}, {"max_line_size", int64(cfg.MaxLineSize)},
		{"max_spool_bytes", cfg.MaxSpoolBytes},
	} {
		if n.v < 0 {
			bad("%s %d: must not be negative", n.name, n.v)
		}
	}
	if s.BatchWait == 0 {
		s.BatchWait = DefaultBatchWait
	}
	if s.BatchSize == 0 {
		s.BatchSize = DefaultBatchSize
	}
	if s.MaxBufferBytes == 0 {
		s.MaxBufferBytes = DefaultMaxBufferBytes
		if s.SpoolDir != "" {
			s.MaxBufferBytes = DefaultSpoolMaxBufferBytes
		}
	}
	if s.MaxStreams == 0 {
		s.MaxStreams = DefaultMaxStreams
	}
	if s.MaxLineSize == 0 {
		s.MaxLineSize = DefaultMaxLineSize
	} else if s.MaxLineSize > 0 && s.MaxLineSize < MinMaxLineSize {
		bad("max_line_size %d: must be at least %d", s.MaxLineSize, MinMaxLineSize)
	}
	switch {
	case (cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == ""):
		bad("tls_config: cert_file and key_file go together")
	case cfg.TLS.CertFile != "" && cfg.HTTPClient == nil && linked.LoadKeyPair == nil: // TLS is HTTPClient's otherwise
		bad("tls_config: %s", linked.NoClientCert)
	}

	// Static labels.
	for name, value := range cfg.Labels {
		switch {
		case !labels.Valid(name):
			bad("label name %q: want [a-zA-Z_][a-zA-Z0-9_]*, at most %d bytes, no \"__\" prefix", name, labels.MaxNameLen)
		case !utf8.ValidString(value):
			bad("label %s: value is not valid UTF-8", name)
		case len(value) > labels.MaxValueLen:
			bad("label %s: value is %d bytes, Loki allows %d", name, len(value), labels.MaxValueLen)
		case value != "":
			s.static = append(s.static, labels.Pair{Name: name, Value: value})
		}
	}
	if _, ok := cfg.Labels["service_name"]; !ok && len(s.static) < labels.MaxLabels {
		s.static = append(s.static, labels.Pair{Name: "service_name", Value: defaultServiceName()})
	}
	if len(s.static) > labels.MaxLabels {
		bad("labels: %d labels, Loki allows %d per stream", len(s.static), labels.MaxLabels)
	}
	labels.SortPairs(s.static)

	// Attribute keys.
	s.keys = make(map[string]keyInfo)
	addKey := func(list string, key string, class keyClass) {
		if key == "" {
			bad("%s: empty key", list)
			return
		}
		if old, ok := s.keys[key]; ok && old.class != class {
			bad("key %q is in both label_keys and metadata_keys", key)
			return
		}
		s.keys[key] = keyInfo{class: class, name: labels.Sanitize(key)}
		if n := len(key); n < 64 {
			s.keyLens |= 1 << n
		} else {
			s.keyLong = true
		}
	}
	for _, k := range cfg.LabelKeys {
		addKey("label_keys", k, classLabel)
	}
	for _, k := range cfg.MetadataKeys {
		addKey("metadata_keys", k, classMeta)
	}
	s.levelInfo = s.keys[slog.LevelKey]
	s.msgInfo = s.keys[slog.MessageKey]
	s.sourceInfo = s.keys[slog.SourceKey]

	if len(errs) > 0 {
		return nil, fmt.Errorf("handler: invalid config: %w", errors.Join(errs...))
	}
	return s, nil
}

// redactURL returns u for an error message: without its password, query
// and fragment, which may hold credentials, or "" when it has an opaque
// part ("user:pass@host" without "//" parses as the scheme "user" with the
// opaque "pass@host").
func redactURL(u *url.URL) string {
	if u.Opaque != "" {
		return ""
	}
	r := *u
	r.RawQuery, r.ForceQuery, r.Fragment, r.RawFragment = "", false, "", ""
	return r.Redacted()
}

// maxTenantLen is the longest tenant ID Loki accepts, in bytes.
const maxTenantLen = 150

// checkTenant returns why Loki refuses id as a tenant ID (X-Scope-OrgID),
// or nil; "" is no tenant. Loki takes at most 150 bytes of a-z, A-Z, 0-9
// and !-_.*'(), not "." or ".." ("a|b" would name two tenants).
func checkTenant(id string) error {
	if len(id) > maxTenantLen {
		return fmt.Errorf("%d bytes, Loki allows %d", len(id), maxTenantLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!-_.*'()", c) >= 0 {
			continue
		}
		return fmt.Errorf("%q: Loki allows only a-z, A-Z, 0-9 and !-_.*'()", id)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%q is not a tenant Loki accepts", id)
	}
	return nil
}

// checkHeaders reports through bad the headers that cannot be sent: names
// that are not HTTP tokens, values with control characters (a line break
// would inject a header), and names given twice in different case (one
// header, whose value would depend on map order). Values, which may be
// credentials, are not shown.
func checkHeaders(headers map[string]string, bad func(string, ...any)) {
	seen := make(map[string]string, len(headers))
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		if !header.ValidName(name) {
			bad("headers: header name %q: want an HTTP token (letters, digits and !#$%%&'*+-.^_`|~)", name)
			continue
		}
		if !header.ValidValue(headers[name]) {
			bad("headers.%s: value has a control character (value not shown)", name)
		}
		canon := http.CanonicalHeaderKey(name)
		if first, dup := seen[canon]; dup {
			bad("headers.%s: given twice, also as %s", name, first)
		}
		seen[canon] = name
	}
}

// defaultServiceName is the executable's base name without extension, as
// OpenTelemetry and Loki name services, or "unknown_service".
func defaultServiceName() string {
	name := ""
	if exe, err := os.Executable(); err == nil {
		name = filepath.Base(exe)
	} else if len(os.Args) > 0 {
		name = filepath.Base(os.Args[0])
	}
	if runtime.GOOS == "windows" {
		name = strings.TrimSuffix(name, ".exe")
	}
	name = labels.CutValue(strings.TrimSpace(name), labels.MaxValueLen)
	if name == "" || name == "." || name == string(filepath.Separator) {
		return "unknown_service"
	}
	return name
}
