package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return handler.Config{}, fmt.Errorf("config %s: is a directory", path)
	}
	data, err := read(f)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) { // it names the file
			return handler.Config{}, fmt.Errorf("config: %w", err)
		}
		return handler.Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	c, err := parse(data, format)
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
	data, err := read(r)
	if err != nil {
		return handler.Config{}, err
	}
	return parse(data, format)
}

// read reads at most MaxSize bytes from r.
func read(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxSize)
	}
	return data, nil
}

// parse decodes a configuration in format from data.
func parse(data []byte, format string) (handler.Config, error) {
	var c handler.Config
	switch strings.ToLower(format) {
	case "yaml", "yml":
		dec := yaml.NewDecoder(bytes.NewReader(data))
		var doc yaml.Node
		if err := dec.Decode(&doc); err == io.EOF { // no document: comments at most
			return c, nil
		} else if err != nil {
			return handler.Config{}, hideAnchor(err, data)
		}
		// A second document would be ignored: refuse it, unless it is
		// empty (a trailing "---").
		var next yaml.Node
		if err := dec.Decode(&next); err != nil && err != io.EOF {
			return handler.Config{}, fmt.Errorf("second YAML document: %w", hideAnchor(err, data))
		} else if err == nil && !(len(next.Content) == 1 && next.Content[0].ShortTag() == "!!null") {
			return handler.Config{}, fmt.Errorf("line %d: a second YAML document: want one", next.Line)
		}
		if err := checkNodes(&doc, ""); err != nil {
			return handler.Config{}, err
		}
		if err := doc.Decode(&c); err != nil {
			return handler.Config{}, withLine(&doc, hideAnchor(err, data))
		}
	case "json":
		// RFC 8259 lets a parser skip a byte order mark; Windows
		// editors write one. (The YAML library skips it itself.)
		data = bytes.TrimPrefix(data, []byte("\uFEFF"))
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

// checkNodes returns an error for a mapping under n, whose path in the
// Config is path, with more than maxKeys keys, and for tags and anchors
// that would silently change a value:
//
//   - a tag YAML does not define ("!x" or "!!x"): the library ignores it,
//     so "password: !x y" is the password "y";
//   - an anchor, or a tag other than !!str and !!binary, on a secret (url,
//     username, password, bearer_token, a header): "password: &x y" is the
//     password "y", and "password: !!int x" is an error that quotes x.
//
// Neither the tag nor the value is shown. It does not follow aliases: what
// they name is checked where it stands.
func checkNodes(n *yaml.Node, path string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("line %d: %w", n.Line, &handler.ConfigError{Key: path, Err: fmt.Errorf(format, args...)})
	}
	tagged := n.Style&yaml.TaggedStyle != 0
	if tagged && !knownTag(n.ShortTag()) {
		return bad("unknown YAML tag (not shown): quote a value that starts with !")
	}
	if secretPath(path) && n.Kind != yaml.AliasNode {
		switch {
		case n.Anchor != "":
			return bad("YAML anchor on a secret (not shown): quote a value that starts with &")
		case tagged && n.ShortTag() != "!!str" && n.ShortTag() != "!!binary":
			return bad("YAML tag %s on a secret (value not shown): quote a value that starts with !", n.ShortTag())
		}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := checkNodes(c, path); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := checkNodes(c, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		if len(n.Content) > 2*maxKeys {
			return fmt.Errorf("line %d: a mapping of more than %d keys", n.Line, maxKeys)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if err := checkNodes(k, path); err != nil {
				return err
			}
			p := path // a merge key's mappings are this one's
			if k.ShortTag() != "!!merge" {
				p = join(path, k.Value)
			}
			if err := checkNodes(v, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// knownTag reports whether tag is one of YAML's own, which the library
// resolves or refuses with an error.
func knownTag(tag string) bool {
	switch tag {
	case "!!str", "!!int", "!!float", "!!bool", "!!null", "!!binary", "!!timestamp", "!!map", "!!seq", "!!merge":
		return true
	}
	return false
}

// secretPath reports whether the value at path is one whose value errors
// must not show, as [handler.Config.ApplyEnv] treats their variables.
func secretPath(path string) bool {
	switch path {
	case "url", "username", "password", "bearer_token":
		return true
	}
	return strings.HasPrefix(path, "headers.")
}

// join returns the path of key under path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// hideAnchor returns err without the anchor name that the YAML library's
// errors about aliases quote: "password: *x" reads the password as an
// alias of x. The error gets the line of the first alias of that name.
func hideAnchor(err error, data []byte) error {
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, "yaml: unknown anchor '")
	if name, ok = strings.CutSuffix(name, "' referenced"); ok {
		return fmt.Errorf("%sunknown YAML anchor (not shown): quote a value that starts with *", aliasLine(data, name))
	}
	name, ok = strings.CutPrefix(msg, "yaml: anchor '")
	if name, ok = strings.CutSuffix(name, "' value contains itself"); ok {
		return fmt.Errorf("%sa YAML anchor (not shown) is used inside its own value", aliasLine(data, name))
	}
	return err
}

// aliasLine returns "line N: " for the first line of data with an alias
// of name, or "".
func aliasLine(data []byte, name string) string {
	i := 0
	for line := range bytes.Lines(data) {
		i++
		if bytes.Contains(line, []byte("*"+name)) {
			return fmt.Sprintf("line %d: ", i)
		}
	}
	return ""
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
