package lokitest

import (
	"errors"
	"fmt"
	"io"
	"log"
	"time"
)

// Loki's defaults, which [Limits] falls back to.
const (
	// DefaultMaxBodySize is Loki's distributor max_recv_msg_size (100 MiB). It
	// bounds the request body, and separately its decompressed size.
	DefaultMaxBodySize = 100 << 20
	// DefaultMaxGRPCMessageSize is the default grpc_server_max_recv_msg_size
	// of Loki's ingesters (4 MiB): a push that encodes larger, as the
	// distributor forwards it, fails with 500 ResourceExhausted.
	DefaultMaxGRPCMessageSize = 4 << 20
	// DefaultMaxLineSize is Loki's max_line_size (256KB, which Loki parses as
	// 256 KiB).
	DefaultMaxLineSize = 256 << 10
	// DefaultMaxLabelNames is Loki's max_label_names_per_series.
	DefaultMaxLabelNames = 15
	// DefaultMaxLabelNameLength is Loki's max_label_name_length, in bytes.
	DefaultMaxLabelNameLength = 1024
	// DefaultMaxLabelValueLength is Loki's max_label_value_length, in bytes.
	DefaultMaxLabelValueLength = 2048
	// DefaultMaxMetadataSize is Loki's max_structured_metadata_size (64KB,
	// 64 KiB): names plus values of one entry, in bytes.
	DefaultMaxMetadataSize = 64 << 10
	// DefaultMaxMetadataEntries is Loki's max_structured_metadata_entries_count.
	DefaultMaxMetadataEntries = 128
	// DefaultMaxAge is Loki's reject_old_samples_max_age.
	DefaultMaxAge = 7 * 24 * time.Hour
	// DefaultCreationGracePeriod is Loki's creation_grace_period: how far in
	// the future a timestamp may be.
	DefaultCreationGracePeriod = 10 * time.Minute
	// DefaultOrderingWindow is half of Loki's max_chunk_age (2 h): how far
	// behind the newest entry of its stream an entry may be.
	DefaultOrderingWindow = time.Hour
	// DefaultMaxStreams is Loki's max_global_streams_per_user.
	DefaultMaxStreams = 5000
)

// Limits are the per-server validation limits, named after Loki's
// limits_config. The zero value of each field means Loki's default; a
// negative value switches the check off (except MaxBodySize, which must not
// be negative: the body is always bounded).
type Limits struct {
	// MaxBodySize bounds the request body as received and, separately, its
	// decompressed size; over it the answer is 413. Default
	// [DefaultMaxBodySize].
	MaxBodySize int
	// MaxGRPCMessageSize bounds a push as Loki's distributor forwards it to
	// an ingester over gRPC: encoded as a logproto.PushRequest (for a
	// protobuf push, its decompressed body). Over it the answer is Loki's
	// 500 "rpc error: code = ResourceExhausted desc = grpc: received
	// message larger than max (N vs. M)" and nothing is stored. Default
	// [DefaultMaxGRPCMessageSize]; many deployments raise it.
	MaxGRPCMessageSize int
	// MaxLineSize is the longest accepted line in bytes; longer lines are
	// rejected with 400 "Max entry size". Default [DefaultMaxLineSize].
	MaxLineSize int
	// MaxLabelNames is the most labels a stream may have, not counting
	// service_name (as Loki counts). Default [DefaultMaxLabelNames].
	MaxLabelNames int
	// MaxLabelNameLength is the longest label name in bytes. Default
	// [DefaultMaxLabelNameLength].
	MaxLabelNameLength int
	// MaxLabelValueLength is the longest label value in bytes. Default
	// [DefaultMaxLabelValueLength].
	MaxLabelValueLength int
	// MaxMetadataSize bounds an entry's structured metadata, names plus
	// values, in bytes. Default [DefaultMaxMetadataSize].
	MaxMetadataSize int
	// MaxMetadataEntries bounds the number of structured metadata pairs of an
	// entry. Default [DefaultMaxMetadataEntries].
	MaxMetadataEntries int
	// MaxAge rejects entries older than now minus MaxAge. Default
	// [DefaultMaxAge].
	MaxAge time.Duration
	// CreationGracePeriod rejects entries newer than now plus it. Default
	// [DefaultCreationGracePeriod].
	CreationGracePeriod time.Duration
	// OrderingWindow rejects an entry that is more than this behind the
	// newest accepted entry of its stream ("entry too far behind"). Default
	// [DefaultOrderingWindow].
	OrderingWindow time.Duration
	// MaxStreams is the most streams a tenant may have; an entry that would
	// create one more is rejected with 429. Default [DefaultMaxStreams].
	MaxStreams int
}

