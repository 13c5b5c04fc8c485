package handler

// These tests use JSON pushes with gzip and client certificates, which a
// program links in by importing the two packages below.
import (
	_ "github.com/lokislog/lokislog/exporter/clientcert"
	_ "github.com/lokislog/lokislog/exporter/jsongzip"
)
