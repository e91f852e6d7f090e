package server

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
)

// The web UI: an HTML shell and its script and style, built from web/ by
// `make ui` into ui/dist and committed, so that a fresh clone builds
// without Node.js (docs/ui.md). Every page of the UI is the same shell;
// its script renders the page the URL names from the public API, with the
// caller's credentials. So the shell and the assets need no
// authentication and hold no data: every datum comes from an API call
// behind authenticate.
//
//go:embed ui/dist
var uiDist embed.FS

// uiPages are the UI's pages (mux patterns), each answered with the
// shell: a URL that can be bookmarked and shared.
func uiPages() []string {
	return []string{"/{$}", "/search", "/event/{id...}", "/user/{name...}", "/object/{path...}", "/alerts", "/policy", "/login"}
}

// uiCSP keeps the pages to their own script and style: no inline script
// or style, no plugin, no framing, no other origin. A value an attacker
// put in an event (a user agent, an object name) can then run nothing
// even if it were ever inserted as markup.
const uiCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// uiAsset is one embedded file, with its entity tag.
type uiAsset struct {
	body        []byte
	contentType string
	etag        string
}

// mountUI serves the UI's pages and assets on mux, open to anyone
// (permPublic): they hold no data; every value they show comes from the
// API, behind its authentication and roles.
func (s *Server) mountUI(mux *http.ServeMux) {
	assets := map[string]uiAsset{}
	types := map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8"}
	err := fs.WalkDir(uiDist, "ui/dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := uiDist.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct, ok := types[path.Ext(p)]
		if !ok {
			ct = "application/octet-stream"
		}
		assets[path.Base(p)] = uiAsset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	shell, ok := assets["index.html"]
	if err != nil || !ok {
		panic("BUG: the embedded UI (internal/server/ui/dist) has no index.html; run make ui")
	}
	for _, p := range uiPages() {
		s.handle(mux, "GET "+p, permPublic, uiHandler(shell))
	}
	s.handle(mux, "GET /ui/{file}", permPublic, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.PathValue("file")]
		if !ok || r.PathValue("file") == "index.html" {
			setUIHeaders(w)
			http.NotFound(w, r)
			return
		}
		uiHandler(a).ServeHTTP(w, r)
	}))
}

// setUIHeaders sets the security headers every UI response carries.
func setUIHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers without CSP 2
	h.Set("Referrer-Policy", "no-referrer")
}

// uiHandler answers one asset. no-cache with an entity tag: a browser asks
// each time and gets 304 until a new binary serves new assets.
func uiHandler(a uiAsset) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setUIHeaders(w)
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		if r.Header.Get("If-None-Match") == a.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", a.contentType)
		w.Write(a.body)
	})
}
