"""Address translation end to end (pfkern/pf_nat.pyx, pf_test's translation step): nat, rdr and
binat on live traffic between two namespaces, DIOCNATLOOK on the states they make (the pf(4)
example, seed 001, compiled unchanged), a transparent proxy, ICMP errors across NAT."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from conftest import compile_c
from filter_net import AF_INET, ICMP, PF_OUT, PF_PASS, TCP, UDP, Capture, module_net, reset, rule
from pfkern.client.constants import (PF_BINAT, PF_NAT, PF_NONAT, PF_OP_RRG, PF_POOL_BITMASK,
                                      PF_POOL_RANDOM, PF_POOL_ROUNDROBIN, PF_POOL_SRCHASH,
                                      PF_POOL_STICKYADDR, PF_RDR, PFR_TFLAG_PERSIST)
from rules_util import make_rule, pool_addr

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "nat_probe.py")
ECHO_PORT = 5400
NEEDS_TCPDUMP = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")


def servers(t):
    t.fspawn(t.b, "echo_server", ECHO_PORT, 0)
    t.fspawn(t.b, "udp_echo", 5301, 0)


@pytest.fixture(scope="module")
def net():
    yield from module_net("n", 86, servers, v6=False)


@pytest.fixture
def f(net):
    yield net
    reset(net)


def nat_rule(action, pool, *, proxy=(50001, 65535), opts=0, **kw):
    r = make_rule(action=action, **kw)
    r.rpool.proxy_port[0], r.rpool.proxy_port[1] = proxy
    r.rpool.opts = opts
    return (r, [pool_addr(p) for p in pool])


def nprobe(t, side, *args, timeout=40):
    res = t.ns(side, sys.executable, PROBE, *map(str, args), timeout=timeout)
    return json.loads(res.stdout.strip().splitlines()[-1])


def nspawn(t, side, *args, keep=False):
    """A nat_probe server or client in a namespace; stopped after the test (or, keep=True, with
    the topology)."""
    p = subprocess.Popen(["ip", "netns", "exec", side.ns, sys.executable, PROBE, *map(str, args)],
                         stdout=subprocess.PIPE, text=True)
    (t.procs if keep else t.test_procs).append(p)
    return p, json.loads(p.stdout.readline())


def peers(t, side, port):
    """(local, peer) "addr:port" pairs of established TCP connections with `port` on either end,
    as the namespace's own socket table has them."""
    out = t.ns(side, "ss", "-Htn", "state", "established").stdout
    pairs = []
    for line in out.splitlines():
        cols = line.split()
        local, peer = cols[-2], cols[-1]
        if local.endswith(f":{port}") or peer.endswith(f":{port}"):
            pairs.append((local, peer))
    return pairs


def with_dev_pf(t, argv):
    """Run argv with t.device at /dev/pf (a private mount namespace: programs that open
    /dev/pf themselves, as the seed does)."""
    script = ('mount -t tmpfs tmpfs /dev && touch /dev/pf && mount --bind "$0" /dev/pf && '
              'exec "$@"')
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                           t.device, *argv], capture_output=True, text=True, timeout=30)


def ip_of(a):
    return socket.inet_ntoa(bytes(a)[:4])


def outbound_nat(t, **kw):
    return nat_rule(PF_NAT, [t.b.gw4], af=AF_INET, ifname=t.b.tap, src=f"{t.a.gw4}/24", **kw)


# ---- nat ------------------------------------------------------------------------------------------
def test_nat_rewrites_tcp_and_the_seed_natlook_finds_the_internal_host(f, tmp_path):
    f.load([outbound_nat(f), rule(PF_PASS)])
    trigger = tmp_path / "go"
    p, first = nspawn(f, f.a, "tcp_hold", f.b.ip4, ECHO_PORT, trigger)
    assert first["result"] == "ok", first
    client = first["local"]                            # A's own view: 10.86.1.2:port
    (server_local, server_peer), = peers(f, f.b, ECHO_PORT)
    gwy_addr, gwy_port = server_peer.rsplit(":", 1)
    assert gwy_addr == f.b.gw4                         # B sees the router's address...
    assert 50001 <= int(gwy_port) <= 65535             # ... and a port from the nat range
    binary = compile_c(__import__("seeds").natlook_example(), str(tmp_path), "natlook")
    res = with_dev_pf(f, [binary, gwy_addr, gwy_port, f.b.ip4, str(ECHO_PORT)])
    assert res.returncode == 0, res
    assert res.stdout.strip() == f"internal host {client}"
    trigger.write_text("x")
    done = json.loads(p.stdout.readline())
    assert done["second"] == "ok"                      # the translated connection keeps working
    states = f.states()
    nat = [s for s in states if s.key[0].port[0] != s.key[1].port[0] or
           s.key[0].port[1] != s.key[1].port[1]]
    assert nat, "no translated state"
    r = f.rules(action=PF_NAT)[0]
    assert r.packets[1] > 0 and r.u_states_tot >= 1


