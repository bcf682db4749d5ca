"""pf_test's indexed runs (pfkern/pf_test.pxd, cf_run): consecutive rules that differ only in one
address or port, each member matching one interval of keys and no two overlapping (hosts,
networks, address ranges, ports, port ranges and comparisons), are looked up instead of walked.
The verdicts and every rule's evaluation and packet counters must be what FreeBSD's walk with skip
steps gives; a model of that walk (written here from pf_test_rule's loop, reading the skip steps
the daemon computed) says what to expect for the traffic each test sends."""
import ipaddress
import os
import re
import socket

import pytest

from pfkern.client.constants import (PF_ADDR_RANGE, PF_OP_EQ, PF_OP_GE, PF_OP_GT, PF_OP_IRG, PF_OP_LE,
                                      PF_OP_LT, PF_OP_NE, PF_OP_RRG, PF_OP_XRG, PF_SKIP_AF as SKIP_AF,
                                      PF_SKIP_DIR as SKIP_DIR, PF_SKIP_IFP as SKIP_IFP, PF_SKIP_DST_ADDR as SKIP_DST_ADDR,
                                      PF_SKIP_DST_PORT as SKIP_DST_PORT, PF_SKIP_PROTO as SKIP_PROTO,
                                      PF_SKIP_SRC_ADDR as SKIP_SRC_ADDR, PF_SKIP_SRC_PORT as SKIP_SRC_PORT)

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
    """(kind, a, b, neg): "range" with bounds a..b, "mask" with address a and mask b; None = any."""
    n = 4 if af == AF_INET else 16
    a = bytes(wrap.addr.v.a.addr)[:n]
    m = bytes(wrap.addr.v.a.mask)[:n]
    if wrap.addr.type == PF_ADDR_RANGE:
        return ("range", a, m, bool(wrap.neg))
    return None if not any(m) else ("mask", a, m, bool(wrap.neg))


def addr_match(spec, packet_addr):
    if spec is None:
        return True
    kind, a, m, neg = spec
    if kind == "range":
        hit = a <= packet_addr <= m             # big-endian bytes compare as numbers
    else:
        hit = all((x & k) == (y & k) for x, y, k in zip(packet_addr, a, m))
    return hit != neg


PORT_OPS = {PF_OP_IRG: lambda p, a, b: a < p < b, PF_OP_EQ: lambda p, a, b: p == a,
            PF_OP_NE: lambda p, a, b: p != a, PF_OP_LT: lambda p, a, b: p < a,
            PF_OP_LE: lambda p, a, b: p <= a, PF_OP_GT: lambda p, a, b: p > a,
            PF_OP_GE: lambda p, a, b: p >= a, PF_OP_XRG: lambda p, a, b: p < a or p > b,
            PF_OP_RRG: lambda p, a, b: a <= p <= b}


def port_match(wrap, port):
    """pf_match_port, from pf.c's operator table."""
    if not wrap.port_op:
        return True
    return PORT_OPS[wrap.port_op](port, socket.ntohs(wrap.port[0]), socket.ntohs(wrap.port[1]))


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
        ifname = r.ifname.decode()
        # pfi_kif_match: a rule without an interface matches every one ("!" then none)
        if (not ifname or ifname == packet["ifname"]) == bool(r.ifnot):
            i = skip(r, SKIP_IFP)
        elif r.direction and r.direction != packet["dir"]:
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


def exchange_passes(a, b, v6, ifa, ifb):
    """The four pf_test passes of one UDP datagram to b's echo and its reply, in order (a's
    side of the router is interface ifa, b's ifb)."""
    af = AF_INET6 if v6 else AF_INET
    pa, pb = ipaddress.ip_address(a).packed, ipaddress.ip_address(b).packed
    req = dict(af=af, proto=UDP, src=pa, dst=pb, sport=SPORT, dport=UDP_PORT + v6)
    rep = dict(af=af, proto=UDP, src=pb, dst=pa, sport=UDP_PORT + v6, dport=SPORT)
    return [dict(req, dir=PF_IN, ifname=ifa), dict(req, dir=PF_OUT, ifname=ifb),
            dict(rep, dir=PF_IN, ifname=ifb), dict(rep, dir=PF_OUT, ifname=ifa)]


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
    ev, pk, verdicts = expect(loaded, exchange_passes(a, b, v6, f.a.tap, f.b.tap), count)
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


def runs_formed(f):
    """(indexed runs, rules in them) of the last compile, from the daemon's debug log."""
    m = re.findall(r"indexed runs: (\d+) \((\d+) rules\)", f.output())
    assert m, f.output()[-2000:]
    return tuple(int(x) for x in m[-1])


