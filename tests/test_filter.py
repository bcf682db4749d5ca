"""pf_test on the datapath (pfkern/pf_test.pyx) end to end: hosts in two namespaces on either
side of pfd's router, rulesets loaded through /dev/pf with pfctl's ioctl sequence, traffic from
the namespaces, results read back through the ioctls (DIOCGETSTATUS, DIOCGETRULE,
DIOCGETSTATES, DIOCKILLSTATES)."""
import os
import socket
import time

import pytest

from filter_net import (AF_INET, AF_INET6, ICMP, ICMP6, PF_DROP, PF_IN, PF_OUT, PF_PASS,
                        PFRES_MATCH, PF_OP_EQ, PF_OP_GE, PF_OP_GT, PF_OP_IRG, PF_OP_LE, PF_OP_LT,
                        PF_OP_NE, PF_OP_RRG, PF_OP_XRG, PFRULE_RETURNRST, TCP, UDP, FilterNet,
                        block_return, rule, wait_for)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")

UDP_PORT = 5301


@pytest.fixture(scope="module")
def net():
    t = FilterNet(tag="f").start()
    try:
        t.dev.start()
        for v6 in (0, 1):
            t.fspawn(t.b, "udp_echo", UDP_PORT + v6, v6)
            t.fspawn(t.b, "echo_server", 5400 + v6, v6)
            t.fspawn(t.a, "udp_echo", UDP_PORT + v6, v6)
            t.fspawn(t.a, "echo_server", 5400 + v6, v6)
        yield t
        assert t.alive(), "pfd died:\n" + t.output()
    finally:
        t.close()


@pytest.fixture
def f(net):
    yield net
    net.flush()
    net.dev.ioctl(__import__("pfkern.client", fromlist=["DIOCCLRSTATES"]).DIOCCLRSTATES,
                  __import__("pfkern.client", fromlist=["pfioc_state_kill"]).pfioc_state_kill())
    assert net.alive(), net.output()


def udp_ok(t, side, dst, v6, count=2, timeout=1.0):
    return t.fprobe(side, "udp_send", dst, UDP_PORT + v6, count, timeout)


# ---- pass, block, disabled ---------------------------------------------------------------------------
@pytest.mark.parametrize("v6", [0, 1], ids=["ipv4", "ipv6"])
def test_pass_rules_let_ping_tcp_udp_through(f, v6):
    f.load([rule(PF_PASS)])
    a, b = f.addr(f.a, v6), f.addr(f.b, v6)
    assert f.pings(f.a, b) == 2 and f.pings(f.b, a) == 2
    assert f.fprobe(f.a, "tcp_connect", b, 5400 + v6)["result"] == "ok"
    assert udp_ok(f, f.a, b, v6)["ok"] == 2
    r = f.rules()[0]
    assert r.evaluations > 0 and r.packets[0] > 0 and r.packets[1] > 0
    assert r.bytes[0] > 0 and r.bytes[1] > 0 and r.u_states_tot > 0


def test_block_blocks_and_counts(f):
    f.load([rule(PF_PASS), rule(PF_DROP, af=AF_INET, proto=UDP, dport=UDP_PORT, direction=PF_IN)])
    before = f.status()
    assert udp_ok(f, f.a, f.b.ip4, 0, count=2, timeout=0.5)["ok"] == 0
    assert f.pings(f.a, f.b.ip4) == 2               # other traffic still passes
    after = f.status()
    # a packet blocked by a rule is counted under "match" (REASON_SET(PFRES_MATCH) in pf_test_rule)
    assert after.counters[PFRES_MATCH] - before.counters[PFRES_MATCH] >= 2
    blk = f.rules()[1]
    assert blk.packets[0] >= 2 and blk.bytes[0] > 0 and blk.u_states_tot == 0
    ifs = {bytes(k.pfik_name).rstrip(b"\0").decode(): k for k in f.dev.interfaces()}
    assert ifs[f.a.tap].pfik_packets[0][0][1] >= 2      # inet, in, block


