package e2e

// OCI hooks: the six kinds, their order, the state they get on stdin, the
// namespaces they run in, and how their failures and timeouts end.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// recordHook is a hook program: `hook.sh KIND LOGDIR [ARGS...]` records the
// state it got on stdin, its args, env, mount namespace and hostname, and
// the network namespace of the pid in the state, then appends KIND to
// LOGDIR/order.
const recordHook = `#!/usr/bin/bash
kind=$1 dir=$2
cat > "$dir/$kind.state"
printf '%s\n' "${@:3}" > "$dir/$kind.args"
env > "$dir/$kind.env"
readlink /proc/self/ns/mnt > "$dir/$kind.mntns"
cat /proc/sys/kernel/hostname > "$dir/$kind.hostname"
pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$dir/$kind.state")
[ -n "$pid" ] && readlink "/proc/$pid/ns/net" > "$dir/$kind.pidnet"
echo "$kind" >> "$dir/order"
`

// writeScript writes an executable script into dir and returns its path.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/bash"); err != nil {
		t.Skip("missing prerequisite: /usr/bin/bash (hook scripts)")
	}
	must(t, os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, []byte(body), 0o755))
	return p
}

// hooksOf puts hs in the list of one kind.
func hooksOf(kind string, hs ...specs.Hook) *specs.Hooks {
	h := &specs.Hooks{}
	switch kind {
	case "prestart":
		h.Prestart = hs //nolint:staticcheck // deprecated, still run
	case "createRuntime":
		h.CreateRuntime = hs
	case "createContainer":
		h.CreateContainer = hs
	case "startContainer":
		h.StartContainer = hs
	case "poststart":
		h.Poststart = hs
	case "poststop":
		h.Poststop = hs
	}
	return h
}

// withHostUsr lets host programs (bash, coreutils) run in the container:
// the host's /usr read-only at /usr, /lib and /lib64 linking into it.
func withHostUsr(t *testing.T, b *bundle) {
	for _, l := range []string{"lib", "lib64"} {
		must(t, os.Symlink("usr/"+l, filepath.Join(b.rootfs(), l)))
	}
	bindMount(b.spec, "/usr", "/usr", "ro")
	b.save(t)
}

// hookLog reads what recordHook wrote for one kind.
type hookLog struct {
	t   *testing.T
	dir string
}

func (l hookLog) read(kind, what string) string {
	data, err := os.ReadFile(filepath.Join(l.dir, kind+"."+what))
	if err != nil {
		l.t.Errorf("%s hook left no %s: %v", kind, what, err)
	}
	return strings.TrimSpace(string(data))
}

func (l hookLog) state(kind string) specs.State {
	var st specs.State
	if err := json.Unmarshal([]byte(l.read(kind, "state")), &st); err != nil {
		l.t.Errorf("%s hook got no state JSON on stdin: %v", kind, err)
	}
	return st
}

func (l hookLog) order() []string {
	data, _ := os.ReadFile(filepath.Join(l.dir, "order"))
	return strings.Fields(string(data))
}

// checkState checks the state a hook got.
func (l hookLog) checkState(kind, id, bundleDir string, status specs.ContainerState, pid int) {
	l.t.Helper()
	st := l.state(kind)
	if st.ID != id || st.Bundle != bundleDir || st.Status != status || st.Pid != pid || st.Version == "" {
		l.t.Errorf("%s hook state: id %q bundle %q status %q pid %d version %q; want %q %q %q %d",
			kind, st.ID, st.Bundle, st.Status, st.Pid, st.Version, id, bundleDir, status, pid)
	}
	if st.Annotations["org.moat.test"] != "hooks" {
		l.t.Errorf("%s hook state annotations %v", kind, st.Annotations)
	}
}

