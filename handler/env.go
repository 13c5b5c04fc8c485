package handler

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/lokislog/lokislog/internal/labels"
)

// EnvPrefix is the prefix of the environment variables [ConfigFromEnv]
// reads.
const EnvPrefix = "LOKI_"

// maxSecretFile bounds what a *_FILE variable's file may hold.
const maxSecretFile = 64 << 10

// ConfigFromEnv returns the Config described by the LOKI_* environment
// variables; see [Config.ApplyEnv].
func ConfigFromEnv() (Config, error) {
	return ConfigFromEnvPrefix(EnvPrefix)
}

// ConfigFromEnvPrefix is [ConfigFromEnv] with another prefix than "LOKI_":
// with "MYAPP_LOKI_" it reads MYAPP_LOKI_URL and so on. The prefix is used
// as given; an empty prefix is an error.
func ConfigFromEnvPrefix(prefix string) (Config, error) {
	var c Config
	err := c.ApplyEnv(prefix)
	return c, err
}

// ApplyEnv sets the fields of c named by environment variables: prefix
// followed by the field's yaml name in upper case (LOKI_URL, LOKI_TENANT_ID,
// LOKI_BATCH_WAIT, ...), the tls_config fields without "TLS_" (LOKI_CA_FILE,
// LOKI_CERT_FILE, LOKI_KEY_FILE, LOKI_SERVER_NAME,
// LOKI_INSECURE_SKIP_VERIFY), and LOKI_LEVEL. An unset, empty or blank variable
// leaves its field alone; a set one replaces it (maps and lists too).
// LOKI_CERT_FILE and LOKI_PROTOCOL=json (gzip by default) need the program
// to import exporter/clientcert and exporter/jsongzip; New says so when one
// is missing.
//
// Values are read as [Config.UnmarshalJSON] reads them: durations such as
// "1s" or "7d", byte sizes such as 1048576 or "1MiB", levels by name or
// number, booleans as strconv.ParseBool reads them or yes/no/on/off. Lists
// (LOKI_LABEL_KEYS, LOKI_METADATA_KEYS) are comma-separated;
// LOKI_LABELS and LOKI_HEADERS are comma-separated key=value pairs (a value
// cannot hold a comma); spaces around items, keys and values are trimmed.
//
// LOKI_USERNAME, LOKI_PASSWORD and LOKI_BEARER_TOKEN may instead be given
// as LOKI_USERNAME_FILE, LOKI_PASSWORD_FILE and LOKI_BEARER_TOKEN_FILE:
// the path of a file (a mounted secret) whose content, without trailing
// line breaks, is the value. Setting both a variable and its _FILE
// variable is an error.
//
// A malformed value is a [*ConfigError] whose Key is the variable's name
// (with the prefix); all of them are reported together (errors.Join, so
// errors.As finds the first) and c is then unchanged. The values of secret
// variables (URL, username, password, bearer token, headers) never appear
// in errors. An empty prefix is an error: it would read variables such as
// USERNAME and URL that other programs set. ApplyEnv does not validate the
// result: [New] does.
func (c *Config) ApplyEnv(prefix string) error {
	if prefix == "" {
		// It would read URL, USERNAME (always set on Windows), LEVEL,
		// FORMAT and TIMEOUT, which other programs set for themselves.
		return errors.New("handler: environment: empty prefix: want one such as \"LOKI_\"")
	}
	n, err := applyEnv(*c, prefix, os.LookupEnv, readSecretFile)
	if err != nil {
		return fmt.Errorf("handler: environment: %w", err)
	}
	*c = n
	return nil
}

// envVar is one variable ApplyEnv reads.
type envVar struct {
	name   string // without the prefix
	secret bool   // its value never appears in errors
	file   bool   // name+"_FILE" may give the value instead
	set    func(c *Config, v string) error
}

func str(f func(c *Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *f(c) = v; return nil }
}

func dur(f func(c *Config) *duration) func(*Config, string) error {
	return func(c *Config, v string) error { return f(c).set(v) }
}

func size[T int | int64](f func(c *Config) *T) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseBytes(v)
		if err != nil {
			return err
		}
		if int64(T(n)) != n {
			return fmt.Errorf("invalid size %q: too large", v)
		}
		*f(c) = T(n)
		return nil
	}
}

func boolean(f func(c *Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := parseBool(v)
		*f(c) = b
		return err
	}
}

