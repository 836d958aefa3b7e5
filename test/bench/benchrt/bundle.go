package benchrt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// BaseSpec returns the config.json that `runc spec` writes or, failing that, the first
// of rts (Native ones skipped) whose `spec` works; each is tried in a new temporary
// directory under work.
func BaseSpec(rts []*Runtime, work string) (map[string]any, error) {
	cands := []*Runtime{{Label: "runc", Argv: []string{"runc"}}}
	for _, rt := range rts {
		if !rt.Native {
			cands = append(cands, rt)
		}
	}
	var errs []string
	for _, rt := range cands {
		d, err := os.MkdirTemp(work, "spec")
		if err != nil {
			return nil, err
		}
		if out, err := rt.Cmd("spec", "--bundle", d).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("%s spec: %v %s", rt.Label, err, bytes.TrimSpace(out)))
			continue
		}
		data, err := os.ReadFile(filepath.Join(d, "config.json"))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return m, nil
	}
	return nil, fmt.Errorf("no runtime produced a spec: %s", strings.Join(errs, "; "))
}

// WithArgs returns a deep copy of the spec base (nothing shared with it) whose process
// runs args without a terminal.
func WithArgs(base map[string]any, args []string) (map[string]any, error) {
	data, _ := json.Marshal(base)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	proc, _ := m["process"].(map[string]any)
	if proc == nil {
		return nil, errors.New("spec has no process")
	}
	proc["terminal"] = false
	a := make([]any, len(args))
	for i, s := range args {
		a[i] = s
	}
	proc["args"] = a
	return m, nil
}

// WriteConfig writes spec as dir/config.json, making dir if needed.
func WriteConfig(dir string, spec map[string]any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), out, 0o644)
}
