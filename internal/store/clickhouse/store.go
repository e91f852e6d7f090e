package clickhouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Store is kubetrail's store in a ClickHouse database. It is safe for
// concurrent use. An event stored twice (a retried batch, two collectors)
// counts once in every answer whether or not ClickHouse has merged the
// copies yet: answers count and keep one row per event key (dedupe.go).
type Store struct {
	c  *client
	db string
	// mu guards lastSeq, the last arrival stamp handed out.
	mu      sync.Mutex
	lastSeq uint64
	now     func() time.Time
}

func newClient(cfg Config) *client {
	return &client{cfg: cfg, insertTimeout: InsertTimeout, http: &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     cfg.TLS,
	}}}
}

// Open connects to a store that Setup created. It fails when the server
// cannot be reached, or the database has no kubetrail schema or another
// version of it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s := Dial(cfg)
	if err := s.checkSchema(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Dial returns a store without asking the server anything, for a
// collector that must start while ClickHouse is down; its collector
// checks the schema before its first insert.
func Dial(cfg Config) *Store {
	return &Store{c: newClient(cfg), db: cfg.Database, now: time.Now}
}

// checkSchema fails unless the database holds this kubetrail's schema.
func (s *Store) checkSchema(ctx context.Context) error {
	cfg := s.c.cfg
	v, err := schemaVersion(ctx, s.c, cfg.Database)
	if errors.Is(err, errNoSchema) {
		return fmt.Errorf("ClickHouse database %s at %s holds no kubetrail store: create it with kubetrail setup clickhouse --store clickhouse://HOST:PORT/%s", cfg.Database, cfg.Endpoint, cfg.Database)
	}
	if err != nil {
		return err
	}
	if v != SchemaVersion {
		return fmt.Errorf("ClickHouse database %s holds kubetrail schema version %d; this kubetrail reads version %d", cfg.Database, v, SchemaVersion)
	}
	return nil
}

// Close releases idle connections.
func (s *Store) Close() error {
	s.c.http.CloseIdleConnections()
	return nil
}

// nextSeq returns an arrival stamp for a batch: the clock in ns, moved on
// past the last one so that this process's batches keep their order.
func (s *Store) nextSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := uint64(s.now().UnixNano())
	if seq <= s.lastSeq {
		seq = s.lastSeq + 1
	}
	s.lastSeq = seq
	return seq
}

// Append inserts a batch and returns once ClickHouse has written it to a
// part (docs/adr/0013 says what that guarantees; a Collector adds a WAL in
// front). Copies of an event within the batch are dropped and counted as
// duplicates; copies of events stored by earlier batches are inserted,
// left out of every answer (dedupe.go) and in time removed by the engine
// (ReplacingMergeTree), and are not counted here.
func (s *Store) Append(ctx context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	rows, res := appendRows(make([]byte, 0, 64<<10), b)
	if res.Stored == 0 {
		return res, nil
	}
	st := stamper{seq: s.nextSeq()}
	body, err := st.add(make([]byte, 0, len(rows)+len(rows)/8), rows)
	if err != nil {
		return pipeline.Result{}, err
	}
	if err := s.insertRows(ctx, body); err != nil {
		return pipeline.Result{}, err
	}
	return res, nil
}

// insertStream sends an insert's body (rows stamped by a stamper) as it
// is read from r. An unreachable server is pipeline.ErrUnavailable.
func (s *Store) insertStream(ctx context.Context, r io.Reader) error {
	err := s.c.do(ctx, "INSERT INTO "+s.db+".events ("+insertColumns()+") FORMAT RowBinary", r, func(io.Reader) error { return nil })
	if errors.Is(err, ErrUnreachable) {
		return fmt.Errorf("%w: %w", pipeline.ErrUnavailable, err)
	}
	if err != nil {
		return fmt.Errorf("insert into %s.events: %w", s.db, err)
	}
	return nil
}

