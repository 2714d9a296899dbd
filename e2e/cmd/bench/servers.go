package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/quinistry/quinistry/e2e/harness"
)

// network is where one set of servers listens and where its clients run:
// loopback (everything on 127.0.0.1 in this process's namespace), or veth
// (servers in one network namespace, clients in another, a veth pair
// between them).
type network struct {
	name string
	// host is the address the servers listen on.
	host string
	// serverWrap and clientWrap run a command in the servers' or the
	// clients' namespace (nsenter --net=...); nil on loopback. nsenter execs
	// the command, so its PID is the command's.
	serverWrap, clientWrap []string
	// http is an HTTP client in the clients' namespace.
	http *http.Client
	// servers by name (quinistry, nginx, CNCF): address and process.
	servers map[string]*server
	detail  string
}

// server is one server under load: its address and the PID whose CPU time
// (with its children's, such as nginx's workers) is its cost.
type server struct {
	addr string
	pid  int
	proc *harness.Server
}

// image is what quinistry serves, as read from the first instance.
type image struct {
	list      string // the list's digest
	listSize  int64
	blob      string // the largest layer's digest
	blobSize  int64
	blobPath  string // /v2/quinistry/blobs/<blob>
	blobBytes []byte
	blobs     int   // distinct blobs (configs and layers of every platform)
	total     int64 // their total size
}

const manifestAccept = harness.DockerManifest + ", " + harness.OCIManifest

// get sends a GET (or HEAD) with the client of n and reads the whole answer.
func get(r *run, n *network, method, url string, headers ...string) harness.Response {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		r.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := n.http.Do(req)
	if err != nil {
		r.Fatalf("%s %s (%s): %v", method, url, n.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.Fatalf("%s %s (%s): reading the body: %v", method, url, n.name, err)
	}
	return harness.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

func sha256Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// readImage reads the list quinistry serves at addr, every platform's
// manifest, and the largest layer's bytes.
func readImage(r *run, n *network, addr string) image {
	base := "http://" + addr + "/v2/quinistry/"
	head := get(r, n, http.MethodHead, base+"manifests/latest", "Accept", harness.ListAccept)
	list := head.Header.Get("Docker-Content-Digest")
	if head.Status != http.StatusOK || list == "" {
		r.Fatalf("quinistry serves no list: HEAD latest gave %d, digest %q", head.Status, list)
	}
	resp := get(r, n, http.MethodGet, base+"manifests/"+list, "Accept", harness.ListAccept)
	if resp.Status != http.StatusOK || sha256Digest(resp.Body) != list {
		r.Fatalf("GET of the list %s gave %d, %d bytes of %s", list, resp.Status, len(resp.Body), sha256Digest(resp.Body))
	}
	idx, err := v1.ParseIndexManifest(strings.NewReader(string(resp.Body)))
	if err != nil {
		r.Fatalf("decoding the list %s: %v", list, err)
	}
	img := image{list: list, listSize: int64(len(resp.Body))}
	sizes := map[string]int64{}
	for _, d := range idx.Manifests {
		m := get(r, n, http.MethodGet, base+"manifests/"+d.Digest.String(), "Accept", manifestAccept)
		if m.Status != http.StatusOK {
			r.Fatalf("GET of the %v manifest %s gave %d", d.Platform, d.Digest, m.Status)
		}
		man, err := v1.ParseManifest(strings.NewReader(string(m.Body)))
		if err != nil {
			r.Fatalf("decoding the %v manifest %s: %v", d.Platform, d.Digest, err)
		}
		sizes[man.Config.Digest.String()] = man.Config.Size
		for _, l := range man.Layers {
			sizes[l.Digest.String()] = l.Size
			if l.Size > img.blobSize {
				img.blob, img.blobSize = l.Digest.String(), l.Size
			}
		}
	}
	for _, s := range sizes {
		img.total += s
	}
	img.blobs = len(sizes)
	if img.blob == "" {
		r.Fatalf("the list %s has no layer", list)
	}
	img.blobPath = "/v2/quinistry/blobs/" + img.blob
	b := get(r, n, http.MethodGet, "http://"+addr+img.blobPath)
	if b.Status != http.StatusOK || sha256Digest(b.Body) != img.blob || int64(len(b.Body)) != img.blobSize {
		r.Fatalf("GET of the blob %s gave %d, %d bytes of %s", img.blob, b.Status, len(b.Body), sha256Digest(b.Body))
	}
	img.blobBytes = b.Body
	return img
}

// port returns a port number for a server that must be told its port: free on
// loopback a moment ago; any port is free in the servers' own namespace.
func port(r *run) string {
	_, p, _ := net.SplitHostPort(harness.FreeAddr(r))
	return p
}

// startQuinistry starts quinistry in n, on a port it picks, and waits for its
// ready line.
func startQuinistry(r *run, n *network, name, bin string) *harness.Server {
	return harness.StartWith(r, name, harness.Options{Runner: n.serverWrap}, bin, "--addr", n.host+":0")
}

// startRegistry starts the CNCF registry in n with filesystem storage under
// dir and waits until it answers.
func startRegistry(r *run, n *network, dir string) *server {
	addr := net.JoinHostPort(n.host, port(r))
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  cache:
    blobdescriptor: inmemory
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	file := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		r.Fatal(err)
	}
	s := harness.StartWith(r, "CNCF registry ("+n.name+")", harness.Options{
		Env:         []string{"OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true"},
		Runner:      n.serverWrap,
		NoWaitReady: true,
	}, harness.Tool(r, "registry"), "serve", file)
	waitHTTP(r, n, s, "http://"+addr+"/v2/")
	return &server{addr: addr, pid: s.PID(), proc: s}
}

// startNginx starts nginx in n, serving the largest blob's bytes from a file
// at the same path (sendfile on, 2 workers), and waits until it answers.
func startNginx(r *run, n *network, dir string, img image) *server {
	addr := net.JoinHostPort(n.host, port(r))
	www := filepath.Join(dir, "www")
	file := filepath.Join(www, filepath.FromSlash(img.blobPath))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		r.Fatal(err)
	}
	if err := os.WriteFile(file, img.blobBytes, 0o644); err != nil {
		r.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the file is in a private temporary folder
	}
	conf := fmt.Sprintf(`%s
daemon off;
worker_processes 2;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;  # Go's net/http has no limit either
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  types {}
  default_type application/octet-stream;
  server {
    listen %[3]s;
    root %[4]s;
  }
}
`, user, dir, addr, www)
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		r.Fatal(err)
	}
	s := harness.StartWith(r, "nginx ("+n.name+")", harness.Options{Runner: n.serverWrap, NoWaitReady: true},
		nginxPath(r), "-p", dir, "-c", confFile, "-e", filepath.Join(dir, "error.log"))
	waitHTTP(r, n, s, "http://"+addr+img.blobPath)
	return &server{addr: addr, pid: s.PID(), proc: s}
}

