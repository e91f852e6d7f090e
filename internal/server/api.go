package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// The query API. Every endpoint answers errors as JSON {"error": ...}; a
// filter error also carries its column.
//
//	GET /api/v1/events?filter=F&since=S&until=U&sort=time|-time&limit=N&follow=1&envelope=1
//	    JSON lines: each stored event as stored, or with envelope=1
//	    {"cluster":C,"received":RFC3339,"event":{...}}. With follow=1 the
//	    answer goes on with events as they become durable.
//	GET /api/v1/stats?filter=F&by=user,verb&interval=1h&since=S&until=U&top=N
//	    {"total":N,"groups":[{"key":{"user":"alice"},"time":"...","count":N}]}

type apiError struct {
	Error  string `json:"error"`
	Column int    `json:"column,omitempty"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	e := apiError{Error: err.Error()}
	var qe *query.Error
	if errors.As(err, &qe) {
		e.Column = qe.Col
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(&e)
}

// parseSelection reads filter, since and until.
func parseSelection(r *http.Request, now time.Time) (local.Selection, error) {
	q := r.URL.Query()
	var sel local.Selection
	if src := q.Get("filter"); strings.TrimSpace(src) != "" {
		f, err := query.CompileAt(src, now)
		if err != nil {
			return sel, err
		}
		sel.Filter = f
	}
	var err error
	if sel.Since, err = parseTime(q.Get("since"), now); err != nil {
		return sel, fmt.Errorf("since: %w", err)
	}
	if sel.Until, err = parseTime(q.Get("until"), now); err != nil {
		return sel, fmt.Errorf("until: %w", err)
	}
	return sel, nil
}

// parseTime reads RFC 3339 or a duration before now; empty is 0.
func parseTime(v string, now time.Time) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UnixMicro(), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is neither RFC 3339 nor a duration", v)
	}
	return now.Add(-d).UnixMicro(), nil
}

type envelope struct {
	Cluster  string          `json:"cluster"`
	Received string          `json:"received"`
	Event    json.RawMessage `json:"event"`
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	sel, err := parseSelection(r, now)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	q := r.URL.Query()
	sortBy := q.Get("sort")
	if sortBy == "" {
		sortBy = "time"
	}
	if sortBy != "time" && sortBy != "-time" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("sort %q: want time or -time", sortBy))
		return
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a number", v))
			return
		}
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	env := q.Get("envelope") == "1" || q.Get("envelope") == "true"
	var sub *local.Subscription
	if follow {
		// Subscribe before reading, so nothing falls between the two.
		sub = s.db.Subscribe(256)
		defer sub.Close()
	}
	sel.NeedEvent = true
	type hit struct {
		cluster        string
		time, received int64
		raw            []byte
	}
	var hits []hit
	rd, err := local.OpenReader(s.db.Dir())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	err = rd.Select(sel, func(h *local.Hit) error {
		hits = append(hits, hit{h.Cluster, h.Time, h.Received, append([]byte(nil), h.Raw...)})
		return nil
	})
	rd.Close()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	sort.SliceStable(hits, func(i, j int) bool {
		if sortBy == "-time" {
			return hits[i].time > hits[j].time
		}
		return hits[i].time < hits[j].time
	})
	if limit > 0 && len(hits) > limit {
		if follow {
			hits = hits[len(hits)-limit:] // like tail -n: the newest, then live
		} else {
			hits = hits[:limit]
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	write := func(cluster string, received int64, raw []byte) error {
		if env {
			b, err := json.Marshal(envelope{Cluster: cluster, Received: time.UnixMicro(received).UTC().Format(time.RFC3339Nano), Event: raw})
			if err != nil {
				return err
			}
			raw = b
		}
		if _, err := w.Write(raw); err != nil {
			return err
		}
		_, err := w.Write([]byte{'\n'})
		return err
	}
	// Events a follower may see twice (in the snapshot and live) are the
	// newest ones; remember their keys.
	seen := map[local.Key]bool{}
	for _, h := range hits {
		if err := write(h.cluster, h.received, h.raw); err != nil {
			return
		}
		if follow && h.received >= now.Add(-time.Minute).UnixMicro() {
			seen[local.KeyOf(h.cluster, h.raw)] = true
		}
	}
	if !follow {
		return
	}
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case group, ok := <-sub.C:
			if !ok {
				if sub.Lagged() {
					write("", 0, []byte(`{"error":"this follower fell behind and was dropped; reconnect"}`))
				}
				return
			}
			for _, c := range group {
				ev := &c.Record.Event
				if sel.Filter != nil && !sel.Filter.Match(ev, c.Cluster) {
					continue
				}
				t := ev.Time().UnixMicro()
				if (sel.Since != 0 && t < sel.Since) || (sel.Until != 0 && t >= sel.Until) {
					continue
				}
				if len(seen) > 0 && seen[local.KeyOf(c.Cluster, c.Record.Raw)] {
					continue
				}
				if err := write(c.Cluster, c.Received, c.Record.Raw); err != nil {
					return
				}
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

type statsAnswer struct {
	Total  int64        `json:"total"`
	Groups []statsGroup `json:"groups"`
}

type statsGroup struct {
	Key   map[string]string `json:"key,omitempty"`
	Time  string            `json:"time,omitempty"`
	Count int64             `json:"count"`
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	sel, err := parseSelection(r, now)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	q := r.URL.Query()
	var cols []local.Column
	if by := q.Get("by"); by != "" {
		for _, name := range strings.Split(by, ",") {
			c, ok := local.ColumnByName(strings.TrimSpace(name))
			if !ok {
				writeError(w, http.StatusBadRequest, fmt.Errorf("by: %q is not a field stats can group by", name))
				return
			}
			cols = append(cols, c)
		}
	}
	var interval time.Duration
	if v := q.Get("interval"); v != "" {
		if interval, err = time.ParseDuration(v); err != nil || interval <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("interval %q: want a duration such as 1h", v))
			return
		}
	}
	top, _ := strconv.Atoi(q.Get("top"))
	rd, err := local.OpenReader(s.db.Dir())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	defer rd.Close()
	groups, total, err := rd.Stats(sel, cols, interval.Microseconds())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	ans := statsAnswer{Total: total, Groups: []statsGroup{}}
	for i, g := range groups {
		if top > 0 && interval == 0 && i >= top {
			break
		}
		sg := statsGroup{Count: g.Count}
		if len(cols) > 0 {
			sg.Key = map[string]string{}
			for j, c := range cols {
				sg.Key[c.String()] = g.Key[j]
			}
		}
		if interval > 0 {
			sg.Time = time.UnixMicro(g.Bucket).UTC().Format(time.RFC3339)
		}
		ans.Groups = append(ans.Groups, sg)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(&ans)
}
