package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/registry"
)

// packConfig chooses the image that is packed; serve, push and export
// share it.
type packConfig struct {
	Format    index.Format
	Siblings  string
	Platforms []crossbuild.Platform
	// Created is SOURCE_DATE_EPOCH as a time, or nil when it is not set.
	Created *time.Time
}

// packFlagNames are the flags that choose the image. Every command reads
// them from their QUINISTRY_* environment variables too, so that a
// container of an image that carries them (see imageEnv) packs that image
// again, whichever command it runs.
var packFlagNames = []string{"format", "siblings", "platforms"}

// packFlags are the flags behind a packConfig.
type packFlags struct{ format, siblings, platforms *string }

// addPackFlags defines --format, --siblings and --platforms on fs.
func addPackFlags(fs *flag.FlagSet) packFlags {
	return packFlags{
		format:    fs.String("format", "docker", "media-type family: docker or oci"),
		siblings:  fs.String("siblings", "", "directory holding quinistry-<os>-<arch> binaries (default: the executable's directory)"),
		platforms: fs.String("platforms", "", "platforms to pack, comma-separated (default: every binary found)"),
	}
}

// config checks the flags' values and reads SOURCE_DATE_EPOCH.
func (p packFlags) config() (packConfig, error) {
	cfg := packConfig{Siblings: *p.siblings}
	var err error
	if cfg.Format, err = index.ParseFormat(*p.format); err != nil {
		return cfg, usageError{err}
	}
	if *p.platforms != "" {
		if cfg.Platforms, err = crossbuild.ParsePlatforms(*p.platforms); err != nil {
			return cfg, usageError{err}
		}
	}
	if cfg.Created, err = sourceDateEpoch(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// options are the index options that pack this configuration's image.
func (c packConfig) options() index.Options {
	return index.Options{Format: c.Format, Created: c.Created, Env: c.imageEnv()}
}

// imageEnv is the environment, beyond PATH, that the image's configs carry:
// every setting that changes the image's bytes and differs from the
// default, under the name quinistry reads it from. A container started as
// the image says (its entrypoint and the config's Env) therefore packs the
// very same image. The environment rather than Cmd carries them because
// `docker run IMAGE ARGS` and a Kubernetes container's args replace Cmd but
// keep the image's Env, and a flag given on the command line still beats
// its variable.
//
// The platforms need no carrier: a container holds exactly the binaries
// that were packed, and finds them all. The siblings directory, name, tag
// and address change only where the image is found or served.
func (c packConfig) imageEnv() []string {
	var env []string
	if c.Format != "" && c.Format != index.Docker {
		env = append(env, envName("format")+"="+string(c.Format))
	}
	if c.Created != nil {
		env = append(env, "SOURCE_DATE_EPOCH="+strconv.FormatInt(c.Created.Unix(), 10))
	}
	return env
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH, the reproducible-builds way to
// set a creation time, or returns nil when it is not set.
func sourceDateEpoch() (*time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return nil, nil
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil || secs < 0 {
		return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want a non-negative number of seconds", v)
	}
	t := time.Unix(secs, 0).UTC()
	return &t, nil
}

// setFromEnv sets each of the named flags (every flag when names is empty)
// that args did not give from its environment variable, when that is set
// and not empty.
func setFromEnv(fs *flag.FlagSet, names ...string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] || (len(names) > 0 && !slices.Contains(names, f.Name)) {
			return
		}
		if v := os.Getenv(envName(f.Name)); v != "" {
			if setErr := f.Value.Set(v); setErr != nil {
				err = usageError{fmt.Errorf("%s: %v", envName(f.Name), setErr)}
			}
		}
	})
	return err
}

// checkNameTag checks the repository name and tag an image is given.
func checkNameTag(name, tag string) error {
	if !registry.ValidName(name) {
		return usageError{fmt.Errorf("invalid repository name %q: use lower-case letters, digits and . _ - / separators", name)}
	}
	if !registry.ValidTag(tag) {
		return usageError{fmt.Errorf("invalid tag %q: use letters, digits, . _ - (at most 128)", tag)}
	}
	return nil
}

