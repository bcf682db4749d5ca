"""Offloads on the datapath (pf_tap's `vnet` interfaces: IFF_VNET_HDR, partial checksums, TSO/GSO
super-frames) end to end, with real TAPs and namespaces (tests/datapath_net.py).

A receiving kernel trusts a partial checksum it is handed (CHECKSUM_PARTIAL counts as verified),
so where the router passes offloads on, the tests put a third namespace C behind B over a veth
whose checksum offload is off: B's kernel then segments and completes what the router forwarded,
from the checksum seeds and offsets the router wrote, and C verifies every segment. A wrong
seed, offset or segment shows as a failed transfer and as InCsumErrors in C's /proc/net/snmp.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from datapath_net import PROBE, Side, Topology, sh
from filter_net import (AF_INET, PF_DROP, PF_IN, PF_OUT, PF_PASS, PFRULE_RETURNRST, TCP, UDP, FilterNet,
                        block_return, rule)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")

MB = 1 << 20


# ---- helpers ---------------------------------------------------------------------------------------
def csum_errors(t, side):
    """InCsumErrors of TCP (v4 and v6 share it), UDP and UDPv6 in side's namespace."""
    text = t.ns(side, "cat", "/proc/net/snmp", "/proc/net/snmp6").stdout
    lines = text.splitlines()
    res = {}
    for head, vals in zip(lines, lines[1:]):
        h, v = head.split(), vals.split()
        if h[0] in ("Tcp:", "Udp:") and v[0] == h[0] and len(h) == len(v):
            res[h[0][:-1]] = int(dict(zip(h, v))["InCsumErrors"])
    m = re.search(r"^Udp6InCsumErrors\s+(\d+)", text, re.M)
    res["Udp6"] = int(m.group(1)) if m else 0
    assert set(res) == {"Tcp", "Udp", "Udp6"}, text
    return res


class CsumWatch:
    """InCsumErrors of some namespaces from now on: `new()` is {ns: {counter: increase}} for the
    counters that went up (an empty dict when all checksums verified)."""

    def __init__(self, t, *sides):
        self.t, self.sides = t, sides
        self.base = {s.ns: csum_errors(t, s) for s in sides}

    def new(self):
        res = {}
        for s in self.sides:
            now = csum_errors(self.t, s)
            d = {k: v - self.base[s.ns][k] for k, v in now.items() if v != self.base[s.ns][k]}
            if d:
                res[s.ns] = d
        return res


def vstat(t, side, key):
    return t.stats()[side.tap][key]


# `ethtool -K IF tx off` by its ioctl (ETHTOOL_STXCSUM; no ethtool binary needed), run inside a
# namespace; dropping checksum offload drops TSO and SG with it.
TX_CSUM_OFF = """
import ctypes, fcntl, socket, struct, sys
val = ctypes.create_string_buffer(struct.pack("II", 0x17, 0))
ifr = struct.pack("16sP", sys.argv[1].encode(), ctypes.addressof(val)).ljust(40, b"\\0")
fcntl.ioctl(socket.socket(), 0x8946, ifr)
"""


