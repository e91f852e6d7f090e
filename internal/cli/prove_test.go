package cli

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/trust"
)

// TestProve imports twice (a checkpoint after each), proves an event of
// the first run against the folder's checkpoints and against a witness
// holding only the second checkpoint (the chain then steps through the
// second run's segment), checks both without the store, and checks that
// an altered proof is refused.
// Mutations it catches: Prove giving the path of another leaf, Prove
// leaving out a later WAL segment's step, --check exiting 0 on a proof
// that does not hold.
func TestProve(t *testing.T) {
	dir := t.TempDir()
	for i, f := range []string{auditLines(t, 0, 600), auditLines(t, 600, 900)} {
		if code, _, errOut := run("import", "--data", dir, f); code != 0 {
			t.Fatalf("import %d: exit %d: %s", i, code, errOut)
		}
	}
	pub := filepath.Join(t.TempDir(), "key.pub")
	if code, pem, _ := run("checkpoint", "pubkey", "--data", dir); code != 0 || os.WriteFile(pub, []byte(pem), 0o600) != nil {
		t.Fatal("pubkey")
	}
	lines, _ := trust.Read(filepath.Join(dir, checkpointsName))
	witness := filepath.Join(t.TempDir(), "witness")
	b, _ := json.Marshal(lines[1].Checkpoint)
	os.WriteFile(witness, append(b, '\n'), 0o600)

	prove := func(t *testing.T, args ...string) (trust.Proof, string) {
		t.Helper()
		code, out, errOut := run(append([]string{"prove", "--data", dir}, args...)...)
		if code != 0 || strings.Count(out, "\n") != 1 {
			t.Fatalf("prove %v: exit %d: %q %s", args, code, out, errOut)
		}
		var p trust.Proof
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatal(err)
		}
		if p.AuditID() != "id-123" || !strings.Contains(p.Event, `"p-123"`) {
			t.Fatalf("proof of event %q", p.Event)
		}
		f := filepath.Join(t.TempDir(), "proof.jsonl")
		os.WriteFile(f, []byte(out), 0o600)
		return p, f
	}
	check := func(t *testing.T, f string, wantCode int, want string) {
		t.Helper()
		code, out, errOut := run("prove", "--check", f, "--pubkey", pub)
		if code != wantCode || !strings.Contains(out, want) {
			t.Fatalf("prove --check: exit %d, %q %s; want exit %d and %q", code, out, errOut, wantCode, want)
		}
	}
	own, ownFile := prove(t, "id-123")
	if own.Checkpoint.Sig != lines[0].Sig || len(own.Next) != 0 || own.Index != 123 || own.Size != 600 {
		t.Fatalf("proof against the first checkpoint: %+v", own)
	}
	check(t, ownFile, 0, `event `+own.Pos+` (auditID "id-123") is in the history signed`)

	wit, witFile := prove(t, "--pos", own.Pos, "--checkpoint", witness)
	if wit.Checkpoint.Sig != lines[1].Sig || len(wit.Next) != 1 || wit.Next[0].Events != 900 {
		t.Fatalf("proof against the witness's checkpoint: %+v", wit)
	}
	check(t, witFile, 0, "is in the history signed")

	// One byte of the event changed: the proof no longer holds.
	altered, _ := os.ReadFile(witFile)
	os.WriteFile(witFile, []byte(strings.Replace(string(altered), `p-123\"`, `p-124\"`, 1)), 0o600)
	check(t, witFile, 1, "NOT proved: the event, its audit path and the chain give head")

	if code, _, errOut := run("prove", "--data", dir, "no-such-id"); code == 0 || !strings.Contains(errOut, `no stored event has auditID "no-such-id"`) {
		t.Fatalf("unknown auditID: exit %d %s", code, errOut)
	}
}

