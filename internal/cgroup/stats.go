package cgroup

import (
	"github.com/opencontainers/cgroups"
)

// The types below reproduce the JSON of runc's types/events.go, which
// containerd (go-runc) and other shims parse from `runc events`. An event
// line looks like {"type":"stats","id":"<id>","data":{"cpu":{...},...}}.
// Field names and omitempty flags must stay as they are.

// Event is one line of `moat events` output.
type Event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

// NewStatsEvent wraps s as a {"type":"stats"} event for container id.
func NewStatsEvent(id string, s *Stats) Event {
	return Event{Type: "stats", ID: id, Data: s}
}

// Stats is the "data" of a stats event.
type Stats struct {
	CPU               CPU                 `json:"cpu"`
	CPUSet            CPUSet              `json:"cpuset"`
	Memory            Memory              `json:"memory"`
	Pids              Pids                `json:"pids"`
	Blkio             Blkio               `json:"blkio"`
	Hugetlb           map[string]Hugetlb  `json:"hugetlb"`
	IntelRdt          IntelRdt            `json:"intel_rdt"`
	NetworkInterfaces []*NetworkInterface `json:"network_interfaces"`
}

// PSIData is one pressure-stall line.
type PSIData struct {
	Avg10  float64 `json:"avg10"`
	Avg60  float64 `json:"avg60"`
	Avg300 float64 `json:"avg300"`
	Total  uint64  `json:"total"`
}

// PSIStats holds pressure-stall information (cgroup v2).
type PSIStats struct {
	Some PSIData `json:"some,omitempty"`
	Full PSIData `json:"full,omitempty"`
}

// Hugetlb is the usage of one huge page size.
type Hugetlb struct {
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// BlkioEntry is one per-device, per-operation counter.
type BlkioEntry struct {
	Major uint64 `json:"major,omitempty"`
	Minor uint64 `json:"minor,omitempty"`
	Op    string `json:"op,omitempty"`
	Value uint64 `json:"value,omitempty"`
}

// Blkio holds block I/O counters.
type Blkio struct {
	IoServiceBytesRecursive []BlkioEntry `json:"ioServiceBytesRecursive,omitempty"`
	IoServicedRecursive     []BlkioEntry `json:"ioServicedRecursive,omitempty"`
	IoQueuedRecursive       []BlkioEntry `json:"ioQueueRecursive,omitempty"`
	IoServiceTimeRecursive  []BlkioEntry `json:"ioServiceTimeRecursive,omitempty"`
	IoWaitTimeRecursive     []BlkioEntry `json:"ioWaitTimeRecursive,omitempty"`
	IoMergedRecursive       []BlkioEntry `json:"ioMergedRecursive,omitempty"`
	IoTimeRecursive         []BlkioEntry `json:"ioTimeRecursive,omitempty"`
	SectorsRecursive        []BlkioEntry `json:"sectorsRecursive,omitempty"`
	PSI                     *PSIStats    `json:"psi,omitempty"`
}

// Pids holds the task count and limit (0 = unlimited).
type Pids struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}

// Throttling holds CFS bandwidth throttling counters.
type Throttling struct {
	Periods          uint64 `json:"periods,omitempty"`
	ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
	ThrottledTime    uint64 `json:"throttledTime,omitempty"`
}

// CPUUsage holds CPU time in nanoseconds.
type CPUUsage struct {
	Total        uint64   `json:"total,omitempty"`
	Percpu       []uint64 `json:"percpu,omitempty"`
	PercpuKernel []uint64 `json:"percpu_kernel,omitempty"`
	PercpuUser   []uint64 `json:"percpu_user,omitempty"`
	Kernel       uint64   `json:"kernel"`
	User         uint64   `json:"user"`
}

// CPU holds CPU usage and throttling.
type CPU struct {
	Usage      CPUUsage   `json:"usage,omitempty"`
	Throttling Throttling `json:"throttling,omitempty"`
	PSI        *PSIStats  `json:"psi,omitempty"`
}

// CPUSet holds cpuset settings and counters (cgroup v1).
type CPUSet struct {
	CPUs                  []uint16 `json:"cpus,omitempty"`
	CPUExclusive          uint64   `json:"cpu_exclusive"`
	Mems                  []uint16 `json:"mems,omitempty"`
	MemHardwall           uint64   `json:"mem_hardwall"`
	MemExclusive          uint64   `json:"mem_exclusive"`
	MemoryMigrate         uint64   `json:"memory_migrate"`
	MemorySpreadPage      uint64   `json:"memory_spread_page"`
	MemorySpreadSlab      uint64   `json:"memory_spread_slab"`
	MemoryPressure        uint64   `json:"memory_pressure"`
	SchedLoadBalance      uint64   `json:"sched_load_balance"`
	SchedRelaxDomainLevel int64    `json:"sched_relax_domain_level"`
}

