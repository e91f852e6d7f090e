package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/trust"
)

// auditLines writes n audit events, ids from first, as a log file.
func auditLines(t *testing.T, first, n int) string {
	t.Helper()
	var b strings.Builder
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-%d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/pods/p-%d","verb":"get","user":{"username":"u%d"},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"pods","namespace":"ns","name":"p-%d","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T00:00:%02d.000000Z","stageTimestamp":"2026-12-01T00:00:%02d.000100Z"}`+"\n", i, i, i%7, i, i%60, i%60)
	}
	p := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSignedCheckpoints imports twice (each run signs a checkpoint), keeps
// a witness's copy, and tampers as an attacker with disk access would:
// each is named by verify --pubkey --checkpoint, and the untouched folder
// passes.
// Mutations it catches: Check not verifying signatures, Check not looking
// for witness checkpoints missing from the folder, closeAndSign not
// signing (no checkpoints: the first assertion).
func TestSignedCheckpoints(t *testing.T) {
	dir := t.TempDir()
	for i, f := range []string{auditLines(t, 0, 600), auditLines(t, 600, 900)} {
		if code, _, errOut := run("import", "--data", dir, f); code != 0 {
			t.Fatalf("import %d: exit %d: %s", i, code, errOut)
		}
	}
	cps := filepath.Join(dir, checkpointsName)
	lines, err := trust.Read(cps)
	if err != nil || len(lines) != 2 || lines[0].Events != 600 || lines[1].Events != 1500 {
		t.Fatalf("checkpoints after two imports: %+v %v", lines, err)
	}
	if st, err := os.Stat(filepath.Join(dir, signingKeyName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key: %v %v", st, err)
	}
	pub := filepath.Join(t.TempDir(), "key.pub")
	code, pem, _ := run("checkpoint", "pubkey", "--data", dir)
	if code != 0 || os.WriteFile(pub, []byte(pem), 0o600) != nil {
		t.Fatalf("pubkey: exit %d", code)
	}
	witness := filepath.Join(t.TempDir(), "witness")
	code, exported, _ := run("checkpoint", "export", "--data", dir)
	if code != 0 || strings.Count(exported, "\n") != 2 || os.WriteFile(witness, []byte(exported), 0o600) != nil {
		t.Fatalf("export: exit %d: %q", code, exported)
	}
	orig, _ := os.ReadFile(cps)

	verify := func(t *testing.T, want string) {
		t.Helper()
		code, out, errOut := run("verify", "--data", dir, "--pubkey", pub, "--checkpoint", witness)
		if want == "" {
			if code != 0 || out != "" {
				t.Fatalf("verify: exit %d: %s %s", code, out, errOut)
			}
			return
		}
		// Each finding names the checkpoint, in the folder's file or the
		// witness's.
		if code != 1 || !(strings.HasPrefix(out, cps+":") || strings.HasPrefix(out, witness+":")) || !strings.Contains(out, want) {
			t.Fatalf("verify: exit %d, output %q; want %q", code, out, want)
		}
	}
	verify(t, "")

	t.Run("re-signed with another key", func(t *testing.T) {
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		os.Remove(cps)
		for _, l := range lines {
			var h [32]byte
			b, _ := hex.DecodeString(l.Head)
			copy(h[:], b)
			trust.Append(cps, trust.Sign(other, l.Events, l.WAL, h, l.Time))
		}
		verify(t, "signature does not verify")
		os.WriteFile(cps, orig, 0o600)
	})
	t.Run("rolled back to an older checkpoints file", func(t *testing.T) {
		first := orig[:strings.IndexByte(string(orig), '\n')+1]
		os.WriteFile(cps, first, 0o600)
		verify(t, "the witness holds this checkpoint")
		os.WriteFile(cps, orig, 0o600)
	})
	t.Run("edited checkpoint", func(t *testing.T) {
		var c trust.Checkpoint
		json.Unmarshal([]byte(strings.SplitN(string(orig), "\n", 2)[0]), &c)
		c.Events = 599
		b, _ := json.Marshal(c)
		os.WriteFile(cps, append(append(b, '\n'), orig[strings.IndexByte(string(orig), '\n')+1:]...), 0o600)
		verify(t, "signature does not verify")
		os.WriteFile(cps, orig, 0o600)
	})
	t.Run("newest segment deleted below a signed checkpoint", func(t *testing.T) {
		// The attacker deletes the second run's segment and its MANIFEST
		// line, and rolls the checkpoints file back: no chain link is
		// broken (it was the newest), only the witness's checkpoint
		// tells.
		segs, _ := filepath.Glob(filepath.Join(dir, "segments", "*.kts"))
		if len(segs) != 2 {
			t.Fatalf("%d segments", len(segs))
		}
		seg, _ := os.ReadFile(segs[1])
		manifest, _ := os.ReadFile(filepath.Join(dir, "segments", "MANIFEST"))
		os.Remove(segs[1])
		os.WriteFile(filepath.Join(dir, "segments", "MANIFEST"), []byte(strings.Replace(string(manifest), filepath.Base(segs[1])+"\n", "", 1)), 0o600)
		os.WriteFile(cps, orig[:strings.IndexByte(string(orig), '\n')+1], 0o600)
		verify(t, "covers 1500 events, the store's chain only 600")
		os.WriteFile(segs[1], seg, 0o600)
		os.WriteFile(filepath.Join(dir, "segments", "MANIFEST"), manifest, 0o600)
		os.WriteFile(cps, orig, 0o600)
		verify(t, "")
	})
}
