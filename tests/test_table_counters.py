"""Per-table and per-address packet/byte counters of table rules (FreeBSD 12.1 pfr_update_stats):
pf_table's nogil entry point `pfr_dp_update_stats`, which the datapath calls for a matched rule
whose address is a <table>, read back through DIOCRGETTSTATS / DIOCRGETASTATS and cleared by
DIOCRCLRTSTATS / DIOCRCLRASTATS.

Most tests run the daemon's own dispatcher in this process (the real DIOCR* handlers behind a
LocalDevice), bound to a datapath lock of their own, and count through the test hook
`Tables._dp_count_for_tests`, which calls pfr_dp_update_stats without the GIL under that lock,
as pf_test does once per packet. The last test sends real packets through pfd's engine."""
import ctypes
import errno
import os
import socket
import threading
import time

import pytest

from pfkern.client import (PFR_DIR_IN, PFR_DIR_OUT, PFR_FB_CLEARED, PFR_FB_NOCOUNT, PFR_FB_NONE,
                           PFR_FLAG_ADDRSTOO, PFR_FLAG_ALLRSETS, PFR_FLAG_FEEDBACK, PFR_OP_BLOCK, PFR_OP_PASS,
                           PFR_OP_XPASS, PFR_TFLAG_COUNTERS, PFR_TFLAG_PERSIST, PF_RULESET_TABLE)
from tables_util import AF_INET, AF_INET6, TableClient, addr_text, table

PERSIST, COUNTERS = PFR_TFLAG_PERSIST, PFR_TFLAG_COUNTERS
IN, OUT, BLOCK, PASS, XPASS = PFR_DIR_IN, PFR_DIR_OUT, PFR_OP_BLOCK, PFR_OP_PASS, PFR_OP_XPASS


def v4(s):
    return socket.inet_pton(socket.AF_INET, s) + bytes(12)


def v6(s):
    return socket.inet_pton(socket.AF_INET6, s)


class LocalMemory:
    """Caller memory for a dispatcher called directly from this process."""

    def read(self, address, length):
        if length and not address:
            raise OSError(errno.EFAULT, "NULL")
        return ctypes.string_at(address, length) if length else b""

    def write(self, address, data):
        if data and not address:
            raise OSError(errno.EFAULT, "NULL")
        ctypes.memmove(address, bytes(data), len(data))


class LocalDevice:
    """PfDevice's ioctl() on a dispatcher in this process."""

    def __init__(self, dispatcher):
        self.dispatcher, self.ctx, self.mem = dispatcher, dispatcher.open(2), LocalMemory()

    def ioctl(self, cmd, arg):
        out = self.dispatcher.ioctl(self.ctx, cmd, ctypes.addressof(arg), bytes(arg), self.mem)
        ctypes.memmove(ctypes.addressof(arg), out, len(out))
        return arg


class Engine:
    """A dispatcher whose tables publish datapath snapshots under `lock` (a pthread mutex)."""

    def __init__(self):
        from pfkern.pfd import build_dispatcher
        self.dispatcher = build_dispatcher()
        self.tables = self.dispatcher.core.tables
        self.dev = LocalDevice(self.dispatcher)
        self.tc = TableClient(self.dev)
        self.lock = ctypes.create_string_buffer(64)     # zeroed: PTHREAD_MUTEX_INITIALIZER
        self.tables.bind_datapath(ctypes.addressof(self.lock))
        self.handles = []

    def rule(self, name, anchor=""):
        """The table handle a rule naming <name> in `anchor` holds (pf_test's cc.*_tbl)."""
        kt = self.tables.attach(anchor, name)
        self.handles.append(kt)
        return kt

    def tstats(self, name, anchor=""):
        for ts in self.tc.tables(anchor, stats=True):
            if ts.pfrts_t.pfrt_name.decode() == name:
                return ts
        raise KeyError((anchor, name))

    def astats(self, name, anchor=""):
        """{address text: pfr_astats} of the table's entries."""
        return {addr_text(a.pfras_a): a for a in self.tc.addrs(table(name, anchor), stats=True)}


def count(e, kt, af, a, nbytes, dir_out=IN, op=PASS, notrule=False, repeat=1):
    e.tables._dp_count_for_tests(kt, af, a, nbytes, dir_out, op, notrule, repeat)