// TestRetiredRecordsAreSigned deletes the oldest segment by retention, as
// serve does (each RETIRED record signed with the checkpoint key), and
// again as an attacker would (the segment deleted, its record written with
// the right chain heads but no key): verify --pubkey passes the first and
// names the second, and a record signed with another key.
// Mutation it catches: verify not checking the records' signatures
// (checkRetired returning nothing): the forged deletion then passes, as
// the checkpoint covering it still checks out against the forged heads.
func TestRetiredRecordsAreSigned(t *testing.T) {
	legit := t.TempDir()
	for i, f := range []string{auditLines(t, 0, 600), auditLines(t, 600, 900)} {
		if code, _, errOut := run("import", "--data", legit, f); code != 0 {
			t.Fatalf("import %d: exit %d: %s", i, code, errOut)
		}
	}
	forged := t.TempDir()
	if err := os.CopyFS(forged, os.DirFS(legit)); err != nil {
		t.Fatal(err)
	}
	key, err := trust.LoadOrCreateKey(filepath.Join(legit, signingKeyName), false)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "key.pub")
	os.WriteFile(pub, trust.PublicPEM(key), 0o600)
	retire := func(dir string, sign func(string) string) {
		t.Helper()
		segs, _ := filepath.Glob(filepath.Join(dir, "segments", "*.kts"))
		var total int64
		for _, s := range segs {
			st, _ := os.Stat(s)
			total += st.Size()
		}
		db, err := local.Open(dir, local.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if n, _, err := db.Enforce(local.Retention{MaxBytes: total - 1, Sign: sign}, time.Now()); n != 1 || err != nil {
			t.Fatalf("retention: %d %v", n, err)
		}
	}
	retire(legit, func(rec string) string { return trust.SignRetired(key, rec) })
	retire(forged, nil)
	retired := filepath.Join(forged, "segments", "RETIRED")

	if code, out, errOut := run("verify", "--data", legit, "--pubkey", pub); code != 0 || out != "" {
		t.Fatalf("verify after retention: exit %d: %s %s", code, out, errOut)
	}
	code, out, _ := run("verify", "--data", forged, "--pubkey", pub)
	if code != 1 || !strings.Contains(out, retired+": the record of 0000000000000001-0000000000000001.kts is not signed") || strings.Count(out, "\n") != 1 {
		t.Fatalf("verify of a forged record: exit %d: %q", code, out)
	}
	// Without the key verify cannot tell, and says what it did not check.
	if code, _, errOut := run("verify", "--data", forged); code != 0 || !strings.Contains(errOut, "1 record of segments deleted by retention: their signatures are checked with --pubkey") {
		t.Fatalf("verify without --pubkey: exit %d: %s", code, errOut)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	b, _ := os.ReadFile(retired)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	lines[1] += " " + trust.SignRetired(other, lines[1])
	os.WriteFile(retired, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	if code, out, _ := run("verify", "--data", forged, "--pubkey", pub); code != 1 || !strings.Contains(out, "does not verify with the public key") {
		t.Fatalf("verify of a record signed with another key: exit %d: %q", code, out)
	}
}

// TestKeyRotation: a checkpoint signed with the old key, the key replaced,
// one signed with the new key. verify with the new key alone names the old
// checkpoint; with both keys (--pubkey twice) the folder is whole.
// Mutation it catches: verify checking only the first --pubkey.
func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	keys := t.TempDir()
	pubOf := func(name string) string {
		t.Helper()
		code, pem, _ := run("checkpoint", "pubkey", "--data", dir)
		p := filepath.Join(keys, name)
		if code != 0 || os.WriteFile(p, []byte(pem), 0o600) != nil {
			t.Fatalf("pubkey: exit %d", code)
		}
		return p
	}
	if code, _, errOut := run("import", "--data", dir, auditLines(t, 0, 300)); code != 0 {
		t.Fatalf("import: %s", errOut)
	}
	old := pubOf("old.pub")
	// Rotation: the old private key leaves the host; the next run creates
	// a new one.
	os.Rename(filepath.Join(dir, signingKeyName), filepath.Join(keys, "old.key"))
	if code, _, errOut := run("import", "--data", dir, auditLines(t, 300, 200)); code != 0 {
		t.Fatalf("import: %s", errOut)
	}
	cur := pubOf("new.pub")
	cps := filepath.Join(dir, checkpointsName)
	if code, out, _ := run("verify", "--data", dir, "--pubkey", cur); code != 1 || !strings.HasPrefix(out, cps+":1: signature does not verify") || strings.Count(out, "\n") != 1 {
		t.Fatalf("verify with the new key only: exit %d: %q", code, out)
	}
	if code, out, errOut := run("verify", "--data", dir, "--pubkey", cur, "--pubkey", old); code != 0 || out != "" {
		t.Fatalf("verify with both keys: exit %d: %s %s", code, out, errOut)
	}
}
