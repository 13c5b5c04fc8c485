package exporter

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/lokislog/lokislog/internal/header"
	"github.com/lokislog/lokislog/internal/linked"
)

// Version is the version of this module, sent in the default User-Agent.
const Version = "0.1.0"

// PushPath is Loki's push endpoint, added to [Config.URL] unless it already
// ends with it.
const PushPath = "/loki/api/v1/push"

// Protocols and compressions of [Config].
const (
	ProtocolProtobuf = "protobuf"
	ProtocolJSON     = "json"

	CompressionSnappy = "snappy"
	CompressionGzip   = "gzip"
	CompressionNone   = "none"
)

// Defaults of [Config].
const (
	DefaultTimeout       = 10 * time.Second
	DefaultMinBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	DefaultMaxRetryTime  = time.Minute
	DefaultMaxRetryAfter = time.Minute
)

// Config configures a [Client]. Only URL is required; every other field's
// zero value selects its documented default.
type Config struct {
	// URL is Loki's base URL, http or https, such as "http://loki:3100".
	// PushPath is appended to its path unless the path already ends with
	// it, so a gateway prefix is kept: "http://gw/loki" pushes to
	// "http://gw/loki/loki/api/v1/push". User information in the URL
	// ("https://user:pass@host") is used for basic auth when Username and
	// BearerToken are empty, is removed from the URL either way, and never
	// appears in errors. Required.
	URL string `json:"url" yaml:"url"`

	// TenantID is sent as X-Scope-OrgID. A batch's own Tenant overrides it.
	// Default: none (single-tenant Loki).
	TenantID string `json:"tenant_id" yaml:"tenant_id"`

	// Protocol is "protobuf" (snappy-compressed protobuf, the default) or
	// "json".
	Protocol string `json:"protocol" yaml:"protocol"`

	// Compression is the JSON body's compression: "gzip" (the default) or
	// "none". For protobuf it must be empty or "snappy": Loki requires
	// snappy there. Gzip needs the program to import
	// github.com/lokislog/lokislog/exporter/jsongzip; without it, JSON with
	// gzip is an error of NewClient.
	Compression string `json:"compression" yaml:"compression"`

	// Username and Password are sent with HTTP basic auth when Username is
	// not empty. A Password without a Username is an error.
	Username string `json:"username" yaml:"username"`
	Password string `json:"password" yaml:"password"`

	// BearerToken is sent as "Authorization: Bearer <token>" when not
	// empty. Setting it together with basic auth is an error.
	BearerToken string `json:"bearer_token" yaml:"bearer_token"`

	// Headers are added to every request. The client's own headers
	// (Content-Type, Content-Encoding, User-Agent, Authorization when auth
	// is configured, X-Scope-OrgID when a tenant is known) take precedence.
	// Names must be valid HTTP header names; values must not contain line
	// breaks.
	Headers map[string]string `json:"headers" yaml:"headers"`

	// TLS configures the client's TLS: custom CA, client certificate for
	// mTLS, server name. Ignored when HTTPClient is set.
	TLS TLSConfig `json:"tls_config" yaml:"tls_config"`

	// HTTPClient, when set, sends the requests instead of the client's own
	// (an *http.Client is one). The client's own speaks HTTP/1.1, keeps one
	// connection alive, uses the proxy from the environment (HTTP_PROXY,
	// HTTPS_PROXY, NO_PROXY; http and https proxies) and TLS, and follows
	// 307 and 308 redirects (up to 3) with the POST kept; it is not
	// net/http's client, which would add about 0.45 MB to a program that
	// does not use it otherwise. Set an *http.Client for HTTP/2 or a SOCKS
	// proxy. The TLS field is then ignored, Shutdown does not close its
	// idle connections, and its redirect policy applies. Default: the
	// client's own.
	HTTPClient Doer `json:"-" yaml:"-"`

	// Timeout bounds each HTTP request (one attempt), response included.
	// Default: 10s.
	Timeout time.Duration `json:"timeout" yaml:"timeout"`

	// MinBackoff is the first wait before a retry; the wait doubles (with
	// ±50% jitter) up to MaxBackoff. Defaults: 500ms and 30s.
	MinBackoff time.Duration `json:"min_backoff" yaml:"min_backoff"`
	MaxBackoff time.Duration `json:"max_backoff" yaml:"max_backoff"`

	// MaxRetryTime bounds one Export call, retries and split halves
	// included; Export's context may end it earlier. Default: 1m.
	MaxRetryTime time.Duration `json:"max_retry_time" yaml:"max_retry_time"`

	// MaxRetryAfter caps the wait a Retry-After header may ask for.
	// Default: 1m.
	MaxRetryAfter time.Duration `json:"max_retry_after" yaml:"max_retry_after"`

	// UserAgent is the User-Agent header. Default: "lokislog/" + Version.
	UserAgent string `json:"user_agent" yaml:"user_agent"`

	// OnRequest, when set, is called after every HTTP attempt with its
	// status (0 when no response was received) and duration, on the
	// goroutine that called Export. It must be fast and must not call the
	// client.
	OnRequest func(status int, dur time.Duration) `json:"-" yaml:"-"`
}

