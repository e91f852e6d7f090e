// Package cli wires kubetrail's commands. Each command parses its flags and
// calls one function of a domain package; no business logic lives here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=...".
var Version = "dev"

// env carries the process's streams so that commands are testable.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	logLevel       string
	logJSON        bool
}

func (e *env) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(e.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if e.logJSON {
		return slog.New(slog.NewJSONHandler(e.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts))
}

// defaultDataDir is $KUBETRAIL_DATA, else ./kubetrail-data.
func defaultDataDir() string {
	if d := os.Getenv("KUBETRAIL_DATA"); d != "" {
		return d
	}
	return "kubetrail-data"
}

// Main runs the CLI and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "kubetrail",
		Short: "Kubernetes audit logging, end to end",
		Long: `kubetrail receives, keeps and answers questions about Kubernetes API-server
audit events. It takes the API server's webhook batches (acknowledging each
only once it is on disk), tails and imports audit.log files, and stores
everything in a compressed local folder (--data, default ./kubetrail-data or
$KUBETRAIL_DATA).

Start here:
  kubetrail serve                          receive webhook batches on 127.0.0.1:8443
  kubetrail setup webhook-config --url ... write the API server's webhook kubeconfig
  kubetrail import /var/log/kubernetes/audit/
  kubetrail tail /var/log/kubernetes/audit/audit.log
  kubetrail export > all.jsonl`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&e.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().BoolVar(&e.logJSON, "log-json", false, "write logs as JSON lines")
	root.AddCommand(serveCmd(e), importCmd(e), tailCmd(e), exportCmd(e), queryCmd(e), statsCmd(e), setupCmd(e), whoCmd(e), activityCmd(e), historyCmd(e), secretsCmd(e), execsCmd(e), deniedCmd(e), rbacCmd(e), fromCmd(e))
	root.AddCommand(policyCmd(e), verifyCmd(e))

	// KUBETRAIL_CPUPROFILE=FILE writes a CPU profile, for performance work.
	if path := os.Getenv("KUBETRAIL_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		var de *local.DamageError
		if errors.As(err, &de) {
			for _, d := range de.List {
				fmt.Fprintln(stderr, d.String())
			}
			fmt.Fprintf(stderr, "kubetrail: the answer leaves out the damaged data above (%d); every intact event was read. 'kubetrail verify' checks the whole folder.\n", len(de.List))
			return 3
		}
		fmt.Fprintln(stderr, "kubetrail:", err)
		return 1
	}
	return 0
}

// withDamage returns err, or, when the read went well but r left damaged
// data out, a *local.DamageError: Main prints it and exits 3, so a partial
// answer never passes for a whole one.
func withDamage(r *local.Reader, err error) error {
	if err != nil {
		return err
	}
	if d := r.Damaged(); len(d) > 0 {
		return &local.DamageError{List: d}
	}
	return nil
}

// exitCode is an error that only sets the exit status; its message was
// already printed.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func addDataFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "data", defaultDataDir(), "data folder (default $KUBETRAIL_DATA or ./kubetrail-data)")
}
