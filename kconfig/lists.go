package kconfig

import (
	"fmt"
	"strings"
)

// List is a named set of requirements kept apart from our fragments: what
// an outside reference (k3s's own check, the Pi's hardware) asks of any
// kernel we build, so that a fragment edited away from it is caught.
type List struct {
	Name string
	// Options are "CONFIG_X=y" (built in), "CONFIG_X=m" (y or m) or
	// "# CONFIG_X is not set", as in a fragment.
	Options []string
}

// Config returns the list as requirements positioned at the list's name.
func (l List) Config() (Config, error) {
	c, err := ParseNamed(strings.NewReader(strings.Join(l.Options, "\n")+"\n"), l.Name)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", l.Name, err)
	}
	return c, nil
}

// CheckLists checks a final .config against lists.
func CheckLists(finalPath string, lists ...List) ([]Problem, error) {
	final, err := ParseFile(finalPath)
	if err != nil {
		return nil, err
	}
	var probs []Problem
	for _, l := range lists {
		req, err := l.Config()
		if err != nil {
			return nil, err
		}
		probs = append(probs, Check(final, req)...)
	}
	return probs, nil
}

// K3sCheckConfig is what k3s's contrib/util/check-config.sh (k3s-io/k3s)
// checks: its "Generally Necessary" options, and of its "Optional
// Features" those a k3s node uses (RT_GROUP_SCHED is left out on purpose,
// see k3s.config; INET_XFRM_MODE_TRANSPORT no longer exists in 6.12).
var K3sCheckConfig = List{Name: "k3s check-config.sh", Options: []string{
	// Generally Necessary.
	"CONFIG_NAMESPACES=y", "CONFIG_NET_NS=y", "CONFIG_PID_NS=y", "CONFIG_IPC_NS=y", "CONFIG_UTS_NS=y",
	"CONFIG_CGROUPS=y", "CONFIG_CGROUP_PIDS=y", "CONFIG_CGROUP_CPUACCT=y", "CONFIG_CGROUP_DEVICE=y",
	"CONFIG_CGROUP_FREEZER=y", "CONFIG_CGROUP_SCHED=y", "CONFIG_CPUSETS=y", "CONFIG_MEMCG=y",
	"CONFIG_SECCOMP=y", "CONFIG_KEYS=y",
	"CONFIG_VETH=m", "CONFIG_BRIDGE=m", "CONFIG_BRIDGE_NETFILTER=m",
	"CONFIG_IP_NF_FILTER=m", "CONFIG_IP_NF_TARGET_MASQUERADE=m", "CONFIG_IP_NF_TARGET_REJECT=m",
	"CONFIG_NETFILTER_XT_MATCH_ADDRTYPE=m", "CONFIG_NETFILTER_XT_MATCH_CONNTRACK=m",
	"CONFIG_NETFILTER_XT_MATCH_IPVS=m", "CONFIG_NETFILTER_XT_MATCH_COMMENT=m",
	"CONFIG_NETFILTER_XT_MATCH_MULTIPORT=m", "CONFIG_NETFILTER_XT_MATCH_STATISTIC=m",
	"CONFIG_IP_NF_NAT=m", "CONFIG_NF_NAT=m", "CONFIG_POSIX_MQUEUE=y",
	// Optional Features.
	"CONFIG_USER_NS=y",
	"CONFIG_BLK_CGROUP=y", "CONFIG_BLK_DEV_THROTTLING=y", "CONFIG_CGROUP_PERF=y", "CONFIG_CGROUP_HUGETLB=y",
	"CONFIG_NET_CLS_CGROUP=m", "CONFIG_CGROUP_NET_PRIO=y", "CONFIG_CFS_BANDWIDTH=y", "CONFIG_FAIR_GROUP_SCHED=y",
	"CONFIG_IP_NF_TARGET_REDIRECT=m", "CONFIG_IP_SET=m", "CONFIG_IP_VS=m", "CONFIG_IP_VS_NFCT=y",
	"CONFIG_IP_VS_PROTO_TCP=y", "CONFIG_IP_VS_PROTO_UDP=y", "CONFIG_IP_VS_RR=m",
	"CONFIG_EXT4_FS=y", "CONFIG_EXT4_FS_POSIX_ACL=y", "CONFIG_EXT4_FS_SECURITY=y",
	"CONFIG_VXLAN=m", "CONFIG_OVERLAY_FS=m",
}}

// K3sNetworkPlugins is what flannel's backends need besides VXLAN:
// host-gw nothing but routing, wireguard-native WireGuard; and iptables in
// both flavours (nft and legacy), ipset and connection tracking, which
// kube-proxy, flannel and the network policy controller use.
var K3sNetworkPlugins = List{Name: "flannel backends, iptables, ipset, conntrack", Options: []string{
	"CONFIG_WIREGUARD=m",
	"CONFIG_NF_TABLES=m", "CONFIG_NFT_COMPAT=m", "CONFIG_IP_NF_IPTABLES=m", "CONFIG_IP6_NF_IPTABLES=m",
	"CONFIG_IP_SET_HASH_IP=m", "CONFIG_IP_SET_HASH_NET=m", "CONFIG_NETFILTER_XT_SET=m",
	"CONFIG_NF_CONNTRACK=m", "CONFIG_NF_CT_NETLINK=m",
}}

// Pi4Hardware is what the Raspberry Pi 4 family (4B, 400, CM4 on its IO
// board) needs of a kernel: the SD card (emmc2), USB 3 through PCIe and
// the VL805 (USB SSD boot), the GENET ethernet port, Wi-Fi, thermal, the
// watchdog, the hardware RNG, cpufreq, the firmware mailbox and clocks,
// and the firmware's tryboot call.
var Pi4Hardware = List{Name: "Raspberry Pi 4 hardware", Options: []string{
	"CONFIG_ARCH_BCM2835=y", "CONFIG_BCM2835_MBOX=y", "CONFIG_RASPBERRYPI_FIRMWARE=y",
	"CONFIG_RASPBERRYPI_FIRMWARE_TRYBOOT=y", "CONFIG_CLK_RASPBERRYPI=y", "CONFIG_CLK_BCM2835=y",
	"CONFIG_MMC_SDHCI_IPROC=y", "CONFIG_MMC_BLOCK=y",
	"CONFIG_PCIE_BRCMSTB=y", "CONFIG_RESET_RASPBERRYPI=y", "CONFIG_USB_XHCI_PCI=y", "CONFIG_USB_STORAGE=y", "CONFIG_USB_UAS=y",
	"CONFIG_BCMGENET=y", "CONFIG_BROADCOM_PHY=y",
	"CONFIG_BRCMFMAC=m", "CONFIG_BRCMFMAC_SDIO=y",
	"CONFIG_BCM2711_THERMAL=m", "CONFIG_BCM2835_WDT=y", "CONFIG_HW_RANDOM_IPROC_RNG200=y",
	"CONFIG_ARM_RASPBERRYPI_CPUFREQ=m",
}}
