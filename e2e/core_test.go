package e2e

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/quinistry/quinistry/e2e/harness"
)

// coreCase is one way of starting generation 1: its settings, and what its
// image must then carry.
type coreCase struct {
	name      string
	dist      []string // platforms built into the dist that generation 1 runs from
	args      []string
	env       []string
	wantEnv   []string
	wantList  string
	wantFiles []string
}

// TestCore proves the fixed point end to end: generation 1 serves an image,
// and generation 2, taken out of that image and started exactly as a runtime
// starts it (amd64 natively, arm64 under qemu), serves the very same list
// digest, in both formats, with and without SOURCE_DATE_EPOCH, for all six
// platforms and a --platforms subset. Also: reproducible builds, repeatable
// starts, bad start-up input and the time to serve.
func TestCore(t *testing.T) {
	dist := harness.Dist(t)
	amd64 := harness.Binary(dist, "linux/amd64")

	t.Run("two builds give identical binaries", func(t *testing.T) {
		again := filepath.Join(harness.TempDir(t), "dist")
		harness.BuildInto(t, again)
		a, b := harness.Files(t, dist), harness.Files(t, again)
		if !slices.Equal(a, b) {
			t.Fatalf("the builds hold %v and %v", a, b)
		}
		for _, f := range a {
			x, _ := os.ReadFile(filepath.Join(dist, f))
			y, _ := os.ReadFile(filepath.Join(again, f))
			if !bytes.Equal(x, y) {
				t.Errorf("%s differs between the builds (%d and %d bytes)", f, len(x), len(y))
			}
		}
	})

	// README's Weight paragraph: what `go version -m` lists for every binary
	t.Run("every binary's modules are exactly klauspost/compress, go-digest and x/sync", func(t *testing.T) {
		want := []string{"github.com/klauspost/compress", "github.com/opencontainers/go-digest", "golang.org/x/sync"}
		for _, f := range harness.Files(t, dist) {
			info, err := buildinfo.ReadFile(filepath.Join(dist, f))
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			var got []string
			for _, d := range info.Deps {
				got = append(got, d.Path)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s (main module %s) depends on %v, want %v", f, info.Main.Path, got, want)
			}
		}
	})

	const epoch = "SOURCE_DATE_EPOCH=1000000000"
	both := []string{"quinistry-linux-amd64", "quinistry-linux-arm64"}
	cases := []coreCase{
		{name: "docker", wantEnv: []string{"PATH=/"}, wantList: harness.DockerList, wantFiles: both},
		{name: "oci", args: []string{"--format", "oci"}, wantEnv: []string{"PATH=/", "QUINISTRY_FORMAT=oci"}, wantList: harness.OCIIndex, wantFiles: both},
		{name: "docker-epoch", env: []string{epoch}, wantEnv: []string{"PATH=/", epoch}, wantList: harness.DockerList, wantFiles: both},
		{name: "oci-epoch", args: []string{"--format", "oci"}, env: []string{epoch}, wantEnv: []string{"PATH=/", "QUINISTRY_FORMAT=oci", epoch}, wantList: harness.OCIIndex, wantFiles: both},
	}
	digests := map[string]string{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { digests[c.name] = generations(t, c) })
	}
	t.Run("settings change the image on purpose: docker, oci, docker-epoch and oci-epoch are four digests", func(t *testing.T) {
		seen := map[string]string{}
		for _, c := range cases {
			d := digests[c.name]
			if d == "" {
				t.Fatalf("%s served no digest", c.name)
			}
			if other, ok := seen[d]; ok {
				t.Errorf("%s and %s both serve %s", other, c.name, d)
			}
			seen[d] = c.name
		}
	})
	t.Run("a second start of the same dist serves the same digest", func(t *testing.T) {
		s := harness.Start(t, "again", amd64, []string{"--addr", "127.0.0.1:0"})
		if got := harness.ListDigest(t, s.Addr, "quinistry"); got != digests["docker"] || got == "" {
			t.Errorf("the second start serves %s, the first %s", got, digests["docker"])
		}
	})

	var allDigest string
	t.Run("all platforms", func(t *testing.T) {
		distAll := harness.Dist(t, harness.AllPlatforms...)
		s := harness.Start(t, "all", harness.Binary(distAll, "linux/amd64"), []string{"--addr", "127.0.0.1:0"})
		allDigest = harness.ListDigest(t, s.Addr, "quinistry")
		t.Logf("all six serve %s", allDigest)
		t.Run("the list names all six", func(t *testing.T) {
			m, _ := harness.Index(t, s.Addr+"/quinistry:latest")
			var got []string
			for _, d := range m.Manifests {
				p := d.Platform.OS + "/" + d.Platform.Architecture
				if d.Platform.Variant != "" && d.Platform.Architecture != "arm64" {
					p += "/" + d.Platform.Variant
				}
				got = append(got, p)
			}
			if !slices.Equal(got, harness.AllPlatforms) {
				t.Errorf("the list names %v, want %v", got, harness.AllPlatforms)
			}
		})
		s.Stop(t)
		emulators := map[string]string{"linux/arm64": "qemu-aarch64-static", "linux/arm/v7": "qemu-arm-static",
			"linux/ppc64le": "qemu-ppc64le-static", "linux/s390x": "qemu-s390x-static", "linux/riscv64": "qemu-riscv64-static"}
		for _, p := range harness.AllPlatforms[1:] {
			bin := harness.Binary(distAll, p)
			t.Run(filepath.Base(bin)+" under qemu serves the same list digest", func(t *testing.T) {
				g := harness.StartWith(t, p, harness.Options{Runner: []string{harness.Tool(t, emulators[p])}}, bin, "--addr", "127.0.0.1:0")
				if got := harness.ListDigest(t, g.Addr, "quinistry"); got != allDigest {
					t.Errorf("%s serves %s, the amd64 binary %s", p, got, allDigest)
				}
			})
		}
	})

	t.Run("subset", func(t *testing.T) {
		subset := generations(t, coreCase{name: "subset", dist: harness.AllPlatforms, args: []string{"--platforms", "linux/arm64,linux/amd64"},
			wantEnv: []string{"PATH=/"}, wantList: harness.DockerList, wantFiles: both})
		t.Run("the subset's digest differs from all six's", func(t *testing.T) {
			if subset == "" || subset == allDigest {
				t.Errorf("the subset serves %q, all six %q", subset, allDigest)
			}
		})
	})

	t.Run("bad input", func(t *testing.T) { badInput(t, amd64) })
	t.Run("time to serve", func(t *testing.T) { timeToServe(t, dist) })
	harness.CheckNothingLeft(t)
}

