"""pf tables through a live pfd: each DIOCR* command's normal path and the errnos of pf-abi.md §1
(FreeBSD 12.1 pf_ioctl.c and pf_table.c), longest-prefix match with negated entries, feedback
codes, pfctl's table sequences (§5), hostile inputs in the manner of FreeBSD's
tests/sys/netpfil/pf/ioctl/validation.c, buffers far over 128 KiB, and the table transaction
(DIOCRINADEFINE between DIOCXBEGIN and DIOCXCOMMIT/DIOCXROLLBACK)."""
import ctypes
import errno
import socket
import time

import pytest

from conftest import compile_c
from pfkern.client import (DIOCGETALTQSV1, DIOCRADDADDRS, DIOCRADDTABLES, DIOCRCLRADDRS,
                           DIOCRCLRASTATS, DIOCRCLRTABLES, DIOCRCLRTSTATS, DIOCRDELADDRS,
                           DIOCRDELTABLES, DIOCRGETADDRS, DIOCRGETASTATS, DIOCRGETTABLES,
                           DIOCRGETTSTATS, DIOCRINADEFINE, DIOCRSETADDRS, DIOCRSETTFLAGS,
                           DIOCRTSTADDRS, DIOCXBEGIN, DIOCXCOMMIT, DIOCXROLLBACK,
                           PF_LIMIT_TABLE_ENTRIES, PF_RULESET_FILTER, PF_RULESET_TABLE,
                           PFR_FB_ADDED, PFR_FB_CHANGED, PFR_FB_CLEARED, PFR_FB_CONFLICT,
                           PFR_FB_DELETED, PFR_FB_DUPLICATE, PFR_FB_MATCH, PFR_FB_NOCOUNT,
                           PFR_FB_NONE, PFR_FB_NOTMATCH, PFR_FLAG_ADDRSTOO, PFR_FLAG_ALLRSETS,
                           PFR_FLAG_CLSTATS, PFR_FLAG_DUMMY, PFR_FLAG_FEEDBACK, PFR_FLAG_REPLACE,
                           PFR_TFLAG_ACTIVE, PFR_TFLAG_CONST, PFR_TFLAG_COUNTERS,
                           PFR_TFLAG_INACTIVE, PFR_TFLAG_PERSIST, PFR_TFLAG_REFDANCHOR, PfDevice,
                           name_of, pfioc_table, pfioc_trans, pfioc_trans_e, pfr_addr,
                           pfr_astats, pfr_table, pfr_tstats)
from tables_util import (AF_INET, AF_INET6, ESIZE_ADDR, ESIZE_ASTATS, ESIZE_TABLE,
                         ESIZE_TSTATS, TableClient, addr, addr_array, addr_text, snapshot, table)

PERSIST, CONST, ACTIVE, INACTIVE = PFR_TFLAG_PERSIST, PFR_TFLAG_CONST, PFR_TFLAG_ACTIVE, PFR_TFLAG_INACTIVE
ALLRSETS, DUMMY, FEEDBACK = PFR_FLAG_ALLRSETS, PFR_FLAG_DUMMY, PFR_FLAG_FEEDBACK
MAXCOUNT = 65535                    # net.pf.request_maxcount
AF_INET6_BSD = 28


from conftest import errno_of  # noqa: F401,E402  (re-exported)


@pytest.fixture
def dev(module_pfd):
    with PfDevice(module_pfd.path, "rw") as d:
        yield d
        # leave pf as found: no table left in any anchor (none is used by a rule here)
        TableClient(d).clr_tables(flags=ALLRSETS)
        assert TableClient(d).tables(flags=ALLRSETS) == [], "a test left tables behind"


@pytest.fixture
def tc(dev):
    return TableClient(dev)


@pytest.fixture
def ro(module_pfd):
    with PfDevice(module_pfd.path, "r") as d:
        yield TableClient(d)


def raw_table(name=b"", anchor=b"", flags=0):
    """A pfr_table with exactly these bytes in name and anchor (garbage after a NUL, or no NUL)."""
    t = pfr_table(pfrt_flags=flags)
    ctypes.memmove(ctypes.addressof(t) + pfr_table.pfrt_anchor.offset, anchor, len(anchor))
    ctypes.memmove(ctypes.addressof(t) + pfr_table.pfrt_name.offset, name, len(name))
    return t


def raw_addr(data, af=AF_INET, net=32, neg=0, fback=0):
    a = pfr_addr(pfra_af=af, pfra_net=net, pfra_not=neg, pfra_fback=fback)
    ctypes.memmove(ctypes.addressof(a), data, len(data))
    return a


def flags_of(tc, name, anchor=""):
    return tc.names(flags=ALLRSETS).get((anchor, name))


def tstats_of(tc, name, anchor=""):
    for ts in tc.tables(flags=ALLRSETS, stats=True):
        if (ts.pfrts_t.pfrt_anchor.decode(), ts.pfrts_t.pfrt_name.decode()) == (anchor, name):
            return ts
    return None


# --- DIOCRADDTABLES ----------------------------------------------------------------------------

def test_addtables_creates_active_tables_once(tc):
    io = tc.add_tables(table("t1", flags=PERSIST))
    assert io.pfrio_nadd == 1
    assert tc.names() == {("", "t1"): PERSIST | ACTIVE}
    assert tc.add_tables(table("t1", flags=PERSIST)).pfrio_nadd == 0       # already active
    assert tc.add_tables(table("t2", flags=PERSIST), table("t2", flags=PERSIST)).pfrio_nadd == 1
    ts = tstats_of(tc, "t1")
    assert abs(ts.pfrts_tzero - time.time()) < 5 and ts.pfrts_cnt == 0


def test_addtables_without_persist_is_inserted_active_as_is(tc):
    tc.add_tables(table("np"))
    assert tc.names() == {("", "np"): ACTIVE}


def test_addtables_keeps_flags_of_an_existing_active_table(tc):
    tc.add_tables(table("k", flags=PERSIST))
    assert tc.add_tables(table("k", flags=PERSIST | CONST)).pfrio_nadd == 0
    assert flags_of(tc, "k") == PERSIST | ACTIVE


def test_addtables_dummy_answers_and_changes_nothing(tc):
    io = tc.add_tables(table("d1", flags=PERSIST), table("d2", "an", flags=PERSIST), flags=DUMMY)
    assert io.pfrio_nadd == 2
    assert tc.tables(flags=ALLRSETS) == []
    assert errno_of(tc.tables, "an") == errno.ENOENT         # the anchor did not stay either


def test_addtables_in_anchor_makes_root_table(tc):
    io = tc.add_tables(table("t", "/a/b", flags=PERSIST))      # leading "/" stripped
    assert io.pfrio_nadd == 1                                   # the root is not counted
    assert tc.names(flags=ALLRSETS) == {("", "t"): PFR_TFLAG_REFDANCHOR,
                                        ("a/b", "t"): PERSIST | ACTIVE}
    assert list(tc.names("a/b")) == [("a/b", "t")]
    assert list(tstats_of(tc, "t").pfrts_refcnt) == [0, 1]     # [rule, anchor]
    # deleting the anchored table deletes the root (no anchor uses it) and the anchor
    assert tc.del_tables(table("t", "a/b")).pfrio_ndel == 1
    assert tc.tables(flags=ALLRSETS) == []
    assert errno_of(tc.tables, "a/b") == errno.ENOENT


def test_addtables_activates_a_root_table(tc):
    tc.add_tables(table("r", "x", flags=PERSIST))
    assert tc.add_tables(table("r", flags=PERSIST)).pfrio_nadd == 1
    assert flags_of(tc, "r") == PFR_TFLAG_REFDANCHOR | PERSIST | ACTIVE


@pytest.mark.parametrize("bad", [
    table(""),                                                  # empty name
    table("t", flags=ACTIVE),                                   # flags outside PERSIST|CONST|COUNTERS
    table("t", "_pf"),                                          # reserved anchor
    raw_table(name=b"n" * 32),                                  # name not NUL-terminated
    raw_table(name=b"n\0x"),                                    # garbage after the name's NUL
    raw_table(name=b"n", anchor=b"a\0x"),                       # garbage after the anchor's NUL
    raw_table(name=b"n", anchor=b"a" * 1024),                   # anchor not NUL-terminated
], ids=["empty", "flags", "reserved", "unterminated", "name-garbage", "anchor-garbage",
        "anchor-unterminated"])
def test_addtables_rejects_bad_tables_einval(tc, bad):
    before = snapshot(tc)
    assert errno_of(tc.add_tables, table("good", flags=PERSIST), bad) == errno.EINVAL
    assert snapshot(tc) == before


@pytest.mark.parametrize("anchor", ["a//b", "x" * 64])
def test_addtables_anchor_that_cannot_exist_is_enomem(tc, anchor):
    assert errno_of(tc.add_tables, table("t", anchor, flags=PERSIST)) == errno.ENOMEM
    assert tc.tables(flags=ALLRSETS) == []


def test_addtables_request_flags(tc):
    assert errno_of(tc.add_tables, table("t"), flags=FEEDBACK) == errno.EINVAL
    # bits outside PFR_FLAG_ALLMASK are ignored (FreeBSD's ACCEPT_FLAGS)
    assert tc.add_tables(table("t", flags=PERSIST), flags=0x100).pfrio_nadd == 1


# --- DIOCRDELTABLES ----------------------------------------------------------------------------

