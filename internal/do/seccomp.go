package do

import (
	"encoding/json"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/seccomp"
)

// seccompFor is the profile --seccomp asks for: default, none, or an OCI
// seccomp profile in a JSON file.
func seccompFor(v string) (*specs.LinuxSeccomp, error) {
	switch v {
	case "", "default":
		return seccomp.Default(), nil
	case "none":
		return nil, nil
	}
	data, err := os.ReadFile(v)
	if err != nil {
		return nil, inputErr("--seccomp %s: %v", v, describe(err))
	}
	var p specs.LinuxSeccomp
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, inputErr("--seccomp %s: %v", v, err)
	}
	if _, err := seccomp.Compile(&p); err != nil {
		return nil, inputErr("--seccomp %s: %v", v, err)
	}
	return &p, nil
}
