package cgroup

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
)

// controllerUse ties spec fields to the controller they need.
type controllerUse struct {
	fields string // spec fields, for messages
	v1, v2 string // controller name per cgroup version ("" = none)
	used   func(r *cgroups.Resources) bool
}

var controllerUses = []controllerUse{
	{"memory", "memory", "memory", func(r *cgroups.Resources) bool {
		return r.Memory != 0 || r.MemoryReservation != 0 || r.MemorySwap != 0 || r.OomKillDisable || r.MemorySwappiness != nil
	}},
	{"cpu shares/quota/period/burst/realtime/idle", "cpu", "cpu", func(r *cgroups.Resources) bool {
		return r.CpuShares != 0 || r.CpuQuota != 0 || r.CpuPeriod != 0 || r.CpuBurst != nil ||
			r.CpuRtRuntime != 0 || r.CpuRtPeriod != 0 || r.CPUIdle != nil
	}},
	{"cpu.cpus/cpu.mems", "cpuset", "cpuset", func(r *cgroups.Resources) bool {
		return r.CpusetCpus != "" || r.CpusetMems != ""
	}},
	{"pids", "pids", "pids", func(r *cgroups.Resources) bool { return r.PidsLimit != nil }},
	{"blockIO", "blkio", "io", func(r *cgroups.Resources) bool {
		return r.BlkioWeight != 0 || r.BlkioLeafWeight != 0 || len(r.BlkioWeightDevice) > 0 ||
			len(r.BlkioThrottleReadBpsDevice) > 0 || len(r.BlkioThrottleWriteBpsDevice) > 0 ||
			len(r.BlkioThrottleReadIOPSDevice) > 0 || len(r.BlkioThrottleWriteIOPSDevice) > 0
	}},
	{"hugepageLimits", "hugetlb", "hugetlb", func(r *cgroups.Resources) bool { return len(r.HugetlbLimit) > 0 }},
	{"network.classID", "net_cls", "", func(r *cgroups.Resources) bool { return r.NetClsClassid != 0 }},
	{"network.priorities", "net_prio", "", func(r *cgroups.Resources) bool { return len(r.NetPrioIfpriomap) > 0 }},
	{"rdma", "rdma", "rdma", func(r *cgroups.Resources) bool { return len(r.Rdma) > 0 }},
}

// checkControllers fails with a message naming the spec field when r needs a
// controller this host does not offer: on v1 a hierarchy that is not mounted
// (paths are the manager's per-controller paths), on v2 a controller missing
// from the root cgroup.controllers. Checking before anything is created keeps
// a doomed Apply from leaving directories behind.
func checkControllers(r *cgroups.Resources, v2 bool, paths map[string]string) error {
	have := func(name string) bool { _, ok := paths[name]; return ok }
	where := "mounted cgroup v1 hierarchies"
	if v2 {
		data, err := cgroups.ReadFile(fs2.UnifiedMountpoint, "cgroup.controllers")
		if err != nil {
			return fmt.Errorf("read available cgroup v2 controllers: %w", err)
		}
		avail := strings.Fields(data)
		have = func(name string) bool { return slices.Contains(avail, name) }
		where = fs2.UnifiedMountpoint + "/cgroup.controllers"
	}
	for _, u := range controllerUses {
		name := u.v1
		if v2 {
			name = u.v2
		}
		if name == "" || !u.used(r) || have(name) {
			continue
		}
		return fmt.Errorf("linux.resources.%s needs the %q cgroup controller, which this host does not offer (not in %s)", u.fields, name, where)
	}
	return nil
}
