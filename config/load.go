package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/lokislog/lokislog/handler"
)

// MaxSize is the largest configuration [Load] and [LoadFile] read, in
// bytes.
const MaxSize = 1 << 20

// LoadFile reads a Config from a YAML (.yaml, .yml) or JSON (.json) file,
// chosen by the file's extension. See [Load].
func LoadFile(path string) (handler.Config, error) {
	var format string
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		format = "yaml"
	case ".json":
		format = "json"
	default:
		return handler.Config{}, fmt.Errorf("config %s: unknown extension, want .yaml, .yml or .json", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return handler.Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	c, err := load(f, format)
	if err != nil {
		return handler.Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Load reads a Config in format "yaml" or "json" from r, at most [MaxSize]
// bytes. An unknown key, or a value of the wrong form, is an error that
// names the key and, in YAML, its line. An empty YAML document is the
// zero Config. The result is not validated: [handler.New] does that.
func Load(r io.Reader, format string) (handler.Config, error) {
	c, err := load(r, format)
	if err != nil {
		return handler.Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

func load(r io.Reader, format string) (handler.Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return handler.Config{}, err
	}
	if len(data) > MaxSize {
		return handler.Config{}, fmt.Errorf("larger than %d bytes", MaxSize)
	}
	var c handler.Config
	switch strings.ToLower(format) {
	case "yaml", "yml":
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return handler.Config{}, err
		}
		if doc.Kind == 0 { // no document: comments at most
			return c, nil
		}
		if err := checkMappings(&doc); err != nil {
			return handler.Config{}, err
		}
		if err := doc.Decode(&c); err != nil {
			return handler.Config{}, withLine(&doc, err)
		}
	case "json":
		if err := json.Unmarshal(data, &c); err != nil {
			var ce *handler.ConfigError
			if errors.As(err, &ce) {
				return handler.Config{}, ce
			}
			return handler.Config{}, err
		}
	default:
		return handler.Config{}, fmt.Errorf("format %q: want \"yaml\" or \"json\"", format)
	}
	return c, nil
}

// maxKeys bounds the keys of one YAML mapping: the YAML library looks for
// a repeated key by comparing every key with every other, which takes
// minutes for a mapping that fills MaxSize.
const maxKeys = 1000

// checkMappings returns an error for a mapping under n with more than
// maxKeys keys. It does not follow aliases: what they name is checked
// where it stands.
func checkMappings(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode && len(n.Content) > 2*maxKeys {
		return fmt.Errorf("line %d: a mapping of more than %d keys", n.Line, maxKeys)
	}
	for _, c := range n.Content {
		if err := checkMappings(c); err != nil {
			return err
		}
	}
	return nil
}

// withLine returns the ConfigError in err with the line of its key in doc
// ("line 2: tls_config.ca_fle: unknown field"), or err as it is when it is
// not about a key (the YAML library's own errors name their line).
func withLine(doc *yaml.Node, err error) error {
	var ce *handler.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	if line := lineOf(doc, ce.Key, errors.Is(ce, handler.ErrUnknownField)); line > 0 {
		return fmt.Errorf("line %d: %w", line, ce)
	}
	return ce
}

// lineOf returns the line of the value at path ("tls_config.ca_file",
// "label_keys[1]") under n, or of its key with atKey; 0 when it is not
// found. Map keys may hold dots: the longest key that fits is taken.
func lineOf(n *yaml.Node, path string, atKey bool) int {
	for n.Kind == yaml.DocumentNode && len(n.Content) == 1 || n.Kind == yaml.AliasNode && n.Alias != nil {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else {
			n = n.Content[0]
		}
	}
	if path == "" {
		return n.Line
	}
	switch n.Kind {
	case yaml.SequenceNode:
		rest, ok := strings.CutPrefix(path, "[")
		if !ok {
			return 0
		}
		num, rest, ok := strings.Cut(rest, "]")
		i, err := strconv.Atoi(num)
		if !ok || err != nil || i < 0 || i >= len(n.Content) {
			return 0
		}
		return lineOf(n.Content[i], rest, atKey)
	case yaml.MappingNode:
		best, bestLen := 0, -1
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				if line := lineOfMerged(v, path, atKey); line > 0 && bestLen < 0 {
					best = line
				}
				continue
			}
			rest, ok := strings.CutPrefix(path, k.Value)
			if !ok || len(k.Value) <= bestLen {
				continue
			}
			var line int
			switch {
			case rest == "" && atKey:
				line = k.Line
			case rest == "":
				line = v.Line
			case rest[0] == '.':
				line = lineOf(v, rest[1:], atKey)
			case rest[0] == '[':
				line = lineOf(v, rest, atKey)
			}
			if line > 0 {
				best, bestLen = line, len(k.Value)
			}
		}
		return best
	}
	return 0
}

// lineOfMerged looks path up in the mappings a merge key (<<) names: one,
// or a list of them.
func lineOfMerged(v *yaml.Node, path string, atKey bool) int {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind != yaml.SequenceNode {
		return lineOf(v, path, atKey)
	}
	for _, m := range v.Content {
		if line := lineOf(m, path, atKey); line > 0 {
			return line
		}
	}
	return 0
}
