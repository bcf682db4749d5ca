"""The datapath's router end to end: hosts in two network namespaces on either side of the
router's TAP interfaces (tests/datapath_net.py), traffic generated inside them only."""
import os
import re
import struct
import subprocess
import time

import pytest

from conftest import compile_c
from datapath_net import Topology
from seeds import interface_stats_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")


@pytest.fixture(scope="module")
def topo():
    t = Topology(tag="m").start()
    try:
        yield t
        assert t.alive(), "router died:\n" + t.output()
    finally:
        t.close()


def delta(before, after, name, key):
    return after[name][key] - before[name][key]


# ---- forwarding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_ping_both_directions(topo, v6):
    a, b = (topo.a.ip6, topo.b.ip6) if v6 else (topo.a.ip4, topo.b.ip4)
    assert topo.probe(topo.a, "ping", b, 3)["received"] == 3
    assert topo.probe(topo.b, "ping", a, 3)["received"] == 3


def test_static_route(topo):
    # 10.72.0.1 lives on B's loopback; the router reaches it via 10.71.2.2 (--route)
    assert topo.probe(topo.a, "ping", topo.far4, 2)["received"] == 2


@pytest.mark.parametrize("side,addr", [("a", "gw4"), ("a", "gw6"), ("b", "gw4"), ("b", "gw6")])
def test_ping_router_addresses(topo, side, addr):
    # each namespace pings both of the router's addresses (its own link's and the far one's)
    near = getattr(topo, side)
    far = topo.b if side == "a" else topo.a
    for target in (getattr(near, addr), getattr(far, addr)):
        res = topo.probe(near, "ping", target, 2)
        assert res["received"] == 2, (target, res)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_tcp(topo, v6):
    """1 MB each way A->B (B's link has MTU 1400: path MTU discovery through the router's
    fragmentation-needed / packet-too-big) and B->A."""
    port = 5001 + v6
    topo.spawn(topo.b, "tcp_server", port, int(v6))
    res = topo.probe(topo.a, "tcp_client", topo.b.ip6 if v6 else topo.b.ip4, port, 1 << 20)
    assert res["ok"], res
    topo.spawn(topo.a, "tcp_server", port + 10, int(v6))
    res = topo.probe(topo.b, "tcp_client", topo.a.ip6 if v6 else topo.a.ip4, port + 10, 1 << 20)
    assert res["ok"], res


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_udp(topo, v6):
    port = 5101 + v6
    topo.spawn(topo.b, "udp_server", port, int(v6))
    res = topo.probe(topo.a, "udp_client", topo.b.ip6 if v6 else topo.b.ip4, port, 20)
    assert res["ok"] == 20, res


# ---- ICMP errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_ttl_expiry(topo, v6):
    dst, gw = (topo.b.ip6, topo.a.gw6) if v6 else (topo.b.ip4, topo.a.gw4)
    res = topo.probe(topo.a, "ping", dst, 1, 1)
    assert res["received"] == 0 and res["errors"] == [[3 if v6 else 11, 0, gw]], res
    # the traceroute way: UDP with TTL 1, then TTL 2 reaches B (port unreachable from B)
    err = topo.probe(topo.a, "udp_err", dst, 33434, 1, 32)
    assert (err["type"], err["code"], err["offender"]) == ((3 if v6 else 11), 0, gw), err
    err = topo.probe(topo.a, "udp_err", dst, 33434, 2, 32)
    assert (err["type"], err["code"], err["offender"]) == ((1, 4) if v6 else (3, 3)) + (dst,), err


def test_net_unreachable(topo):
    err = topo.probe(topo.a, "udp_err", "10.99.0.1", 33434, 64, 32)
    assert (err["type"], err["code"], err["offender"]) == (3, 0, topo.a.gw4), err
    err = topo.probe(topo.a, "udp_err", "fd99::1", 33434, 64, 32)
    assert (err["type"], err["code"], err["offender"]) == (1, 0, topo.a.gw6), err