// insertRows sends an insert's body (rows stamped by a stamper). An
// unreachable server is pipeline.ErrUnavailable.
func (s *Store) insertRows(ctx context.Context, body []byte) error {
	err := s.c.insert(ctx, "INSERT INTO "+s.db+".events ("+insertColumns()+") FORMAT RowBinary", body)
	if errors.Is(err, ErrUnreachable) {
		return fmt.Errorf("%w: %v", pipeline.ErrUnavailable, err)
	}
	if err != nil {
		return fmt.Errorf("insert into %s.events: %w", s.db, err)
	}
	return nil
}

// dayOf is the partition of an event time: its UTC day, days before 1970
// as 1970-01-01 and after 2149-06-06 as that day (Date's range).
func dayOf(us int64) uint16 {
	d := us / (86400 * 1e6)
	if us < 0 {
		return 0
	}
	return uint16(min(d, math.MaxUint16))
}

// encodeRow appends one event's row without its arrival stamp, in the
// order of insertColumns.
func encodeRow(b []byte, batch *pipeline.Batch, r *audit.Record, k local.Key) []byte {
	ev := &r.Event
	t, req := ev.Time(), ev.RequestReceivedTimestamp.Time
	tus := t.UnixMicro()
	b = putU16(b, dayOf(tus))
	b = putString(b, batch.Cluster)
	b = append(b, k[:]...)
	b = putI64(b, batch.Received.UnixMicro())
	b = putI64(b, tus)
	b = putU8(b, flag(!t.IsZero()))
	b = putI64(b, req.UnixMicro())
	b = putU8(b, flag(!req.IsZero()))
	b = putU32(b, uint32(len(r.Raw)))
	b = putString(b, ev.User.Username)
	b = putString(b, ev.User.UID)
	b = putStrings(b, ev.User.Groups)
	b = putExtra(b, ev.User.Extra)
	var as audit.UserInfo
	if ev.ImpersonatedUser != nil {
		as = *ev.ImpersonatedUser
	}
	b = putString(b, as.Username)
	b = putString(b, as.UID)
	b = putStrings(b, as.Groups)
	b = putExtra(b, as.Extra)
	b = putString(b, ev.Verb)
	var ref audit.ObjectReference
	if ev.ObjectRef != nil {
		ref = *ev.ObjectRef
	}
	for _, v := range []string{ref.Resource, ref.Subresource, ref.Namespace, ref.Name, ref.APIGroup, ref.APIVersion, ref.UID, ref.ResourceVersion} {
		b = putString(b, v)
	}
	var st audit.Status
	if ev.ResponseStatus != nil {
		st = *ev.ResponseStatus
	}
	b = putI32(b, st.Code)
	b = putString(b, st.Status)
	b = putString(b, st.Reason)
	b = putString(b, st.Message)
	b = putStrings(b, ev.SourceIPs)
	b = putStringsLen(b, len(ev.SourceIPs))
	for _, ip := range ev.SourceIPs {
		b = putIPKey(b, ip)
	}
	b = putString(b, ev.UserAgent)
	b = putString(b, string(ev.Level))
	b = putString(b, string(ev.Stage))
	b = putString(b, ev.RequestURI)
	b = putString(b, ev.AuditID)
	var keyArr [8]string
	keys := appendSortedKeys(keyArr[:0], ev.Annotations)
	b = putStrings(b, keys)
	b = putStringsLen(b, len(keys))
	for _, k := range keys {
		b = putString(b, ev.Annotations[k])
	}
	imp := ""
	if ev.AuthenticationMetadata != nil {
		imp = ev.AuthenticationMetadata.ImpersonationConstraint
	}
	b = putString(b, imp)
	return putBytes(b, r.Raw)
}

