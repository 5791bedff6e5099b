package command

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/mem"
	psnet "github.com/shirou/gopsutil/v4/net"
)

// GPUNoneVisible is Inventory.GPUNote when no GPU could be seen.
const GPUNoneVisible = "none visible"

// Inventory is the output of info: what the machine is made of. Sizes are
// bytes. Parts that could not be read are left empty and named in Warnings.
type Inventory struct {
	Hostname        string          `json:"hostname"`
	OS              string          `json:"os"`                         // linux, darwin, …
	Platform        string          `json:"platform,omitempty"`         // distribution: ubuntu, debian, …
	PlatformVersion string          `json:"platform_version,omitempty"` //
	Kernel          string          `json:"kernel,omitempty"`           // kernel release
	Arch            string          `json:"arch"`                       // machine as uname -m says it, else GOARCH
	Virtualization  string          `json:"virtualization,omitempty"`   // "kvm guest", "docker guest", …
	BootTime        time.Time       `json:"boot_time,omitzero"`
	CPU             CPUInfo         `json:"cpu"`
	Memory          MemoryInfo      `json:"memory"`
	Disks           []DiskInfo      `json:"disks"`
	Interfaces      []InterfaceInfo `json:"interfaces"`
	GPUs            []GPUInfo       `json:"gpus"`
	GPUNote         string          `json:"gpu_note,omitempty"` // GPUNoneVisible when GPUs is empty
	Warnings        []string        `json:"warnings,omitempty"`
}

// CPUInfo describes the processors.
type CPUInfo struct {
	Logical  int    `json:"logical"`            // logical CPUs this process may use
	Physical int    `json:"physical,omitempty"` // physical cores, when the system says
	Model    string `json:"model,omitempty"`
}

// MemoryInfo describes main memory and swap.
type MemoryInfo struct {
	Total uint64 `json:"total"`
	Swap  uint64 `json:"swap"`
}

// DiskInfo is one mounted filesystem on a real device.
type DiskInfo struct {
	Device string `json:"device"`
	Mount  string `json:"mount"`
	FSType string `json:"fstype"`
	Total  uint64 `json:"total"`
	Free   uint64 `json:"free"`
}

// InterfaceInfo is one network interface.
type InterfaceInfo struct {
	Name  string   `json:"name"`
	MAC   string   `json:"mac,omitempty"`
	MTU   int      `json:"mtu"`
	Flags []string `json:"flags,omitempty"`
	Addrs []string `json:"addrs,omitempty"` // CIDR form
}

// GPUInfo is one GPU or display adapter the node can see.
type GPUInfo struct {
	Vendor string `json:"vendor"`
	Model  string `json:"model,omitempty"`  // a name from nvidia-smi, else the PCI id "10de:2204"
	Driver string `json:"driver,omitempty"` // kernel driver or driver version
	Memory uint64 `json:"memory,omitempty"`
	Source string `json:"source"` // "drm" (/sys/class/drm) or "nvidia-smi"
	Card   string `json:"card,omitempty"`
}

func (c *Catalogue) info(ctx context.Context, _ json.RawMessage) (Output, error) {
	inv := c.inventory(ctx)
	if err := ctx.Err(); err != nil {
		return Output{}, err
	}
	return Output{Value: inv, Text: inv.text()}, nil
}

