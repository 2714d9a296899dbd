package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/registry"
	"github.com/quinistry/quinistry/sbom"
)

// serve listens, packs the image, and serves it until ctx ends. It listens
// first, so that a busy address fails at once and clients that connect
// while the image is packed wait for it rather than being refused.
func serve(ctx context.Context, cfg serveConfig, stderr io.Writer) error {
	start := time.Now()
	logs := newLogBuffer(stderr)
	defer logs.Close()
	log := newLogger(cfg.LogFormat, logs)

	var certs *certReloader
	if cfg.TLSCert != "" {
		var err error
		if certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", cfg.Addr, errors.Unwrap(err))
	}
	front := newFrontDoor()
	srv := newHTTPServer(front, log)
	done := make(chan error, 1)
	if certs != nil {
		srv.TLSConfig = certs.tlsConfig()
		go func() { done <- srv.ServeTLS(ln, "", "") }()
		go reloadOnHangup(ctx, certs, log)
	} else {
		go func() { done <- srv.Serve(ln) }()
	}

	packStart := time.Now()
	content, err := pack(ctx, cfg.packConfig, log)
	if err == nil {
		err = content.Verify()
	}
	packTime := time.Since(packStart)
	if err != nil {
		srv.Close()
		return err
	}
	defer content.Close()

	tags := []string{cfg.Tag}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := index.VersionTag(bi); v != "" && registry.ValidTag(v) {
			tags = append(tags, v)
		}
	}
	reg := registry.New(content, cfg.Name, tags, log)
	if cfg.Attestations != "" {
		a := &attestations{dir: cfg.Attestations, content: content, log: log}
		set, err := a.load()
		if err != nil {
			srv.Close()
			return err
		}
		reg.SetAttestations(set)
		go a.watch(ctx, reg)
	}
	reg.SetLimits(registry.Limits{MaxStreams: cfg.MaxStreams, StallTimeout: cfg.StallTimeout})
	for _, img := range content.Images {
		log.Info("image", "platform", img.Platform.String(), "digest", img.Manifest.Digest.String(), "size", content.ImageSize(img))
	}
	log.Info("list", "digest", content.List.Digest.String(), "media_type", content.List.MediaType, "tags", reg.Tags())
	front.open(reg, packTime)
	log.Info("ready", "addr", ln.Addr().String(), "startup", time.Since(start).Round(time.Microsecond),
		"tls", certs != nil, "pull", "docker pull "+pullHost(ln.Addr())+"/"+cfg.Name+":"+cfg.Tag)

	// Packing's buffers are garbage once the list is served: give them back
	// to the system rather than keep them for a peak that never comes
	// again. Pooled buffers survive one collection in the pools' victim
	// caches, so it takes two.
	runtime.GC()
	debug.FreeOSMemory()

	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
		log.Warn("in-flight requests cut off at the shutdown timeout")
	}
	log.Info("stopped")
	return nil
}

// reloadOnHangup loads the TLS certificate again on every SIGHUP until ctx
// ends.
func reloadOnHangup(ctx context.Context, certs *certReloader, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := certs.Reload(); err != nil {
				log.Warn("TLS certificate not reloaded; still serving the previous one", "error", err.Error())
			} else {
				log.Info("TLS certificate reloaded", "cert", certs.certFile)
			}
		}
	}
}

