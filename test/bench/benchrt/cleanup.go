package benchrt

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Registry records the containers a benchmark has created and the temporary directories
// it made, so that CleanupAll can remove them on exit, on error and on a signal.
type Registry struct {
	Name          string        // command name, the prefix of its log lines
	DeleteTimeout time.Duration // allowed for `delete --force` in Destroy
	KeepTmp       bool          // CleanupAll leaves the temporary directories

	mu      sync.Mutex
	live    map[string]container
	tmpDirs []string
}

type container struct {
	rt *Runtime
	id string
}

// Track records container id of rt as live.
func (g *Registry) Track(rt *Runtime, id string) {
	g.mu.Lock()
	if g.live == nil {
		g.live = map[string]container{}
	}
	g.live[rt.Label+"/"+id] = container{rt, id}
	g.mu.Unlock()
}

// Untrack forgets container id of rt (it is gone).
func (g *Registry) Untrack(rt *Runtime, id string) {
	g.mu.Lock()
	delete(g.live, rt.Label+"/"+id)
	g.mu.Unlock()
}

// Destroy removes container id of rt, quietly: `kill ID KILL` (15 s allowed), `delete
// --force ID` (DeleteTimeout), then a plain `delete ID` (15 s) for runtimes that do not
// know --force. Then it untracks the container. Native runtimes have no containers.
func (g *Registry) Destroy(rt *Runtime, id string) {
	if rt.Native {
		return
	}
	Quiet(rt.Cmd("kill", id, "KILL"), 15*time.Second)
	Quiet(rt.Cmd("delete", "--force", id), g.DeleteTimeout)
	Quiet(rt.Cmd("delete", id), 15*time.Second)
	g.Untrack(rt, id)
}

// TempDir makes a temporary directory (os.MkdirTemp("", pattern)), mode 0755 so that
// runtimes and their helpers can reach it, to be removed by CleanupAll.
func (g *Registry) TempDir(pattern string) (string, error) {
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	g.mu.Lock()
	g.tmpDirs = append(g.tmpDirs, d)
	g.mu.Unlock()
	return d, os.Chmod(d, 0o755)
}

// CleanupAll destroys every tracked container, saying so on stderr, then removes the
// temporary directories unless KeepTmp.
func (g *Registry) CleanupAll() {
	g.mu.Lock()
	l := make([]container, 0, len(g.live))
	for _, v := range g.live {
		l = append(l, v)
	}
	g.mu.Unlock()
	for _, v := range l {
		fmt.Fprintf(os.Stderr, "%s: cleaning up %s container %s\n", g.Name, v.rt.Label, v.id)
		g.Destroy(v.rt, v.id)
	}
	if !g.KeepTmp {
		g.mu.Lock()
		for _, d := range g.tmpDirs {
			_ = os.RemoveAll(d)
		}
		g.mu.Unlock()
	}
}

// Quiet runs c without input or output, killing it after d.
func Quiet(c *exec.Cmd, d time.Duration) {
	c.Stdin, c.Stdout, c.Stderr = nil, nil, nil
	if err := c.Start(); err != nil {
		return
	}
	_ = WaitFor(c, d)
}

// WaitFor waits for the started c, killing it after d. It returns c.Wait's error, or
// "timed out after d".
func WaitFor(c *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		_ = c.Process.Kill()
		<-done
		return fmt.Errorf("timed out after %v", d)
	}
}

// ExitOnSignal calls f (in another goroutine) on the first SIGINT, SIGTERM or SIGHUP,
// then exits with status 130.
func ExitOnSignal(f func(os.Signal)) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		f(<-sigc)
		os.Exit(130)
	}()
}
