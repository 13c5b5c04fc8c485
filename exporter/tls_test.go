package exporter

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki is a test CA with a server and a client certificate, as PEM files.
type pki struct {
	caFile, clientCert, clientKey, serverKey string
	server                                   tls.Certificate
	pool                                     *x509.CertPool
}

func newPKI(t testing.TB, dir string) *pki {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "lokislog test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &pki{caFile: write("ca.crt", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)

	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, certFile, keyFile string) (string, string, tls.Certificate) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{"loki.test"}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		cf, kf := write(certFile, "CERTIFICATE", der), write(keyFile, "EC PRIVATE KEY", kder)
		cert, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			t.Fatal(err)
		}
		return cf, kf, cert
	}
	_, p.serverKey, p.server = leaf(2, "loki.test", x509.ExtKeyUsageServerAuth, "server.crt", "server.key")
	p.clientCert, p.clientKey, _ = leaf(3, "mu-api", x509.ExtKeyUsageClientAuth, "client.crt", "client.key")
	return p
}

func TestTLS(t *testing.T) {
	p := newPKI(t, t.TempDir())
	tests := map[string]struct {
		mTLS bool // server requires a client certificate
		tls  TLSConfig
		err  string // part of the Export error; "" for success
	}{
		"ca":                 {tls: TLSConfig{CAFile: p.caFile}},
		"ca and server name": {tls: TLSConfig{CAFile: p.caFile, ServerName: "loki.test"}},
		"wrong server name":  {tls: TLSConfig{CAFile: p.caFile, ServerName: "other.test"}, err: "certificate"},
		"system roots":       {tls: TLSConfig{}, err: "certificate"},
		"insecure":           {tls: TLSConfig{InsecureSkipVerify: true}},
		"mtls":               {mTLS: true, tls: TLSConfig{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey}},
		"mtls without cert":  {mTLS: true, tls: TLSConfig{CAFile: p.caFile}, err: "post "},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, nil)
			srv := httptest.NewUnstartedServer(f)
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
			if tt.mTLS {
				srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
				srv.TLS.ClientCAs = p.pool
			}
			srv.Config.ErrorLog = discardLog() // handshake failures are expected
			srv.StartTLS()
			defer srv.Close()
			cfg := fastConfig(srv.URL)
			cfg.TLS = tt.tls
			// One attempt, however slow the handshake (under -race on a busy
			// machine): the first backoff is longer than the time budget.
			cfg.MaxRetryTime = 30 * time.Second
			cfg.MinBackoff, cfg.MaxBackoff = time.Minute, time.Minute
			c := newTestClient(t, cfg)
			err := c.Export(context.Background(), testBatch(2, 2))
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Export: %v", err)
				}
				if n := len(f.requests()); n != 1 {
					t.Errorf("%d requests", n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || classify(err) != retryable {
				t.Fatalf("Export = %v, want a retryable error with %q", err, tt.err)
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("server handled %d requests", n)
			}
		})
	}
}
