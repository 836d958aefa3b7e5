// Command decodecost measures what decoding its start-up message costs a
// fresh moat process: a cold json.Unmarshal (the first of its types in
// the process, as in the gofer or an exec helper), each run in a new
// process, interleaved, median of N.
//
// Usage: decodecost [-n 41] STATE.JSON
//
// STATE.JSON is a created container's state.json (its plan). It compares
// the gofer's message before issue 14 (the whole spec) with its part of
// the plan (ipc.BootGoferConfig), and the exec helper's BootExecConfig
// with the whole spec (before) and with the parts it uses (after).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/ipc"
)

// oldExecConfig is BootExecConfig as it was: the process and the spec.
type oldExecConfig struct {
	Process     *specs.Process             `json:"process"`
	Spec        *specs.Spec                `json:"spec"`
	Namespaces  []specs.LinuxNamespaceType `json:"namespaces"`
	PreserveFDs int                        `json:"preserveFDs"`
}

var cases = []struct {
	name   string
	encode func(p *ipc.Plan) any
	decode func(data []byte) error
}{
	{"gofer, before: the spec", func(p *ipc.Plan) any { return p.Spec },
		func(d []byte) error { var s specs.Spec; return json.Unmarshal(d, &s) }},
	{"gofer, after: BootGoferConfig", func(p *ipc.Plan) any { return p.Gofer },
		func(d []byte) error { var c ipc.BootGoferConfig; return json.Unmarshal(d, &c) }},
	{"exec helper, before: process + spec", func(p *ipc.Plan) any {
		return oldExecConfig{Process: p.Spec.Process, Spec: p.Spec}
	}, func(d []byte) error { var c oldExecConfig; return json.Unmarshal(d, &c) }},
	{"exec helper, after: process + seccomp + personality", func(p *ipc.Plan) any {
		return ipc.BootExecConfig{Process: p.Spec.Process, Seccomp: p.Spec.Linux.Seccomp, Personality: p.Spec.Linux.Personality}
	}, func(d []byte) error { var c ipc.BootExecConfig; return json.Unmarshal(d, &c) }},
}

func main() {
	if c := os.Getenv("DECODECOST_CASE"); c != "" {
		os.Exit(child(c))
	}
	n := flag.Int("n", 41, "runs per case")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: decodecost [-n N] STATE.JSON")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *n); err != nil {
		fmt.Fprintln(os.Stderr, "decodecost:", err)
		os.Exit(1)
	}
}

func run(statePath string, n int) error {
	data, err := os.ReadFile(statePath)
	if err != nil {
		return err
	}
	var st struct {
		Plan *ipc.Plan `json:"plan"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return err
	}
	if st.Plan == nil || st.Plan.Spec == nil || st.Plan.Gofer == nil {
		return fmt.Errorf("%s has no plan with a gofer part (a container created with --file-access=gofer)", statePath)
	}
	dir, err := os.MkdirTemp("", "decodecost")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sizes := make([]int, len(cases))
	for i, c := range cases {
		b, err := json.Marshal(c.encode(st.Plan))
		if err != nil {
			return err
		}
		sizes[i] = len(b)
		if err := os.WriteFile(fmt.Sprintf("%s/%d.json", dir, i), b, 0o600); err != nil {
			return err
		}
	}
	times := make([][]float64, len(cases))
	for r := 0; r < n; r++ {
		for i := range cases {
			cmd := exec.Command("/proc/self/exe")
			cmd.Env = append(os.Environ(), "DECODECOST_CASE="+strconv.Itoa(i), "DECODECOST_FILE="+fmt.Sprintf("%s/%d.json", dir, i))
			out, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("case %d: %w", i, err)
			}
			us, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
			if err != nil {
				return err
			}
			times[i] = append(times[i], us)
		}
	}
	fmt.Printf("cold json.Unmarshal in a fresh process, median of %d (interleaved):\n", n)
	for i, c := range cases {
		sort.Float64s(times[i])
		fmt.Printf("  %-52s %6d bytes  %7.0f µs\n", c.name, sizes[i], times[i][len(times[i])/2])
	}
	return nil
}

// child decodes one case's message once, timing only the decode.
func child(c string) int {
	i, err := strconv.Atoi(c)
	if err != nil || i < 0 || i >= len(cases) {
		return 2
	}
	data, err := os.ReadFile(os.Getenv("DECODECOST_FILE"))
	if err != nil {
		return 1
	}
	t0 := time.Now()
	if err := cases[i].decode(data); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%.1f\n", float64(time.Since(t0).Nanoseconds())/1000)
	return 0
}