def test_disabled_pf_passes_everything(f):
    f.load([rule(PF_DROP)])
    assert f.pings(f.a, f.b.ip4) == 0
    f.dev.stop()
    try:
        assert f.pings(f.a, f.b.ip4) == 2
        assert f.rules(action=PF_DROP)[0].evaluations > 0
    finally:
        f.dev.start()


def test_quick_and_last_match(f):
    # last match wins: the final pass overrides the block
    f.load([rule(PF_DROP, proto=ICMP), rule(PF_PASS, proto=ICMP)])
    assert f.pings(f.a, f.b.ip4) == 2
    # quick stops at the block
    f.load([rule(PF_DROP, proto=ICMP, quick=1), rule(PF_PASS, proto=ICMP)])
    assert f.pings(f.a, f.b.ip4) == 0
    assert f.rules()[1].evaluations == 0             # never reached


def test_interface_group_and_negation(f):
    f.load([rule(PF_DROP, proto=ICMP, ifname=f.b.tap, direction=PF_OUT)])
    assert f.pings(f.a, f.b.ip4) == 0
    group = f.a.tap.rstrip("0123456789")             # the driver group holds both TAPs
    f.load([rule(PF_DROP, proto=ICMP, ifname=group, direction=PF_IN)])
    assert f.pings(f.a, f.b.ip4) == 0 and f.pings(f.b, f.a.ip4) == 0
    # the echo reply enters on B's side too: a state made on the way in lets it back
    f.load([rule(PF_PASS), rule(PF_DROP, proto=ICMP, ifname=f.a.tap, ifnot=1, direction=PF_IN)])
    assert f.pings(f.a, f.b.ip4) == 2 and f.pings(f.b, f.a.ip4) == 0


def test_addresses_masks_negation_ranges(f):
    """Each block is on the way in, behind a stateful pass (replies come back by state)."""
    b = f.b.ip4
    net = b.rsplit(".", 1)[0] + ".0/24"
    f.load([rule(PF_PASS), rule(PF_DROP, proto=ICMP, dst=net, direction=PF_IN)])
    assert f.pings(f.a, b) == 0 and f.pings(f.a, f.far4) == 2
    r = rule(PF_DROP, proto=ICMP, dst=net, direction=PF_IN)
    r.dst.neg = 1
    f.load([rule(PF_PASS), r])
    assert f.pings(f.a, b) == 2 and f.pings(f.a, f.far4) == 0
    r = rule(PF_DROP, proto=ICMP, af=AF_INET, direction=PF_IN)
    r.dst.addr.type = 5                              # PF_ADDR_RANGE: .1 - .3 of B's network
    lo, hi = socket.inet_aton(b)[:3] + bytes([1]), socket.inet_aton(b)[:3] + bytes([3])
    r.dst.addr.v.a.addr.set(socket.inet_ntoa(lo))
    r.dst.addr.v.a.mask.set(socket.inet_ntoa(hi))
    f.load([rule(PF_PASS), r])
    assert f.pings(f.a, b) == 0
    assert f.pings(f.a, f.far4) == 2


PORT_CASES = [  # (op, p1, p2, port that matches, port that does not)
    (PF_OP_EQ, 6000, 0, 6000, 6001), (PF_OP_NE, 6000, 0, 6001, 6000),
    (PF_OP_LT, 6000, 0, 5999, 6000), (PF_OP_LE, 6000, 0, 6000, 6001),
    (PF_OP_GT, 6000, 0, 6001, 6000), (PF_OP_GE, 6000, 0, 6000, 5999),
    (PF_OP_IRG, 6000, 6002, 6001, 6002), (PF_OP_XRG, 6000, 6002, 6003, 6001),
    (PF_OP_RRG, 6000, 6002, 6002, 6003),
]


