// Command bench measures quinistry side by side with nginx and the CNCF
// registry (distribution, from .tools/bin) on this machine, and prints a
// markdown report on standard output (progress goes to standard error):
//
//   - blob GET of the largest layer at concurrency 16 and 64: quinistry,
//     nginx serving the same bytes from a file with sendfile (the practical
//     limit), and the CNCF registry serving the same image (copied into it
//     with crane copy, all platforms; filesystem storage);
//   - manifest GET (by the list digest, with the list Accept header) and HEAD
//     at concurrency 64: quinistry and the CNCF registry (HEAD with ab -k -i:
//     wrk 4.1 waits for the body that a HEAD response's Content-Length
//     announces and never completes a request, wg/wrk#198);
//   - each of these on loopback (127.0.0.1) and across veths between two
//     network namespaces made for the run (harness.NewNetwork: clients in
//     one, a second set of servers in the other, a bridge between);
//   - for every row: requests/s, MB/s, p99 latency, the server's CPU per
//     response (utime+stime of its processes from /proc/PID/stat over the run,
//     divided by the responses), and CPU in % of one core: the server's, the
//     client's (wrk or ab share the machine), interrupts (where loopback TCP
//     does part of its work) and "other", anything else running;
//   - time to ready (exec until the list is served), median of STARTUP_RUNS;
//   - quinistry's resident memory at idle and during 256 concurrent blob
//     downloads, against the total compressed blob size;
//   - the goals of the "Speed" issue and of issue 20, met or not.
//
// Each load run lasts BENCH_DURATION after a BENCH_WARMUP warm-up; with
// BENCH_ROUNDS=N every row runs N times, interleaved (each round runs every
// row once), and each number shown is the median of its N values. Other work
// skews the numbers: run on a quiet machine, use rounds, or give the
// benchmark priority with BENCH_NICE=-10 (applied to this process and so to
// everything it starts). BENCH_VETH=0 leaves out the veth case (it needs
// root). It needs wrk, nginx and ab (scripts/bench.sh installs them from
// apt), and crane and the CNCF registry in .tools/bin
// (scripts/install-tools.sh). Everything it starts is stopped on exit, by
// PID, and the namespaces are deleted.
//
//	cd e2e && BENCH_DURATION=10s BENCH_WARMUP=1s BENCH_ROUNDS=1 STARTUP_RUNS=21 BENCH_NICE=0 BENCH_VETH=1 go run ./cmd/bench
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/quinistry/quinistry/e2e/harness"
)

// config is what the environment asks for.
type config struct {
	duration, warmup    time.Duration
	rounds, startupRuns int
	nice                int
	veth                bool
}

// idleSettle is how long a fresh server is left alone before its idle memory
// is read: a measurement window, not a synchronisation (the ready line has
// been seen already).
const idleSettle = time.Second

func main() {
	r := &run{}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan int, 1)
	go func() { done <- bench(r) }()
	var code int
	select {
	case code = <-done:
	case s := <-sig:
		say("%v: stopping everything started", s)
		code = 130
		// a load client killed fails its run, which then ends (and reaps it)
		clients.kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
	r.cleanup()
	harness.RemoveTemp()
	if left := harness.StillRunning(); len(left) > 0 {
		say("left running: %s", strings.Join(left, "; "))
		code = 1
	}
	os.Exit(code)
}

func readConfig(r *run) config {
	c := config{duration: 10 * time.Second, warmup: time.Second, rounds: 1, startupRuns: 21, veth: true}
	dur := func(name string, p *time.Duration) {
		v := os.Getenv(name)
		if v == "" {
			return
		}
		if n, err := strconv.Atoi(v); err == nil { // wrk's plain seconds
			*p = time.Duration(n) * time.Second
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			r.Fatalf("%s=%q: not a duration such as 10s or 2m", name, v)
		}
		*p = d
	}
	num := func(name string, p *int, min int) {
		v := os.Getenv(name)
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			r.Fatalf("%s=%q: not a whole number of at least %d", name, v, min)
		}
		*p = n
	}
	dur("BENCH_DURATION", &c.duration)
	dur("BENCH_WARMUP", &c.warmup)
	num("BENCH_ROUNDS", &c.rounds, 1)
	num("STARTUP_RUNS", &c.startupRuns, 1)
	num("BENCH_NICE", &c.nice, -20)
	switch os.Getenv("BENCH_VETH") {
	case "", "1":
	case "0":
		c.veth = false
	default:
		r.Fatalf("BENCH_VETH=%q: 1 (default) or 0", os.Getenv("BENCH_VETH"))
	}
	return c
}

