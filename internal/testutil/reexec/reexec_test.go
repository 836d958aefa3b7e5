package reexec

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	Main(map[string]func(string) int{
		"echo": func(arg string) int {
			print(strings.ToUpper(arg))
			return 3
		},
	})
	m.Run()
}

func TestCommandRunsTheRole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := Command(ctx, "echo", "from the child").CombinedOutput()
	if code := exitCode(err); code != 3 || !strings.Contains(string(out), "FROM THE CHILD") {
		t.Errorf("child: exit %d, output %q; want exit 3 and the upper-cased argument", code, out)
	}
	if role, _ := Role(); role != "" {
		t.Errorf("the test run itself has role %q", role)
	}
}

func exitCode(err error) int {
	if e, ok := err.(interface{ ExitCode() int }); ok {
		return e.ExitCode()
	}
	return 0
}
