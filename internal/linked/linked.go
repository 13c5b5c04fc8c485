// Package linked holds the features a program links into lokislog by
// importing a package for each: loading TLS client certificates from files
// (exporter/clientcert) and gzip for JSON pushes (exporter/jsongzip).
//
// Every program that logs through lokislog would otherwise carry their code,
// about 0.17 MB (the RSA, ECDSA and Ed25519 key parsers and signers) and
// 0.05 MB (compress/flate's compressor), while few use them. The variables
// are set by those packages' init functions, before main, and only read
// afterwards.
package linked

import "crypto/tls"

// LoadKeyPair loads a PEM client certificate and key; nil unless
// exporter/clientcert is imported.
var LoadKeyPair func(certFile, keyFile string) (tls.Certificate, error)

// AppendGzip appends src compressed as a gzip member to dst; nil unless
// exporter/jsongzip is imported.
var AppendGzip func(dst, src []byte) []byte

// What the exporter and the handler say when a configuration needs a
// feature the program did not link in.
const (
	NoGzip = `compression "gzip" (the default of protocol json) needs ` +
		`import _ "github.com/lokislog/lokislog/exporter/jsongzip" in the program, or compression "none"`
	NoClientCert = `cert_file and key_file need ` +
		`import _ "github.com/lokislog/lokislog/exporter/clientcert" in the program`
)