def matrix(rows):
    return [list(r) for r in rows]


@pytest.fixture
def e():
    eng = Engine()
    yield eng
    for kt in eng.handles:
        eng.tables.detach(kt)
    eng.tc.clr_tables(flags=PFR_FLAG_ALLRSETS)
    assert eng.tables.nentries == 0


# --- what is counted where ---------------------------------------------------------------------

def test_table_counts_by_direction_verdict_and_xpass(e):
    """Table counters count every call on [dir][op]; XPASS when the table's answer (an entry
    that is not negated) differs from what the rule required (notrule: "! <table>"). Without
    PFR_TFLAG_COUNTERS the entries show nothing (fback NOCOUNT). match/nomatch are
    pfr_match_addr's alone."""
    e.tc.add_tables(table("t", flags=PERSIST))
    e.tc.add_addrs(table("t"), ["10.0.0.0/8", "!10.1.0.0/16", "2001:db8::/32"])
    kt = e.rule("t")
    count(e, kt, AF_INET, v4("10.9.9.9"), 100, IN, PASS)
    count(e, kt, AF_INET, v4("10.9.9.9"), 40, OUT, BLOCK)
    count(e, kt, AF_INET, v4("10.1.0.1"), 60, IN, PASS)            # negated entry: XPASS
    count(e, kt, AF_INET, v4("192.0.2.1"), 70, IN, PASS)           # no entry: XPASS
    count(e, kt, AF_INET, v4("192.0.2.1"), 5, OUT, PASS, notrule=True)   # "! <t>", agrees
    count(e, kt, AF_INET, v4("10.1.0.1"), 6, OUT, BLOCK, notrule=True)   # agrees (negated)
    count(e, kt, AF_INET, v4("10.2.0.1"), 7, OUT, PASS, notrule=True)    # disagrees: XPASS
    count(e, kt, AF_INET6, v6("2001:db8::7"), 1000, IN, PASS)
    count(e, kt, 28, v6("2001:db8::7"), 1, IN, BLOCK)                 # BSD's AF_INET6 taken too
    count(e, kt, AF_INET6, v6("2001:db9::7"), 2000, OUT, BLOCK)     # no entry: XPASS
    ts = e.tstats("t")
    assert matrix(ts.pfrts_packets) == [[1, 2, 2], [2, 1, 2]]       # [in, out][block, pass, xpass]
    assert matrix(ts.pfrts_bytes) == [[1, 1100, 130], [46, 5, 2007]]
    assert (ts.pfrts_match, ts.pfrts_nomatch) == (0, 0)
    for a in e.astats("t").values():
        assert a.pfras_a.pfra_fback == PFR_FB_NOCOUNT
        assert matrix(a.pfras_packets) == [[0, 0], [0, 0]] and matrix(a.pfras_bytes) == [[0, 0], [0, 0]]


