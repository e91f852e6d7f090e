// Command duckbench is the DuckDB side of kubetrail's benchmark suite. It
// loads a JSON-lines audit log into a DuckDB database file the way a
// data-minded analyst would (DuckDB's own JSON reader, one table, the
// columns investigations filter on plus the raw line), and runs SQL
// questions against that file, reporting the median time of several runs
// and the rows answered so that bench/run can check them against kubetrail,
// jq and gojq before it reports any time.
//
// It lives in its own module so that kubetrail never depends on DuckDB (68
// MB of cgo); bench/run builds it with CGO_ENABLED=1.
//
//	duckbench load --db audit.duckdb --log audit.log
//	duckbench query --db audit.duckdb --runs 5 < queries.json
package main

import (
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/duckdb/duckdb-go/v2"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: duckbench load|query|version [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = load(os.Args[2:])
	case "query":
		err = query(os.Args[2:])
	case "version":
		err = version()
	default:
		err = fmt.Errorf("unknown command %q: want load, query or version", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "duckbench:", err)
		os.Exit(1)
	}
}

// eventShape is the part of an audit.k8s.io/v1 Event that from_json turns
// into typed values; the names are the JSON keys. Everything else stays in
// the raw column.
const eventShape = `{
  "auditID": "VARCHAR",
  "stage": "VARCHAR",
  "level": "VARCHAR",
  "verb": "VARCHAR",
  "requestURI": "VARCHAR",
  "user": {"username": "VARCHAR", "groups": ["VARCHAR"]},
  "impersonatedUser": {"username": "VARCHAR"},
  "sourceIPs": ["VARCHAR"],
  "userAgent": "VARCHAR",
  "objectRef": {"resource": "VARCHAR", "subresource": "VARCHAR", "namespace": "VARCHAR", "name": "VARCHAR", "apiGroup": "VARCHAR"},
  "responseStatus": {"code": "INTEGER"},
  "requestReceivedTimestamp": "TIMESTAMP",
  "stageTimestamp": "TIMESTAMP",
  "annotations": "MAP(VARCHAR, VARCHAR)"
}`

// schema is the events table. Columns are flat, named after the JSON
// field (user.username is username, objectRef.namespace is namespace). raw
// is each line byte for byte, compressed with zstd: without that DuckDB
// stores ~1 KiB JSON strings with dictionary+FSST at about half their size
// (or not at all compressed in the default v0.10 storage format).
const schema = `CREATE TABLE events (
  auditID                  VARCHAR,
  stage                    VARCHAR,
  level                    VARCHAR,
  verb                     VARCHAR,
  requestURI               VARCHAR,
  username                 VARCHAR,
  groups                   VARCHAR[],
  impersonatedUser         VARCHAR,
  sourceIPs                VARCHAR[],
  userAgent                VARCHAR,
  resource                 VARCHAR,
  subresource              VARCHAR,
  namespace                VARCHAR,
  name                     VARCHAR,
  apiGroup                 VARCHAR,
  code                     INTEGER,
  requestReceivedTimestamp TIMESTAMP,
  stageTimestamp           TIMESTAMP,
  annotations              MAP(VARCHAR, VARCHAR),
  raw                      JSON USING COMPRESSION zstd
)`

// loadSQL fills the table in one statement: read_json_objects hands over
// each line's text unchanged, from_json parses it once into the typed
// columns. Rows keep file order.
const loadSQL = `INSERT INTO events
SELECT
  e.auditID, e.stage, e.level, e.verb, e.requestURI,
  e."user".username, e."user".groups, e.impersonatedUser.username,
  e.sourceIPs, e.userAgent,
  e.objectRef.resource, e.objectRef.subresource, e.objectRef.namespace, e.objectRef.name, e.objectRef.apiGroup,
  e.responseStatus.code, e.requestReceivedTimestamp, e.stageTimestamp, e.annotations,
  raw
FROM (
  SELECT json AS raw, from_json(json, '%s') AS e
  FROM read_json_objects('%s', format = 'newline_delimited')
)`

