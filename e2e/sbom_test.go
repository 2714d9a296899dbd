package e2e

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"image/png"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/quinistry/quinistry/e2e/harness"
)

// What the SBOM referrers carry.
const (
	spdxType           = "application/spdx+json"
	cycloneDXType      = "application/vnd.cyclonedx+json"
	emptyConfigType    = "application/vnd.oci.empty.v1+json"
	emptyConfigDigest  = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	platformAnnotation = "io.github.quinistry.sbom.platform"
	createdAnnotation  = "org.opencontainers.image.created"
)

var sbomArches = []string{"amd64", "arm64"}

// sbomSuite is what TestSbom's checks share: the dist generation 1 runs
// from, the clients, their environment (settings and caches in a directory
// of the suite's own) and where the suite keeps what it shows (results/e2e-sbom).
type sbomSuite struct {
	dist, amd64, dir, out string
	syft, oras, regctl    string
	crane, chromium       string
	env                   []string
	chromeDirs            []string
}

// TestSbom proves that quinistry knows itself. In both formats it serves one
// SPDX 2.3 SBOM per platform image as an OCI 1.1 referrer of that image's
// manifest, and that document describes that platform's binary (its GOARCH,
// build settings and modules, as the binary itself and syft read them);
// syft, oras and regctl agree, the conformance suite's referrers tests pass,
// generation 2 (amd64 natively, arm64 under qemu) serves the same referrers;
// quinistry push puts them in the CNCF registry and quinistry export in an
// OCI layout, where oras finds them; and the home page renders in headless
// Chromium with no console error and no request leaving the origin.
func TestSbom(t *testing.T) {
	s := &sbomSuite{dist: harness.Dist(t)}
	s.amd64 = harness.Binary(s.dist, "linux/amd64")
	s.dir = harness.TempDir(t)
	s.out = filepath.Join(harness.Root(), "results", "e2e-sbom")
	if err := os.RemoveAll(s.out); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.out, 0o755); err != nil {
		t.Fatal(err)
	}
	s.syft, s.oras, s.regctl = harness.Tool(t, "syft"), harness.Tool(t, "oras"), harness.Tool(t, "regctl")
	s.crane, s.chromium = harness.Tool(t, "crane"), harness.Tool(t, "chromium")
	harness.Tool(t, "registry")
	harness.Tool(t, "conformance.test")
	s.env = append(os.Environ(), "SYFT_CHECK_FOR_APP_UPDATE=false", "SYFT_REGISTRY_INSECURE_USE_HTTP=true",
		"SYFT_CACHE_DIR="+filepath.Join(s.dir, "syft-cache"), "REGCTL_CONFIG="+filepath.Join(s.dir, "regctl.json"),
		"DOCKER_CONFIG="+filepath.Join(s.dir, "docker"))
	t.Logf("syft %s, oras %s, regctl %s, %s", modVersion(s.syft), modVersion(s.oras), modVersion(s.regctl),
		strings.TrimSpace(s.tool(t, s.chromium, "--version")))
	ready := harness.ReadyTimeout
	harness.ReadyTimeout = 90 * time.Second // generation 2 of arm64 starts under qemu on a loaded machine
	t.Cleanup(func() { harness.ReadyTimeout = ready })

	for _, format := range []string{"docker", "oci"} {
		t.Run(format, func(t *testing.T) { s.format(t, format) })
	}

	origin := harness.Start(t, "origin", s.amd64, []string{"--addr", "127.0.0.1:0"})
	t.Run("push", func(t *testing.T) { s.push(t, origin) })
	t.Run("export", func(t *testing.T) { s.export(t, origin) })
	t.Run("page", func(t *testing.T) { s.page(t, origin) })
	origin.Stop(t)

	harness.AddLeftoverCheck(s.chromiumLeft)
	harness.CheckNothingLeft(t)
}