func nginxPath(r *run) string {
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return harness.Tool(r, "nginx")
}

// waitHTTP polls url (every 50 ms, at most 30 s) until it answers 2xx: nginx
// and the CNCF registry say nothing when they are ready. It fails when s
// exits first.
func waitHTTP(r *run, n *network, s *harness.Server, url string) {
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := n.http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return
			}
		}
		if time.Now().After(deadline) {
			r.Fatalf("%s did not answer %s within 30 s (last: %v); exit %s; its output:\n%s", s.Name, url, err, s.ExitStatus(), s.Log.Text())
		}
		select {
		case <-s.Exited():
			r.Fatalf("%s exited (%s) before answering %s; its output:\n%s", s.Name, s.ExitStatus(), url, s.Log.Text())
		case <-tick.C:
		}
	}
}

// checkSame proves that every server of n answers 200 with the very same
// bytes (no redirect: wrk would not follow one): the blob from all three, the
// list from quinistry and the CNCF registry.
func checkSame(r *run, n *network, img image) {
	for _, name := range []string{"quinistry", "nginx", "CNCF"} {
		resp := get(r, n, http.MethodGet, "http://"+n.servers[name].addr+img.blobPath)
		if resp.Status != http.StatusOK || sha256Digest(resp.Body) != img.blob {
			r.Fatalf("%s (%s): blob GET gave %d, %s", name, n.name, resp.Status, sha256Digest(resp.Body))
		}
	}
	for _, name := range []string{"quinistry", "CNCF"} {
		resp := get(r, n, http.MethodGet, "http://"+n.servers[name].addr+"/v2/quinistry/manifests/"+img.list, "Accept", harness.ListAccept)
		if resp.Status != http.StatusOK || sha256Digest(resp.Body) != img.list {
			r.Fatalf("%s (%s): manifest GET gave %d, %s", name, n.name, resp.Status, sha256Digest(resp.Body))
		}
	}
}