def test_entry_counters_with_counters_flag(e):
    """With PFR_TFLAG_COUNTERS the longest-prefix entry counts too (a negated one when the rule
    says "! <table>"), never an XPASS. Clearing the flag hides the entries' counters and stops
    them; setting it again shows what they had (12.1 keeps them allocated)."""
    e.tc.add_tables(table("c", flags=PERSIST | COUNTERS))
    e.tc.add_addrs(table("c"), ["10.0.0.0/8", "10.0.0.1", "!10.1.0.0/16", "2001:db8::/32"])
    kt = e.rule("c")
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS, repeat=3)
    count(e, kt, AF_INET, v4("10.0.0.2"), 20, IN, BLOCK)
    count(e, kt, AF_INET, v4("10.0.0.2"), 30, OUT, PASS, repeat=2)
    count(e, kt, AF_INET, v4("10.1.2.3"), 40, IN, PASS)                  # XPASS: no entry counts
    count(e, kt, AF_INET, v4("10.1.2.3"), 50, OUT, BLOCK, notrule=True)  # the negated entry
    count(e, kt, AF_INET6, v6("2001:db8:1::1"), 60, OUT, BLOCK)
    a = e.astats("c")
    assert set(a) == {"10.0.0.0/8", "10.0.0.1", "!10.1.0.0/16", "2001:db8::/32"}
    assert all(x.pfras_a.pfra_fback == PFR_FB_NONE for x in a.values())
    assert matrix(a["10.0.0.1"].pfras_packets) == [[0, 3], [0, 0]]
    assert matrix(a["10.0.0.1"].pfras_bytes) == [[0, 30], [0, 0]]
    assert matrix(a["10.0.0.0/8"].pfras_packets) == [[1, 0], [0, 2]]
    assert matrix(a["10.0.0.0/8"].pfras_bytes) == [[20, 0], [0, 60]]
    assert matrix(a["!10.1.0.0/16"].pfras_packets) == [[0, 0], [1, 0]]
    assert matrix(a["2001:db8::/32"].pfras_bytes) == [[0, 0], [60, 0]]
    ts = e.tstats("c")
    assert matrix(ts.pfrts_packets) == [[1, 3, 1], [2, 2, 0]]
    # COUNTERS off: the entries' counters are hidden and not counted; the table's still are
    e.tc.set_tflags(table("c"), clrflag=COUNTERS)
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS)
    assert all(x.pfras_a.pfra_fback == PFR_FB_NOCOUNT and matrix(x.pfras_packets) == [[0, 0], [0, 0]]
               for x in e.astats("c").values())
    assert e.tstats("c").pfrts_packets[IN][PASS] == 4
    # on again: the earlier counts are back, the packet counted meanwhile is not among them
    e.tc.set_tflags(table("c"), setflag=COUNTERS)
    assert matrix(e.astats("c")["10.0.0.1"].pfras_packets) == [[0, 3], [0, 0]]
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS)
    assert matrix(e.astats("c")["10.0.0.1"].pfras_packets) == [[0, 4], [0, 0]]


def test_anchor_rule_counts_on_root_table_until_its_own_is_active(e):
    """An anchor's rule whose own table is not active counts on the main ruleset's table of the
    same name (pfr_update_stats' root fallback); once the anchor's table is active, there. A
    rule whose table is not active anywhere counts nothing."""
    e.tc.add_tables(table("r", flags=PERSIST | COUNTERS))
    e.tc.add_addrs(table("r"), ["10.0.0.0/8"])
    anchored = e.rule("r", "anc")
    count(e, anchored, AF_INET, v4("10.0.0.1"), 10, IN, PASS, repeat=2)
    assert e.tstats("r").pfrts_packets[IN][PASS] == 2
    assert e.astats("r")["10.0.0.0/8"].pfras_packets[IN][PASS] == 2
    assert matrix(e.tstats("r", "anc").pfrts_packets) == [[0, 0, 0], [0, 0, 0]]
    e.tc.add_tables(table("r", "anc", flags=PERSIST | COUNTERS))
    e.tc.add_addrs(table("r", "anc"), ["10.0.0.1"])
    count(e, anchored, AF_INET, v4("10.0.0.1"), 10, IN, PASS)
    count(e, anchored, AF_INET, v4("10.0.0.2"), 10, IN, PASS)       # not in the anchor's: XPASS
    assert matrix(e.tstats("r", "anc").pfrts_packets) == [[0, 1, 1], [0, 0, 0]]
    assert e.astats("r", "anc")["10.0.0.1"].pfras_packets[IN][PASS] == 1
    assert e.tstats("r").pfrts_packets[IN][PASS] == 2
    ghost = e.rule("ghost")
    count(e, ghost, AF_INET, v4("10.0.0.1"), 10, IN, PASS)
    assert matrix(e.tstats("ghost").pfrts_packets) == [[0, 0, 0], [0, 0, 0]]
    assert e.tc.names()[("", "ghost")] & 0x1 == 0                   # not active


def test_out_of_range_arguments_count_nothing(e):
    e.tc.add_tables(table("o", flags=PERSIST | COUNTERS))
    e.tc.add_addrs(table("o"), ["10.0.0.0/8"])
    kt = e.rule("o")
    for args in ((AF_INET, 2, PASS), (AF_INET, -1, PASS), (AF_INET, IN, 3), (AF_INET, IN, -1),
                 (7, IN, PASS)):
        af, d, op = args
        count(e, kt, af, v4("10.0.0.1"), 10, d, op)
    assert sum(map(sum, e.tstats("o").pfrts_packets)) == 0
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, XPASS)            # XPASS given: table only
    assert e.tstats("o").pfrts_packets[IN][XPASS] == 1
    assert sum(map(sum, e.astats("o")["10.0.0.0/8"].pfras_packets)) == 0


