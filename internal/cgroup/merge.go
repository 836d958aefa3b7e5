package cgroup

import (
	"maps"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// set replaces *dst with src when src is set.
func set[T any](dst **T, src *T) {
	if src != nil {
		*dst = src
	}
}

// mergeResources returns a copy of base with upd laid over it, the way
// `runc update` applies its --resources: set pointers and non-empty strings
// in upd win, maps (unified, rdma, hugepage limits by page size) merge by key,
// non-empty lists (block IO devices, network priorities) replace. Device
// rules are kept from base. Neither argument is modified or aliased.
func mergeResources(base, upd *specs.LinuxResources) *specs.LinuxResources {
	out := cloneResources(base)
	if out == nil {
		out = &specs.LinuxResources{}
	}
	u := cloneResources(upd)
	if u == nil {
		return out
	}
	if u.Memory != nil {
		out.Memory = mergeMemory(out.Memory, u.Memory)
	}
	if u.CPU != nil {
		out.CPU = mergeCPU(out.CPU, u.CPU)
	}
	if u.Pids != nil {
		if out.Pids == nil {
			out.Pids = &specs.LinuxPids{}
		}
		set(&out.Pids.Limit, u.Pids.Limit)
	}
	if u.BlockIO != nil {
		out.BlockIO = mergeBlockIO(out.BlockIO, u.BlockIO)
	}
	if u.Network != nil {
		if out.Network == nil {
			out.Network = &specs.LinuxNetwork{}
		}
		set(&out.Network.ClassID, u.Network.ClassID)
		if len(u.Network.Priorities) > 0 {
			out.Network.Priorities = u.Network.Priorities
		}
	}
	out.HugepageLimits = mergeHugepages(out.HugepageLimits, u.HugepageLimits)
	out.Rdma = mergeMap(out.Rdma, u.Rdma)
	out.Unified = mergeMap(out.Unified, u.Unified)
	return out
}

func mergeMemory(dst, u *specs.LinuxMemory) *specs.LinuxMemory {
	if dst == nil {
		return u
	}
	set(&dst.Limit, u.Limit)
	set(&dst.Reservation, u.Reservation)
	set(&dst.Swap, u.Swap)
	set(&dst.Kernel, u.Kernel)
	set(&dst.KernelTCP, u.KernelTCP)
	set(&dst.Swappiness, u.Swappiness)
	set(&dst.DisableOOMKiller, u.DisableOOMKiller)
	set(&dst.UseHierarchy, u.UseHierarchy)
	set(&dst.CheckBeforeUpdate, u.CheckBeforeUpdate)
	return dst
}

func mergeCPU(dst, u *specs.LinuxCPU) *specs.LinuxCPU {
	if dst == nil {
		return u
	}
	set(&dst.Shares, u.Shares)
	set(&dst.Quota, u.Quota)
	set(&dst.Burst, u.Burst)
	set(&dst.Period, u.Period)
	set(&dst.RealtimeRuntime, u.RealtimeRuntime)
	set(&dst.RealtimePeriod, u.RealtimePeriod)
	set(&dst.Idle, u.Idle)
	if u.Cpus != "" {
		dst.Cpus = u.Cpus
	}
	if u.Mems != "" {
		dst.Mems = u.Mems
	}
	return dst
}

func mergeBlockIO(dst, u *specs.LinuxBlockIO) *specs.LinuxBlockIO {
	if dst == nil {
		return u
	}
	set(&dst.Weight, u.Weight)
	set(&dst.LeafWeight, u.LeafWeight)
	if len(u.WeightDevice) > 0 {
		dst.WeightDevice = u.WeightDevice
	}
	for _, l := range []struct{ dst, src *[]specs.LinuxThrottleDevice }{
		{&dst.ThrottleReadBpsDevice, &u.ThrottleReadBpsDevice},
		{&dst.ThrottleWriteBpsDevice, &u.ThrottleWriteBpsDevice},
		{&dst.ThrottleReadIOPSDevice, &u.ThrottleReadIOPSDevice},
		{&dst.ThrottleWriteIOPSDevice, &u.ThrottleWriteIOPSDevice},
	} {
		if len(*l.src) > 0 {
			*l.dst = *l.src
		}
	}
	return dst
}

func mergeHugepages(dst, u []specs.LinuxHugepageLimit) []specs.LinuxHugepageLimit {
next:
	for _, l := range u {
		for i := range dst {
			if dst[i].Pagesize == l.Pagesize {
				dst[i].Limit = l.Limit
				continue next
			}
		}
		dst = append(dst, l)
	}
	return dst
}

func mergeMap[V any](dst, u map[string]V) map[string]V {
	if len(u) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[string]V, len(u))
	}
	maps.Copy(dst, u)
	return dst
}
