package cgroup

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Kernel limits checked up front so that a bad spec fails with a message
// naming the field instead of an EINVAL from a cgroup file.
const (
	minCPUShares = 2
	maxCPUShares = 262144
	minCFSUsec   = 1000    // smallest cfs quota and period (1ms)
	maxCFSPeriod = 1000000 // largest cfs period (1s)
	minBlkWeight = 10
	maxBlkWeight = 1000
)

// cpuListRE matches the kernel's cpu/node list syntax ("0-3,5", "0-7:2/4").
var cpuListRE = regexp.MustCompile(`^[0-9]+(-[0-9]+(:[0-9]+/[0-9]+)?)?(,[0-9]+(-[0-9]+(:[0-9]+/[0-9]+)?)?)*$`)

// converter accumulates the library Resources built from a spec, plus notes
// about accepted settings that have no effect on this cgroup version.
type converter struct {
	v2    bool
	res   *cgroups.Resources
	notes []string
}

// convertResources converts spec resources (everything except devices, see
// deviceRules) into the library's Resources, validating every value. v2 selects
// the cgroup v2 rules: v1-only settings (swappiness, OOM-killer, leaf weights,
// net_cls/net_prio) are ignored with a note, realtime CPU settings are
// rejected, and the unified map is allowed. A nil r yields empty Resources.
func convertResources(r *specs.LinuxResources, v2 bool) (*cgroups.Resources, []string, error) {
	c := &converter{v2: v2, res: &cgroups.Resources{}}
	if r == nil {
		return c.res, nil, nil
	}
	steps := []func(*specs.LinuxResources) error{
		c.memory, c.cpu, c.pids, c.blockIO, c.hugepages, c.network, c.rdma, c.unified,
	}
	for _, step := range steps {
		if err := step(r); err != nil {
			return nil, nil, err
		}
	}
	return c.res, c.notes, nil
}

func (c *converter) note(format string, args ...any) {
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

// memBytes validates a memory byte count: -1 (unlimited), 0 (unset) or positive.
func memBytes(field string, v *int64) (int64, error) {
	if v == nil {
		return 0, nil
	}
	if *v < -1 {
		return 0, fmt.Errorf("invalid linux.resources.memory.%s %d: must be -1 (unlimited) or a number of bytes", field, *v)
	}
	return *v, nil
}

func (c *converter) memory(r *specs.LinuxResources) error {
	m := r.Memory
	if m == nil {
		return nil
	}
	var err error
	if c.res.Memory, err = memBytes("limit", m.Limit); err != nil {
		return err
	}
	if c.res.MemoryReservation, err = memBytes("reservation", m.Reservation); err != nil {
		return err
	}
	if c.res.MemorySwap, err = memBytes("swap", m.Swap); err != nil {
		return err
	}
	limit, swap := c.res.Memory, c.res.MemorySwap
	if limit > 0 && swap > 0 && swap < limit {
		return fmt.Errorf("invalid linux.resources.memory.swap %d: it is memory+swap and must be >= memory.limit %d", swap, limit)
	}
	if c.v2 {
		if _, err := cgroups.ConvertMemorySwapToCgroupV2Value(swap, limit); err != nil {
			return fmt.Errorf("invalid linux.resources.memory.swap %d with limit %d: %w", swap, limit, err)
		}
	}
	if m.Kernel != nil {
		c.note("linux.resources.memory.kernel is ignored: kernel memory limits are obsolete")
	}
	if m.KernelTCP != nil {
		c.note("linux.resources.memory.kernelTCP is ignored: kernel TCP memory limits are not supported")
	}
	if err := c.swappiness(m.Swappiness); err != nil {
		return err
	}
	if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
		if c.v2 {
			c.note("linux.resources.memory.disableOOMKiller is ignored: cgroup v2 has no such setting")
		} else {
			c.res.OomKillDisable = true
		}
	}
	if m.CheckBeforeUpdate != nil {
		c.res.MemoryCheckBeforeUpdate = *m.CheckBeforeUpdate
	}
	return nil
}

func (c *converter) swappiness(s *uint64) error {
	switch {
	case s == nil || int64(*s) == -1: // -1 is how Docker spells "unset"
		return nil
	case *s > 100:
		return fmt.Errorf("invalid linux.resources.memory.swappiness %d: must be between 0 and 100", *s)
	case c.v2:
		c.note("linux.resources.memory.swappiness is ignored: cgroup v2 has no per-cgroup swappiness")
		return nil
	}
	v := *s
	c.res.MemorySwappiness = &v
	return nil
}

