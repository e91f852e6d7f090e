package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFilesMustBePrivate: every command that reads a secret from a
// file refuses it when group or others may read or change it, naming the
// file, its mode and the chmod to run, before doing anything else; the same
// file at 0600 (and 0400) is taken. (Mutation tried: checkSecretMode
// testing only 0o004 lets 0640 and 0660 through.)
func TestSecretFilesMustBePrivate(t *testing.T) {
	_, url, _ := serveIncident(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	key := filepath.Join(dir, "tls.key")
	for _, f := range []string{token, key} {
		if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// tail opens its sink as import does (sinkFlags.open) but would run
	// until stopped: import stands for both.
	// serve gets a bad --retention, read after the secrets, so that it
	// stops there even when a secret is wrongly taken.
	data := t.TempDir()
	cmds := []struct {
		file string
		args []string
	}{
		{token, []string{"serve", "--data", data, "--retention", "bogus", "--token-file", token}},
		{key, []string{"serve", "--data", data, "--retention", "bogus", "--tls-cert", key, "--tls-key", key}},
		{token, []string{"setup", "webhook-config", "--url", "https://127.0.0.1:8443", "--token-file", token}},
		{key, []string{"setup", "webhook-config", "--url", "https://127.0.0.1:8443", "--client-cert", key, "--client-key", key}},
		{token, []string{"import", "--server", url, "--token-file", token, "-"}},
		{key, []string{"import", "--server", url, "--client-cert", key, "--client-key", key, "-"}},
		{token, []string{"query", "--server", url, "--token-file", token}},
		{token, []string{"stats", "--server", url, "--token-file", token}},
		{token, []string{"denied", "--server", url, "--token-file", token}},
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o606, 0o620, 0o602} {
		for _, c := range cmds {
			if err := os.Chmod(c.file, mode); err != nil {
				t.Fatal(err)
			}
			code, out, errs := run(c.args...)
			for _, w := range []string{c.file, fmt.Sprintf("mode %#o", mode), "chmod 600 " + c.file} {
				if code != 1 || !strings.Contains(errs, w) {
					t.Errorf("%v with the file at %#o: exit %d, stdout %q, stderr %q; want exit 1 saying %q", c.args[:2], mode, code, out, errs, w)
					break
				}
			}
		}
	}
	// At 0600 and 0400 the same file passes the check (the commands may
	// fail later for other reasons: not a certificate, no such log).
	for _, mode := range []os.FileMode{0o600, 0o400} {
		for _, c := range cmds {
			os.Chmod(c.file, mode)
			_, _, errs := run(c.args...)
			if strings.Contains(errs, "chmod") {
				t.Errorf("%v with the file at %#o: %s", c.args[:2], mode, errs)
			}
		}
	}
}

// TestSecretModeRootSharedWithGroup: a root-owned secret that only root's
// chosen group may read (a Kubernetes Secret volume under fsGroup: 0440
// root:GID) is taken by a process that is not root, and by nothing else;
// root itself must have the file private. (Mutations tried: dropping the
// self != 0 condition lets root take 0640 files, which
// TestSecretFilesMustBePrivate also catches when run as root; testing
// perm&0o007 instead of perm&0o037 takes a group-writable 0660.)
func TestSecretModeRootSharedWithGroup(t *testing.T) {
	const root, user = 0, 65532
	for _, c := range []struct {
		perm        os.FileMode
		owner, self int
		ok          bool
	}{
		{0o600, user, user, true},
		{0o400, root, root, true},
		{0o440, root, user, true},  // Secret volume, defaultMode 0400, fsGroup
		{0o640, root, user, true},  // PostgreSQL's root-owned key
		{0o440, root, root, false}, // root reads it as owner: the group is a leak
		{0o640, root, root, false},
		{0o440, user, user, false}, // not root's choice
		{0o440, 1000, user, false},
		{0o660, root, user, false}, // the group may write it
		{0o444, root, user, false}, // everyone may read it
		{0o644, root, user, false},
		{0o450, root, user, false},
		{0o440, -1, user, false}, // owner unknown
	} {
		if got := secretModeOK(c.perm, c.owner, c.self); got != c.ok {
			t.Errorf("secretModeOK(%#o, owner %d, self %d) = %v, want %v", c.perm, c.owner, c.self, got, c.ok)
		}
	}
}