// load creates --db from scratch, fills it from --log, checkpoints and
// closes it, and prints {"rows","bytes","seconds"} as JSON.
func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	dbPath := fs.String("db", "audit.duckdb", "database file to create (replaced if it exists)")
	logPath := fs.String("log", "", "audit log (JSON lines) to load")
	fs.Parse(args)
	if *logPath == "" {
		return errors.New("load: --log is required")
	}
	if strings.Contains(*logPath, "'") {
		return fmt.Errorf("load: --log %q: quotes are not supported", *logPath)
	}
	for _, p := range []string{*dbPath, *dbPath + ".wal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	t0 := time.Now()
	// The newest storage format: the one whose string compression (zstd,
	// DICT_FSST) a new database should use.
	db, err := sql.Open("duckdb", *dbPath+"?storage_compatibility_version=latest")
	if err != nil {
		return fmt.Errorf("open %s: %w", *dbPath, err)
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return fmt.Errorf("create table: %w", err)
	}
	if _, err := db.Exec(fmt.Sprintf(loadSQL, strings.Join(strings.Fields(eventShape), " "), *logPath)); err != nil {
		db.Close()
		return fmt.Errorf("load %s: %w", *logPath, err)
	}
	var rows int64
	if err := db.QueryRow("SELECT count(*) FROM events").Scan(&rows); err != nil {
		db.Close()
		return err
	}
	if _, err := db.Exec("CHECKPOINT"); err != nil {
		db.Close()
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := db.Close(); err != nil {
		return err
	}
	secs := time.Since(t0).Seconds()
	var size int64
	for _, p := range []string{*dbPath, *dbPath + ".wal"} {
		if st, err := os.Stat(p); err == nil {
			size += st.Size()
		}
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"rows": rows, "bytes": size, "seconds": secs})
}

// request is one SQL statement to time; queries.json is a list of them.
type request struct {
	Name string `json:"name"`
	SQL  string `json:"sql"`
	// Runs is how many times to run it (at least 1); the median is reported.
	Runs int `json:"runs"`
}

type result struct {
	Name     string     `json:"name"`
	MedianMS float64    `json:"median_ms"`
	RunsMS   []float64  `json:"runs_ms"`
	Rows     [][]string `json:"rows"`
	Columns  []string   `json:"columns"`
}

// query opens --db read-only once, runs each request of the JSON list on
// stdin Runs times in that one session, and prints the medians and the
// rows (every run must return the same rows). open_ms is the time to open
// the file and answer a first trivial query.
func query(args []string) error {
	fs := flag.NewFlagSet("query", flag.ExitOnError)
	dbPath := fs.String("db", "audit.duckdb", "database file written by load")
	fs.Parse(args)
	var reqs []request
	if err := json.NewDecoder(os.Stdin).Decode(&reqs); err != nil {
		return fmt.Errorf("read queries from stdin: %w", err)
	}
	t0 := time.Now()
	db, err := sql.Open("duckdb", *dbPath+"?access_mode=READ_ONLY")
	if err != nil {
		return fmt.Errorf("open %s: %w", *dbPath, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var one int
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("open %s: %w", *dbPath, err)
	}
	openMS := ms(time.Since(t0))
	var out []result
	for _, q := range reqs {
		r := result{Name: q.Name}
		for i := 0; i < max(1, q.Runs); i++ {
			t := time.Now()
			cols, rows, err := all(db, q.SQL)
			d := time.Since(t)
			if err != nil {
				return fmt.Errorf("%s: %w\n%s", q.Name, err, q.SQL)
			}
			if i > 0 && !slices.EqualFunc(rows, r.Rows, slices.Equal) {
				return fmt.Errorf("%s: run %d answered differently from run 1", q.Name, i+1)
			}
			r.Columns, r.Rows = cols, rows
			r.RunsMS = append(r.RunsMS, ms(d))
		}
		s := slices.Clone(r.RunsMS)
		slices.Sort(s)
		r.MedianMS = s[len(s)/2]
		out = append(out, r)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"open_ms": openMS, "results": out})
}

// all runs one query and returns every row, each value formatted as text
// (timestamps as the API server writes them: RFC 3339, 6 digits, Z).
func all(db *sql.DB, q string) ([]string, [][]string, error) {
	rows, err := db.Query(q)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	var out [][]string
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = text(v)
		}
		out = append(out, row)
	}
	return cols, out, rows.Err()
}

func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.UTC().Format("2006-01-02T15:04:05.000000Z")
	case *big.Int:
		return v.String()
	case duckdb.Map:
		parts := make([]string, 0, len(v))
		for k, e := range v {
			parts = append(parts, text(k)+"="+text(e))
		}
		slices.Sort(parts)
		return strings.Join(parts, ",")
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = text(e)
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// version prints the DuckDB library version.
func version() error {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	var v string
	if err := db.QueryRow("SELECT version()").Scan(&v); err != nil {
		return err
	}
	fmt.Println("DuckDB", v)
	return nil
}
