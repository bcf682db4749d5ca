"""route-to, reply-to and dup-to (pf_route): packets leave by the interface and next hop a rule's
pool names instead of the routing table's, for the rule's direction (route-to), the replies
(reply-to), or as a copy (dup-to)."""
import os
import shutil

import pytest

from filter_net import AF_INET, ICMP, PF_IN, PF_OUT, PF_PASS, UDP, Capture, module_net, reset, rule
from pfkern.client.constants import PF_DUPTO, PF_REPLYTO, PF_ROUTETO
from rules_util import pool_addr
from test_nat import nprobe, nspawn

pytestmark = [pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                 reason="needs root and /dev/net/tun"),
              pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")]

UDP_PORT = 5361
UNROUTED = "10.98.0.1"          # an address of B's the router has no route to
WRONGWAY = "10.97.0.5"          # an address of B's the router routes towards A


def setup(t):
    for a in (UNROUTED, WRONGWAY):
        t.ns(t.b, "ip", "addr", "add", f"{a}/32", "dev", "lo")
    nspawn(t, t.b, "udp_echo_on", UNROUTED, UDP_PORT, keep=True)
    t.fspawn(t.a, "udp_echo", UDP_PORT, 0)


@pytest.fixture(scope="module")
def net():
    yield from module_net("o", 92, setup, v6=False, extra=["--route", "10.97.0.0/16,10.92.1.2"])


@pytest.fixture
def f(net):
    yield net
    reset(net)


def routed(kind, via, gw, **kw):
    """A pass rule with `route-to|reply-to|dup-to (via gw)`."""
    r = rule(PF_PASS, af=AF_INET, no_flags=1, rt=kind, **kw)
    return (r, [pool_addr(gw, ifname=via)])


def test_route_to_sends_where_the_table_cannot(f):
    f.load([rule(PF_PASS, keep_state=0, no_flags=1)])
    assert f.fprobe(f.a, "udp_send", UNROUTED, UDP_PORT, 2, 0.5)["ok"] == 0     # no route
    f.load([rule(PF_PASS, keep_state=0, no_flags=1),
            routed(PF_ROUTETO, f.b.tap, f.b.ip4, direction=PF_IN, ifname=f.a.tap, quick=1,
                   proto=UDP, dst="10.98.0.0/16")])
    assert f.fprobe(f.a, "udp_send", UNROUTED, UDP_PORT, 3, 1.0)["ok"] == 3
    (st,) = [s for s in f.states() if s.proto == UDP]
    assert bytes(st.rt_addr)[:4] == bytes(map(int, f.b.ip4.split(".")))


def test_route_to_a_table_pool_round_robin(f):
    """route-to (B's interface <table>) round-robin: the next hop comes from the table and the
    interface from the pool entry that holds it (FreeBSD: rpool.cur->kif)."""
    from pfkern.client.constants import PF_POOL_ROUNDROBIN, PFR_TFLAG_PERSIST
    from tables_util import TableClient, table
    tc = TableClient(f.dev)
    tc.add_tables(table("hops", flags=PFR_TFLAG_PERSIST))
    try:
        tc.add_addrs(table("hops"), [f.b.ip4])
        r, pool = routed(PF_ROUTETO, f.b.tap, "<hops>", direction=PF_IN, ifname=f.a.tap, quick=1,
                         proto=UDP, dst="10.98.0.0/16")
        r.rpool.opts = PF_POOL_ROUNDROBIN
        f.load([rule(PF_PASS, keep_state=0, no_flags=1), (r, pool)])
        assert f.fprobe(f.a, "udp_send", UNROUTED, UDP_PORT, 3, 1.0)["ok"] == 3
    finally:
        f.flush()
        tc.del_tables(table("hops"))


def test_reply_to_sends_replies_back_the_way_they_came(f):
    """B writes from an address the router routes towards A: the replies would go astray; with
    reply-to on B's side they leave by B's interface to B."""
    f.load([rule(PF_PASS, keep_state=0, no_flags=1)])
    assert nprobe(f, f.b, "udp_from", WRONGWAY, f.a.ip4, UDP_PORT, 2, 0.5)["ok"] == 0
    f.load([rule(PF_PASS, keep_state=0, no_flags=1),
            routed(PF_REPLYTO, f.b.tap, f.b.ip4, direction=PF_IN, ifname=f.b.tap, quick=1,
                   proto=UDP, src="10.97.0.0/16")])
    assert nprobe(f, f.b, "udp_from", WRONGWAY, f.a.ip4, UDP_PORT, 3, 1.0)["ok"] == 3


def test_dup_to_copies_and_the_original_goes_on(f, tmp_path):
    with Capture(f, f.a, str(tmp_path / "a.pcap"), "icmp") as cap:
        f.load([rule(PF_PASS, keep_state=0, no_flags=1),
                routed(PF_DUPTO, f.a.tap, f.a.ip4, direction=PF_OUT, ifname=f.b.tap, quick=1,
                       proto=ICMP, keep_state=0)])
        assert f.pings(f.a, f.b.ip4, count=3) == 3            # the originals reach B
    # A's tap carries A's own requests (to B) and the copies pfd sent back: twice as many
    requests = [ln for ln in cap.lines() if f"> {f.b.ip4}: ICMP echo request" in ln]
    assert len(requests) == 6, cap.lines()
