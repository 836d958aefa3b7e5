package cgroup

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	devcfg "github.com/opencontainers/cgroups/devices/config"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestConvertResourcesErrors(t *testing.T) {
	cases := []struct {
		name string
		v2   bool
		r    specs.LinuxResources
		want string
	}{
		{"memory limit", false, specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(-2))}}, "memory.limit -2"},
		{"memory reservation", false, specs.LinuxResources{Memory: &specs.LinuxMemory{Reservation: ptr(int64(-3))}}, "memory.reservation -3"},
		{"swap below limit", false, specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(200)), Swap: ptr(int64(100))}}, "must be >= memory.limit 200"},
		{"v2 swap without limit", true, specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: ptr(int64(100))}}, "without memory limit"},
		{"swappiness", false, specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: ptr(uint64(101))}}, "swappiness 101"},
		{"shares low", false, specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(1))}}, "cpu.shares 1"},
		{"shares high", true, specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(300000))}}, "cpu.shares 300000"},
		{"quota", false, specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(500))}}, "cpu.quota 500"},
		{"period", false, specs.LinuxResources{CPU: &specs.LinuxCPU{Period: ptr(uint64(2000000))}}, "cpu.period 2000000"},
		{"cpus", false, specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-"}}, `cpu.cpus "0-"`},
		{"mems", false, specs.LinuxResources{CPU: &specs.LinuxCPU{Mems: "a"}}, `cpu.mems "a"`},
		{"idle", false, specs.LinuxResources{CPU: &specs.LinuxCPU{Idle: ptr(int64(2))}}, "cpu.idle 2"},
		{"rt runtime", false, specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: ptr(int64(-2))}}, "realtimeRuntime -2"},
		{"rt on v2", true, specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimePeriod: ptr(uint64(1000))}}, "not supported on cgroup v2"},
		{"pids", false, specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(-9))}}, "pids.limit -9"},
		{"blkio weight", false, specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: ptr(uint16(5))}}, "blockIO.weight 5"},
		{"blkio device", false, specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{
			{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: -1, Minor: 0}, Rate: 1}}}}, "throttleReadBpsDevice[0] device -1:0"},
		{"blkio weight device", false, specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{WeightDevice: []specs.LinuxWeightDevice{
			{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8}, Weight: ptr(uint16(2000))}}}}, "weightDevice[0].weight 2000"},
		{"hugepage size", false, specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "3MB", Limit: 1}}}, `pageSize "3MB"`},
		{"unified on v1", false, specs.LinuxResources{Unified: map[string]string{"memory.high": "1"}}, "only supported on cgroup v2"},
		{"unified key", true, specs.LinuxResources{Unified: map[string]string{"../x": "1"}}, `unified key "../x"`},
		{"ifprio", false, specs.LinuxResources{Network: &specs.LinuxNetwork{Priorities: []specs.LinuxInterfacePriority{{Name: ""}}}}, "priorities[0].name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := convertResources(&c.r, c.v2)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("convertResources: %v, want an error containing %q", err, c.want)
			}
			if msg := err.Error(); msg[0] >= 'A' && msg[0] <= 'Z' {
				t.Errorf("error is not lower-case: %q", msg)
			}
		})
	}
}

