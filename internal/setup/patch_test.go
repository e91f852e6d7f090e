package setup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var patchOpts = PatchOptions{
	Policy:    "/etc/kubernetes/audit-policy.yaml",
	LogPath:   "/var/log/kubernetes/audit/audit.log",
	MaxAge:    30,
	MaxBackup: 10,
	MaxSize:   100,
}

// TestPatchManifest patches each testdata/patch-*.yaml manifest, compares
// the result with its .golden file (go test -update rewrites it), patches
// the result again to see that nothing changes, and runs setup check on it.
func TestPatchManifest(t *testing.T) {
	tests := []struct {
		manifest string
		opt      PatchOptions
		// must and mustNot are lines the patched manifest has to hold, or
		// must not, so a careless -update cannot hide a regression.
		must, mustNot []string
	}{
		{manifest: "patch-kubeadm-noaudit.yaml", opt: patchOpts, must: []string{
			"# kube-apiserver static pod as kubeadm writes it, before auditing is enabled.",
			"    - --client-ca-file=/etc/kubernetes/pki/ca.crt # the cluster CA",
			"    # mounts kubeadm manages",
			"    - --audit-policy-file=/etc/kubernetes/audit-policy.yaml",
			"    - --audit-log-maxage=30",
			"      type: DirectoryOrCreate",
			"  - command:",
		}},
		{manifest: "patch-existing-flags.yaml", opt: patchOpts, must: []string{
			"# An API server whose flags are in args, with auditing half set up by hand.",
			"        # old audit settings, to be replaced",
			"        - --audit-log-maxage=30",
			"        - --audit-log-path=/var/log/kubernetes/audit/audit.log",
			"        - --audit-log-maxsize=100",
			"        - --audit-log-maxbackup=10",
			"    - name: policy # no type yet",
			"          readOnly: true",
			`      command: ["kube-apiserver"]`,
		}, mustNot: []string{"--audit-log-maxage=7", "/var/log/old-audit.log", "maxsize=5", "readonly:", "--audit-log-path\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.manifest, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tt.manifest))
			if err != nil {
				t.Fatal(err)
			}
			out, notes, err := PatchManifest(in, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if len(notes) != 0 {
				t.Errorf("notes: %q", notes)
			}
			golden := filepath.Join("testdata", strings.TrimSuffix(tt.manifest, ".yaml")+".golden")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if string(out) != string(want) {
				t.Errorf("patched manifest differs from %s (go test -update rewrites it):\n%s",
					golden, UnifiedDiff(golden, "got", want, out))
			}
			got := string(out)
			for _, m := range tt.must {
				if !strings.Contains(got, m+"\n") {
					t.Errorf("patched manifest lacks the line %q:\n%s", m, got)
				}
			}
			for _, m := range tt.mustNot {
				if strings.Contains(got, m) {
					t.Errorf("patched manifest still holds %q:\n%s", m, got)
				}
			}
			for _, f := range []string{"--audit-policy-file=", "--audit-log-path=", "--audit-log-maxage=", "--audit-log-maxbackup=", "--audit-log-maxsize="} {
				if n := strings.Count(got, f); n != 1 {
					t.Errorf("%s appears %d times, want once", f, n)
				}
			}

			// Idempotence.
			again, _, err := PatchManifest(out, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != got {
				t.Errorf("the second patch changed the manifest:\n%s", UnifiedDiff("first", "second", out, again))
			}

			// setup check is clean on the result (the policy file exists
			// under testdata/root).
			fs, err := CheckManifest(tt.manifest, out, CheckOptions{Root: "testdata/root"})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				t.Errorf("setup check on the patched manifest: %s", f)
			}
		})
	}
}

func TestPatchManifestWebhookAndMissingHostFile(t *testing.T) {
	in, err := os.ReadFile("testdata/patch-kubeadm-noaudit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	opt := patchOpts
	opt.Policy = "/etc/kubernetes/audit/policy.yaml"
	opt.WebhookConfig = "/etc/kubernetes/audit/webhook.yaml"
	out, _, err := PatchManifest(in, opt)
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	if !strings.Contains(got, "--audit-webhook-config-file=/etc/kubernetes/audit/webhook.yaml\n") ||
		!strings.Contains(got, "name: audit-webhook\n") {
		t.Errorf("webhook flag or volume missing:\n%s", got)
	}
	fs, err := CheckManifest("m.yaml", out, CheckOptions{Root: "testdata/root"})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || HasErrors(fs) {
		t.Fatalf("want only the two missing host files, got %q", fs)
	}
	for _, f := range fs {
		if !strings.Contains(f.Msg, "does not exist on this host") {
			t.Errorf("unexpected finding %s", f)
		}
	}
	// Moving the policy replaces the flag, adds a volume and keeps the
	// old one (it may still be used).
	opt.Policy = "/etc/kubernetes/audit/policy2.yaml"
	out2, _, err := PatchManifest(out, opt)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out2), "--audit-policy-file="); n != 1 {
		t.Errorf("--audit-policy-file appears %d times", n)
	}
	if !strings.Contains(string(out2), "name: audit-policy-2\n") {
		t.Errorf("want a second policy volume:\n%s", out2)
	}
}

