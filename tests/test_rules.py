"""Rulesets, anchors, rules, pool addresses and transactions through /dev/pf (FreeBSD 12.1
semantics and errnos, pf-abi.md §1, §2.2-2.7, §2.14, §5), against a live pfd with the ctypes
client, including the ioctl sequence of `pfctl -f` and of pfctl's show commands."""
import ctypes
import errno
import os
import random
import socket
import threading

import pytest

from pfkern.client import (AF_INET, AF_INET6, DIOCADDADDR, DIOCADDRULE, DIOCBEGINADDRS,
                           DIOCCHANGEADDR, DIOCCHANGERULE, DIOCCLRRULECTRS, DIOCGETADDR,
                           DIOCGETADDRS, DIOCGETRULE, DIOCGETRULES, DIOCGETRULESET,
                           DIOCGETRULESETS, DIOCRGETTSTATS, DIOCXBEGIN, DIOCXCOMMIT, DIOCXROLLBACK,
                           PF_ADDR_ADDRMASK, PF_ADDR_DYNIFTL, PF_ADDR_NOROUTE, PF_ADDR_RANGE,
                           PF_ADDR_TABLE, PF_ADDR_URPFFAILED, PF_BINAT, PF_CHANGE_ADD_AFTER,
                           PF_CHANGE_ADD_BEFORE, PF_CHANGE_ADD_HEAD, PF_CHANGE_ADD_TAIL,
                           PF_CHANGE_GET_TICKET, PF_CHANGE_REMOVE, PF_DROP, PF_IN, PF_NAT,
                           PF_NORDR, PF_NOSCRUB, PF_OUT, PF_PASS, PF_RDR, PF_ROUTETO,
                           PF_RULESET_ALTQ, PF_RULESET_BINAT, PF_RULESET_FILTER, PF_RULESET_NAT,
                           PF_RULESET_RDR, PF_RULESET_SCRUB, PF_RULESET_TABLE, PF_SCRUB,
                           PF_SYNPROXY_DROP, PFR_TFLAG_ACTIVE, PFR_TFLAG_PERSIST, PFSTATE_SETPRIO, PfDevice,
                           pf_rule, pfioc_pooladdr, pfioc_rule, pfioc_ruleset, pfioc_table,
                           pfioc_trans, pfr_tstats)
from rules_util import (IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, TRANS_ESIZE,
                        PfctlAnchor, PfctlLoad, add_addr, add_rule, anchors, begin_addrs,
                        cbytes, diff_loaded, errno_of, expected_chksum, expected_skips, flush,
                        get_rules, load, make_rule, pool_addr, read_ruleset, ruleset_elements,
                        show_nat, show_rules, ticket_of, trans, trans_array, xbegin, xcommit,
                        xrollback)

ALL_ACTIONS = (PF_SCRUB, PF_PASS, PF_NAT, PF_BINAT, PF_RDR)


@pytest.fixture
def dev(module_pfd):
    with PfDevice(module_pfd.path, "rw") as d:
        flush_all(d)
        yield d
        flush_all(d)


@pytest.fixture
def rodev(module_pfd):
    with PfDevice(module_pfd.path, "r") as d:
        yield d


def flush_all(dev):
    """Empty the main ruleset, then every anchor left (they disappear once empty)."""
    flush(dev)
    for path in sorted(anchors(dev, "", True), key=lambda p: -p.count("/")):
        if path in anchors(dev, "", True):
            flush(dev, path)


def snapshot(dev):
    """Everything the active rulesets show: anchors, and every rule with its pool, as bytes."""
    out = {"anchors": anchors(dev, "", True)}
    for path in [""] + out["anchors"]:
        for action in ALL_ACTIONS:
            out[(path, action)] = [(pr.to_bytes(), [p.to_bytes() for p in pool])
                                   for pr, pool in read_ruleset(dev, path, action)]
    return out


def filter_ticket(elements, anchor=""):
    return ticket_of(elements, PF_RULESET_FILTER, anchor)


# --- transactions ----------------------------------------------------------------------------

def test_xbegin_writes_tickets_and_commit_activates(dev):
    first = xbegin(dev, ruleset_elements())
    assert all(t > 0 for _, _, t in first)
    second = xbegin(dev, ruleset_elements())
    assert [t for _, _, t in second] == [t + 1 for _, _, t in first]
    r = make_rule(PF_PASS, proto=IPPROTO_TCP, dport=22)
    add_rule(dev, r, filter_ticket(second))
    assert get_rules(dev, "", PF_PASS)[0] == 0            # not active before the commit
    xcommit(dev, second)
    n, ticket = get_rules(dev, "", PF_PASS)
    assert (n, ticket) == (1, filter_ticket(second))


@pytest.mark.parametrize("cmd", [DIOCXBEGIN, DIOCXCOMMIT, DIOCXROLLBACK])
@pytest.mark.parametrize("esize", [0, TRANS_ESIZE - 1, TRANS_ESIZE + 1, 4104, -1])
def test_trans_wrong_esize_is_enodev(dev, cmd, esize):
    before = snapshot(dev)
    assert errno_of(trans, dev, cmd, [(PF_RULESET_FILTER, "")], esize=esize) == errno.ENODEV
    assert snapshot(dev) == before


@pytest.mark.parametrize("cmd", [DIOCXBEGIN, DIOCXCOMMIT, DIOCXROLLBACK])
@pytest.mark.parametrize("size", [-1, 65536, 1 << 24, 1 << 28, 1 << 30, -(1 << 31), (1 << 31) - 1])
def test_trans_size_out_of_range_is_einval(dev, cmd, size):
    before = snapshot(dev)
    assert errno_of(trans, dev, cmd, [(PF_RULESET_FILTER, "")], size=size) == errno.EINVAL
    assert snapshot(dev) == before


@pytest.mark.parametrize("cmd", [DIOCXBEGIN, DIOCXCOMMIT, DIOCXROLLBACK])
@pytest.mark.parametrize("array", [0, 8, 0xfffffffffff0])
def test_trans_bad_array_pointer_is_efault(dev, cmd, array):
    before = snapshot(dev)
    assert errno_of(trans, dev, cmd, [(PF_RULESET_FILTER, "")], size=2, array=array) == errno.EFAULT
    assert snapshot(dev) == before