func TestConvertResourcesValues(t *testing.T) {
	r := &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: ptr(int64(-1)), Kernel: ptr(int64(1)), Swappiness: ptr(uint64(10)), DisableOOMKiller: ptr(true)},
		CPU:     &specs.LinuxCPU{Shares: ptr(uint64(1024)), Quota: ptr(int64(-1)), Cpus: "0-3,6", Mems: "0"},
		Pids:    &specs.LinuxPids{Limit: ptr(int64(0))},
		Network: &specs.LinuxNetwork{ClassID: ptr(uint32(7))},
		BlockIO: &specs.LinuxBlockIO{Weight: ptr(uint16(500)), ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{
			{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 100}}},
	}
	v1, notes1, err := convertResources(r, false)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Memory != -1 || !v1.OomKillDisable || *v1.MemorySwappiness != 10 || v1.CpuShares != 1024 ||
		v1.CpuWeight != 100 || v1.CpuQuota != -1 || v1.CpusetCpus != "0-3,6" || *v1.PidsLimit != 0 ||
		v1.NetClsClassid != 7 || v1.BlkioWeight != 500 || v1.BlkioThrottleWriteIOPSDevice[0].String() != "8:0 100" {
		t.Errorf("v1 conversion: %+v", v1)
	}
	if len(notes1) != 2 { // kernel memory, pids 0
		t.Errorf("v1 notes: %q", notes1)
	}
	v2, notes2, err := convertResources(r, true)
	if err != nil {
		t.Fatal(err)
	}
	if v2.MemorySwappiness != nil || v2.OomKillDisable || v2.NetClsClassid != 0 {
		t.Errorf("v2 conversion kept v1-only settings: %+v", v2)
	}
	if len(notes2) != 5 { // + swappiness, OOM killer, network
		t.Errorf("v2 notes: %q", notes2)
	}
}

func TestDeviceRules(t *testing.T) {
	rules, err := deviceRules(
		[]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "b", Major: ptr(int64(8)), Access: "r"}},
		[]specs.LinuxDevice{{Path: "/dev/fuse", Type: "u", Major: 10, Minor: 229}, {Path: "/dev/fifo", Type: "p"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		s := r.CgroupString()
		if !r.Allow {
			s = "deny " + s
		}
		got = append(got, s)
	}
	want := []string{
		"deny a *:* rwm", "b 8:* r",
		"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
		"c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm",
		"c 10:229 rwm",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rules:\n got %q\nwant %q", got, want)
	}
	for _, bad := range []specs.LinuxDeviceCgroup{{Access: ""}, {Access: "rwx"}, {Type: "p", Access: "r"}, {Major: ptr(int64(-2)), Access: "r"}} {
		if _, err := deviceRules([]specs.LinuxDeviceCgroup{bad}, nil); err == nil {
			t.Errorf("deviceRules accepted %+v", bad)
		}
	}
	if _, err := deviceRules(nil, []specs.LinuxDevice{{Path: "/dev/x", Type: "z"}}); err == nil {
		t.Error("deviceRules accepted linux.devices type z")
	}
	if rules[0].Type != devcfg.WildcardDevice {
		t.Errorf("empty type did not become a wildcard: %c", rules[0].Type)
	}
}

func TestPlacement(t *testing.T) {
	cases := []struct {
		path    string
		systemd bool
		want    cgroups.Cgroup
	}{
		{"", false, cgroups.Cgroup{Name: "c1"}},
		{"/k8s.io/c1", false, cgroups.Cgroup{Path: "/k8s.io/c1"}},
		{"moat//c1/", false, cgroups.Cgroup{Path: "moat/c1"}},
		{"", true, cgroups.Cgroup{ScopePrefix: "moat", Name: "c1"}},
		{"system.slice:docker:c1", true, cgroups.Cgroup{Parent: "system.slice", ScopePrefix: "docker", Name: "c1"}},
		{":moat:c1", true, cgroups.Cgroup{ScopePrefix: "moat", Name: "c1"}},
		{"machine.slice::c1.slice", true, cgroups.Cgroup{Parent: "machine.slice", Name: "c1.slice"}},
	}
	for _, c := range cases {
		var got cgroups.Cgroup
		if err := placement(&got, "c1", c.path, c.systemd); err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("placement(%q, systemd=%v) = %+v, %v; want %+v", c.path, c.systemd, got, err, c.want)
		}
	}
	for _, bad := range []struct {
		id, path string
		systemd  bool
	}{
		{"", "", false}, {"..", "", false}, {"c1", "/a/../b", false}, {"c1", "/", false},
		{"c1", "system.slice:moat:c1", false}, {"c1", "a:b", true}, {"c1", "bad:moat:c1", true},
		{"c1", "system.slice::c1", true}, {"c1", "system.slice:moat:", true}, {"c1", "/x\x00", false},
	} {
		var cg cgroups.Cgroup
		if err := placement(&cg, bad.id, bad.path, bad.systemd); err == nil {
			t.Errorf("placement(%q, %q, systemd=%v) accepted", bad.id, bad.path, bad.systemd)
		}
	}
}