// MemoryEntry is one memory counter with its limit and peak.
type MemoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// Memory holds memory usage; Raw is memory.stat verbatim.
type Memory struct {
	Cache     uint64            `json:"cache,omitempty"`
	Usage     MemoryEntry       `json:"usage,omitempty"`
	Swap      MemoryEntry       `json:"swap,omitempty"`
	Kernel    MemoryEntry       `json:"kernel,omitempty"`
	KernelTCP MemoryEntry       `json:"kernelTCP,omitempty"`
	Raw       map[string]uint64 `json:"raw,omitempty"`
	PSI       *PSIStats         `json:"psi,omitempty"`
}

// IntelRdt is present for format compatibility; moat reports no RDT data.
type IntelRdt struct {
	L3CacheSchema string `json:"l3_cache_schema,omitempty"`
	MemBwSchema   string `json:"mem_bw_schema,omitempty"`
}

// NetworkInterface holds per-interface counters (filled by the network
// layer, not by this package).
type NetworkInterface struct {
	Name      string
	RxBytes   uint64
	RxPackets uint64
	RxErrors  uint64
	RxDropped uint64
	TxBytes   uint64
	TxPackets uint64
	TxErrors  uint64
	TxDropped uint64
}

func convertPSI(p *cgroups.PSIStats) *PSIStats {
	if p == nil {
		return nil
	}
	conv := func(d cgroups.PSIData) PSIData {
		return PSIData{Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300, Total: d.Total}
	}
	return &PSIStats{Some: conv(p.Some), Full: conv(p.Full)}
}

func convertMemoryEntry(d cgroups.MemoryData) MemoryEntry {
	return MemoryEntry{Limit: d.Limit, Usage: d.Usage, Max: d.MaxUsage, Failcnt: d.Failcnt}
}

func convertBlkio(in []cgroups.BlkioStatEntry) []BlkioEntry {
	var out []BlkioEntry
	for _, e := range in {
		out = append(out, BlkioEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
	}
	return out
}

// convertStats maps the library's statistics to runc's event format.
func convertStats(st *cgroups.Stats) *Stats {
	var s Stats
	cu := st.CpuStats.CpuUsage
	s.CPU.Usage = CPUUsage{
		Total: cu.TotalUsage, Percpu: cu.PercpuUsage,
		PercpuKernel: cu.PercpuUsageInKernelmode, PercpuUser: cu.PercpuUsageInUsermode,
		Kernel: cu.UsageInKernelmode, User: cu.UsageInUsermode,
	}
	td := st.CpuStats.ThrottlingData
	s.CPU.Throttling = Throttling{Periods: td.Periods, ThrottledPeriods: td.ThrottledPeriods, ThrottledTime: td.ThrottledTime}
	s.CPU.PSI = convertPSI(st.CpuStats.PSI)
	s.CPUSet = CPUSet(st.CPUSetStats)

	ms := st.MemoryStats
	s.Memory = Memory{
		Cache: ms.Cache, Usage: convertMemoryEntry(ms.Usage), Swap: convertMemoryEntry(ms.SwapUsage),
		Kernel: convertMemoryEntry(ms.KernelUsage), KernelTCP: convertMemoryEntry(ms.KernelTCPUsage),
		Raw: ms.Stats, PSI: convertPSI(ms.PSI),
	}
	s.Pids = Pids{Current: st.PidsStats.Current, Limit: st.PidsStats.Limit}

	b := st.BlkioStats
	s.Blkio = Blkio{
		IoServiceBytesRecursive: convertBlkio(b.IoServiceBytesRecursive),
		IoServicedRecursive:     convertBlkio(b.IoServicedRecursive),
		IoQueuedRecursive:       convertBlkio(b.IoQueuedRecursive),
		IoServiceTimeRecursive:  convertBlkio(b.IoServiceTimeRecursive),
		IoWaitTimeRecursive:     convertBlkio(b.IoWaitTimeRecursive),
		IoMergedRecursive:       convertBlkio(b.IoMergedRecursive),
		IoTimeRecursive:         convertBlkio(b.IoTimeRecursive),
		SectorsRecursive:        convertBlkio(b.SectorsRecursive),
		PSI:                     convertPSI(b.PSI),
	}
	s.Hugetlb = make(map[string]Hugetlb, len(st.HugetlbStats))
	for size, h := range st.HugetlbStats {
		s.Hugetlb[size] = Hugetlb{Usage: h.Usage, Max: h.MaxUsage, Failcnt: h.Failcnt}
	}
	return &s
}
