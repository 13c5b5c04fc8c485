// Package clientcert lets lokislog load TLS client certificates from files,
// for Loki behind mutual TLS: TLSConfig.CertFile and KeyFile in the exporter,
// tls_config.cert_file and key_file in a configuration file, LOKI_CERT_FILE
// and LOKI_KEY_FILE in the environment. Import it for its effect:
//
//	import _ "github.com/lokislog/lokislog/exporter/clientcert"
//
// Without it, a configuration that names a client certificate is an error
// of New that names this package. It is a package of its own because
// parsing the keys links the RSA, ECDSA and Ed25519 signers, about 0.17 MB
// that every other program would carry for nothing.
package clientcert

import (
	"crypto/tls"

	"github.com/lokislog/lokislog/internal/linked"
)

func init() {
	linked.LoadKeyPair = tls.LoadX509KeyPair
}
