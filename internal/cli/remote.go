package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// remoteFlags point a reading command at a running kubetrail serve.
type remoteFlags struct {
	url, tokenFile, ca string
	// damage is what the server's answers said they left out
	// (server.DamageHeader).
	damage []local.Damage
}

// damaged returns err, or, when it is nil and the server's answers left
// damaged data out, a *local.DamageError saying what.
func (r *remoteFlags) damaged(err error) error {
	if err == nil && len(r.damage) > 0 {
		return &local.DamageError{List: r.damage}
	}
	return err
}

func (r *remoteFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&r.url, "server", "", "ask a running kubetrail serve at this URL instead of reading --data")
	f.StringVar(&r.tokenFile, "token-file", "", "with --server: file holding the bearer token")
	f.StringVar(&r.ca, "ca", "", "with --server: CA bundle (PEM) to verify the server")
}

func (r *remoteFlags) do(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	base, err := url.Parse(r.url)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("--server %q: want http(s)://HOST:PORT", r.url)
	}
	u := base.JoinPath(path)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if r.tokenFile != "" {
		toks, err := readTokens(r.tokenFile)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+toks[0])
	}
	tr, err := ingest.RemoteConfig{CA: r.ca}.Transport()
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("server: %s", e.Error)
		}
		return nil, fmt.Errorf("server answered %s", resp.Status)
	}
	for _, v := range resp.Header.Values(server.DamageHeader) {
		if s, err := url.QueryUnescape(v); err == nil {
			path, reason, _ := strings.Cut(s, ": ")
			r.damage = append(r.damage, local.Damage{Path: path, Reason: reason})
		}
	}
	return resp, nil
}

type remoteLine struct {
	Cluster  string          `json:"cluster"`
	Received time.Time       `json:"received"`
	Event    json.RawMessage `json:"event"`
	Error    string          `json:"error"`
}

// remoteQuery runs query against a server's /api/v1/events.
func remoteQuery(ctx context.Context, e *env, r *remoteFlags, src string, since, until int64, sortBy string, limit int, follow, count bool, out *printer) error {
	q := url.Values{"filter": {src}, "envelope": {"1"}, "sort": {sortBy}}
	setTimeParams(q, since, until)
	if limit > 0 && out.jq == nil { // --jq limits results, not events
		q.Set("limit", strconv.Itoa(limit))
	}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := r.do(ctx, "/api/v1/events", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), audit.DefaultMaxEventBytes+1<<20)
	n := 0
	var rows []row
	first := true
	for sc.Scan() {
		var l remoteLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("server sent a line that is not JSON: %v", err)
		}
		if l.Error != "" {
			return fmt.Errorf("server: %s", l.Error)
		}
		var ev audit.Event
		if err := audit.DecodeStored(l.Event, &ev); err != nil {
			return err
		}
		n++
		if count && out.jq == nil {
			continue
		}
		h := &local.Hit{Cluster: l.Cluster, Time: ev.Time().UnixMicro(), Received: l.Received.UnixMicro(), Raw: l.Event, Event: &ev}
		rw, err := out.row(h)
		if err != nil {
			return err
		}
		if follow {
			if err := out.printLive([]row{rw}, first); err != nil {
				return err
			}
			first = false
			continue
		}
		rows = append(rows, rw)
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	if err := stopped(ctx); err != nil && !follow {
		return err // cut short: not the whole answer
	}
	if follow && ctx.Err() == nil {
		// A follow stream ends when the user stops it; any other end
		// (the server went away without a word) must not look like one.
		return fmt.Errorf("the server ended the stream without saying why; the events after this point were not shown")
	}
	switch {
	case out.jq != nil && follow:
		return out.jqDone()
	case out.jq != nil:
		return out.printJQ(rows, limit, count)
	case count:
		fmt.Fprintln(e.stdout, n)
		return nil
	case follow:
		return nil
	}
	return out.print(rows)
}

// followLocal prints the matching events of a data folder, then new ones as
// a writer stores them, looking every half second.
func followLocal(ctx context.Context, dir string, sel local.Selection, out *printer) error {
	var last int64               // highest receive time printed
	seen := map[local.Key]bool{} // events printed with receive time == last
	first := true
	for {
		r, err := local.OpenReader(dir)
		if err != nil {
			return err
		}
		var rows []row
		newSeen := map[local.Key]bool{}
		newLast := last
		err = r.Select(local.Selection{Filter: sel.Filter, Since: sel.Since, Until: sel.Until, NeedEvent: true}, func(h *local.Hit) error {
			if h.Received < last {
				return nil
			}
			k := local.KeyOf(h.Cluster, h.Raw)
			if h.Received == last && seen[k] {
				return nil
			}
			if h.Received > newLast {
				newLast, newSeen = h.Received, map[local.Key]bool{}
			}
			if h.Received == newLast {
				newSeen[k] = true
			}
			rw, err := out.row(h)
			rows = append(rows, rw)
			return err
		})
		r.Close()
		if ctx.Err() != nil {
			return nil // --follow runs until stopped
		}
		if err != nil {
			return err
		}
		if newLast == last {
			for k := range newSeen {
				seen[k] = true
			}
		} else {
			last, seen = newLast, newSeen
		}
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].time < rows[j].time })
		if len(rows) > 0 || first {
			if err := out.printLive(rows, first); err != nil {
				return err
			}
			first = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}
