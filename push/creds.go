package push

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Credential is what a registry or its token service is given: a user name
// and password, or an identity (refresh) token. The zero value is anonymous.
type Credential struct {
	Username      string
	Password      string
	IdentityToken string
}

// Anonymous reports whether c holds nothing.
func (c Credential) Anonymous() bool { return c == Credential{} }

// Credentials finds the credential for a registry host.
type Credentials func(ctx context.Context, host string) (Credential, error)

// Static always gives c.
func Static(c Credential) Credentials {
	return func(context.Context, string) (Credential, error) { return c, nil }
}

// dockerHubKey is the key Docker Hub's credentials are stored under.
const dockerHubKey = "https://index.docker.io/v1/"

// dockerConfig is the part of config.json that holds credentials.
type dockerConfig struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
	CredsStore  string            `json:"credsStore"`
	CredHelpers map[string]string `json:"credHelpers"`
}

// DockerConfigDir is where docker keeps config.json: $DOCKER_CONFIG, else
// ~/.docker.
func DockerConfigDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker")
}

// DockerConfig reads credentials the way docker login stores them in
// dir/config.json: a credHelpers entry for the host wins, then credsStore,
// then the base64 user:password (or identity token) under auths. Helpers
// are run as docker-credential-<name> get. A missing file or entry is
// anonymous.
func DockerConfig(dir string) Credentials {
	return func(ctx context.Context, host string) (Credential, error) {
		path := filepath.Join(dir, "config.json")
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) || dir == "" {
			return Credential{}, nil
		}
		if err != nil {
			return Credential{}, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
		}
		var cfg dockerConfig
		if err := json.Unmarshal(data, &cfg); err != nil {
			return Credential{}, fmt.Errorf("cannot parse %s: %v", path, err)
		}
		keys := configKeys(host)
		for _, k := range keys {
			if helper := cfg.CredHelpers[k]; helper != "" {
				return runHelper(ctx, helper, keys[0])
			}
		}
		if cfg.CredsStore != "" {
			c, err := runHelper(ctx, cfg.CredsStore, keys[0])
			if err != nil || !c.Anonymous() {
				return c, err
			}
		}
		for key, a := range cfg.Auths {
			if !matchesHost(key, host) {
				continue
			}
			c := Credential{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
			if a.Auth != "" {
				raw, err := base64.StdEncoding.DecodeString(a.Auth)
				if err != nil {
					return Credential{}, fmt.Errorf("%s: auths.%s.auth is not base64", path, key)
				}
				user, pass, ok := strings.Cut(string(raw), ":")
				if !ok {
					return Credential{}, fmt.Errorf("%s: auths.%s.auth is not user:password", path, key)
				}
				c.Username, c.Password = user, pass
			}
			return c, nil
		}
		return Credential{}, nil
	}
}

// configKeys are the keys a host's credentials may be stored under, the
// one helpers are asked for first.
func configKeys(host string) []string {
	if host == DockerHub {
		return []string{dockerHubKey, "index.docker.io", "docker.io", "registry-1.docker.io"}
	}
	return []string{host, "https://" + host, "http://" + host}
}

// matchesHost reports whether an auths key (host, or a URL with a scheme
// and path) is for host.
func matchesHost(key, host string) bool {
	k := key
	if i := strings.Index(k, "://"); i >= 0 {
		k = k[i+3:]
	}
	k, _, _ = strings.Cut(k, "/")
	if host == DockerHub {
		return k == "index.docker.io" || k == "docker.io" || k == "registry-1.docker.io"
	}
	return k == host
}

// runHelper asks docker-credential-<name> for the credential of serverURL.
func runHelper(ctx context.Context, name, serverURL string) (Credential, error) {
	prog := "docker-credential-" + name
	cmd := exec.CommandContext(ctx, prog, "get")
	cmd.Stdin = strings.NewReader(serverURL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return Credential{}, fmt.Errorf("credential helper %s is not installed (named in docker's config.json)", prog)
		}
		msg := strings.TrimSpace(stdout.String() + " " + stderr.String())
		if strings.Contains(strings.ToLower(msg), "credentials not found") {
			return Credential{}, nil
		}
		if msg == "" {
			msg = err.Error()
		}
		return Credential{}, fmt.Errorf("credential helper %s failed: %s", prog, firstLine(msg))
	}
	var out struct{ Username, Secret string }
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return Credential{}, fmt.Errorf("credential helper %s gave no JSON: %v", prog, err)
	}
	if out.Username == "<token>" {
		return Credential{IdentityToken: out.Secret}, nil
	}
	return Credential{Username: out.Username, Password: out.Secret}, nil
}

// firstLine returns s up to its first line break.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// unwrapPath drops the path an *os.PathError repeats.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
