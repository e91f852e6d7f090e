package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

func uiServer(t *testing.T) *httptest.Server {
	t.Helper()
	s, err := New(Config{Listen: "127.0.0.1:0", Tokens: []string{"tok"}}, openDB(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// checkUIHeaders: every UI answer forbids inline script and style,
// framing and MIME sniffing.
func checkUIHeaders(t *testing.T, path string, res *http.Response) {
	t.Helper()
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", path, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") || strings.Contains(csp, "*") {
		t.Errorf("%s: Content-Security-Policy %q allows too much", path, csp)
	}
	if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", path, got)
	}
}

// TestUIPages: each page's URL answers the shell without a token (it holds
// no data), with the security headers, while the API behind it still
// wants the token.
func TestUIPages(t *testing.T) {
	ts := uiServer(t)
	shell, err := os.ReadFile("ui/dist/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/", "/search", "/search?q=user%3Dattacker&since=1h", "/event/abc-123", "/event/a%2Fb",
		"/user/attacker", "/user/system:serviceaccount:kube-system:default", "/object/secrets/production/db-creds", "/alerts", "/policy", "/login?next=%2Falerts"} {
		res, body := get(t, ts.URL+p)
		if res.StatusCode != 200 || body != string(shell) {
			t.Errorf("GET %s: %d, %d bytes; want 200 and the shell", p, res.StatusCode, len(body))
			continue
		}
		if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", p, ct)
		}
		checkUIHeaders(t, p, res)
	}
	for _, p := range []string{"/api/v1/events", "/api/v1/stats", "/api/v1/investigate/timeline"} {
		if res, _ := get(t, ts.URL+p); res.StatusCode != 401 {
			t.Errorf("GET %s without a token: %d, want 401", p, res.StatusCode)
		}
	}
	// The UI adds no catch-all: other paths are still not found.
	for _, p := range []string{"/nope", "/search/x", "/ui/", "/ui/index.html", "/ui/missing.js", "/alerts/x"} {
		if res, _ := get(t, ts.URL+p); res.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, res.StatusCode)
		}
	}
}

// TestUIAssets: the script and the style sheet with their types and the
// headers, and a 304 for a copy the browser already has.
func TestUIAssets(t *testing.T) {
	ts := uiServer(t)
	for file, ct := range map[string]string{"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8", "LICENSE.uplot.txt": "text/plain; charset=utf-8"} {
		want, err := os.ReadFile("ui/dist/" + file)
		if err != nil {
			t.Fatal(err)
		}
		res, body := get(t, ts.URL+"/ui/"+file)
		if res.StatusCode != 200 || body != string(want) || res.Header.Get("Content-Type") != ct {
			t.Errorf("GET /ui/%s: %d, %q, %d bytes; want 200, %q, %d bytes", file, res.StatusCode, res.Header.Get("Content-Type"), len(body), ct, len(want))
		}
		checkUIHeaders(t, file, res)
		etag := res.Header.Get("ETag")
		if res, body := get(t, ts.URL+"/ui/"+file, "If-None-Match", etag); etag == "" || res.StatusCode != 304 || body != "" {
			t.Errorf("GET /ui/%s If-None-Match %s: %d, %d bytes; want 304", file, etag, res.StatusCode, len(body))
		}
	}
}

// TestUIBuildHasNoInlineCode reads the built files: the shell loads its
// script and style from files (the CSP would block anything inline), and
// the script never parses markup, so a value from an event can only ever
// become text. web/test/browser.mjs shows the same in a browser.
func TestUIBuildHasNoInlineCode(t *testing.T) {
	html, err := os.ReadFile("ui/dist/index.html")
	if err != nil {
		t.Fatal(err)
	}
	// A script element must load a file and hold nothing.
	for _, m := range regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllSubmatch(html, -1) {
		if !strings.Contains(string(m[1]), " src=") || len(m[2]) != 0 {
			t.Errorf("index.html holds an inline script: %q", m[0])
		}
	}
	for _, re := range []string{`<style`, `\sstyle=`, `\son[a-z]+=`, `javascript:`} {
		if m := regexp.MustCompile(`(?i)` + re).Find(html); m != nil {
			t.Errorf("index.html holds inline code: %q", m)
		}
	}
	if !strings.Contains(string(html), `<script src="/ui/app.js" defer></script>`) {
		t.Errorf("index.html does not load /ui/app.js")
	}
	js, err := os.ReadFile("ui/dist/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment", "DOMParser", "eval(", "new Function"} {
		if strings.Contains(string(js), sink) {
			t.Errorf("app.js uses %s: every value must go in as text (web/src/dom.js)", sink)
		}
	}
}