def test_xbegin_whose_tickets_cannot_be_written_back_begins_nothing(dev):
    """EFAULT on the copy-out of the tickets: what the call began is rolled back."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    page = libc.mmap(None, 4096, 3, 0x22, -1, 0)           # RW, MAP_PRIVATE|MAP_ANONYMOUS
    assert page not in (None, ctypes.c_void_p(-1).value)
    try:
        before = snapshot(dev)
        last = xbegin(dev, [(PF_RULESET_SCRUB, "ro/anchor")])[0]
        xrollback(dev, [last])
        ctypes.memmove(page, bytes(trans_array([(PF_RULESET_SCRUB, "ro/anchor")])), TRANS_ESIZE)
        assert libc.mprotect(ctypes.c_void_p(page), 4096, 1) == 0    # PROT_READ
        io = pfioc_trans(size=1, esize=TRANS_ESIZE, array=page)
        assert errno_of(dev.ioctl, DIOCXBEGIN, io) == errno.EFAULT
        assert errno_of(xcommit, dev, [(PF_RULESET_SCRUB, "ro/anchor", last[2] + 1)]) == errno.EBUSY
        assert snapshot(dev) == before
    finally:
        libc.munmap(ctypes.c_void_p(page), 4096)


def test_trans_regions_for_the_cuse_front():
    """The embedded array the CUSE front prefetches: in and out for DIOCXBEGIN, in for the
    others; nothing for a struct the handler will refuse."""
    from pfkern import pf_ioctl_rules as m
    io = pfioc_trans(size=3, esize=TRANS_ESIZE, array=0x7f0000001000)
    assert m.regions_xbegin(io.to_bytes()) == [(0x7f0000001000, 3 * TRANS_ESIZE, 3)]
    assert m.regions_xend(io.to_bytes()) == [(0x7f0000001000, 3 * TRANS_ESIZE, 1)]
    for bad in (dict(size=0), dict(size=-1), dict(size=65536), dict(esize=4104)):
        arg = pfioc_trans(**{"size": 3, "esize": TRANS_ESIZE, "array": 0x1000, **bad})
        assert m.regions_xbegin(arg.to_bytes()) == m.regions_xend(arg.to_bytes()) == []
    assert m.regions_xbegin(b"\0" * 8) == []


@pytest.mark.parametrize("cmd", [DIOCXBEGIN, DIOCXCOMMIT, DIOCXROLLBACK])
def test_trans_size_zero_does_nothing(dev, cmd):
    before = snapshot(dev)
    dev.ioctl(cmd, pfioc_trans(size=0, esize=TRANS_ESIZE, array=0))
    assert snapshot(dev) == before


@pytest.mark.parametrize("cmd", [DIOCXBEGIN, DIOCXCOMMIT, DIOCXROLLBACK])
@pytest.mark.parametrize("rs_num", [PF_RULESET_ALTQ, 7, -1, 1000])
def test_trans_bad_kind_is_einval_and_does_nothing(dev, cmd, rs_num):
    """ALTQ (5) is EINVAL: this pf has no ALTQ. A bad element fails the whole call; the good
    element before it is neither begun again, committed nor rolled back."""
    before = snapshot(dev)
    good = xbegin(dev, [(PF_RULESET_FILTER, "")])[0]
    assert errno_of(trans, dev, cmd, [good, (rs_num, "")]) == errno.EINVAL
    xcommit(dev, [good])                                  # still open, same ticket
    assert get_rules(dev, "", PF_PASS)[1] == good[2]
    assert snapshot(dev) == {**before, ("", PF_PASS): []}


def test_commit_with_stale_ticket_is_ebusy_and_all_or_nothing(dev):
    before = snapshot(dev)
    elements = xbegin(dev, ruleset_elements("tx"))
    add_rule(dev, make_rule(PF_PASS), filter_ticket(elements, "tx"), "tx")
    stale = xbegin(dev, [(PF_RULESET_NAT, "tx")])       # the NAT element of `elements` goes stale
    assert errno_of(xcommit, dev, elements) == errno.EBUSY
    assert get_rules(dev, "tx", PF_PASS)[0] == 0          # the filter element was not committed
    assert {k: v for k, v in snapshot(dev).items() if k != "anchors" and k[0] != "tx"} == \
        {k: v for k, v in before.items() if k != "anchors"}
    fresh = [e if e[0] != PF_RULESET_NAT else stale[0] for e in elements]
    xcommit(dev, fresh)
    assert get_rules(dev, "tx", PF_PASS)[0] == 1


def test_an_element_listed_twice_commits_once(dev):
    """A ruleset or table element given twice in one DIOCXCOMMIT is committed once; the
    transaction does not fail halfway with part of it applied."""
    elements = xbegin(dev, [(PF_RULESET_FILTER, ""), (PF_RULESET_TABLE, "")])
    add_rule(dev, make_rule(PF_PASS), filter_ticket(elements), "")
    xcommit(dev, elements + elements)
    assert get_rules(dev, "", PF_PASS)[0] == 1
    assert errno_of(xcommit, dev, elements) == errno.EBUSY       # closed by that one commit
    flush(dev)


def test_commit_of_what_was_never_begun_is_ebusy(dev):
    assert errno_of(xcommit, dev, [(PF_RULESET_FILTER, "", 0xdead)]) == errno.EBUSY
    assert errno_of(xcommit, dev, [(PF_RULESET_FILTER, "no/such/anchor", 1)]) == errno.EBUSY
    elements = xbegin(dev, [(PF_RULESET_FILTER, "")])
    xcommit(dev, elements)
    assert errno_of(xcommit, dev, elements) == errno.EBUSY   # closed by the first commit


def test_rollback_discards_and_stale_rollback_is_silent(dev):
    before = snapshot(dev)
    elements = xbegin(dev, ruleset_elements("rb/deep"))
    add_rule(dev, make_rule(PF_PASS), filter_ticket(elements, "rb/deep"), "rb/deep")
    assert "rb/deep" in anchors(dev, "", True)
    xrollback(dev, elements)
    xrollback(dev, elements)                              # closed now: silently nothing
    xrollback(dev, [(PF_RULESET_FILTER, "never/was", 7)])
    assert errno_of(xcommit, dev, elements) == errno.EBUSY
    assert snapshot(dev) == before                        # the anchors it created are gone


@pytest.mark.parametrize("anchor", [b"a" * 1024, b"a" * 64, b"a/" * 512, b"x//y", b"x/",
                                    b"/" + b"b" * 70])
def test_bad_anchor_paths_in_transactions_are_einval(dev, anchor):
    before = snapshot(dev)
    elements = [(PF_RULESET_FILTER, ""), (PF_RULESET_FILTER, anchor)]
    assert errno_of(xbegin, dev, elements) == errno.EINVAL
    assert snapshot(dev) == before


def test_closing_an_fd_rolls_back_its_transaction(module_pfd, dev):
    before = snapshot(dev)
    with PfDevice(module_pfd.path, "rw") as other:
        elements = xbegin(other, ruleset_elements("closed/fd"))
        add_rule(other, make_rule(PF_PASS), filter_ticket(elements, "closed/fd"), "closed/fd")
    assert errno_of(xcommit, dev, elements) == errno.EBUSY     # rolled back at close
    assert snapshot(dev) == before
    fresh = xbegin(dev, ruleset_elements("closed/fd"))
    add_rule(dev, make_rule(PF_DROP), filter_ticket(fresh, "closed/fd"), "closed/fd")
    xcommit(dev, fresh)
    assert get_rules(dev, "closed/fd", PF_PASS)[0] == 1


def test_closing_an_fd_after_commit_keeps_the_rules(module_pfd, dev):
    with PfDevice(module_pfd.path, "rw") as other:
        load(other, [make_rule(PF_PASS)], "kept")
    assert get_rules(dev, "kept", PF_PASS)[0] == 1


def test_two_clients_racing_one_commit_wins(module_pfd, dev):
    """Both begin the same ruleset, then commit at the same moment: only the later begin's
    tickets are current, so exactly one commit succeeds and the other gets EBUSY."""
    devs = [PfDevice(module_pfd.path, "rw") for _ in range(2)]
    try:
        begun = []
        for i, d in enumerate(devs):
            elements = xbegin(d, ruleset_elements("race"))
            begun.append(elements)
        for i, d in enumerate(devs):
            try:
                add_rule(d, make_rule(PF_PASS, label=f"client{i}"),
                         filter_ticket(begun[i], "race"), "race")
            except OSError as exc:
                assert exc.errno == errno.EBUSY and i == 0
        results = [None, None]
        barrier = threading.Barrier(2)

        def commit(i):
            barrier.wait()
            try:
                xcommit(devs[i], begun[i])
                results[i] = 0
            except OSError as exc:
                results[i] = exc.errno

        threads = [threading.Thread(target=commit, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [errno.EBUSY, 0]
        rules = read_ruleset(dev, "race", PF_PASS)
        assert [pr.rule.label for pr, _ in rules] == [b"client1"]
    finally:
        for d in devs:
            d.close()


def test_racing_loaders_never_mix_rulesets(module_pfd, dev):
    """Clients loading complete rulesets in a loop: every commit is all-or-nothing, so the
    active ruleset always holds exactly one client's rules."""
    rounds, per_client = 25, 4
    wins = [0, 0, 0]

    def client(i):
        with PfDevice(module_pfd.path, "rw") as d:
            for _ in range(rounds):
                try:
                    load(d, [make_rule(PF_PASS, label=f"c{i}") for _ in range(per_client)], "mix")
                    wins[i] += 1
                except OSError as exc:
                    assert exc.errno == errno.EBUSY

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wins) >= 1
    labels = {pr.rule.label for pr, _ in read_ruleset(dev, "mix", PF_PASS)}
    assert len(labels) == 1 and len(read_ruleset(dev, "mix", PF_PASS)) == per_client


