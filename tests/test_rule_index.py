"""pf_test's indexed runs (pfkern/pf_test.pxd, cf_run): consecutive rules that differ only in one
exact host address are looked up instead of walked. The verdicts and every rule's evaluation and
packet counters must be what FreeBSD's walk with skip steps gives; a model of that walk (written
here from pf_test_rule's loop, reading the skip steps the daemon computed) says what to expect
for the traffic each test sends."""
import ipaddress
import os
import re
import socket

import pytest

from pfkern.client.constants import (PF_OP_EQ, PF_SKIP_AF as SKIP_AF, PF_SKIP_DIR as SKIP_DIR,
                                      PF_SKIP_DST_ADDR as SKIP_DST_ADDR, PF_SKIP_DST_PORT as SKIP_DST_PORT,
                                      PF_SKIP_PROTO as SKIP_PROTO, PF_SKIP_SRC_ADDR as SKIP_SRC_ADDR,
                                      PF_SKIP_SRC_PORT as SKIP_SRC_PORT)

from filter_net import AF_INET, AF_INET6, ICMP6, PF_DROP, PF_IN, PF_OUT, PF_PASS, UDP, module_net, reset, rule

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")

UDP_PORT = 5311
SPORT = 40123


def servers(t):
    for v6 in (0, 1):
        t.fspawn(t.b, "udp_echo", UDP_PORT + v6, v6)


@pytest.fixture(scope="module")
def net():
    yield from module_net("x", 84, servers)


@pytest.fixture
def f(net):
    yield net
    reset(net)


# ---- the model: pf_test_rule's walk -----------------------------------------------------------------
def addr_of(wrap, af):
    n = 4 if af == AF_INET else 16
    a = bytes(wrap.addr.v.a.addr)[:n]
    m = bytes(wrap.addr.v.a.mask)[:n]
    return None if not any(m) else (a, m, bool(wrap.neg))


def addr_match(spec, packet_addr):
    if spec is None:
        return True
    a, m, neg = spec
    hit = all((x & k) == (y & k) for x, y, k in zip(packet_addr, a, m))
    return hit != neg


def port_match(wrap, port):
    if not wrap.port_op:
        return True
    assert wrap.port_op == PF_OP_EQ, "the model knows '=' only"
    return socket.ntohs(wrap.port[0]) == port


def model(rules, packet):
    """One pass of one packet: (evaluations per rule, the last matching rule or None)."""
    n = len(rules)
    ev = [0] * n
    last = None
    i = 0

    def skip(r, k):
        nr = r.skip[k].nr
        return n if nr >= n or nr == 0xffffffff else nr

    while i < n:
        r = rules[i]
        ev[i] += 1
        af = 10 if r.af == 28 else r.af
        if r.direction and r.direction != packet["dir"]:
            i = skip(r, SKIP_DIR)
        elif af and af != packet["af"]:
            i = skip(r, SKIP_AF)
        elif r.proto and r.proto != packet["proto"]:
            i = skip(r, SKIP_PROTO)
        elif not addr_match(addr_of(r.src, packet["af"]), packet["src"]):
            i = skip(r, SKIP_SRC_ADDR)
        elif not port_match(r.src, packet["sport"]):
            i = skip(r, SKIP_SRC_PORT)
        elif not addr_match(addr_of(r.dst, packet["af"]), packet["dst"]):
            i = skip(r, SKIP_DST_ADDR)
        elif not port_match(r.dst, packet["dport"]):
            i = skip(r, SKIP_DST_PORT)
        elif r.tos and r.tos != 0:
            i += 1
        else:
            last = i
            if r.quick:
                break
            i += 1
    return ev, last


def exchange_passes(a, b, v6):
    """The four pf_test passes of one UDP datagram to b's echo and its reply, in order."""
    af = AF_INET6 if v6 else AF_INET
    pa, pb = ipaddress.ip_address(a).packed, ipaddress.ip_address(b).packed
    req = dict(af=af, proto=UDP, src=pa, dst=pb, sport=SPORT, dport=UDP_PORT + v6)
    rep = dict(af=af, proto=UDP, src=pb, dst=pa, sport=UDP_PORT + v6, dport=SPORT)
    return [dict(req, dir=PF_IN), dict(req, dir=PF_OUT), dict(rep, dir=PF_IN), dict(rep, dir=PF_OUT)]


def expect(rules, passes, count):
    ev = [0] * len(rules)
    pk = [[0, 0] for _ in rules]
    verdicts = []
    for p in passes:
        e, last = model(rules, p)
        ev = [x + y * count for x, y in zip(ev, e)]
        if last is not None:
            pk[last][p["dir"] - 1] += count
        verdicts.append(rules[last].action if last is not None else PF_PASS)
        if verdicts[-1] != PF_PASS:
            break                   # a blocked packet takes no further pass, draws no reply
    return ev, pk, verdicts


def measure(f, v6, count):
    """Send `count` exchanges; the model's and the daemon's counter deltas of every rule."""
    loaded = f.rules()
    a, b = f.addr(f.a, v6), f.addr(f.b, v6)
    ev, pk, verdicts = expect(loaded, exchange_passes(a, b, v6), count)
    before = [(r.evaluations, r.packets[0], r.packets[1]) for r in loaded]
    res = f.fprobe(f.a, "udp_send", b, UDP_PORT + v6, count, 1.0, SPORT)
    got = [(r.evaluations - e0, r.packets[0] - p0, r.packets[1] - p1)
           for r, (e0, p0, p1) in zip(f.rules(), before)]
    want = [(ev[i], pk[i][0], pk[i][1]) for i in range(len(loaded))]
    delivered = all(v == PF_PASS for v in verdicts)
    assert res["ok"] == (count if delivered else 0)
    return got, want