@pytest.mark.parametrize("op,p1,p2,hit,miss", PORT_CASES, ids=[str(c[0]) for c in PORT_CASES])
def test_port_operators(f, op, p1, p2, hit, miss):
    """A TCP connection to a closed port gets a RST from B (refused) unless a rule blocks the
    SYN (timeout)."""
    f.load([rule(PF_DROP, proto=TCP, dport=(op, p1, p2), direction=PF_IN, ifname=f.a.tap)])
    assert f.fprobe(f.a, "tcp_connect", f.b.ip4, hit, 1)["result"] == "timeout"
    assert f.fprobe(f.a, "tcp_connect", f.b.ip4, miss, 1)["result"] == "refused"


def test_tcp_flags_and_icmp_type(f):
    # flags S/SA: only the SYN matches the block; with no state the handshake cannot start
    f.load([rule(PF_PASS, keep_state=0, no_flags=1),
            rule(PF_DROP, proto=TCP, flags=0x02, flagset=0x12, dport=5400)])
    assert f.fprobe(f.a, "tcp_connect", f.b.ip4, 5400, 1)["result"] == "timeout"
    # icmp-type echoreq (8): type is stored + 1
    f.load([rule(PF_DROP, proto=ICMP, type=8 + 1)])
    assert f.pings(f.a, f.b.ip4) == 0
    f.load([rule(PF_DROP, proto=ICMP, type=0 + 1)])              # echo replies
    assert f.pings(f.a, f.b.ip4) == 0
    f.load([rule(PF_DROP, proto=ICMP, type=13 + 1)])
    assert f.pings(f.a, f.b.ip4) == 2


# ---- block return ----------------------------------------------------------------------------------
@pytest.mark.parametrize("v6", [0, 1], ids=["ipv4", "ipv6"])
def test_block_return(f, v6):
    b = f.addr(f.b, v6)
    f.load([rule(PF_PASS), block_return(proto=TCP, dport=5400 + v6, direction=PF_IN),
            block_return(proto=UDP, dport=UDP_PORT + v6, direction=PF_IN)])
    res = f.fprobe(f.a, "tcp_connect", b, 5400 + v6, 3)
    assert res["result"] == "refused" and res["seconds"] < 1, res
    assert f.fprobe(f.a, "udp_send", b, UDP_PORT + v6, 1, 2)["refused"] == 1
    # return-rst only
    f.load([rule(PF_PASS), rule(PF_DROP, proto=TCP, dport=5400 + v6, rule_flag=PFRULE_RETURNRST)])
    assert f.fprobe(f.a, "tcp_connect", b, 5400 + v6, 3)["result"] == "refused"


# ---- keep state --------------------------------------------------------------------------------------
def outside_rules(f, v6):
    """block in all; pass out keep state; plus what lets A's packets in and neighbour discovery."""
    rules = [rule(PF_DROP, direction=PF_IN), rule(PF_PASS, direction=PF_OUT),
             rule(PF_PASS, direction=PF_IN, ifname=f.a.tap)]
    if v6:
        rules += [rule(PF_PASS, af=AF_INET6, proto=ICMP6, type=t + 1, keep_state=0, no_flags=1)
                  for t in (135, 136)]
    return rules


@pytest.mark.parametrize("v6", [0, 1], ids=["ipv4", "ipv6"])
def test_block_in_pass_out_keep_state(f, v6):
    f.load(outside_rules(f, v6))
    a, b = f.addr(f.a, v6), f.addr(f.b, v6)
    assert f.pings(f.a, b) == 2                                     # replies come back in
    assert f.fprobe(f.a, "tcp_connect", b, 5400 + v6)["result"] == "ok"
    assert udp_ok(f, f.a, b, v6)["ok"] == 2
    # nothing starts from B
    assert f.pings(f.b, a) == 0
    assert f.fprobe(f.b, "tcp_connect", a, 5400 + v6, 1)["result"] == "timeout"
    assert udp_ok(f, f.b, a, v6, count=1, timeout=0.5)["ok"] == 0