def around(addr, plen):
    return str(ipaddress.ip_network(f"{addr}/{plen}", strict=False))


@pytest.mark.parametrize("v6", [0, 1], ids=["ipv4", "ipv6"])
def test_network_and_range_runs_count_as_the_walk(f, v6):
    """Networks of several prefix lengths and address ranges, none overlapping, form one run."""
    af = AF_INET6 if v6 else AF_INET
    a, b = f.addr(f.a, v6), f.addr(f.b, v6)
    if v6:
        nets = [f"fd90:{k:x}::/{48 + (k % 3) * 8}" for k in range(1, 19)]
        nets[5] = "fd91::10 - fd91::ff"
        nets[9] = "fd91::100 - fd91::1ff"
    else:
        nets = [f"10.90.{k}.0/{(24, 28, 30, 31, 32)[k % 5]}" for k in range(18)]
        nets[4] = "10.91.0.1 - 10.91.3.200"
        nets[12] = "10.91.4.0 - 10.91.4.0"
    members = [pnone(action=PF_DROP, af=af, proto=UDP, dst=n) for n in nets]
    # the packets' addresses at the bounds of their members' intervals
    ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
    members[7] = pnone(af=af, proto=UDP, dst=f"{ib - 3} - {ib}")
    members[14] = pnone(action=PF_DROP, af=af, proto=UDP, dst=f"{ia} - {ia + 5}", tos=0x10)
    members[16] = pnone(action=PF_DROP, af=af, proto=UDP, dst=around(ib + 256, 126 if v6 else 30))
    run_and_compare(f, background(v6) + [pnone()] + members + [pnone(direction=PF_OUT)], v6)
    assert runs_formed(f) == (1, 18)


def test_destination_port_runs_count_as_the_walk(f):
    """Ports, port ranges and comparisons as keys: the requests' port passes (not quick), the
    replies' port matches a member whose TOS they lack."""
    spans = [(PF_OP_EQ, 1000 + k) for k in range(8)] + \
        [(PF_OP_RRG, 2000 + 10 * k, 2005 + 10 * k) for k in range(4)] + \
        [(PF_OP_LT, 100), (PF_OP_GT, 60000), (PF_OP_IRG, 3000, 3010), (PF_OP_LE, 200, 0),
         (PF_OP_GE, 50000)]
    members = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dport=p) for p in spans]
    members[6] = pnone(af=AF_INET, proto=UDP, dport=(PF_OP_RRG, 5300, UDP_PORT))
    members[10] = pnone(action=PF_DROP, af=AF_INET, proto=UDP, dport=(PF_OP_RRG, SPORT, 40200), tos=0x10)
    members[14] = pnone(action=PF_DROP, af=AF_INET, proto=UDP, dport=(PF_OP_IRG, 1100, 1110))
    run_and_compare(f, background(0) + [pnone()] + members + [pnone()], 0)
    # "<= 200" overlaps "< 100": the run ends before it and a second one cannot start with
    # two members
    assert runs_formed(f) == (1, 15)


def test_source_port_run_quick_member_stops_evaluation(f):
    members = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, sport=7000 + k) for k in range(20)]
    members[2] = pnone(af=AF_INET, proto=UDP, sport=UDP_PORT, quick=1)             # replies end
    members[15] = pnone(af=AF_INET, proto=UDP, sport=(PF_OP_RRG, SPORT - 5, SPORT + 5))
    got = run_and_compare(f, background(0) + [pnone()] + members + [pnone(action=PF_DROP, tos=4)], 0)
    assert got[3 + 1][0] > got[3 + 19][0] > 0
    assert runs_formed(f) == (1, 20)


def test_overlaps_negation_and_odd_masks_split_runs(f):
    """A network holding an earlier member's, a negated address, a non-contiguous mask and
    "!=" are not keys of the run they follow; the walk takes them, the counts stay exact."""
    a, b = f.a.ip4, f.b.ip4
    run1 = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=f"10.70.{k}.0/24") for k in range(10)]
    run1[3] = pnone(af=AF_INET, proto=UDP, dst=around(b, 24))
    wider = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst="10.70.0.0/16")]
    run2 = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=f"10.71.{k}.0/24") for k in range(9)]
    odd = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=f"{b}&255.255.0.255", tos=8),
           pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst="10.72.0.0/16"),
           pnone(action=PF_DROP, af=AF_INET, proto=UDP, dport=(PF_OP_NE, UDP_PORT))]
    odd[1].dst.neg = 1
    run3 = [pnone(action=PF_DROP, af=AF_INET, proto=UDP, src=f"10.73.{k}.0/24") for k in range(8)]
    run3[5] = pnone(af=AF_INET, proto=UDP, src=around(a, 24))
    run_and_compare(f, background(0) + [pnone()] + run1 + wider + run2 + odd + run3, 0)
    # the /16 holds 10.70.0.0/24: it opens the second run (with run2's nine)
    assert runs_formed(f) == (3, 10 + 1 + 9 + 8)


