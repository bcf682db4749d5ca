"""Source tracking under connection bursts (pf_insert_src_node, pf_src_connlimit, the overload
task): max-src-states, max-src-nodes, max-src-conn with `overload <table> flush global`, read
back through DIOCGETSTATUS's limit counters, DIOCGETSRCNODES and the overload table."""
import os

import pytest

from filter_net import AF_INET, PF_DROP, PF_IN, PF_OUT, PF_PASS, TCP, module_net, reset, rule
from pfkern.client.constants import (LCNT_OVERLOAD_FLUSH, LCNT_OVERLOAD_TABLE, LCNT_SRCCONN,
                                      LCNT_SRCNODES, LCNT_SRCSTATES, PF_FLUSH, PF_FLUSH_GLOBAL,
                                      PFR_TFLAG_PERSIST, PFRULE_RULESRCTRACK, PFRULE_SRCTRACK)
from tables_util import TableClient, addr_text, table
from test_nat import nprobe, nspawn

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")

PORT = 5440


def setup(t):
    nspawn(t, t.b, "echo_threads", t.b.ip4, PORT, keep=True)
    for extra in (3, 4, 5):
        t.ns(t.a, "ip", "addr", "add", f"10.90.1.{extra}/24", "dev", t.a.tap)


@pytest.fixture(scope="module")
def net():
    yield from module_net("s", 90, setup, v6=False)


@pytest.fixture
def f(net):
    yield net
    reset(net)


def tracked(**kw):
    return rule(PF_PASS, af=AF_INET, proto=TCP, direction=PF_IN, ifname=kw.pop("ifname"), dport=PORT,
                rule_flag=PFRULE_SRCTRACK | PFRULE_RULESRCTRACK, **kw)


def lcounters(f):
    return list(f.status().lcounters)


def test_max_src_states(f):
    f.load([rule(PF_PASS, keep_state=0, no_flags=1), tracked(ifname=f.a.tap, max_src_states=3)])
    before = lcounters(f)
    res = nprobe(f, f.a, "tcp_burst", f.b.ip4, PORT, 5)
    assert res["results"] == ["ok"] * 3 + ["timeout"] * 2, res
    after = lcounters(f)
    assert after[LCNT_SRCSTATES] - before[LCNT_SRCSTATES] >= 2
    nodes = f.dev.get_src_nodes()
    mine = [n for n in nodes if bytes(n.addr)[:4] == bytes(map(int, f.a.ip4.split(".")))]
    assert len(mine) == 1 and mine[0].states == 3, [(n.states, n.conn) for n in nodes]
    assert f.rules()[1].u_src_nodes == 1


def test_max_src_nodes(f):
    f.load([rule(PF_PASS, keep_state=0, no_flags=1), tracked(ifname=f.a.tap, max_src_nodes=2)])
    before = lcounters(f)
    got = [nprobe(f, f.a, "tcp_burst", f.b.ip4, PORT, 1, src)["results"][0]
           for src in ("10.90.1.3", "10.90.1.4", "10.90.1.5")]
    assert got == ["ok", "ok", "timeout"], got
    assert lcounters(f)[LCNT_SRCNODES] - before[LCNT_SRCNODES] >= 1
    assert len(f.dev.get_src_nodes()) == 2


def test_max_src_conn_overload_flush_global(f):
    """The third established connection breaks max-src-conn 2: it is killed, the source goes
    into <bad> and, with flush global, its other states go too; <bad> blocks what follows."""
    tc = TableClient(f.dev)
    tc.add_tables(table("bad", flags=PFR_TFLAG_PERSIST))
    try:
        # default block inward; connections in only through the tracked rule (SYN + state)
        block = rule(PF_DROP, af=AF_INET, direction=PF_IN, quick=1, src="<bad>")
        pass_ = tracked(ifname=f.a.tap, max_src_conn=2, overload_tblname=b"bad",
                        flush=PF_FLUSH | PF_FLUSH_GLOBAL)
        f.load([rule(PF_DROP, direction=PF_IN), rule(PF_PASS, direction=PF_OUT), block, pass_])
        before = lcounters(f)
        res = nprobe(f, f.a, "tcp_burst", f.b.ip4, PORT, 4)
        assert res["results"][:2] == ["ok", "ok"] and "ok" not in res["results"][2:], res
        assert res["first_again"] != "ok", res          # flushed with the rest of the source
        after = lcounters(f)
        assert after[LCNT_SRCCONN] - before[LCNT_SRCCONN] >= 1
        assert after[LCNT_OVERLOAD_TABLE] - before[LCNT_OVERLOAD_TABLE] >= 1
        assert after[LCNT_OVERLOAD_FLUSH] - before[LCNT_OVERLOAD_FLUSH] >= 1
        assert [addr_text(a) for a in tc.addrs(table("bad"))] == [f.a.ip4]
        # another source is not in the table and still gets through
        assert nprobe(f, f.a, "tcp_burst", f.b.ip4, PORT, 1, "10.90.1.3")["results"] == ["ok"]
        assert f.rules()[2].packets[0] > 0                # <bad> blocked the overloaded source
    finally:
        f.flush()
        tc.del_tables(table("bad"))