// TLSConfig configures TLS towards Loki.
type TLSConfig struct {
	// CAFile is a PEM file of certificates that verify the server, used
	// instead of the system's roots. Default: the system's roots.
	CAFile string `json:"ca_file" yaml:"ca_file"`
	// CertFile and KeyFile are the PEM client certificate and key for mutual
	// TLS. Both or neither must be set. Loading them needs the program to
	// import github.com/lokislog/lokislog/exporter/clientcert; without it,
	// setting them is an error of NewClient.
	CertFile string `json:"cert_file" yaml:"cert_file"`
	KeyFile  string `json:"key_file" yaml:"key_file"`
	// ServerName overrides the name the server certificate is checked
	// against. Default: the URL's host.
	ServerName string `json:"server_name" yaml:"server_name"`
	// InsecureSkipVerify disables verification of the server's certificate.
	// For tests only.
	InsecureSkipVerify bool `json:"insecure_skip_verify" yaml:"insecure_skip_verify"`
}

// settings is a validated Config with its defaults applied.
type settings struct {
	cfg         Config
	url         string // push URL without user information
	redacted    string // url for error messages (query removed)
	json        bool
	gzip        bool
	contentType string
	encoding    string // Content-Encoding, "" for none
	auth        string // Authorization header value, "" for none
	secrets     []string
	header      http.Header // static headers: Headers, User-Agent, Content-*
}

