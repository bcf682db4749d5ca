"""Round-robin pools over a table (FreeBSD 12.1 pfr_pool_get, as pf_map_addr calls it):
pf_table's nogil `pfr_dp_pool_get`, driven through the test hook
`Tables._dp_pool_get_for_tests` under a datapath lock of the test's own, on tables defined
through the real DIOCR* handlers (the Engine of test_table_counters).

The walk: the table's non-negated entries of one family in FreeBSD's radix order (by network
address, a more specific prefix first among equal addresses), the pool's counter used while it
lies in the current entry and not in a more specific entry nested there, the next entry's
network address otherwise, wrapping to entry 0 after the last one. `rr` plays pf_map_addr:
take the address the call leaves in the counter, then PF_AINC it."""
import ipaddress
import socket

from pfkern.client import PFR_TFLAG_PERSIST
from pfkern.client.constants import AF_INET6_BSD
from tables_util import AF_INET, AF_INET6, table
from test_table_counters import e  # noqa: F401  (the engine fixture, used by name)

PERSIST = PFR_TFLAG_PERSIST


def v4(s):
    return socket.inet_pton(socket.AF_INET, s) + bytes(12)


def v6(s):
    return socket.inet_pton(socket.AF_INET6, s)


def text(raw, af):
    return str(ipaddress.ip_address(raw[:4] if af == AF_INET else raw))


def inc(raw, af):
    """PF_AINC: the next address (the bytes past an IPv4 address left alone)."""
    n = 4 if af == AF_INET else 16
    v = (int.from_bytes(raw[:n], "big") + 1) % (1 << (8 * n))
    return v.to_bytes(n, "big") + raw[n:]


def get(e, kt, af, idx, counter, wrap=True):
    return e.tables._dp_pool_get_for_tests(kt, af, idx, counter, wrap)


def rr(e, kt, af, n, idx=-1, counter=bytes(16)):
    """n addresses of a round-robin pool holding <kt>, as (address, idx) pairs."""
    out = []
    for _ in range(n):
        r, idx, counter = get(e, kt, af, idx, counter)
        assert r == 0
        out.append((text(counter, af), idx))
        counter = inc(counter, af)
    return out


def addrs(pairs):
    return [a for a, _ in pairs]


def stats(e, name, anchor=""):
    for ts in e.tc.tables(anchor, stats=True):
        if ts.pfrts_t.pfrt_name.decode() == name:
            return ts.pfrts_match, ts.pfrts_nomatch
    raise KeyError(name)


def define(e, name, entries, anchor=""):
    e.tc.add_tables(table(name, anchor, flags=PERSIST))
    if entries:
        e.tc.add_addrs(table(name, anchor), entries)
    return e.rule(name, anchor)


def test_networks_and_hosts_walk_in_radix_order_and_wrap(e):
    """A /30 and a /32: every address of the /30, then the host, then the /30 again (idx back
    to 0). The host sorts after the /30 by address although the snapshot's lookup groups keep
    the /32 first: the walk is the radix tree's order."""
    kt = define(e, "p", ["10.0.0.9", "10.0.0.4/30"])
    assert rr(e, kt, AF_INET, 7) == [("10.0.0.4", 0), ("10.0.0.5", 0), ("10.0.0.6", 0),
                                     ("10.0.0.7", 0), ("10.0.0.9", 1), ("10.0.0.4", 0),
                                     ("10.0.0.5", 0)]
    kt2 = define(e, "q", ["10.0.0.12", "10.0.0.9", "10.0.0.4/30", "10.0.0.2/31"])
    assert addrs(rr(e, kt2, AF_INET, 10)) == [
        "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.9",
        "10.0.0.12", "10.0.0.2", "10.0.0.3"]


def test_counter_outside_its_entry_moves_on(e):
    """A counter that is not in entry idx's network is not used: the walk goes on with the next
    entry's first address (pf_map_addr's initial tblidx 0 / counter 0 skips entry 0 so)."""
    kt = define(e, "p", ["10.0.0.9", "10.0.0.4/30"])
    r, idx, ctr = get(e, kt, AF_INET, 0, v4("192.0.2.1"))
    assert (r, idx, text(ctr, AF_INET)) == (0, 1, "10.0.0.9")
    r, idx, ctr = get(e, kt, AF_INET, 0, v4("10.0.0.6"))
    assert (r, idx, text(ctr, AF_INET)) == (0, 0, "10.0.0.6")
    # FreeBSD's pfr_pool_get itself: 1 past the end (*idx untouched), no wrap
    r, idx, ctr = get(e, kt, AF_INET, 1, v4("10.0.0.10"), wrap=False)
    assert (r, idx) == (1, 1)
    r, idx, ctr = get(e, kt, AF_INET, 1, v4("10.0.0.10"))
    assert (r, idx, text(ctr, AF_INET)) == (0, 0, "10.0.0.4")


def test_negated_entries_give_no_address(e):
    """Negated entries are not in the walk (idx counts the others only), and their addresses
    inside a network are stepped over."""
    kt = define(e, "p", ["10.0.0.0/29", "!10.0.0.2", "!10.0.0.4/31", "!10.0.0.64/26",
                         "10.0.0.100"])
    assert rr(e, kt, AF_INET, 8) == [("10.0.0.0", 0), ("10.0.0.1", 0), ("10.0.0.3", 0),
                                     ("10.0.0.6", 0), ("10.0.0.7", 0), ("10.0.0.100", 1),
                                     ("10.0.0.0", 0), ("10.0.0.1", 0)]
    only_neg = define(e, "n", ["!10.0.0.0/8", "!2001:db8::/32"])
    assert get(e, only_neg, AF_INET, -1, bytes(16))[0] == 1
    assert get(e, only_neg, AF_INET, 0, v4("10.0.0.1"))[0] == 1
    assert get(e, only_neg, AF_INET6, -1, bytes(16))[0] == 1


