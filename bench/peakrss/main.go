// Command peakrss runs a command and writes its wall time and peak
// resident set size to a file, so that bench/run can report the memory a
// command itself needs.
//
//	peakrss -o result.json -- kubetrail query --count user=admin
//
// bench/run cannot read a child's peak RSS itself: Linux counts, in a
// child's ru_maxrss, the high-water mark of the memory it was started from
// (the parent's, with os/exec's vfork), so every child of a large process
// reports at least that process's peak. peakrss is small, so the peak it
// passes on is a few MiB, below any command measured. Standard input and
// output go to the command; SIGINT and SIGTERM are passed on; the exit
// status is the command's.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	out := flag.String("o", "", "file to write {\"seconds\",\"maxrss\"} to (required)")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: peakrss -o FILE -- COMMAND [ARG...]")
		os.Exit(2)
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(127)
	}
	go func() {
		for s := range sig {
			cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	d := time.Since(t0)
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024
	}
	b, _ := json.Marshal(map[string]any{"seconds": d.Seconds(), "maxrss": rss})
	if werr := os.WriteFile(*out, b, 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, "peakrss:", werr)
		os.Exit(1)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(max(ee.ExitCode(), 1))
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(1)
	}
}
