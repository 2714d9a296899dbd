package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/registry"
)

// writeCert writes a self-signed certificate for 127.0.0.1 named cn into
// dir as cert.pem and key.pem, and returns it.
func writeCert(t *testing.T, dir, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")

	_, err := newCertReloader(certFile, keyFile)
	assert.ErrorContains(t, err, "cannot load TLS certificate")

	first := writeCert(t, dir, "first")
	r, err := newCertReloader(certFile, keyFile)
	require.NoError(t, err)
	got, err := r.GetCertificate(nil)
	require.NoError(t, err)
	assert.Equal(t, first.Raw, got.Certificate[0])

	second := writeCert(t, dir, "second")
	require.NoError(t, r.Reload())
	got, _ = r.GetCertificate(nil)
	assert.Equal(t, second.Raw, got.Certificate[0])

	// A broken file is refused and the last good certificate stays.
	require.NoError(t, os.WriteFile(keyFile, []byte("not a key"), 0o600))
	assert.ErrorContains(t, r.Reload(), "cannot load TLS certificate")
	got, _ = r.GetCertificate(nil)
	assert.Equal(t, second.Raw, got.Certificate[0])
}

// TestServeTLSSpeaksHTTP2 serves the registry over TLS as serve does and
// checks that a client trusting the certificate gets HTTP/2.
func TestServeTLSSpeaksHTTP2(t *testing.T) {
	dir := t.TempDir()
	cert := writeCert(t, dir, "quinistry")
	certs, err := newCertReloader(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	require.NoError(t, err)

	front := newFrontDoor()
	front.open(registry.New(&index.Content{}, "quinistry", []string{"latest"}, nil), time.Millisecond)
	srv := newHTTPServer(front, slog.New(slog.DiscardHandler))
	srv.TLSConfig = certs.tlsConfig()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true,
	}}
	resp, err := client.Get("https://" + ln.Addr().String() + "/v2/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Equal(t, "{}", string(body))
}
