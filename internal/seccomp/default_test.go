package seccomp

import "testing"

// The default profile compiles for every architecture it names, and names
// no call twice.
func TestDefaultProfileCompiles(t *testing.T) {
	if _, err := Compile(Default()); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range allowed {
		if seen[n] {
			t.Errorf("%s allowed twice", n)
		}
		seen[n] = true
	}
	for _, banned := range []string{"ptrace", "bpf", "io_uring_setup", "userfaultfd", "perf_event_open", "keyctl",
		"add_key", "request_key", "kexec_load", "init_module", "finit_module", "setns", "mount", "process_vm_writev"} {
		if seen[banned] {
			t.Errorf("%s is allowed", banned)
		}
	}
}
