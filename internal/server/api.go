package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/investigate"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/timespec"
)

// The query API. Every endpoint answers errors as JSON {"error": ...}; a
// filter error also carries its column.
//
//	GET /api/v1/events?filter=F&since=S&until=U&sort=time|-time|stored&limit=N&follow=1&envelope=1
//	    JSON lines: each stored event as stored, or with envelope=1
//	    {"cluster":C,"received":RFC3339,"event":{...}}. limit keeps the
//	    first N of the order (with follow, the last N), and the server
//	    stops reading once it holds them (readEvents). With follow=1 the
//	    answer goes on with events as they become durable (on ClickHouse,
//	    as a poll every second finds them: pollStore).
//	GET /api/v1/stats?filter=F&by=user,verb&interval=1h&since=S&until=U&top=N&bytes=1&sort=count|bytes
//	    {"total":N,"totalBytes":B,"totalGroups":G,"groups":[{"key":{"user":"alice"},"time":"...","count":N,"bytes":B}]}
//	    bytes=1 adds each group's stored event bytes (from the segments'
//	    length column); sort=bytes orders the groups by them (and implies
//	    bytes=1). top keeps the N largest groups, without interval.
//	    interval must be between 1s and 8784h (366 days).
//	GET /api/v1/investigate
//	    {"investigations":[{"name":"who","parameters":["verb",...]},...]}
//	GET /api/v1/investigate/NAME?PARAMS&table=1|wide
//	    {"investigation":NAME,"records":[...],"table":{"head":[...],"rows":[{"cells":[...],"detail":[...]}],"notes":[...],"empty":"..."}}
//	    runs investigation NAME (timeline, who, activity, history, secrets, execs,
//	    denied, rbac, from; parameters in investigate.Run and
//	    docs/investigations.md). records are what -o json prints; table,
//	    only when asked, is the report laid out as the CLI prints it.
//	    A parameter the investigation does not take, or a bad value, is a
//	    400 whose "parameter" names it.
//	GET /api/v1/alerts?since=S&until=U&rule=R&source=SRC&severity=MIN&after=SEQ&limit=N&follow=1
//	    JSON lines: the stored alerts (alerts.go).

