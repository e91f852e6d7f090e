package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// uiPages are the pages the web UI section opens, with the corpus's own
// questions (queries.go) as the selective search and the object.
func uiPages(auditID string) []uiPage {
	sel := questions[0].filter
	return []uiPage{
		{Name: "overview, every event", Path: "/"},
		{Name: "selective search (" + sel + ")", Path: "/search?q=" + url.QueryEscape(sel)},
		{Name: "search, one user's newest 10,000 (user=admin)", Path: "/search?q=" + url.QueryEscape("user=admin")},
		{Name: "event", Path: "/event/" + url.PathEscape(auditID)},
		{Name: "object (secrets/production/important)", Path: "/object/secrets/production/important"},
		{Name: "user (admin's timeline)", Path: "/user/admin"},
		{Name: "search listing 100,000 events, then scrolled to the end", Path: "/search?q=&limit=100000", Scroll: true},
	}
}

type uiPage struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Scroll bool   `json:"scroll,omitempty"`
}

type uiResult struct {
	Pages []struct {
		Name         string  `json:"name"`
		Path         string  `json:"path"`
		Ms           float64 `json:"ms"`
		Rows         int     `json:"rows"`
		MedianStepMs float64 `json:"medianStepMs"`
		WorstStepMs  float64 `json:"worstStepMs"`
		API          []struct {
			URL string  `json:"url"`
			Ms  float64 `json:"ms"`
		} `json:"api"`
	} `json:"pages"`
}

// webUI measures the web UI over the store ingest built: `kubetrail serve
// --detect=false` on it, and web/measure/ui.mjs in Debian's Chromium
// opening each page of uiPages (medians of s.runs fresh loads), with the
// API answers behind each. It needs node, chromium and web/node_modules
// (make ui); without them the report says so and the suite goes on.
func (s *suite) webUI(ci int, c corpus) error {
	w := &s.out
	fmt.Fprintf(w, "\n### Web UI, %s events\n\n", c.name)
	if missing := uiMissing(); missing != "" {
		fmt.Fprintf(w, "Not measured: this machine lacks %s.\n", missing)
		return nil
	}
	addr := freeAddr()
	srv := exec.Command(filepath.Join(s.bin, "kubetrail"), "serve", "--listen", addr, "--data", filepath.Join(s.work, "data-import"), "--detect=false")
	var logs bytes.Buffer
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	}()
	if err := waitReady(addr); err != nil {
		return fmt.Errorf("serve: %v: %s", err, logs.String())
	}
	base := "http://" + addr
	id, err := firstAuditID(base, questions[0].filter)
	if err != nil {
		return err
	}
	pages, _ := json.Marshal(uiPages(id))
	node := exec.Command("node", "measure/ui.mjs")
	node.Dir = "web"
	node.Env = append(os.Environ(), "KUBETRAIL_URL="+base, "PAGES="+string(pages), fmt.Sprintf("RUNS=%d", max(3, s.runs)))
	var out, errb bytes.Buffer
	node.Stdout, node.Stderr = &out, &errb
	if err := node.Run(); err != nil {
		return fmt.Errorf("web/measure/ui.mjs: %v: %s", err, errb.String())
	}
	var res uiResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return fmt.Errorf("web/measure/ui.mjs printed %q: %w", out.String(), err)
	}
	fmt.Fprintf(w, "`kubetrail serve --detect=false` on the store above, each page opened in Debian's Chromium (headless, 1280x900, a fresh context each time) by web/measure/ui.mjs: "+
		"the time from the navigation to the page drawn (the UI's `kubetrail:ready` mark), median of %d loads, and below each page the API answers behind it "+
		"(the Performance API's resource timing, request start to last byte, median). The aims of issue 15, at 2M events: the overview under 1 s, a selective search under 300 ms.\n\n", max(3, s.runs))
	fmt.Fprintf(w, "| page | drawn in |\n|---|---|\n")
	for _, p := range res.Pages {
		extra := ""
		if p.Rows > 0 {
			extra = fmt.Sprintf(" (%d rows; scrolled to the end in 40 steps of two frames each: median step %.0f ms, slowest %.0f ms)", p.Rows, p.MedianStepMs, p.WorstStepMs)
		}
		fmt.Fprintf(w, "| %s `%s`%s | %s |\n", p.Name, p.Path, extra, msString(p.Ms))
		for _, a := range p.API {
			fmt.Fprintf(w, "| &nbsp;&nbsp;API `%s` | %s |\n", strings.ReplaceAll(a.URL, "|", "%7C"), msString(a.Ms))
		}
		if p.Path == "/" {
			s.fig.add("web UI: overview drawn in the browser", ci, fig{kt: time.Duration(p.Ms * float64(time.Millisecond))})
		}
	}
	return nil
}

func msString(ms float64) string {
	if ms >= 1000 {
		return fmt.Sprintf("%.2f s", ms/1000)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// uiMissing names what the browser measurement needs and lacks.
func uiMissing() string {
	var missing []string
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, chromium)
	}
	if _, err := os.Stat("web/node_modules/playwright-core"); err != nil {
		missing = append(missing, "web/node_modules/playwright-core (make ui)")
	}
	return strings.Join(missing, ", ")
}

// firstAuditID asks the API for the newest event of filter, for the event
// page.
func firstAuditID(base, filter string) (string, error) {
	res, err := http.Get(base + "/api/v1/events?limit=1&sort=-time&filter=" + url.QueryEscape(filter))
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var ev struct {
		AuditID string `json:"auditID"`
	}
	if res.StatusCode != 200 || json.Unmarshal(b, &ev) != nil || ev.AuditID == "" {
		return "", fmt.Errorf("GET /api/v1/events?filter=%s: %d %.200s", filter, res.StatusCode, b)
	}
	return ev.AuditID, nil
}
