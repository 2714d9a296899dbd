package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/quinistry/quinistry/push"
	"github.com/quinistry/quinistry/registry"
)

// pushConfig is what the push command was asked to do.
type pushConfig struct {
	pack          packConfig
	Ref           push.Reference
	Username      string
	PasswordStdin bool
	Insecure      bool
	CAFile        string
	MountFrom     string
	Jobs          int
	Retries       int
	DockerConfig  string
}

// parsePushFlags reads push's flags and its one argument, the reference;
// flags may come before or after it.
func parsePushFlags(args []string, stderr io.Writer) (pushConfig, error) {
	fs := flag.NewFlagSet("quinistry push", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	username := fs.String("username", "", "user name for the registry (with --password-stdin)")
	passwordStdin := fs.Bool("password-stdin", false, "read the password (or token) from standard input")
	insecure := fs.Bool("insecure", false, "speak plain HTTP to the registry")
	caFile := fs.String("ca-file", "", "PEM file of a CA to trust besides the system's")
	mountFrom := fs.String("mount-from", "", "repository on the same registry to mount existing blobs from")
	jobs := fs.Int("jobs", 4, "blobs to upload at once")
	retries := fs.Int("retries", 5, "times to retry on 429, 5xx and dropped connections")
	dockerConfig := fs.String("docker-config", "", "directory of docker's config.json with credentials (default: $DOCKER_CONFIG, else ~/.docker)")
	packFlags := addPackFlags(fs)
	var positional []string
	for {
		if err := parseFlags(fs, args, stderr, "usage: quinistry push [flags] [HOST[:PORT]/]REPOSITORY[:TAG]"); err != nil {
			return pushConfig{}, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if err := setFromEnv(fs, packFlagNames...); err != nil {
		return pushConfig{}, err
	}
	switch len(positional) {
	case 0:
		return pushConfig{}, usageError{errors.New("push: give the reference to push to, such as registry.example.com/team/quinistry:v1")}
	case 1:
	default:
		return pushConfig{}, usageError{fmt.Errorf("push: unexpected argument %q: give one reference", positional[1])}
	}
	ref, err := push.ParseReference(positional[0])
	if err != nil {
		return pushConfig{}, usageError{err}
	}
	cfg := pushConfig{Ref: ref, Username: *username, PasswordStdin: *passwordStdin, Insecure: *insecure, CAFile: *caFile,
		MountFrom: *mountFrom, Jobs: *jobs, Retries: *retries, DockerConfig: *dockerConfig}
	if cfg.pack, err = packFlags.config(); err != nil {
		return cfg, err
	}
	if cfg.Username != "" && !cfg.PasswordStdin {
		return cfg, usageError{errors.New("push: --username needs --password-stdin")}
	}
	if cfg.PasswordStdin && cfg.Username == "" {
		return cfg, usageError{errors.New("push: --password-stdin needs --username")}
	}
	if cfg.MountFrom != "" && !registry.ValidName(cfg.MountFrom) {
		return cfg, usageError{fmt.Errorf("push: invalid --mount-from repository %q", cfg.MountFrom)}
	}
	if cfg.Jobs < 1 || cfg.Jobs > 64 {
		return cfg, usageError{fmt.Errorf("push: --jobs %d: want 1 to 64", cfg.Jobs)}
	}
	if cfg.Retries < 0 || cfg.Retries > 20 {
		return cfg, usageError{fmt.Errorf("push: --retries %d: want 0 to 20", cfg.Retries)}
	}
	return cfg, nil
}

// runPush packs the image, pushes it and prints the list digest.
func runPush(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parsePushFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.DockerConfig == "" {
		cfg.DockerConfig = push.DockerConfigDir()
	}
	creds := push.DockerConfig(cfg.DockerConfig)
	if cfg.PasswordStdin {
		data, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return fmt.Errorf("push: cannot read the password from standard input: %w", err)
		}
		password := strings.TrimRight(string(data), "\r\n")
		if password == "" {
			return usageError{errors.New("push: --password-stdin: standard input is empty")}
		}
		creds = push.Static(push.Credential{Username: cfg.Username, Password: password})
	}
	client, err := httpClient(cfg.CAFile)
	if err != nil {
		return err
	}
	content, err := pack(ctx, cfg.pack, newLogger("text", stderr))
	if err != nil {
		return err
	}
	retries := cfg.Retries
	if retries == 0 {
		retries = -1
	}
	progress := push.NewProgress(stderr, isTerminal(stderr))
	res, err := push.Push(ctx, content, cfg.Ref, push.Options{
		HTTP: client, Insecure: cfg.Insecure, Credentials: creds, MountFrom: cfg.MountFrom,
		Concurrency: cfg.Jobs, Retries: retries, Progress: progress,
	})
	progress.Stop()
	if err != nil {
		return fmt.Errorf("push %s: %w", cfg.Ref, err)
	}
	fmt.Fprintf(stderr, "pushed %s: %d blobs uploaded (%d bytes), %d mounted, %d already there; %d manifests and the list %s\n",
		cfg.Ref, res.Uploaded, res.Bytes, res.Mounted, res.Existing, len(content.Images), res.Digest)
	fmt.Fprintln(stdout, res.Digest)
	return nil
}

// httpClient verifies TLS against the system's CAs plus those in caFile.
func httpClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 2 * time.Minute
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("push: cannot read --ca-file %s: %w", caFile, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("push: --ca-file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