def test_states_listed_with_keys_direction_counters_timeout(f):
    f.load(outside_rules(f, 0))
    assert udp_ok(f, f.a, f.b.ip4, 0, count=3)["ok"] == 3
    sts = [s for s in f.states() if s.proto == UDP]
    assert len(sts) == 2, sts
    by_dir = {s.direction: s for s in sts}
    sin, sout = by_dir[PF_IN], by_dir[PF_OUT]
    a, b = f.a.ip4, f.b.ip4
    # in on A: key[0] is the source; out on B: key[0] is the destination (stack side reversed)
    assert (str(sin.key[0].addr[0].ip(AF_INET)), str(sin.key[0].addr[1].ip(AF_INET))) == (a, b)
    assert (str(sout.key[0].addr[0].ip(AF_INET)), str(sout.key[0].addr[1].ip(AF_INET))) == (b, a)
    assert socket.ntohs(sin.key[0].port[1]) == UDP_PORT
    for s in sts:
        assert bytes(s.ifname).rstrip(b"\0") == b"all"               # floating
        assert s.timeout == 8                                        # PFTM_UDP_MULTIPLE
        assert s.src.state == 2 and s.dst.state == 2                 # PFUDPS_MULTIPLE
        pk = [socket.ntohl(s.packets[i][1]) for i in range(2)]       # low words
        assert pk == [3, 3], pk
        assert 0 < socket.ntohl(s.expire) <= f.dev.get_timeout(8)
    assert f.rules()[1].u_states_cur == 1 and f.rules()[2].u_states_cur == 1


def test_tcp_state_tracks_the_connection(f):
    f.load(outside_rules(f, 0))
    trig = os.path.join(f.tmp, "go-track")
    p, first = f.fspawn(f.a, "tcp_session", f.b.ip4, 5400, trig)
    assert first["first"] == "ok"
    sts = [s for s in f.states() if s.proto == TCP]
    assert len(sts) == 2
    for s in sts:
        assert (s.src.state, s.dst.state) == (4, 4)                  # ESTABLISHED both ways
        assert s.timeout == 2                                        # PFTM_TCP_ESTABLISHED
        assert socket.ntohl(s.src.seqlo) and socket.ntohl(s.dst.seqhi)
    open(trig, "w").close()
    assert p.stdout.readline() and p.wait(10) == 0


def test_kill_states_cuts_a_live_tcp_connection(f):
    f.load(outside_rules(f, 0))
    trig = os.path.join(f.tmp, "go-kill")
    p, first = f.fspawn(f.a, "tcp_session", f.b.ip4, 5400, trig, 2)
    assert first["first"] == "ok"
    before = f.status().counters[PFRES_MATCH]
    killed = f.kill(psk_af=AF_INET, psk_proto=TCP)
    assert killed == 2
    assert not [s for s in f.states() if s.proto == TCP]
    open(trig, "w").close()
    import json
    res = json.loads(p.stdout.readline())
    p.wait(10)
    # the next segment (an ACK, not a SYN) is evaluated again: flags S/SA does not match it,
    # so "block in all" drops it
    assert res["second"] == "timeout", res
    assert f.status().counters[PFRES_MATCH] > before
    assert f.rules()[0].packets[0] > 0


def test_states_expire(f):
    f.load([rule(PF_PASS)])
    old = [f.dev.get_timeout(i) for i in (6, 7, 8, 15)]
    for i, s in ((6, 2), (7, 2), (8, 2), (15, 1)):
        f.dev.set_timeout(i, s)
    try:
        assert udp_ok(f, f.a, f.b.ip4, 0, count=1)["ok"] == 1
        assert [s for s in f.states() if s.proto == UDP]
        assert wait_for(lambda: not [s for s in f.states() if s.proto == UDP], timeout=8)
        # the rule's count follows (the namespaces' own ICMPv6 may hold states of it too)
        assert wait_for(lambda: f.rules()[0].u_states_cur == len(f.states()), timeout=3)
    finally:
        for i, s in zip((6, 7, 8, 15), old):
            f.dev.set_timeout(i, s)