# --- the pool buffer -------------------------------------------------------------------------

def test_beginaddrs_tickets_increase(dev):
    a = begin_addrs(dev)
    assert begin_addrs(dev) == a + 1


@pytest.mark.parametrize("spec", ["192.0.2.1", "2001:db8::1", "(eth0)", "<pooltable>"])
def test_addaddr_accepts_addrmask_dynamic_and_table(dev, spec):
    add_addr(dev, begin_addrs(dev), pool_addr(spec))


@pytest.mark.parametrize("kind", [PF_ADDR_NOROUTE, PF_ADDR_URPFFAILED, PF_ADDR_RANGE, 6, 255])
def test_addaddr_other_types_are_einval(dev, kind):
    pa = pool_addr("192.0.2.1")
    pa.addr.type = kind
    assert errno_of(add_addr, dev, begin_addrs(dev), pa) == errno.EINVAL


def test_addaddr_stale_ticket_is_ebusy(dev):
    ticket = begin_addrs(dev)
    begin_addrs(dev)
    assert errno_of(add_addr, dev, ticket, pool_addr("192.0.2.1")) == errno.EBUSY


# --- DIOCADDRULE, DIOCGETRULES, DIOCGETRULE --------------------------------------------------

def test_addrule_and_read_back_field_by_field(dev):
    r = make_rule(PF_PASS, proto=IPPROTO_TCP, src="10.1.0.0/16", dst="192.0.2.0/24", dport=443,
                  ifname="eth0", direction=PF_IN, quick=1, label="web", keep_state=1,
                  max_states=100, flags=0x02, flagset=0x12, tos=0x10, prob=12345)
    r.timeout[2] = 3600
    r.evaluations, r.packets[0], r.bytes[1], r.u_states_tot = 5, 6, 7, 8    # zeroed by pf
    r.logif = 3                                          # no log: logif becomes 0
    r6 = make_rule(PF_DROP, af=AF_INET6, src="2001:db8::/32", label="v6", rule_flag=0x8)
    elements = xbegin(dev, ruleset_elements())
    pr = add_rule(dev, r, filter_ticket(elements))
    add_rule(dev, r6, filter_ticket(elements))
    xcommit(dev, elements)
    (got, pool), (got6, _) = read_ruleset(dev, "", PF_PASS)
    assert diff_loaded(r, got.rule) == ["logif"] and got.rule.logif == 0
    assert diff_loaded(r6, got6.rule) == []
    assert (got.rule.nr, got6.rule.nr) == (0, 1)
    assert got.rule.evaluations == got.rule.packets[0] == got.rule.bytes[1] == 0
    assert got.rule.u_states_tot == got.rule.u_states_cur == 0
    assert got.rule.cpid == os.getpid() and got.rule.cuid == os.getuid()
    assert got.rule.kif and got6.rule.kif is None           # kernel pointers as tokens
    assert got.anchor_call == b"" and pool == []


def test_addrule_stale_tickets_are_ebusy(dev):
    elements = xbegin(dev, ruleset_elements())
    r = make_rule(PF_PASS)
    assert errno_of(add_rule, dev, r, filter_ticket(elements) + 1) == errno.EBUSY
    stale_pool = begin_addrs(dev) + 5
    ticket = filter_ticket(elements)
    assert errno_of(add_rule, dev, r, ticket, pool_ticket=stale_pool) == errno.EBUSY
    xcommit(dev, elements)
    assert get_rules(dev, "", PF_PASS)[0] == 0


def _routed(**kw):
    return make_rule(PF_PASS, rt=PF_ROUTETO, **kw)


@pytest.mark.parametrize("name, rule, pool, anchor, call", [
    ("unknown anchor", make_rule(PF_PASS), [], "no/such", ""),
    ("unterminated anchor", make_rule(PF_PASS), [], b"x" * 1024, ""),
    ("synproxy action", make_rule(PF_SYNPROXY_DROP), [], "", ""),
    ("action 12", make_rule(12), [], "", ""),
    ("action 200", make_rule(200), [], "", ""),
    ("return-icmp type 41", make_rule(PF_DROP, return_icmp=41 << 8), [], "", ""),
    ("route-to without direction", _routed(), [pool_addr("192.0.2.1")], "", ""),
    ("route-to without pool", _routed(direction=PF_OUT), [], "", ""),
    ("logif 16", make_rule(PF_PASS, log=1, logif=16), [], "", ""),
    ("set-prio 8", make_rule(PF_PASS, scrub_flags=PFSTATE_SETPRIO,
                             set_prio=(ctypes.c_uint8 * 2)(8, 0)), [], "", ""),
    ("nat without pool", make_rule(PF_NAT), [], "", ""),
    ("rdr without pool", make_rule(PF_RDR), [], "", ""),
    ("binat without pool", make_rule(PF_BINAT), [], "", ""),
    (".. beyond root", make_rule(PF_PASS), [], "", "../x"),
    ("call of the main ruleset", make_rule(PF_PASS), [], "", "/"),
    ("unterminated call", make_rule(PF_PASS), [], "", b"c" * 1024),
    ("call name too long", make_rule(PF_PASS), [], "", "n" * 64),
    ("call with empty component", make_rule(PF_PASS), [], "", "a//b"),
])
def test_addrule_einval(dev, name, rule, pool, anchor, call):
    before = snapshot(dev)
    elements = xbegin(dev, ruleset_elements())
    ticket = filter_ticket(elements)
    if rule.action in (PF_NAT, PF_RDR, PF_BINAT):
        ticket = ticket_of(elements, {PF_NAT: PF_RULESET_NAT, PF_RDR: PF_RULESET_RDR,
                                      PF_BINAT: PF_RULESET_BINAT}[rule.action])
    assert errno_of(add_rule, dev, rule, ticket, anchor, pool, call) == errno.EINVAL
    xcommit(dev, elements)
    assert snapshot(dev) == before