func (cfg Config) settings() (*settings, error) {
	s := &settings{cfg: cfg}
	c := &s.cfg

	if c.URL == "" {
		return nil, errors.New("url is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		// A *url.Error quotes the whole URL, credentials included: keep
		// only what is wrong.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url: scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("url: no host")
	}
	if u.User != nil {
		if c.Username == "" && c.BearerToken == "" {
			c.Username = u.User.Username()
			c.Password, _ = u.User.Password()
		}
		u.User = nil
	}
	u.Fragment, u.RawFragment = "", ""
	if p := strings.TrimRight(u.Path, "/"); strings.HasSuffix(p, PushPath) {
		u.Path, u.RawPath = p, ""
	} else {
		u = u.JoinPath(PushPath)
	}
	s.url = u.String()
	r := *u
	r.RawQuery, r.ForceQuery = "", false
	s.redacted = r.String()

	switch strings.ToLower(c.Protocol) {
	case "", ProtocolProtobuf:
		switch strings.ToLower(c.Compression) {
		case "", CompressionSnappy:
		default:
			return nil, fmt.Errorf("compression %q: protobuf pushes are always snappy-compressed", c.Compression)
		}
		s.contentType, s.encoding = "application/x-protobuf", ""
	case ProtocolJSON:
		s.json = true
		s.contentType = "application/json"
		switch strings.ToLower(c.Compression) {
		case "", CompressionGzip:
			if linked.AppendGzip == nil {
				return nil, errors.New(linked.NoGzip)
			}
			s.gzip, s.encoding = true, "gzip"
		case CompressionNone:
		default:
			return nil, fmt.Errorf("compression %q: want %q or %q for json", c.Compression, CompressionGzip, CompressionNone)
		}
	default:
		return nil, fmt.Errorf("protocol %q: want %q or %q", c.Protocol, ProtocolProtobuf, ProtocolJSON)
	}

	switch {
	case c.Password != "" && c.Username == "":
		return nil, errors.New("password set without username")
	case c.Username != "" && c.BearerToken != "":
		return nil, errors.New("both basic auth and bearer token set")
	case c.Username != "":
		req := http.Request{Header: http.Header{}}
		req.SetBasicAuth(c.Username, c.Password)
		s.auth = req.Header.Get("Authorization")
	case c.BearerToken != "":
		s.auth = "Bearer " + c.BearerToken
	}
	if !header.ValidValue(c.BearerToken) {
		return nil, errors.New("bearer_token contains a control character")
	}
	if !header.ValidValue(c.TenantID) {
		return nil, errors.New("tenant_id contains a control character")
	}
	for _, v := range []string{c.Password, c.BearerToken, s.auth} {
		if len(v) >= 4 { // shorter ones would redact ordinary words
			s.secrets = append(s.secrets, v)
		}
	}

	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"timeout", c.Timeout}, {"min_backoff", c.MinBackoff}, {"max_backoff", c.MaxBackoff},
		{"max_retry_time", c.MaxRetryTime}, {"max_retry_after", c.MaxRetryAfter},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("%s: negative duration %v", d.name, d.v)
		}
	}
	c.Timeout = cmpOr(c.Timeout, DefaultTimeout)
	c.MinBackoff = cmpOr(c.MinBackoff, DefaultMinBackoff)
	c.MaxBackoff = cmpOr(c.MaxBackoff, DefaultMaxBackoff)
	c.MaxRetryTime = cmpOr(c.MaxRetryTime, DefaultMaxRetryTime)
	c.MaxRetryAfter = cmpOr(c.MaxRetryAfter, DefaultMaxRetryAfter)
	if c.MaxBackoff < c.MinBackoff {
		return nil, fmt.Errorf("max_backoff %v is less than min_backoff %v", c.MaxBackoff, c.MinBackoff)
	}
	c.UserAgent = cmpOr(c.UserAgent, "lokislog/"+Version)
	if !header.ValidValue(c.UserAgent) {
		return nil, errors.New("user_agent contains a control character")
	}

	s.header = http.Header{}
	for name, v := range c.Headers {
		if !header.ValidName(name) {
			return nil, fmt.Errorf("headers: invalid header name %q", name)
		}
		if !header.ValidValue(v) {
			return nil, fmt.Errorf("headers: value of %q contains a control character", name)
		}
		s.header.Set(name, v)
		if len(v) >= 4 {
			s.secrets = append(s.secrets, v) // headers may carry keys
		}
	}
	s.header.Set("Content-Type", s.contentType)
	if s.encoding != "" {
		s.header.Set("Content-Encoding", s.encoding)
	} else {
		s.header.Del("Content-Encoding")
	}
	s.header.Set("User-Agent", c.UserAgent)
	if s.auth != "" {
		s.header.Set("Authorization", s.auth)
	}
	return s, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// tlsConfig builds the TLS configuration of the client's own transport.
func (t TLSConfig) tlsConfig() (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // only when asked
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: ca file %s: no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	switch {
	case t.CertFile == "" && t.KeyFile == "":
	case t.CertFile == "":
		return nil, errors.New("tls: key_file set without cert_file")
	case t.KeyFile == "":
		return nil, errors.New("tls: cert_file set without key_file")
	default:
		if linked.LoadKeyPair == nil {
			return nil, errors.New("tls: " + linked.NoClientCert)
		}
		cert, err := linked.LoadKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: load client certificate %s and key %s: %w", t.CertFile, t.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
