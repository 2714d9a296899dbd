package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/quinistry/quinistry/e2e/harness"
)

// report is everything measured, written out as markdown.
type report struct {
	cfg        config
	loadBefore string
	hz         float64
	versions   map[string]string
	img        image
	rows       []*row
	// time to ready and quinistry's own logged startup, in ms, one per run
	ready, logged []float64
	// KiB: the benchmarked instance at idle; a fresh one at idle (and its
	// parts), the memfds it holds, its peak under 256 downloads and after
	idleMain, memIdle, memAnon, memFile, memShmem, memfd, memPeak, memAfter int64
}

func (rep *report) find(net, server, test string, conc int) *row {
	for _, w := range rep.rows {
		if w.net.name == net && w.server == server && w.test == test && w.conc == conc {
			return w
		}
	}
	return nil
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func ok(met bool) string {
	if met {
		return "met"
	}
	return "**not met**"
}

func minMax(v []float64) (float64, float64) {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[0], s[len(s)-1]
}

func machineLine() string {
	model := "?"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var mem int64
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "MemTotal:" {
				fmt.Sscan(f[1], &mem)
			}
		}
	}
	var u syscall.Utsname
	_ = syscall.Uname(&u)
	var rel strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel.WriteByte(byte(c))
	}
	return fmt.Sprintf("%d cores, %s, %.0f GiB RAM, Linux %s", ncpu(), model, float64(mem)/1048576, rel.String())
}

