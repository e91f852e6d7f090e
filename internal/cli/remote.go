package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
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

// followLocal prints the matching events of a data folder (the answer
// query prints without --follow, sorted by event time), then, looking
// every half second, the matching events stored since, in the order they
// were stored.
func followLocal(ctx context.Context, dir string, sel local.Selection, out *printer) error {
	return localFollower{fs: vfs.OS, dir: dir, sel: sel, every: 500 * time.Millisecond}.run(ctx, out)
}

// localFollower follows a data folder by store position (local.Pos), as
// the detector does (docs/adr/0010): every event stored after the first
// answer is printed once, whatever its receive time. A cursor of receive
// time missed a batch stored after another but stamped earlier (two
// concurrent webhook batches, two sealers), and re-read the whole store
// at every look.
type localFollower struct {
	fs    vfs.FS
	dir   string
	sel   local.Selection
	every time.Duration
}

func (f localFollower) run(ctx context.Context, out *printer) error {
	var c followCursor
	var err error
	c.next, err = f.first(&c, out)
	if ctx.Err() != nil {
		return c.damaged() // --follow runs until stopped
	}
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return c.damaged()
		case <-time.After(f.every):
		}
		if err := f.poll(ctx, &c, out); ctx.Err() != nil {
			return c.damaged()
		} else if err != nil {
			return err
		}
	}
}

// followCursor is where a follow is: the position of the next event to
// read, and the folder's stamp (local.Stamp) when it was last read; and
// the damaged data its answers left out, said on stderr as met.
type followCursor struct {
	next   local.Pos
	stamp  string
	damage []local.Damage
	said   map[string]bool
}

// tell says on stderr, once each, what the answer leaves out: a follow
// runs for hours, so it is said when met, and the follow ends with exit
// status 3 (damaged), as a query without --follow does.
func (c *followCursor) tell(w io.Writer, list []local.Damage) {
	for _, d := range list {
		if k := d.String(); !c.said[k] {
			if c.said == nil {
				c.said = map[string]bool{}
			}
			c.said[k] = true
			c.damage = append(c.damage, d)
			if w != nil {
				fmt.Fprintf(w, "kubetrail: the followed answer leaves out damaged data: %s\n", escape.Line(k))
			}
		}
	}
}

// damaged returns a *local.DamageError listing what the follow left out,
// or nil.
func (c *followCursor) damaged() error {
	if len(c.damage) > 0 {
		return &local.DamageError{List: c.damage}
	}
	return nil
}

// first prints the selected events, sorted by event time, and returns the
// position after the newest event the answer was taken from.
func (f localFollower) first(c *followCursor, out *printer) (local.Pos, error) {
	r, err := local.OpenReaderFS(f.fs, f.dir)
	if err != nil {
		return local.Pos{}, err
	}
	defer r.Close()
	c.tell(out.errw, r.Damaged())
	var rows []row
	err = r.Select(local.Selection{Filter: f.sel.Filter, Since: f.sel.Since, Until: f.sel.Until, NeedEvent: true}, func(h *local.Hit) error {
		rw, err := out.row(h)
		rows = append(rows, rw)
		return err
	})
	if err != nil {
		return local.Pos{}, err
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].time < rows[j].time })
	return r.End(), out.printLive(rows, true)
}

// poll prints the selected events stored at c.next or after, in stored
// order, and moves c past the last event it read. It reads nothing when
// the folder's stamp is what it was before the last read (an idle store);
// otherwise Scan skips the segments and WAL segments before c.next unread,
// so a look reads the newest WAL segment and the segments' metadata, not
// the store. Time bounds are checked here rather than by Scan so that the
// cursor moves past the events outside them too.
func (f localFollower) poll(ctx context.Context, c *followCursor, out *printer) error {
	stamp, err := local.Stamp(f.fs, f.dir)
	if err != nil || stamp == c.stamp {
		return err
	}
	next := c.next
	var rows []row
	err = local.Scan(f.dir, local.ScanOptions{From: next, FS: f.fs}, func(s local.Stored) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		next = local.Pos{WAL: s.Pos.WAL, Ord: s.Pos.Ord + 1}
		if (f.sel.Since != 0 && s.Time < f.sel.Since) || (f.sel.Until != 0 && s.Time >= f.sel.Until) {
			return nil
		}
		var ev audit.Event
		if err := audit.DecodeStored(s.Raw, &ev); err != nil {
			return fmt.Errorf("stored event at %s: %w", s.Pos, err)
		}
		if f.sel.Filter != nil && !f.sel.Filter.Match(&ev, s.Cluster) {
			return nil
		}
		rw, err := out.row(&local.Hit{Cluster: s.Cluster, Time: s.Time, Received: s.Received, Raw: s.Raw, Event: &ev})
		rows = append(rows, rw)
		return err
	})
	// Damage the scan read past does not stop a follow, as it did not
	// when the follow read through a Reader; it is said.
	if err != nil && !local.IsDamage(err) {
		return err // c is unchanged: nothing of this look was printed
	}
	var de *local.DamageError
	if errors.As(err, &de) {
		c.tell(out.errw, de.List)
	}
	c.next, c.stamp = next, stamp
	if len(rows) == 0 {
		return nil
	}
	return out.printLive(rows, false)
}