def test_addrule_set_prio_within_range_and_rtableid(dev):
    elements = xbegin(dev, ruleset_elements())
    ok = make_rule(PF_PASS, scrub_flags=PFSTATE_SETPRIO, set_prio=(ctypes.c_uint8 * 2)(7, 3))
    add_rule(dev, ok, filter_ticket(elements))
    add_rule(dev, make_rule(PF_PASS, rtableid=0), filter_ticket(elements))
    fib1 = make_rule(PF_PASS, rtableid=1)                   # only fib 0 (FreeBSD's net.fibs=1)
    assert errno_of(add_rule, dev, fib1, filter_ticket(elements)) == errno.EBUSY
    xcommit(dev, elements)
    assert get_rules(dev, "", PF_PASS)[0] == 2


def test_translation_anchors_need_no_pool(dev):
    elements = xbegin(dev, ruleset_elements())
    for action, kind in ((PF_NAT, PF_RULESET_NAT), (PF_RDR, PF_RULESET_RDR),
                         (PF_BINAT, PF_RULESET_BINAT)):
        add_rule(dev, make_rule(action), ticket_of(elements, kind), anchor_call="proxy/*")
    add_rule(dev, make_rule(PF_NORDR), ticket_of(elements, PF_RULESET_RDR))     # "no rdr"
    xcommit(dev, elements)
    calls = [pr.anchor_call for _, pr, _ in show_nat(dev)]
    assert calls == [b"proxy/*", b"proxy/*", b"", b"proxy/*"]     # nat, rdr x2, binat


def test_tags_get_shared_ids(dev):
    elements = xbegin(dev, ruleset_elements())
    add_rule(dev, make_rule(PF_PASS, tagname=b"blue"), filter_ticket(elements))
    both = make_rule(PF_PASS, match_tagname=b"blue", tagname=b"red")
    add_rule(dev, both, filter_ticket(elements))
    xcommit(dev, elements)
    (a, _), (b, _) = read_ruleset(dev, "", PF_PASS)
    assert a.rule.tag and a.rule.tag == b.rule.match_tag and b.rule.tag not in (0, a.rule.tag)


def test_anchor_call_forms_read_back_as_freebsd_rebuilds_them(dev):
    calls = ["x", "/abs/y", "../z", "w/*", "*", "/q/*", "deeper/still/x"]
    elements = xbegin(dev, ruleset_elements("ac"))
    for call in calls:
        add_rule(dev, make_rule(PF_PASS), filter_ticket(elements, "ac"), "ac", anchor_call=call)
    xcommit(dev, elements)
    got = [pr.anchor_call.decode() for pr, _ in read_ruleset(dev, "ac", PF_PASS)]
    assert got == calls
    assert set(anchors(dev, "", True)) == {"ac", "ac/x", "abs", "abs/y", "z", "ac/w", "q",
                                           "ac/deeper", "ac/deeper/still", "ac/deeper/still/x"}
    flush(dev, "ac")
    assert anchors(dev, "", True) == []                  # unreferenced anchors go away


def test_wildcard_alone_in_main_names_an_anchor_called_star(dev):
    elements = xbegin(dev, ruleset_elements())
    add_rule(dev, make_rule(PF_PASS), filter_ticket(elements), anchor_call="*")
    xcommit(dev, elements)
    assert [pr.anchor_call for pr, _ in read_ruleset(dev, "", PF_PASS)] == [b"*"]
    assert anchors(dev) == ["*"]


def test_getrules_einval(rodev, dev):
    for d in (rodev, dev):
        assert errno_of(get_rules, d, "no/such", PF_PASS) == errno.EINVAL
        for action in (PF_SYNPROXY_DROP, 11, 99):
            assert errno_of(get_rules, d, "", action) == errno.EINVAL


def test_getrule_errors(dev, rodev):
    load(dev, [make_rule(PF_PASS)])
    n, ticket = get_rules(rodev, "", PF_PASS)

    def getrule(anchor="", action=PF_PASS, ticket=ticket, nr=0, clear=0, d=rodev):
        pr = pfioc_rule(ticket=ticket, nr=nr, action=clear)
        pr.anchor = cbytes(anchor)
        pr.rule.action = action
        return d.ioctl(DIOCGETRULE, pr)

    getrule()
    assert errno_of(getrule, ticket=ticket + 1) == errno.EBUSY
    assert errno_of(getrule, nr=n) == errno.EBUSY
    assert errno_of(getrule, nr=0xffffffff) == errno.EBUSY
    assert errno_of(getrule, anchor="no/such") == errno.EINVAL
    assert errno_of(getrule, action=PF_SYNPROXY_DROP) == errno.EINVAL
    assert errno_of(getrule, clear=1) == errno.EACCES          # clearing needs a writable fd
    assert getrule(clear=1, d=dev).rule.evaluations == 0


def test_skip_steps_match_pf_calc_skip_steps(dev):
    spec = [dict(ifname="eth0", direction=PF_IN, proto=IPPROTO_TCP, dst="10.0.0.0/8", dport=22),
            dict(ifname="eth0", direction=PF_IN, proto=IPPROTO_TCP, dst="10.0.0.0/8", dport=22),
            dict(ifname="eth0", direction=PF_IN, proto=IPPROTO_TCP, dst="10.0.0.0/8", dport=80),
            dict(ifname="eth0", direction=PF_IN, proto=IPPROTO_UDP, dst="10.0.0.0/8", dport=53),
            dict(ifname="eth0", direction=PF_OUT, proto=IPPROTO_UDP, src="(eth0)"),
            dict(ifname="eth1", direction=PF_OUT, proto=IPPROTO_UDP, src="(eth0)"),
            dict(ifname="eth1", direction=PF_OUT, af=AF_INET6, src="2001:db8::/32"),
            dict(ifname="eth1", direction=PF_OUT, af=AF_INET6, src="2001:db8::/32", ifnot=1),
            dict(), dict(), dict(proto=IPPROTO_ICMP)]
    rules = [make_rule(PF_PASS, **kw) for kw in spec]
    load(dev, rules)
    got = [pr.rule for pr, _ in read_ruleset(dev, "", PF_PASS)]
    assert [[s.nr for s in r.skip] for r in got] == expected_skips(got)


def test_dynamic_addresses_report_a_count(dev):
    """dyncnt = the addresses `(lo)` stands for: lo has 127.0.0.1 and ::1 on any Linux host."""
    load(dev, [make_rule(PF_PASS, src="(lo)"), make_rule(PF_PASS, af=AF_INET6, src="(lo)"),
               make_rule(PF_PASS, af=0, src="(lo)"), make_rule(PF_PASS, src="(nosuchif0)")])
    rules = [pr.rule for pr, _ in read_ruleset(dev, "", PF_PASS)]
    assert all(r.src.addr.type == PF_ADDR_DYNIFTL for r in rules)
    assert rules[0].src.addr.v.ifname == b"lo"
    assert [r.src.addr.p.dyncnt for r in rules] == [1, 1, 2, 0]


