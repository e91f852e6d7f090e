package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// SchemaVersion is the version of the tables Setup creates. Open refuses a
// database whose tables another version made.
const SchemaVersion = 1

// column is one column of the events table, in the order RowBinary rows
// are written (see encodeRow; the arrival stamp, seq, ord and ver, goes
// first in an insert: insertColumns).
type column struct{ name, typ, doc string }

// columns are the events table's columns. Plain types only: 18.16 has no
// CODEC, no LowCardinality without a per-query setting, no data-skipping
// INDEX and no TTL (docs/adr/0012 says what current releases would add).
var columns = []column{
	{"day", "Date", "UTC day of time_us, the partition; days before 1970 count as 1970-01-01"},
	{"cluster", "String", "the cluster the event came from"},
	{"key", "FixedString(16)", "de-duplication key: local.KeyOf(cluster, raw)"},
	{"seq", "UInt64", "arrival order across batches: the appending process's clock in ns, strictly increasing per process"},
	{"ord", "UInt32", "the event's index in its batch"},
	{"ver", "UInt64", "2^64-1-seq: ReplacingMergeTree keeps the row with the largest, the first arrival"},
	{"received_us", "Int64", "when kubetrail received the batch"},
	{"time_us", "Int64", "the event's time (stageTimestamp, else requestReceivedTimestamp), unix µs"},
	{"has_time", "UInt8", "1 when the event has a time"},
	{"req_us", "Int64", "requestReceivedTimestamp, unix µs"},
	{"has_req", "UInt8", "1 when the event has a requestReceivedTimestamp"},
	{"size", "UInt32", "length of raw"},
	{"user", "String", ""},
	{"user_uid", "String", ""},
	{"groups", "Array(String)", ""},
	{"extra_keys", "Array(String)", "user.extra: one element per value, the key repeated"},
	{"extra_vals", "Array(String)", ""},
	{"as_user", "String", "impersonatedUser.username"},
	{"as_uid", "String", ""},
	{"as_groups", "Array(String)", ""},
	{"as_extra_keys", "Array(String)", ""},
	{"as_extra_vals", "Array(String)", ""},
	{"verb", "String", ""},
	{"resource", "String", ""},
	{"subresource", "String", ""},
	{"namespace", "String", ""},
	{"name", "String", ""},
	{"api_group", "String", ""},
	{"api_version", "String", ""},
	{"object_uid", "String", ""},
	{"object_rv", "String", ""},
	{"code", "Int32", "responseStatus.code; 0 when absent"},
	{"status", "String", ""},
	{"reason", "String", ""},
	{"message", "String", ""},
	{"source_ips", "Array(String)", "sourceIPs as written"},
	{"source_ip_keys", "Array(String)", "each source IP as ipKey (family and hex address) for CIDR ranges; empty when not an address"},
	{"ua", "String", ""},
	{"level", "String", ""},
	{"stage", "String", ""},
	{"uri", "String", ""},
	{"audit_id", "String", ""},
	{"ann_keys", "Array(String)", "annotations' keys"},
	{"ann_vals", "Array(String)", "annotations' values, in ann_keys' order"},
	{"imp_constraint", "String", "authenticationMetadata.impersonationConstraint"},
	{"raw", "String", "the stored line, byte for byte what export gives back"},
}

// orderBy is the table's sorting key, chosen for the seed questions (who
// did what to which object: resource, namespace, name) and ending with the
// key, so that two copies of one event are neighbours for
// ReplacingMergeTree. Every column in it is a function of cluster and raw,
// so copies always agree on it.
const orderBy = "cluster, resource, namespace, name, verb, time_us, key"

// ddl returns the statements that create the database and its tables.
func ddl(db string) []string {
	var cols strings.Builder
	for i, c := range columns {
		if i > 0 {
			cols.WriteString(",\n  ")
		}
		cols.WriteString(c.name + " " + c.typ)
	}
	return []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		"CREATE TABLE IF NOT EXISTS " + db + ".events (\n  " + cols.String() + "\n) ENGINE = ReplacingMergeTree(ver)\nPARTITION BY day\nORDER BY (" + orderBy + ")",
		"CREATE TABLE IF NOT EXISTS " + db + ".kubetrail_meta (name String, value String) ENGINE = TinyLog",
	}
}

// Setup creates the store's database and tables if they are missing and
// records the schema version. It is idempotent; a database whose tables
// another schema version made is refused, not changed.
//
// With cfg.Cluster it does so on every server of the cluster (cluster.go).
func Setup(ctx context.Context, cfg Config) error {
	if cfg.Cluster != "" {
		return setupCluster(ctx, cfg)
	}
	return setupServer(ctx, newClient(cfg), cfg.Database, ddl(cfg.Database))
}

// setupServer runs the statements that create a store on one server and
// records the schema version there.
func setupServer(ctx context.Context, c *client, db string, stmts []string) error {
	for _, s := range stmts {
		if err := c.exec(ctx, s); err != nil {
			return fmt.Errorf("create the ClickHouse schema in %s at %s: %w", db, c.cfg.Endpoint, err)
		}
	}
	v, err := schemaVersion(ctx, c, db)
	switch {
	case errors.Is(err, errNoSchema):
		return c.exec(ctx, fmt.Sprintf("INSERT INTO %s.kubetrail_meta VALUES ('schema_version', %s)", db, quote(fmt.Sprint(SchemaVersion))))
	case err != nil:
		return err
	case v != SchemaVersion:
		return fmt.Errorf("ClickHouse database %s at %s holds kubetrail schema version %d; this kubetrail uses version %d", db, c.cfg.Endpoint, v, SchemaVersion)
	}
	return nil
}

var errNoSchema = errors.New("no kubetrail schema")

// schemaVersion reads the version Setup recorded.
func schemaVersion(ctx context.Context, c *client, db string) (int, error) {
	var vals []string
	err := c.query(ctx, "SELECT value FROM "+db+".kubetrail_meta WHERE name = 'schema_version' FORMAT RowBinary", func(r0 io.Reader) error {
		r := newRowReader(r0)
		for r.more() {
			vals = append(vals, r.string())
		}
		return r.err
	})
	var se *ServerError
	if errors.As(err, &se) && (se.Code == codeUnknownTable || se.Code == codeUnknownDatabase) {
		return 0, errNoSchema
	}
	if err != nil {
		return 0, err
	}
	if len(vals) == 0 {
		return 0, errNoSchema
	}
	var v int
	if _, err := fmt.Sscan(vals[0], &v); err != nil || len(vals) > 1 {
		return 0, fmt.Errorf("ClickHouse database %s: %s.kubetrail_meta holds schema_version %q, want one number", db, db, strings.Join(vals, ", "))
	}
	return v, nil
}