def test_host_unreachable(topo):
    """A connected address nobody answers ARP/NS for: host (address) unreachable once the
    router gives up resolving (3 solicitations, 1 s apart)."""
    err = topo.probe(topo.a, "udp_err", "10.71.2.99", 33434, 64, 32)
    assert (err["type"], err["code"], err["offender"]) == (3, 1, topo.a.gw4), err
    err = topo.probe(topo.a, "udp_err", "fd71:2::99", 33434, 64, 32)
    assert (err["type"], err["code"], err["offender"]) == (1, 3, topo.a.gw6), err


def test_port_unreachable_from_router(topo):
    err = topo.probe(topo.a, "udp_err", topo.b.gw4, 33434, 64, 32)
    assert (err["type"], err["code"], err["offender"]) == (3, 3, topo.b.gw4), err
    err = topo.probe(topo.a, "udp_err", topo.a.gw6, 33434, 64, 32)
    assert (err["type"], err["code"], err["offender"]) == (1, 4, topo.a.gw6), err


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_mtu_limited_egress(topo, v6):
    """B's side has MTU 1400: a 1500-byte DF datagram gets fragmentation needed / packet too
    big with the MTU; one that fits passes (B answers port unreachable)."""
    dst, gw = (topo.b.ip6, topo.a.gw6) if v6 else (topo.b.ip4, topo.a.gw4)
    hdr = 48 if v6 else 28
    err = topo.probe(topo.a, "udp_err", dst, 33434, 64, 1500 - hdr)
    assert (err["type"], err["code"], err["info"], err["offender"]) == \
        ((2, 0) if v6 else (3, 4)) + (1400, gw), err
    err = topo.probe(topo.a, "udp_err", dst, 33434, 64, 1400 - hdr)
    assert err["offender"] == dst, err


# ---- robustness --------------------------------------------------------------------------------------
def ip4_header(total, ihl=5, ttl=64, src="10.71.1.2", dst="10.71.2.2", csum=None, proto=17):
    import socket
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, 0, ttl, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    h += b"\0" * (ihl * 4 - 20) if ihl > 5 else b""
    if csum is None:
        s = sum(struct.unpack(f"!{len(h) // 2}H", h))
        while s >> 16:
            s = (s & 0xffff) + (s >> 16)
        csum = ~s & 0xffff
    return h[:10] + struct.pack("!H", csum) + h[12:]


def test_malformed_frames_dropped_and_counted(topo):
    udp = struct.pack("!HHHH", 1, 2, 8, 0)
    good = ip4_header(28) + udp
    frames = {
        "drop_short": ["0800" + good[:12].hex(),                     # IPv4 header cut short
                       "86dd" + bytes(30).hex(),                     # IPv6 header cut short
                       "0806" + bytes(10).hex()],                    # ARP cut short
        "drop_badhdr": ["0800" + (bytes([0x43]) + good[1:]).hex(),   # IHL 3
                        "0800" + (bytes([0x65]) + good[1:]).hex()],  # version 6 in an IPv4 frame
        "drop_badsum": ["0800" + ip4_header(28, csum=0x1234).hex() + udp.hex()],
        "drop_badlen": ["0800" + ip4_header(200).hex() + udp.hex(),  # total length beyond the frame
                        "0800" + ip4_header(12).hex() + udp.hex(),   # total length < header
                        "86dd" + (bytes([0x60, 0, 0, 0, 0x04, 0, 17, 64]) + bytes(32) + udp).hex()],
        "drop_ethertype": ["88b5" + bytes(46).hex()],
    }
    before = topo.stats()[topo.a.tap]
    sent = topo.probe(topo.a, "raw", topo.a.tap, topo.a.router_mac,
                      ",".join(f for fs in frames.values() for f in fs))
    assert sent["sent"] == sum(map(len, frames.values()))
    time.sleep(0.3)
    after = topo.stats()[topo.a.tap]
    for key, fs in frames.items():
        assert after[key] - before[key] == len(fs), (key, before, after)
    # not seen by pf: pf's input counters did not move for them (FreeBSD's ip_input drops first)
    assert after["pf_packets"] == before["pf_packets"]
    assert topo.alive()
    assert topo.probe(topo.a, "ping", topo.b.ip4, 2)["received"] == 2