def test_deltables(tc):
    tc.add_tables(table("a", flags=PERSIST), table("b", flags=PERSIST))
    assert tc.del_tables(table("a"), table("b"), flags=DUMMY).pfrio_ndel == 2
    assert len(tc.names()) == 2
    assert tc.del_tables(table("a"), table("a"), table("missing")).pfrio_ndel == 1
    assert tc.names() == {("", "b"): PERSIST | ACTIVE}
    # flags in the listed table are refused: deletion takes none
    assert errno_of(tc.del_tables, table("b", flags=PERSIST)) == errno.EINVAL


# --- DIOCRCLRTABLES ----------------------------------------------------------------------------

def test_clrtables_by_anchor_and_all(tc):
    tc.add_tables(table("m1", flags=PERSIST), table("m2", flags=PERSIST),
                  table("x1", "x", flags=PERSIST))
    assert tc.clr_tables(flags=DUMMY).pfrio_ndel == 2
    assert tc.clr_tables().pfrio_ndel == 2                      # main: m1, m2 (x1's root isn't active)
    assert tc.names(flags=ALLRSETS) == {("", "x1"): PFR_TFLAG_REFDANCHOR, ("x", "x1"): PERSIST | ACTIVE}
    io = tc.clr_tables("/x")
    assert io.pfrio_ndel == 1
    assert io.pfrio_table.pfrt_anchor == b"x"                   # the fixed anchor comes back
    assert tc.tables(flags=ALLRSETS) == []
    tc.add_tables(table("m1", flags=PERSIST), table("y1", "y/z", flags=PERSIST))
    assert tc.clr_tables(flags=ALLRSETS).pfrio_ndel == 2
    assert tc.tables(flags=ALLRSETS) == []


def test_clrtables_errors(tc):
    assert errno_of(tc.clr_tables, "nope") == errno.ENOENT
    assert errno_of(tc.clr_tables, flags=FEEDBACK) == errno.EINVAL
    io = tc.io(tbl=raw_table(anchor=b"a\0junk"))
    assert errno_of(tc.call, DIOCRCLRTABLES, io) == errno.EINVAL
    io = tc.io(tbl=table(""), esize=ESIZE_TABLE)
    assert errno_of(tc.call, DIOCRCLRTABLES, io) == errno.ENODEV


# --- DIOCRGETTABLES / DIOCRGETTSTATS ----------------------------------------------------------

def test_gettables_size_query_and_order(tc):
    names = [f"t{i:03d}" for i in range(99, -1, -1)]
    tc.add_tables(*[table(n, flags=PERSIST) for n in names])
    buf = (pfr_table * 64)()
    io = tc.call(DIOCRGETTABLES, tc.io(tbl=table(""), buf=buf, esize=ESIZE_TABLE))
    assert io.pfrio_size == 100                                 # too small: the count, no error
    listed = tc.tables()                                        # pfctl's regrowth
    assert [t.pfrt_name.decode() for t in listed] == sorted(names)
    assert all(t.pfrt_flags == PERSIST | ACTIVE and t.pfrt_anchor == b"" for t in listed)


def test_gettables_sizes_beyond_count_are_bounded(tc):
    tc.add_tables(table("one", flags=PERSIST))
    buf = (pfr_table * 4)()
    for size in (-1, 1 << 24, 4):
        io = tc.call(DIOCRGETTABLES, tc.io(tbl=table(""), buf=buf, size=size, esize=ESIZE_TABLE))
        assert io.pfrio_size == 1 and buf[0].pfrt_name == b"one"


def test_gettables_errors(tc):
    buf = (pfr_table * 1)()
    assert errno_of(tc.tables, "nope") == errno.ENOENT
    assert errno_of(tc.tables, flags=PFR_FLAG_CLSTATS) == errno.EINVAL
    io = tc.io(tbl=table(""), buf=buf, esize=ESIZE_TABLE + 1)
    assert errno_of(tc.call, DIOCRGETTABLES, io) == errno.ENODEV
    io = tc.io(tbl=table(""), buf=buf, esize=ESIZE_TABLE)
    assert errno_of(tc.call, DIOCRGETTSTATS, io) == errno.ENODEV


def test_gettstats_fields(tc):
    tc.add_tables(table("s", flags=PERSIST | PFR_TFLAG_COUNTERS))
    tc.add_addrs(table("s"), ["10.0.0.0/8", "10.1.1.1"])
    tc.add_tables(table("s", "sub", flags=PERSIST))
    ts = tstats_of(tc, "s")
    assert ts.pfrts_t.pfrt_flags == PERSIST | PFR_TFLAG_COUNTERS | ACTIVE | PFR_TFLAG_REFDANCHOR
    assert ts.pfrts_cnt == 2 and list(ts.pfrts_refcnt) == [0, 1]
    assert ts.pfrts_match == ts.pfrts_nomatch == 0
    assert list(ts.pfrts_packets[0]) == [0, 0, 0]
    assert abs(ts.pfrts_tzero - time.time()) < 5


# --- DIOCRCLRTSTATS ----------------------------------------------------------------------------

def test_clrtstats_zeroes_tables_and_with_addrstoo_their_entries(tc):
    tc.add_tables(table("z", flags=PERSIST))
    tc.add_addrs(table("z"), ["192.0.2.1", "192.0.2.2"])
    tc.clr_astats(table("z"), ["192.0.2.1", "192.0.2.2"])      # entries' tzero becomes 0
    assert [a.pfras_tzero for a in tc.addrs(table("z"), stats=True)] == [0, 0]
    assert tc.clr_tstats(table("z"), flags=DUMMY | PFR_FLAG_ADDRSTOO).pfrio_nzero == 1
    assert [a.pfras_tzero for a in tc.addrs(table("z"), stats=True)] == [0, 0]
    assert tc.clr_tstats(table("z")).pfrio_nzero == 1
    assert [a.pfras_tzero for a in tc.addrs(table("z"), stats=True)] == [0, 0]
    io = tc.clr_tstats(table("z"), table("z"), table("none"), flags=PFR_FLAG_ADDRSTOO)
    assert io.pfrio_nzero == 1                   # bounded by the main ruleset's 1 table, below
    now = time.time()
    assert all(abs(a.pfras_tzero - now) < 5 for a in tc.addrs(table("z"), stats=True))


def test_clrtstats_size_bounded_by_table_count_of_pfrio_table_anchor(tc):
    tc.add_tables(table("a", flags=PERSIST), table("b", flags=PERSIST))
    io = tc.clr_tstats(table("a"), table("b"), table("a"))
    assert (io.pfrio_size, io.pfrio_nzero) == (2, 2)            # 3 listed, main has 2 tables
    io = tc.clr_tstats(table("a"), table("b"), table("a"), filter_anchor="no-such-anchor")
    assert (io.pfrio_size, io.pfrio_nzero) == (3, 3)            # unknown anchor: no bound
    assert errno_of(tc.clr_tstats, table("a", flags=PERSIST)) == errno.EINVAL
    assert errno_of(tc.clr_tstats, table("a"), flags=FEEDBACK) == errno.EINVAL


# --- DIOCRSETTFLAGS ----------------------------------------------------------------------------

def test_settflags(tc):
    tc.add_tables(table("f", flags=PERSIST))
    io = tc.set_tflags(table("f"), setflag=CONST, flags=DUMMY)
    assert (io.pfrio_nchange, io.pfrio_ndel) == (1, 0)
    assert flags_of(tc, "f") == PERSIST | ACTIVE
    assert tc.set_tflags(table("f"), table("f"), setflag=CONST).pfrio_nchange == 1
    assert flags_of(tc, "f") == PERSIST | CONST | ACTIVE
    assert errno_of(tc.add_addrs, table("f"), ["10.0.0.1"]) == errno.EPERM
    assert tc.set_tflags(table("f"), setflag=CONST).pfrio_nchange == 0     # no change
    io = tc.set_tflags(table("f"), clrflag=PERSIST)             # unreferenced: deleted
    assert (io.pfrio_nchange, io.pfrio_ndel) == (0, 1)
    assert tc.tables(flags=ALLRSETS) == []


@pytest.mark.parametrize("setflag,clrflag", [(ACTIVE, 0), (0, INACTIVE), (CONST, CONST)])
def test_settflags_bad_flags_einval(tc, setflag, clrflag):
    tc.add_tables(table("f", flags=PERSIST))
    assert errno_of(tc.set_tflags, table("f"), setflag=setflag, clrflag=clrflag) == errno.EINVAL
    assert flags_of(tc, "f") == PERSIST | ACTIVE


# --- DIOCRADDADDRS -----------------------------------------------------------------------------

def test_addaddrs_feedback(tc):
    tc.add_tables(table("t", flags=PERSIST))
    tc.add_addrs(table("t"), ["10.0.0.0/8", "!10.1.0.0/16"])
    io, buf = tc.add_addrs(table("t"), ["192.0.2.0/24", "10.0.0.0/8", "10.1.0.0/16",
                                        "192.0.2.0/24", "2001:db8::/32"], flags=FEEDBACK)
    assert io.pfrio_nadd == 2
    assert [a.pfra_fback for a in buf] == [PFR_FB_ADDED, PFR_FB_NONE, PFR_FB_CONFLICT,
                                           PFR_FB_DUPLICATE, PFR_FB_ADDED]
    assert tc.show(table("t")) == ["10.0.0.0/8", "!10.1.0.0/16", "192.0.2.0/24", "2001:db8::/32"]


def test_addaddrs_without_feedback_leaves_buffer(tc):
    tc.add_tables(table("t", flags=PERSIST))
    io, buf = tc.add_addrs(table("t"), ["10.0.0.1", "10.0.0.1"])
    assert io.pfrio_nadd == 1 and [a.pfra_fback for a in buf] == [0, 0]