func TestPatchManifestErrors(t *testing.T) {
	for _, tt := range []struct{ name, yaml string }{
		{"no spec", "kind: Pod\n"},
		{"no container", "kind: Pod\nspec:\n  containers: []\n"},
		{"no command", "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n  - name: other\n"},
		{"two documents", "kind: Pod\n---\nkind: Pod\n"},
	} {
		if _, _, err := PatchManifest([]byte(tt.yaml), patchOpts); err == nil {
			t.Errorf("%s: want an error", tt.name)
		}
	}
	if _, _, err := PatchManifest([]byte("kind: Pod\n"), PatchOptions{Policy: "p.yaml", LogPath: "/l"}); err == nil {
		t.Error("relative policy path: want an error")
	}
}

func TestPatchManifestIndent4(t *testing.T) {
	in := "kind: Pod\nspec:\n    containers:\n        - name: kube-apiserver\n          command:\n              - kube-apiserver\n"
	out, notes, err := PatchManifest([]byte(in), patchOpts)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "indented by 4") {
		t.Errorf("notes = %q", notes)
	}
	if !strings.Contains(string(out), "  containers:\n    - name: kube-apiserver\n") {
		t.Errorf("got:\n%s", out)
	}
}

func TestUnifiedDiff(t *testing.T) {
	a := []byte("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\n")
	b := []byte("a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\n")
	want := `--- old
+++ new
@@ -1,5 +1,5 @@
 a
-b
+B
 c
 d
 e
@@ -11,3 +11,4 @@
 k
 l
 m
+n
`
	if got := UnifiedDiff("old", "new", a, b); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := UnifiedDiff("old", "new", a, a); got != "" {
		t.Errorf("equal inputs: got %q", got)
	}
	want = "--- old\n+++ new\n@@ -0,0 +1,2 @@\n+x\n+y\n"
	if got := UnifiedDiff("old", "new", nil, []byte("x\ny\n")); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteManifest(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "kube-apiserver.yaml")
	if err := os.WriteFile(file, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o640); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)
	backup, err := WriteManifest(file, []byte("new\n"), now)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+".kubetrail-backup-20261123T150405Z"); backup != want {
		t.Errorf("backup = %s, want %s", backup, want)
	}
	if b, _ := os.ReadFile(backup); string(b) != "old\n" {
		t.Errorf("backup holds %q", b)
	}
	if b, _ := os.ReadFile(file); string(b) != "new\n" {
		t.Errorf("file holds %q", b)
	}
	if st, _ := os.Stat(backup); st.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v", st.Mode())
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o640 {
		t.Errorf("file mode %v", st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("want the file and its backup only, got %d entries", len(ents))
	}
	if _, err := WriteManifest(file, []byte("newer\n"), now); err == nil {
		t.Error("an existing backup must not be overwritten")
	}
}
