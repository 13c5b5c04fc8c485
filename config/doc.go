// Package config reads a lokislog [handler.Config] from a YAML or JSON
// file.
//
//	cfg, err := config.LoadFile("/etc/mu-api/loki.yaml")
//	if err != nil { ... }
//	if err := cfg.ApplyEnv(handler.EnvPrefix); err != nil { ... }
//	h, err := handler.New(cfg)
//
// The keys are the Config fields' snake_case names (Promtail's where it
// has one) plus "level"; durations are strings such as "500ms", "1s" or
// "7d"; byte sizes are numbers or strings with a unit such as "512KB" or
// "1MiB"; the level is a name ("debug", "info+2") or a number. See
// [handler.Config.UnmarshalJSON] for the details; the rules are the same
// in both formats.
//
// # Why a package of its own
//
// Package handler does not import a YAML library: the YAML library's
// package initialisation keeps regexp and the unicode tables in every
// binary that links it (about 0.21 MB stripped), whether or not the
// program reads a file. Programs that configure lokislog in code or from
// the environment ([handler.ConfigFromEnv]) do not link this package and
// do not pay for YAML. handler.Config still decodes as a section of an
// application's own YAML (yaml.v2 or yaml.v3) or JSON file, without this
// package.
//
// This package was handler.LoadConfig, handler.LoadConfigFile and
// handler.MaxConfigSize before lokislog 1.0: they are now [Load],
// [LoadFile] and [MaxSize].
//
// # Guarantees
//
//   - At most [MaxSize] bytes are read; a larger input is an error.
//   - An unknown key is an error that names it (with lokislog's name for
//     keys that Promtail or Fluent Bit spell otherwise) and, in YAML, its
//     line: "line 2: tls_config.ca_fle: unknown field". Errors about a key
//     wrap a [*handler.ConfigError].
//   - An empty YAML document is the zero Config. A file holds one YAML
//     document: a second one (after "---") is an error, not ignored. A
//     UTF-8 byte order mark is skipped, in JSON too.
//   - Errors do not show the values of secrets (url, username, password,
//     bearer_token, headers) nor YAML anchor names, which a value that
//     starts with '*' becomes. A tag that YAML does not define, and an
//     anchor or a tag other than !!str or !!binary on a secret, are errors:
//     the YAML library would drop them silently ("password: &x y" would be
//     the password "y"). Quote such values.
//   - [LoadFile] refuses a directory. A named pipe is read like a file:
//     opening it waits for a writer, as open(2) does.
//   - Nothing is validated: [handler.New] does that, and reports every
//     problem at once.
package config