// generations serves generation 1 as c says, checks its list, then for amd64
// (natively) and arm64 (under qemu) takes that platform's file system and
// config out of the served image with crane, starts generation 2 from them
// as a runtime would, and expects generation 1's list digest. It returns
// that digest, or "" when generation 1 failed.
func generations(t *testing.T, c coreCase) string {
	dist := harness.Dist(t, c.dist...)
	bin := harness.Binary(dist, "linux/amd64")
	crane := harness.Tool(t, "crane")
	var gen1 *harness.Server
	var want string
	desc := strings.Join(append(append([]string{}, c.args...), c.env...), " ")
	if desc == "" {
		desc = "no flags"
	}
	// generation 1 lives as long as this case, not as long as its first subtest
	gen1 = harness.StartWith(t, "gen1-"+c.name, harness.Options{Env: c.env, NoWaitReady: true}, append([]string{bin, "--addr", "127.0.0.1:0"}, c.args...)...)
	if !t.Run("generation 1 ("+desc+") serves a list", func(t *testing.T) {
		gen1.WaitReady(t)
		want = harness.ListDigest(t, gen1.Addr, "quinistry")
		if !strings.HasPrefix(want, "sha256:") {
			t.Fatalf("generation 1 serves digest %q", want)
		}
		t.Logf("generation 1 serves %s", want)
	}) {
		return ""
	}
	ref := gen1.Addr + "/quinistry:latest"
	t.Run("the list names linux/amd64 and linux/arm64/v8", func(t *testing.T) {
		m, _ := harness.Index(t, ref)
		if got := harness.Platforms(m); !slices.Equal(got, []string{"linux/amd64", "linux/arm64/v8"}) {
			t.Errorf("the list names %v", got)
		}
	})
	t.Run("crane digest agrees", func(t *testing.T) {
		if got := strings.TrimSpace(harness.Run(t, crane, "digest", "--insecure", ref)); got != want {
			t.Errorf("crane digest says %s, HEAD %s", got, want)
		}
	})
	t.Run("the list is a "+c.wantList, func(t *testing.T) {
		m, _ := harness.Index(t, ref)
		if string(m.MediaType) != c.wantList {
			t.Errorf("the list is a %s", m.MediaType)
		}
	})
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run("linux/"+arch, func(t *testing.T) {
			platform := "linux/" + arch
			cfg := harness.JSON[v1.ConfigFile](t, "the "+platform+" config",
				[]byte(harness.Run(t, crane, "config", "--insecure", "--platform", platform, ref)))
			t.Run("the config carries Env "+strings.Join(c.wantEnv, " "), func(t *testing.T) {
				if !slices.Equal(cfg.Config.Env, c.wantEnv) {
					t.Errorf("the config's Env is %q", cfg.Config.Env)
				}
			})
			fs := filepath.Join(harness.TempDir(t), "rootfs")
			exportFS(t, crane, platform, ref, fs)
			if len(cfg.Config.Entrypoint) == 0 {
				t.Fatalf("the config has no Entrypoint: %+v", cfg.Config)
			}
			entry := filepath.Join(fs, cfg.Config.Entrypoint[0])
			t.Run("the entrypoint is an executable "+arch+" ELF file in the exported file system", func(t *testing.T) {
				st, err := os.Stat(entry)
				if err != nil || st.Mode()&0o111 == 0 {
					t.Fatalf("entrypoint %s: %v (mode %v)", cfg.Config.Entrypoint[0], err, st)
				}
				f, err := elf.Open(entry)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
				if f.Machine != want {
					t.Errorf("the entrypoint is a %v ELF file, want %v", f.Machine, want)
				}
			})
			t.Run("the file system holds exactly "+strings.Join(c.wantFiles, " "), func(t *testing.T) {
				if got := harness.Files(t, fs); !slices.Equal(got, c.wantFiles) {
					t.Errorf("the file system holds %v", got)
				}
			})
			var runner []string
			if arch == "arm64" {
				runner = []string{"qemu-aarch64-static"}
			}
			t.Run("generation 2 started as the image says serves the same list digest", func(t *testing.T) {
				gen2 := harness.StartImage(t, "gen2-"+c.name+"-"+arch, fs, &cfg, runner...)
				if got := harness.ListDigest(t, gen2.Addr, "quinistry"); got != want {
					t.Errorf("generation 2 (%s) serves %s, generation 1 %s", harness.Describe(&cfg, runner...), got, want)
				}
			})
		})
	}
	return want
}

