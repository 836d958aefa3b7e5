package procutil

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestStartupPages(t *testing.T) {
	p := FindStartupPages()
	if len(p) == 0 {
		t.Fatal("no read-only mappings of the executable found")
	}
	// The code of this very function is in one of them.
	pc, _, _, _ := runtime.Caller(0)
	in := false
	for _, r := range p {
		if uintptr(pc) >= r[0] && uintptr(pc) < r[1] {
			in = true
		}
	}
	if !in {
		t.Errorf("the test's own code at %#x is not in %x", pc, p)
	}
	// Never a writable mapping: dropping those would lose data.
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1][1] != 'w' {
			continue
		}
		for _, r := range p {
			if strings.HasPrefix(f[0], fmt.Sprintf("%x-", r[0])) {
				t.Errorf("writable mapping %s among the startup pages", line)
			}
		}
	}
	// Dropping them is harmless: the code runs on, data stays.
	keep := strings.Repeat("x", 3)
	p.Drop()
	if keep != "xxx" || !strings.Contains(string(maps), "/") {
		t.Error("state changed after Drop")
	}
}