func flag(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

// putExtra writes a map of lists as two parallel arrays, one element per
// value, keys in sorted order.
func putExtra(b []byte, m map[string][]string) []byte {
	var keyArr [8]string
	keys := appendSortedKeys(keyArr[:0], m)
	n := 0
	for _, k := range keys {
		n += len(m[k])
	}
	b = putStringsLen(b, n)
	for _, k := range keys {
		for range m[k] {
			b = putString(b, k)
		}
	}
	b = putStringsLen(b, n)
	for _, k := range keys {
		for _, v := range m[k] {
			b = putString(b, v)
		}
	}
	return b
}

// bounds returns a selection's time bounds in µs, its filter's included,
// as the embedded store computes them: lo inclusive, hi exclusive, 0 open.
func bounds(sel local.Selection) (lo, hi int64) {
	lo, hi = sel.Since, sel.Until
	if sel.Filter != nil {
		from, to := sel.Filter.TimeRange()
		if !from.IsZero() && (lo == 0 || from.UnixMicro() > lo) {
			lo = from.UnixMicro()
		}
		if !to.IsZero() && (hi == 0 || to.UnixMicro()+1 < hi) {
			hi = to.UnixMicro() + 1
		}
	}
	return lo, hi
}

// timeWhere bounds time_us, and day so that ClickHouse reads only the
// partitions that can hold the answer.
func timeWhere(lo, hi int64) string {
	var parts []string
	if lo != 0 {
		parts = append(parts, "time_us >= "+strconv.FormatInt(lo, 10), "day >= toDate("+strconv.Itoa(int(dayOf(lo)))+")")
	}
	if hi != 0 {
		parts = append(parts, "time_us < "+strconv.FormatInt(hi, 10), "day <= toDate("+strconv.Itoa(int(dayOf(hi)))+")")
	}
	if len(parts) == 0 {
		return "1"
	}
	return strings.Join(parts, " AND ")
}

// selectionWhere compiles a selection into the events table's condition.
// Reads give it as PREWHERE: ClickHouse then reads the other columns (the
// raw line above all) only of the rows it selects. 18.16 moves a simple
// condition to PREWHERE by itself, but not every one: kubetrail denied's
// second statement (decision=forbid, not 401/403, one namespace) read
// every raw line, 1.0-1.4 s over 500k events, 0.03 s as PREWHERE.
func selectionWhere(sel local.Selection) (string, bool, error) {
	w, err := compileFilter(sel.Filter)
	if err != nil {
		return "", false, err
	}
	lo, hi := bounds(sel)
	return timeWhere(lo, hi) + " AND (" + w.sql + ")", w.exact, nil
}

// Select calls fn for every selected event in arrival order. Every hit
// carries its stored bytes and the decoded event, whether or not
// NeedEvent asked for them. Hit slices are valid only during the callback.
func (s *Store) Select(ctx context.Context, sel local.Selection, fn func(*local.Hit) error) error {
	return s.selectAfter(ctx, sel, 0, func(h *local.Hit, _ uint64) error { return fn(h) })
}

// selectAfter is Select over the events first stored with a seq above
// after, giving each hit's seq too.
func (s *Store) selectAfter(ctx context.Context, sel local.Selection, after uint64, fn func(*local.Hit, uint64) error) error {
	w, exact, err := selectionWhere(sel)
	if err != nil {
		return err
	}
	if after > 0 {
		w += " AND seq > " + strconv.FormatUint(after, 10)
	}
	// In arrival order an event's first row is its first arrival, the
	// row FINAL would keep; later rows of its key are copies (dedupe.go),
	// which ClickHouse leaves out (LIMIT 1 BY key), so that kubetrail
	// holds nothing per event. After a cursor, rows wait in chunks until
	// the store has said which of their keys it held at or before the
	// cursor.
	var pending []cursorRow
	var ev audit.Event
	emit := func(h *local.Hit, seq uint64) error {
		if err := audit.DecodeStored(h.Raw, &ev); err != nil {
			return fmt.Errorf("event stored in %s.events: %w", s.db, err)
		}
		if !exact && !sel.Filter.Match(&ev, h.Cluster) {
			return nil
		}
		h.Event = &ev
		return fn(h, seq)
	}
	flush := func() error {
		earlier, err := s.laterCopies(ctx, after, pending)
		if err != nil {
			return err
		}
		for i := range pending {
			if earlier[pending[i].k] {
				continue
			}
			if err := emit(&pending[i].h, pending[i].seq); err != nil {
				return err
			}
		}
		pending = pending[:0]
		return nil
	}
	sql := "SELECT cluster, time_us, received_us, key, raw, seq FROM " + s.db + ".events PREWHERE " + w + " ORDER BY seq, ord LIMIT 1 BY key FORMAT RowBinary"
	err = s.c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			h := local.Hit{Cluster: r.string(), Time: r.i64(), Received: r.i64()}
			k := r.key()
			h.Raw = r.bytes()
			seq := r.u64()
			if r.err != nil {
				break
			}
			if after == 0 {
				if err := emit(&h, seq); err != nil {
					return err
				}
				continue
			}
			h.Raw = bytes.Clone(h.Raw)
			pending = append(pending, cursorRow{h, k, seq})
			if len(pending) == keysPerStatement {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return r.err
	})
	if err != nil || len(pending) == 0 {
		return err
	}
	return flush()
}