def test_frames_for_other_macs_ignored(topo):
    before = topo.stats()[topo.a.tap]
    topo.probe(topo.a, "raw", topo.a.tap, "02:11:22:33:44:55", "0800" + ip4_header(28).hex() + bytes(8).hex())
    time.sleep(0.2)
    after = topo.stats()[topo.a.tap]
    assert after["drop_notus"] - before["drop_notus"] == 1


# ---- pf's interface counters: the seed 004 program ---------------------------------------------------
def parse_seed_stats(stdout):
    rows = re.findall(r"^(\S+) IPv4 (In|Out): Pass (\d+) Block (\d+)$", stdout, re.M)
    return {(name, d): (int(p), int(b)) for name, d, p, b in rows}


def test_seed004_counts_what_crossed_the_taps(tmp_path):
    """The article's program, unmodified, prints for each TAP the IPv4 bytes pf passed in and
    out; they equal what the namespaces' own interface counters say crossed the TAP.

    pf counts IP bytes (ip_len, no Ethernet header) of IPv4 packets in the inet column; the
    link counts frames. On an IPv4-only link (IPv6 disabled in the namespaces), with neighbours
    resolved beforehand (no ARP in the measured window; asserted from the router's ARP
    statistics), every frame crossing is one IPv4 packet, so pf bytes = link bytes - 14 * frames.
    The router's MTU equals the links' here: a too-big packet is counted out by pf before the MTU
    check (as FreeBSD's ip_output runs pfil first) though it never crosses."""
    t = Topology(tag="s", v6=False, mtu_b=1500, device=True, net=73)
    with t:
        binary = compile_c(interface_stats_program(), str(tmp_path), "ifstats",
                           defines=[f'PF_DEVICE="{t.device}"'])

        def seed():
            res = subprocess.run([binary], capture_output=True, text=True, timeout=20)
            assert res.returncode == 0, res.stderr
            return parse_seed_stats(res.stdout)

        for s in (t.a, t.b):
            t.ns(s, "ip", "neigh", "replace", s.gw4, "lladdr", s.router_mac, "nud", "permanent", "dev", s.tap)
        assert t.probe(t.a, "ping", t.b.ip4, 2)["received"] == 2       # the router resolves A and B
        rows = seed()
        assert (t.a.tap, "In") in rows and (t.b.tap, "Out") in rows, rows
        eng0, links0, seed0 = t.stats(), {s.tap: t.link_stats(s) for s in (t.a, t.b)}, rows

        assert t.probe(t.a, "ping", t.b.ip4, 5, 64, 1000)["received"] == 5
        assert t.probe(t.b, "ping", t.a.gw4, 3)["received"] == 3
        t.spawn(t.b, "udp_server", 5201)
        assert t.probe(t.a, "udp_client", t.b.ip4, 5201, 10)["ok"] == 10
        t.spawn(t.b, "tcp_server", 5202)
        assert t.probe(t.a, "tcp_client", t.b.ip4, 5202, 300000)["ok"]
        t.probe(t.a, "udp_err", "10.99.0.1", 33434, 64, 100)            # net unreachable back to A

        seed1 = seed()
        eng1, links1 = t.stats(), {s.tap: t.link_stats(s) for s in (t.a, t.b)}
        for s in (t.a, t.b):
            assert eng1[s.tap]["arp_rx"] == eng0[s.tap]["arp_rx"], "ARP inside the window"
            assert eng1[s.tap]["arp_tx"] == eng0[s.tap]["arp_tx"], "ARP inside the window"
            l0, l1 = links0[s.tap], links1[s.tap]
            crossed_in = (l1["tx_bytes"] - l0["tx_bytes"]) - 14 * (l1["tx_packets"] - l0["tx_packets"])
            crossed_out = (l1["rx_bytes"] - l0["rx_bytes"]) - 14 * (l1["rx_packets"] - l0["rx_packets"])
            assert crossed_in > 300000 or s is t.b
            pf_in = seed1[(s.tap, "In")][0] - seed0[(s.tap, "In")][0]
            pf_out = seed1[(s.tap, "Out")][0] - seed0[(s.tap, "Out")][0]
            assert (pf_in, pf_out) == (crossed_in, crossed_out), (s.tap, l0, l1)
            assert seed1[(s.tap, "In")][1] == seed1[(s.tap, "Out")][1] == 0     # nothing blocked
        # and absolute: the seed's figures are the engine's own counters
        for s in (t.a, t.b):
            assert seed1[(s.tap, "In")][0] == eng1[s.tap]["pf_bytes"][0]
            assert seed1[(s.tap, "Out")][0] == eng1[s.tap]["pf_bytes"][2]
        assert t.alive(), t.output()