def test_addaddrs_dummy(tc):
    tc.add_tables(table("t", flags=PERSIST))
    io, buf = tc.add_addrs(table("t"), ["10.0.0.1", "10.0.0.2"], flags=DUMMY | FEEDBACK)
    assert io.pfrio_nadd == 2 and [a.pfra_fback for a in buf] == [PFR_FB_ADDED] * 2
    assert tc.show(table("t")) == []


def test_addaddrs_bsd_inet6_family_accepted(tc):
    tc.add_tables(table("t", flags=PERSIST))
    a = addr("2001:db8::1")
    a.pfra_af = AF_INET6_BSD
    assert tc.add_addrs(table("t"), [a])[0].pfrio_nadd == 1
    assert tc.add_addrs(table("t"), ["2001:db8::1"])[0].pfrio_nadd == 0    # the same entry
    assert tc.addrs(table("t"))[0].pfra_af == AF_INET6


@pytest.mark.parametrize("bad", [
    raw_addr(b"\x0a\0\0\x01", af=0),                            # unknown family
    raw_addr(b"\x0a\0\0\x01", af=AF_INET, net=33),              # prefix too long
    raw_addr(b"\0" * 16, af=AF_INET6, net=129),
    raw_addr(b"\x0a\0\0\x01", net=24),                          # host bits set
    raw_addr(b"\x0a\0\0\x00\x01", net=32),                      # bytes past an IPv4 address
    raw_addr(b"\x0a\0\0\x01", neg=2),                           # pfra_not not 0/1
    raw_addr(b"\x0a\0\0\x01", fback=PFR_FB_ADDED),              # pfra_fback set on input
], ids=["af", "net33", "net129", "hostbits", "v4tail", "not2", "fback"])
def test_addaddrs_bad_address_einval_changes_nothing(tc, bad):
    tc.add_tables(table("t", flags=PERSIST))
    assert errno_of(tc.add_addrs, table("t"), ["10.9.9.9", bad]) == errno.EINVAL
    assert tc.show(table("t")) == []


def test_addaddrs_table_errors(tc):
    assert errno_of(tc.add_addrs, table("absent"), ["10.0.0.1"]) == errno.ESRCH
    tc.add_tables(table("c", flags=PERSIST | CONST))
    assert errno_of(tc.add_addrs, table("c"), ["10.0.0.1"]) == errno.EPERM
    tc.add_tables(table("r", "x", flags=PERSIST))               # ("", "r") exists, not active
    assert errno_of(tc.add_addrs, table("r"), ["10.0.0.1"]) == errno.ESRCH
    assert errno_of(tc.add_addrs, table("r", "x", flags=PERSIST), ["10.0.0.1"]) == errno.EINVAL
    assert errno_of(tc.add_addrs, table("r", "x"), ["10.0.0.1"], flags=PFR_FLAG_REPLACE) == errno.EINVAL


def test_addaddrs_beyond_table_entries_limit_enomem(tc, dev):
    old = dev.set_limit(PF_LIMIT_TABLE_ENTRIES, 10)
    try:
        tc.add_tables(table("a", flags=PERSIST), table("b", flags=PERSIST))
        assert tc.add_addrs(table("a"), [f"10.0.0.{i}" for i in range(6)])[0].pfrio_nadd == 6
        assert tc.add_addrs(table("b"), [f"10.0.1.{i}" for i in range(4)])[0].pfrio_nadd == 4
        before = snapshot(tc)
        for call in (lambda: tc.add_addrs(table("b"), ["10.0.0.0/8"]),
                     lambda: tc.add_addrs(table("b"), ["10.0.0.0/8"], flags=DUMMY),
                     lambda: tc.set_addrs(table("b"), ["10.0.1.0", "10.0.2.0/24"])):
            assert errno_of(call) == errno.ENOMEM
        assert snapshot(tc) == before
        # entries of a table given back are available again
        tc.clr_addrs(table("a"))
        assert tc.add_addrs(table("b"), [f"10.0.2.{i}" for i in range(6)])[0].pfrio_nadd == 6
    finally:
        dev.set_limit(PF_LIMIT_TABLE_ENTRIES, old)


# --- DIOCRDELADDRS -----------------------------------------------------------------------------

def test_deladdrs_feedback(tc):
    tc.add_tables(table("t", flags=PERSIST))
    tc.add_addrs(table("t"), ["10.0.0.0/8", "!10.1.0.0/16", "10.2.2.2"])
    io, buf = tc.del_addrs(table("t"), ["10.0.0.0/8", "10.0.0.0/8", "10.1.0.0/16", "192.0.2.1"],
                           flags=FEEDBACK | DUMMY)
    assert io.pfrio_ndel == 1
    assert [a.pfra_fback for a in buf] == [PFR_FB_DELETED, PFR_FB_DUPLICATE, PFR_FB_CONFLICT,
                                           PFR_FB_NONE]
    assert len(tc.show(table("t"))) == 3
    io, _ = tc.del_addrs(table("t"), ["10.0.0.0/8", "!10.1.0.0/16"])
    assert io.pfrio_ndel == 2 and tc.show(table("t")) == ["10.2.2.2"]


def test_deladdrs_errors(tc):
    assert errno_of(tc.del_addrs, table("absent"), ["10.0.0.1"]) == errno.ESRCH
    tc.add_tables(table("c", flags=PERSIST | CONST))
    assert errno_of(tc.del_addrs, table("c"), ["10.0.0.1"]) == errno.EPERM
    tc.add_tables(table("t", flags=PERSIST))
    assert errno_of(tc.del_addrs, table("t"), [raw_addr(b"\x0a\0\0\x01", net=8)]) == errno.EINVAL


# --- DIOCRSETADDRS -----------------------------------------------------------------------------

def test_setaddrs_replaces_with_feedback(tc):
    tc.add_tables(table("t", flags=PERSIST))
    tc.add_addrs(table("t"), ["10.0.0.1", "10.0.0.2", "!10.0.0.3"])
    io, buf = tc.set_addrs(table("t"), ["10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.4"],
                           flags=FEEDBACK, room=4)
    assert (io.pfrio_nadd, io.pfrio_ndel, io.pfrio_nchange, io.pfrio_size2) == (1, 1, 1, 5)
    assert [a.pfra_fback for a in buf[:4]] == [PFR_FB_NONE, PFR_FB_CHANGED, PFR_FB_ADDED,
                                               PFR_FB_DUPLICATE]
    assert addr_text(buf[4]) == "10.0.0.2" and buf[4].pfra_fback == PFR_FB_DELETED
    assert tc.show(table("t")) == ["10.0.0.1", "10.0.0.3", "10.0.0.4"]