// format runs generation 1 in one format and checks its referrers with
// every client, then generation 2 of each platform.
func (s *sbomSuite) format(t *testing.T, format string) {
	gen1 := harness.Start(t, "gen1-"+format, s.amd64, []string{"--addr", "127.0.0.1:0", "--format", format})
	addr := gen1.Addr
	ref := addr + "/quinistry:latest"
	list, listDigest := harness.Index(t, ref)
	subjects := platformDigests(t, list)
	arts := map[string]v1.Descriptor{} // arch -> the SBOM artifact's descriptor, as the referrers list gives it
	docs := map[string][]byte{}        // arch -> the served SPDX document
	var manifests, blobs []string
	manifests = append(manifests, listDigest.String())

	for _, arch := range sbomArches {
		platform := "linux/" + arch
		d := subjects[arch]
		t.Run(platform, func(t *testing.T) {
			idx := referrers(t, addr, d, "")
			if !t.Run("the referrers of its manifest list exactly one artifact", func(t *testing.T) {
				if len(idx.Manifests) != 1 {
					t.Fatalf("the referrers of %s list %d: %+v", d, len(idx.Manifests), idx.Manifests)
				}
				t.Logf("%s: referrer %s", d, idx.Manifests[0].Digest)
			}) {
				return
			}
			art := idx.Manifests[0]
			arts[arch] = art
			t.Run("it is an "+spdxType+" artifact annotated with "+platform+" and a creation time", func(t *testing.T) {
				if art.ArtifactType != spdxType || art.Annotations[platformAnnotation] != platform || art.Annotations[createdAnnotation] == "" {
					t.Errorf("the referrer %s has artifactType %q and annotations %v", art.Digest, art.ArtifactType, art.Annotations)
				}
				if _, err := time.Parse(time.RFC3339, art.Annotations[createdAnnotation]); err != nil {
					t.Errorf("its %s is not a time: %v", createdAnnotation, err)
				}
			})
			t.Run("?artifactType="+spdxType+" keeps it and sets OCI-Filters-Applied: artifactType", func(t *testing.T) {
				r := harness.Do(t, http.MethodGet, "http://"+addr+"/v2/quinistry/referrers/"+d+"?artifactType=application%2Fspdx%2Bjson")
				got := harness.JSON[v1.IndexManifest](t, "the filtered referrers", r.Body)
				if r.Status != http.StatusOK || len(got.Manifests) != 1 || got.Manifests[0].Digest != art.Digest {
					t.Errorf("status %d, referrers %+v", r.Status, got.Manifests)
				}
				if h := r.Header.Get("OCI-Filters-Applied"); h != "artifactType" {
					t.Errorf("OCI-Filters-Applied is %q", h)
				}
			})
			t.Run("?artifactType="+cycloneDXType+" lists none", func(t *testing.T) {
				if got := referrers(t, addr, d, "?artifactType=application%2Fvnd.cyclonedx%2Bjson"); len(got.Manifests) != 0 {
					t.Errorf("it lists %+v", got.Manifests)
				}
			})
			m := fetchManifest(t, addr, art.Digest.String())
			t.Run("the artifact manifest's subject is the platform manifest, its config the empty one", func(t *testing.T) {
				if m.Subject == nil || m.Subject.Digest.String() != d {
					t.Errorf("its subject is %+v, want %s", m.Subject, d)
				}
				if m.Config.MediaType != emptyConfigType || m.Config.Size != 2 || m.Config.Digest.String() != emptyConfigDigest {
					t.Errorf("its config is %+v", m.Config)
				}
				if m.ArtifactType != spdxType || len(m.Layers) != 1 || m.Layers[0].MediaType != spdxType {
					t.Errorf("its artifactType is %q and its layers %+v", m.ArtifactType, m.Layers)
				}
			})
			manifests = append(manifests, d, art.Digest.String())
			blobs = append(blobs, m.Config.Digest.String())
			for _, l := range m.Layers {
				blobs = append(blobs, l.Digest.String())
			}
			if len(m.Layers) == 0 {
				t.Fatalf("the artifact %s has no layer", art.Digest)
			}
			doc := blob(t, addr, m.Layers[0].Digest.String())
			docs[arch] = doc
			s.keep(t, "quinistry-linux-"+arch+"-"+format+".spdx.json", doc)
			bin := harness.Binary(s.dist, platform)
			t.Run("the SPDX document describes the "+platform+" binary: GOARCH="+arch+", its build settings, modules and Go version", func(t *testing.T) {
				describesBinary(t, doc, d, arch, bin)
			})
			t.Run("quinistry sbom --platform "+platform+" prints the served document", func(t *testing.T) {
				out, err := runEnv(nil, s.amd64, "sbom", "--format", format, "--platform", platform)
				if err != nil || out != string(doc) {
					t.Errorf("quinistry sbom: %v; it printed %d bytes, the registry serves %d (%s)", err, len(out), len(doc), firstDiff(out, string(doc)))
				}
			})
			t.Run("syft reads the same modules, versions and build settings from the "+platform+" image's own binary", func(t *testing.T) {
				s.syftAgrees(t, ref, d, arch, doc)
			})
		})
	}
	if len(arts) != len(sbomArches) {
		t.Fatalf("only %d of the %d platform images have an SBOM referrer", len(arts), len(sbomArches))
	}

	t.Run("the list has no referrers and an unknown subject gets an empty index", func(t *testing.T) {
		if got := referrers(t, addr, listDigest.String(), ""); len(got.Manifests) != 0 {
			t.Errorf("the list %s has referrers %+v", listDigest, got.Manifests)
		}
		unknown := "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881" // sha256 of "x"
		if got := referrers(t, addr, unknown, ""); len(got.Manifests) != 0 {
			t.Errorf("the unknown subject %s has referrers %+v", unknown, got.Manifests)
		}
	})

	var fetched []string // documents oras and regctl fetched
	for _, arch := range sbomArches {
		platform, art := "linux/"+arch, arts[arch].Digest.String()
		t.Run("oras/"+platform, func(t *testing.T) {
			t.Run("oras discover --platform "+platform+" lists the SBOM artifact", func(t *testing.T) {
				tree := s.orasDiscover(t, "--plain-http", "--platform", platform, ref)
				if tree.Digest != subjects[arch] {
					t.Errorf("oras resolved %s to %s, want %s", platform, tree.Digest, subjects[arch])
				}
				if got := tree.artifacts(spdxType); !slices.Equal(got, []string{art}) {
					t.Errorf("oras lists the SPDX artifacts %v, want %s", got, art)
				}
			})
			t.Run("oras discover --artifact-type "+spdxType+" selects it, another type nothing", func(t *testing.T) {
				if got := s.orasDiscover(t, "--plain-http", "--platform", platform, "--artifact-type", spdxType, ref).artifacts(""); !slices.Equal(got, []string{art}) {
					t.Errorf("filtered by %s, oras lists %v", spdxType, got)
				}
				if got := s.orasDiscover(t, "--plain-http", "--platform", platform, "--artifact-type", cycloneDXType, ref).artifacts(""); len(got) != 0 {
					t.Errorf("filtered by %s, oras lists %v", cycloneDXType, got)
				}
			})
			t.Run("oras pull fetches quinistry-linux-"+arch+".spdx.json, the served document", func(t *testing.T) {
				dir := filepath.Join(s.dir, "oras-"+format+"-"+arch)
				s.tool(t, s.oras, "pull", "--plain-http", "-o", dir, addr+"/quinistry@"+art)
				file := filepath.Join(dir, "quinistry-linux-"+arch+".spdx.json")
				got, err := os.ReadFile(file)
				if err != nil || !bytes.Equal(got, docs[arch]) {
					t.Fatalf("oras pulled %s: %v (%d bytes, served %d)", file, err, len(got), len(docs[arch]))
				}
				fetched = append(fetched, file)
			})
		})
	}
	s.tool(t, s.regctl, "registry", "set", "--tls", "disabled", addr)
	for _, arch := range sbomArches {
		platform, art, d := "linux/"+arch, arts[arch].Digest.String(), subjects[arch]
		t.Run("regctl/"+platform, func(t *testing.T) {
			t.Run("regctl artifact list --platform "+platform+" lists the SBOM artifact", func(t *testing.T) {
				got := s.regctlList(t, "--platform", platform, ref)
				if got.Subject.Digest != d || !slices.Equal(got.digests(), []string{art}) {
					t.Errorf("regctl lists %v for the subject %s, want %s for %s", got.digests(), got.Subject.Digest, art, d)
				}
			})
			t.Run("regctl artifact list --filter-artifact-type selects it, another type nothing", func(t *testing.T) {
				if got := s.regctlList(t, "--filter-artifact-type", spdxType, addr+"/quinistry@"+d).digests(); !slices.Equal(got, []string{art}) {
					t.Errorf("filtered by %s, regctl lists %v", spdxType, got)
				}
				if got := s.regctlList(t, "--filter-artifact-type", cycloneDXType, addr+"/quinistry@"+d).digests(); len(got) != 0 {
					t.Errorf("filtered by %s, regctl lists %v", cycloneDXType, got)
				}
			})
			t.Run("regctl artifact get --subject fetches the served document", func(t *testing.T) {
				got := s.tool(t, s.regctl, "artifact", "get", "--subject", addr+"/quinistry@"+d, "--filter-artifact-type", spdxType)
				if got != string(docs[arch]) {
					t.Fatalf("regctl fetched %d bytes, the registry serves %d (%s)", len(got), len(docs[arch]), firstDiff(got, string(docs[arch])))
				}
				file := filepath.Join(s.dir, "regctl-"+format+"-"+arch+".json")
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				fetched = append(fetched, file)
			})
		})
	}
	t.Run("tools-golang reads back the documents oras and regctl fetched as valid SPDX 2.3", func(t *testing.T) {
		if len(fetched) != 2*len(sbomArches) {
			t.Fatalf("oras and regctl fetched %d documents: %v", len(fetched), fetched)
		}
		for _, f := range fetched {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := readBack(data)
			if err != nil {
				t.Errorf("%s: %v", filepath.Base(f), err)
				continue
			}
			ours := harness.JSON[struct{ Packages, Relationships []json.RawMessage }](t, f, data)
			if len(doc.Packages) != len(ours.Packages) || len(doc.Relationships) != len(ours.Relationships) {
				t.Errorf("%s: tools-golang reads %d packages and %d relationships of %d and %d", filepath.Base(f),
					len(doc.Packages), len(doc.Relationships), len(ours.Packages), len(ours.Relationships))
			}
			t.Logf("%s: %s, %d packages, %d relationships", filepath.Base(f), doc.SPDXVersion, len(doc.Packages), len(doc.Relationships))
		}
	})

	referrerSubjects := []string{subjects["amd64"], subjects["arm64"]}
	t.Run("the OCI conformance suite passes, its referrers tests by name, with OCI_RO_DATA_REFERRERS the platform manifests", func(t *testing.T) {
		t.Logf("OCI_RO_DATA_REFERRERS=%s", strings.Join(referrerSubjects, " "))
		r := harness.Conformance(t, harness.ConformanceOptions{Addr: addr, Repo: "quinistry", Tag: "latest",
			Manifests: manifests, Blobs: blobs, Referrers: referrerSubjects})
		s.keep(t, "conformance-"+format+".txt", []byte(r.Output))
		t.Logf("conformance/%s: %s %v", format, r.Result, r.Counts)
		if r.Result != "Pass" || r.Counts["FAIL"] != 0 || r.Counts["Error"] != 0 || r.Counts["Pass"] == 0 {
			t.Errorf("the suite says %s %v; not passed: %v", r.Result, r.Counts, notPassed(r.Tests))
		}
		for _, name := range []string{"OCI Conformance Test/empty/referrers", "OCI Conformance Test/read-only/referrers"} {
			if got := r.Tests[name]; got != "Pass" {
				t.Errorf("%q is %q, want Pass", name, got)
			}
		}
	})

	// Generation 2, started as a container runtime would: Entrypoint + Cmd,
	// the config's Env and user and a listen address; arm64 under qemu.
	for _, arch := range sbomArches {
		platform := "linux/" + arch
		t.Run("generation 2 of "+platform+", started as the image says, serves the same referrers and SBOM documents", func(t *testing.T) {
			fs := filepath.Join(harness.TempDir(t), "rootfs")
			exportFS(t, s.crane, platform, ref, fs)
			cfg := harness.JSON[v1.ConfigFile](t, "the "+platform+" config",
				[]byte(harness.Run(t, s.crane, "config", "--insecure", "--platform", platform, ref)))
			var runner []string
			if arch == "arm64" {
				runner = []string{"qemu-aarch64-static"}
			}
			gen2 := harness.StartImage(t, "gen2-"+format+"-"+arch, fs, &cfg, runner...)
			for _, a := range sbomArches {
				d := subjects[a]
				want := harness.Do(t, http.MethodGet, "http://"+addr+"/v2/quinistry/referrers/"+d)
				got := harness.Do(t, http.MethodGet, "http://"+gen2.Addr+"/v2/quinistry/referrers/"+d)
				if got.Status != http.StatusOK || !bytes.Equal(got.Body, want.Body) {
					t.Errorf("generation 2 (%s) answers the referrers of %s with %d %s; generation 1 %s", harness.Describe(&cfg, runner...), d, got.Status, got.Body, want.Body)
					continue
				}
				if doc := sbomDoc(t, gen2.Addr, d); !bytes.Equal(doc, docs[a]) {
					t.Errorf("generation 2 (%s) serves another SBOM for linux/%s (%s)", harness.Describe(&cfg, runner...), a, firstDiff(string(doc), string(docs[a])))
				}
			}
			t.Logf("generation 2 (%s) serves %s and %s", harness.Describe(&cfg, runner...), arts["amd64"].Digest, arts["arm64"].Digest)
		})
	}
}

