// Command kubetrail covers the whole life of Kubernetes API-server audit
// logging: configure, collect, keep, investigate, detect.
package main

import (
	"os"

	"github.com/kubetrail/kubetrail/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