// withDefaults returns l with zero fields set to Loki's defaults and
// negative ones to 0 (off).
func (l Limits) withDefaults() (Limits, error) {
	if l.MaxBodySize < 0 {
		return l, fmt.Errorf("lokitest: negative MaxBodySize %d", l.MaxBodySize)
	}
	def := func(v *int, d int) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	def(&l.MaxBodySize, DefaultMaxBodySize)
	def(&l.MaxGRPCMessageSize, DefaultMaxGRPCMessageSize)
	def(&l.MaxLineSize, DefaultMaxLineSize)
	def(&l.MaxLabelNames, DefaultMaxLabelNames)
	def(&l.MaxLabelNameLength, DefaultMaxLabelNameLength)
	def(&l.MaxLabelValueLength, DefaultMaxLabelValueLength)
	def(&l.MaxMetadataSize, DefaultMaxMetadataSize)
	def(&l.MaxMetadataEntries, DefaultMaxMetadataEntries)
	defD(&l.MaxAge, DefaultMaxAge)
	defD(&l.CreationGracePeriod, DefaultCreationGracePeriod)
	defD(&l.OrderingWindow, DefaultOrderingWindow)
	def(&l.MaxStreams, DefaultMaxStreams)
	return l, nil
}

// DefaultServiceNameLabels are the labels Loki looks at, in order, to fill in
// service_name (its discover_service_name default).
var DefaultServiceNameLabels = []string{
	"service", "app", "application", "app_name", "name", "app_kubernetes_io_name",
	"container", "container_name", "k8s_container_name", "component", "workload",
	"job", "k8s_job_name",
}

// Option configures a [Server].
type Option func(*config)

type config struct {
	limits       Limits
	multiTenant  bool
	discover     []string
	now          func() time.Time
	addr         string
	basicUser    string
	basicPass    string
	basicAuth    bool
	bearer       string
	errorLog     *log.Logger
	optionErrors []error
}

func newConfig(opts []Option) (config, error) {
	c := config{
		now:      time.Now,
		addr:     "127.0.0.1:0",
		errorLog: log.New(io.Discard, "", 0),
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	var err error
	c.limits, err = c.limits.withDefaults()
	return c, errors.Join(append(c.optionErrors, err)...)
}

// WithLimits sets the validation limits; see [Limits] for the defaults.
func WithLimits(l Limits) Option {
	return func(c *config) { c.limits = l }
}

// WithMultiTenant makes the server behave like Loki with auth_enabled: a push
// without X-Scope-OrgID is refused with 401, and an invalid tenant ID with
// 400. By default the header is optional and recorded as sent.
func WithMultiTenant() Option {
	return func(c *config) { c.multiTenant = true }
}

// WithServiceNameDiscovery makes the server add a service_name label to
// streams that have none, as Loki 3 does by default: the value of the first
// of labels present on the stream, else "unknown_service". With no labels
// given, [DefaultServiceNameLabels] are used. Off by default, so that
// recorded labels are exactly the ones sent.
func WithServiceNameDiscovery(labels ...string) Option {
	return func(c *config) {
		if len(labels) == 0 {
			labels = DefaultServiceNameLabels
		}
		c.discover = append([]string(nil), labels...)
	}
}

// WithClock sets the clock the timestamp checks use. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now == nil {
			c.optionErrors = append(c.optionErrors, errors.New("lokitest: nil clock"))
			return
		}
		c.now = now
	}
}

// WithAddr sets the address to listen on. Default "127.0.0.1:0" (a free
// port on the loopback interface).
func WithAddr(addr string) Option {
	return func(c *config) { c.addr = addr }
}

// WithBasicAuth makes the server refuse, with 401, pushes without these HTTP
// basic-auth credentials (as a gateway in front of Loki does).
func WithBasicAuth(user, password string) Option {
	return func(c *config) { c.basicUser, c.basicPass, c.basicAuth = user, password, true }
}

// WithBearerToken makes the server refuse, with 401, pushes without the
// header "Authorization: Bearer <token>".
func WithBearerToken(token string) Option {
	return func(c *config) { c.bearer = token }
}

// WithErrorLog sets the logger for the HTTP server's own errors (such as
// failed TLS handshakes or malformed requests). Default: discarded.
func WithErrorLog(l *log.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.errorLog = l
		}
	}
}