# --- pools: DIOCGETADDRS, DIOCGETADDR, DIOCCHANGEADDR ---------------------------------------

def _nat_with_pool(dev, anchor=""):
    pool = [pool_addr("192.0.2.1"), pool_addr("192.0.2.2", ifname="eth0"), pool_addr("(eth1)")]
    elements = xbegin(dev, ruleset_elements(anchor))
    nat_ticket = ticket_of(elements, PF_RULESET_NAT)
    add_rule(dev, make_rule(PF_NAT, src="10.0.0.0/8"), nat_ticket, anchor, pool)
    add_rule(dev, make_rule(PF_NAT, src="10.9.0.0/16"), nat_ticket, anchor,
             [pool_addr("198.51.100.7")])
    xcommit(dev, elements)
    return pool


def test_getaddrs_getaddr_read_the_pool_back(dev, rodev):
    pool = _nat_with_pool(dev)
    (first, got), (second, got2) = read_ruleset(rodev, "", PF_NAT)
    assert [diff_loaded(a, b) for a, b in zip(pool, got)] == [[], [], []]
    assert len(got2) == 1 and bytes(got2[0].addr.v)[:4] == bytes([198, 51, 100, 7])
    assert got[1].kif and not got[0].kif                      # kif token only with ifname
    assert got[2].addr.p.dyncnt >= 0


def test_getaddrs_getaddr_errors(dev, rodev):
    _nat_with_pool(dev)
    n, ticket = get_rules(rodev, "", PF_NAT)

    def call(cmd, **kw):
        anchor = kw.pop("anchor", "")
        pp = pfioc_pooladdr(**{"r_action": PF_NAT, "ticket": ticket, **kw})
        pp.anchor = cbytes(anchor)
        return rodev.ioctl(cmd, pp)

    assert call(DIOCGETADDRS, r_num=0).nr == 3
    assert call(DIOCGETADDRS, r_num=0, ticket=ticket + 9).nr == 3      # ticket not checked
    assert errno_of(call, DIOCGETADDRS, r_num=2) == errno.EBUSY
    assert errno_of(call, DIOCGETADDRS, anchor="no/such") == errno.EBUSY
    assert errno_of(call, DIOCGETADDRS, r_action=PF_SYNPROXY_DROP) == errno.EBUSY
    assert errno_of(call, DIOCGETADDR, r_num=0, nr=3) == errno.EBUSY
    assert errno_of(call, DIOCGETADDR, r_num=0, nr=0, ticket=ticket + 1) == errno.EBUSY
    assert errno_of(call, DIOCGETADDR, r_num=5) == errno.EBUSY
    assert errno_of(call, DIOCGETADDR, anchor="no/such") == errno.EBUSY


def _changeaddr(dev, action, spec="203.0.113.1", anchor="", **kw):
    if "ticket" not in kw:
        kw["ticket"] = get_rules(dev, anchor, PF_NAT)[1]
    pp = pfioc_pooladdr(**{"action": action, "r_action": PF_NAT, "af": AF_INET, **kw})
    pp.anchor = cbytes(anchor)
    pp.addr = pool_addr(spec)
    return dev.ioctl(DIOCCHANGEADDR, pp)


def _pool_of(dev, r_num=0):
    (pr, pool) = read_ruleset(dev, "", PF_NAT)[r_num]
    return [bytes(p.addr.v)[:4] for p in pool], pr.rule


def test_changeaddr_edits_the_pool(dev):
    _nat_with_pool(dev)
    ip = lambda s: socket.inet_aton(s)
    _changeaddr(dev, PF_CHANGE_ADD_HEAD, "203.0.113.1")
    _changeaddr(dev, PF_CHANGE_ADD_TAIL, "203.0.113.9")
    _changeaddr(dev, PF_CHANGE_ADD_BEFORE, "203.0.113.2", nr=1)
    _changeaddr(dev, PF_CHANGE_ADD_AFTER, "203.0.113.3", nr=1)
    _changeaddr(dev, PF_CHANGE_REMOVE, nr=0)
    addrs, rule = _pool_of(dev)
    assert addrs[:3] == [ip("203.0.113.2"), ip("203.0.113.3"), ip("192.0.2.1")]
    assert addrs[-1] == ip("203.0.113.9") and len(addrs) == 6
    assert bytes(rule.rpool.counter.addr8)[:4] == ip("203.0.113.2")   # restarts at the first
    _changeaddr(dev, PF_CHANGE_ADD_TAIL, "203.0.113.77", r_last=1)       # r_last: last rule
    assert _pool_of(dev, 1)[0][-1] == ip("203.0.113.77")


def test_changeaddr_errors(dev):
    _nat_with_pool(dev)
    before = snapshot(dev)
    for action in (0, PF_CHANGE_GET_TICKET, 99):
        assert errno_of(_changeaddr, dev, action) == errno.EINVAL
    pa_kind = pool_addr("203.0.113.1")
    for kind in (PF_ADDR_NOROUTE, PF_ADDR_RANGE):
        n, ticket = get_rules(dev, "", PF_NAT)
        pp = pfioc_pooladdr(action=PF_CHANGE_ADD_HEAD, ticket=ticket, r_action=PF_NAT)
        pp.addr = pa_kind
        pp.addr.addr.type = kind
        assert errno_of(dev.ioctl, DIOCCHANGEADDR, pp) == errno.EINVAL
    assert errno_of(_changeaddr, dev, PF_CHANGE_ADD_HEAD, anchor="no/such", ticket=0) == errno.EBUSY
    assert errno_of(_changeaddr, dev, PF_CHANGE_ADD_HEAD, r_num=7) == errno.EBUSY
    assert errno_of(_changeaddr, dev, PF_CHANGE_ADD_HEAD, r_action=PF_RDR) == errno.EBUSY
    n, ticket = get_rules(dev, "", PF_NAT)
    assert errno_of(_changeaddr, dev, PF_CHANGE_ADD_HEAD, ticket=ticket + 1) == errno.EBUSY
    for action in (PF_CHANGE_ADD_BEFORE, PF_CHANGE_ADD_AFTER, PF_CHANGE_REMOVE):
        assert errno_of(_changeaddr, dev, action, nr=3) == errno.EINVAL
    assert snapshot(dev) == before


# --- DIOCCHANGERULE --------------------------------------------------------------------------

def _changerule(dev, action, rule=None, anchor="", ticket=None, pool=(), call="", **kw):
    rule = rule if rule is not None else make_rule(PF_PASS)
    pticket = begin_addrs(dev)
    for pa in pool:
        add_addr(dev, pticket, pa)
    if ticket is None:
        ticket = get_rules(dev, anchor, rule.action)[1]
    pr = pfioc_rule(**{"action": action, "ticket": ticket, "pool_ticket": pticket, **kw})
    pr.anchor = cbytes(anchor)
    pr.anchor_call = cbytes(call)
    pr.rule = rule
    return dev.ioctl(DIOCCHANGERULE, pr)