# --- clearing ----------------------------------------------------------------------------------

def test_clear_table_and_address_stats(e):
    """DIOCRCLRTSTATS zeroes the table's counters (match/nomatch too) and sets pfrts_tzero to
    now; with ADDRSTOO the entries' as well, their tzero now. DIOCRCLRASTATS zeroes the listed
    entries, whose tzero becomes 0 (FreeBSD passes 0), feedback CLEARED / NONE."""
    e.tc.add_tables(table("z", flags=PERSIST | COUNTERS))
    e.tc.add_addrs(table("z"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    kt = e.rule("z")
    added = e.astats("z")["10.0.0.1"].pfras_tzero
    assert abs(added - time.time()) < 5
    for h in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        count(e, kt, AF_INET, v4(h), 10, IN, PASS, repeat=2)
    assert e.tables.match(kt, AF_INET, v4("10.0.0.1"))
    time.sleep(1.1)
    io = e.tc.clr_tstats(table("z"))
    assert io.pfrio_nadd == 1                                       # nzero
    ts = e.tstats("z")
    assert sum(map(sum, ts.pfrts_packets)) == 0 and sum(map(sum, ts.pfrts_bytes)) == 0
    assert ts.pfrts_match == 0 and ts.pfrts_tzero > added
    a = e.astats("z")
    assert a["10.0.0.1"].pfras_packets[IN][PASS] == 2 and a["10.0.0.1"].pfras_tzero == added
    # the datapath keeps counting after a clear
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS)
    assert e.tstats("z").pfrts_packets[IN][PASS] == 1
    io, buf = e.tc.clr_astats(table("z"), ["10.0.0.1", "10.0.0.9"], flags=PFR_FLAG_FEEDBACK)
    assert io.pfrio_nadd == 1 and [x.pfra_fback for x in buf] == [PFR_FB_CLEARED, PFR_FB_NONE]
    a = e.astats("z")
    assert a["10.0.0.1"].pfras_packets[IN][PASS] == 0 and a["10.0.0.1"].pfras_tzero == 0
    assert a["10.0.0.2"].pfras_packets[IN][PASS] == 2 and a["10.0.0.2"].pfras_tzero == added
    e.tc.clr_tstats(table("z"), flags=PFR_FLAG_ADDRSTOO)
    for x in e.astats("z").values():
        assert sum(map(sum, x.pfras_packets)) == 0 and x.pfras_tzero > added


def test_replace_changing_negation_zeroes_the_entry(e):
    """DIOCRSETADDRS flipping an entry's negation zeroes its counters (tzero now); entries kept
    as they were keep theirs."""
    e.tc.add_tables(table("n", flags=PERSIST | COUNTERS))
    e.tc.add_addrs(table("n"), ["10.0.0.1", "10.0.0.2"])
    kt = e.rule("n")
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS)
    count(e, kt, AF_INET, v4("10.0.0.2"), 10, IN, PASS)
    io, _ = e.tc.set_addrs(table("n"), ["!10.0.0.1", "10.0.0.2"])
    assert io.pfrio_nchange == 1
    a = e.astats("n")
    assert a["!10.0.0.1"].pfras_packets[IN][PASS] == 0 and a["10.0.0.2"].pfras_packets[IN][PASS] == 1
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, BLOCK, notrule=True)
    assert e.astats("n")["!10.0.0.1"].pfras_packets[IN][BLOCK] == 1


# --- counts and republished snapshots ----------------------------------------------------------

