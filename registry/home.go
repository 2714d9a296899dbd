package registry

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/quinistry/quinistry/attest"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/sbom"
)

// homeStyle is the page's only style sheet, inline; the
// Content-Security-Policy allows exactly it by its hash.
const homeStyle = `body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:64em;padding:0 1em;color:#1d2330}` +
	`h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em}` +
	`table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #d8dce4;vertical-align:top}` +
	`code{font:13px ui-monospace,monospace;overflow-wrap:anywhere}` +
	`.pull{display:block;background:#eef1f6;padding:.6em .8em;border-radius:4px;user-select:all}` +
	`.muted{color:#5a6272}`

// homeCSP is the page's Content-Security-Policy: nothing may load, run or
// be framed, except the inline style above and the empty data: icon (which
// keeps the browser from asking for /favicon.ico).
var homeCSP = func() string {
	sum := sha256.Sum256([]byte(homeStyle))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; img-src data:; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

// acceptsHTML reports whether a request's Accept headers name text/html
// with a quality above zero.
func acceptsHTML(accept []string) bool {
	for _, v := range accept {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "text/html" {
				continue
			}
			if q, err := strconv.ParseFloat(params["q"], 64); err == nil && q <= 0 {
				continue
			}
			return true
		}
	}
	return false
}

// homeImage is one row of the page's platform table.
type homeImage struct {
	platform, version string
	manifest          index.Descriptor
	size              int64
	sbom              index.Descriptor // the SPDX document's blob
}

// homeData is what the page shows besides the host: read once from the
// content.
type homeData struct {
	images  []homeImage
	modules []sbom.Package // of the default image's SBOM
	goVer   string
}

// home returns the page's data, reading the content on first use.
func (reg *Registry) home() *homeData {
	reg.homeOnce.Do(func() {
		d := &homeData{}
		def := reg.content.Default().Manifest.Digest
		for _, img := range reg.content.Images {
			row := homeImage{platform: img.Platform.String(), manifest: img.Manifest.Descriptor, size: reg.content.ImageSize(img), version: configVersion(img.Config.Data)}
			if doc, ok := sbom.Find(reg.content, img.Manifest.Digest); ok {
				row.sbom = doc.Descriptor
				if img.Manifest.Digest == def {
					if parsed, err := sbom.Parse(doc.Data); err == nil {
						d.modules = parsed.Modules()
						if tc, ok := parsed.Package(sbom.ToolchainID); ok {
							d.goVer = tc.VersionInfo
						}
					}
				}
			}
			d.images = append(d.images, row)
		}
		reg.homeData = d
	})
	return reg.homeData
}

// configVersion is the version an image config's labels give: the
// release, else the short revision, else "(devel)".
func configVersion(config []byte) string {
	var c index.Config
	if json.Unmarshal(config, &c) != nil {
		return "(devel)"
	}
	l := c.Config.Labels
	if v := l["org.opencontainers.image.version"]; v != "" {
		return v
	}
	if r := l["org.opencontainers.image.revision"]; r != "" {
		return r[:min(len(r), 12)]
	}
	return "(devel)"
}

