// Package reexec is the one harness for tests that need a fresh process of
// their own test binary: a new namespace, a seccomp filter, a jail, a
// confined gofer. The test starts Command(ctx, role, arg); the re-executed
// binary's TestMain calls Main, which runs that role's function and exits
// with its code (or, for a role that goes on to run tests in its new
// surroundings, TestMain asks Role itself).
package reexec

import (
	"context"
	"os"
	"os/exec"
)

// The role and its argument travel in the environment: flags after the
// test binary's own would be taken for test flags.
const (
	roleEnv = "MOAT_TEST_ROLE"
	argEnv  = "MOAT_TEST_ROLE_ARG"
)

// Role reports the role this test binary was re-executed for ("" in the
// test run itself) and its argument.
func Role() (role, arg string) { return os.Getenv(roleEnv), os.Getenv(argEnv) }

// Main runs the function registered for this process's role and exits
// with what it returns. In the test run itself, or for a role it does not
// list, it returns at once.
// Precondition: called first thing in TestMain.
func Main(roles map[string]func(arg string) int) {
	role, arg := Role()
	if f, ok := roles[role]; ok && role != "" {
		os.Exit(f(arg))
	}
}

// Command re-executes the running test binary in role, with arg. The
// child runs no tests (-test.run=^$) unless testFlags say which (a role
// that runs tests in its new surroundings). It inherits the environment.
// ctx bounds it: every wait has an end.
func Command(ctx context.Context, role, arg string, testFlags ...string) *exec.Cmd {
	if len(testFlags) == 0 {
		testFlags = []string{"-test.run=^$"}
	}
	cmd := exec.CommandContext(ctx, "/proc/self/exe", testFlags...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role, argEnv+"="+arg)
	return cmd
}