# ---- configuration -------------------------------------------------------------------------------------
def test_config_file_and_flags(tmp_path):
    import argparse
    from pfkern import pf_config
    conf = tmp_path / "pfd.toml"
    conf.write_text('[datapath]\nneighbour_timeout = 60\n\n[[interface]]\nname = "tap9"\nmode = "attach"\n'
                    'mac = "02:00:00:00:00:09"\nmtu = 1400\naddresses = ["10.9.0.1/24", "fd09::1/64"]\n\n'
                    '[[route]]\nprefix = "10.10.0.0/16"\ngateway = "10.9.0.2"\n')
    p = argparse.ArgumentParser()
    pf_config.add_arguments(p)
    args = p.parse_args(["--config", str(conf), "--interface", "tap8,10.8.0.1/24,fd08::1/64,mtu=9000",
                         "--route", "10.11.0.0/16,10.8.0.2"])
    ifs, routes, opts = pf_config.load(args)
    assert opts == {"neighbour_timeout": 60}
    assert ifs == [{"name": "tap9", "mode": "attach", "mac": "02:00:00:00:00:09", "mtu": 1400,
                    "addresses": ["10.9.0.1/24", "fd09::1/64"]},
                   {"name": "tap8", "mode": "tap", "addresses": ["10.8.0.1/24", "fd08::1/64"], "mtu": 9000}]
    assert routes == [{"prefix": "10.10.0.0/16", "gateway": "10.9.0.2"},
                      {"prefix": "10.11.0.0/16", "gateway": "10.8.0.2"}]
    with pytest.raises(pf_config.ConfigError):
        pf_config.load(p.parse_args(["--interface", "tap8,10.8.0.300/24"]))
    with pytest.raises(pf_config.ConfigError):
        pf_config.load(p.parse_args(["--route", "10.11.0.0/16"]))


def test_pfd_starts_the_datapath_from_its_flags(tmpdir_pf):
    """`pfd --interface …` as a user starts it: the TAP exists while pfd runs, pf lists it as an
    interface, and it is gone after SIGTERM; a bad flag is refused with a message."""
    from conftest import Pfd
    from pfkern.client import PfDevice
    name = "pfdflag%d" % (os.getpid() % 1000)
    daemon = Pfd(os.path.join(tmpdir_pf, "pf"), extra=["--interface", f"{name},10.251.0.1/24"]).wait_ready()
    try:
        assert os.path.exists(f"/sys/class/net/{name}")
        with PfDevice(daemon.path, "r") as d:
            kifs = {bytes(k.pfik_name).rstrip(b"\0").decode(): k for k in d.interfaces()}
        assert kifs[name].pfik_ifp and kifs["pfdflag"].pfik_group     # the TAP and its driver group
        assert "datapath interface " + name in daemon.output()
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert not os.path.exists(f"/sys/class/net/{name}")
    bad = Pfd(os.path.join(tmpdir_pf, "pf2"), extra=["--interface", f"{name},10.251.0.1/99"])
    assert bad.proc.wait(30) == 1
    assert "datapath:" in bad.output()
    bad.stop()
