package server

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
)

// The alerts of a server on ClickHouse. Such a server runs no rules:
// one `kubetrail detect --follow --store URL --data DIR` per store does
// (ADR 0021), keeping its alerts in DIR/alerts. Given the same data
// folder (Config.AlertsDir), GET /api/v1/alerts reads them there,
// without a lock, as `kubetrail alerts --data DIR` does beside a running
// detector; without it, it answers 404 saying where the alerts are.

// alertsDirPollEvery is how often a follow=1 answer looks for new alerts
// in the folder, as `kubetrail alerts --follow --data` does.
const alertsDirPollEvery = time.Second

// errNoAlertDir answers /api/v1/alerts on a ClickHouse server whose data
// folder holds no alert store.
type errNoAlertDir struct{ path string }

func (e errNoAlertDir) Error() string {
	return fmt.Sprintf("no alert store in %s: with ClickHouse, rules run in kubetrail detect --follow --store URL --data DIR, "+
		"which keeps its alerts in DIR/alerts; give serve the same --data to list them here", e.path)
}

// alertsFromDir is the alerts API over the alert store in dir.
func (s *Server) alertsFromDir(w http.ResponseWriter, r *http.Request, dir string) {
	path := filepath.Join(dir, alert.StoreDir)
	if dir == "" {
		path = filepath.Join("DIR", alert.StoreDir)
	}
	if _, err := os.Stat(path); dir == "" || err != nil {
		writeError(w, http.StatusNotFound, errNoAlertDir{path: path})
		return
	}
	q, follow, err := alertRequest(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	// The newest alert before listing: the follow loop goes on after it,
	// skipping what the list already sent.
	var last uint64
	if follow {
		newest, _, err := alert.ListDir(nil, path, alert.Query{Limit: 1})
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		if len(newest) > 0 {
			last = newest[0].Seq
		}
	}
	list, damage, err := alert.ListDir(nil, path, q)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	for _, d := range damage {
		w.Header().Add(DamageHeader, url.QueryEscape(d.String()))
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	sent := map[uint64]bool{}
	var buf []byte
	send := func(a *alert.Alert) bool {
		if buf, err = alert.AppendStoredJSONLine(buf[:0], a); err != nil {
			return false
		}
		if _, err := w.Write(buf); err != nil {
			return false
		}
		addResults(r, 1)
		return true
	}
	for i := range list {
		if !send(&list[i]) {
			return
		}
		if list[i].Seq > last {
			sent[list[i].Seq] = true
		}
	}
	if !follow {
		return
	}
	cursor := last
	if q.Oldest && len(list) == q.Limit {
		cursor, sent = list[len(list)-1].Seq, nil
	}
	flusher, _ := w.(http.Flusher)
	for {
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.stopping:
			w.Write([]byte(`{"error":"the server is shutting down; the stream ends here"}` + "\n"))
			return
		case <-time.After(alertsDirPollEvery):
		}
		for {
			page, _, err := alert.ListDir(nil, path, alert.Query{After: cursor, Oldest: true, Limit: alert.DefaultListLimit})
			if err != nil {
				fmt.Fprintf(w, "{\"error\":%q}\n", "reading alerts: "+err.Error())
				return
			}
			if len(page) == 0 {
				break
			}
			for i := range page {
				if q.Match(&page[i]) && !sent[page[i].Seq] && !send(&page[i]) {
					return
				}
			}
			cursor = page[len(page)-1].Seq
		}
	}
}