def test_counts_survive_every_table_change(e):
    """Each table change republishes the datapath's snapshot: no count is lost, entries kept
    keep theirs; an address removed and added again starts at zero (a new entry)."""
    e.tc.add_tables(table("s", flags=PERSIST | COUNTERS))
    e.tc.add_addrs(table("s"), ["10.0.0.0/8", "192.0.2.1"])
    kt = e.rule("s")
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS, repeat=5)
    count(e, kt, AF_INET, v4("192.0.2.1"), 10, OUT, PASS, repeat=2)
    e.tc.add_addrs(table("s"), ["172.16.0.0/12", "2001:db8::1"])     # republish
    e.tc.del_addrs(table("s"), ["172.16.0.0/12"])                     # republish
    e.tc.set_tflags(table("s"), setflag=0)                            # nothing to change
    assert e.tstats("s").pfrts_packets[IN][PASS] == 5
    assert e.astats("s")["10.0.0.0/8"].pfras_packets[IN][PASS] == 5
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS)
    assert e.astats("s")["10.0.0.0/8"].pfras_packets[IN][PASS] == 6
    # removed and re-added: a new entry with new counters; the table's stay
    e.tc.del_addrs(table("s"), ["192.0.2.1"])
    count(e, kt, AF_INET, v4("192.0.2.1"), 10, OUT, PASS)            # no entry now: XPASS
    e.tc.add_addrs(table("s"), ["192.0.2.1"])
    assert sum(map(sum, e.astats("s")["192.0.2.1"].pfras_packets)) == 0
    ts = e.tstats("s")
    assert ts.pfrts_packets[OUT][PASS] == 2 and ts.pfrts_packets[OUT][XPASS] == 1
    # flushed and refilled: the entries start again, the table keeps counting
    e.tc.clr_addrs(table("s"))
    e.tc.add_addrs(table("s"), ["10.0.0.0/8"])
    assert sum(map(sum, e.astats("s")["10.0.0.0/8"].pfras_packets)) == 0
    assert e.tstats("s").pfrts_packets[IN][PASS] == 6


def test_transaction_commit_keeps_counters_of_kept_entries(e):
    """A table transaction (pfctl -f) replacing an active table's contents: entries present
    before and after keep their counters, new ones start at zero, the table keeps its."""
    from rules_util import xbegin, xcommit
    e.tc.add_tables(table("x", flags=PERSIST | COUNTERS))
    e.tc.add_addrs(table("x"), ["10.0.0.1", "10.0.0.2"])
    kt = e.rule("x")
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS, repeat=4)
    count(e, kt, AF_INET, v4("10.0.0.2"), 10, IN, PASS, repeat=1)
    els = xbegin(e.dev, [(PF_RULESET_TABLE, "")])
    e.tc.ina_define(table("x", flags=PERSIST | COUNTERS), ["10.0.0.1", "10.0.0.3"],
                    els[0][2], flags=PFR_FLAG_ADDRSTOO)
    xcommit(e.dev, els)
    a = e.astats("x")
    assert set(a) == {"10.0.0.1", "10.0.0.3"}
    assert a["10.0.0.1"].pfras_packets[IN][PASS] == 4 and a["10.0.0.3"].pfras_packets[IN][PASS] == 0
    assert e.tstats("x").pfrts_packets[IN][PASS] == 5
    count(e, kt, AF_INET, v4("10.0.0.3"), 10, IN, PASS)
    assert e.astats("x")["10.0.0.3"].pfras_packets[IN][PASS] == 1


def test_table_deactivated_and_reactivated_keeps_its_counters(e):
    """A table a rule refers to is only deactivated by DIOCRDELTABLES (the rule keeps it); no
    packet is counted while it is inactive, and DIOCRADDTABLES reactivates it with its counters
    (pfr_add_tables does not clear them)."""
    e.tc.add_tables(table("d", flags=PERSIST))
    e.tc.add_addrs(table("d"), ["10.0.0.0/8"])
    kt = e.rule("d")
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS, repeat=3)
    e.tc.del_tables(table("d"))
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS)
    e.tc.add_tables(table("d", flags=PERSIST))
    assert e.tstats("d").pfrts_packets[IN][PASS] == 3
    count(e, kt, AF_INET, v4("10.0.0.1"), 10, IN, PASS)               # empty now: XPASS
    assert e.tstats("d").pfrts_packets[IN][XPASS] == 1


