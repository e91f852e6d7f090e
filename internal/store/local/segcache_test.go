package local

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// TestSegCacheSharesUntilReplaced checks what the readers of a serving DB
// rely on: an unchanged segment is opened once and shared; a file replaced
// under the same name is opened anew, never answered from the old one; a
// dropped segment stays readable for the readers holding it, and its file
// is closed when the last of them closes it. (Mutations tried: reusing an
// entry whatever its file identity fails "replaced"; dropLocked closing
// the file while readers hold it fails "still readable".)
func TestSegCacheSharesUntilReplaced(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeTestSegment(t, dir, 300)
	c := newSegCache()
	a, err := c.open(vfs.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.open(vfs.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("two opens of an unchanged segment did not share it")
	}
	other, _ := writeTestSegment(t, t.TempDir(), 500)
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	n, err := c.open(vfs.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	if n == a || n.meta.Count != 500 {
		t.Fatalf("replaced segment: got the cached one (%d events), want the new file's 500", n.meta.Count)
	}
	magic := make([]byte, len(segMagic))
	if err := a.readAt(magic, 0); err != nil {
		t.Fatalf("the replaced segment is not still readable by its readers: %v", err)
	}
	a.close()
	if err := b.readAt(magic, 0); err != nil {
		t.Fatalf("the replaced segment is not still readable by its last reader: %v", err)
	}
	b.close()
	if err := b.readAt(magic, 0); err == nil {
		t.Fatal("the replaced segment's file is still open after its last reader closed it")
	}
	// A listing without the path drops it; its reader still reads.
	c.keep(nil)
	if len(c.segs) != 0 {
		t.Fatalf("keep(nil) left %d segments cached", len(c.segs))
	}
	if err := n.readAt(magic, 0); err != nil {
		t.Fatalf("a dropped segment is not readable by its reader: %v", err)
	}
	n.close()
	if err := n.readAt(magic, 0); err == nil {
		t.Fatal("a dropped segment's file is still open after its reader closed it")
	}
}

// TestWarmReadersAnswerAsCold asks the same questions of a DB's readers
// (sharing segments and decoded chunks, the second round answered from
// them) and of a reader of the folder that shares nothing: the counts
// must agree. (Mutation tried: the decoded-chunk key without its offset,
// one chunk of a column given for another, fails here.)
func TestWarmReadersAnswerAsCold(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{NoSync: true, WALSegmentBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for b := 0; b < 20; b++ {
		batch := &pipeline.Batch{Cluster: "default", Received: time.Now()}
		for i := 0; i < 1000; i++ {
			batch.Records = append(batch.Records, benchEvent(rng, b*1000+i))
		}
		if _, err := db.Append(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(dir, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := len(mustList(t, dir)); n < 3 {
		t.Fatalf("%d segments, want several", n)
	}
	// Namespaces and users far apart sit in different postings chunks.
	questions := []string{"user=admin", "resource=secrets", "ns=production", "name=important verb=delete", "code>=400", "ip=192.168.1.100", "subresource=exec",
		"verb=get ns=tenant-007", "ns=tenant-000", "ns=tenant-066", "ns=tenant-133", "ns=tenant-199", "user=system:node:node-03", "user=system:serviceaccount:ns-19:sa-2",
		"ip=192.168.1.100 verb=get", "user=system:serviceaccount:ns-19:sa-2 verb=get", "user=system:serviceaccount:ns-3:sa-0 ns=production"}
	for round := range 2 {
		for _, q := range questions {
			f, err := query.Compile(q)
			if err != nil {
				t.Fatal(err)
			}
			count := func(r *Reader, err error) int64 {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				n, err := r.CountMatching(Selection{Filter: f})
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			warm, cold := count(db.OpenReader()), count(OpenReader(dir))
			if warm != cold {
				t.Errorf("round %d, %s: a DB's reader counts %d, a reader of the folder %d", round, q, warm, cold)
			}
		}
	}
	if db.segs.left.Load() == decodedBudget {
		t.Error("the DB's readers kept no decoded chunk")
	}
}

// TestStatsTotalIsTheCount checks the short cut StatsOf takes for a plain
// count: its total and its one group are what selecting the events
// counts, and no group when nothing matches. (Mutation tried: the short
// cut adding n-1 fails here.)
func TestStatsTotalIsTheCount(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{NoSync: true, WALSegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	batch := &pipeline.Batch{Cluster: "default", Received: time.Now()}
	for i := 0; i < 6000; i++ {
		batch.Records = append(batch.Records, benchEvent(rng, i))
	}
	if _, err := db.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"", "user=admin", "resource=secrets ns=production", "code>=400", "user=nobody", "verb=get or ip=192.168.1.100", "name~\"^app-1\""} {
		var sel Selection
		if q != "" {
			f, err := query.Compile(q)
			if err != nil {
				t.Fatal(err)
			}
			sel.Filter = f
		}
		r, err := db.OpenReader()
		if err != nil {
			t.Fatal(err)
		}
		var want int64
		if err := r.Select(sel, func(*Hit) error { want++; return nil }); err != nil {
			t.Fatal(err)
		}
		groups, tot, err := r.StatsOf(sel, StatsOptions{})
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		wantGroups := 1
		if want == 0 {
			wantGroups = 0
		}
		if tot.Count != want || len(groups) != wantGroups || (want > 0 && groups[0].Count != want) {
			t.Errorf("%q: total %d in %d groups (%v), selecting counts %d", q, tot.Count, len(groups), groups, want)
		}
	}
}

// TestWarmRarePostingsAreKeptPerColumn asks, twice, questions whose terms
// are rare values of two ids columns (user and verb), which candidates
// intersect through the rare values' postings that a DB's readers share
// (decodedChunks.rares): a DB's reader must count what a reader of the
// folder counts. (Mutation tried: rares kept in one slot whatever the
// column fails here, giving the user's postings for the verb.)
func TestWarmRarePostingsAreKeptPerColumn(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	b := &pipeline.Batch{Cluster: "default", Received: time.Now()}
	for i := 0; i < 2000; i++ {
		user, verb := fmt.Sprintf("user-%d", i%10), []string{"get", "list", "watch"}[i%3]
		if i%97 == 0 {
			user = "rare-user"
		}
		if i%89 == 0 || i == 97*5 {
			verb = "deletecollection"
		}
		b.Records = append(b.Records, rareRecord(t, i, user, verb))
	}
	if _, err := db.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(dir, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for round := range 2 {
		for _, q := range []string{"verb=deletecollection user=rare-user", "user=rare-user verb=deletecollection", "user=rare-user verb=get", "verb=deletecollection user=user-3"} {
			f, err := query.Compile(q)
			if err != nil {
				t.Fatal(err)
			}
			count := func(r *Reader, err error) int64 {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				n, err := r.CountMatching(Selection{Filter: f})
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			if warm, cold := count(db.OpenReader()), count(OpenReader(dir)); warm != cold || cold == 0 {
				t.Errorf("round %d, %s: a DB's reader counts %d, a reader of the folder %d", round, q, warm, cold)
			}
		}
	}
}

// rareRecord is event(i) with the user and verb given.
func rareRecord(t *testing.T, i int, user, verb string) audit.Record {
	ts := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	raw := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-%d","stage":"ResponseComplete","requestURI":"/api","verb":%q,"user":{"username":%q},"requestReceivedTimestamp":"%s","stageTimestamp":"%s"}`,
		i, verb, user, ts.Format(audit.MicroTimeLayout), ts.Format(audit.MicroTimeLayout))
	var rec audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeBody("t", []byte(raw), func(r audit.Record) { rec = r }, func(p audit.Problem) { t.Fatal(p.String()) })
	return rec
}
