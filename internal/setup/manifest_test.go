package setup

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files from the current output")

// TestCheckManifest runs setup check over each testdata manifest, with the
// host's files looked up under testdata/root, and compares every finding
// line with the manifest's .golden file.
func TestCheckManifest(t *testing.T) {
	tests := []struct {
		manifest  string
		wantError bool
		// must lists findings the golden file has to hold, so a careless
		// -update cannot drop the mistakes the test is about.
		must []string
	}{
		{manifest: "kubeadm.yaml"},
		{manifest: "walkthrough.yaml", wantError: true, must: []string{
			`testdata/walkthrough.yaml:29:5: error: volume without a name`,
			`testdata/walkthrough.yaml:22:7: error: unknown volumeMount field "readonly", which the kubelet silently ignores; fix: did you mean readOnly?`,
			`testdata/walkthrough.yaml:21:13: error: volumeMount "audit-policy" has no matching volume: the kubelet rejects the pod; fix: add name: audit-policy to the volume at line 29`,
			`testdata/walkthrough.yaml:12:7: error: the log folder /var/log/kubernetes/audit is not in any volumeMount`,
			`testdata/walkthrough.yaml:12:7: warning: no rotation flags`,
		}},
		{manifest: "mount-without-volume.yaml", wantError: true, must: []string{
			`testdata/mount-without-volume.yaml:20:13: error: volumeMount "audit-polcy" has no matching volume: the kubelet rejects the pod; fix: did you mean audit-policy?`,
			`testdata/mount-without-volume.yaml:13:7: warning: policy file /etc/kubernetes/audit/policy.yaml does not exist on this host`,
		}},
		{manifest: "not-enabled.yaml", wantError: true, must: []string{
			`testdata/not-enabled.yaml:8:11: error: auditing is not enabled`,
		}},
		{manifest: "stdout-webhook.yaml", wantError: true, must: []string{
			`testdata/stdout-webhook.yaml:14:7: warning: --audit-log-path=- writes audit events to the API server's standard output`,
			`testdata/stdout-webhook.yaml:16:7: error: unknown flag --audit-log-maxsise: the API server refuses to start; fix: did you mean --audit-log-maxsize?`,
		}},
		{manifest: "log-readonly.yaml", wantError: true, must: []string{
			`testdata/log-readonly.yaml:12:7: error: policy file /etc/kubernetes/missing-policy.yaml is not in any volumeMount`,
			`testdata/log-readonly.yaml:12:7: warning: policy file /etc/kubernetes/missing-policy.yaml does not exist on this host`,
			`testdata/log-readonly.yaml:18:17: error: the mount "audit-log" holding the audit log is readOnly`,
			`testdata/log-readonly.yaml:23:13: error: hostPath volume "audit-log" holding the log folder is of type File`,
			`testdata/log-readonly.yaml:13:7: warning: no --audit-log-maxage or --audit-log-maxbackup`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.manifest, func(t *testing.T) {
			fs, err := CheckManifestFile("testdata/"+tt.manifest, CheckOptions{Root: "testdata/root"})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, f := range fs {
				b.WriteString(f.String())
				b.WriteByte('\n')
			}
			got := b.String()
			golden := filepath.Join("testdata", strings.TrimSuffix(tt.manifest, ".yaml")+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("findings differ from %s (go test -update rewrites it)\ngot:\n%swant:\n%s", golden, got, want)
			}
			for _, m := range tt.must {
				if !strings.Contains(got, m) {
					t.Errorf("missing finding %q in\n%s", m, got)
				}
			}
			if tt.manifest == "kubeadm.yaml" && len(fs) != 0 {
				t.Errorf("a correct kubeadm manifest got %d findings", len(fs))
			}
			if HasErrors(fs) != tt.wantError {
				t.Errorf("HasErrors = %v, want %v", HasErrors(fs), tt.wantError)
			}
		})
	}
}

func TestCheckManifestSmall(t *testing.T) {
	const head = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"policy without output", head + "    - --audit-policy-file=/p.yaml\n    volumeMounts:\n    - {name: p, mountPath: /p.yaml, readOnly: true}\n  volumes:\n  - {name: p, hostPath: {path: /p.yaml, type: File}}\n",
			[]string{"m.yaml:8:7: error: --audit-policy-file without --audit-log-path or --audit-webhook-config-file: no audit event is written anywhere; fix: add --audit-log-path=/var/log/kubernetes/audit/audit.log or --audit-webhook-config-file"}},
		{"log without policy", head + "    - --audit-log-path=-\n",
			[]string{
				"m.yaml:8:7: error: no --audit-policy-file: without a policy the API server records no events; fix: add --audit-policy-file=/etc/kubernetes/audit-policy.yaml (kubetrail policy init writes one)",
				"m.yaml:8:7: warning: --audit-log-path=- writes audit events to the API server's standard output, mixed with its own log; fix: read it with kubectl logs or the node's container log; rotation flags do not apply",
			}},
		{"hostPath type typo and no type", head + "    - --audit-policy-file=/p.yaml\n    - --audit-webhook-config-file=/w.yaml\n    volumeMounts:\n    - {name: p, mountPath: /p.yaml, readOnly: true}\n    - {name: w, mountPath: /w.yaml, readOnly: true}\n  volumes:\n  - {name: p, hostPath: {path: /p.yaml, type: file}}\n  - {name: w, hostPath: {path: /w.yaml}}\n",
			[]string{
				"m.yaml:14:47: error: unknown hostPath type \"file\"; fix: did you mean File?",
				"m.yaml:15:5: warning: hostPath volume \"w\" has no type: if /w.yaml is missing, the container runtime creates a folder in its place; fix: add type: File",
			}},
		{"volume key misspelled", head + "    - --audit-log-path=-\n    - --audit-policy-file=/p.yaml\n    volumeMounts:\n    - {name: p, mountPath: /p.yaml, readOnly: true}\n  volume:\n  - {name: p, hostPath: {path: /p.yaml, type: File}}\n",
			[]string{
				"m.yaml:8:7: warning: --audit-log-path=- writes audit events to the API server's standard output, mixed with its own log; fix: read it with kubectl logs or the node's container log; rotation flags do not apply",
				"m.yaml:11:14: error: volumeMount \"p\" has no matching volume: the kubelet rejects the pod; fix: add a volume named \"p\" to spec.volumes",
				"m.yaml:12:3: error: unknown pod spec field \"volume\", which the kubelet silently ignores; fix: did you mean volumes?",
			}},
		{"bad rotation value", head + "    - --audit-policy-file=/p.yaml\n    - --audit-log-path=/l/a.log\n    - --audit-log-maxage=30d\n    - --audit-log-maxbackup=3\n    volumeMounts:\n    - {name: p, mountPath: /p.yaml, readOnly: true}\n    - {name: l, mountPath: /l}\n  volumes:\n  - {name: p, hostPath: {path: /p.yaml, type: File}}\n  - {name: l, hostPath: {path: /l, type: DirectoryOrCreate}}\n",
			[]string{"m.yaml:10:7: error: --audit-log-maxage=\"30d\" is not a non-negative integer: the API server refuses to start; fix: give a whole number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := CheckManifest("m.yaml", []byte(tt.yaml), CheckOptions{NoHost: true})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range fs {
				got = append(got, f.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestCheckManifestNotYAML(t *testing.T) {
	if _, err := CheckManifest("m.yaml", []byte("spec: [\n"), CheckOptions{}); err == nil {
		t.Error("want a syntax error")
	}
}

func FuzzCheckManifest(f *testing.F) {
	for _, name := range []string{"kubeadm.yaml", "walkthrough.yaml", "mount-without-volume.yaml", "log-readonly.yaml", "stdout-webhook.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := CheckManifest("m.yaml", data, CheckOptions{NoHost: true})
		if err == nil && fs == nil && len(data) == 0 {
			t.Error("empty input gave neither findings nor an error")
		}
	})
}