def add_far_host(t, net):
    """Namespace C behind B (10.{net+1}.5.2, fd{net+1}:5::2) over a veth with checksum offload
    off at both ends; B forwards."""
    uid = t.a.ns[3:]
    c = Side(f"dpC{uid}", f"vc{uid}", f"10.{net + 1}.5.2/24", f"10.{net + 1}.5.1",
             f"fd{net + 1}:5::2/64", f"fd{net + 1}:5::1", None, 1500)
    vb = f"vb{uid}"
    sh("ip", "netns", "add", c.ns)
    t.far_ns = c.ns
    t.ns(t.b, "ip", "link", "add", vb, "type", "veth", "peer", "name", c.tap, "netns", c.ns)
    t.ns(t.b, "ip", "addr", "add", f"{c.gw4}/24", "dev", vb)
    t.ns(t.b, "ip", "-6", "addr", "add", f"{c.gw6}/64", "dev", vb, "nodad")
    t.ns(t.b, "ip", "link", "set", vb, "up")
    t.ns(t.b, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    t.ns(t.b, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    t.ns(c, "ip", "link", "set", "lo", "up")
    t.ns(c, "ip", "addr", "add", c.addr4, "dev", c.tap)
    t.ns(c, "ip", "-6", "addr", "add", c.addr6, "dev", c.tap, "nodad")
    t.ns(c, "ip", "link", "set", c.tap, "up")
    t.ns(c, "ip", "route", "add", "default", "via", c.gw4)
    t.ns(c, "ip", "-6", "route", "add", "default", "via", c.gw6)
    for side, ifname in ((t.b, vb), (c, c.tap)):
        t.ns(side, sys.executable, "-c", TX_CSUM_OFF, ifname)
    # the new veth's own start-up (link-local DAD, first neighbour resolutions) is B's and C's
    # kernels' business, not the router's: let it settle before pings through the router count
    for dst in (c.ip4, c.ip6):
        for _ in range(5):
            if t.probe(t.b, "ping", dst, 1)["received"]:
                break
    return c


def transfer(t, src, dst, v6, port, nbytes):
    """nbytes from src to dst over TCP; ok when the receiver's SHA-256 matches the sender's."""
    t.spawn(dst, "tcp_server", port, int(v6))
    res = t.probe(src, "tcp_client", dst.ip6 if v6 else dst.ip4, port, nbytes, timeout=90)
    assert res["ok"], res
    return res


def udp_round_trips(t, src, dst, v6, port, count=20):
    t.spawn(dst, "udp_server", port, int(v6))
    return t.probe(src, "udp_client", dst.ip6 if v6 else dst.ip4, port, count)["ok"]


# ---- both sides vnet, C behind B ---------------------------------------------------------------------
NET = 61


@pytest.fixture(scope="module")
def vt():
    t = Topology(tag="v", net=NET, vnet=True,
                 extra=("--route", f"fd{NET + 1}:5::/64,fd{NET}:2::2")).start()
    t.far_ns = None
    try:
        t.c = add_far_host(t, NET)
        yield t
        assert t.alive(), "router died:\n" + t.output()
    finally:
        if t.far_ns:
            sh("ip", "netns", "del", t.far_ns, check=False)
        t.close()


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_ping_through_and_to_the_router(vt, v6):
    a, b, c = ((s.ip6 if v6 else s.ip4) for s in (vt.a, vt.b, vt.c))
    assert vt.probe(vt.a, "ping", b, 3)["received"] == 3
    assert vt.probe(vt.b, "ping", a, 3)["received"] == 3
    assert vt.probe(vt.a, "ping", c, 2)["received"] == 2
    for side in (vt.a, vt.b):
        gw = side.gw6 if v6 else side.gw4
        assert vt.probe(side, "ping", gw, 2)["received"] == 2     # echo replies, zero header


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_tcp_super_frames_pass_whole_and_arrive_intact(vt, v6):
    """A sends TSO super-frames; the router forwards them whole to B (a vnet TAP), B segments
    them onto the veth, C verifies. A starts with 1448-byte segments, B's link has MTU 1400:
    the router applies the MTU to gso_size and answers with fragmentation needed / packet too
    big, and A's path MTU to C becomes 1400."""
    watch = CsumWatch(vt, vt.a, vt.b, vt.c)
    s0 = vt.stats()
    transfer(vt, vt.a, vt.c, v6, 5601 + v6, 16 * MB)
    transfer(vt, vt.c, vt.a, v6, 5611 + v6, 4 * MB)
    s1 = vt.stats()
    d = {(side, k): s1[side.tap][k] - s0[side.tap][k] for side in (vt.a, vt.b) for k in s1[side.tap]
         if not k.startswith("pf_")}
    assert d[vt.a, "vnet_rx_gso"] > 50, d
    assert d[vt.b, "vnet_tx_gso"] > 50, d
    assert d[vt.b, "vnet_sw_gso"] == 0 and d[vt.a, "vnet_drop"] == 0, d
    route = vt.ns(vt.a, "ip", "-6" if v6 else "-4", "route", "get", vt.c.ip6 if v6 else vt.c.ip4).stdout
    assert "mtu 1400" in route, route
    assert watch.new() == {}


@pytest.mark.skipif(not shutil.which("iperf3"), reason="iperf3 not installed (scripts/bootstrap)")
def test_iperf3_through_vnet(vt):
    watch = CsumWatch(vt, vt.a, vt.b, vt.c)
    srv = subprocess.Popen(["ip", "netns", "exec", vt.c.ns, "iperf3", "-s", "-1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vt.procs.append(srv)
    time.sleep(0.5)
    out = vt.ns(vt.a, "iperf3", "-c", vt.c.ip4, "-t", "2", "-J", check=False, timeout=40).stdout
    end = json.loads(out)["end"]
    assert end["sum_received"]["bytes"] > 20 * MB, end["sum_received"]
    assert watch.new() == {}


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_udp_partial_checksums(vt, v6):
    """A's UDP datagrams leave its TAP with partial checksums; forwarded with NEEDS_CSUM, they are
    completed by B's kernel for the veth and verified by C."""
    watch = CsumWatch(vt, vt.a, vt.b, vt.c)
    before = vstat(vt, vt.a, "vnet_rx_csum_partial")
    assert udp_round_trips(vt, vt.a, vt.c, v6, 5621 + v6) == 20
    assert udp_round_trips(vt, vt.a, vt.b, v6, 5631 + v6) == 20
    assert vstat(vt, vt.a, "vnet_rx_csum_partial") - before >= 40
    assert watch.new() == {}


def test_router_errors_about_super_frames(vt):
    """ICMP errors the router makes carry a zero header and quote a partial-checksum packet as
    usual: UDP with TTL 1 from A gets time exceeded."""
    err = vt.probe(vt.a, "udp_err", vt.c.ip4, 33434, 1, 32)
    assert (err["type"], err["code"], err["offender"]) == (11, 0, vt.a.gw4), err


# ---- mixed: A vnet, B plain (software checksums and segmentation) ------------------------------------
@pytest.fixture(scope="module")
def mixed():
    t = Topology(tag="w", net=NET + 2, vnet=(True, False)).start()
    try:
        yield t
        assert t.alive(), "router died:\n" + t.output()
    finally:
        t.close()


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_mixed_tcp_segmented_in_software(mixed, v6):
    t = mixed
    watch = CsumWatch(t, t.a, t.b)
    s0 = t.stats()
    transfer(t, t.a, t.b, v6, 5701 + v6, 16 * MB)
    transfer(t, t.b, t.a, v6, 5711 + v6, 4 * MB)
    s1 = t.stats()
    gso = s1[t.b.tap]["vnet_sw_gso"] - s0[t.b.tap]["vnet_sw_gso"]
    segs = s1[t.b.tap]["vnet_sw_segments"] - s0[t.b.tap]["vnet_sw_segments"]
    assert gso > 50 and segs > 2 * gso, (gso, segs)
    assert s1[t.a.tap]["vnet_rx_gso"] - s0[t.a.tap]["vnet_rx_gso"] == gso
    assert s1[t.b.tap]["tx_errors"] == 0
    assert watch.new() == {}


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_mixed_udp_checksums_completed(mixed, v6):
    t = mixed
    watch = CsumWatch(t, t.a, t.b)
    before = t.stats()[t.b.tap]["vnet_sw_csum"]
    assert udp_round_trips(t, t.a, t.b, v6, 5721 + v6) == 20
    assert t.stats()[t.b.tap]["vnet_sw_csum"] - before >= 20
    assert watch.new() == {}


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_mixed_ping(mixed, v6):
    t = mixed
    a, b = (t.a.ip6, t.b.ip6) if v6 else (t.a.ip4, t.b.ip4)
    assert t.probe(t.a, "ping", b, 2)["received"] == 2
    assert t.probe(t.b, "ping", a, 2)["received"] == 2


def test_mixed_mtu_applies_to_segments(mixed):
    """B's link has MTU 1400. A datagram that fits passes; a 1500-byte DF one gets fragmentation
    needed (a vnet interface does not make every packet a super-frame)."""
    t = mixed
    err = t.probe(t.a, "udp_err", t.b.ip4, 33434, 64, 1500 - 28)
    assert (err["type"], err["code"], err["info"]) == (3, 4, 1400), err


# ---- pf on vnet interfaces -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pfv():
    t = FilterNet(tag="p", net=NET + 4, vnet=True).start()
    t.far_ns = None
    try:
        t.c = add_far_host(t, NET + 4)
        t.dev.start()
        t.fspawn(t.b, "echo_server", 5400)
        t.fspawn(t.b, "udp_echo", 5300)
        yield t
        assert t.alive(), "pfd died:\n" + t.output()
    finally:
        if t.far_ns:
            sh("ip", "netns", "del", t.far_ns, check=False)
        t.close()


def test_pf_block_still_blocks_on_vnet(pfv):
    t = pfv
    t.load([rule(PF_PASS)])
    assert t.fprobe(t.a, "tcp_connect", t.b.ip4, 5400)["result"] == "ok"
    t.load([rule(PF_PASS), rule(PF_DROP, proto=TCP, dport=5400, direction=PF_IN)])
    assert t.fprobe(t.a, "tcp_connect", t.b.ip4, 5400, 1.0)["result"] == "timeout"
    assert t.pings(t.a, t.b.ip4) == 2
    assert t.fprobe(t.a, "udp_send", t.b.ip4, 5300, 2)["ok"] == 2


def test_pf_block_return_on_vnet(pfv):
    """The RST and the ICMP error pf sends back reach A through its vnet TAP (zero header)."""
    t = pfv
    t.load([rule(PF_PASS), rule(PF_DROP, proto=TCP, dport=5400, rule_flag=PFRULE_RETURNRST)])
    assert t.fprobe(t.a, "tcp_connect", t.b.ip4, 5400)["result"] == "refused"
    t.load([rule(PF_PASS), block_return(proto=UDP, dport=5300, direction=PF_IN)])
    assert t.fprobe(t.a, "udp_send", t.b.ip4, 5300, 1)["refused"] == 1


def test_pf_keep_state_over_super_frames(pfv):
    """`pass all keep state`: a 16 MB transfer of super-frames is tracked by its states (one in
    on A, one out on B), which count all its bytes, and arrives intact."""
    t = pfv
    watch = CsumWatch(t, t.a, t.b)
    t.load([rule(PF_PASS)])
    before = t.stats()[t.a.tap]["vnet_rx_gso"]
    transfer(t, t.a, t.b, False, 5801, 16 * MB)
    assert t.stats()[t.a.tap]["vnet_rx_gso"] - before > 50
    st = [s for s in t.states() if s.proto == TCP and 5801 in map(socket.ntohs, s.key[0].port)]
    assert sorted(s.direction for s in st) == [PF_IN, PF_OUT], st     # in on A, out on B
    for s in st:
        nbytes = sum((socket.ntohl(b[0]) << 32) | socket.ntohl(b[1]) for b in s.bytes)
        assert nbytes > 16 * MB, nbytes
    assert watch.new() == {}


# ---- configuration ---------------------------------------------------------------------------------
def test_config_vnet_option(tmp_path):
    import argparse
    from pfkern import pf_config
    conf = tmp_path / "pfd.toml"
    conf.write_text('[[interface]]\nname = "tap9"\nvnet = true\naddresses = ["10.9.0.1/24"]\n\n'
                    '[[interface]]\nname = "tap7"\naddresses = ["10.7.0.1/24"]\n')
    p = argparse.ArgumentParser()
    pf_config.add_arguments(p)
    assert "[,vnet]" in p.format_help()
    ifs, _routes, _opts = pf_config.load(p.parse_args(["--config", str(conf),
                                                       "--interface", "tap8,10.8.0.1/24,vnet,mtu=1400"]))
    assert [(i["name"], i.get("vnet", False)) for i in ifs] == [("tap9", True), ("tap7", False), ("tap8", True)]
    assert ifs[2]["addresses"] == ["10.8.0.1/24"] and ifs[2]["mtu"] == 1400
    conf.write_text('[[interface]]\nname = "tap9"\nvnet = "yes"\n')
    with pytest.raises(pf_config.ConfigError):
        pf_config.load(p.parse_args(["--config", str(conf)]))


def test_datapath_reports_vnet_interfaces():
    """The option reaches the TAP: IFF_VNET_HDR shows in the device's flags (sysfs tun_flags)."""
    from pfkern.pf_tap import Datapath
    dp = Datapath()
    names = [f"vnq{os.getpid() % 10000}{x}" for x in "ab"]
    try:
        dp.add_interface(names[0], ["10.59.1.1/24"], vnet=True)
        dp.add_interface(names[1], ["10.59.2.1/24"])
        assert dp.vnet(names[0]) and not dp.vnet(names[1])
        flags = [int(open(f"/sys/class/net/{n}/tun_flags").read(), 16) for n in names]
        assert flags[0] & 0x4000 and not flags[1] & 0x4000, flags      # IFF_VNET_HDR
        assert all(k in dp.stats(names[0]) for k in ("vnet_rx_gso", "vnet_sw_segments", "vnet_drop"))
    finally:
        dp.close()


def test_nat_over_super_frames_keeps_checksums(pfv):
    """Outbound nat on B's TAP rewrites A's super-frames (address and port) whose checksum field
    holds only the pseudo-header sum: the translation must update that sum for the address and
    leave the port to the final summing. B segments them for the veth and C verifies."""
    from pfkern.client.constants import PF_NAT
    from rules_util import make_rule, pool_addr
    t = pfv
    nat = make_rule(action=PF_NAT, af=AF_INET, ifname=t.b.tap, src=f"{t.a.gw4}/24")
    nat.rpool.proxy_port[0], nat.rpool.proxy_port[1] = 50001, 65535
    t.load([(nat, [pool_addr(t.b.gw4)]), rule(PF_PASS)])
    watch = CsumWatch(t, t.a, t.b, t.c)
    before = t.stats()[t.a.tap]["vnet_rx_gso"]
    t.spawn(t.c, "tcp_server", 5811, 0)
    probe = subprocess.Popen(["ip", "netns", "exec", t.a.ns, sys.executable, PROBE, "tcp_client", t.c.ip4,
                              "5811", str(16 * MB)], stdout=subprocess.PIPE, text=True)
    t.procs.append(probe)
    peers = ""
    deadline = time.time() + 10
    while t.c.ip4 not in peers and time.time() < deadline and probe.poll() is None:
        peers = t.ns(t.c, "ss", "-Htn", "state", "established", "sport", "= :5811").stdout
    res = json.loads(probe.communicate(timeout=90)[0].strip().splitlines()[-1])
    assert res["ok"], res
    assert f"{t.b.gw4}:" in peers and t.a.ip4 not in peers, peers     # C saw the router's address
    assert t.stats()[t.a.tap]["vnet_rx_gso"] - before > 50
    assert udp_round_trips(t, t.a, t.c, False, 5821) == 20             # partial UDP checksums too
    assert watch.new() == {}
    assert t.rules(action=PF_NAT)[0].packets[1] > 0