// envVars returns every variable ApplyEnv reads, in the order of Config's
// fields. A test checks that every yaml key has one. A function, not a
// variable, so that importing the package builds nothing at init.
func envVars() []envVar {
	return []envVar{
		{name: "URL", secret: true, set: str(func(c *Config) *string { return &c.URL })},
		{name: "TENANT_ID", set: str(func(c *Config) *string { return &c.TenantID })},
		{name: "LABELS", set: func(c *Config, v string) error {
			m, err := parsePairs(v, false)
			if err != nil {
				return err
			}
			for k := range m {
				if !labels.Valid(k) {
					return fmt.Errorf("label name %q: want [a-zA-Z_][a-zA-Z0-9_]*, no \"__\" prefix", k)
				}
			}
			c.Labels = m
			return nil
		}},
		{name: "LABEL_KEYS", set: func(c *Config, v string) error { c.LabelKeys = parseList(v); return nil }},
		{name: "METADATA_KEYS", set: func(c *Config, v string) error { c.MetadataKeys = parseList(v); return nil }},
		{name: "LEVEL", set: func(c *Config, v string) error {
			l, err := parseLevel(v)
			if err == nil {
				c.Level = l
			}
			return err
		}},
		{name: "ADD_SOURCE", set: boolean(func(c *Config) *bool { return &c.AddSource })},
		{name: "FORMAT", set: str(func(c *Config) *string { return &c.Format })},
		{name: "PROTOCOL", set: str(func(c *Config) *string { return &c.Protocol })},
		{name: "COMPRESSION", set: str(func(c *Config) *string { return &c.Compression })},
		{name: "BATCH_WAIT", set: dur(func(c *Config) *duration { return (*duration)(&c.BatchWait) })},
		{name: "BATCH_SIZE", set: size(func(c *Config) *int { return &c.BatchSize })},
		{name: "MAX_BUFFER_BYTES", set: size(func(c *Config) *int { return &c.MaxBufferBytes })},
		{name: "MAX_STREAMS", set: func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("invalid number %q", v)
			}
			c.MaxStreams = n
			return nil
		}},
		{name: "MAX_LINE_SIZE", set: size(func(c *Config) *int { return &c.MaxLineSize })},
		{name: "TIMEOUT", set: dur(func(c *Config) *duration { return (*duration)(&c.Timeout) })},
		{name: "MIN_BACKOFF", set: dur(func(c *Config) *duration { return (*duration)(&c.MinBackoff) })},
		{name: "MAX_BACKOFF", set: dur(func(c *Config) *duration { return (*duration)(&c.MaxBackoff) })},
		{name: "MAX_RETRY_TIME", set: dur(func(c *Config) *duration { return (*duration)(&c.MaxRetryTime) })},
		{name: "USERNAME", secret: true, file: true, set: str(func(c *Config) *string { return &c.Username })},
		{name: "PASSWORD", secret: true, file: true, set: str(func(c *Config) *string { return &c.Password })},
		{name: "BEARER_TOKEN", secret: true, file: true, set: str(func(c *Config) *string { return &c.BearerToken })},
		{name: "HEADERS", secret: true, set: func(c *Config, v string) error {
			m, err := parsePairs(v, true)
			c.Headers = m
			return err
		}},
		{name: "CA_FILE", set: str(func(c *Config) *string { return &c.TLS.CAFile })},
		{name: "CERT_FILE", set: str(func(c *Config) *string { return &c.TLS.CertFile })},
		{name: "KEY_FILE", set: str(func(c *Config) *string { return &c.TLS.KeyFile })},
		{name: "SERVER_NAME", set: str(func(c *Config) *string { return &c.TLS.ServerName })},
		{name: "INSECURE_SKIP_VERIFY", set: boolean(func(c *Config) *bool { return &c.TLS.InsecureSkipVerify })},
		{name: "SPOOL_DIR", set: str(func(c *Config) *string { return &c.SpoolDir })},
		{name: "SPOOL_MODE", set: str(func(c *Config) *string { return &c.SpoolMode })},
		{name: "SPOOL_SYNC", set: str(func(c *Config) *string { return &c.SpoolSync })},
		{name: "SPOOL_SYNC_INTERVAL", set: dur(func(c *Config) *duration { return (*duration)(&c.SpoolSyncInterval) })},
		{name: "MAX_SPOOL_BYTES", set: size(func(c *Config) *int64 { return &c.MaxSpoolBytes })},
		{name: "MAX_AGE", set: dur(func(c *Config) *duration { return (*duration)(&c.MaxAge) })},
		{name: "SPILL_AFTER", set: dur(func(c *Config) *duration { return (*duration)(&c.SpillAfter) })},
	}
}

// applyEnv returns c with the variables of lookup applied; readFile reads
// the files of *_FILE variables.
func applyEnv(c Config, prefix string, lookup func(string) (string, bool), readFile func(string) (string, error)) (Config, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return v
	}
	var errs []error
	for _, ev := range envVars() {
		name := prefix + ev.name
		v := get(name)
		if ev.file {
			fileName := name + "_FILE"
			if path := get(fileName); path != "" {
				if v != "" {
					errs = append(errs, &ConfigError{Key: name, Err: fmt.Errorf("%s and %s are both set; set one", name, fileName)})
					continue
				}
				s, err := readFile(path)
				if err != nil {
					errs = append(errs, &ConfigError{Key: fileName, Err: err})
					continue
				}
				name, v = fileName, s
			}
		}
		if strings.TrimSpace(v) == "" {
			continue // blank: as unset (LOKI_LABELS=" " must not empty the labels)
		}
		if err := ev.set(&c, v); err != nil {
			if ev.secret {
				err = fmt.Errorf("%w (value not shown)", err)
			}
			errs = append(errs, &ConfigError{Key: name, Err: err})
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// readSecretFile reads a *_FILE variable's file: at most 64 KiB, trailing
// line breaks removed, not empty.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return "", fmt.Errorf("%s is a directory", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err // an *os.PathError: it names the file
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxSecretFile)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// parseList splits a comma-separated list, trimming spaces and skipping
// empty items.
func parseList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parsePairs parses "k=v,k=v", trimming spaces, skipping empty items. A
// value may be empty. With secret, errors name items by position instead
// of quoting them.
func parsePairs(v string, secret bool) (map[string]string, error) {
	m := make(map[string]string)
	n := 0
	for item := range strings.SplitSeq(v, ",") {
		n++
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name := fmt.Sprintf("item %q", item)
		if secret {
			name = fmt.Sprintf("item %d", n)
		}
		k, val, ok := strings.Cut(item, "=")
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		switch {
		case !ok:
			return nil, fmt.Errorf("%s is not key=value", name)
		case k == "":
			return nil, fmt.Errorf("%s has an empty key", name)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("key %q is given twice", k)
		}
		m[k] = val
	}
	return m, nil
}

// parseBool reads strconv.ParseBool's forms and yes/no/on/off.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "on":
		return true, nil
	case "no", "off":
		return false, nil
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, fmt.Errorf("invalid boolean %q: want true or false", v)
	}
	return b, nil
}