func TestMergeResources(t *testing.T) {
	base := &specs.LinuxResources{
		Devices:        []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Memory:         &specs.LinuxMemory{Limit: ptr(int64(100)), Swap: ptr(int64(200))},
		CPU:            &specs.LinuxCPU{Shares: ptr(uint64(512)), Cpus: "0"},
		Unified:        map[string]string{"a.b": "1", "c.d": "2"},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}},
	}
	upd := &specs.LinuxResources{
		Devices:        []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
		Memory:         &specs.LinuxMemory{Limit: ptr(int64(150))},
		CPU:            &specs.LinuxCPU{Quota: ptr(int64(5000))},
		Pids:           &specs.LinuxPids{Limit: ptr(int64(9))},
		Unified:        map[string]string{"c.d": "3"},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 2}, {Pagesize: "1GB", Limit: 3}},
	}
	baseJSON, _ := json.Marshal(base)
	got := mergeResources(base, upd)
	want := &specs.LinuxResources{
		Devices:        []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Memory:         &specs.LinuxMemory{Limit: ptr(int64(150)), Swap: ptr(int64(200))},
		CPU:            &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(5000)), Cpus: "0"},
		Pids:           &specs.LinuxPids{Limit: ptr(int64(9))},
		Unified:        map[string]string{"a.b": "1", "c.d": "3"},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 2}, {Pagesize: "1GB", Limit: 3}},
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("merge:\n got %s\nwant %s", g, w)
	}
	if after, _ := json.Marshal(base); string(after) != string(baseJSON) {
		t.Errorf("merge modified base: %s", after)
	}
	*got.Memory.Limit = 1
	if *upd.Memory.Limit != 150 {
		t.Error("merge result aliases the update")
	}
}

func TestStatsJSONFieldNames(t *testing.T) {
	in := cgroups.NewStats()
	in.CpuStats.CpuUsage.TotalUsage = 1
	in.CpuStats.ThrottlingData.ThrottledPeriods = 2
	in.CpuStats.PSI = &cgroups.PSIStats{Some: cgroups.PSIData{Avg10: 1.5}}
	in.MemoryStats.Usage = cgroups.MemoryData{Usage: 3, MaxUsage: 4, Limit: 5}
	in.MemoryStats.Stats["rss"] = 6
	in.PidsStats.Current = 7
	in.BlkioStats.IoServiceBytesRecursive = []cgroups.BlkioStatEntry{{Major: 8, Op: "Read", Value: 9}}
	in.HugetlbStats["2MB"] = cgroups.HugetlbStats{Usage: 10, MaxUsage: 11}
	data, err := json.Marshal(convertStats(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{
		`"cpu":{"usage":{"total":1,"kernel":0,"user":0},"throttling":{"throttledPeriods":2},"psi":{"some":{"avg10":1.5`,
		`"memory":{"usage":{"limit":5,"usage":3,"max":4,"failcnt":0}`,
		`"raw":{"rss":6}`, `"pids":{"current":7}`,
		`"blkio":{"ioServiceBytesRecursive":[{"major":8,"op":"Read","value":9}]}`,
		`"hugetlb":{"2MB":{"usage":10,"max":11,"failcnt":0}}`,
		`"intel_rdt":{}`, `"network_interfaces":null`,
	} {
		if !strings.Contains(string(data), frag) {
			t.Errorf("stats JSON lacks %s:\n%s", frag, data)
		}
	}
}

func TestLoadRejectsBadState(t *testing.T) {
	for _, s := range []Saved{
		{ContainerID: "c1"},
		{ContainerID: "c1", Paths: map[string]string{"": "relative/dir"}},
		{ContainerID: "c1", Paths: map[string]string{"memory": "/sys/fs/cgroup/memory/../../etc"}},
		{ContainerID: "", Paths: map[string]string{"": "/sys/fs/cgroup/x"}},
	} {
		if m, err := Load(s); err == nil {
			t.Errorf("Load(%+v) = %v, want an error", s, m)
		}
	}
}
