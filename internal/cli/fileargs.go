package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/policy"
)

// Commands take the files they read as arguments, and "-" for standard
// input (the conventions test checks it). Some named their file with a
// flag before; the flag still works, deprecated.

// fileArg returns the file a command reads: its argument, or the value of
// the flag that named it before (hidden by deprecateFileFlag), with a
// warning on stderr. One of them is required.
func fileArg(e *env, args []string, flag, flagVal string) (string, error) {
	switch {
	case len(args) == 1 && flagVal != "" && flagVal != args[0]:
		return "", fmt.Errorf("the file is given twice: %q and %s %q", args[0], flag, flagVal)
	case len(args) == 1:
		return args[0], nil
	case flagVal != "":
		fmt.Fprintf(e.stderr, "kubetrail: warning: %s is deprecated: give the file as the argument\n", flag)
		return flagVal, nil
	}
	return "", errors.New("give the file as the argument (- for standard input)")
}

// deprecateFileFlag hides a flag that named a command's file before it
// took it as an argument. (pflag's MarkDeprecated would print its warning
// on stdout, which cobra's output is, mixing it with -o json.)
func deprecateFileFlag(cmd *cobra.Command, name string) {
	cmd.Flags().MarkHidden(name)
}

// maxFileArg bounds what readFileArg reads: the files commands take this
// way are policies and manifests, a few kilobytes.
const maxFileArg = 8 << 20

// readFileArg reads a file, or standard input for "-", refusing more than
// maxFileArg bytes.
func readFileArg(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxFileArg+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", sourceName(name), err)
	}
	if len(data) > maxFileArg {
		return nil, fmt.Errorf("%s: larger than %d MiB", sourceName(name), maxFileArg>>20)
	}
	return data, nil
}

// sourceName is how messages name a file read by readFileArg.
func sourceName(name string) string {
	if name == "-" {
		return "<stdin>"
	}
	return name
}

// loadPolicyArg loads a policy file, or standard input for "-". Load
// errors (file:line:column) go to stderr and make exit status 1.
func loadPolicyArg(e *env, name string) (*policy.Policy, error) {
	src, err := readFileArg(name, e.stdin)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	p, err := policy.Load(sourceName(name), src)
	if err != nil {
		var list policy.ErrorList
		if errors.As(err, &list) {
			fmt.Fprintln(e.stderr, err)
			return nil, exitCode(1)
		}
		return nil, err
	}
	return p, nil
}