func (c *Catalogue) inventory(ctx context.Context) Inventory {
	inv := Inventory{OS: runtime.GOOS, Arch: runtime.GOARCH, Disks: []DiskInfo{}, Interfaces: []InterfaceInfo{}, GPUs: []GPUInfo{}}
	warn := func(part string, err error) { inv.Warnings = append(inv.Warnings, part+": "+err.Error()) }

	h, err := host.InfoWithContext(ctx)
	if err != nil {
		warn("host", err)
	}
	if h != nil {
		inv.Hostname, inv.Platform, inv.PlatformVersion, inv.Kernel = h.Hostname, h.Platform, h.PlatformVersion, h.KernelVersion
		if h.OS != "" {
			inv.OS = h.OS
		}
		if h.KernelArch != "" {
			inv.Arch = h.KernelArch
		}
		if h.VirtualizationSystem != "" {
			inv.Virtualization = strings.TrimSpace(h.VirtualizationSystem + " " + h.VirtualizationRole)
		}
		if h.BootTime > 0 {
			inv.BootTime = time.Unix(int64(h.BootTime), 0).UTC()
		}
	}
	inv.CPU = CPUInfo{Logical: runtime.NumCPU()}
	if n, err := cpu.CountsWithContext(ctx, false); err == nil {
		inv.CPU.Physical = n
	}
	if infos, err := cpu.InfoWithContext(ctx); err != nil {
		warn("cpu", err)
	} else if len(infos) > 0 {
		inv.CPU.Model = infos[0].ModelName
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		warn("memory", err)
	} else {
		inv.Memory.Total = vm.Total
	}
	if sw, err := mem.SwapMemoryWithContext(ctx); err == nil {
		inv.Memory.Swap = sw.Total
	}
	if parts, err := mounts(ctx); err != nil {
		warn("disks", err)
	} else {
		for _, p := range parts {
			u, err := disk.UsageWithContext(ctx, p.Mountpoint)
			if err != nil {
				warn("disk "+p.Mountpoint, err)
				continue
			}
			inv.Disks = append(inv.Disks, DiskInfo{Device: p.Device, Mount: p.Mountpoint, FSType: p.Fstype, Total: u.Total, Free: u.Free})
		}
	}
	if ifs, err := psnet.InterfacesWithContext(ctx); err != nil {
		warn("interfaces", err)
	} else {
		for _, i := range ifs {
			ii := InterfaceInfo{Name: i.Name, MAC: i.HardwareAddr, MTU: i.MTU, Flags: i.Flags}
			for _, a := range i.Addrs {
				ii.Addrs = append(ii.Addrs, a.Addr)
			}
			inv.Interfaces = append(inv.Interfaces, ii)
		}
	}
	gpus, errs := c.gpus(ctx)
	inv.GPUs = append(inv.GPUs, gpus...)
	for _, err := range errs {
		warn("gpu", err)
	}
	if len(inv.GPUs) == 0 {
		inv.GPUNote = GPUNoneVisible
	}
	return inv
}

// mounts returns the mounted filesystems on real devices, one per device
// (the shortest mount point: a container's bind mounts of /etc/hosts and the
// like share the root's device).
func mounts(ctx context.Context) ([]disk.PartitionStat, error) {
	parts, err := disk.PartitionsWithContext(ctx, false)
	if err != nil && len(parts) == 0 {
		return nil, err
	}
	best := map[string]disk.PartitionStat{}
	for _, p := range parts {
		key := p.Device
		if key == "" || key == "none" {
			key = p.Mountpoint
		}
		if b, ok := best[key]; !ok || len(p.Mountpoint) < len(b.Mountpoint) {
			best[key] = p
		}
	}
	out := make([]disk.PartitionStat, 0, len(best))
	for _, p := range best {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b disk.PartitionStat) int { return strings.Compare(a.Mountpoint, b.Mountpoint) })
	return out, nil
}

// PCI vendor ids of display adapters worth naming.
func pciVendor(id string) string {
	switch strings.ToLower(strings.TrimPrefix(id, "0x")) {
	case "10de":
		return "NVIDIA"
	case "1002":
		return "AMD"
	case "8086":
		return "Intel"
	case "1af4":
		return "virtio"
	case "1234":
		return "QEMU"
	case "15ad":
		return "VMware"
	case "1a03":
		return "ASPEED"
	case "1414":
		return "Microsoft"
	}
	return "pci:" + strings.TrimPrefix(id, "0x")
}

