package policy

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	upstream "k8s.io/apiserver/pkg/audit/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestLoadBad loads every testdata/*.bad.* fixture and compares the errors
// with the golden file next to it (NAME.err); -update rewrites them.
func TestLoadBad(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range files {
		if strings.HasSuffix(file, ".err") {
			continue
		}
		n++
		t.Run(filepath.Base(file), func(t *testing.T) {
			p, err := LoadFile(file)
			if err == nil {
				t.Fatalf("loaded %s without error: %+v", file, p)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList", err)
			}
			for _, e := range list {
				if e.File != file || e.Msg == "" {
					t.Errorf("error without file or message: %#v", e)
				}
			}
			got := err.Error() + "\n"
			golden := file + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestLoadBad -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("errors for %s differ from %s (-want +got):\n%s", file, golden, diff)
			}
		})
	}
	if n < 20 {
		t.Fatalf("only %d bad fixtures", n)
	}
}

// TestLoadGood loads every testdata/*.good.* file and checks that the API
// server's own loader reads the same policy from it.
func TestLoadGood(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.good.*")
	if len(files) < 3 {
		t.Fatalf("only %d good fixtures", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			p, err := LoadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(file)
			want, err := upstream.LoadPolicyFromBytes(data)
			if err != nil {
				t.Fatalf("upstream rejects what kubetrail accepts: %v", err)
			}
			comparePolicies(t, toUpstream(p), want)
		})
	}
}

func comparePolicies(t testing.TB, got, want *auditinternal.Policy) {
	t.Helper()
	opts := cmp.Options{cmpopts.EquateEmpty(), cmpopts.IgnoreFields(auditinternal.Policy{}, "TypeMeta", "ObjectMeta")}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("kubetrail's policy differs from upstream's (-upstream +kubetrail):\n%s", diff)
	}
}

func TestLoadPositions(t *testing.T) {
	p, err := LoadFile("testdata/recommended-30.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 30 {
		t.Fatalf("%d rules, want 30", len(p.Rules))
	}
	if got := p.Rules[0].Pos; got != (Pos{13, 5}) {
		t.Errorf("rules[0] at %v, want 13:5", got)
	}
	if pos, ok := p.PosOf("rules[29].omitManagedFields"); !ok || pos.Line != 223 {
		t.Errorf("rules[29].omitManagedFields at %v, want line 223", pos)
	}
	if pos, _ := p.PosOf("rules[29].verbs"); pos != p.Rules[29].Pos {
		t.Errorf("a missing field falls back to its rule: got %v, want %v", pos, p.Rules[29].Pos)
	}
}

// TestValidateMatchesUpstream runs both validators over generated policies,
// valid and not, and compares which fields they reject.
func TestValidateMatchesUpstream(t *testing.T) {
	c := randChooser{newRand(2)}
	for range 20000 {
		p := genPolicy(c)
		if c.intn(20) == 0 {
			p.Rules = nil
		}
		got := map[string]int{}
		for _, e := range Validate(p) {
			got[upstreamPath(e.Path)]++
		}
		want := map[string]int{}
		for _, e := range validateUpstream(p) {
			want[e]++
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("validation differs (-upstream +kubetrail):\n%s\npolicy: %+v", diff, p)
		}
	}
}

// upstreamPath drops the resources index that kubetrail adds:
// rules[0].resources[1].group -> rules[0].resources.group.
func upstreamPath(p string) string {
	if i := strings.Index(p, ".resources["); i >= 0 {
		if j := strings.Index(p[i:], "]"); j >= 0 {
			return p[:i] + ".resources" + p[i+j+1:]
		}
	}
	return p
}

// FuzzLoad checks that Load never panics, and that whatever it accepts the
// API server's loader accepts too, reading the same policy.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.*.*")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil && !strings.HasSuffix(file, ".err") {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Load("fuzz.yaml", data)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T %v is not a non-empty ErrorList", err, err)
			}
			return
		}
		want, err := upstream.LoadPolicyFromBytes(data)
		if err != nil {
			t.Fatalf("kubetrail accepts what upstream rejects (%v):\n%s", err, data)
		}
		comparePolicies(t, toUpstream(p), want)
	})
}