def _labels(dev, anchor=""):
    rules = [pr.rule for pr, _ in read_ruleset(dev, anchor, PF_PASS)]
    assert [r.nr for r in rules] == list(range(len(rules)))
    assert [[s.nr for s in r.skip] for r in rules] == expected_skips(rules)
    return [r.label.decode() for r in rules]


def test_changerule_edits_the_active_ruleset(dev):
    load(dev, [make_rule(PF_PASS, label=n) for n in ("a", "b", "c")])
    n, ticket = get_rules(dev, "", PF_PASS)
    got = _changerule(dev, PF_CHANGE_GET_TICKET)
    assert got.ticket == ticket + 1 == get_rules(dev, "", PF_PASS)[1]
    _changerule(dev, PF_CHANGE_ADD_HEAD, make_rule(PF_PASS, label="h", proto=IPPROTO_TCP))
    assert get_rules(dev, "", PF_PASS)[1] == ticket + 2
    _changerule(dev, PF_CHANGE_ADD_TAIL, make_rule(PF_PASS, label="t"))
    _changerule(dev, PF_CHANGE_ADD_BEFORE, make_rule(PF_PASS, label="B"), nr=1)
    _changerule(dev, PF_CHANGE_ADD_AFTER, make_rule(PF_PASS, label="A"), nr=1)
    assert _labels(dev) == ["h", "B", "A", "a", "b", "c", "t"]
    _changerule(dev, PF_CHANGE_REMOVE, nr=0)
    _changerule(dev, PF_CHANGE_REMOVE, nr=5)
    assert _labels(dev) == ["B", "A", "a", "b", "c"]
    _changerule(dev, PF_CHANGE_ADD_HEAD, make_rule(PF_NAT, label="n"),
                pool=[pool_addr("192.0.2.1")])
    assert [pr.rule.label for pr, _ in read_ruleset(dev, "", PF_NAT)] == [b"n"]


def test_changerule_errors(dev):
    load(dev, [make_rule(PF_PASS, label="only")])
    before = snapshot(dev)
    for action in (0, 7, 1000):
        assert errno_of(_changerule, dev, action) == errno.EINVAL
    n, ticket = get_rules(dev, "", PF_PASS)
    tail = PF_CHANGE_ADD_TAIL
    assert errno_of(_changerule, dev, tail, ticket=ticket + 1) == errno.EINVAL   # not EBUSY
    assert errno_of(_changerule, dev, tail, pool_ticket=0xdead) == errno.EBUSY
    assert errno_of(_changerule, dev, tail, anchor="no/such", ticket=0) == errno.EINVAL
    assert errno_of(_changerule, dev, tail, make_rule(PF_SYNPROXY_DROP), ticket=0) == errno.EINVAL
    assert errno_of(_changerule, dev, tail, make_rule(PF_DROP, return_icmp=50 << 8)) == errno.EINVAL
    assert errno_of(_changerule, dev, tail, make_rule(PF_NAT)) == errno.EINVAL
    assert errno_of(_changerule, dev, tail, call="../up") == errno.EINVAL
    for action in (PF_CHANGE_ADD_BEFORE, PF_CHANGE_ADD_AFTER, PF_CHANGE_REMOVE):
        assert errno_of(_changerule, dev, action, nr=1) == errno.EINVAL
    assert snapshot(dev) == before
    _changerule(dev, PF_CHANGE_REMOVE, nr=0, pool_ticket=0xdead)     # REMOVE needs no pool ticket
    assert get_rules(dev, "", PF_PASS)[0] == 0


# --- anchors: DIOCGETRULESETS, DIOCGETRULESET ------------------------------------------------

def test_getrulesets_lists_children_in_order(dev, rodev):
    for path in ("n1/n2/n3", "n1/m", "zz", "A"):
        load(dev, [make_rule(PF_PASS)], path)
    assert anchors(rodev) == ["A", "n1", "zz"]
    assert anchors(rodev, "n1") == ["n1/m", "n1/n2"]
    assert anchors(rodev, "n1/n2") == ["n1/n2/n3"]
    assert anchors(rodev, "n1/n2/n3") == []
    assert anchors(rodev, "", True) == ["A", "n1", "n1/m", "n1/n2", "n1/n2/n3", "zz"]


def test_getrulesets_errors(dev, rodev):
    load(dev, [make_rule(PF_PASS)], "only")

    def call(cmd, path, nr=0):
        pr = pfioc_ruleset(nr=nr)
        pr.path = cbytes(path)
        return rodev.ioctl(cmd, pr)

    assert errno_of(call, DIOCGETRULESETS, "nope") == errno.ENOENT    # pf(4) says EINVAL
    assert errno_of(call, DIOCGETRULESET, "nope") == errno.ENOENT
    assert errno_of(call, DIOCGETRULESET, "", 1) == errno.EBUSY
    assert errno_of(call, DIOCGETRULESET, "only", 0) == errno.EBUSY
    assert errno_of(call, DIOCGETRULESETS, b"o" * 1024) == errno.ENOENT   # unterminated
    assert call(DIOCGETRULESET, "", 0).name == b"only"


def test_clrrulectrs(dev, rodev):
    load(dev, [make_rule(PF_PASS)])
    dev.ioctl(DIOCCLRRULECTRS)
    assert errno_of(rodev.ioctl, DIOCCLRRULECTRS) == errno.EACCES


# --- pf_chksum -------------------------------------------------------------------------------

def test_chksum_is_freebsds(dev):
    """pf_setup_pfsync_matching hashes the main ruleset's *inactive* filter/nat/binat/rdr
    queues at each main-ruleset commit; with pfctl's element order (nat, binat, rdr, scrub,
    filter) the last one leaves only the filter rules in the hash."""
    filt = [make_rule(PF_PASS, proto=IPPROTO_TCP, dport=22, label="ssh", tagname=b"t"),
            make_rule(PF_DROP, src="(eth0)", ifname="eth0", direction=PF_IN)]
    nat = [(make_rule(PF_NAT, src="10.0.0.0/8"), [pool_addr("192.0.2.1")])]
    load(dev, filt + nat)
    got = [pr.rule for pr, _ in read_ruleset(dev, "", PF_PASS)]
    assert bytes(dev.status().pf_chksum) == expected_chksum(got)
    # Commit filter before nat: then the nat rules are what the last commit hashes.
    elements = xbegin(dev, [(PF_RULESET_FILTER, ""), (PF_RULESET_NAT, "")])
    add_rule(dev, filt[0], elements[0][2])
    add_rule(dev, nat[0][0], elements[1][2], pool=nat[0][1])
    xcommit(dev, elements)
    natrules = [pr.rule for pr, _ in read_ruleset(dev, "", PF_NAT)]
    assert bytes(dev.status().pf_chksum) == expected_chksum(natrules)
    before = bytes(dev.status().pf_chksum)
    load(dev, [make_rule(PF_PASS)], "sub")                  # anchors leave it alone
    assert bytes(dev.status().pf_chksum) == before


# --- the pfctl -f sequence, read back with pfctl's show sequences ----------------------------

OPTIONS = {"limits": [20000, 2000, 3000, 100000],
           "timeouts": [120, 30, 3600, 900, 45, 90, 60, 30, 60, 20, 10, 60, 30, 60, 30, 10,
                        12000, 24000, 0, 30],
           "debug": 2, "loginterface": "lo", "hostid": 0x12345678}