// push: quinistry push to the CNCF registry, where oras finds the same
// SBOM referrers.
func (s *sbomSuite) push(t *testing.T, origin *harness.Server) {
	reg := harness.StartRegistry(t, "sbom", "").Addr
	target := reg + "/team/quinistry:v1"
	if !t.Run("quinistry push to the CNCF registry succeeds", func(t *testing.T) {
		cmd := exec.Command(s.amd64, "push", "--insecure", target)
		cmd.Env = []string{}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("quinistry push %s: %v\n%s", target, err, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		t.Logf("push: %s", lines[len(lines)-1])
	}) {
		return
	}
	list, _ := harness.Index(t, origin.Addr+"/quinistry:latest")
	subjects := platformDigests(t, list)
	for _, arch := range sbomArches {
		d := subjects[arch]
		idx := referrers(t, origin.Addr, d, "")
		if len(idx.Manifests) != 1 {
			t.Fatalf("the origin lists %d referrers of %s", len(idx.Manifests), d)
		}
		want := idx.Manifests[0].Digest.String()
		t.Run("linux/"+arch+": oras discover on the CNCF registry lists the served SBOM", func(t *testing.T) {
			if got := s.orasDiscover(t, "--plain-http", reg+"/team/quinistry@"+d).artifacts(spdxType); !slices.Equal(got, []string{want}) {
				t.Errorf("oras lists %v in the CNCF registry for %s", got, d)
			}
		})
		t.Run("linux/"+arch+": the CNCF registry holds the same document", func(t *testing.T) {
			dir := filepath.Join(s.dir, "pulled-"+arch)
			s.tool(t, s.oras, "pull", "--plain-http", "-o", dir, reg+"/team/quinistry@"+want)
			got, err := os.ReadFile(filepath.Join(dir, "quinistry-linux-"+arch+".spdx.json"))
			if want := sbomDoc(t, origin.Addr, d); err != nil || !bytes.Equal(got, want) {
				t.Errorf("pulled from the CNCF registry: %v, %d bytes; the origin serves %d", err, len(got), len(want))
			}
		})
	}
}

// export: quinistry export's OCI layout holds the SBOMs, and oras finds
// them there by their subject.
func (s *sbomSuite) export(t *testing.T, origin *harness.Server) {
	layout := filepath.Join(s.dir, "layout")
	if out, err := runEnv(nil, s.amd64, "export", "--oci-layout", layout); err != nil {
		t.Fatalf("quinistry export --oci-layout: %v\n%s", err, out)
	}
	list, _ := harness.Index(t, origin.Addr+"/quinistry:latest")
	subjects := platformDigests(t, list)
	for _, arch := range sbomArches {
		idx := referrers(t, origin.Addr, subjects[arch], "")
		var want []string
		for _, m := range idx.Manifests {
			want = append(want, m.Digest.String())
		}
		t.Run("linux/"+arch+": oras discover --oci-layout finds the served SBOM in the export", func(t *testing.T) {
			tree := s.orasDiscover(t, "--oci-layout", "--platform", "linux/"+arch, layout+":latest")
			if got := tree.artifacts(spdxType); len(want) != 1 || !slices.Equal(got, want) || tree.Digest != subjects[arch] {
				t.Errorf("oras finds %v for %s in the layout; the origin serves %v for %s", got, tree.Digest, want, subjects[arch])
			}
		})
	}
}

// page renders the home page in headless Chromium, with every host but
// loopback unresolvable, and checks what it shows and what it asked for.
func (s *sbomSuite) page(t *testing.T, origin *harness.Server) {
	url := "http://" + origin.Addr + "/"
	netlog := filepath.Join(s.dir, "netlog.json")
	dom, log1 := s.runChromium(t, "chrome1", "--log-net-log="+netlog, "--net-log-capture-mode=Default",
		"--virtual-time-budget=3000", "--dump-dom", url)
	shot := filepath.Join(s.out, "page.png")
	_, log2 := s.runChromium(t, "chrome2", "--window-size=1100,900", "--hide-scrollbars", "--screenshot="+shot, url)
	s.keep(t, "page.html", []byte(dom))
	s.keep(t, "chromium.log", []byte(log1))

	t.Run("chromium rendered it (the DOM has the title)", func(t *testing.T) {
		if !strings.Contains(dom, "<h1>quinistry</h1>") {
			t.Errorf("the DOM has no <h1>quinistry</h1>: %.400s", dom)
		}
	})
	list, _ := harness.Index(t, origin.Addr+"/quinistry:latest")
	for _, arch := range sbomArches {
		d := platformDigests(t, list)[arch]
		t.Run("it shows the linux/"+arch+" manifest digest", func(t *testing.T) {
			if !strings.Contains(dom, d) {
				t.Errorf("the DOM does not show %s", d)
			}
		})
	}
	pull := "docker pull " + origin.Addr + "/quinistry:latest"
	t.Run("it shows the pull line docker pull ADDR/quinistry:latest", func(t *testing.T) {
		if !strings.Contains(dom, pull) {
			t.Errorf("the DOM does not show %q", pull)
		}
	})
	t.Run("chromium logged no console message and no CSP report", func(t *testing.T) {
		bad := regexp.MustCompile(`CONSOLE|Content Security Policy|Refused to`)
		for _, l := range strings.Split(log1+"\n"+log2, "\n") {
			if bad.MatchString(l) {
				t.Errorf("chromium logged: %s", l)
			}
		}
	})
	t.Run("every request the page made went to the origin", func(t *testing.T) {
		page, own := netlogRequests(t, netlog)
		t.Logf("the page asked for %v; chromium's own requests, stopped by --host-resolver-rules: %v", page, own)
		if len(page) == 0 {
			t.Fatal("the net log holds no request of the page")
		}
		for _, u := range page {
			if !strings.HasPrefix(u, url) {
				t.Errorf("the page asked for %s, outside %s", u, url)
			}
		}
	})
	t.Run("the screenshot is a 1100x900 PNG (results/e2e-sbom/page.png)", func(t *testing.T) {
		f, err := os.Open(shot)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cfg, err := png.DecodeConfig(f)
		if err != nil || cfg.Width != 1100 || cfg.Height != 900 {
			t.Errorf("the screenshot: %v, %dx%d", err, cfg.Width, cfg.Height)
		}
	})
	t.Run("GET / without Accept: text/html still gets the JSON 404", func(t *testing.T) {
		r := harness.Do(t, http.MethodGet, url)
		e := harness.JSON[struct{ Errors []struct{ Code string } }](t, "the 404 body", r.Body)
		if r.Status != http.StatusNotFound || len(e.Errors) == 0 || e.Errors[0].Code != "NOT_FOUND" {
			t.Errorf("GET / answers %d %s", r.Status, r.Body)
		}
	})
	t.Run("HEAD / with Accept: text/html answers 200 text/html with Content-Security-Policy: default-src 'none'", func(t *testing.T) {
		r := harness.Do(t, http.MethodHead, url, "Accept", "text/html")
		ct, csp := r.Header.Get("Content-Type"), r.Header.Get("Content-Security-Policy")
		if r.Status != http.StatusOK || !strings.HasPrefix(ct, "text/html") || !strings.HasPrefix(csp, "default-src 'none'") {
			t.Errorf("HEAD / answers %d, Content-Type %q, Content-Security-Policy %q", r.Status, ct, csp)
		}
	})
}

// describesBinary checks that doc, the SBOM of the image with manifest
// digest subject, describes bin, the arch binary generation 1 packed: its
// GOARCH, every build setting in order, its main module, dependencies and
// Go version, all read from the binary itself.
func describesBinary(t *testing.T, doc []byte, subject, arch, bin string) {
	d, err := readBack(doc)
	if err != nil {
		t.Fatal(err)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("reading the build information of %s: %v", bin, err)
	}
	if got := setting(info, "GOARCH"); got != arch {
		t.Fatalf("%s was built with GOARCH=%s", filepath.Base(bin), got)
	}
	pkgs := map[string]*spdx.Package{}
	for _, p := range d.Packages {
		pkgs[string(p.PackageSPDXIdentifier)] = p
	}
	img, main, std := pkgs["Image"], pkgs["Package-go-main"], pkgs["Package-go-toolchain"]
	if img == nil || main == nil || std == nil {
		t.Fatalf("the document lacks the image, main module or toolchain package: %v", slices.Sorted(maps.Keys(pkgs)))
	}
	if img.PackageVersion != subject || !strings.Contains(img.PackageComment, "linux/"+arch) {
		t.Errorf("the image package is %s (%q), want %s", img.PackageVersion, img.PackageComment, subject)
	}
	m := regexp.MustCompile(`(?:: |; )GOARCH=([^;]*)(?:;|$)`).FindStringSubmatch(main.PackageComment)
	if m == nil || m[1] != arch {
		t.Errorf("the document's main module records GOARCH %v, want %s: %q", m, arch, main.PackageComment)
	}
	var settings []string
	for _, s := range info.Settings {
		settings = append(settings, s.Key+"="+s.Value)
	}
	if want := "Build settings: " + strings.Join(settings, "; "); !strings.HasSuffix(main.PackageComment, want) {
		t.Errorf("the document's build settings are %q; the binary's %q", main.PackageComment, want)
	}
	if main.PackageName != info.Main.Path || main.PackageVersion != info.Main.Version {
		t.Errorf("the main module is %s@%s, the binary's %s@%s", main.PackageName, main.PackageVersion, info.Main.Path, info.Main.Version)
	}
	if std.PackageVersion != info.GoVersion {
		t.Errorf("the toolchain is %s, the binary was built with %s", std.PackageVersion, info.GoVersion)
	}
	var got, want []string
	for _, p := range d.Packages {
		if strings.HasPrefix(string(p.PackageSPDXIdentifier), "Package-go-module-") {
			got = append(got, p.PackageName+"@"+p.PackageVersion)
		}
	}
	for _, dep := range info.Deps {
		v := dep.Version
		if dep.Replace != nil {
			v = dep.Replace.Version
		}
		want = append(want, dep.Path+"@"+v)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("the document lists the modules %v, the binary %v", got, want)
	}
}

// syftAgrees scans the platform image of ref with syft and compares what it
// reads from that platform's own binary (/quinistry-linux-ARCH; every image
// carries every binary) with doc: the Go modules and versions, and the main
// module's build settings.
func (s *sbomSuite) syftAgrees(t *testing.T, ref, subject, arch string, doc []byte) {
	out := filepath.Join(s.dir, "syft-"+strings.ReplaceAll(ref, "/", "_")+"-"+arch+".json")
	s.tool(t, s.syft, "scan", "-q", "registry:"+ref, "--platform", "linux/"+arch, "-o", "syft-json="+out)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	type setting struct{ Key, Value string }
	scan := harness.JSON[struct {
		Source struct {
			Metadata struct {
				ManifestDigest, Architecture string
			}
		}
		Artifacts []struct {
			Name, Version, Type string
			Locations           []struct{ Path string }
			Metadata            struct {
				Architecture    string
				GoBuildSettings []setting
				MainModule      string
			}
		}
	}](t, "syft's JSON", data)
	if scan.Source.Metadata.ManifestDigest != subject || scan.Source.Metadata.Architecture != arch {
		t.Fatalf("syft scanned the %s image %s, want %s %s", scan.Source.Metadata.Architecture, scan.Source.Metadata.ManifestDigest, arch, subject)
	}
	file := "/quinistry-linux-" + arch
	var found, all []string
	var buildSettings []string
	for _, a := range scan.Artifacts {
		if a.Type != "go-module" {
			continue
		}
		v := a.Version
		if v == "UNKNOWN" { // syft's word for the build information's (devel)
			v = "(devel)"
		}
		if len(a.Locations) == 0 {
			t.Errorf("syft found %s@%s nowhere", a.Name, v)
			continue
		}
		all = append(all, a.Name+"@"+v+" in "+a.Locations[0].Path)
		if a.Locations[0].Path != file {
			continue
		}
		found = append(found, a.Name+"@"+v)
		if a.Metadata.Architecture != arch && (a.Metadata.Architecture != "" || a.Name == a.Metadata.MainModule) {
			t.Errorf("syft says %s in %s is built for %q", a.Name, file, a.Metadata.Architecture)
		}
		if a.Name == a.Metadata.MainModule && a.Metadata.GoBuildSettings != nil {
			for _, s := range a.Metadata.GoBuildSettings {
				buildSettings = append(buildSettings, s.Key+"="+s.Value)
			}
		}
	}
	d, err := readBack(doc)
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	var mainComment string
	for _, p := range d.Packages {
		if strings.HasPrefix(string(p.PackageSPDXIdentifier), "Package-go-") {
			ours = append(ours, p.PackageName+"@"+p.PackageVersion)
		}
		if p.PackageSPDXIdentifier == "Package-go-main" {
			mainComment = p.PackageComment
		}
	}
	sort.Strings(found)
	sort.Strings(ours)
	if !slices.Equal(found, ours) {
		t.Errorf("syft finds in %s %v; the SBOM lists %v (syft's whole scan: %v)", file, found, ours, all)
	} else {
		t.Logf("syft and the SBOM agree on %s: %v", file, ours)
	}
	if len(buildSettings) == 0 || !slices.Contains(buildSettings, "GOARCH="+arch) {
		t.Errorf("syft reads the build settings %v from %s, want GOARCH=%s among them", buildSettings, file, arch)
	}
	for _, bs := range buildSettings {
		if !strings.Contains(mainComment+";", " "+bs+";") {
			t.Errorf("syft reads %s from %s; the SBOM's build settings are %q", bs, file, mainComment)
		}
	}
}

// readBack reads an SPDX document with tools-golang and validates it.
func readBack(data []byte) (*spdx.Document, error) {
	doc, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		return nil, err
	}
	if doc.SPDXVersion != "SPDX-2.3" {
		return nil, fmt.Errorf("spdxVersion %q", doc.SPDXVersion)
	}
	return doc, nil
}