func (c *converter) cpu(r *specs.LinuxResources) error {
	p := r.CPU
	if p == nil {
		return nil
	}
	if p.Shares != nil && *p.Shares != 0 {
		s := *p.Shares
		if s < minCPUShares || s > maxCPUShares {
			return fmt.Errorf("invalid linux.resources.cpu.shares %d: must be between %d and %d", s, minCPUShares, maxCPUShares)
		}
		c.res.CpuShares = s
		c.res.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(s)
	}
	if p.Quota != nil {
		q := *p.Quota
		if q < -1 || (q > 0 && q < minCFSUsec) {
			return fmt.Errorf("invalid linux.resources.cpu.quota %d: must be -1 (unlimited) or at least %d (microseconds)", q, minCFSUsec)
		}
		c.res.CpuQuota = q
	}
	if p.Period != nil && *p.Period != 0 {
		if *p.Period < minCFSUsec || *p.Period > maxCFSPeriod {
			return fmt.Errorf("invalid linux.resources.cpu.period %d: must be between %d and %d (microseconds)", *p.Period, minCFSUsec, maxCFSPeriod)
		}
		c.res.CpuPeriod = *p.Period
	}
	if p.Burst != nil {
		b := *p.Burst
		c.res.CpuBurst = &b
	}
	if err := c.realtime(p); err != nil {
		return err
	}
	for _, l := range [...]struct{ field, list string }{{"cpus", p.Cpus}, {"mems", p.Mems}} {
		if l.list != "" && !cpuListRE.MatchString(l.list) {
			return fmt.Errorf("invalid linux.resources.cpu.%s %q: want a list such as \"0-3,6\"", l.field, l.list)
		}
	}
	c.res.CpusetCpus, c.res.CpusetMems = p.Cpus, p.Mems
	if p.Idle != nil {
		if *p.Idle != 0 && *p.Idle != 1 {
			return fmt.Errorf("invalid linux.resources.cpu.idle %d: must be 0 or 1", *p.Idle)
		}
		idle := *p.Idle
		c.res.CPUIdle = &idle
	}
	return nil
}

func (c *converter) realtime(p *specs.LinuxCPU) error {
	var runtime int64
	var period uint64
	if p.RealtimeRuntime != nil {
		runtime = *p.RealtimeRuntime
	}
	if p.RealtimePeriod != nil {
		period = *p.RealtimePeriod
	}
	if runtime == 0 && period == 0 {
		return nil
	}
	if c.v2 {
		return fmt.Errorf("linux.resources.cpu.realtimeRuntime/realtimePeriod (%d/%d) are not supported on cgroup v2", runtime, period)
	}
	if runtime < -1 {
		return fmt.Errorf("invalid linux.resources.cpu.realtimeRuntime %d: must be -1 (unlimited) or a number of microseconds", runtime)
	}
	c.res.CpuRtRuntime, c.res.CpuRtPeriod = runtime, period
	return nil
}

func (c *converter) pids(r *specs.LinuxResources) error {
	if r.Pids == nil || r.Pids.Limit == nil {
		return nil
	}
	l := *r.Pids.Limit
	if l < -1 {
		return fmt.Errorf("invalid linux.resources.pids.limit %d: must be -1 (unlimited) or a number of tasks", l)
	}
	if l == 0 {
		c.note("linux.resources.pids.limit 0 is applied as 1: the cgroups library (like systemd) maps 0 to 1")
	}
	c.res.PidsLimit = &l
	return nil
}

// blkWeight validates an optional blkio weight; 0 means unset.
func blkWeight(field string, w *uint16) (uint16, error) {
	if w == nil || *w == 0 {
		return 0, nil
	}
	if *w < minBlkWeight || *w > maxBlkWeight {
		return 0, fmt.Errorf("invalid linux.resources.blockIO.%s %d: must be between %d and %d", field, *w, minBlkWeight, maxBlkWeight)
	}
	return *w, nil
}

func checkBlkDev(field string, d specs.LinuxBlockIODevice) error {
	if d.Major < 0 || d.Minor < 0 {
		return fmt.Errorf("invalid linux.resources.blockIO.%s device %d:%d: major and minor must not be negative", field, d.Major, d.Minor)
	}
	return nil
}