// Count returns the number of selected events.
func (s *Store) Count(ctx context.Context, sel local.Selection) (int64, error) {
	w, exact, err := selectionWhere(sel)
	if err != nil {
		return 0, err
	}
	if !exact {
		var n int64
		err := s.Select(ctx, sel, func(*local.Hit) error { n++; return nil })
		return n, err
	}
	// The distinct keys of the matching rows, without FINAL: copies of
	// an event share its key and every column a filter names (all are
	// functions of cluster and raw), so this counts what FINAL would.
	// FINAL merges the sorting key's columns of every part on 18.16,
	// 5-60x slower for a count (measured on 200k events, docs/clickhouse.md).
	var n int64
	err = s.c.query(ctx, "SELECT toInt64(uniqExact(key)) FROM "+s.db+".events PREWHERE "+w+" FORMAT RowBinary", func(body io.Reader) error {
		r := newRowReader(body)
		n = r.i64()
		return r.err
	})
	return n, err
}

// groupCols are the SQL of the embedded store's columns, for statistics.
var groupCols = map[local.Column]string{
	local.ColCluster: "cluster", local.ColUser: "user", local.ColGroups: "arrayStringConcat(groups, " + quote(local.ListSep) + ")",
	local.ColAs: "as_user", local.ColVerb: "verb", local.ColResource: "resource", local.ColSubresource: "subresource",
	local.ColNamespace: "namespace", local.ColName: "name", local.ColAPIGroup: "api_group", local.ColAPIVersion: "api_version",
	local.ColCode: "if(code = 0, '', toString(code))", local.ColLevel: "level", local.ColStage: "stage",
	local.ColSourceIPs: "arrayStringConcat(source_ips, " + quote(local.ListSep) + ")", local.ColUserAgent: "ua",
	local.ColDecision: annotation("authorization.k8s.io/decision"), local.ColReason: "reason", local.ColStatus: "status",
}

// Stats answers as local.Reader.StatsOf does, with GROUP BY in SQL when
// the filter compiles exactly, and otherwise by reading the selected
// events.
func (s *Store) Stats(ctx context.Context, sel local.Selection, o local.StatsOptions) ([]local.Group, local.Totals, error) {
	if o.Interval != 0 {
		if err := local.CheckInterval(time.Duration(o.Interval) * time.Microsecond); err != nil {
			return nil, local.Totals{}, fmt.Errorf("stats interval %dus: %w", o.Interval, err)
		}
	}
	o.Bytes = o.Bytes || o.ByBytes
	w, exact, err := selectionWhere(sel)
	if err != nil {
		return nil, local.Totals{}, err
	}
	if !exact {
		return s.statsBySelect(ctx, sel, o)
	}
	var keys []string
	if o.Interval > 0 {
		// toInt64: a bare literal takes the smallest type that holds it,
		// and UInt32 arithmetic would wrap.
		iv := "toInt64(" + strconv.FormatInt(o.Interval, 10) + ")"
		keys = append(keys, "time_us - ((time_us % "+iv+") + "+iv+") % "+iv)
	}
	for _, c := range o.By {
		sql, ok := groupCols[c]
		if !ok {
			return nil, local.Totals{}, fmt.Errorf("stats by %s: no such column", c)
		}
		keys = append(keys, sql)
	}
	sql := statsSQL(s.db, w, keys, o.Bytes)
	var groups []local.Group
	var tot local.Totals
	err = s.c.query(ctx, sql+" FORMAT RowBinary", func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			var g local.Group
			if o.Interval > 0 {
				g.Bucket = r.i64()
			}
			if len(o.By) > 0 {
				g.Key = make([]string, len(o.By))
				for i := range g.Key {
					g.Key[i] = r.string()
				}
			}
			g.Count = r.i64()
			size := r.i64()
			if o.Bytes {
				g.Bytes = size
			}
			if r.err != nil {
				break
			}
			if g.Count == 0 {
				// count() without GROUP BY gives one row over nothing.
				continue
			}
			tot.Count += g.Count
			tot.Bytes += g.Bytes
			groups = append(groups, g)
		}
		return r.err
	})
	if err != nil {
		return nil, local.Totals{}, err
	}
	return local.SortGroups(groups, o.Interval, o.ByBytes), tot, nil
}