func TestHooksAllKinds(t *testing.T) {
	e := newEnv(t)
	hookDir, logDir := filepath.Join(e.dir, "hooks"), filepath.Join(e.dir, "log")
	must(t, os.MkdirAll(logDir, 0o777))
	script := writeScript(t, hookDir, "hook.sh", recordHook)
	hook := func(path, kind, log string) specs.Hook {
		return specs.Hook{Path: path, Args: []string{"hook.sh", kind, log, "an arg", "x y"},
			Env: []string{"PATH=/usr/bin", "HOOK_KIND=" + kind}}
	}
	b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) {
		bindMount(s, hookDir, "/hooks", "ro")
		bindMount(s, logDir, "/log", "rw")
		s.Annotations = map[string]string{"org.moat.test": "hooks"}
		s.Hooks = &specs.Hooks{
			Prestart:        []specs.Hook{hook(script, "prestart", logDir)},
			CreateRuntime:   []specs.Hook{hook(script, "createRuntime", logDir)},
			CreateContainer: []specs.Hook{hook(script, "createContainer", logDir)},
			// Paths inside the container: /bin/probe is not on the host.
			StartContainer: []specs.Hook{hook("/hooks/hook.sh", "startContainer", "/log"),
				{Path: "/bin/probe", Args: []string{"probe", "append", "/log/order", "probe-in-container\n"}}},
			Poststart: []specs.Hook{hook(script, "poststart", logDir)},
			Poststop:  []specs.Hook{hook(script, "poststop", logDir)},
		}
	})
	withHostUsr(t, b)
	l := hookLog{t, logDir}
	id := e.id()
	e.moat("create", "--bundle", b.dir, id)
	if got := l.order(); !slices.Equal(got, []string{"prestart", "createRuntime", "createContainer"}) {
		t.Fatalf("hooks run by create: %v", got)
	}
	pid := initPidOf(e, id)
	checkCreateHooks(t, l, id, b.dir, pid)
	e.moat("start", id)
	if got := l.order(); !slices.Equal(got[3:], []string{"startContainer", "probe-in-container", "poststart"}) {
		t.Fatalf("hooks run by start: %v", got)
	}
	// startContainer runs in the container, where init is pid 1.
	l.checkState("startContainer", id, b.dir, specs.StateCreated, 1)
	if l.read("startContainer", "mntns") != ns(t, pid, "mnt") {
		t.Error("startContainer hook did not run in the container's mount namespace")
	}
	l.checkState("poststart", id, b.dir, specs.StateRunning, pid)
	e.moat("kill", id, "KILL")
	e.waitStatus(id, "stopped")
	e.moat("delete", id)
	l.checkState("poststop", id, b.dir, specs.StateStopped, 0)
	if got := l.order(); len(got) != 7 || got[6] != "poststop" {
		t.Errorf("hook order %v", got)
	}
}

// checkCreateHooks checks what prestart, createRuntime and createContainer
// saw while the container was being created.
func checkCreateHooks(t *testing.T, l hookLog, id, bundleDir string, pid int) {
	t.Helper()
	hostName, _ := os.Hostname()
	for _, kind := range []string{"prestart", "createRuntime"} {
		l.checkState(kind, id, bundleDir, specs.StateCreating, pid)
		if l.read(kind, "pidnet") != ns(t, pid, "net") || ns(t, pid, "net") == ns(t, os.Getpid(), "net") {
			t.Errorf("%s hook: /proc/<state pid>/ns/net is not the container's network namespace", kind)
		}
		if l.read(kind, "mntns") != ns(t, os.Getpid(), "mnt") || l.read(kind, "hostname") != hostName {
			t.Errorf("%s hook did not run in the runtime's namespaces", kind)
		}
		if args := l.read(kind, "args"); args != "an arg\nx y" {
			t.Errorf("%s hook args %q", kind, args)
		}
		if env := l.read(kind, "env"); !strings.Contains(env, "HOOK_KIND="+kind+"\n") {
			t.Errorf("%s hook env lacks HOOK_KIND:\n%s", kind, env)
		}
	}
	// createContainer runs in the container's namespaces (as pid 1's
	// child, so the state names pid 1), its path resolved on the host.
	l.checkState("createContainer", id, bundleDir, specs.StateCreating, 1)
	if l.read("createContainer", "mntns") != ns(t, pid, "mnt") {
		t.Error("createContainer hook did not run in the container's mount namespace")
	}
	if h := l.read("createContainer", "hostname"); h != "moat-test" {
		t.Errorf("createContainer hook saw hostname %q, want the container's moat-test", h)
	}
}

// leftoversOf lists what remains of a container id after a failed create:
// state, processes naming it, cgroups named after it, mounts of its bundle.
func leftoversOf(e *env, id, bundleDir string) []string {
	var out []string
	if _, err := os.Stat(filepath.Join(e.root, id)); err == nil {
		out = append(out, "state directory")
	}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		cmdline, _ := os.ReadFile("/proc/" + ent.Name() + "/cmdline")
		if slices.Contains(strings.Split(string(cmdline), "\x00"), id) {
			out = append(out, "process "+ent.Name())
		}
	}
	filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == id {
			out = append(out, "cgroup "+p)
		}
		return nil
	})
	if data, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(data), bundleDir) {
		out = append(out, "mounts of the bundle")
	}
	return out
}