func (c *converter) blockIO(r *specs.LinuxResources) error {
	b := r.BlockIO
	if b == nil {
		return nil
	}
	var err error
	if c.res.BlkioWeight, err = blkWeight("weight", b.Weight); err != nil {
		return err
	}
	if c.res.BlkioLeafWeight, err = blkWeight("leafWeight", b.LeafWeight); err != nil {
		return err
	}
	if c.v2 && c.res.BlkioLeafWeight != 0 {
		c.note("linux.resources.blockIO.leafWeight is ignored: cgroup v2 has no leaf weights")
	}
	for i, wd := range b.WeightDevice {
		field := fmt.Sprintf("weightDevice[%d]", i)
		if err := checkBlkDev(field, wd.LinuxBlockIODevice); err != nil {
			return err
		}
		w, err := blkWeight(field+".weight", wd.Weight)
		if err != nil {
			return err
		}
		lw, err := blkWeight(field+".leafWeight", wd.LeafWeight)
		if err != nil {
			return err
		}
		c.res.BlkioWeightDevice = append(c.res.BlkioWeightDevice, cgroups.NewWeightDevice(wd.Major, wd.Minor, w, lw))
	}
	lists := []struct {
		field string
		in    []specs.LinuxThrottleDevice
		out   *[]*cgroups.ThrottleDevice
	}{
		{"throttleReadBpsDevice", b.ThrottleReadBpsDevice, &c.res.BlkioThrottleReadBpsDevice},
		{"throttleWriteBpsDevice", b.ThrottleWriteBpsDevice, &c.res.BlkioThrottleWriteBpsDevice},
		{"throttleReadIOPSDevice", b.ThrottleReadIOPSDevice, &c.res.BlkioThrottleReadIOPSDevice},
		{"throttleWriteIOPSDevice", b.ThrottleWriteIOPSDevice, &c.res.BlkioThrottleWriteIOPSDevice},
	}
	for _, l := range lists {
		for i, td := range l.in {
			if err := checkBlkDev(fmt.Sprintf("%s[%d]", l.field, i), td.LinuxBlockIODevice); err != nil {
				return err
			}
			*l.out = append(*l.out, cgroups.NewThrottleDevice(td.Major, td.Minor, td.Rate))
		}
	}
	return nil
}

func (c *converter) hugepages(r *specs.LinuxResources) error {
	if len(r.HugepageLimits) == 0 {
		return nil
	}
	sizes := cgroups.HugePageSizes()
	for i, l := range r.HugepageLimits {
		if !slices.Contains(sizes, l.Pagesize) {
			have := strings.Join(sizes, ", ")
			if have == "" {
				have = "none"
			}
			return fmt.Errorf("invalid linux.resources.hugepageLimits[%d].pageSize %q: huge page sizes on this host: %s", i, l.Pagesize, have)
		}
		c.res.HugetlbLimit = append(c.res.HugetlbLimit, &cgroups.HugepageLimit{Pagesize: l.Pagesize, Limit: l.Limit})
	}
	return nil
}

func (c *converter) network(r *specs.LinuxResources) error {
	n := r.Network
	if n == nil || (n.ClassID == nil && len(n.Priorities) == 0) {
		return nil
	}
	if c.v2 {
		c.note("linux.resources.network is ignored: net_cls and net_prio do not exist on cgroup v2")
		return nil
	}
	if n.ClassID != nil {
		c.res.NetClsClassid = *n.ClassID
	}
	for i, p := range n.Priorities {
		if p.Name == "" || strings.ContainsAny(p.Name, " \n/") {
			return fmt.Errorf("invalid linux.resources.network.priorities[%d].name %q: want an interface name", i, p.Name)
		}
		c.res.NetPrioIfpriomap = append(c.res.NetPrioIfpriomap, &cgroups.IfPrioMap{Interface: p.Name, Priority: int64(p.Priority)})
	}
	return nil
}

func (c *converter) rdma(r *specs.LinuxResources) error {
	if len(r.Rdma) == 0 {
		return nil
	}
	c.res.Rdma = make(map[string]cgroups.LinuxRdma, len(r.Rdma))
	for dev, l := range r.Rdma {
		if dev == "" || strings.ContainsAny(dev, " \n/") {
			return fmt.Errorf("invalid linux.resources.rdma device name %q", dev)
		}
		c.res.Rdma[dev] = cgroups.LinuxRdma{HcaHandles: l.HcaHandles, HcaObjects: l.HcaObjects}
	}
	return nil
}

func (c *converter) unified(r *specs.LinuxResources) error {
	if len(r.Unified) == 0 {
		return nil
	}
	if !c.v2 {
		return fmt.Errorf("linux.resources.unified is only supported on cgroup v2 hosts (this host: %s)", Mode())
	}
	c.res.Unified = make(map[string]string, len(r.Unified))
	for k, v := range r.Unified {
		ctrl, param, ok := strings.Cut(k, ".")
		if !ok || ctrl == "" || param == "" || strings.ContainsAny(k, "/\x00") {
			return fmt.Errorf("invalid linux.resources.unified key %q: want a cgroup file name such as \"memory.high\"", k)
		}
		c.res.Unified[k] = v
	}
	return nil
}