// newHTTPServer returns the server that serves handler: header reads are
// bounded in time and size, and idle connections are closed.
func newHTTPServer(handler http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// frontDoor answers health checks at once and hands registry requests to
// the registry as soon as the image is packed; until then they wait.
type frontDoor struct {
	// ready is closed by open; reg and packTime are set before, and read
	// only after it is closed.
	ready    chan struct{}
	reg      *registry.Registry
	packTime time.Duration
	// waiting counts the registry requests that have arrived and wait for
	// open; /metrics shows it, so that a request's arrival while packing is
	// observable.
	waiting atomic.Int64
}

func newFrontDoor() *frontDoor { return &frontDoor{ready: make(chan struct{})} }

// open lets requests through to reg.
func (f *frontDoor) open(reg *registry.Registry, packTime time.Duration) {
	f.reg, f.packTime = reg, packTime
	close(f.ready)
}

// registry returns the registry once open has been called, else nil.
func (f *frontDoor) registry() *registry.Registry {
	select {
	case <-f.ready:
		return f.reg
	default:
		return nil
	}
}

func (f *frontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		plain(w, http.StatusOK, "ok\n")
		return
	case "/readyz":
		if f.registry() == nil {
			plain(w, http.StatusServiceUnavailable, "packing\n")
		} else {
			plain(w, http.StatusOK, "ready\n")
		}
		return
	case "/metrics":
		f.writeMetrics(w)
		return
	}
	select {
	case <-f.ready:
	default:
		f.waiting.Add(1)
		select {
		case <-f.ready:
		case <-r.Context().Done():
		}
		f.waiting.Add(-1)
		if r.Context().Err() != nil {
			return
		}
	}
	f.reg.ServeHTTP(w, r)
}

// writeMetrics serves the Prometheus text format: build information,
// packing time and, once ready, the registry's counters.
func (f *frontDoor) writeMetrics(w http.ResponseWriter) {
	var b strings.Builder
	version, revision := buildVersion()
	fmt.Fprintf(&b, "# HELP quinistry_build_info The running binary.\n# TYPE quinistry_build_info gauge\n"+
		"quinistry_build_info{version=%q,revision=%q,goversion=%q,platform=%q} 1\n",
		version, revision, runtime.Version(), crossbuild.Current().String())
	reg := f.registry()
	ready := 0
	if reg != nil {
		ready = 1
	}
	fmt.Fprintf(&b, "# HELP quinistry_ready Whether the image is packed and served.\n# TYPE quinistry_ready gauge\nquinistry_ready %d\n", ready)
	fmt.Fprintf(&b, "# HELP quinistry_requests_waiting Registry requests received while packing, waiting for the image.\n# TYPE quinistry_requests_waiting gauge\nquinistry_requests_waiting %d\n", f.waiting.Load())
	if reg != nil {
		fmt.Fprintf(&b, "# HELP quinistry_pack_seconds Time taken to pack and self-check the image.\n# TYPE quinistry_pack_seconds gauge\nquinistry_pack_seconds %g\n", f.packTime.Seconds())
		_ = reg.WriteMetrics(&b)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	plain(w, http.StatusOK, b.String())
}

// plain writes a short text response, as text/plain unless the caller set
// a more precise type.
func plain(w http.ResponseWriter, status int, text string) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(text)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

// pack finds the binaries and builds the image content.
func pack(ctx context.Context, cfg packConfig, log *slog.Logger) (*index.Content, error) {
	c, _, err := packBinaries(ctx, cfg, log)
	return c, err
}

// packBinaries is pack that also returns the binaries packed.
func packBinaries(ctx context.Context, cfg packConfig, log *slog.Logger) (*index.Content, []crossbuild.Binary, error) {
	self, err := executable()
	if err != nil {
		return nil, nil, err
	}
	dir := cfg.Siblings
	if dir == "" {
		dir = filepath.Dir(self)
	}
	bins, err := crossbuild.Discover(crossbuild.Discovery{
		Self: self, Dir: dir, Platforms: cfg.Platforms,
		Warn: func(msg string) { log.Warn(msg) },
	})
	if err != nil {
		return nil, nil, err
	}
	c, err := index.Build(ctx, bins, cfg.options())
	if err != nil {
		return nil, nil, err
	}
	if err := sbom.Attach(c, bins); err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, bins, nil
}

// newLogger returns a text or JSON logger on w.
func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// pullHost is the host:port a local client pulls from.
func pullHost(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