def run_and_compare(f, rules_in, v6, count=5, first=3):
    """Load, send, compare every rule from `first` on (the rules before take the namespaces'
    own background traffic) with the model."""
    f.load(rules_in)
    got, want = measure(f, v6, count)
    assert got[first:] == want[first:]
    return got


def background(v6):
    """Rules 0-1: the other family and ICMPv6 (neighbour discovery) end at once."""
    return [rule(PF_PASS, af=AF_INET if v6 else AF_INET6, quick=1, keep_state=0),
            rule(PF_PASS, af=AF_INET6, proto=ICMP6, quick=1, keep_state=0, no_flags=1)]


def hosts(prefix, n):
    return [str(ipaddress.ip_address(prefix) + i) for i in range(1, n + 1)]


def pnone(**kw):
    return rule(keep_state=0, no_flags=1, **kw)


def test_indexed_runs_are_formed(f):
    """Twenty block-to-host rules form one run (the daemon says so at debug level)."""
    f.load(background(0) + [pnone()] +
           [rule(PF_DROP, af=AF_INET, proto=UDP, dst=h) for h in hosts("10.99.0.0", 20)])
    out = f.output()
    m = re.findall(r"indexed runs: (\d+) \((\d+) rules\)", out)
    assert m and m[-1] == ("1", "20"), out[-2000:]


@pytest.mark.parametrize("v6", [0, 1], ids=["ipv4", "ipv6"])
def test_destination_run_counts_as_the_walk(f, v6):
    af = AF_INET6 if v6 else AF_INET
    a, b = f.addr(f.a, v6), f.addr(f.b, v6)
    base = "fd99::" if v6 else "10.99.0.0"
    members = [pnone(action=PF_DROP, af=af, proto=UDP, direction=PF_IN, dst=h) for h in hosts(base, 24)]
    # the server's address in the middle (passes, not quick), the client's address with a TOS
    # the packets do not carry (its key matches, a later field does not: the walk goes on)
    members[11] = pnone(af=af, proto=UDP, direction=PF_IN, dst=b)
    members[17] = pnone(action=PF_DROP, af=af, proto=UDP, direction=PF_IN, dst=a, tos=0x10)
    run_and_compare(f, background(v6) + [pnone()] + members + [pnone(direction=PF_OUT)], v6)


def test_source_run_quick_member_stops_evaluation(f):
    a, b = f.a.ip4, f.b.ip4
    members = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, src=h, sport=7) for h in hosts("10.98.0.0", 30)]
    members[3] = pnone(af=AF_INET, proto=UDP, src=b, quick=1)          # replies end here
    members[20] = pnone(af=AF_INET, proto=UDP, src=a)                  # requests pass on
    tail = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=b, direction=PF_OUT, tos=0x20), pnone()]
    got = run_and_compare(f, background(0) + [pnone()] + members + tail, 0)
    # the members after the quick one were not looked at by the replies: fewer evaluations
    assert got[3 + 2][0] > got[3 + 25][0] > 0


def test_blocking_member_blocks(f):
    b = f.b.ip4
    members = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=h) for h in hosts("10.97.0.0", 16)]
    members[9] = pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=b)
    run_and_compare(f, background(0) + [pnone()] + members, 0, count=3)


def test_duplicate_keys_and_mixed_fields_split_runs(f):
    """A repeated address, a different port or protocol ends a run; counts stay exact."""
    a, b = f.a.ip4, f.b.ip4
    run1 = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=h) for h in hosts("10.96.0.0", 10)]
    run1[4] = pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=b, tos=0x4)
    dup = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst="10.96.0.3")]
    run2 = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=h, dport=UDP_PORT)
            for h in hosts("10.95.0.0", 12)]
    run2[6] = pnone(af=AF_INET, proto=UDP, dst=a, dport=SPORT)
    other = [pnone(action=PF_DROP, af=AF_INET, proto=6, dst=h) for h in hosts("10.94.0.0", 9)]
    run_and_compare(f, background(0) + [pnone()] + run1 + dup + run2 + other, 0)
    m = re.findall(r"indexed runs: (\d+) \((\d+) rules\)", f.output())
    assert m[-1] == ("3", str(10 + 1 + 12 + 9)), m[-1]   # dup closes run 1 and opens run 2


def test_clearing_counters(f):
    """DIOCGETRULE with PF_GET_CLR_CNTR zeroes run members (their pending range counts too), and
    they count exactly again afterwards."""
    from rules_util import read_ruleset
    b = f.b.ip4
    members = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=h) for h in hosts("10.93.0.0", 12)]
    members[8] = pnone(af=AF_INET, proto=UDP, dst=b)
    f.load(background(0) + [pnone()] + members)
    assert f.fprobe(f.a, "udp_send", b, UDP_PORT, 4, 1.0, SPORT)["ok"] == 4
    assert min(r.evaluations for r in f.rules()[3:]) >= 4
    read_ruleset(f.dev, "", PF_PASS, clear=True)
    assert [r.evaluations for r in f.rules()[3:]] == [0] * 12
    got, want = measure(f, 0, 2)
    assert got[3:] == want[3:] and want[3 + 5][0] > 0