def test_nested_entries_are_not_handed_out_twice(e):
    """An address of a more specific entry inside a network is given once per round, from that
    entry, not from the enclosing network (which steps past it); equal addresses: the more
    specific entry comes first, as in the radix tree's duplicate-key chain."""
    kt = define(e, "p", ["10.0.0.5", "10.0.0.2/31", "10.0.0.0/29"])
    one_round = ["10.0.0.0", "10.0.0.1", "10.0.0.4", "10.0.0.6", "10.0.0.7", "10.0.0.2",
                 "10.0.0.3", "10.0.0.5"]
    got = rr(e, kt, AF_INET, 16)
    assert addrs(got) == one_round * 2
    assert [i for _, i in got[:8]] == [0, 0, 0, 0, 0, 1, 1, 2]
    same_key = define(e, "s", ["10.0.1.0/30", "10.0.1.0/31"])
    assert rr(e, same_key, AF_INET, 5) == [("10.0.1.0", 0), ("10.0.1.1", 0), ("10.0.1.2", 1),
                                           ("10.0.1.3", 1), ("10.0.1.0", 0)]
    # stepping past a nested network that ends at the top of the address space ends the block
    top = define(e, "t", ["0.0.0.0/0", "128.0.0.0/1"])
    r, idx, ctr = get(e, top, AF_INET, 0, v4("127.255.255.255"))
    assert (r, idx, text(ctr, AF_INET)) == (0, 0, "127.255.255.255")
    r, idx, ctr = get(e, top, AF_INET, 0, v4("128.0.0.0"))
    assert (r, idx, text(ctr, AF_INET)) == (0, 1, "128.0.0.0")


def test_ipv6(e):
    """IPv6 walks its own entries (the IPv4 ones do not count in idx); nested entries are
    stepped past, carrying into the address's upper half."""
    kt = define(e, "p", ["10.0.0.1", "2001:db8::10", "2001:db8::1", "2001:db8::/126"])
    assert rr(e, kt, AF_INET6, 6) == [("2001:db8::", 0), ("2001:db8::2", 0),
                                      ("2001:db8::3", 0), ("2001:db8::1", 1),
                                      ("2001:db8::10", 2), ("2001:db8::", 0)]
    assert rr(e, kt, AF_INET, 2) == [("10.0.0.1", 0), ("10.0.0.1", 0)]
    wide = define(e, "w", ["2001:db8::/63", "2001:db8::/64"])       # the /64 walks first
    r, idx, ctr = get(e, wide, AF_INET6, 1, v6("2001:db8::5"))
    assert (r, idx, text(ctr, AF_INET6)) == (0, 1, "2001:db8:0:1::")
    last = v6("2001:db8:0:1:ffff:ffff:ffff:ffff")
    r, idx, ctr = get(e, wide, AF_INET6, 1, last)
    assert (r, idx, ctr) == (0, 1, last)
    r, idx, ctr = get(e, wide, AF_INET6, 1, inc(last, AF_INET6))
    assert (r, idx, text(ctr, AF_INET6)) == (0, 0, "2001:db8::")
    # BSD's AF_INET6 value is taken too
    assert get(e, kt, AF_INET6_BSD, -1, bytes(16))[:2] == (0, 0)


def test_empty_and_inactive_tables(e):
    """No address of the family, an empty table, a table not active (nor a root to fall back
    on): 1, and the counter is left alone."""
    v4only = define(e, "p", ["10.0.0.0/30"])
    assert get(e, v4only, AF_INET6, -1, v6("2001:db8::1")) == (1, -1, v6("2001:db8::1"))
    empty = define(e, "z", [])
    assert get(e, empty, AF_INET, -1, v4("10.0.0.1")) == (1, -1, v4("10.0.0.1"))
    assert get(e, empty, AF_INET, 3, v4("10.0.0.1"))[0] == 1
    ghost = e.rule("ghost")                         # referenced, never defined: not active
    assert get(e, ghost, AF_INET, -1, bytes(16)) == (1, -1, bytes(16))
    e.tc.add_addrs(table("z"), ["10.0.0.8"])
    assert get(e, empty, AF_INET, 3, v4("10.0.0.1"))[:2] == (0, 0)
    e.tc.del_tables(table("p"))                     # deleted: still referenced, not active
    assert get(e, v4only, AF_INET, 0, v4("10.0.0.1"))[0] == 1


def test_anchor_table_falls_back_to_root_and_counts(e):
    """An anchor's table that is not active walks the main ruleset's table of that name, as
    lookups do; match / nomatch count there as FreeBSD's pfr_pool_get counts them (the end of
    the table: a nomatch, then the restart's match)."""
    define(e, "r", ["10.0.0.1", "10.0.0.2"])
    anchored = e.rule("r", "anc")
    assert addrs(rr(e, anchored, AF_INET, 3)) == ["10.0.0.1", "10.0.0.2", "10.0.0.1"]
    assert stats(e, "r") == (3, 1)
    define(e, "r", ["10.9.9.9"], anchor="anc")
    assert addrs(rr(e, anchored, AF_INET, 2)) == ["10.9.9.9", "10.9.9.9"]
    assert stats(e, "r", "anc") == (2, 1)
    assert stats(e, "r") == (3, 1)
