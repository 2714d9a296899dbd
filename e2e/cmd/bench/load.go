package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quinistry/quinistry/e2e/harness"
)

// reportLua makes wrk print one line the driver reads: requests, duration
// (µs), bytes, errors by kind and the p99 latency (µs).
const reportLua = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    summary.bytes, e.connect, e.read, e.write, e.status, e.timeout, math.floor(latency:percentile(99))))
end
`

// row is one line of the report: a server, a test, a concurrency, a network.
type row struct {
	net    *network
	server string // quinistry, nginx or CNCF
	test   string // blob GET, manifest GET or manifest HEAD
	conc   int
	size   int64  // body bytes of one response
	client string // wrk or ab
	// the rounds' samples
	samples []sample
}

func (w *row) key() string { return fmt.Sprintf("%s|%s|%s|%d", w.net.name, w.server, w.test, w.conc) }

// sample is one load run's measurements.
type sample struct {
	requests int64
	seconds  float64
	errors   map[string]int64 // by kind; none when all went well
	p99ms    float64
	// CPU over the run: the server's and the client's, in seconds; the
	// machine's from /proc/stat in clock ticks
	serverCPU, clientCPU float64
	machine              machine
	peakRSS              int64 // KiB, when asked for
}

func (s sample) rps() float64 { return ratio(float64(s.requests), s.seconds) }

// percent of one core, over the client's run
func (s sample) serverPct() float64 { return 100 * ratio(s.serverCPU, s.seconds) }
func (s sample) clientPct() float64 { return 100 * ratio(s.clientCPU, s.seconds) }
func (s sample) allPct(ncpu int) float64 {
	return 100 * float64(ncpu) * ratio(float64(s.machine.busy), float64(s.machine.total))
}
func (s sample) irqPct(ncpu int) float64 {
	return 100 * float64(ncpu) * ratio(float64(s.machine.irq), float64(s.machine.total))
}
func (s sample) otherPct(ncpu int) float64 {
	o := s.allPct(ncpu) - s.serverPct() - s.clientPct() - s.irqPct(ncpu)
	if o < 0 {
		return 0
	}
	return o
}

// cpuPerResponse is the server's utime+stime per response, in µs.
func (s sample) cpuPerResponse() float64 { return 1e6 * ratio(s.serverCPU, float64(s.requests)) }

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// load says how to run the clients.
type load struct {
	duration, warmup time.Duration
	lua              string // the file holding reportLua
	hz               float64
}

// url is the row's request URL.
func (w *row) url(img image) string {
	if w.test == "blob GET" {
		return "http://" + w.net.servers[w.server].addr + img.blobPath
	}
	return "http://" + w.net.servers[w.server].addr + "/v2/quinistry/manifests/" + img.list
}

// argv is the client's command line for a run of d. wrk -t2 for GET; ab -k -i
// for HEAD: wrk 4.1 waits for the body that a HEAD response's Content-Length
// announces and never completes a request (wg/wrk#198).
func (w *row) argv(l load, img image, d time.Duration) []string {
	var a []string
	switch w.client {
	case "wrk":
		a = []string{"wrk", "-t2", "-c" + strconv.Itoa(w.conc), "--timeout", "10s", "-s", l.lua, "-d" + seconds(d) + "s"}
	case "ab":
		a = []string{"ab", "-q", "-k", "-i", "-c" + strconv.Itoa(w.conc), "-n", "1000000000", "-s", "10", "-t", seconds(d)}
	}
	if w.test != "blob GET" {
		a = append(a, "-H", "Accept: "+harness.ListAccept)
	}
	a = append(a, w.url(img))
	return append(append([]string(nil), w.net.clientWrap...), a...)
}

// seconds is d in whole seconds, at least 1 (both clients count in seconds).
func seconds(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}

// measure warms up, then runs the row's client once, and measures it. With
// rssPID set, it samples that process's VmRSS every 100 ms for the peak.
func measure(r *run, l load, img image, w *row, rssPID int) sample {
	srv := w.net.servers[w.server]
	warm := w.argv(l, img, l.warmup)
	var warmOut bytes.Buffer
	if err := clients.run(exec.Command(warm[0], warm[1:]...), &warmOut); err != nil {
		r.Fatalf("%s: the warm-up run failed: %v\n%s", w.key(), err, warmOut.String())
	}
	pids := withChildren([]int{srv.pid})
	argv := w.argv(l, img, l.duration)
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	c0, m0 := cpuTicks(pids), machineTicks()
	if err := clients.start(cmd); err != nil {
		r.Fatalf("%s: %v", w.key(), err)
	}
	defer clients.remove(cmd)
	var peak int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if rssPID > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				if v := status(rssPID)["VmRSS"]; v > peak {
					peak = v
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	err := cmd.Wait()
	c1, m1 := cpuTicks(pids), machineTicks()
	close(stop)
	wg.Wait()
	if err != nil {
		r.Fatalf("%s: %v: %v; it said:\n%s", w.key(), argv, err, out.String())
	}
	s := sample{
		serverCPU: float64(c1-c0) / l.hz,
		machine:   machine{busy: m1.busy - m0.busy, irq: m1.irq - m0.irq, total: m1.total - m0.total},
		peakRSS:   peak,
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.clientCPU = tv(ru.Utime) + tv(ru.Stime)
	}
	if w.client == "wrk" {
		parseWrk(&s, out.String())
	} else {
		parseAb(&s, out.String())
	}
	if s.requests <= 0 {
		r.Fatalf("%s: no requests done; the client said:\n%s", w.key(), out.String())
	}
	say("%s: %.0f req/s, p99 %.2f ms, errors %s, server CPU %.0f%% (%.0f µs/response), client %.0f%%, irq %.0f%%, other %.0f%%",
		w.key(), s.rps(), s.p99ms, errText(s.errors), s.serverPct(), s.cpuPerResponse(), s.clientPct(),
		s.irqPct(ncpu()), s.otherPct(ncpu()))
	return s
}

// clients are the load clients running now, for an interrupted run to kill.
var clients = &running{cmds: map[*exec.Cmd]bool{}}

type running struct {
	mu      sync.Mutex
	cmds    map[*exec.Cmd]bool
	stopped bool
}

// start starts cmd, unless kill was called: then no client starts any more.
func (c *running) start(cmd *exec.Cmd) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return fmt.Errorf("interrupted")
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmds[cmd] = true
	return nil
}

// run runs cmd to its end, as start does, with its output in out.
func (c *running) run(cmd *exec.Cmd, out *bytes.Buffer) error {
	cmd.Stdout, cmd.Stderr = out, out
	if err := c.start(cmd); err != nil {
		return err
	}
	defer c.remove(cmd)
	return cmd.Wait()
}

func (c *running) remove(cmd *exec.Cmd) { c.mu.Lock(); delete(c.cmds, cmd); c.mu.Unlock() }

// kill kills every running client and stops new ones from starting; the run
// that started a client reaps it.
func (c *running) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	for cmd := range c.cmds {
		_ = cmd.Process.Kill()
	}
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// parseWrk reads the BENCH line of reportLua.
func parseWrk(s *sample, out string) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 10 || f[0] != "BENCH" {
			continue
		}
		n := make([]int64, 10)
		for i := 1; i < 10; i++ {
			n[i], _ = strconv.ParseInt(f[i], 10, 64)
		}
		s.requests, s.seconds, s.p99ms = n[1], float64(n[2])/1e6, float64(n[9])/1000
		s.errors = map[string]int64{}
		for i, kind := range []string{"connect", "read", "write", "status", "timeout"} {
			if n[4+i] > 0 {
				s.errors[kind] = n[4+i]
			}
		}
	}
}

// parseAb reads ab's report: complete and failed requests, non-2xx
// responses, the time taken and the 99th percentile (ms).
func parseAb(s *sample, out string) {
	s.errors = map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		first := func() string {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
			return ""
		}
		switch strings.TrimSpace(k) {
		case "Complete requests":
			s.requests, _ = strconv.ParseInt(first(), 10, 64)
		case "Time taken for tests":
			s.seconds, _ = strconv.ParseFloat(first(), 64)
		case "Failed requests":
			if n, _ := strconv.ParseInt(first(), 10, 64); n > 0 {
				s.errors["failed"] = n
			}
		case "Non-2xx responses":
			if n, _ := strconv.ParseInt(first(), 10, 64); n > 0 {
				s.errors["non-2xx"] = n
			}
		}
		if f := strings.Fields(line); len(f) == 2 && f[0] == "99%" {
			s.p99ms, _ = strconv.ParseFloat(f[1], 64)
		}
	}
}

func errText(e map[string]int64) string {
	if len(e) == 0 {
		return "0"
	}
	var kinds []string
	for k := range e {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", e[k], k))
	}
	return strings.Join(parts, ", ")
}

// median returns the median of f over the row's rounds.
func (w *row) median(f func(sample) float64) float64 {
	v := make([]float64, 0, len(w.samples))
	for _, s := range w.samples {
		v = append(v, f(s))
	}
	return median(v)
}

// median returns the middle value of v (the mean of the two middle values
// when their count is even), or 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// errors sums the row's errors over its rounds.
func (w *row) errors() map[string]int64 {
	out := map[string]int64{}
	for _, s := range w.samples {
		for k, n := range s.errors {
			out[k] += n
		}
	}
	return out
}
