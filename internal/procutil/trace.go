package procutil

import (
	"fmt"
	"os"
	"time"
)

var traceFile = os.Getenv("MOAT_TRACE_FILE")

// Trace appends a timestamped line to $MOAT_TRACE_FILE (a development aid for
// start-up latency work; off unless the variable is set).
func Trace(role, what string) {
	if traceFile == "" {
		return
	}
	f, err := os.OpenFile(traceFile, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%d %s %s\n", time.Now().UnixMicro(), role, what)
	f.Close()
}

// TraceEnv passes $MOAT_TRACE_FILE on to a helper whose environment is
// otherwise empty.
func TraceEnv() []string {
	if traceFile == "" {
		return []string{}
	}
	return []string{"MOAT_TRACE_FILE=" + traceFile}
}