def pfctl_config(with_tables):
    """A pf.conf with scrub, nat, rdr, binat, filter rules, nat/rdr anchors, a named external
    anchor loaded from a file (with a nested inline anchor), inline named and anonymous
    anchors, and (with_tables) tables referenced by rules."""
    main = PfctlAnchor()
    main.add(make_rule(PF_SCRUB, direction=PF_IN, rule_flag=0x1000))
    main.add(make_rule(PF_NOSCRUB, proto=IPPROTO_UDP))
    main.add(make_rule(PF_NAT, ifname="eth0", src="10.0.0.0/8"), [pool_addr("192.0.2.1")])
    main.add(make_rule(PF_NAT, ifname="eth0", af=AF_INET6, src="fd00::/8"),
             [pool_addr("2001:db8::1"), pool_addr("2001:db8::2")])
    main.add(make_rule(PF_NAT), call="ftp-proxy/*")
    main.add(make_rule(PF_RDR, ifname="eth0", proto=IPPROTO_TCP, dst="192.0.2.1", dport=80),
             [pool_addr("10.0.0.5")])
    main.add(make_rule(PF_RDR), call="ftp-proxy/*")
    main.add(make_rule(PF_BINAT, ifname="eth0", src="10.0.0.9"), [pool_addr("192.0.2.9")])
    main.add(make_rule(PF_DROP, direction=PF_IN, label="default"))
    src = "<goodguys>" if with_tables else "172.16.0.0/12"
    main.add(make_rule(PF_PASS, direction=PF_OUT, quick=1, proto=IPPROTO_TCP, src=src, dport=22,
                       keep_state=1))
    main.add(make_rule(PF_PASS, direction=PF_IN, ifname="eth0", proto=IPPROTO_TCP, dport=80))
    main.add(make_rule(PF_PASS, direction=PF_IN, ifname="eth0", proto=IPPROTO_TCP, dport=443))
    main.add(_routed(direction=PF_OUT, ifname="eth1"), [pool_addr("198.51.100.1", ifname="eth1")])
    main.add(make_rule(PF_PASS), call="A")
    inline = PfctlAnchor("inl")
    inline.add(make_rule(PF_PASS, direction=PF_IN, proto=IPPROTO_UDP, dport=53))
    inline.add(make_rule(PF_DROP, direction=PF_IN,
                         src="<spam>" if with_tables else "203.0.113.0/24"))
    main.add(make_rule(PF_PASS, direction=PF_IN), call=inline)
    anon = PfctlAnchor("_1")
    anon.add(make_rule(PF_PASS, direction=PF_OUT, proto=IPPROTO_ICMP))
    main.add(make_rule(PF_PASS), call=anon)
    a = PfctlAnchor("A")
    a.add(make_rule(PF_PASS, direction=PF_IN, proto=IPPROTO_TCP, dport=25))
    b = PfctlAnchor("B")
    b.add(make_rule(PF_PASS, direction=PF_IN, proto=IPPROTO_TCP, dport=110))
    a.add(make_rule(PF_PASS), call=b)
    a.add(make_rule(PF_PASS), call="/inl")
    tables = None
    if with_tables:
        tables = [("", "goodguys", PFR_TFLAG_PERSIST, ["10.0.0.0/8", "192.168.1.1/32"]),
                  ("", "spam", PFR_TFLAG_PERSIST, []),
                  ("A", "atab", 0, ["198.51.100.0/24"])]
        a.add(make_rule(PF_DROP, src="<atab>"))
    return main, {"A": a}, tables


def _expected(anchor, path, actions, recurse=False):
    """(path, loaded pf_rule, pool, anchor_call) in the order pfctl shows them (show_rules)."""
    out = []
    for action in actions:
        kind = {PF_SCRUB: 0, PF_PASS: 1, PF_NAT: 2, PF_BINAT: 3, PF_RDR: 4}[action]
        for r, pool, call in anchor.rules[kind]:
            name = call.name if isinstance(call, PfctlAnchor) else call
            out.append((path, r, pool, name))
            if isinstance(call, PfctlAnchor) and (name.startswith("_") or recurse):
                sub = f"{path}/{call.name}" if path else call.name
                out.extend(_expected(call, sub, (PF_SCRUB, PF_PASS), recurse))
    return out


def _compare(shown, expected):
    assert ([(p, pr.anchor_call.decode()) for p, pr, _ in shown] ==
            [(p, c) for p, _, _, c in expected])
    for (path, pr, pool), (_, r, loaded_pool, _) in zip(shown, expected):
        assert diff_loaded(r, pr.rule) == [], (path, pr.rule.nr)
        assert len(pool) == len(loaded_pool)
        assert [diff_loaded(a, b) for a, b in zip(loaded_pool, pool)] == [[]] * len(pool)


def _inline(anchor, name):
    return next(call for rules in anchor.rules.values() for _, _, call in rules
                if isinstance(call, PfctlAnchor) and call.name == name)


@pytest.mark.parametrize("with_tables", [False, True], ids=["rules", "rules+tables"])
def test_pfctl_load_and_show(dev, with_tables):
    main, files, tables = pfctl_config(with_tables)
    loader = PfctlLoad(dev, tables=tables, options=OPTIONS, files=files)
    loader.run(main)
    # one transaction: main, inline anchors begun as their rules load, then "load anchor A"
    begun = []
    for rs_num, path, _ in loader.trans:
        if path not in begun:
            begun.append(path)
    assert begun == ["", "inl", "_1", "A", "A/B"]

    # pfctl -s rules, -s nat, -a A -s rules, -a A/B -s rules, -a inl -s rules
    _compare(show_rules(dev), _expected(main, "", (PF_SCRUB, PF_PASS)))
    _compare(show_nat(dev), _expected(main, "", (PF_NAT, PF_RDR, PF_BINAT)))
    _compare(show_rules(dev, "A"), _expected(files["A"], "A", (PF_SCRUB, PF_PASS)))
    _compare(show_rules(dev, "A/B"),
             _expected(_inline(files["A"], "B"), "A/B", (PF_SCRUB, PF_PASS)))
    _compare(show_rules(dev, "inl"), _expected(_inline(main, "inl"), "inl", (PF_SCRUB, PF_PASS)))
    # pfctl -s Anchors -v
    assert anchors(dev, "", True) == ["A", "A/B", "_1", "ftp-proxy", "inl"]
    # options
    assert [dev.get_limit(i) for i in range(4)] == OPTIONS["limits"]
    assert [dev.get_timeout(i) for i in range(20)] == OPTIONS["timeouts"]
    st = dev.status()
    assert (st.debug, st.ifname, socket.ntohl(st.hostid)) == (2, b"lo", 0x12345678)
    # the checksum covers the main filter rules (see test_chksum_is_freebsds)
    main_filter = [pr.rule for pr, _ in read_ruleset(dev, "", PF_PASS)]
    assert bytes(st.pf_chksum) == expected_chksum(main_filter)
    # skip steps of every ruleset are FreeBSD's
    for path in [""] + anchors(dev, "", True):
        for action in ALL_ACTIONS:
            rules = [pr.rule for pr, _ in read_ruleset(dev, path, action)]
            assert [[s.nr for s in r.skip] for r in rules] == expected_skips(rules)
    if with_tables:
        # pfctl -s Tables -a '*' (-vv: tstats) and -T show: the tables defined in the
        # transaction, active, with their addresses and the rules that reference them
        from tables_util import TableClient, snapshot
        tables_now = snapshot(TableClient(dev))
        for anchor, name, flags, addrs in tables:
            tflags, count, _, shown = tables_now[(anchor, name)]
            assert tflags & PFR_TFLAG_ACTIVE
            assert (tflags & PFR_TFLAG_PERSIST) == (flags & PFR_TFLAG_PERSIST), name
            hosts = [a[:-3] if a.endswith("/32") else a for a in addrs]   # pfctl shows hosts bare
            assert count == len(addrs) and sorted(shown) == sorted(hosts), (name, shown)
        table_rules = [pr for pr, _ in read_ruleset(dev, "", PF_PASS)
                       if pr.rule.src.addr.type == PF_ADDR_TABLE]
        assert [pr.rule.src.addr.p.tblcnt for pr in table_rules] == [2]   # <goodguys>: 2 entries
        assert _rule_refs(dev, "goodguys") == 1
        flush(dev)                                        # the rule goes: the table is detached
        assert _rule_refs(dev, "goodguys") == 0
    # defaults back for the other tests of the module
    for i, limit in enumerate([100000, 10000, 5000, 200000]):
        dev.set_limit(i, limit)
    for i, seconds in enumerate([120, 30, 86400, 900, 45, 90, 60, 30, 60, 20, 10, 60, 30, 60, 30,
                                 10, 60000, 120000, 0, 30]):
        dev.set_timeout(i, seconds)
    dev.set_debug(1)
    dev.set_status_interface("")