func (rep *report) write(out io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	cfg, img, v, n := rep.cfg, rep.img, rep.versions, ncpu()
	var nets []string
	detail := map[string]string{}
	for _, w := range rep.rows {
		if _, seen := detail[w.net.name]; !seen && w.net.detail != "" {
			nets = append(nets, w.net.name)
			detail[w.net.name] = w.net.detail
		}
	}

	p("## quinistry benchmark")
	p("")
	p("- machine: %s", machineLine())
	p("- quinistry %s; nginx %s; CNCF registry %s; %s; %s; %s", v["quinistry"], v["nginx"], v["registry"], v["wrk"], v["ab"], v["go"])
	p("- load average before the run: %s; nice %d", rep.loadBefore, niceness())
	p("- each row: %s (after a %s warm-up), %d interleaved round(s), each number the median of its rounds;"+
		" client wrk -t2 or, for HEAD, ab -k -i (wrk 4.1 cannot finish a HEAD response that has a Content-Length);"+
		" MB/s counts body bytes (10^6); server CPU per response: utime+stime of the server's processes"+
		" (/proc/PID/stat; nginx's workers included) over the run, divided by the responses;"+
		" CPU in %% of one core (%d00%% is all of it): the server's, the client's, interrupts (loopback TCP),"+
		" and the rest of the machine's (anything else running)",
		cfg.duration, cfg.warmup, cfg.rounds, n)
	for _, name := range nets {
		p("- network %s: %s", name, detail[name])
	}
	p("- image: list %s (%d bytes), largest layer %s (%d bytes), %d distinct blobs of %d bytes in all",
		img.list, img.listSize, img.blob, img.blobSize, img.blobs, img.total)
	p("")
	p("| network | server | test | client | concurrency | requests/s | MB/s | p99 latency ms | server CPU µs/response | CPU %% server/client/irq/other | quinistry/nginx | quinistry/CNCF |")
	p("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, w := range rep.rows {
		rps := w.median(sample.rps)
		rpsText := fmt.Sprintf("%.0f", rps)
		if e := w.errors(); len(e) > 0 {
			rpsText += " (errors: " + errText(e) + ")"
		}
		mbs := "—"
		if w.size > 0 {
			mbs = fmt.Sprintf("%.1f", rps*float64(w.size)/1e6)
		}
		var rn, rc string
		if w.server == "quinistry" {
			if o := rep.find(w.net.name, "nginx", w.test, w.conc); o != nil {
				rn = fmt.Sprintf("%.2f×", ratio(rps, o.median(sample.rps)))
			}
			if o := rep.find(w.net.name, "CNCF", w.test, w.conc); o != nil {
				rc = fmt.Sprintf("%.2f×", ratio(rps, o.median(sample.rps)))
			}
		}
		pct := func(f func(sample) float64) string { return fmt.Sprintf("%.0f", w.median(f)) }
		p("| %s | %s | %s | %s | %d | %s | %s | %.2f | %.0f | %s/%s/%s/%s | %s | %s |",
			w.net.name, w.server, w.test, w.client, w.conc, rpsText, mbs, w.median(func(s sample) float64 { return s.p99ms }),
			w.median(sample.cpuPerResponse), pct(sample.serverPct), pct(sample.clientPct),
			pct(func(s sample) float64 { return s.irqPct(n) }), pct(func(s sample) float64 { return s.otherPct(n) }), rn, rc)
	}
	p("")
	readyMed, loggedMed := median(rep.ready), median(rep.logged)
	lo, hi := minMax(rep.ready)
	p("- time to ready (exec until the list is served, %s binaries): median **%.1f ms** of %d runs (min %.1f, max %.1f;"+
		" quinistry's own logged startup median %.1f ms)", strings.Join(harness.DefaultPlatforms, "+"), readyMed, len(rep.ready), lo, hi, loggedMed)
	growth := float64(rep.memPeak-rep.memIdle) / 256
	p("- memory (VmRSS): idle after start **%s** (anon %s, file %s, shmem %s; memfd files held: %s, not in VmRSS unless mapped;"+
		" the benchmarked instance: %s); total compressed blobs %s; during 256 concurrent blob downloads peak **%s**,"+
		" %+.0f KiB per connection; %s after",
		mib(rep.memIdle), mib(rep.memAnon), mib(rep.memFile), mib(rep.memShmem), mib(rep.memfd), mib(rep.idleMain),
		mib(img.total/1024), mib(rep.memPeak), growth, mib(rep.memAfter))
	p("")
	p("| goal | measured | |")
	p("|---|---|---|")
	rps := func(net, server, test string, c int) float64 {
		if w := rep.find(net, server, test, c); w != nil {
			return w.median(sample.rps)
		}
		return 0
	}
	cpu := func(net, server string, c int) float64 {
		if w := rep.find(net, server, "blob GET", c); w != nil {
			return w.median(sample.cpuPerResponse)
		}
		return 0
	}
	for _, c := range []int{16, 64} {
		x := ratio(rps("loopback", "quinistry", "blob GET", c), rps("loopback", "nginx", "blob GET", c))
		p("| \"Speed\": blob GET c%d ≥ 0.9× nginx (loopback) | %.3f× | %s |", c, x, ok(x >= 0.9))
		x = ratio(rps("loopback", "quinistry", "blob GET", c), rps("loopback", "CNCF", "blob GET", c))
		p("| \"Speed\": blob GET c%d ≥ 1.5× CNCF (loopback) | %.3f× | %s |", c, x, ok(x >= 1.5))
	}
	for _, t := range []string{"manifest GET", "manifest HEAD"} {
		x := ratio(rps("loopback", "quinistry", t, 64), rps("loopback", "CNCF", t, 64))
		p("| \"Speed\": %s c64 ≥ 5× CNCF (loopback) | %.3f× | %s |", t, x, ok(x >= 5))
	}
	p("| \"Speed\": time to ready ≤ 150 ms median | %.1f ms | %s |", readyMed, ok(readyMed <= 150))
	budget := img.total/1024 + 25*1024
	p("| \"Speed\": idle RSS ≤ blobs + 25 MiB (%s) | %s | %s |", mib(budget), mib(rep.memIdle), ok(rep.memIdle <= budget))
	p("| \"Speed\": growth under 256 downloads: a few hundred KiB per connection at most | %.0f KiB | %s |", growth, ok(growth <= 300))
	for _, net := range nets {
		for _, c := range []int{16, 64} {
			x := ratio(rps(net, "quinistry", "blob GET", c), rps(net, "nginx", "blob GET", c))
			p("| issue 20: blob GET c%d throughput ≥ 1.0× nginx (%s) | %.3f× | %s |", c, net, x, ok(x >= 1.0))
			y := ratio(cpu(net, "quinistry", c), cpu(net, "nginx", c))
			p("| issue 20: blob GET c%d server CPU per response ≤ 1.1× nginx (%s) | %.3f× (%.0f µs against %.0f µs) | %s |",
				c, net, y, cpu(net, "quinistry", c), cpu(net, "nginx", c), ok(y > 0 && y <= 1.1))
		}
	}
}