// serveConfig is what the serve command was asked to do.
type serveConfig struct {
	packConfig
	Addr      string
	Name      string
	Tag       string
	LogFormat string
	// ShutdownTimeout bounds how long in-flight requests may run on after
	// SIGTERM or SIGINT.
	ShutdownTimeout time.Duration
	// MaxStreams caps concurrent blob downloads (0: no cap).
	MaxStreams int
	// StallTimeout frees a download whose client stops reading.
	StallTimeout time.Duration
	// TLSCert and TLSKey, when set, serve HTTPS (and HTTP/2).
	TLSCert, TLSKey string
	// Attestations, when set, is a directory of Sigstore bundles served as
	// referrers of the digests their statements name.
	Attestations string
}

// envPrefix starts the environment variable that stands for each flag:
// --log-format is QUINISTRY_LOG_FORMAT.
const envPrefix = "QUINISTRY_"

// envName returns the environment variable for a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseServeFlags reads the serve command's flags; each flag not given on
// the command line is taken from its environment variable when set.
func parseServeFlags(args []string, stderr io.Writer) (serveConfig, error) {
	fs := flag.NewFlagSet("quinistry", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", ":8080", "address to listen on")
	name := fs.String("name", "quinistry", "repository name to serve the image as")
	tag := fs.String("tag", "latest", "tag to serve the image list under (the build's version is a tag too)")
	packFlags := addPackFlags(fs)
	logFormat := fs.String("log-format", "text", "log format: text or json")
	maxStreams := fs.Int("max-streams", 1024, "most blob downloads sent at once; more get 429 with Retry-After (0: no limit)")
	stallTimeout := fs.Duration("stall-timeout", 60*time.Second, "how long a download waits for a client that stopped reading before it gives up")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) file: serve HTTPS and HTTP/2; reloaded on SIGHUP")
	tlsKey := fs.String("tls-key", "", "PEM private key file for --tls-cert")
	attestations := fs.String("attestations", "", "directory of Sigstore bundles (cosign attest-blob --bundle) served as referrers; reloaded on SIGHUP and on change")
	shutdownTimeout := fs.Duration("shutdown-timeout", 30*time.Second, "how long in-flight downloads may finish after SIGTERM/SIGINT")
	if err := parseFlags(fs, args, stderr, "usage: quinistry [serve] [flags] | quinistry push | quinistry export | quinistry sbom | quinistry provenance | quinistry version\n\nflags (each also read from QUINISTRY_<NAME>):"); err != nil {
		return serveConfig{}, err
	}
	if fs.NArg() > 0 {
		return serveConfig{}, usageError{fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))}
	}
	if err := setFromEnv(fs); err != nil {
		return serveConfig{}, err
	}

	cfg := serveConfig{Addr: *addr, Name: *name, Tag: *tag, LogFormat: *logFormat, ShutdownTimeout: *shutdownTimeout, MaxStreams: *maxStreams, StallTimeout: *stallTimeout, TLSCert: *tlsCert, TLSKey: *tlsKey, Attestations: *attestations}
	var err error
	if cfg.packConfig, err = packFlags.config(); err != nil {
		return cfg, err
	}
	if err := checkNameTag(cfg.Name, cfg.Tag); err != nil {
		return cfg, err
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return cfg, usageError{fmt.Errorf("--tls-cert and --tls-key go together")}
	}
	if cfg.MaxStreams < 0 {
		return cfg, usageError{fmt.Errorf("--max-streams must not be negative")}
	}
	if cfg.StallTimeout <= 0 {
		return cfg, usageError{fmt.Errorf("--stall-timeout must be positive")}
	}
	if cfg.ShutdownTimeout < 0 {
		return cfg, usageError{fmt.Errorf("--shutdown-timeout must not be negative")}
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, usageError{fmt.Errorf("unknown log format %q: want text or json", cfg.LogFormat)}
	}
	return cfg, nil
}

// errHelp reports that --help was asked for and the usage printed.
var errHelp = errors.New("help requested")

// parseFlags parses args into fs. The usage text is printed to stderr only
// when --help asks for it; any other mistake is one line, returned as a
// usageError.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, usage string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "%s\n\n", usage)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		return errHelp
	}
	if err != nil {
		if sub := strings.TrimSpace(strings.TrimPrefix(fs.Name(), "quinistry")); sub != "" {
			err = fmt.Errorf("%s: %w", sub, err)
		}
		return usageError{err}
	}
	return nil
}

// executable returns the running binary's path with links resolved.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find the running binary: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return exe, nil
}