// bench runs the whole benchmark and prints the report; it returns the exit
// status.
func bench(r *run) (code int) {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(abort); !ok {
				say("panic: %v\n%s", p, debug.Stack())
			}
			code = 1
		}
	}()
	cfg := readConfig(r)
	if cfg.nice != 0 {
		if err := renice(cfg.nice); err != nil {
			r.Fatalf("BENCH_NICE=%d: %v", cfg.nice, err)
		}
	}
	platform := "linux/" + runtime.GOARCH
	for _, tool := range []string{"wrk", "ab"} {
		harness.Tool(r, tool)
	}
	nginxPath(r)
	crane := harness.Tool(r, "crane")
	harness.Tool(r, "registry")
	tmp := harness.TempDir(r)

	// --- 1. quinistry, and what it serves
	say("building quinistry (%s)", strings.Join(harness.DefaultPlatforms, ", "))
	bin := harness.Binary(harness.Dist(r), platform)
	rep := report{cfg: cfg, loadBefore: loadavg(), hz: clockTicks()}

	lo := &network{name: "loopback", host: "127.0.0.1", http: &http.Client{Timeout: 60 * time.Second}, servers: map[string]*server{}, detail: "127.0.0.1"}
	q := startQuinistry(r, lo, "quinistry (loopback)", bin)
	time.Sleep(idleSettle)
	rep.idleMain = status(q.PID())["VmRSS"]
	img := readImage(r, lo, q.Addr)
	rep.img = img
	say("list %s (%d bytes); largest layer %s (%d bytes); %d blobs, %d bytes", img.list, img.listSize, img.blob, img.blobSize, img.blobs, img.total)
	lo.servers["quinistry"] = &server{addr: q.Addr, pid: q.PID(), proc: q}
	nets := []*network{lo}

	if cfg.veth {
		nw := harness.NewNetwork(r, "client", "server")
		c, sv := nw.Nodes["client"], nw.Nodes["server"]
		vn := &network{
			name:       "veth",
			host:       sv.IP,
			serverWrap: sv.Runner(),
			clientWrap: c.Runner(),
			http:       c.Client(nil),
			servers:    map[string]*server{},
			detail:     fmt.Sprintf("client %s in %s, servers %s in %s, veths to a bridge between", c.IP, c.NS, sv.IP, sv.NS),
		}
		say("veth: %s", vn.detail)
		qv := startQuinistry(r, vn, "quinistry (veth)", bin)
		if got := readImage(r, vn, qv.Addr); got.list != img.list || got.blob != img.blob {
			r.Fatalf("quinistry in the servers' namespace serves list %s, largest layer %s; on loopback %s, %s", got.list, got.blob, img.list, img.blob)
		}
		vn.servers["quinistry"] = &server{addr: qv.Addr, pid: qv.PID(), proc: qv}
		nets = append(nets, vn)
	}

	// --- 2. the CNCF registry holding a copy of the image, and nginx serving
	// the largest blob's bytes from a file at the same path, in each network
	for _, n := range nets {
		reg := startRegistry(r, n, mkdir(r, tmp, "registry-"+n.name))
		say("crane copy into the CNCF registry at %s (%s)", reg.addr, n.name)
		src, dst := n.servers["quinistry"].addr+"/quinistry:latest", reg.addr+"/quinistry:latest"
		harness.Run(r, append(append([]string(nil), n.clientWrap...), crane, "copy", "--insecure", src, dst)...)
		got := strings.TrimSpace(harness.Run(r, append(append([]string(nil), n.clientWrap...), crane, "digest", "--insecure", dst)...))
		if got != img.list {
			r.Fatalf("the CNCF registry (%s) holds list %s, quinistry serves %s", n.name, got, img.list)
		}
		n.servers["CNCF"] = reg
		n.servers["nginx"] = startNginx(r, n, mkdir(r, tmp, "nginx-"+n.name), img)
		checkSame(r, n, img)
	}
	// --- 3. load: BENCH_ROUNDS rounds, each running every row once
	lua := filepath.Join(tmp, "report.lua")
	if err := os.WriteFile(lua, []byte(reportLua), 0o644); err != nil {
		r.Fatal(err)
	}
	l := load{duration: cfg.duration, warmup: cfg.warmup, lua: lua, hz: rep.hz}
	for _, n := range nets {
		for _, c := range []int{16, 64} {
			for _, s := range []string{"quinistry", "nginx", "CNCF"} {
				rep.rows = append(rep.rows, &row{net: n, server: s, test: "blob GET", conc: c, size: img.blobSize, client: "wrk"})
			}
		}
		for _, s := range []string{"quinistry", "CNCF"} {
			rep.rows = append(rep.rows, &row{net: n, server: s, test: "manifest GET", conc: 64, size: img.listSize, client: "wrk"})
		}
		for _, s := range []string{"quinistry", "CNCF"} {
			rep.rows = append(rep.rows, &row{net: n, server: s, test: "manifest HEAD", conc: 64, size: 0, client: "ab"})
		}
	}
	for round := 1; round <= cfg.rounds; round++ {
		if cfg.rounds > 1 {
			say("round %d of %d", round, cfg.rounds)
		}
		for _, w := range rep.rows {
			w.samples = append(w.samples, measure(r, l, img, w, 0))
		}
	}
	if cfg.rounds > 1 {
		for _, w := range rep.rows {
			var v []string
			for _, s := range w.samples {
				v = append(v, fmt.Sprintf("%.0f", s.rps()))
			}
			say("%s: rounds %s req/s", w.key(), strings.Join(v, " "))
		}
	}
	// stopped before the time to ready and memory runs, which they would disturb
	for _, n := range nets {
		for _, srv := range n.servers {
			srv.proc.Stop(r)
		}
	}

	// --- 4a. time to ready: exec until the list is served
	say("time to ready, %d runs", cfg.startupRuns)
	rep.ready, rep.logged = timeToReady(r, bin, cfg.startupRuns)

	// --- 4b. memory: a fresh quinistry at idle, then under 256 concurrent blob downloads
	say("memory")
	m := startQuinistry(r, lo, "quinistry (memory)", bin)
	time.Sleep(idleSettle)
	st := status(m.PID())
	rep.memIdle, rep.memAnon, rep.memFile, rep.memShmem = st["VmRSS"], st["RssAnon"], st["RssFile"], st["RssShmem"]
	rep.memfd = memfdKiB(m.PID())
	if got := harness.ListDigest(r, m.Addr, "quinistry"); got != img.list {
		r.Fatalf("a second start serves list %s, the first %s", got, img.list)
	}
	mn := &network{name: "loopback", host: "127.0.0.1", http: lo.http, servers: map[string]*server{"quinistry": {addr: m.Addr, pid: m.PID(), proc: m}}}
	w := &row{net: mn, server: "quinistry", test: "blob GET", conc: 256, size: img.blobSize, client: "wrk"}
	w.samples = append(w.samples, measure(r, l, img, w, m.PID()))
	rep.rows = append(rep.rows, w)
	rep.memPeak = w.samples[0].peakRSS
	rep.memAfter = status(m.PID())["VmRSS"]
	m.Stop(r)

	// --- 5. the report
	rep.versions = versions(bin)
	rep.write(os.Stdout)
	if r.Failed() {
		return 1
	}
	return 0
}