def _rule_refs(dev, name, anchor=""):
    """pfrts_refcnt[PFR_REFCNT_RULE] of a table, from DIOCRGETTSTATS."""
    buf = (pfr_tstats * 64)()
    io = pfioc_table(pfrio_buffer=ctypes.addressof(buf), pfrio_esize=ctypes.sizeof(pfr_tstats),
                     pfrio_size=64)
    io.pfrio_table.pfrt_anchor = anchor.encode()
    dev.ioctl(DIOCRGETTSTATS, io)
    return next(t.pfrts_refcnt[0] for t in buf[:io.pfrio_size]
                if t.pfrts_t.pfrt_name == name.encode())


def test_failed_load_rolls_back_everything(dev):
    """pfctl's error path: any failure before the commit, then DIOCXROLLBACK of the array."""
    load(dev, [make_rule(PF_PASS, label="old")])
    before = snapshot(dev)
    main = PfctlAnchor()
    main.add(make_rule(PF_PASS, label="new"))
    inline = PfctlAnchor("fail")
    inline.add(make_rule(PF_PASS))
    main.add(make_rule(PF_PASS), call=inline)
    main.add(_routed(direction=PF_OUT))                  # route-to without a pool: EINVAL
    with pytest.raises(OSError) as info:
        PfctlLoad(dev).run(main)
    assert info.value.errno == errno.EINVAL
    assert snapshot(dev) == before


# --- hostile input ---------------------------------------------------------------------------

def test_garbage_arguments_change_nothing(module_pfd, dev):
    load(dev, [make_rule(PF_PASS, label="keep")], "")
    load(dev, [(make_rule(PF_NAT), [pool_addr("192.0.2.1")])], "")
    before = snapshot(dev)
    rnd = random.Random(1234)
    kinds = [(DIOCADDRULE, pfioc_rule), (DIOCGETRULES, pfioc_rule), (DIOCGETRULE, pfioc_rule),
             (DIOCCHANGERULE, pfioc_rule), (DIOCBEGINADDRS, pfioc_pooladdr),
             (DIOCADDADDR, pfioc_pooladdr), (DIOCGETADDRS, pfioc_pooladdr),
             (DIOCGETADDR, pfioc_pooladdr), (DIOCCHANGEADDR, pfioc_pooladdr),
             (DIOCGETRULESETS, pfioc_ruleset), (DIOCGETRULESET, pfioc_ruleset)]
    for _ in range(300):
        cmd, ctype = rnd.choice(kinds)
        arg = ctype.from_buffer_copy(rnd.randbytes(ctypes.sizeof(ctype)))
        try:
            dev.ioctl(cmd, arg)
        except OSError as exc:
            assert exc.errno in (errno.EINVAL, errno.EBUSY, errno.ENOENT, errno.ENOMEM)
    # garbage rules with the right tickets go into the inactive set only; roll it back
    elements = xbegin(dev, ruleset_elements())
    for _ in range(200):
        r = pf_rule.from_buffer_copy(rnd.randbytes(ctypes.sizeof(pf_rule)))
        r.action = rnd.choice([PF_PASS, PF_DROP, PF_SCRUB, PF_NAT, PF_RDR, PF_BINAT, 10, 77])
        kind = {0: 1, 1: 1, 2: 0, 4: 2, 8: 4, 6: 3}.get(r.action, 1)
        for addr in (r.src.addr, r.dst.addr):
            if addr.type == PF_ADDR_TABLE:
                addr.type = PF_ADDR_ADDRMASK                 # tables are the tables' tests' job
        r.overload_tblname = b""
        try:
            call = rnd.choice(["", "g", "../g", rnd.randbytes(40).replace(b"\0", b"x")])
            add_rule(dev, r, ticket_of(elements, kind), pool=[pool_addr("192.0.2.1")],
                     anchor_call=call)
        except OSError as exc:
            assert exc.errno in (errno.EINVAL, errno.EBUSY, errno.ENOMEM)
    xrollback(dev, elements)
    assert snapshot(dev) == before
    assert module_pfd.alive()


# --- the core's interface to the packet engine -------------------------------------------------

def test_commits_reach_on_commit_hooks_and_swap_lists_whole():
    """In process: Rulesets.on_commit is called after a commit and after DIOCCHANGERULE, and a
    committed rule list is replaced, never edited, so a compiled copy stays consistent."""
    from pfkern.pf import PfCore
    from pfkern.pf_rule import Rule
    from pfkern.pf_ruleset import Rulesets
    core = PfCore()
    core.rulesets = rulesets = Rulesets(core)
    calls = []
    rulesets.on_commit(lambda rs, kind: calls.append((rs.path, kind, rs.active[kind].rules)))
    ticket, = rulesets.xbegin([(PF_RULESET_FILTER, "")])
    rulesets.add_rule("", ticket, rulesets.begin_addrs(), "", Rule(make_rule(PF_PASS).to_bytes()))
    rulesets.xcommit([(PF_RULESET_FILTER, "", ticket)])
    assert [(p, k, len(rules)) for p, k, rules in calls] == [("", PF_RULESET_FILTER, 1)]
    committed = calls[0][2]
    rulesets.change_rule(PF_CHANGE_ADD_TAIL, "", rulesets.main.active[1].ticket,
                         rulesets.begin_addrs(), 0, "", Rule(make_rule(PF_DROP).to_bytes()))
    assert len(calls) == 2 and len(calls[1][2]) == 2 and len(committed) == 1
    assert [r.action for r in calls[1][2]] == [PF_PASS, PF_DROP]