// platformDigests maps the list's architectures to their platform manifest
// digests; both amd64 and arm64 must be there.
func platformDigests(t *testing.T, list *v1.IndexManifest) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range list.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" {
			out[d.Platform.Architecture] = d.Digest.String()
		}
	}
	for _, a := range sbomArches {
		if out[a] == "" {
			t.Fatalf("the list names no linux/%s image: %v", a, harness.Platforms(list))
		}
	}
	return out
}

// referrers fetches and decodes the referrers index of subject d.
func referrers(t *testing.T, addr, d, query string) v1.IndexManifest {
	t.Helper()
	r := harness.Do(t, http.MethodGet, "http://"+addr+"/v2/quinistry/referrers/"+d+query)
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != harness.OCIIndex {
		t.Fatalf("the referrers of %s%s: status %d, Content-Type %q: %s", d, query, r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	return harness.JSON[v1.IndexManifest](t, "the referrers of "+d, r.Body)
}

// fetchManifest fetches and decodes the manifest with digest d.
func fetchManifest(t *testing.T, addr, d string) v1.Manifest {
	t.Helper()
	r := harness.Do(t, http.MethodGet, "http://"+addr+"/v2/quinistry/manifests/"+d, "Accept", harness.OCIManifest)
	if r.Status != http.StatusOK {
		t.Fatalf("the manifest %s: status %d: %s", d, r.Status, r.Body)
	}
	return harness.JSON[v1.Manifest](t, "the manifest "+d, r.Body)
}

// blob fetches the blob with digest d.
func blob(t *testing.T, addr, d string) []byte {
	t.Helper()
	r := harness.Do(t, http.MethodGet, "http://"+addr+"/v2/quinistry/blobs/"+d)
	if r.Status != http.StatusOK {
		t.Fatalf("the blob %s: status %d", d, r.Status)
	}
	return r.Body
}

// sbomDoc fetches the SPDX document of subject's one referrer.
func sbomDoc(t *testing.T, addr, subject string) []byte {
	t.Helper()
	idx := referrers(t, addr, subject, "")
	if len(idx.Manifests) != 1 {
		t.Fatalf("%s lists %d referrers of %s", addr, len(idx.Manifests), subject)
	}
	m := fetchManifest(t, addr, idx.Manifests[0].Digest.String())
	if len(m.Layers) != 1 {
		t.Fatalf("the referrer %s has %d layers", idx.Manifests[0].Digest, len(m.Layers))
	}
	return blob(t, addr, m.Layers[0].Digest.String())
}

// orasNode is oras discover's JSON: a manifest and its referrers, as a tree.
type orasNode struct {
	Digest       string
	ArtifactType string
	Referrers    []orasNode
}

// artifacts returns the digests of the referrers in the tree whose
// artifactType is typ (any, when typ is "").
func (n orasNode) artifacts(typ string) []string {
	var out []string
	for _, r := range n.Referrers {
		if typ == "" || r.ArtifactType == typ {
			out = append(out, r.Digest)
		}
		out = append(out, r.artifacts(typ)...)
	}
	return out
}

func (s *sbomSuite) orasDiscover(t *testing.T, args ...string) orasNode {
	t.Helper()
	out := s.tool(t, s.oras, append([]string{"discover", "--format", "json"}, args...)...)
	return harness.JSON[orasNode](t, "oras discover's JSON", []byte(out))
}

// regctlListing is regctl artifact list's JSON.
type regctlListing struct {
	Subject     struct{ Digest string }
	Descriptors []v1.Descriptor
}

func (l regctlListing) digests() []string {
	var out []string
	for _, d := range l.Descriptors {
		out = append(out, d.Digest.String())
	}
	return out
}

func (s *sbomSuite) regctlList(t *testing.T, args ...string) regctlListing {
	t.Helper()
	out := s.tool(t, s.regctl, append([]string{"artifact", "list", "--format", "{{json .}}"}, args...)...)
	return harness.JSON[regctlListing](t, "regctl artifact list's JSON", []byte(out))
}

// tool runs a client with the suite's environment and returns its output;
// a failure fails the test.
func (s *sbomSuite) tool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := runEnv(s.env, append([]string{bin}, args...)...)
	if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return out
}

// runEnv runs argv with exactly the environment env and returns its
// standard output.
func runEnv(env []string, argv ...string) (string, error) { return runEnvIn("", env, argv...) }

// runEnvIn is runEnv in the directory dir (empty: this one).
func runEnvIn(dir string, env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, dir
	if env == nil {
		cmd.Env = []string{}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &harness.RunError{Err: err, Stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// keep writes what the suite shows into results/e2e-sbom.
func (s *sbomSuite) keep(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.out, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runChromium runs headless Chromium once, with a profile of its own under
// the suite's directory, every host but loopback unresolvable and no
// background networking, in a process group of its own that is killed
// when it returns. It returns what Chromium printed and logged.
func (s *sbomSuite) runChromium(t *testing.T, name string, args ...string) (stdout, log string) {
	t.Helper()
	profile := filepath.Join(s.dir, name)
	s.chromeDirs = append(s.chromeDirs, profile)
	argv := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
		"--disable-extensions", "--no-default-browser-check", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
		"--enable-logging=stderr", "--v=0", "--user-data-dir=" + profile}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.chromium, argv...)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers it left in its group
	}
	if err != nil {
		t.Logf("chromium %s: %v", name, err)
	}
	return out.String(), errOut.String()
}

// chromiumLeft lists the processes that still run with one of the suite's
// Chromium profiles on their command line.
func (s *sbomSuite) chromiumLeft() []string {
	var left []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, dir := range s.chromeDirs {
			if bytes.Contains(cmdline, []byte("--user-data-dir="+dir)) {
				left = append(left, e.Name()+" "+strings.ReplaceAll(string(cmdline), "\x00", " "))
			}
		}
	}
	return left
}

// netlogRequests reads Chromium's net log: the URLs of the requests the page
// made (their network isolation key names the page's site, 127.0.0.1) and
// of Chromium's own (another key, or none).
func netlogRequests(t *testing.T, file string) (page, own []string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("chromium wrote no net log: %v", err)
	}
	nl := harness.JSON[struct {
		Constants struct {
			LogEventTypes map[string]int `json:"logEventTypes"`
		} `json:"constants"`
		Events []struct {
			Type   int `json:"type"`
			Params struct {
				URL                 string `json:"url"`
				NetworkIsolationKey string `json:"network_isolation_key"`
			} `json:"params"`
		} `json:"events"`
	}](t, "chromium's net log", data)
	start, ok := nl.Constants.LogEventTypes["URL_REQUEST_START_JOB"]
	if !ok {
		t.Fatal("the net log names no URL_REQUEST_START_JOB event type")
	}
	for _, e := range nl.Events {
		if e.Type != start {
			continue
		}
		site, _, _ := strings.Cut(e.Params.NetworkIsolationKey, " ")
		if site == "http://127.0.0.1" {
			page = append(page, e.Params.URL)
		} else {
			if u, _, _ := strings.Cut(e.Params.URL, "?"); u != "" && !slices.Contains(own, u) {
				own = append(own, u)
			}
		}
	}
	return page, own
}

// setting returns the build setting key of info.
func setting(info *debug.BuildInfo, key string) string {
	for _, s := range info.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// notPassed lists the conformance tests that did not pass.
func notPassed(tests map[string]string) []string {
	var out []string
	for name, st := range tests {
		if st != "Pass" && st != "Disabled" {
			out = append(out, name+": "+st)
		}
	}
	sort.Strings(out)
	return out
}

// firstDiff says where two texts first differ.
func firstDiff(a, b string) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			lo := max(0, i-40)
			return fmt.Sprintf("first difference at byte %d: %q vs %q", i, a[lo:min(len(a), i+40)], b[lo:min(len(b), i+40)])
		}
	}
	if len(a) == len(b) {
		return "equal"
	}
	return fmt.Sprintf("one is a prefix of the other (%d and %d bytes)", len(a), len(b))
}

// modVersion is the module version go version -m reads from a Go tool.
func modVersion(bin string) string {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return info.Main.Version
}