func mkdir(r *run, parent, name string) string {
	dir := filepath.Join(parent, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.Fatal(err)
	}
	return dir
}

// timeToReady starts quinistry runs times and measures, each time, from just
// before exec until the list is served (polled every millisecond), and the
// startup quinistry logs in its ready line; both in ms.
func timeToReady(r *run, bin string, runs int) (ready, logged []float64) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	served := func(url string) bool {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", harness.ListAccept)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	retries := 0
	for i := 0; i < runs; i++ {
		addr := harness.FreeAddr(r)
		url := "http://" + addr + "/v2/quinistry/manifests/latest"
		t0 := time.Now()
		s := harness.StartWith(r, fmt.Sprintf("quinistry (start %d)", i+1), harness.Options{NoWaitReady: true}, bin, "--addr", addr)
		tick := time.NewTicker(time.Millisecond)
		var took time.Duration
		exited := false
		for took == 0 && !exited {
			if served(url) {
				took = time.Since(t0)
				break
			}
			if time.Since(t0) > 10*time.Second {
				r.Fatalf("quinistry not ready after 10 s; its log:\n%s", s.Log.Text())
			}
			select {
			case <-s.Exited():
				exited = true
			case <-tick.C:
			}
		}
		tick.Stop()
		if exited {
			// someone else took the port between FreeAddr and the bind: try again on another one
			if strings.Contains(s.Log.Text(), "address already in use") && retries < 5 {
				retries++
				i--
				continue
			}
			r.Fatalf("quinistry exited (%s): %s", s.ExitStatus(), s.Log.Text())
		}
		rec := s.Log.Wait(r, 10*time.Second, "the ready line", func(x harness.Record) bool { return x.Msg() == "ready" })
		d, err := time.ParseDuration(rec["startup"])
		if err != nil {
			r.Fatalf("the ready line's startup %q: %v", rec["startup"], err)
		}
		s.Stop(r)
		ready = append(ready, float64(took)/1e6)
		logged = append(logged, float64(d)/1e6)
	}
	return ready, logged
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func ncpu() int { return runtime.NumCPU() }

// versions of what was measured, for the report's header.
func versions(bin string) map[string]string {
	first := func(argv ...string) string {
		out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	v := map[string]string{"go": runtime.Version()}
	v["quinistry"] = strings.TrimPrefix(first(bin, "version"), "quinistry ")
	_, v["nginx"], _ = strings.Cut(first("/usr/sbin/nginx", "-v"), "nginx/")
	if f := strings.Fields(first(filepath.Join(harness.ToolsBin(), "registry"), "--version")); len(f) > 0 {
		v["registry"] = f[len(f)-1]
	}
	if f := strings.Fields(first("wrk", "--version")); len(f) > 1 {
		v["wrk"] = f[0] + " " + f[1]
	}
	if f := strings.Fields(first("ab", "-V")); len(f) > 4 { // This is ApacheBench, Version 2.3 <$Revision...>
		v["ab"] = "ab " + f[4]
	}
	return v
}