// statsSQL groups the rows of the events table that w selects by keys
// (SQL expressions), giving each group's events and, with bytes, their
// stored bytes. It counts keys, not rows: copies share the key and every
// column grouped by (dedupe.go). Without bytes, uniqExact(key) per group;
// with bytes, one row per key (LIMIT 1 BY key, key selected so that a
// Distributed table's initiator can apply it too) is grouped, so that each
// event's size is summed once. ClickHouse's CPU per statistic over 500k
// events (525k rows): FINAL 209-234 ms, uniqExact(key) 107-109 ms, LIMIT
// 1 BY key 138 ms, a GROUP BY (keys, key) subquery 333 ms,
// groupUniqArray((key, size)) about 2.5x uniqExact.
func statsSQL(db, w string, keys []string, bytes bool) string {
	if !bytes {
		sql := "SELECT " + strings.Join(append(keys, "toUInt64(uniqExact(key))", "toUInt64(0)"), ", ") + " FROM " + db + ".events PREWHERE " + w
		if len(keys) > 0 {
			sql += " GROUP BY " + strings.Join(keys, ", ")
		}
		return sql
	}
	inner, outer := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		outer[i] = "g" + strconv.Itoa(i) + "_"
		inner[i] = k + " AS " + outer[i]
	}
	sql := "SELECT " + strings.Join(append(outer, "count()", "sum(size)"), ", ") +
		" FROM (SELECT " + strings.Join(append(inner, "key", "size"), ", ") + " FROM " + db + ".events PREWHERE " + w + " LIMIT 1 BY key)"
	if len(keys) > 0 {
		sql += " GROUP BY " + strings.Join(outer, ", ")
	}
	return sql
}

// statsBySelect counts the events Select returns, for filters SQL cannot
// decide alone (free text, bodies).
func (s *Store) statsBySelect(ctx context.Context, sel local.Selection, o local.StatsOptions) ([]local.Group, local.Totals, error) {
	acc := map[string]*local.Group{}
	var tot local.Totals
	err := s.Select(ctx, sel, func(h *local.Hit) error {
		var g local.Group
		if o.Interval > 0 {
			g.Bucket = h.Time - ((h.Time%o.Interval)+o.Interval)%o.Interval
		}
		var kb strings.Builder
		kb.WriteString(strconv.FormatInt(g.Bucket, 10))
		for _, c := range o.By {
			v, err := h.ColumnErr(c)
			if err != nil {
				return err
			}
			g.Key = append(g.Key, v)
			kb.WriteByte(0)
			kb.WriteString(v)
		}
		a := acc[kb.String()]
		if a == nil {
			a = &g
			acc[kb.String()] = a
		}
		a.Count++
		tot.Count++
		if o.Bytes {
			a.Bytes += int64(len(h.Raw))
			tot.Bytes += int64(len(h.Raw))
		}
		return nil
	})
	if err != nil {
		return nil, local.Totals{}, err
	}
	groups := make([]local.Group, 0, len(acc))
	for _, g := range acc {
		groups = append(groups, *g)
	}
	return local.SortGroups(groups, o.Interval, o.ByBytes), tot, nil
}