def test_setaddrs_size2_too_small_asks_for_room_and_changes_nothing(tc):
    tc.add_tables(table("t", flags=PERSIST))
    tc.add_addrs(table("t"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    io, buf = tc.set_addrs(table("t"), ["10.0.0.9"], flags=FEEDBACK, room=1)  # size2 = 2
    assert io.pfrio_size2 == 4                                  # 1 + 3 deleted
    assert (io.pfrio_nadd, io.pfrio_ndel, io.pfrio_nchange) == (0, 0, 0)
    assert buf[0].pfra_fback == PFR_FB_NONE
    assert tc.show(table("t")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    io, buf = tc.set_addrs(table("t"), ["10.0.0.9"], flags=FEEDBACK, room=3)  # pfctl retries
    assert (io.pfrio_nadd, io.pfrio_ndel, io.pfrio_size2) == (1, 3, 4)
    assert [addr_text(a) for a in buf[1:]] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert tc.show(table("t")) == ["10.0.0.9"]


def test_setaddrs_without_feedback_and_dummy(tc):
    tc.add_tables(table("t", flags=PERSIST))
    tc.add_addrs(table("t"), ["10.0.0.1"])
    io, buf = tc.set_addrs(table("t"), ["10.0.0.2"], flags=DUMMY)
    assert (io.pfrio_nadd, io.pfrio_ndel, io.pfrio_size2) == (1, 1, 0)
    assert buf[0].pfra_fback == 0 and tc.show(table("t")) == ["10.0.0.1"]
    io, _ = tc.set_addrs(table("t"), [])
    assert io.pfrio_ndel == 1 and tc.show(table("t")) == []


def test_setaddrs_errors(tc):
    assert errno_of(tc.set_addrs, table("absent"), ["10.0.0.1"]) == errno.ESRCH
    tc.add_tables(table("c", flags=PERSIST | CONST))
    assert errno_of(tc.set_addrs, table("c"), ["10.0.0.1"]) == errno.EPERM
    buf = addr_array(["10.0.0.1"])
    for size, size2 in ((1, -1), (-1, 1), (1, MAXCOUNT + 1)):
        io = tc.io(tbl=table("c"), buf=buf, size=size, esize=ESIZE_ADDR, pfrio_size2=size2)
        assert errno_of(tc.call, DIOCRSETADDRS, io) == errno.EINVAL


# --- DIOCRCLRADDRS -----------------------------------------------------------------------------

def test_clraddrs(tc):
    tc.add_tables(table("t", flags=PERSIST))
    tc.add_addrs(table("t"), ["10.0.0.1", "2001:db8::1"])
    assert tc.clr_addrs(table("t"), flags=DUMMY).pfrio_ndel == 2
    assert len(tc.show(table("t"))) == 2
    assert tc.clr_addrs(table("t")).pfrio_ndel == 2
    assert tc.show(table("t")) == []
    assert errno_of(tc.clr_addrs, table("absent")) == errno.ESRCH
    tc.add_tables(table("c", flags=PERSIST | CONST))
    assert errno_of(tc.clr_addrs, table("c")) == errno.EPERM
    assert errno_of(tc.clr_addrs, table("t"), flags=FEEDBACK) == errno.EINVAL
    io = tc.io(tbl=table("t"), esize=ESIZE_ADDR)
    assert errno_of(tc.call, DIOCRCLRADDRS, io) == errno.ENODEV


# --- DIOCRGETADDRS / DIOCRGETASTATS ------------------------------------------------------------

def test_getaddrs_order_and_size_query(tc):
    tc.add_tables(table("t", flags=PERSIST))
    entries = ["2001:db8::/32", "10.1.0.0/16", "10.0.0.0/8", "!10.1.2.0/24", "10.1.2.3", "::1"]
    tc.add_addrs(table("t"), entries)
    buf = (pfr_addr * 2)()
    io = tc.call(DIOCRGETADDRS, tc.io(tbl=table("t"), buf=buf, esize=ESIZE_ADDR))
    assert io.pfrio_size == 6
    # IPv4 then IPv6, by address, a longer prefix of the same address first
    assert tc.show(table("t")) == ["10.0.0.0/8", "10.1.0.0/16", "!10.1.2.0/24", "10.1.2.3",
                                   "::1", "2001:db8::/32"]
    buf = (pfr_addr * 8)(*[addr("1.2.3.4")] * 8)
    io = tc.call(DIOCRGETADDRS, tc.io(tbl=table("t"), buf=buf, esize=ESIZE_ADDR))
    assert io.pfrio_size == 6 and bytes(buf[6]) == bytes(20)    # the rest of the buffer too


def test_getaddrs_errors(tc):
    assert errno_of(tc.addrs, table("absent")) == errno.ESRCH
    tc.add_tables(table("t", flags=PERSIST))
    buf = (pfr_addr * 1)()
    io = tc.io(tbl=table("t"), buf=buf, esize=ESIZE_ADDR, flags=PFR_FLAG_CLSTATS)
    assert errno_of(tc.call, DIOCRGETADDRS, io) == errno.EINVAL
    io = tc.io(tbl=table("t", flags=PERSIST), buf=buf, esize=ESIZE_ADDR)
    assert errno_of(tc.call, DIOCRGETADDRS, io) == errno.EINVAL
    io = tc.io(tbl=table("t"), buf=buf, esize=ESIZE_ASTATS)
    assert errno_of(tc.call, DIOCRGETADDRS, io) == errno.ENODEV


def test_getastats_counters_flag(tc):
    tc.add_tables(table("n", flags=PERSIST), table("c", flags=PERSIST | PFR_TFLAG_COUNTERS))
    for name in ("n", "c"):
        tc.add_addrs(table(name), ["10.0.0.0/8", "10.0.0.1"])
    now = time.time()
    plain, counted = tc.addrs(table("n"), stats=True), tc.addrs(table("c"), stats=True)
    assert [a.pfras_a.pfra_fback for a in plain] == [PFR_FB_NOCOUNT] * 2
    assert [a.pfras_a.pfra_fback for a in counted] == [PFR_FB_NONE] * 2
    assert [addr_text(a.pfras_a) for a in counted] == ["10.0.0.0/8", "10.0.0.1"]
    assert all(abs(a.pfras_tzero - now) < 5 for a in plain + counted)
    assert all(list(a.pfras_packets[0]) == [0, 0] for a in counted)
    assert errno_of(tc.call, DIOCRGETASTATS,
                    tc.io(tbl=table("c"), buf=(pfr_astats * 2)(), esize=ESIZE_ASTATS,
                          flags=PFR_FLAG_CLSTATS)) == errno.EINVAL


# --- DIOCRCLRASTATS ----------------------------------------------------------------------------

def test_clrastats_feedback(tc):
    tc.add_tables(table("t", flags=PERSIST))
    tc.add_addrs(table("t"), ["10.0.0.1", "10.0.0.2"])
    io, buf = tc.clr_astats(table("t"), ["10.0.0.1", "10.0.0.3", "10.0.0.1"], flags=FEEDBACK)
    assert io.pfrio_nzero == 2
    assert [a.pfra_fback for a in buf] == [PFR_FB_CLEARED, PFR_FB_NONE, PFR_FB_CLEARED]
    assert [a.pfras_tzero == 0 for a in tc.addrs(table("t"), stats=True)] == [True, False]
    assert errno_of(tc.clr_astats, table("absent"), ["10.0.0.1"]) == errno.ESRCH


def test_clrastats_needs_writable_fd_even_as_dry_run(tc, ro):
    tc.add_tables(table("t", flags=PERSIST))
    assert errno_of(ro.clr_astats, table("t"), ["10.0.0.1"], flags=DUMMY) == errno.EACCES


# --- DIOCRTSTADDRS: longest prefix match with negated entries -----------------------------------

LPM_TABLE = ["10.0.0.0/8", "!10.1.0.0/16", "10.1.2.0/24", "!10.1.2.3", "0.0.0.0/0",
             "!192.0.2.0/24", "2001:db8::/32", "!2001:db8:1::/48", "2001:db8:1:2::/64"]
LPM_CASES = [
    ("10.9.9.9", PFR_FB_MATCH, "10.0.0.0/8"),
    ("10.1.9.9", PFR_FB_NOTMATCH, "!10.1.0.0/16"),             # negated entry is the longest
    ("10.1.2.9", PFR_FB_MATCH, "10.1.2.0/24"),                 # a longer positive inside it
    ("10.1.2.3", PFR_FB_NOTMATCH, "!10.1.2.3"),                # a negated host inside that
    ("11.0.0.1", PFR_FB_MATCH, "0.0.0.0/0"),                   # the default route
    ("192.0.2.77", PFR_FB_NOTMATCH, "!192.0.2.0/24"),
    ("2001:db8::5", PFR_FB_MATCH, "2001:db8::/32"),
    ("2001:db8:1::5", PFR_FB_NOTMATCH, "!2001:db8:1::/48"),
    ("2001:db8:1:2::5", PFR_FB_MATCH, "2001:db8:1:2::/64"),
    ("2001:db9::1", PFR_FB_NONE, None),
]


def test_tstaddrs_longest_prefix_with_negation(tc):
    tc.add_tables(table("lpm", flags=PERSIST))
    tc.add_addrs(table("lpm"), LPM_TABLE)
    io, buf = tc.tst_addrs(table("lpm"), [c[0] for c in LPM_CASES])
    assert [a.pfra_fback for a in buf] == [c[1] for c in LPM_CASES]
    assert io.pfrio_nmatch == sum(c[1] == PFR_FB_MATCH for c in LPM_CASES)
    assert [addr_text(a) for a in buf] == [c[0] for c in LPM_CASES]    # addresses unchanged
    io, buf = tc.tst_addrs(table("lpm"), [c[0] for c in LPM_CASES], flags=PFR_FLAG_REPLACE)
    # REPLACE: the matching entry itself comes back (all zero when none matches)
    assert [addr_text(a) if c[2] else bytes(a) for a, c in zip(buf, LPM_CASES)] == \
        [c[2] or bytes(20) for c in LPM_CASES]


def test_tstaddrs_follows_changes(tc):
    tc.add_tables(table("t", flags=PERSIST))
    tc.add_addrs(table("t"), ["10.0.0.0/8"])
    assert tc.tst_addrs(table("t"), ["10.1.1.1"])[0].pfrio_nmatch == 1
    tc.add_addrs(table("t"), ["!10.1.0.0/16"])
    assert tc.tst_addrs(table("t"), ["10.1.1.1"])[1][0].pfra_fback == PFR_FB_NOTMATCH
    tc.del_addrs(table("t"), ["!10.1.0.0/16"])
    tc.set_addrs(table("t"), ["!10.0.0.0/8"])                  # negation flipped by replace
    assert tc.tst_addrs(table("t"), ["10.1.1.1"])[1][0].pfra_fback == PFR_FB_NOTMATCH


def test_tstaddrs_errors(tc):
    assert errno_of(tc.tst_addrs, table("absent"), ["10.0.0.1"]) == errno.ESRCH
    tc.add_tables(table("t", flags=PERSIST))
    assert errno_of(tc.tst_addrs, table("t"), ["10.0.0.0/8"]) == errno.EINVAL   # a network
    assert errno_of(tc.tst_addrs, table("t"), ["10.0.0.1"], flags=FEEDBACK) == errno.EINVAL
    with PfDevice(tc.dev.path, "r") as ro:                      # read-only fds may test
        io, buf = TableClient(ro).tst_addrs(table("t"), ["10.0.0.1"])
    assert buf[0].pfra_fback == PFR_FB_NONE


# --- read-only fds -----------------------------------------------------------------------------

def test_readonly_fd_changes_only_as_dry_run(tc, ro):
    assert errno_of(ro.add_tables, table("r", flags=PERSIST)) == errno.EACCES
    assert ro.add_tables(table("r", flags=PERSIST), flags=DUMMY).pfrio_nadd == 1
    tc.add_tables(table("r", flags=PERSIST))
    assert errno_of(ro.add_addrs, table("r"), ["10.0.0.1"]) == errno.EACCES
    assert ro.add_addrs(table("r"), ["10.0.0.1"], flags=DUMMY)[0].pfrio_nadd == 1
    assert errno_of(ro.clr_tables) == errno.EACCES
    assert ro.tables() and ro.show(table("r")) == [] and ro.tables(stats=True)
    assert errno_of(ro.ina_define, table("r"), [], 0) == errno.EACCES


# --- transactions: DIOCRINADEFINE between DIOCXBEGIN and DIOCXCOMMIT ----------------------------

def trans(dev, cmd, elements):
    """DIOCXBEGIN/XCOMMIT/XROLLBACK on (rs_num, anchor[, ticket]) elements; returns the tickets."""
    arr = (pfioc_trans_e * len(elements))()
    for e, (rs_num, anchor, *ticket) in zip(arr, elements):
        e.rs_num, e.anchor, e.ticket = rs_num, anchor.encode(), (ticket or [0])[0]
    dev.ioctl(cmd, pfioc_trans(size=len(elements), esize=ctypes.sizeof(pfioc_trans_e),
                               array=ctypes.addressof(arr)))
    return [e.ticket for e in arr]


@pytest.fixture
def xdev(dev):
    """The device, once a table transaction has begun and rolled back cleanly on it."""
    ticket, = trans(dev, DIOCXBEGIN, [(PF_RULESET_TABLE, "")])
    trans(dev, DIOCXROLLBACK, [(PF_RULESET_TABLE, "", ticket)])
    return dev


def test_inadefine_without_open_transaction_ebusy(tc):
    assert errno_of(tc.ina_define, table("t", flags=PERSIST), [], 0) == errno.EBUSY
    assert errno_of(tc.ina_define, table("t", "nope"), [], 1) == errno.EBUSY


def test_inadefine_checks_before_ticket(tc):
    assert errno_of(tc.ina_define, table("t"), ["10.0.0.1"], 0) == errno.EINVAL  # no ADDRSTOO
    assert errno_of(tc.ina_define, table("t", flags=ACTIVE), [], 0) == errno.EINVAL
    assert errno_of(tc.ina_define, table("t"), [], 0, flags=FEEDBACK) == errno.EINVAL
    assert errno_of(tc.ina_define, table(""), [], 0) == errno.EINVAL


def test_anchor_listed_twice_in_one_xbegin(tc, xdev):
    """Each element moves the ticket on (only the last is live) and what an earlier transaction
    defined is dropped, as FreeBSD; many repeats stay cheap (the anchor is walked once)."""
    first, = trans(xdev, DIOCXBEGIN, [(PF_RULESET_TABLE, "")])
    tc.ina_define(table("old", flags=PERSIST), [], first)
    assert flags_of(tc, "old") == PERSIST | INACTIVE
    tickets = trans(xdev, DIOCXBEGIN, [(PF_RULESET_TABLE, "")] * 5000)
    assert tickets == [first + 1 + i for i in range(5000)]
    assert flags_of(tc, "old") is None                          # dropped by the new begin
    assert errno_of(trans, xdev, DIOCXCOMMIT, [(PF_RULESET_TABLE, "", tickets[0])]) == errno.EBUSY
    trans(xdev, DIOCXCOMMIT, [(PF_RULESET_TABLE, "", tickets[-1])])


def test_transaction_defines_and_commits_tables(tc, xdev):
    ticket, = trans(xdev, DIOCXBEGIN, [(PF_RULESET_TABLE, "")])
    io, _ = tc.ina_define(table("tx", flags=PERSIST), ["10.0.0.0/8", "10.0.0.0/8", "10.0.0.1"],
                          ticket, flags=PFR_FLAG_ADDRSTOO)
    assert (io.pfrio_nadd, io.pfrio_naddr) == (1, 2)
    assert io.pfrio_table.pfrt_flags == PERSIST | INACTIVE      # as FreeBSD writes it back
    assert flags_of(tc, "tx") == PERSIST | INACTIVE             # defined, not active yet
    assert errno_of(tc.show, table("tx")) == errno.ESRCH
    assert tc.ina_define(table("tx", flags=PERSIST), [], ticket)[0].pfrio_nadd == 0  # redefined
    io, _ = tc.ina_define(table("tx", flags=PERSIST), ["10.0.0.0/8", "!10.1.0.0/16"], ticket,
                          flags=PFR_FLAG_ADDRSTOO)
    assert (io.pfrio_nadd, io.pfrio_naddr) == (0, 2)
    assert tc.ina_define(table("dry", flags=PERSIST), ["10.0.0.1"], ticket,
                         flags=PFR_FLAG_ADDRSTOO | DUMMY)[0].pfrio_nadd == 1
    assert flags_of(tc, "dry") is None
    assert errno_of(tc.ina_define, table("tx"), [], ticket + 1) == errno.EBUSY
    trans(xdev, DIOCXCOMMIT, [(PF_RULESET_TABLE, "", ticket)])
    assert flags_of(tc, "tx") == PERSIST | ACTIVE
    assert tc.show(table("tx")) == ["10.0.0.0/8", "!10.1.0.0/16"]
    assert errno_of(tc.ina_define, table("tx"), [], ticket) == errno.EBUSY   # closed

    # a second load merges into the active table: kept entries stay, others come and go
    ticket, = trans(xdev, DIOCXBEGIN, [(PF_RULESET_TABLE, "")])
    tc.ina_define(table("tx", flags=PERSIST | CONST), ["10.0.0.0/8", "10.1.0.0/16", "10.3.0.0/16"],
                  ticket, flags=PFR_FLAG_ADDRSTOO)
    assert tc.show(table("tx")) == ["10.0.0.0/8", "!10.1.0.0/16"]     # active until commit
    trans(xdev, DIOCXCOMMIT, [(PF_RULESET_TABLE, "", ticket)])
    assert tc.show(table("tx")) == ["10.0.0.0/8", "10.1.0.0/16", "10.3.0.0/16"]
    assert flags_of(tc, "tx") == PERSIST | CONST | ACTIVE
    # defined without addresses (no ADDRSTOO): the commit keeps the entries
    ticket, = trans(xdev, DIOCXBEGIN, [(PF_RULESET_TABLE, "")])
    tc.ina_define(table("tx", flags=PERSIST), [], ticket)
    trans(xdev, DIOCXCOMMIT, [(PF_RULESET_TABLE, "", ticket)])
    assert len(tc.show(table("tx"))) == 3 and flags_of(tc, "tx") == PERSIST | ACTIVE


def test_transaction_rollback_and_stale_tickets(tc, xdev):
    tc.add_tables(table("keep", flags=PERSIST))
    tc.add_addrs(table("keep"), ["10.0.0.1"])
    old, = trans(xdev, DIOCXBEGIN, [(PF_RULESET_TABLE, "")])
    ticket, = trans(xdev, DIOCXBEGIN, [(PF_RULESET_TABLE, "")])
    assert ticket != old
    assert errno_of(tc.ina_define, table("keep"), [], old) == errno.EBUSY
    tc.ina_define(table("keep", flags=PERSIST), ["10.9.9.9"], ticket, flags=PFR_FLAG_ADDRSTOO)
    tc.ina_define(table("new", flags=PERSIST), ["10.8.8.8"], ticket, flags=PFR_FLAG_ADDRSTOO)
    assert errno_of(trans, xdev, DIOCXCOMMIT, [(PF_RULESET_TABLE, "", old)]) == errno.EBUSY
    trans(xdev, DIOCXROLLBACK, [(PF_RULESET_TABLE, "", old)])   # stale: ignored
    assert flags_of(tc, "new") == PERSIST | INACTIVE
    trans(xdev, DIOCXROLLBACK, [(PF_RULESET_TABLE, "", ticket)])
    assert flags_of(tc, "new") is None
    assert flags_of(tc, "keep") == PERSIST | ACTIVE and tc.show(table("keep")) == ["10.0.0.1"]


def test_transaction_in_anchor_uses_root_table(tc, xdev):
    ticket, = trans(xdev, DIOCXBEGIN, [(PF_RULESET_TABLE, "a/b")])
    io, _ = tc.ina_define(table("t", "a/b", flags=PERSIST), ["10.0.0.1"], ticket,
                          flags=PFR_FLAG_ADDRSTOO)
    assert io.pfrio_nadd == 1
    assert tc.names(flags=ALLRSETS) == {("", "t"): PFR_TFLAG_REFDANCHOR,
                                        ("a/b", "t"): PERSIST | INACTIVE}
    assert errno_of(tc.ina_define, table("t", "a/b"), [], ticket + 7) == errno.EBUSY
    assert errno_of(tc.ina_define, table("u"), [], ticket) == errno.EBUSY   # main has none open
    trans(xdev, DIOCXCOMMIT, [(PF_RULESET_TABLE, "a/b", ticket)])
    assert tc.show(table("t", "a/b")) == ["10.0.0.1"]


def test_transaction_drops_unreferenced_tables_without_persist(tc, xdev):
    ticket, = trans(xdev, DIOCXBEGIN, [(PF_RULESET_TABLE, "")])
    tc.ina_define(table("loose"), ["10.0.0.1"], ticket, flags=PFR_FLAG_ADDRSTOO)
    trans(xdev, DIOCXCOMMIT, [(PF_RULESET_TABLE, "", ticket)])
    assert flags_of(tc, "loose") is None        # no rule refers to it and it does not persist


# --- pfctl's sequences (pf-abi.md §5) ----------------------------------------------------------

def pfctl_open(path, writes):
    """pfctl's open: O_RDWR for the -T commands that change things, then the ALTQ probe."""
    dev = PfDevice(path, "rw" if writes else "r")
    assert errno_of(dev.ioctl, DIOCGETALTQSV1, (ctypes.c_char * 304)()) == errno.ENODEV
    return TableClient(dev)


def pfctl_add(path, name, addrs, verbose=False):
    """pfctl -t name -T add addrs... [-v]"""
    c = pfctl_open(path, True)
    if c.add_tables(table(name, flags=PERSIST)).pfrio_nadd:
        c.tables(flags=ALLRSETS)                                # namespace-collision check
    io, buf = c.add_addrs(table(name), addrs, flags=FEEDBACK if verbose else 0)
    return io.pfrio_nadd, [a.pfra_fback for a in buf]


def pfctl_replace(path, name, addrs):
    """pfctl -t name -T replace: DIOCRSETADDRS with size2 = buffer capacity, grown on demand."""
    c = pfctl_open(path, True)
    c.add_tables(table(name, flags=PERSIST))
    room = 0
    while True:
        io, buf = c.set_addrs(table(name), addrs, flags=FEEDBACK, room=room or 1)
        if io.pfrio_size2 <= len(addrs) + (room or 1):
            return io
        room = io.pfrio_size2 - len(addrs)


def test_pfctl_table_sequences(module_pfd, tc):
    path = module_pfd.path
    assert pfctl_add(path, "web", ["192.0.2.1", "192.0.2.2", "198.51.100.0/24"]) == (3, [0, 0, 0])
    assert pfctl_add(path, "web", ["192.0.2.2", "192.0.2.3"], verbose=True) == \
        (1, [PFR_FB_NONE, PFR_FB_ADDED])
    show = pfctl_open(path, False)
    assert show.show(table("web")) == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.0/24"]
    assert len(show.addrs(table("web"), stats=True)) == 4      # -T show -v
    # -T test: exit 0 only when all match
    io, _ = show.tst_addrs(table("web"), ["192.0.2.1", "198.51.100.7", "203.0.113.1"])
    assert io.pfrio_nmatch == 2
    io, buf = show.tst_addrs(table("web"), ["198.51.100.7"], flags=PFR_FLAG_REPLACE)   # -vv
    assert addr_text(buf[0]) == "198.51.100.0/24" and buf[0].pfra_fback == PFR_FB_MATCH
    # -T delete
    io, _ = pfctl_open(path, True).del_addrs(table("web"), ["192.0.2.3"])
    assert io.pfrio_ndel == 1
    # -T replace with a buffer that has to grow for the deleted entries
    io = pfctl_replace(path, "web", ["203.0.113.5"])
    assert (io.pfrio_nadd, io.pfrio_ndel, io.pfrio_size2) == (1, 3, 4)
    assert show.show(table("web")) == ["203.0.113.5"]
    # -T zero (ADDRSTOO) and -s Tables / -s Tables -vv
    assert pfctl_open(path, True).clr_tstats(table("web"), flags=PFR_FLAG_ADDRSTOO).pfrio_nzero == 1
    for i in range(70):                                         # more than pfctl's first 64
        pfctl_add(path, f"bulk{i:02d}", [f"10.0.{i}.1"])
    listed = pfctl_open(path, False).tables()
    assert len(listed) == 71 and listed[-1].pfrt_name == b"web"
    vv = pfctl_open(path, False).tables(stats=True)
    assert [t.pfrts_cnt for t in vv][:2] == [1, 1] and vv[-1].pfrts_cnt == 1
    # -T flush, -T kill
    assert pfctl_open(path, True).clr_addrs(table("web")).pfrio_ndel == 1
    assert pfctl_open(path, True).del_tables(table("web")).pfrio_ndel == 1
    # -F Tables
    assert pfctl_open(path, True).clr_tables().pfrio_ndel == 70
    assert show.tables() == []


# --- hostile inputs (validation.c) -------------------------------------------------------------

NULL = None
BAD_SIZES = (-1, 1 << 24, 1 << 28, -(1 << 31))


def hostile_requests():
    """(id, command, pfioc_table fields, expected errno or 0 for success). Sizes and buffers in
    the manner of FreeBSD's tests/sys/netpfil/pf/ioctl/validation.c; the fixture table "h" and
    its main ruleset are there, so bounded sizes stay non-zero."""
    tbl, addrbuf = table("h"), addr_array(["10.0.0.1"])
    tblbuf = (pfr_table * 8)(*[table("h")] * 8)                 # room for any bounded size
    cases = []
    for size in BAD_SIZES:
        for cmd in (DIOCRADDTABLES, DIOCRDELTABLES):
            cases.append((cmd, dict(buf=tblbuf, esize=ESIZE_TABLE, size=size), errno.ENOMEM))
        for cmd, buf, esize in ((DIOCRGETTABLES, (pfr_table * 8)(), ESIZE_TABLE),
                                (DIOCRGETTSTATS, (pfr_tstats * 8)(), ESIZE_TSTATS),
                                (DIOCRCLRTSTATS, tblbuf, ESIZE_TABLE),
                                (DIOCRSETTFLAGS, tblbuf, ESIZE_TABLE)):
            # bounded by the table count: the kernel does not copy more tables than it has
            cases.append((cmd, dict(buf=buf, esize=esize, size=size), 0))
        for cmd, esize in ((DIOCRADDADDRS, ESIZE_ADDR), (DIOCRDELADDRS, ESIZE_ADDR),
                           (DIOCRSETADDRS, ESIZE_ADDR), (DIOCRGETADDRS, ESIZE_ADDR),
                           (DIOCRGETASTATS, ESIZE_ASTATS), (DIOCRCLRASTATS, ESIZE_ADDR),
                           (DIOCRTSTADDRS, ESIZE_ADDR), (DIOCRINADEFINE, ESIZE_ADDR)):
            cases.append((cmd, dict(tbl=tbl, buf=addrbuf, esize=esize, size=size), errno.EINVAL))
        cases.append((DIOCRSETADDRS, dict(tbl=tbl, buf=addrbuf, esize=ESIZE_ADDR, size=1,
                                          pfrio_size2=size), errno.EINVAL))
    # NULL buffers with a non-zero size
    for cmd, esize in ((DIOCRADDTABLES, ESIZE_TABLE), (DIOCRDELTABLES, ESIZE_TABLE),
                       (DIOCRGETTABLES, ESIZE_TABLE), (DIOCRGETTSTATS, ESIZE_TSTATS),
                       (DIOCRCLRTSTATS, ESIZE_TABLE), (DIOCRSETTFLAGS, ESIZE_TABLE),
                       (DIOCRADDADDRS, ESIZE_ADDR), (DIOCRDELADDRS, ESIZE_ADDR),
                       (DIOCRSETADDRS, ESIZE_ADDR), (DIOCRGETADDRS, ESIZE_ADDR),
                       (DIOCRGETASTATS, ESIZE_ASTATS), (DIOCRCLRASTATS, ESIZE_ADDR),
                       (DIOCRTSTADDRS, ESIZE_ADDR), (DIOCRINADEFINE, ESIZE_ADDR)):
        cases.append((cmd, dict(tbl=tbl, buf=NULL, esize=esize, size=1), errno.EFAULT))
    # wrong element sizes
    for cmd, esize in ((DIOCRCLRTABLES, 0), (DIOCRADDTABLES, ESIZE_TABLE),
                       (DIOCRDELTABLES, ESIZE_TABLE), (DIOCRGETTABLES, ESIZE_TABLE),
                       (DIOCRGETTSTATS, ESIZE_TSTATS), (DIOCRCLRTSTATS, ESIZE_TABLE),
                       (DIOCRSETTFLAGS, ESIZE_TABLE), (DIOCRCLRADDRS, 0),
                       (DIOCRADDADDRS, ESIZE_ADDR), (DIOCRDELADDRS, ESIZE_ADDR),
                       (DIOCRSETADDRS, ESIZE_ADDR), (DIOCRGETADDRS, ESIZE_ADDR),
                       (DIOCRGETASTATS, ESIZE_ASTATS), (DIOCRCLRASTATS, ESIZE_ADDR),
                       (DIOCRTSTADDRS, ESIZE_ADDR), (DIOCRINADEFINE, ESIZE_ADDR)):
        for wrong in {esize + 1, esize - 1 if esize else 20, 0 if esize else 1064}:
            cases.append((cmd, dict(tbl=tbl, buf=addrbuf, esize=wrong, size=1), errno.ENODEV))
    # names and anchors that are not NUL-terminated and zero-padded, in pfrio_table ...
    for bad in (raw_table(b"h" * 32), raw_table(b"h\0junk"), raw_table(b"h", b"x\0junk"),
                raw_table(b"h", b"h" * 1024)):
        for cmd, buf, esize in ((DIOCRCLRADDRS, None, 0), (DIOCRADDADDRS, addrbuf, ESIZE_ADDR),
                                (DIOCRDELADDRS, addrbuf, ESIZE_ADDR),
                                (DIOCRSETADDRS, addrbuf, ESIZE_ADDR),
                                (DIOCRGETADDRS, addrbuf, ESIZE_ADDR),
                                (DIOCRCLRASTATS, addrbuf, ESIZE_ADDR),
                                (DIOCRTSTADDRS, addrbuf, ESIZE_ADDR),
                                (DIOCRINADEFINE, addrbuf, ESIZE_ADDR)):
            cases.append((cmd, dict(tbl=bad, buf=buf, esize=esize, size=1 if buf else None),
                          errno.EINVAL))
    for bad in (raw_table(b"", b"h\0junk"), raw_table(b"", b"h" * 1024)):
        for cmd in (DIOCRCLRTABLES, DIOCRGETTABLES):
            esize = 0 if cmd == DIOCRCLRTABLES else ESIZE_TABLE
            buf = None if cmd == DIOCRCLRTABLES else (pfr_table * 8)()
            cases.append((cmd, dict(tbl=bad, buf=buf, esize=esize), errno.EINVAL))
    # ... and in the buffer of the table-list commands
    for bad in (raw_table(b"h" * 32), raw_table(b"h\0junk"), raw_table(b"h", b"x\0junk")):
        for cmd in (DIOCRADDTABLES, DIOCRDELTABLES, DIOCRCLRTSTATS, DIOCRSETTFLAGS):
            cases.append((cmd, dict(buf=(pfr_table * 1)(bad), esize=ESIZE_TABLE), errno.EINVAL))
    return cases


HOSTILE = hostile_requests()


def hostile_id(case):
    cmd, fields, expected = case
    what = ",".join(f"{k}={'NULL' if v is None and k == 'buf' else v if isinstance(v, int) else '...'}"
                    for k, v in fields.items())
    return f"{name_of(cmd)}[{what}]->{errno.errorcode.get(expected, 'ok')}"


@pytest.mark.parametrize("case", HOSTILE, ids=[hostile_id(c) for c in HOSTILE])
def test_hostile_requests_leave_tables_unchanged(tc, case):
    cmd, fields, expected = case
    tc.add_tables(table("h", flags=PERSIST), table("other", flags=PERSIST))
    tc.add_addrs(table("h"), ["10.0.0.1", "10.0.0.0/8"])
    fields = dict(fields)
    buf = fields.pop("buf", None)
    io = tc.io(buf=buf, **fields)
    if buf is None and "size" in fields and fields["size"] is not None:
        io.pfrio_buffer = None
    before = snapshot(tc)
    if expected:
        assert errno_of(tc.call, cmd, io) == expected
    else:
        tc.call(cmd, io)
    assert snapshot(tc) == before


def test_failed_request_leaves_the_callers_struct_alone(tc):
    tc.add_tables(table("t", flags=PERSIST))
    io = tc.io(tbl=table("t"), buf=addr_array(["10.0.0.0/8"]), esize=ESIZE_ADDR, size=1)
    io.pfrio_buffer = None
    io.pfrio_nadd = 4242
    image = bytes(io)
    assert errno_of(tc.call, DIOCRADDADDRS, io) == errno.EFAULT
    assert bytes(io) == image


# --- buffers far over 128 KiB --------------------------------------------------------------------

def test_large_buffers_in_and_out(tc):
    n = 20000                                                   # 400 KB of pfr_addr, 1.9 MB of astats
    tc.add_tables(table("big", flags=PERSIST))
    hosts = [f"10.{i >> 8 & 255}.{i & 255}.1" for i in range(n)]
    io, buf = tc.add_addrs(table("big"), hosts, flags=FEEDBACK)
    assert io.pfrio_nadd == n and all(a.pfra_fback == PFR_FB_ADDED for a in buf)
    listed = tc.addrs(table("big"), initial=n)
    assert len(listed) == n and {addr_text(a) for a in listed} == set(hosts)
    stats = tc.addrs(table("big"), stats=True, initial=n)
    assert len(stats) == n and stats[-1].pfras_a.pfra_fback == PFR_FB_NOCOUNT
    io, buf = tc.tst_addrs(table("big"), [h if i % 2 == 0 else h[:-1] + "9"
                                          for i, h in enumerate(hosts)])
    assert io.pfrio_nmatch == n // 2
    assert [a.pfra_fback for a in buf[:4]] == [PFR_FB_MATCH, PFR_FB_NONE] * 2
    io, buf = tc.set_addrs(table("big"), hosts[:n // 2], flags=FEEDBACK, room=n // 2)
    assert (io.pfrio_ndel, io.pfrio_size2) == (n // 2, n)
    assert {addr_text(a) for a in buf[n // 2:]} == set(hosts[n // 2:])
    assert all(a.pfra_fback == PFR_FB_DELETED for a in buf[n // 2:])


# --- rules referring to tables: an anchor's rule falls back to the root table --------------------

def test_rule_in_anchor_sees_root_table(tc, xdev):
    from pfkern.client import (DIOCADDRULE, DIOCBEGINADDRS, DIOCGETRULE, DIOCGETRULES,
                               PF_ADDR_TABLE, PF_PASS, pfioc_pooladdr, pfioc_rule)
    tc.add_tables(table("shared", flags=PERSIST))
    tc.add_addrs(table("shared"), ["10.0.0.1", "10.0.0.2"])
    ticket, = trans(xdev, DIOCXBEGIN, [(PF_RULESET_FILTER, "anc")])
    pool = xdev.ioctl(DIOCBEGINADDRS, pfioc_pooladdr())
    pr = pfioc_rule(ticket=ticket, pool_ticket=pool.ticket, anchor=b"anc")
    pr.rule.action = PF_PASS
    pr.rule.src.addr.type = PF_ADDR_TABLE
    pr.rule.src.addr.v.tblname = b"shared"
    xdev.ioctl(DIOCADDRULE, pr)
    # the rule made ("anc", "shared"): referenced, not active; the root is what it matches on
    assert flags_of(tc, "shared", "anc") == 0x10                # PFR_TFLAG_REFERENCED
    assert list(tstats_of(tc, "shared", "anc").pfrts_refcnt) == [1, 0]
    trans(xdev, DIOCXCOMMIT, [(PF_RULESET_FILTER, "anc", ticket)])
    rules = xdev.ioctl(DIOCGETRULES, pfioc_rule(anchor=b"anc"))
    got = xdev.ioctl(DIOCGETRULE, pfioc_rule(anchor=b"anc", ticket=rules.ticket, nr=0))
    assert got.rule.src.addr.p.tblcnt == 2                      # the root table's entries
    tc.add_tables(table("shared", "anc", flags=PERSIST))        # the anchor's own table now
    got = xdev.ioctl(DIOCGETRULE, pfioc_rule(anchor=b"anc", ticket=rules.ticket, nr=0))
    assert got.rule.src.addr.p.tblcnt == 0
    # unload the anchor's rules: the reference goes, the persistent tables stay
    ticket, = trans(xdev, DIOCXBEGIN, [(PF_RULESET_FILTER, "anc")])
    trans(xdev, DIOCXCOMMIT, [(PF_RULESET_FILTER, "anc", ticket)])
    assert flags_of(tc, "shared", "anc") == PERSIST | ACTIVE


# --- the header's view: a C client -----------------------------------------------------------------

C_VALIDATION = r"""
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <net/pfvar.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

static int dev;

static int err;

/* the ioctl's errno (0 on success), kept in err so printf's arguments read it after the call */
#define CALL(cmd, io) (err = ioctl(dev, cmd, io) == 0 ? 0 : errno)

int main(int argc, char **argv)
{
	struct pfioc_table io;
	struct pfr_table tbl;
	struct pfr_addr addrs[3];

	dev = open(argv[1], O_RDWR);
	if (dev == -1) { perror("open"); return 2; }

	memset(&tbl, 0, sizeof(tbl));
	strcpy(tbl.pfrt_name, "ctab");
	tbl.pfrt_flags = PFR_TFLAG_PERSIST;
	memset(&io, 0, sizeof(io));
	io.pfrio_buffer = &tbl; io.pfrio_esize = sizeof(tbl); io.pfrio_size = 1;
	CALL(DIOCRADDTABLES, &io);
	printf("add %d %d\n", err, io.pfrio_nadd);
	io.pfrio_size = -1;
	CALL(DIOCRADDTABLES, &io);
	printf("add-1 %d\n", err);
	io.pfrio_size = 1 << 24;
	CALL(DIOCRADDTABLES, &io);
	printf("add24 %d\n", err);
	io.pfrio_size = 1; io.pfrio_buffer = NULL;
	CALL(DIOCRADDTABLES, &io);
	printf("addnull %d\n", err);

	memset(addrs, 0, sizeof(addrs));
	addrs[0].pfra_af = AF_INET; addrs[0].pfra_net = 8;
	inet_pton(AF_INET, "10.0.0.0", &addrs[0].pfra_ip4addr);
	addrs[1].pfra_af = AF_INET6; addrs[1].pfra_net = 128;
	inet_pton(AF_INET6, "2001:db8::1", &addrs[1].pfra_ip6addr);
	addrs[2].pfra_af = AF_INET; addrs[2].pfra_net = 32; addrs[2].pfra_not = 1;
	inet_pton(AF_INET, "10.1.1.1", &addrs[2].pfra_ip4addr);
	memset(&io, 0, sizeof(io));
	io.pfrio_table = tbl; io.pfrio_table.pfrt_flags = 0;
	io.pfrio_buffer = addrs; io.pfrio_esize = sizeof(addrs[0]); io.pfrio_size = 3;
	io.pfrio_flags = PFR_FLAG_FEEDBACK;
	CALL(DIOCRADDADDRS, &io);
	printf("addaddrs %d %d %d%d%d\n", err, io.pfrio_nadd,
	    addrs[0].pfra_fback, addrs[1].pfra_fback, addrs[2].pfra_fback);
	io.pfrio_size = -1;
	CALL(DIOCRADDADDRS, &io);
	printf("addaddrs-1 %d\n", err);
	io.pfrio_size = 1 << 28;
	CALL(DIOCRADDADDRS, &io);
	printf("addaddrs28 %d\n", err);

	memset(addrs, 0, sizeof(addrs));
	addrs[0].pfra_af = AF_INET; addrs[0].pfra_net = 32;
	inet_pton(AF_INET, "10.1.1.1", &addrs[0].pfra_ip4addr);
	addrs[1].pfra_af = AF_INET; addrs[1].pfra_net = 32;
	inet_pton(AF_INET, "10.2.2.2", &addrs[1].pfra_ip4addr);
	io.pfrio_size = 2; io.pfrio_flags = 0;
	CALL(DIOCRTSTADDRS, &io);
	printf("tst %d %d %d%d\n", err, io.pfrio_nmatch,
	    addrs[0].pfra_fback, addrs[1].pfra_fback);

	memset(&io, 0, sizeof(io));
	io.pfrio_table = tbl; io.pfrio_table.pfrt_flags = 0;
	CALL(DIOCRCLRADDRS, &io);
	printf("clraddrs %d %d\n", err, io.pfrio_ndel);
	io.pfrio_buffer = &tbl; io.pfrio_esize = sizeof(tbl); io.pfrio_size = 1;
	memset(&io.pfrio_table, 0, sizeof(io.pfrio_table));
	tbl.pfrt_flags = 0;
	CALL(DIOCRDELTABLES, &io);
	printf("del %d %d\n", err, io.pfrio_ndel);
	return 0;
}
"""


def test_c_client_against_the_header(module_pfd, tmp_path, tc):
    import subprocess
    binary = compile_c(C_VALIDATION, str(tmp_path), "tables")
    out = subprocess.run([binary, module_pfd.path], capture_output=True, text=True, check=True).stdout
    assert out.split("\n") == [
        "add 0 1", f"add-1 {errno.ENOMEM}", f"add24 {errno.ENOMEM}", f"addnull {errno.EFAULT}",
        f"addaddrs 0 3 {PFR_FB_ADDED}{PFR_FB_ADDED}{PFR_FB_ADDED}",
        f"addaddrs-1 {errno.EINVAL}", f"addaddrs28 {errno.EINVAL}",
        f"tst 0 1 {PFR_FB_NOTMATCH}{PFR_FB_MATCH}",
        "clraddrs 0 3", "del 0 1", ""]


# --- the rule and datapath API, in process (no datapath drives it through the device yet) --------

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


def test_rule_and_datapath_api_in_process():
    from pfkern.client import PFR_DIR_IN, PFR_DIR_OUT, PFR_OP_BLOCK, PFR_OP_PASS, PFR_OP_XPASS
    from pfkern.pfd import build_dispatcher
    dispatcher = build_dispatcher()
    tables, tc = dispatcher.core.tables, TableClient(LocalDevice(dispatcher))
    v4 = lambda s: socket.inet_pton(socket.AF_INET, s) + bytes(12)
    v6 = lambda s: socket.inet_pton(socket.AF_INET6, s)
    tc.add_tables(table("t", flags=PERSIST | PFR_TFLAG_COUNTERS))
    tc.add_addrs(table("t"), ["10.0.0.0/8", "!10.1.0.0/16", "2001:db8::/32"])

    main = tables.attach("", "t")                    # a rule of the main ruleset
    anchored = tables.attach("anc", "t")             # a rule of anchor "anc": no table there
    assert flags_of(tc, "t") == PERSIST | PFR_TFLAG_COUNTERS | ACTIVE | 0x10 | PFR_TFLAG_REFDANCHOR
    assert flags_of(tc, "t", "anc") == 0x10          # referenced only
    assert tables.count(main) == tables.count(anchored) == 3      # both see the root's entries
    assert tables.match(main, AF_INET, v4("10.9.9.9"))
    assert not tables.match(anchored, AF_INET, v4("10.1.9.9"))    # negated longest match
    assert not tables.match(main, AF_INET, v4("192.0.2.1"))
    assert tables.match(main, AF_INET6, v6("2001:db8::7"))
    assert tables.match(main, AF_INET6_BSD, v6("2001:db8::7"))
    kt, ke = tables.lookup_entry(anchored, AF_INET, v4("10.1.2.3"))
    assert kt.name == "t" and kt.anchor == "" and ke.neg and ke.net == 16

    tables.update_stats(main, AF_INET, v4("10.9.9.9"), 100, PFR_DIR_IN, PFR_OP_PASS, False)
    tables.update_stats(main, AF_INET, v4("10.9.9.9"), 40, PFR_DIR_OUT, PFR_OP_BLOCK, False)
    # a rule's verdict the table disagrees with (no entry, or a negated one) counts as XPASS
    tables.update_stats(main, AF_INET, v4("10.1.0.1"), 60, PFR_DIR_IN, PFR_OP_PASS, False)
    ts = tstats_of(tc, "t")
    assert (ts.pfrts_match, ts.pfrts_nomatch) == (3, 2)
    assert ts.pfrts_packets[PFR_DIR_IN][PFR_OP_PASS] == 1 and ts.pfrts_bytes[PFR_DIR_IN][PFR_OP_PASS] == 100
    assert ts.pfrts_packets[PFR_DIR_OUT][PFR_OP_BLOCK] == 1
    assert ts.pfrts_bytes[PFR_DIR_IN][PFR_OP_XPASS] == 60
    assert list(ts.pfrts_refcnt) == [1, 1]
    net8 = tc.addrs(table("t"), stats=True)[0]
    assert addr_text(net8.pfras_a) == "10.0.0.0/8" and net8.pfras_a.pfra_fback == PFR_FB_NONE
    assert list(net8.pfras_packets[PFR_DIR_IN]) == [0, 1] and list(net8.pfras_bytes[PFR_DIR_OUT]) == [40, 0]
    tc.clr_tstats(table("t"), flags=PFR_FLAG_ADDRSTOO)
    assert tstats_of(tc, "t").pfrts_match == 0
    assert list(tc.addrs(table("t"), stats=True)[0].pfras_packets[PFR_DIR_IN]) == [0, 0]

    # once the anchor has its own active table, its rule looks there
    tc.add_tables(table("t", "anc", flags=PERSIST))
    assert tables.count(anchored) == 0 and not tables.match(anchored, AF_INET, v4("10.9.9.9"))
    tables.detach(anchored)
    assert flags_of(tc, "t", "anc") == PERSIST | ACTIVE
    tc.del_tables(table("t", "anc"))
    assert flags_of(tc, "t", "anc") is None
    tables.detach(main)
    assert flags_of(tc, "t") == PERSIST | PFR_TFLAG_COUNTERS | ACTIVE
    with pytest.raises(ValueError):
        tables.detach(main)
    # a rule referring to a table nobody defined: -1 entries, no match, until one is added
    ghost = tables.attach("", "ghost")
    assert tables.count(ghost) == -1 and not tables.match(ghost, AF_INET, v4("10.0.0.1"))
    tc.add_tables(table("ghost"))
    tc.add_addrs(table("ghost"), ["10.0.0.1"])
    assert tables.count(ghost) == 1 and tables.match(ghost, AF_INET, v4("10.0.0.1"))
    tables.detach(ghost)              # activated while referenced, without PERSIST: gone with it
    assert flags_of(tc, "ghost") is None
    assert tables.nentries == 3
    tc.clr_tables(flags=ALLRSETS)
    assert tables.nentries == 0 and tc.tables(flags=ALLRSETS) == []


# --- embedded buffers declared to the CUSE front ------------------------------------------------

@pytest.mark.parametrize("cmd,esize,flags,size2,expected", [
    (DIOCRADDTABLES, ESIZE_TABLE, 0, 0, 1),
    (DIOCRDELTABLES, ESIZE_TABLE, 0, 0, 1),
    (DIOCRGETTABLES, ESIZE_TABLE, 0, 0, 2),
    (DIOCRGETTSTATS, ESIZE_TSTATS, 0, 0, 2),
    (DIOCRCLRTSTATS, ESIZE_TABLE, 0, 0, 1),
    (DIOCRSETTFLAGS, ESIZE_TABLE, 0, 0, 1),
    (DIOCRADDADDRS, ESIZE_ADDR, 0, 0, 1),
    (DIOCRADDADDRS, ESIZE_ADDR, FEEDBACK, 0, 3),
    (DIOCRDELADDRS, ESIZE_ADDR, FEEDBACK, 0, 3),
    (DIOCRCLRASTATS, ESIZE_ADDR, 0, 0, 1),
    (DIOCRSETADDRS, ESIZE_ADDR, FEEDBACK, 9, 3),               # max(size, size2) elements
    (DIOCRGETADDRS, ESIZE_ADDR, 0, 0, 2),
    (DIOCRGETASTATS, ESIZE_ASTATS, 0, 0, 2),
    (DIOCRTSTADDRS, ESIZE_ADDR, 0, 0, 3),
    (DIOCRINADEFINE, ESIZE_ADDR, PFR_FLAG_ADDRSTOO, 0, 1),
], ids=lambda v: name_of(v) if v > 0xffff else str(v))
def test_regions_of_embedded_buffers(cmd, esize, flags, size2, expected):
    from pfkern.pf_ioctl import Dispatcher
    d = Dispatcher(None)
    io = pfioc_table(pfrio_buffer=0x10000, pfrio_esize=esize, pfrio_size=5, pfrio_size2=size2,
                     pfrio_flags=flags)
    assert d.regions(cmd, bytes(io)) == [(0x10000, max(5, size2) * esize, expected)]
    for bad in (dict(pfrio_esize=esize + 1), dict(pfrio_size=-1), dict(pfrio_size=MAXCOUNT + 1)):
        io = pfioc_table(**{**dict(pfrio_buffer=0x10000, pfrio_esize=esize, pfrio_size=5), **bad})
        assert d.regions(cmd, bytes(io)) == []                 # the handler reports the error
    assert d.regions(DIOCRCLRTABLES, bytes(pfioc_table())) == []
    assert d.regions(DIOCRCLRADDRS, bytes(pfioc_table())) == []