def test_purge_goes_through_many_states_in_slices(f):
    """Six times as many states as one purge slice (pf_test's PURGE_SLICE, 1,024): one purge
    pass (every 3 s here) takes every expired one, the live ones stay, and the counts agree. A
    pass that stopped after a slice would need six passes, 15 s."""
    from pfkern.client.constants import PFTM_INTERVAL, PFTM_UDP_SINGLE
    from states_helpers import add, make_state
    creator = 0x5151
    old = f.dev.get_timeout(PFTM_INTERVAL)
    f.dev.set_timeout(PFTM_INTERVAL, 60)        # no purge while the states go in
    try:
        for k in range(6000):
            add(f.dev, make_state(((f"10.77.{k // 250}.{k % 250 + 1}", 1000 + k), ("10.78.0.1", 53)),
                                  proto=UDP, timeout=PFTM_UDP_SINGLE, id=k + 1, creatorid=creator,
                                  expire=3600 if k % 500 == 7 else 1))
        mine = lambda: [s for s in f.states() if socket.ntohl(s.creatorid) == creator]
        assert len(mine()) == 6000
        time.sleep(1.5)                          # the short ones are now past their time
        f.dev.set_timeout(PFTM_INTERVAL, 3)
        assert wait_for(lambda: len(mine()) == 12, timeout=8), len(mine())
        assert sorted(socket.ntohs(s.key[0].port[0]) for s in mine()) == [1000 + k for k in range(7, 6000, 500)]
        assert f.status().states == len(f.states())
    finally:
        f.dev.set_timeout(PFTM_INTERVAL, old)


# ---- anchors ---------------------------------------------------------------------------------------
def test_anchor_rules_evaluated_where_called(f):
    from rules_util import add_rule, ruleset_elements, ticket_of, xbegin, xcommit
    els = xbegin(f.dev, ruleset_elements("") + ruleset_elements("ext"))
    add_rule(f.dev, rule(PF_PASS), ticket_of(els, 1, ""), "")
    add_rule(f.dev, rule(PF_PASS, quick=1), ticket_of(els, 1, ""), "", anchor_call="ext")
    add_rule(f.dev, rule(PF_PASS, proto=TCP), ticket_of(els, 1, ""), "")
    add_rule(f.dev, rule(PF_DROP, proto=ICMP), ticket_of(els, 1, "ext"), "ext")
    xcommit(f.dev, els)
    # the anchor's block matched and the anchor rule is quick: evaluation stops there
    assert f.pings(f.a, f.b.ip4) == 0
    assert f.fprobe(f.a, "tcp_connect", f.b.ip4, 5400)["result"] == "ok"
    anchored = f.rules("ext", PF_DROP)[0]
    assert anchored.packets[0] > 0
    f.flush("ext")


def test_wildcard_anchor(f):
    from rules_util import add_rule, ruleset_elements, ticket_of, xbegin, xcommit
    els = xbegin(f.dev, ruleset_elements("") + ruleset_elements("w/one") + ruleset_elements("w/two"))
    add_rule(f.dev, rule(PF_PASS), ticket_of(els, 1, ""), "")
    add_rule(f.dev, rule(PF_PASS), ticket_of(els, 1, ""), "", anchor_call="w/*")
    add_rule(f.dev, rule(PF_PASS, proto=UDP), ticket_of(els, 1, "w/one"), "w/one")
    add_rule(f.dev, rule(PF_DROP, proto=ICMP), ticket_of(els, 1, "w/two"), "w/two")
    xcommit(f.dev, els)
    assert f.pings(f.a, f.b.ip4) == 0
    assert udp_ok(f, f.a, f.b.ip4, 0)["ok"] == 2
    f.flush("w/one")
    f.flush("w/two")