// Export calls fn for every stored event in arrival order, with its stored
// bytes exactly. From and FS of the options do not apply (they name places
// in an embedded store) and must be zero.
func (s *Store) Export(ctx context.Context, o local.ScanOptions, fn func(local.Stored) error) error {
	if o.From != (local.Pos{}) || o.FS != nil {
		return errors.New("BUG: ClickHouse export with an embedded store's position or file system")
	}
	w := timeWhere(o.Since, o.Until)
	if o.Cluster != "" {
		w += " AND cluster = " + quote(o.Cluster)
	}
	// The first row of each key in arrival order, as Select keeps it
	// (dedupe.go).
	sql := "SELECT cluster, received_us, time_us, key, raw FROM " + s.db + ".events PREWHERE " + w + " ORDER BY seq, ord LIMIT 1 BY key FORMAT RowBinary"
	return s.c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			st := local.Stored{Cluster: r.string(), Received: r.i64(), Time: r.i64()}
			r.key() // selected for LIMIT 1 BY key
			st.Raw = r.bytes()
			if r.err != nil {
				break
			}
			if err := fn(st); err != nil {
				return err
			}
		}
		return r.err
	})
}

// Span returns how many events the store holds and their time range.
func (s *Store) Span(ctx context.Context) (n int, minT, maxT int64, err error) {
	err = s.c.query(ctx, "SELECT toUInt64(uniqExact(key)), min(time_us), max(time_us) FROM "+s.db+".events FORMAT RowBinary", func(body io.Reader) error {
		r := newRowReader(body)
		n, minT, maxT = int(r.i64()), r.i64(), r.i64()
		return r.err
	})
	return n, minT, maxT, err
}

// A Bulk gathers the rows of many batches into one insert, for migrate
// (migrate.Buffered): ClickHouse spends several times the CPU per row on
// small inserts (ADR 0019), and a migration's batches end wherever the
// received time changes, every few hundred events for a store a webhook
// fed. Append encodes a batch's rows and returns; Flush stamps and sends
// them, and the rows are stored once it returns. The rows keep their
// order: one arrival stamp for the insert, ord counting its rows, taken
// at each attempt, so that a Flush retried after an outage is not
// stamped older than FollowMargin behind what followers already read.
// Not safe for concurrent use.
type Bulk struct {
	s    *Store
	rows []byte // unstamped, as appendRows writes them
	body []byte
	// keys are those of rows: a copy in a later batch of the same insert
	// counts as a duplicate, as one within a batch does. It holds one
	// insert's keys (32 MiB of rows for migrate), not the store's.
	keys map[local.Key]struct{}
}

// Bulk returns a Bulk inserting into s.
func (s *Store) Bulk() *Bulk { return &Bulk{s: s, keys: map[local.Key]struct{}{}} }

// Append adds b's rows to the next insert. Copies within the insert are
// dropped and counted as duplicates, as Store.Append counts those within
// its batch.
func (b *Bulk) Append(_ context.Context, batch *pipeline.Batch) (pipeline.Result, error) {
	rows, res := appendNewRows(b.rows, batch, b.keys)
	b.rows = rows
	return res, nil
}

// Pending is the size of the insert's rows so far.
func (b *Bulk) Pending() int { return len(b.rows) }

// Flush inserts the rows gathered. Failed, it keeps them for another try.
func (b *Bulk) Flush(ctx context.Context) error {
	if len(b.rows) == 0 {
		return nil
	}
	st := stamper{seq: b.s.nextSeq()}
	body, err := st.add(b.body[:0], b.rows)
	if err != nil {
		return err
	}
	b.body = body
	if err := b.s.insertRows(ctx, body); err != nil {
		return err
	}
	b.rows = b.rows[:0]
	clear(b.keys)
	return nil
}
