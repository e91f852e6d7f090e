package cli

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/trust"
)

// accessFlags are serve's flags for roles (docs/security.md).
type accessFlags struct {
	tokenFile    string
	clientRoles  []string
	requireRoles bool
}

func (a *accessFlags) add(f *pflag.FlagSet) {
	f.StringVar(&a.tokenFile, "token-file", "", "file of accepted bearer tokens, one a line ('#' comments): TOKEN[,NAME[,role=ingest|viewer|admin][,clusters=A|B][,namespaces=X|Y]], or the API server's TOKEN,USER,UID,\"GROUPS\"; a token without role= may ingest and read (docs/security.md); refused unless only its owner may read it (chmod 600)")
	f.StringArrayVar(&a.clientRoles, "client-role", nil, "give client certificates with this subject CN a role (repeatable): CN=ingest|viewer|admin[,clusters=A|B][,namespaces=X|Y]; a certificate not named here takes its role from O=kubetrail:ROLE")
	f.BoolVar(&a.requireRoles, "require-roles", false, "refuse everything to a token or certificate given no role (and a --token-file line without role=); without it they may ingest and read, as before roles")
}

// load reads --token-file and --client-role into cfg.Access, warning
// about each token without a role.
func (a *accessFlags) load(cfg *server.Config, log *slog.Logger) error {
	cfg.Access.RequireRoles = a.requireRoles
	for _, v := range a.clientRoles {
		cr, err := server.ParseClientRole(v)
		if err != nil {
			return err
		}
		cfg.Access.ClientRoles = append(cfg.Access.ClientRoles, cr)
	}
	if len(a.clientRoles) > 0 && cfg.ClientCA == "" {
		return fmt.Errorf("--client-role needs --client-ca: only certificates it signed are accepted")
	}
	if a.tokenFile == "" {
		return nil
	}
	f, err := os.Open(a.tokenFile)
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	if err := checkSecretMode("--token-file", a.tokenFile, fi); err != nil {
		return err
	}
	toks, err := server.ParseTokenFile(f, "--token-file "+a.tokenFile, a.requireRoles, func(msg string) { log.Warn(msg) })
	if err != nil {
		return err
	}
	cfg.Access.Tokens = toks
	return nil
}

// openAccessLog opens DATA/access.log for the server, and has signer's
// checkpoints sign its head (docs/security.md, "Access log").
func openAccessLog(dir string, signer *trust.Signer, log *slog.Logger) (*server.AccessLog, error) {
	l, err := server.OpenAccessLog(filepath.Join(dir, server.AccessLogFile))
	if err != nil {
		return nil, err
	}
	if l.TornBytes > 0 {
		log.Warn("access log: cut a torn last line, which a crash left", "path", filepath.Join(dir, server.AccessLogFile), "bytes", l.TornBytes)
	}
	if signer != nil { // a collector (serve --store) signs no checkpoints
		signer.Access = l.Head
	}
	return l, nil
}
