package integration

// These tests push JSON with gzip (the default compression of protocol
// json), which a program links in by importing the package below.
import _ "github.com/lokislog/lokislog/exporter/jsongzip"
