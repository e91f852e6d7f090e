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
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/suggest"
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
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-v") {
		// What cobra's --version prints (root's Version and template), without
		// a command tree, flag parsing and signal handling around one line:
		// 0.27 ms of a 3.4 ms start (docs/adr/0026).
		fmt.Fprintln(stdout, thisBuild().String())
		return 0
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	return execute(e, newRoot(e, args))
}

// newRoot builds the command tree, reading and writing e's streams; the
// conventions test walks it.
func newRoot(e *env, args []string) *cobra.Command {
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
		Version:       thisBuild().String(),
	}
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.PersistentFlags().StringVar(&e.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().BoolVar(&e.logJSON, "log-json", false, "write logs as JSON lines")
	only, some := wanted(args)
	for _, c := range topCommands {
		if !some || c.name == only {
			root.AddCommand(c.build(e))
		}
	}
	// cobra's completion command is built (its help written with
	// fmt.Sprintf, its flags parsed) in every process; a process whose first
	// argument names another command never runs it.
	root.CompletionOptions.DisableDefaultCmd = some
	// --version prints the same line as the version command.
	root.SetVersionTemplate("{{.Version}}\n")
	strictCommands(root)
	return root
}

// topCommands are the top-level commands in the order help lists them,
// each with the name its Use starts with.
var topCommands = [...]struct {
	name  string
	build func(*env) *cobra.Command
}{
	{"serve", serveCmd}, {"import", importCmd}, {"tail", tailCmd}, {"export", exportCmd}, {"query", queryCmd},
	{"stats", statsCmd}, {"setup", setupCmd}, {"timeline", timelineCmd}, {"who", whoCmd}, {"activity", activityCmd},
	{"history", historyCmd}, {"secrets", secretsCmd}, {"execs", execsCmd}, {"denied", deniedCmd}, {"rbac", rbacCmd},
	{"from", fromCmd}, {"policy", policyCmd}, {"verify", verifyCmd}, {"checkpoint", checkpointCmd}, {"prove", proveCmd},
	{"detect", detectCmd}, {"rules", rulesCmd}, {"alerts", alertsCmd}, {"forward", forwardCmd}, {"migrate", migrateCmd},
	{"version", versionCmd},
}

// wanted says which top-level commands a process with these arguments
// needs: some is true when one command (only, or none when only is "")
// will do, because the first argument names it or asks for the version
// alone. Building every command with its flags and help took half a
// millisecond of each start (issue 12's budget is 2 ms); anything else
// (help, completion, a flag first, a typo that wants suggestions) gets the
// whole tree.
func wanted(args []string) (only string, some bool) {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-v") {
		return "", true
	}
	if len(args) == 0 {
		return "", false
	}
	for _, c := range topCommands {
		if c.name == args[0] {
			return c.name, true
		}
	}
	return "", false
}

// execute runs root and returns the exit code.
func execute(e *env, root *cobra.Command) int {
	stderr := e.stderr
	// KUBETRAIL_CPUPROFILE=FILE writes a CPU profile, for performance work.
	if path := os.Getenv("KUBETRAIL_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	ctx, stop := signalContext()
	defer stop()
	err := root.ExecuteContext(ctx)
	var sig interrupted
	var de *local.DamageError
	// A command that runs until stopped (query --follow) ends with the
	// damage it left out, which the signal does not explain away.
	if err != nil && !errors.As(err, &de) && errors.As(context.Cause(ctx), &sig) {
		// Whatever the command was doing when the signal came, what it
		// says is that it was stopped (a "context canceled" from deep
		// inside would only confuse).
		fmt.Fprintf(stderr, "kubetrail: %v\n", sig)
		return sig.exitCode()
	}
	if err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		if errors.As(err, &de) {
			for _, d := range de.List {
				fmt.Fprintln(stderr, escape.Text(d.String()))
			}
			fmt.Fprintf(stderr, "kubetrail: the answer leaves out the damaged data above (%d); every intact event was read. 'kubetrail verify' checks the whole folder.\n", len(de.List))
			return 3
		}
		fmt.Fprintln(stderr, "kubetrail:", escape.Text(err.Error()))
		return 1
	}
	return 0
}

// strictCommands makes typos fail: a command that only groups others
// (policy, setup, rules) answers an unknown subcommand with an error and
// the nearest names, where cobra would print its help and exit 0 (so
// "kubetrail policy chek" passed a CI gate); and an unknown flag anywhere
// names the nearest flags.
func strictCommands(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.SetFlagErrorFunc(flagError)
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil && c.HasParent() {
			c.Args = func(c *cobra.Command, args []string) error {
				if len(args) == 0 {
					return nil
				}
				msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
				if c.SuggestionsMinimumDistance <= 0 {
					c.SuggestionsMinimumDistance = 2
				}
				if s := c.SuggestionsFor(args[0]); len(s) > 0 {
					msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
				}
				return fmt.Errorf("%s; run '%s --help' for its commands", msg, c.CommandPath())
			}
			c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// flagError adds the nearest flag names to cobra's "unknown flag" error.
func flagError(c *cobra.Command, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return err
	}
	best, bestD := []string(nil), 3
	visit := func(f *pflag.Flag) {
		d := suggest.Distance(name, f.Name)
		switch {
		case d < bestD:
			best, bestD = []string{"--" + f.Name}, d
		case d == bestD:
			best = append(best, "--"+f.Name)
		}
	}
	c.Flags().VisitAll(visit)
	c.InheritedFlags().VisitAll(visit)
	if len(best) == 0 {
		return fmt.Errorf("%w; run '%s --help' for its flags", err, c.CommandPath())
	}
	return fmt.Errorf("%w (did you mean %s?)", err, strings.Join(best, " or "))
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

// interrupted is the cause of the command context's cancellation when
// SIGINT or SIGTERM came.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.name() }

func (i interrupted) name() string {
	if i.sig == syscall.SIGTERM {
		return "SIGTERM"
	}
	return "SIGINT"
}

// exitCode is the shell's convention for a process a signal ended: 128 +
// the signal's number (130 for SIGINT, 143 for SIGTERM).
func (i interrupted) exitCode() int { return 128 + int(i.sig) }

// signalContext returns the context every command runs under: cancelled,
// with an interrupted cause, at the first SIGINT or SIGTERM. A command cut
// short returns an error, and Main exits 128+N; serve, tail and query
// --follow, which run until stopped, shut down cleanly and exit 0. The
// first signal also restores the default action, so that a second one
// ends a command that does not stop at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sigs:
			signal.Stop(sigs)
			sig, _ := s.(syscall.Signal)
			cancel(interrupted{sig: sig})
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel(nil) }
}

// stopped returns the cause of ctx's cancellation (an interrupted, or a
// --jq limit), or nil while it runs: the check a command makes between
// events.
func stopped(ctx context.Context) error {
	if ctx == nil || ctx.Err() == nil {
		return nil
	}
	return context.Cause(ctx)
}

// exitCode is an error that only sets the exit status; its message was
// already printed.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func addDataFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "data", defaultDataDir(), "data folder (default $KUBETRAIL_DATA, else ./kubetrail-data)")
	// The usage says where the default comes from; cobra would print the
	// value again.
	cmd.Flags().Lookup("data").DefValue = ""
}
