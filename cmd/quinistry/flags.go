package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
}

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

// config checks the flags' values.
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
	return cfg, nil
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
	shutdownTimeout := fs.Duration("shutdown-timeout", 30*time.Second, "how long in-flight downloads may finish after SIGTERM/SIGINT")
	if err := parseFlags(fs, args, stderr, "usage: quinistry [serve] [flags] | quinistry push | quinistry export | quinistry sbom | quinistry version\n\nflags (each also read from QUINISTRY_<NAME>):"); err != nil {
		return serveConfig{}, err
	}
	if fs.NArg() > 0 {
		return serveConfig{}, usageError{fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && !given[f.Name] && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = usageError{fmt.Errorf("%s: %v", envName(f.Name), err)}
			}
		}
	})
	if envErr != nil {
		return serveConfig{}, envErr
	}

	cfg := serveConfig{Addr: *addr, Name: *name, Tag: *tag, LogFormat: *logFormat, ShutdownTimeout: *shutdownTimeout, MaxStreams: *maxStreams, StallTimeout: *stallTimeout, TLSCert: *tlsCert, TLSKey: *tlsKey}
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
