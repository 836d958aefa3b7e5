// Command moat is a rootless-first, daemonless OCI container runtime.
package main

import (
	"os"

	"github.com/moat-sandbox/moat/internal/cli"
)

func main() { cli.Main(os.Args) }
