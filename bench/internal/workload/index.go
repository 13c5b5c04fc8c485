package workload

import (
	"bytes"
	"strings"
)

var idPrefixBytes = []byte(IDPrefix)

func indexPrefix(b []byte) int       { return bytes.Index(b, idPrefixBytes) }
func indexPrefixString(s string) int { return strings.Index(s, IDPrefix) }