def test_nat_udp_and_icmp_echo(f):
    f.load([outbound_nat(f), rule(PF_PASS, keep_state=1, no_flags=1)])
    res = f.fprobe(f.a, "udp_send", f.b.ip4, 5301, 3, 1.0)
    assert res["ok"] == 3
    assert f.pings(f.a, f.b.ip4) == 2
    # the outbound states: wire key with the router's address, stack key with A's
    seen = {(s.proto, ip_of(s.key[0].addr[1]), ip_of(s.key[1].addr[1]))
            for s in f.states() if s.direction == PF_OUT}
    assert (UDP, f.b.gw4, f.a.ip4) in seen and (ICMP, f.b.gw4, f.a.ip4) in seen, seen


def test_no_nat_exempts(f):
    f.load([nat_rule(PF_NONAT, [], af=AF_INET, ifname=f.b.tap, dst=f.b.ip4),
            outbound_nat(f), rule(PF_PASS)])
    p, first = nspawn(f, f.a, "tcp_hold", f.b.ip4, ECHO_PORT, "/nonexistent-trigger", 0.5)
    (_, peer), = peers(f, f.b, ECHO_PORT)
    assert peer.rsplit(":", 1)[0] == f.a.ip4           # untranslated


def test_static_port_keeps_the_source_port(f):
    f.load([outbound_nat(f, proxy=(0, 0)), rule(PF_PASS)])
    p, first = nspawn(f, f.a, "tcp_hold", f.b.ip4, ECHO_PORT, "/nonexistent-trigger", 0.5)
    (_, peer), = peers(f, f.b, ECHO_PORT)
    assert peer == f"{f.b.gw4}:{first['local'].rsplit(':', 1)[1]}"


