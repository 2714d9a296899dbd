package e2e

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/quinistry/quinistry/e2e/harness"
)

// What a Sigstore bundle referrer carries.
const (
	bundleType       = "application/vnd.dev.sigstore.bundle.v0.3+json"
	slsaProvenance1  = "https://slsa.dev/provenance/v1"
	noServedDigest   = "attestation names no digest served here; not served"
	attestationsLoad = "attestations loaded"
)

// attestSuite is what TestAttest's checks share: the dist, cosign, the
// signer's key pair and another, and cosign's environment (its own home,
// no password).
type attestSuite struct {
	dist, amd64, cosign, dir string
	key, pub, otherPub       string
	env                      []string
}

// TestAttest proves that quinistry carries its own signed provenance: the
// statement quinistry provenance prints, signed offline by cosign
// attest-blob, is served from --attestations DIR as a referrer of the list
// and of each platform manifest, and real cosign verifies the image and
// the SLSA provenance attestation against quinistry over plain HTTP, with
// no transparency log and no network, in both formats and from generation
// 2; it fails on another key and on altered signature bytes; a bundle
// about another image is skipped with one warning; a malformed or
// oversized file refuses the start with one line; and a new bundle is
// served with no restart, on a change of the directory or on SIGHUP.
func TestAttest(t *testing.T) {
	s := newAttestSuite(t)
	crane := harness.Tool(t, "crane")
	for _, format := range []string{"docker", "oci"} {
		t.Run(format, func(t *testing.T) { s.format(t, format, crane) })
	}
	t.Run("bad input", s.badInput)
	harness.CheckNothingLeft(t)
}

// newAttestSuite finds cosign and the dist, and generates the signer's key
// pair and another.
func newAttestSuite(t *testing.T) *attestSuite {
	t.Helper()
	s := &attestSuite{dist: harness.Dist(t), cosign: harness.Tool(t, "cosign"), dir: harness.TempDir(t)}
	s.amd64 = harness.Binary(s.dist, "linux/amd64")
	s.env = append(os.Environ(), "HOME="+filepath.Join(s.dir, "home"), "COSIGN_PASSWORD=", "DOCKER_CONFIG="+filepath.Join(s.dir, "docker"))
	t.Logf("cosign %s", modVersion(s.cosign))
	s.key, s.pub = s.keyPair(t, "signer")
	_, s.otherPub = s.keyPair(t, "other")
	return s
}

// provenance signs what quinistry provenance prints for format and
// returns the statement, the file it is in and its bundle.
func (s *attestSuite) provenance(t *testing.T, format string) (statement, file string, bundle []byte) {
	t.Helper()
	out, err := runEnv(nil, s.amd64, "provenance", "--format", format)
	if err != nil {
		t.Fatalf("quinistry provenance: %v", err)
	}
	file = filepath.Join(s.dir, "stmt-"+format+".json")
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return out, file, s.sign(t, file)
}

// keyPair generates a cosign key pair in its own directory.
func (s *attestSuite) keyPair(t *testing.T, name string) (key, pub string) {
	t.Helper()
	dir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := runEnvIn(dir, s.env, s.cosign, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v", err)
	}
	return filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
}