// serveHome answers GET and HEAD / for a browser: a small page that says
// what this is, how to pull it, and what it is made of. It loads nothing
// and runs no script.
func (reg *Registry) serveHome(w http.ResponseWriter, r *http.Request) {
	d := reg.home()
	e := htmlEscaper.Replace
	host := r.Host
	if host == "" {
		host = "localhost"
	}
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">")
	b.WriteString("<link rel=icon href=\"data:,\"><title>quinistry: " + e(reg.name) + "</title><style>" + homeStyle + "</style></head><body>\n")
	b.WriteString("<h1>quinistry</h1><p class=muted>A read-only Docker/OCI registry that serves itself: the image below is the program answering this page, " +
		"one image per platform, byte for byte the same whenever it packs itself again.</p>\n")

	b.WriteString("<h2>Pull</h2>")
	for _, t := range reg.tags {
		b.WriteString("<code class=pull>docker pull " + e(host+"/"+reg.name+":"+t) + "</code>\n")
	}
	b.WriteString("<p>Repository <code>" + e(reg.name) + "</code>, tags ")
	for i, t := range reg.tags {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("<code>" + e(t) + "</code>")
	}
	b.WriteString(".<br>List <code id=list-digest>" + e(reg.content.List.Digest.String()) + "</code> <span class=muted>(" + e(reg.content.List.MediaType) + ")</span>")
	if l := reg.attestationLinks(reg.content.List.Digest); l != "" {
		b.WriteString("<br>Attestations of the list: " + l)
	}
	b.WriteString("</p>\n")

	b.WriteString("<h2>Platforms</h2><table><thead><tr><th>platform</th><th>manifest digest</th><th>pull size</th><th>version</th><th>SBOM</th><th>attestations</th></tr></thead><tbody>\n")
	for _, img := range d.images {
		b.WriteString("<tr><td>" + e(img.platform) + "</td><td><code class=digest>" + e(img.manifest.Digest.String()) + "</code></td><td>" +
			e(humanBytes(img.size)) + "</td><td><code>" + e(img.version) + "</code></td><td>")
		if img.sbom.Digest != "" {
			b.WriteString("<a href=\"/v2/" + e(reg.name) + "/blobs/" + e(img.sbom.Digest.String()) + "\">SPDX 2.3</a>")
		}
		b.WriteString("</td><td>" + reg.attestationLinks(img.manifest.Digest) + "</td></tr>\n")
	}
	b.WriteString("</tbody></table>\n<p class=muted>Each SBOM is also an OCI 1.1 referrer of its platform manifest: <code>GET /v2/" + e(reg.name) +
		"/referrers/&lt;manifest digest&gt;</code>, or <code>oras discover</code>.</p>\n")

	fmt.Fprintf(&b, "<h2>Go modules (%d)</h2><table><thead><tr><th>module</th><th>version</th><th>go.sum hash (hex)</th></tr></thead><tbody>\n", len(d.modules))
	for _, m := range d.modules {
		sum := ""
		if len(m.Checksums) > 0 {
			sum = m.Checksums[0].ChecksumValue
		}
		b.WriteString("<tr><td><code>" + e(m.Name) + "</code></td><td><code>" + e(m.VersionInfo) + "</code></td><td><code>" + e(sum) + "</code></td></tr>\n")
	}
	b.WriteString("</tbody></table>\n")
	if d.goVer != "" {
		b.WriteString("<p class=muted>Built with " + e(d.goVer) + ".</p>\n")
	}
	b.WriteString("<h2>More</h2><p><a href=\"/metrics\">/metrics</a> · <a href=\"/healthz\">/healthz</a> · <a href=\"/v2/" + e(reg.name) + "/tags/list\">tags</a></p>\n</body></html>\n")

	page := b.String()
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", homeCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Accept")
	h.Set("Content-Length", strconv.Itoa(len(page)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(page))
	}
}

// attestationLinks lists, as HTML, the Sigstore bundles served as
// referrers of d: each one's predicate type, linked to the bundle's blob
// by its digest.
func (reg *Registry) attestationLinks(d digest.Digest) string {
	e := htmlEscaper.Replace
	var b strings.Builder
	for _, a := range reg.Attestations().Artifacts() {
		if a.Subject != d || a.ArtifactType != attest.MediaType || len(a.Blobs) < 2 {
			continue
		}
		bundle := a.Blobs[len(a.Blobs)-1].Digest.String()
		b.WriteString("<a class=attestation href=\"/v2/" + e(reg.name) + "/blobs/" + e(bundle) + "\">" + e(a.Annotations[attest.PredicateTypeAnnotation]) +
			"</a> <code>" + e(bundle) + "</code><br>")
	}
	return strings.TrimSuffix(b.String(), "<br>")
}

// htmlEscaper escapes text for HTML content and quoted attributes. (The
// standard library's html package would bring its whole entity table into
// the binary.)
var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;")

// humanBytes writes a size in MB with one decimal.
func humanBytes(n int64) string {
	return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + " MB"
}