def test_time_exceeded_across_nat_reaches_the_inside_host(f):
    """A probe with TTL 2 dies at B (a router towards the far network); B's ICMP error quotes
    the translated packet and must come back translated, or A's kernel would not match it to
    the socket that sent the probe."""
    f.ns(f.b, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    f.ns(f.b, "ip", "link", "add", "far0", "type", "veth", "peer", "name", "far1", check=False)
    f.ns(f.b, "ip", "addr", "add", f"{f.far4}/24", "dev", "far0", check=False)
    f.ns(f.b, "ip", "link", "set", "far0", "up")
    f.ns(f.b, "ip", "link", "set", "far1", "up")
    f.load([outbound_nat(f), rule(PF_PASS, keep_state=1, no_flags=1)])
    target = f.far4.rsplit(".", 1)[0] + ".77"
    res = nprobe(f, f.a, "ttl_probe", target, 33434, 2)
    assert res["origin"] == "icmp" and res["type"] == 11, res
    assert res["offender"] == f.b.ip4, res
    res1 = nprobe(f, f.a, "ttl_probe", target, 33435, 1)     # the router's own hop, untranslated
    assert res1["type"] == 11 and res1["offender"] == f.a.gw4, res1


# ---- rdr --------------------------------------------------------------------------------------------
def test_rdr_transparent_proxy_recovers_the_original_destination(f, tmp_path):
    """rdr sends A's port-80 connections to a proxy on B's side of TAP b (B's own address,
    port 3128); the proxy asks DIOCNATLOOK where the client was going (an address of B's, the
    "origin" server) and relays; the client gets the origin's answer."""
    origin = f.far4.rsplit(".", 1)[0] + ".80"
    f.ns(f.b, "ip", "addr", "add", f"{origin}/32", "dev", "lo", check=False)
    nspawn(f, f.b, "origin_server", origin, 80)
    nspawn(f, f.b, "natlook_proxy", f.b.ip4, 3128, f.device)
    rdr = nat_rule(PF_RDR, [f.b.ip4], proxy=(3128, 0), af=AF_INET, proto=TCP, ifname=f.a.tap,
                   dst=f"{origin}", dport=80)
    f.load([rdr, rule(PF_PASS)])
    res = nprobe(f, f.a, "http_get", origin, 80)
    assert res["reply"] == f"origin {origin}:80 says hello to {f.b.ip4}", res
    assert res["via"] == f"proxy saw {f.a.ip4} -> {origin}:80"


@NEEDS_TCPDUMP
def test_rdr_port_range_maps_port_for_port(f, tmp_path):
    nspawn(f, f.b, "port_echo", f.b.ip4, 9000, 9010)
    rdr = nat_rule(PF_RDR, [f.b.ip4], proxy=(9000, 9010), af=AF_INET, proto=TCP, ifname=f.a.tap,
                   dst="10.99.0.1")
    rdr[0].dst.port_op = PF_OP_RRG                       # 8000:8010
    rdr[0].dst.port[0], rdr[0].dst.port[1] = socket.htons(8000), socket.htons(8010)
    f.load([rdr, rule(PF_PASS)])
    with Capture(f, f.b, str(tmp_path / "b.pcap"), "tcp[tcpflags] & tcp-syn != 0") as cap:
        for port in (8000, 8004, 8010):
            res = nprobe(f, f.a, "tcp_line", "10.99.0.1", port)
            assert res["reply"] == f"port {port - 8000 + 9000}", res
    # on B's wire: the SYNs arrive for ports 9000, 9004, 9010, the SYN-ACKs leave from them
    syns = [ln for ln in cap.lines() if f"> {f.b.ip4}." in ln]
    assert [ln.split(f"> {f.b.ip4}.")[1].split(":")[0] for ln in syns] == ["9000", "9004", "9010"], syns


# ---- binat ------------------------------------------------------------------------------------------
@NEEDS_TCPDUMP
def test_binat_maps_both_ways(f, tmp_path):
    """binat A's address to 10.99.5.50: outbound connections leave from it, inbound connections
    to it reach A; B's wire shows only the external address."""
    ext = "10.99.5.50"
    binat = nat_rule(PF_BINAT, [ext], af=AF_INET, ifname=f.b.tap, src=f.a.ip4)
    f.load([binat, rule(PF_PASS)])
    f.test_procs.append(f.fspawn(f.a, "echo_server", ECHO_PORT + 7, 0)[0])
    with Capture(f, f.b, str(tmp_path / "b.pcap"), "tcp") as cap:
        p, first = nspawn(f, f.a, "tcp_hold", f.b.ip4, ECHO_PORT, "/nonexistent-trigger", 0.5)
        (_, peer), = peers(f, f.b, ECHO_PORT)
        assert peer.rsplit(":", 1) == [ext, first["local"].rsplit(":", 1)[1]]   # address only
        res = f.fprobe(f.b, "tcp_connect", ext, ECHO_PORT + 7)
        assert res["result"] == "ok", res
    lines = cap.lines()
    assert lines and all(f.a.ip4 not in ln for ln in lines), lines        # A never shows on B's wire
    assert any(f"{ext}.{ECHO_PORT + 7} > {f.b.ip4}" in ln for ln in lines), lines   # inbound, back
    assert any(f"{ext}." in ln and f"> {f.b.ip4}.{ECHO_PORT}:" in ln for ln in lines), lines


# ---- pools --------------------------------------------------------------------------------------


def outbound_sources(f, pool, opts, n=3):
    """The translated sources of n connections from A through `nat ... -> pool opts`: the wire
    keys of their outbound states."""
    f.load([nat_rule(PF_NAT, pool, opts=opts, af=AF_INET, ifname=f.b.tap, src=f"{f.a.gw4}/24"),
            rule(PF_PASS)])
    nspawn(f, f.b, "echo_threads", f.b.ip4, ECHO_PORT + 9)
    res = nprobe(f, f.a, "tcp_burst", f.b.ip4, ECHO_PORT + 9, n)
    assert res["results"] == ["ok"] * n, res
    return [ip_of(s.key[0].addr[1]) for s in f.states()
            if s.direction == PF_OUT and s.proto == TCP and socket.ntohs(s.key[0].port[0]) == ECHO_PORT + 9]


def pool_sources(f, opts, n=4):
    return outbound_sources(f, ["10.99.6.1", "10.99.6.2"], opts, n)


def test_round_robin_pool_alternates(f):
    got = pool_sources(f, PF_POOL_ROUNDROBIN)
    assert sorted(got) == ["10.99.6.1", "10.99.6.1", "10.99.6.2", "10.99.6.2"], got


def test_sticky_address_keeps_a_source_on_one_address(f):
    got = pool_sources(f, PF_POOL_ROUNDROBIN | PF_POOL_STICKYADDR)
    assert len(set(got)) == 1 and len(got) == 4, got
    assert any(bytes(n.raddr)[:4] == socket.inet_aton(got[0]) for n in f.dev.get_src_nodes())


def test_source_hash_is_stable(f):
    first = pool_sources(f, PF_POOL_SRCHASH)
    assert len(set(first)) == 1, first


def test_round_robin_pool_from_a_table(f):
    """nat ... -> <natpool> round-robin: the connections take the table's addresses in turn."""
    from tables_util import TableClient, table
    tc = TableClient(f.dev)
    tc.add_tables(table("natpool", flags=PFR_TFLAG_PERSIST))
    try:
        tc.add_addrs(table("natpool"), ["10.99.8.1", "10.99.8.2"])
        got = outbound_sources(f, ["<natpool>"], PF_POOL_ROUNDROBIN, n=4)
        assert sorted(got) == ["10.99.8.1", "10.99.8.1", "10.99.8.2", "10.99.8.2"], got
    finally:
        f.flush()
        tc.del_tables(table("natpool"))


def test_bitmask_pool_keeps_the_host_part(f):
    got = outbound_sources(f, ["10.99.9.0/24"], PF_POOL_BITMASK)
    assert got == ["10.99.9." + f.a.ip4.rsplit(".", 1)[1]] * 3, got


def test_random_pool_stays_inside_the_network(f):
    got = outbound_sources(f, ["10.99.10.0/24"], PF_POOL_RANDOM, n=4)
    assert len(got) == 4 and all(a.startswith("10.99.10.") for a in got), got