type apiError struct {
	Error string `json:"error"`
	// Parameter names the query parameter at fault, when one is.
	Parameter string `json:"parameter,omitempty"`
	Column    int    `json:"column,omitempty"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	e := apiError{Error: err.Error()}
	var qe *query.Error
	if errors.As(err, &qe) {
		e.Column = qe.Col
	}
	if pe, ok := investigate.IsParamError(err); ok {
		e.Parameter = pe.Param
	}
	var te *timespec.Error
	if errors.As(err, &te) {
		e.Parameter = te.Name
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
	sel.Since, sel.Until, err = timespec.Range("since", q.Get("since"), "until", q.Get("until"), now)
	return sel, err
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
	// The scope joins the filter, which the follow loop below matches too.
	if err := scopeOf(r).restrict(&sel, now); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	q := r.URL.Query()
	sortBy := q.Get("sort")
	if sortBy == "" {
		sortBy = "time"
	}
	if sortBy != "time" && sortBy != "-time" && sortBy != "stored" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("sort %q: want time, -time or stored (the order events were stored in)", sortBy))
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
	var tail *clickhouse.Follow
	if follow {
		// Subscribe before reading, so nothing falls between the two.
		if s.db != nil {
			sub = s.db.Subscribe(256)
			defer sub.Close()
		} else if tail, err = s.followStore(r.Context(), sel); err != nil {
			writeError(w, followErrorCode(err), err)
			return
		}
	}
	// The answer is the stored bytes: decoding each event (NeedEvent)
	// cost the 100,000-event listing most of its time.
	sel.NeedRaw = true
	rd, err := s.openReader(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	// A follower's snapshot is the last limit events (like tail -n), then
	// live ones.
	hits, err := readEvents(rd, sel, sortBy, limit, follow)
	setDamage(w, rd)
	rd.Close()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
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
		addResults(r, 1)
		return err
	}
	// Events a follower may see twice (in the snapshot and live) are the
	// newest ones; remember their keys. On ClickHouse, any of them: the
	// tail starts FollowMargin before the snapshot by insert time, which
	// says nothing of the received time.
	seen := map[local.Key]bool{}
	for _, h := range hits {
		if err := write(h.cluster, h.received, h.raw); err != nil {
			return
		}
		if follow && (tail != nil || h.received >= now.Add(-time.Minute).UnixMicro()) {
			seen[local.KeyOf(h.cluster, h.raw)] = true
		}
	}
	if !follow {
		return
	}
	if tail != nil {
		s.pollStore(w, r, tail, seen, write)
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
		case <-s.stopping:
			w.Write([]byte(`{"error":"the server is shutting down; the stream ends here"}` + "\n"))
			if flusher != nil {
				flusher.Flush()
			}
			return
		case group, ok := <-sub.C:
			if !ok {
				// An error line is never wrapped in the envelope: clients
				// read it as the stream's last word.
				if sub.Lagged() {
					w.Write([]byte(`{"error":"this follower fell behind and was dropped; reconnect"}` + "\n"))
				} else {
					w.Write([]byte(`{"error":"the server is shutting down; the stream ends here"}` + "\n"))
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

// StatsAnswer is the body of GET /api/v1/stats, and what `stats -o json`
// prints for the same question.
type StatsAnswer struct {
	Total int64 `json:"total"`
	// TotalBytes is the selected events' stored size, with bytes=1.
	TotalBytes int64 `json:"totalBytes,omitempty"`
	// TotalGroups counts the groups before top kept the largest.
	TotalGroups int          `json:"totalGroups"`
	Groups      []StatsGroup `json:"groups"`
}

// StatsGroup is one group of a StatsAnswer.
type StatsGroup struct {
	Key   map[string]string `json:"key,omitempty"`
	Time  string            `json:"time,omitempty"`
	Count int64             `json:"count"`
	Bytes int64             `json:"bytes,omitempty"`
}

// NewStatsAnswer builds the answer for groups (the largest top, with no
// interval; 0 keeps all) of a stats question asked with o; totalGroups
// counts the groups before top.
func NewStatsAnswer(groups []local.Group, total local.Totals, totalGroups int, o local.StatsOptions, top int) StatsAnswer {
	ans := StatsAnswer{Total: total.Count, TotalBytes: total.Bytes, TotalGroups: totalGroups, Groups: []StatsGroup{}}
	for i, g := range groups {
		if top > 0 && o.Interval == 0 && i >= top {
			break
		}
		sg := StatsGroup{Count: g.Count, Bytes: g.Bytes}
		if len(o.By) > 0 {
			sg.Key = map[string]string{}
			for j, c := range o.By {
				sg.Key[c.String()] = g.Key[j]
			}
		}
		if o.Interval > 0 {
			sg.Time = time.UnixMicro(g.Bucket).UTC().Format(time.RFC3339Nano)
		}
		ans.Groups = append(ans.Groups, sg)
	}
	return ans
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	sel, err := parseSelection(r, now)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := scopeOf(r).restrict(&sel, now); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	q := r.URL.Query()
	var o local.StatsOptions
	if by := q.Get("by"); by != "" {
		for _, name := range strings.Split(by, ",") {
			c, ok := local.ColumnByName(strings.TrimSpace(name))
			if !ok {
				writeError(w, http.StatusBadRequest, fmt.Errorf("by: %q is not a field stats can group by", name))
				return
			}
			o.By = append(o.By, c)
		}
	}
	var interval time.Duration
	if v := q.Get("interval"); v != "" {
		if interval, err = timespec.ParseDuration(v); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("interval %q: %w", v, err))
			return
		}
		if err := local.CheckInterval(interval); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("interval %q: %w", v, err))
			return
		}
	}
	o.Interval = interval.Microseconds()
	top := 0
	if v := q.Get("top"); v != "" {
		if top, err = strconv.Atoi(v); err != nil || top < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("top %q: want a number, 0 for all", v))
			return
		}
	}
	if v := q.Get("bytes"); v != "" {
		if o.Bytes, err = strconv.ParseBool(v); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("bytes %q: want 1 or 0", v))
			return
		}
	}
	switch v := q.Get("sort"); v {
	case "", "count":
	case "bytes":
		o.Bytes, o.ByBytes = true, true
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("sort %q: want count or bytes", v))
		return
	}
	rd, err := s.openReader(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	defer rd.Close()
	groups, total, err := rd.StatsOf(sel, o)
	setDamage(w, rd)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	addResults(r, total.Count)
	ans := NewStatsAnswer(groups, total, len(groups), o, top)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(&ans)
}

type investigationInfo struct {
	Name       string   `json:"name"`
	Parameters []string `json:"parameters"`
}

func (s *Server) investigations(w http.ResponseWriter, r *http.Request) {
	var ans struct {
		Investigations []investigationInfo `json:"investigations"`
	}
	for _, n := range investigate.Names {
		ans.Investigations = append(ans.Investigations, investigationInfo{Name: n, Parameters: append(investigate.Params(n), "table")})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(&ans)
}

func (s *Server) runInvestigation(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if investigate.Params(name) == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("no investigation %q; there are %s", name, strings.Join(investigate.Names, ", ")))
		return
	}
	p := r.URL.Query()
	tw := investigate.NoTable
	switch v := p.Get("table"); v {
	case "", "0", "false":
	case "1", "true", "narrow":
		tw = investigate.NarrowTable
	case "wide":
		tw = investigate.WideTable
	default:
		writeError(w, http.StatusBadRequest, &investigate.ParamError{Param: "table", Err: fmt.Errorf("%q: want 1 (the table) or wide (the wide table)", v)})
		return
	}
	p.Del("table")
	rd, err := s.openReader(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	defer rd.Close()
	rep, err := investigate.RunRestricted(r.Context(), rd, name, p, time.Now(), scopeOf(r).expr())
	setDamage(w, rd)
	if err != nil {
		code := http.StatusInternalServerError
		if _, ok := investigate.IsParamError(err); ok {
			code = http.StatusBadRequest
		}
		writeError(w, code, err)
		return
	}
	ans, err := investigate.NewAnswer(name, rep, tw)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	addResults(r, int64(len(rep.Records())))
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // records go out byte for byte as -o json prints them
	enc.Encode(ans)
}

// DamageHeader names each piece of damaged data an answer leaves out, one
// header value each, "PATH: reason" query-escaped; a client must not
// present such an answer as whole (the CLI exits 3).
const DamageHeader = "Kubetrail-Damage"

func setDamage(w http.ResponseWriter, rd reader) {
	for _, d := range rd.Damaged() {
		w.Header().Add(DamageHeader, url.QueryEscape(d.String()))
	}
}