// gpus lists what /sys/class/drm and, when installed, nvidia-smi show.
func (c *Catalogue) gpus(ctx context.Context) ([]GPUInfo, []error) {
	var out []GPUInfo
	var errs []error
	entries, err := os.ReadDir(c.drmRoot)
	if err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		name := e.Name()
		num, ok := strings.CutPrefix(name, "card")
		if !ok || num == "" || strings.Trim(num, "0123456789") != "" {
			continue // connectors (card0-HDMI-A-1), render nodes
		}
		dev := filepath.Join(c.drmRoot, name, "device")
		g := GPUInfo{Source: "drm", Card: name}
		if drv, err := os.Readlink(filepath.Join(dev, "driver")); err == nil {
			g.Driver = filepath.Base(drv)
		}
		vendor := readTrim(filepath.Join(dev, "vendor"))
		device := readTrim(filepath.Join(dev, "device"))
		switch {
		case vendor != "":
			g.Vendor = pciVendor(vendor)
			if device != "" {
				g.Model = strings.TrimPrefix(vendor, "0x") + ":" + strings.TrimPrefix(device, "0x")
			}
		case g.Driver != "":
			g.Vendor = g.Driver // platform devices (vc4 on a Raspberry Pi) have no PCI ids
		default:
			g.Vendor = "unknown"
		}
		out = append(out, g)
	}
	if c.nvidiaSMI != "" {
		nv, err := nvidiaGPUs(ctx, c.nvidiaSMI)
		if err != nil {
			errs = append(errs, err)
		}
		if len(nv) > 0 {
			out = slices.DeleteFunc(out, func(g GPUInfo) bool { return g.Vendor == "NVIDIA" })
			out = append(out, nv...)
		}
	}
	return out, errs
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// nvidiaGPUs asks nvidia-smi for its GPUs.
func nvidiaGPUs(ctx context.Context, path string) ([]GPUInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return nil, fmt.Errorf("nvidia-smi: %w", err)
	}
	var gpus []GPUInfo
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if len(f) < 3 || strings.TrimSpace(f[0]) == "" {
			continue
		}
		g := GPUInfo{Vendor: "NVIDIA", Model: strings.TrimSpace(f[0]), Driver: strings.TrimSpace(f[2]), Source: "nvidia-smi"}
		if mib, err := strconv.ParseUint(strings.TrimSpace(f[1]), 10, 64); err == nil {
			g.Memory = mib << 20
		}
		gpus = append(gpus, g)
	}
	return gpus, nil
}

func (inv Inventory) text() string {
	var b strings.Builder
	line := func(k, format string, a ...any) { fmt.Fprintf(&b, "%-10s %s\n", k, fmt.Sprintf(format, a...)) }
	sys := []string{inv.OS}
	if inv.Platform != "" {
		sys = append(sys, strings.TrimSpace(inv.Platform+" "+inv.PlatformVersion))
	}
	if inv.Kernel != "" {
		sys = append(sys, "kernel "+inv.Kernel)
	}
	sys = append(sys, inv.Arch)
	if inv.Virtualization != "" {
		sys = append(sys, inv.Virtualization)
	}
	line("host", "%s (%s)", inv.Hostname, strings.Join(sys, ", "))
	cores := ""
	if inv.CPU.Physical > 0 && inv.CPU.Physical != inv.CPU.Logical {
		cores = fmt.Sprintf(" (%d physical cores)", inv.CPU.Physical)
	}
	line("cpu", "%d × %s%s", inv.CPU.Logical, cmp.Or(inv.CPU.Model, "unknown model"), cores)
	line("memory", "%s, swap %s", humanBytes(inv.Memory.Total), humanBytes(inv.Memory.Swap))
	for _, d := range inv.Disks {
		line("disk", "%s on %s (%s): %s, %s free", d.Device, d.Mount, d.FSType, humanBytes(d.Total), humanBytes(d.Free))
	}
	for _, i := range inv.Interfaces {
		line("net", "%s %s %s", i.Name, cmp.Or(i.MAC, "-"), cmp.Or(strings.Join(i.Addrs, " "), "no address"))
	}
	if len(inv.GPUs) == 0 {
		line("gpu", "%s", inv.GPUNote)
	}
	for _, g := range inv.GPUs {
		s := strings.TrimSpace(g.Vendor + " " + g.Model)
		if g.Memory > 0 {
			s += ", " + humanBytes(g.Memory)
		}
		if g.Driver != "" {
			s += ", driver " + g.Driver
		}
		line("gpu", "%s (%s)", s, g.Source)
	}
	for _, w := range inv.Warnings {
		line("warning", "%s", w)
	}
	return strings.TrimRight(b.String(), "\n")
}

// humanBytes formats a size with binary units.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