// exportFS writes platform's file system, as crane export flattens it, into
// dir.
func exportFS(t *testing.T, crane, platform, ref, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	export := exec.Command(crane, "export", "--insecure", "--platform", platform, ref, "-")
	untar := exec.Command("tar", "-x", "-C", dir)
	pipe, err := export.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	var exportErr, untarErr bytes.Buffer
	export.Stderr, untar.Stderr = &exportErr, &untarErr
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := export.Run(); err != nil {
		t.Fatalf("crane export %s: %v: %s", platform, err, exportErr.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("untar of crane export %s: %v: %s", platform, err, untarErr.String())
	}
}

// badInput: bad start-up input gives a non-zero exit and one readable line,
// no stack trace.
func badInput(t *testing.T, bin string) {
	busy := harness.Start(t, "busy", bin, []string{"--addr", "127.0.0.1:0"})
	locked := filepath.Join(harness.TempDir(t), "locked")
	if err := os.Mkdir(locked, 0); err != nil {
		t.Fatal(err)
	}
	nobody := uint32(65532)
	tests := []struct {
		name string
		user *uint32
		args []string
		want string
	}{
		{"missing siblings directory", nil, []string{"--addr", "127.0.0.1:0", "--siblings", filepath.Join(filepath.Dir(locked), "missing")}, "cannot read siblings directory"},
		{"unreadable siblings directory", &nobody, []string{"--addr", "127.0.0.1:0", "--siblings", locked}, "cannot read siblings directory"},
		{"address in use", nil, []string{"--addr", busy.Addr}, "address already in use"},
		{"unknown format", nil, []string{"--format", "zip"}, `unknown format "zip"`},
		{"unknown platform", nil, []string{"--platforms", "linux/mips"}, `platform "linux/mips" is not supported`},
		{"unknown flag", nil, []string{"--nope"}, "flag provided but not defined: -nope"},
		{"push with an unknown flag", nil, []string{"push", "--nope"}, "push: flag provided but not defined: -nope"},
		{"platform with no binary", nil, []string{"--addr", "127.0.0.1:0", "--platforms", "linux/amd64,linux/s390x"}, "no binary for linux/s390x"},
	}
	for _, tc := range tests {
		t.Run(tc.name+" is one line with a non-zero exit", func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = []string{}
			if tc.user != nil {
				cmd.SysProcAttr = harness.AsUser(*tc.user)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			out := strings.TrimRight(stderr.String(), "\n")
			if err == nil || strings.Count(out, "\n") != 0 || !strings.Contains(out, tc.want) || strings.Contains(out, "goroutine") {
				t.Errorf("exit %v, stderr %q; want a non-zero exit and one line with %q", err, out, tc.want)
			}
		})
	}
}

// timeToServe logs the time from exec until the list is served (amd64 and
// arm64 binaries), median of 11 runs. A measurement, not an assertion.
func timeToServe(t *testing.T, dist string) {
	bin := harness.Binary(dist, "linux/amd64")
	addr := harness.FreeAddr(t)
	var times []time.Duration
	for i := 0; i < 11; i++ {
		t0 := time.Now()
		s := harness.StartWith(t, "timed", harness.Options{NoWaitReady: true}, bin, "--addr", addr)
		for {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/quinistry/manifests/latest", nil)
			req.Header.Set("Accept", harness.ListAccept)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-s.Exited():
				t.Fatalf("the server exited: %s\n%s", s.ExitStatus(), s.Log.Text())
			default:
			}
		}
		times = append(times, time.Since(t0))
		s.Stop(t)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	var ms []string
	for _, d := range times {
		ms = append(ms, fmt.Sprint(d.Milliseconds()))
	}
	t.Logf("time to serve the list (exec until the list is served, amd64+arm64): median %d ms of %s", times[5].Milliseconds(), strings.Join(ms, " "))
	for _, f := range harness.Files(t, dist) {
		st, _ := os.Stat(filepath.Join(dist, f))
		t.Logf("binary %s: %d bytes", f, st.Size())
	}
}
