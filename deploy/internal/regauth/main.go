// Command regauth is the authentication side of the end-to-end tests that
// push to the CNCF registry (e2e's TestTravel):
//
//	regauth htpasswd USER        reads a password on stdin, prints USER:bcrypt-hash
//	regauth issuer DIR ADDR USER reads a password on stdin, writes DIR/root.crt and
//	                             serves bearer tokens on ADDR/token (docker token auth:
//	                             basic credentials in, a signed JWT granting the asked
//	                             repository scopes out); logs "msg=ready addr=ADDR"
//	                             when serving (ADDR may have port 0: the line
//	                             names the port it got)
//	regauth port                 prints a free TCP port on 127.0.0.1
//
// It is test code only: its key lives in memory and its tokens grant every
// scope to the one user.
package main

import (
	"bufio"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Issuer and Service are the names the registry's token config must use.
const (
	Issuer  = "quinistry-e2e-issuer"
	Service = "quinistry-e2e"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "regauth:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: regauth htpasswd USER | issuer DIR ADDR USER | port")
	}
	switch {
	case args[0] == "port" && len(args) == 1:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		return nil
	case args[0] == "htpasswd" && len(args) == 2:
		password, err := readPassword()
		if err != nil {
			return err
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
		if err != nil {
			return err
		}
		fmt.Printf("%s:%s\n", args[1], hash)
		return nil
	case args[0] == "issuer" && len(args) == 4:
		password, err := readPassword()
		if err != nil {
			return err
		}
		return serveIssuer(args[1], args[2], args[3], password)
	}
	return fmt.Errorf("bad arguments %q", args)
}

// readPassword reads one line from standard input.
func readPassword() (string, error) {
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("no password on standard input: %v", err)
	}
	return line, nil
}

// serveIssuer makes a self-signed signing certificate, writes it to
// dir/root.crt for the registry to trust, and serves tokens.
func serveIssuer(dir, addr, user, password string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: Issuer},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "root.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != password {
			fmt.Fprintf(os.Stderr, "regauth: refused a token to %q\n", u)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`)
			return
		}
		tok, err := sign(key, der, u, r.URL.Query()["scope"], r.URL.Query().Get("service"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300,
			"issued_at": time.Now().UTC().Format(time.RFC3339)})
	})
	fmt.Fprintf(os.Stderr, "msg=ready addr=%s\n", ln.Addr())
	return http.Serve(ln, mux)
}

// access is one grant in a token.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// sign makes an RS256 JWT carrying the certificate in x5c and granting
// every scope asked (repository:NAME:ACTIONS).
func sign(key *rsa.PrivateKey, cert []byte, subject string, scopes []string, service string) (string, error) {
	grants := []access{}
	for _, s := range scopes {
		parts := strings.Split(s, ":")
		if len(parts) < 3 {
			continue
		}
		name := strings.Join(parts[1:len(parts)-1], ":")
		grants = append(grants, access{Type: parts[0], Name: name, Actions: strings.Split(parts[len(parts)-1], ",")})
	}
	now := time.Now()
	jti := make([]byte, 8)
	rand.Read(jti)
	header, err := json.Marshal(map[string]any{"alg": "RS256", "typ": "JWT", "x5c": []string{base64.StdEncoding.EncodeToString(cert)}})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(map[string]any{
		"iss": Issuer, "sub": subject, "aud": service, "iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(5 * time.Minute).Unix(), "jti": fmt.Sprintf("%x", jti), "access": grants,
	})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	payload := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(payload))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return payload + "." + enc.EncodeToString(sig), nil
}
