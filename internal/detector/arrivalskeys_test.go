package detector

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/cursorfile"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// TestArrivalsKeyLog: the cursor holds no keys; each poll appends its
// evaluated keys to the key log (24 bytes each), so a poll writes what
// it evaluated, not the whole margin. A restart reads them back (nothing
// in the margin evaluated again), a tail a crashed poll appended without
// saving the cursor is cut, a damaged log is refused, and once the log
// outgrows twice its live keys they are rewritten to a new generation and
// the old file removed. Planted: openKeyLog not filling the keys makes
// the restart evaluate the margin again (40 more); not cutting the tail
// makes the reopening after the next poll refuse the log as damaged;
// saved() not removing the old generation leaves two files.
func TestArrivalsKeyLog(t *testing.T) {
	s := chStore(t, "kt_detect_keylog")
	c := collector(t, s)
	dir := t.TempDir()
	ctx := context.Background()
	d, store := openArrivals(t, s, dir)
	send(t, c, 0, 30, kinds)
	if err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	size := func(name string) int64 {
		t.Helper()
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	log := keysFilePrefix + "1"
	if got := size(log); got != 30*keyRecordBytes {
		t.Errorf("key log after 30 events: %d bytes, want %d", got, 30*keyRecordBytes)
	}
	cur, err := os.ReadFile(filepath.Join(dir, ArrivalsCursorFile))
	if err != nil || strings.Contains(string(cur), `"keys"`) || len(cur) > 300 {
		t.Errorf("the cursor holds keys or grew (%d bytes, %v): %s", len(cur), err, cur)
	}
	send(t, c, 30, 40, kinds)
	if err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := size(log); got != 40*keyRecordBytes {
		t.Errorf("key log after 10 more: %d bytes, want %d (appended)", got, 40*keyRecordBytes)
	}
	// A poll that appended and crashed before saving the cursor.
	f, err := os.OpenFile(filepath.Join(dir, log), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 5*keyRecordBytes))
	f.Close()
	store.Close()

	d, store = openArrivals(t, s, dir)
	if got := size(log); got != 40*keyRecordBytes {
		t.Errorf("reopened: key log of %d bytes, want the cursor's %d", got, 40*keyRecordBytes)
	}
	send(t, c, 40, 50, kinds)
	if err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.Evaluated.Load(); n != 10 {
		t.Errorf("after the restart: %d events evaluated, want the 10 new (the 40 before are in the key log)", n)
	}
	store.Close()
	d, store = openArrivals(t, s, dir)
	store.Close()

	// Damage.
	b, err := os.ReadFile(filepath.Join(dir, log))
	if err != nil {
		t.Fatal(err)
	}
	good := append([]byte(nil), b...)
	b[3] ^= 1
	os.WriteFile(filepath.Join(dir, log), b, 0o600)
	st2, _, err := alert.OpenStore(dir, alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenArrivals(s, loadEngine(t), st2, dir, ArrivalsOptions{}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("a damaged key log: %v, want it refused as damaged", err)
	}
	st2.Close()
	os.WriteFile(filepath.Join(dir, log), good, 0o600)

	// A margin of 1 ms: the live keys are few, the log is rewritten.
	st3, _, err := alert.OpenStore(dir, alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st3.Close()
	d, err = OpenArrivals(s, loadEngine(t), st3, dir, ArrivalsOptions{Margin: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.keys.compactAt = 0
	send(t, c, 50, 55, kinds)
	if err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	ents, _ := filepath.Glob(filepath.Join(dir, keysFilePrefix+"*"))
	if len(ents) != 1 || filepath.Base(ents[0]) != keysFilePrefix+"2" || size(keysFilePrefix+"2") >= 50*keyRecordBytes {
		t.Errorf("after a rewrite: key logs %v, want only generation 2, smaller than the 50 keys of generation 1", ents)
	}
	if n := d.Evaluated.Load(); n != 5 {
		t.Errorf("with the rewrite: %d events evaluated, want 5", n)
	}
}

// TestArrivalsCursorVersion1: a cursor of version 1 (keys in its JSON) is
// read as it was, and its first save moves the keys to a key log.
func TestArrivalsCursorVersion1(t *testing.T) {
	s := chStore(t, "kt_detect_v1")
	c := collector(t, s)
	dir := t.TempDir()
	ctx := context.Background()
	send(t, c, 0, 30, kinds)
	seq, err := s.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]uint64{}
	for i := range 30 {
		k := local.KeyOf("default", ev(i, kinds(i), "u").Raw)
		keys[hex.EncodeToString(k[:])] = seq
	}
	v1 := struct {
		Version int               `json:"version"`
		Seq     uint64            `json:"seq"`
		Keys    map[string]uint64 `json:"keys"`
	}{1, seq, keys}
	if err := cursorfile.Save(vfs.OS, filepath.Join(dir, ArrivalsCursorFile), &v1); err != nil {
		t.Fatal(err)
	}
	d, store := openArrivals(t, s, dir)
	defer store.Close()
	send(t, c, 30, 35, kinds)
	if err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := d.Evaluated.Load(); n != 5 {
		t.Errorf("over a version 1 cursor: %d events evaluated, want the 5 it does not cover", n)
	}
	var cur arrivalsCursor
	if err := cursorfile.Load(vfs.OS, filepath.Join(dir, ArrivalsCursorFile), &cur); err != nil || cur.Version != 2 || len(cur.Keys) != 0 || cur.KeysLen != 35*keyRecordBytes {
		t.Errorf("the cursor saved: %+v, %v; want version 2 naming a key log of 35 keys", cur, err)
	}
}