// sign signs the statement file with the signer's key, offline, and
// returns the bundle's bytes.
func (s *attestSuite) sign(t *testing.T, statement string) []byte {
	t.Helper()
	out := statement + ".bundle.json"
	if _, err := runEnv(s.env, s.cosign, "attest-blob", "--key", s.key, "--statement", statement, "--bundle", out,
		"--tlog-upload=false", "--use-signing-config=false", "--yes"); err != nil {
		t.Fatalf("cosign attest-blob: %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// attestDir writes files into a new directory that the image's user can
// read.
func (s *attestSuite) attestDir(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := filepath.Join(harness.TempDir(t), "attestations")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// verify runs cosign verify (or verify-attestation --type
// slsaprovenance1) with pub against ref, offline; it returns what cosign
// printed and its error.
func (s *attestSuite) verify(attestation bool, pub, ref string) (string, error) {
	args := []string{"verify"}
	if attestation {
		args = []string{"verify-attestation", "--type", "slsaprovenance1"}
	}
	args = append(args, "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", ref)
	return runEnv(s.env, append([]string{s.cosign}, args...)...)
}

// statementOf decodes the in-toto statement in the first DSSE envelope
// cosign verify-attestation printed.
func statementOf(t *testing.T, out string) provenanceStatement {
	t.Helper()
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	env := harness.JSON[struct{ Payload string }](t, "cosign's envelope", []byte(line))
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatalf("the envelope's payload: %v", err)
	}
	return harness.JSON[provenanceStatement](t, "the statement", payload)
}

// provenanceStatement is the part of the statement the checks read.
type provenanceStatement struct {
	Subject []struct {
		Name   string
		Digest map[string]string
	}
	PredicateType string
	Predicate     struct {
		BuildDefinition struct {
			ExternalParameters struct {
				Format    string
				Platforms []string
			}
			ResolvedDependencies []struct {
				URI         string
				Name        string
				Annotations map[string]string
			}
		}
	}
}

// digests returns the statement's subjects as sha256:HEX.
func (p provenanceStatement) digests() []string {
	var out []string
	for _, s := range p.Subject {
		out = append(out, "sha256:"+s.Digest["sha256"])
	}
	return out
}

// format signs the provenance of one format's image and checks it served,
// verified, refused with the wrong key, and served again by generation 2.
func (s *attestSuite) format(t *testing.T, format, crane string) {
	out, stmtFile, bundle := s.provenance(t, format)
	otherStmt := filepath.Join(s.dir, "other-"+format+".json")
	if err := os.WriteFile(otherStmt, aboutAnotherImage(t, out), 0o644); err != nil {
		t.Fatal(err)
	}
	otherBundle := s.sign(t, otherStmt)
	dir := s.attestDir(t, map[string][]byte{"quinistry.sigstore.json": bundle, "older-image.sigstore.json": otherBundle})

	gen1 := harness.Start(t, "gen1-"+format, s.amd64, []string{"--addr", "127.0.0.1:0", "--format", format, "--log-format", "json", "--attestations", dir})
	ref := gen1.Addr + "/quinistry:latest"
	list, listDigest := harness.Index(t, ref)
	subjects := platformDigests(t, list)
	served := []string{listDigest.String(), subjects["amd64"], subjects["arm64"]}
	stmt := harness.JSON[provenanceStatement](t, "the printed statement", []byte(out))

	t.Run("quinistry provenance names the list and both platform manifests served, and every module of the binary", func(t *testing.T) {
		if got := stmt.digests(); !slices.Equal(got, served) {
			t.Errorf("the statement's subjects are %v; served: %v", got, served)
		}
		if stmt.PredicateType != slsaProvenance1 || stmt.Predicate.BuildDefinition.ExternalParameters.Format != format {
			t.Errorf("predicate type %q, format %q", stmt.PredicateType, stmt.Predicate.BuildDefinition.ExternalParameters.Format)
		}
		missing := missingModules(t, s.amd64, stmt)
		if len(missing) > 0 {
			t.Errorf("the statement lacks the modules %v", missing)
		}
	})
	t.Run("the bundle about another image is skipped with one warning naming its file", func(t *testing.T) {
		var warns []harness.Record
		for _, r := range gen1.Log.Records() {
			if r.Msg() == noServedDigest {
				warns = append(warns, r)
			}
		}
		if len(warns) != 1 || warns[0]["level"] != "WARN" || warns[0]["file"] != "older-image.sigstore.json" {
			t.Errorf("the warnings: %v", warns)
		}
	})

	referrerManifests := map[string][]byte{} // referrer digest -> manifest bytes, from generation 1
	for i, d := range served {
		what := []string{"the list", "linux/amd64", "linux/arm64"}[i]
		t.Run(what, func(t *testing.T) {
			t.Logf("%s: %s", what, d)
			t.Run("its referrers list one bundle, annotated as cosign annotates it, holding the signed bundle's bytes", func(t *testing.T) {
				idx := referrers(t, gen1.Addr, d, "?artifactType=application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson")
				if len(idx.Manifests) != 1 {
					t.Fatalf("the bundle referrers of %s: %+v", d, idx.Manifests)
				}
				art := idx.Manifests[0]
				a := art.Annotations
				if art.ArtifactType != bundleType || a["dev.sigstore.bundle.content"] != "dsse-envelope" ||
					a["dev.sigstore.bundle.predicateType"] != slsaProvenance1 || a[createdAnnotation] == "" {
					t.Errorf("the referrer %s: artifactType %q, annotations %v", art.Digest, art.ArtifactType, a)
				}
				m := fetchManifest(t, gen1.Addr, art.Digest.String())
				if m.Subject == nil || m.Subject.Digest.String() != d || len(m.Layers) != 1 || m.Layers[0].MediaType != bundleType ||
					m.Config.Digest.String() != emptyConfigDigest {
					t.Fatalf("the referrer manifest %s: subject %+v, config %+v, layers %+v", art.Digest, m.Subject, m.Config, m.Layers)
				}
				if got := blob(t, gen1.Addr, m.Layers[0].Digest.String()); !bytes.Equal(got, bundle) {
					t.Errorf("the layer %s is not the signed bundle (%d bytes, %d signed)", m.Layers[0].Digest, len(got), len(bundle))
				}
				r := harness.Do(t, http.MethodGet, "http://"+gen1.Addr+"/v2/quinistry/manifests/"+art.Digest.String(), "Accept", harness.OCIManifest)
				referrerManifests[art.Digest.String()] = r.Body
			})
			t.Run("cosign verify --key passes, offline over plain HTTP", func(t *testing.T) {
				if out, err := s.verify(false, s.pub, gen1.Addr+"/quinistry@"+d); err != nil {
					t.Errorf("cosign verify %s: %v\n%s", d, err, out)
				}
			})
			t.Run("cosign verify-attestation --type slsaprovenance1 passes and prints the statement: the served digests and the modules", func(t *testing.T) {
				out, err := s.verify(true, s.pub, gen1.Addr+"/quinistry@"+d)
				if err != nil {
					t.Fatalf("cosign verify-attestation %s: %v", d, err)
				}
				got := statementOf(t, out)
				if !slices.Equal(got.digests(), served) {
					t.Errorf("the verified statement names %v; served %v", got.digests(), served)
				}
				if missing := missingModules(t, s.amd64, got); len(missing) > 0 {
					t.Errorf("the verified statement lacks the modules %v", missing)
				}
			})
			t.Run("cosign verify with another key fails", func(t *testing.T) {
				out, err := s.verify(false, s.otherPub, gen1.Addr+"/quinistry@"+d)
				if err == nil || !strings.Contains(err.Error(), "signature") {
					t.Fatalf("cosign verify with another key, for %s: %v\n%s", d, err, out)
				}
				t.Logf("cosign refused it: %s", lastLine(err.Error()))
			})
		})
	}
	if len(referrerManifests) != len(served) {
		t.Fatalf("only %d of %d digests have a bundle referrer", len(referrerManifests), len(served))
	}

	t.Run("generation 2 of linux/amd64, started as the image says with the same directory, serves byte-identical referrers and cosign verifies it", func(t *testing.T) {
		fs := filepath.Join(harness.TempDir(t), "rootfs")
		exportFS(t, crane, "linux/amd64", ref, fs)
		cfg := harness.JSON[v1.ConfigFile](t, "the linux/amd64 config", []byte(harness.Run(t, crane, "config", "--insecure", "--platform", "linux/amd64", ref)))
		gen2 := harness.StartImageEnv(t, "gen2-"+format, fs, &cfg, []string{"QUINISTRY_ATTESTATIONS=" + dir})
		for _, d := range served {
			want := harness.Do(t, http.MethodGet, "http://"+gen1.Addr+"/v2/quinistry/referrers/"+d)
			got := harness.Do(t, http.MethodGet, "http://"+gen2.Addr+"/v2/quinistry/referrers/"+d)
			if got.Status != http.StatusOK || !bytes.Equal(got.Body, want.Body) {
				t.Errorf("the referrers of %s: generation 2 (%s) answers %d %s; generation 1 %s", d, harness.Describe(&cfg), got.Status, got.Body, want.Body)
			}
		}
		for rd, body := range referrerManifests {
			got := harness.Do(t, http.MethodGet, "http://"+gen2.Addr+"/v2/quinistry/manifests/"+rd, "Accept", harness.OCIManifest)
			if !bytes.Equal(got.Body, body) {
				t.Errorf("the referrer manifest %s differs in generation 2: %s", rd, got.Body)
			}
		}
		if out, err := s.verify(true, s.pub, gen2.Addr+"/quinistry@"+listDigest.String()); err != nil {
			t.Errorf("cosign verify-attestation against generation 2: %v\n%s", err, out)
		}
	})

	if format != "docker" {
		return
	}
	t.Run("a bundle whose signature bytes were altered is served but fails cosign verify", func(t *testing.T) {
		tampered := alterSignature(t, bundle)
		bad := harness.Start(t, "tampered", s.amd64, []string{"--addr", "127.0.0.1:0", "--log-format", "json", "--attestations", s.attestDir(t, map[string][]byte{"b.json": tampered})})
		if got := referrers(t, bad.Addr, listDigest.String(), ""); len(got.Manifests) != 1 {
			t.Fatalf("the tampered bundle is not served: %+v", got.Manifests)
		}
		out, err := s.verify(false, s.pub, bad.Addr+"/quinistry@"+listDigest.String())
		if err == nil || !strings.Contains(err.Error(), "signature") {
			t.Fatalf("cosign verify with altered signature bytes: %v\n%s", err, out)
		}
		t.Logf("cosign refused it: %s", lastLine(err.Error()))
	})
	t.Run("a new bundle is served with no restart: on a change of the directory, and again on SIGHUP", func(t *testing.T) {
		loads := func() int {
			n := 0
			for _, r := range gen1.Log.Records() {
				if r.Msg() == attestationsLoad {
					n++
				}
			}
			return n
		}
		before := loads()
		second := s.sign(t, stmtFile) // a second signature of the same statement: other bytes
		if err := os.WriteFile(filepath.Join(dir, "second.sigstore.json"), second, 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r := gen1.Log.Wait(t, 15*time.Second, "a reload after the new file", func(r harness.Record) bool {
			return r.Msg() == attestationsLoad && r.Int("bundles") == 2
		})
		t.Logf("reloaded %s after the file was written: %v", time.Since(start).Round(time.Millisecond), r)
		if got := referrers(t, gen1.Addr, listDigest.String(), ""); len(got.Manifests) != 2 {
			t.Errorf("after the reload the list has %d referrers: %+v", len(got.Manifests), got.Manifests)
		}
		n := loads()
		if n != before+1 {
			t.Errorf("%d loads after one change", n-before)
		}
		gen1.Signal(t, syscall.SIGHUP)
		seen := 0 // Wait shows each record to the match once, in order
		gen1.Log.Wait(t, 10*time.Second, "a reload on SIGHUP", func(r harness.Record) bool {
			if r.Msg() == attestationsLoad {
				seen++
			}
			return seen > n
		})
	})
}

// aboutAnotherImage is the statement with its subjects replaced by one
// digest that quinistry does not serve, as a statement of an older version.
func aboutAnotherImage(t *testing.T, statement string) []byte {
	t.Helper()
	var st map[string]any
	if err := json.Unmarshal([]byte(statement), &st); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("an older quinistry"))
	st["subject"] = []map[string]any{{"name": "quinistry", "digest": map[string]string{"sha256": hex.EncodeToString(sum[:])}}}
	out, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// alterSignature flips one byte of the bundle's DSSE signature.
func alterSignature(t *testing.T, bundle []byte) []byte {
	t.Helper()
	var b map[string]any
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	env := b["dsseEnvelope"].(map[string]any)
	sig := env["signatures"].([]any)[0].(map[string]any)
	raw, err := base64.StdEncoding.DecodeString(sig["sig"].(string))
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0xff
	sig["sig"] = base64.StdEncoding.EncodeToString(raw)
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// missingModules returns the modules of bin's build information that the
// statement's resolved dependencies do not name at their version and
// go.sum hash.
func missingModules(t *testing.T, bin string, st provenanceStatement) []string {
	t.Helper()
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, d := range st.Predicate.BuildDefinition.ResolvedDependencies {
		have[d.Name+"@"+d.Annotations["version"]+" "+d.Annotations["goSum"]] = true
	}
	var missing []string
	for _, m := range info.Deps {
		if !have[m.Path+"@"+m.Version+" "+m.Sum] {
			missing = append(missing, m.Path+"@"+m.Version)
		}
	}
	if len(info.Deps) == 0 {
		t.Fatalf("%s lists no modules", bin)
	}
	return missing
}

// badInput starts quinistry on directories it must refuse: each exits
// non-zero with one line naming the file.
func (s *attestSuite) badInput(t *testing.T) {
	tests := []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"a malformed file exits non-zero with one line naming it", "broken.json", []byte(`{"mediaType":`), "not a JSON Sigstore bundle"},
		{"a sign-blob bundle (no DSSE envelope) is refused", "plain.json", []byte(`{"mediaType":"` + bundleType + `","messageSignature":{}}`), "no DSSE envelope"},
		{"a file over the 1 MiB cap is refused", "huge.json", append([]byte(`{"mediaType":"`+bundleType+`"}`), bytes.Repeat([]byte(" "), 1<<20)...), "over the 1048576-byte cap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := s.attestDir(t, map[string][]byte{tt.file: tt.data})
			srv := harness.StartWith(t, "bad-"+tt.file, harness.Options{NoWaitReady: true}, s.amd64, "--addr", "127.0.0.1:0", "--attestations", dir)
			code := srv.WaitExit(t, time.Minute)
			lines := strings.Split(strings.TrimSpace(srv.Log.Text()), "\n")
			if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], filepath.Join(dir, tt.file)) || !strings.Contains(lines[0], tt.want) {
				t.Errorf("exit %d, stderr %q", code, lines)
			}
		})
	}
}