# ---- the classifier (pf_test.pxd, cf_cls): rulesets the walk would visit rule by rule ----------------
def classified(f):
    m = re.findall(r"classified rulesets: (\d+)", f.output())
    assert m, f.output()[-2000:]
    return int(m[-1])


def random_rules(rnd, f, v6, n):
    """n rules in groups that share their first fields (so skip steps jump), with addresses,
    ranges, negations, non-contiguous masks and ports around the test traffic's."""
    af = AF_INET6 if v6 else AF_INET
    a, b = ipaddress.ip_address(f.addr(f.a, v6)), ipaddress.ip_address(f.addr(f.b, v6))
    host = 128 if v6 else 32
    far = "fd50:%x::/64" if v6 else "10.50.%d.0/24"
    odd = "ffff:ffff:0:ffff:ffff:ffff:ffff:ffff" if v6 else "255.255.0.255"

    def address():
        x = rnd.choice((a, b))
        return rnd.choice((None, None, str(x), around(x, host - rnd.choice((2, 8, 16))),
                           far % rnd.randrange(8), f"{x - rnd.randrange(4)} - {x + rnd.randrange(4)}",
                           f"{x} - {x + 2}", f"{x - 2} - {x}", f"{x}&{odd}"))

    def port():
        p = rnd.choice((UDP_PORT, UDP_PORT + 1, SPORT, 80))
        op = rnd.choice((PF_OP_EQ, PF_OP_NE, PF_OP_LT, PF_OP_LE, PF_OP_GT, PF_OP_GE,
                         PF_OP_IRG, PF_OP_RRG, PF_OP_XRG))
        return rnd.choice((None, None, (op, p - rnd.randrange(3), p + rnd.randrange(3))))

    out = []
    while len(out) < n:
        shared = dict(direction=rnd.choice((0, PF_IN, PF_OUT)), af=rnd.choice((af, af, af, 0)),
                      proto=rnd.choice((UDP, UDP, 6, 0)), ifname=rnd.choice(("", "", f.a.tap, f.b.tap)),
                      ifnot=int(rnd.random() < 0.3))
        src = address() if shared["af"] else None
        for _ in range(rnd.randrange(1, 7)):
            kw = dict(shared, src=src if rnd.random() < 0.6 else (address() if shared["af"] else None),
                      dst=address() if shared["af"] else None)
            if kw["proto"]:
                kw.update(sport=port(), dport=port())
            r = pnone(action=PF_DROP if rnd.random() < 0.08 else PF_PASS, quick=int(rnd.random() < 0.05),
                      tos=0x10 if rnd.random() < 0.1 else 0, **kw)
            for side in (r.src, r.dst):
                if side.addr.type == PF_ADDR_RANGE or any(bytes(side.addr.v.a.mask)):
                    side.neg = int(rnd.random() < 0.25)
            out.append(r)
    return out[:n]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("v6", [0, 1], ids=["ipv4", "ipv6"])
def test_classified_rulesets_count_as_the_walk(f, v6, seed):
    """Random rulesets of 160 rules: the classifier picks the rules the walk stops at; verdicts,
    evaluations and packets are the walk's, rule by rule."""
    import random
    rnd = random.Random(seed * 10 + v6)
    rules_in = background(v6) + [pnone()] + random_rules(rnd, f, v6, 160)
    run_and_compare(f, rules_in, v6, count=3)
    assert classified(f) == 1


def test_classifier_only_where_the_walk_is_long(f):
    """An alternating from/to list is classified; the same rules as two indexed runs are not;
    the verdicts stay the walk's."""
    b = f.b.ip4
    alternating = [pnone(action=PF_DROP, af=AF_INET, proto=UDP,
                         **{"src" if k % 2 else "dst": f"10.60.{k}.0/24"}) for k in range(60)]
    alternating[41] = pnone(action=PF_DROP, af=AF_INET, proto=UDP, dst=b, tos=4)
    run_and_compare(f, background(0) + [pnone()] + alternating + [pnone(direction=PF_OUT)], 0)
    assert classified(f) == 1 and runs_formed(f) == (0, 0)
    grouped = sorted(alternating, key=lambda r: bool(r.src.addr.v.a.mask.addr32[0]))
    run_and_compare(f, background(0) + [pnone()] + grouped + [pnone(direction=PF_OUT)], 0)
    assert classified(f) == 0 and runs_formed(f)[0] == 2