def test_many_rules_last_matches(f):
    rules = [rule(PF_DROP, af=AF_INET, proto=UDP, dst="10.200.%d.%d" % (i // 250, i % 250))
             for i in range(500)]
    rules.append(rule(PF_DROP, af=AF_INET, proto=ICMP, dst=f.b.ip4))
    f.load([rule(PF_PASS)] + rules)
    assert f.pings(f.a, f.b.ip4) == 0
    got = f.rules(action=PF_DROP)
    # skip steps: af/proto/dst blocks of UDP rules are jumped over, not evaluated one by one
    assert got[-1].evaluations > 0 and got[250].evaluations < got[-1].evaluations


# ---- tables -----------------------------------------------------------------------------------------
def test_table_longest_prefix_negated_entries_and_changes(f):
    """A <table> address matches by longest prefix from the datapath (negated entries included);
    DIOCRADDADDRS / DIOCRDELADDRS take effect on the next packet; an inactive table never
    matches."""
    from tables_util import TableClient, table
    tc = TableClient(f.dev)
    b, far = f.b.ip4, f.far4                        # 10.81.2.2, 10.82.0.1
    f.load([rule(PF_PASS), rule(PF_DROP, proto=ICMP, dst="<tt>", direction=PF_IN),
            rule(PF_DROP, proto=ICMP6, dst="<tt>", direction=PF_IN)])
    # referenced but not defined: not active, never matches
    assert f.pings(f.a, b) == 2 and f.pings(f.a, far) == 2
    tc.add_tables(table("tt"))
    tc.add_addrs(table("tt"), ["10.0.0.0/8", "!10.81.2.0/24"])
    assert f.pings(f.a, far) == 0                   # 10/8
    assert f.pings(f.a, b) == 2                     # !10.81.2/24 is the longer prefix
    tc.del_addrs(table("tt"), ["!10.81.2.0/24"])
    assert f.pings(f.a, b) == 0
    tc.add_addrs(table("tt"), ["!%s" % b])
    assert f.pings(f.a, b) == 2 and f.pings(f.a, far) == 0
    # IPv6 entries in the same table
    assert f.pings(f.a, f.b.ip6) == 2
    tc.add_addrs(table("tt"), ["fd81:2::/64"])
    assert f.pings(f.a, f.b.ip6) == 0
    tc.add_addrs(table("tt"), ["!%s" % f.b.ip6])
    assert f.pings(f.a, f.b.ip6) == 2
    # match/nomatch counted on the table
    ts = [t for t in tc.tables(stats=True) if bytes(t.pfrts_t.pfrt_name).rstrip(b"\0") == b"tt"][0]
    assert ts.pfrts_match > 0 and ts.pfrts_nomatch > 0
    # flushing the table: nothing matches any more
    tc.clr_addrs(table("tt"))
    assert f.pings(f.a, far) == 2


def test_table_negated_rule_address_and_root_fallback(f):
    """"! <table>" negates the table's answer; a rule in an anchor whose own table is not
    active looks its address up in the main ruleset's table of the same name."""
    from rules_util import add_rule, ruleset_elements, ticket_of, xbegin, xcommit
    from tables_util import TableClient, table
    tc = TableClient(f.dev)
    r = rule(PF_DROP, proto=ICMP, dst="<tn>", direction=PF_IN)
    r.dst.neg = 1
    els = xbegin(f.dev, ruleset_elements("") + ruleset_elements("tx"))
    add_rule(f.dev, rule(PF_PASS), ticket_of(els, 1, ""), "")
    add_rule(f.dev, rule(PF_PASS), ticket_of(els, 1, ""), "", anchor_call="tx")
    add_rule(f.dev, r, ticket_of(els, 1, "tx"), "tx")
    xcommit(f.dev, els)
    # neither the anchor's table nor a root table is active: the table never matches, so the
    # negated address matches everything
    assert f.pings(f.a, f.b.ip4) == 0
    tc.add_tables(table("tn", flags=0x1))           # the root table (main ruleset), persist
    try:
        tc.add_addrs(table("tn"), [f.b.ip4])
        assert f.pings(f.a, f.b.ip4) == 2           # in the root table: not blocked
        assert f.pings(f.a, f.far4) == 0
    finally:
        f.flush("tx")
        tc.del_tables(table("tn"))