func checkNothingLeft(e *env, id, bundleDir string) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := leftoversOf(e, id, bundleDir)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			e.t.Errorf("failed create of %s left %v", id, left)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if q := strings.TrimSpace(e.moat("list", "-q")); q != "" {
		e.t.Errorf("list after a failed create: %q", q)
	}
}

func TestHooksFailureFailsCreate(t *testing.T) {
	for _, kind := range []string{"prestart", "createRuntime", "createContainer"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			script := writeScript(t, filepath.Join(e.dir, "hooks"), "fail.sh",
				"#!/usr/bin/bash\necho \"$1 hook refuses: no network\" >&2\nexit 3\n")
			b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) {
				s.Hooks = hooksOf(kind, specs.Hook{Path: script, Args: []string{"fail.sh", kind}})
			})
			id := e.id()
			e.fails(kind+" hook refuses: no network", "create", "--bundle", b.dir, id)
			e.fails("does not exist", "state", id)
			checkNothingLeft(e, id, b.dir)
		})
	}
}

func TestHooksStartContainerFailureFailsStart(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) {
		s.Hooks = hooksOf("startContainer", specs.Hook{Path: "/bin/probe", Args: []string{"probe", "cat", "/no/such/file"}})
	})
	id := e.id()
	e.moat("create", "--bundle", b.dir, id)
	e.fails("/no/such/file", "start", id)
	if st := e.status(id); st == "running" {
		t.Errorf("container is %s after its startContainer hook failed", st)
	}
	e.moat("delete", "--force", id)
	checkNothingLeft(e, id, b.dir)
}

func TestHooksTimeout(t *testing.T) {
	for _, kind := range []string{"prestart", "createContainer"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			pidFile := filepath.Join(e.dir, "hookpid")
			script := writeScript(t, filepath.Join(e.dir, "hooks"), "slow.sh",
				"#!/usr/bin/bash\necho $$ > "+pidFile+"\nexec sleep 60\n")
			b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) {
				s.Hooks = hooksOf(kind, specs.Hook{Path: script, Timeout: ptr(2)})
			})
			id := e.id()
			begin := time.Now()
			e.fails("timed out", "create", "--bundle", b.dir, id)
			if d := time.Since(begin); d < 2*time.Second || d > 8*time.Second {
				t.Errorf("create with a hook timeout of 2s failed after %s", d.Round(time.Millisecond))
			}
			if kind == "prestart" { // its pid is a host pid
				if hp := readPid(t, pidFile); !waitGone(hp, 5*time.Second) {
					t.Errorf("timed-out hook %d still runs", hp)
				}
			}
			checkNothingLeft(e, id, b.dir)
		})
	}
}

func TestHooksPoststartAndPoststopFailuresWarn(t *testing.T) {
	e := newEnv(t)
	script := writeScript(t, filepath.Join(e.dir, "hooks"), "fail.sh",
		"#!/usr/bin/bash\necho \"$1 failed on purpose\" >&2\nexit 1\n")
	b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) {
		s.Hooks = &specs.Hooks{
			Poststart: []specs.Hook{{Path: script, Args: []string{"fail.sh", "poststart"}}},
			Poststop:  []specs.Hook{{Path: script, Args: []string{"fail.sh", "poststop"}}},
		}
	})
	id := e.id()
	e.moat("create", "--bundle", b.dir, id)
	r := e.run(nil, "start", id)
	if r.code != 0 || !strings.Contains(r.stderr, "poststart failed on purpose") {
		t.Errorf("start with a failing poststart hook: want success with a warning\n%s", r)
	}
	if st := e.status(id); st != "running" {
		t.Errorf("container is %s after a poststart failure, want running", st)
	}
	e.moat("kill", id, "KILL")
	e.waitStatus(id, "stopped")
	r = e.run(nil, "delete", id)
	if r.code != 0 || !strings.Contains(r.stderr, "poststop failed on purpose") {
		t.Errorf("delete with a failing poststop hook: want success with a warning\n%s", r)
	}
	e.fails("does not exist", "state", id)
}