def test_no_count_lost_while_addresses_change_under_traffic(e):
    """The datapath counts (without the GIL, one packet per lock hold) while the control plane
    adds and removes addresses, each change republishing the snapshot under the same lock:
    every packet is counted exactly once on the table, and on whichever entry was the longest
    match at the time (10.0.0.0/8, then the 10.0.0.1 host entry added meanwhile)."""
    e.tc.add_tables(table("f", flags=PERSIST | COUNTERS))
    e.tc.add_addrs(table("f"), ["10.0.0.0/8"])
    kt = e.rule("f")
    n = 3_000_000
    worker = threading.Thread(target=count, args=(e, kt, AF_INET, v4("10.0.0.1"), 3, IN, PASS),
                              kwargs=dict(repeat=n))
    worker.start()
    churn = 0
    try:
        deadline = time.time() + 30
        while e.tstats("f").pfrts_packets[IN][PASS] == 0 and time.time() < deadline:
            time.sleep(0.001)
        for i in range(20):
            e.tc.add_addrs(table("f"), [f"192.168.{i}.0/24"])
            churn += worker.is_alive()
        e.tc.add_addrs(table("f"), ["10.0.0.1"])
        host_added_while_counting = worker.is_alive()
        i = 0
        while worker.is_alive():
            e.tc.del_addrs(table("f"), [f"192.168.{i % 20}.0/24"])
            e.tc.add_addrs(table("f"), [f"192.168.{i % 20}.0/24"])
            churn += 2
            i += 1
    finally:
        worker.join()
    assert host_added_while_counting and churn >= 10, "the counting ended too soon to overlap"
    ts = e.tstats("f")
    assert ts.pfrts_packets[IN][PASS] == n and ts.pfrts_bytes[IN][PASS] == 3 * n
    assert sum(map(sum, ts.pfrts_packets)) == n
    a = e.astats("f")
    net8, host = a["10.0.0.0/8"].pfras_packets[IN][PASS], a["10.0.0.1"].pfras_packets[IN][PASS]
    assert net8 > 0 and host > 0 and net8 + host == n
    assert a["10.0.0.1"].pfras_bytes[IN][PASS] == 3 * host


# --- end to end: packets through pfd's engine --------------------------------------------------

needs_net = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                               reason="needs root and /dev/net/tun")


@pytest.fixture(scope="module")
def net():
    from filter_net import FilterNet
    t = FilterNet(tag="tc", net=87).start()
    try:
        t.dev.start()
        yield t
        assert t.alive(), "pfd died:\n" + t.output()
    finally:
        t.close()


@needs_net

def test_pass_in_from_table_counts_packets_sent(net):
    """pass in from <tc> (echo requests, no state): each request A sends is counted on the
    table and on A's entry as [in][pass], with its IP total length as bytes (pd.tot_len: 84
    for a 56-byte IPv4 ping, 104 for IPv6)."""
    from filter_net import ICMP, ICMP6, PF_IN, PF_PASS, rule
    tc = TableClient(net.dev)
    tc.add_tables(table("tc", flags=PERSIST | COUNTERS))
    try:
        tc.add_addrs(table("tc"), [net.a.ip4, net.a.ip6])
        net.load([rule(PF_PASS, keep_state=0),
                  rule(PF_PASS, af=AF_INET, proto=ICMP, src="<tc>", direction=PF_IN,
                       keep_state=0, type=8 + 1),
                  rule(PF_PASS, af=AF_INET6, proto=ICMP6, src="<tc>", direction=PF_IN,
                       keep_state=0, type=128 + 1)])
        assert net.pings(net.a, net.b.ip4, count=5) == 5
        assert net.pings(net.a, net.b.ip6, count=3) == 3
        rules = net.rules()
        assert rules[1].packets[0] == 5 and rules[2].packets[0] == 3
        ts = [t for t in tc.tables(stats=True) if t.pfrts_t.pfrt_name == b"tc"][0]
        assert matrix(ts.pfrts_packets) == [[0, 8, 0], [0, 0, 0]]
        assert matrix(ts.pfrts_bytes) == [[0, 5 * 84 + 3 * 104, 0], [0, 0, 0]]
        assert ts.pfrts_bytes[IN][PASS] == rules[1].bytes[0] + rules[2].bytes[0]
        a = {addr_text(x.pfras_a): x for x in tc.addrs(table("tc"), stats=True)}
        assert matrix(a[net.a.ip4].pfras_packets) == [[0, 5], [0, 0]]
        assert matrix(a[net.a.ip4].pfras_bytes) == [[0, 5 * 84], [0, 0]]
        assert matrix(a[net.a.ip6].pfras_packets) == [[0, 3], [0, 0]]
    finally:
        net.flush()
        tc.del_tables(table("tc"))
