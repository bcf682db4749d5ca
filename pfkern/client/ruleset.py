"""Loading and reading a ruleset through /dev/pf with the ioctl sequences FreeBSD 12.1's pfctl
issues (reference/pf-abi.md §5, §5.1): what `pfctl -f` does for a parsed file, and what
`pfctl -s nat|rules`, `-s Tables`, `-t T -T show` read back.

    from pfkern.client.ruleset import Ruleset, rule, pool_addr
    rs = Ruleset()
    rs.table("lan", ["192.168.77.0/24"])
    rs.add(rule(PF_NAT, ifname="wan0", src="<lan>", proxy=(50001, 65535)), [pool_addr("198.51.100.1")])
    rs.add(rule(PF_PASS, keep_state=True))
    rs.load(pf)                     # XBEGIN, DIOCRINADEFINE, (BEGINADDRS, ADDADDR*, ADDRULE)*, XCOMMIT

Rules are `pf_rule` structs filled as pfctl's parser fills them; `rule()` covers the common
fields (addresses as "a.b.c.d[/n]", "<table>", "(ifname)" or None for any; ports as a number or
(op, p1[, p2])); set any other field on the struct it returns.
"""
import ctypes
import ipaddress
import socket

from . import commands as C
from . import structs as S
from .constants import (PF_ADDR_ADDRMASK, PF_ADDR_DYNIFTL, PF_ADDR_TABLE, PF_OP_EQ, PF_PASS,
                        PF_RULESET_BINAT, PF_RULESET_FILTER, PF_RULESET_NAT, PF_RULESET_RDR,
                        PF_RULESET_SCRUB, PF_RULESET_TABLE, PFR_FLAG_ADDRSTOO)

# pf_get_ruleset_number: the ruleset of each rule action (PF_PASS .. PF_NORDR).
RULESET_OF_ACTION = {0: PF_RULESET_FILTER, 1: PF_RULESET_FILTER, 2: PF_RULESET_SCRUB,
                     3: PF_RULESET_SCRUB, 4: PF_RULESET_NAT, 5: PF_RULESET_NAT,
                     6: PF_RULESET_BINAT, 7: PF_RULESET_BINAT, 8: PF_RULESET_RDR, 9: PF_RULESET_RDR}
TH_SYN, TH_ACK = 0x02, 0x10


def _cbytes(s):
    return s.encode() if isinstance(s, str) else bytes(s)


# -- building rules ----------------------------------------------------------------------------

def set_addr(wrap, spec):
    """Fill a pf_addr_wrap: "a.b.c.d[/n]" (or IPv6), "<table>", "(ifname)", None (any)."""
    if spec is None:
        wrap.type = PF_ADDR_ADDRMASK
    elif spec.startswith("<"):
        wrap.type = PF_ADDR_TABLE
        wrap.v.tblname = spec[1:-1].encode()
    elif spec.startswith("("):
        wrap.type = PF_ADDR_DYNIFTL
        wrap.v.ifname = spec[1:-1].encode()
        ctypes.memmove(ctypes.addressof(wrap.v.a.mask), b"\xff" * 16, 16)
    else:
        net = ipaddress.ip_network(spec, strict=False)
        wrap.type = PF_ADDR_ADDRMASK
        wrap.v.a.addr.set(net.network_address)
        wrap.v.a.mask.set(net.netmask)
    return wrap


def _set_port(raddr, spec):
    if spec is None:
        return
    if isinstance(spec, int):
        spec = (PF_OP_EQ, spec)
    raddr.port_op = spec[0]
    raddr.port[0] = socket.htons(spec[1])
    raddr.port[1] = socket.htons(spec[2] if len(spec) > 2 else 0)


def rule(action=PF_PASS, *, af=0, proto=0, src=None, dst=None, sport=None, dport=None, ifname="",
         direction=0, quick=False, keep_state=False, flags=None, proxy=None, label="", **fields):
    """A pf_rule as pfctl's parser leaves it (rtableid -1). `keep_state` on a pass rule brings
    pfctl's default "flags S/SA" unless `flags` says otherwise ((flags, flagset) or None);
    `proxy` = (low, high) fills rpool.proxy_port (nat: the source port range; rdr: the port)."""
    r = S.pf_rule()
    r.action, r.af, r.proto, r.direction = action, af, proto, direction
    r.quick = 1 if quick else 0
    r.keep_state = 1 if keep_state else 0
    r.rtableid = -1
    r.ifname = _cbytes(ifname)
    r.label = _cbytes(label)
    set_addr(r.src.addr, src)
    set_addr(r.dst.addr, dst)
    _set_port(r.src, sport)
    _set_port(r.dst, dport)
    if flags is None and keep_state and action == PF_PASS and proto in (0, socket.IPPROTO_TCP):
        flags = (TH_SYN, TH_SYN | TH_ACK)
    if flags:
        r.flags, r.flagset = flags
    if proxy is not None:
        r.rpool.proxy_port[0], r.rpool.proxy_port[1] = proxy
    for name, value in fields.items():
        setattr(r, name, value)
    return r


def pool_addr(spec, ifname=""):
    """A pf_pooladdr for a rule's address pool (translation target, route-to)."""
    pa = S.pf_pooladdr()
    set_addr(pa.addr, spec)
    pa.ifname = _cbytes(ifname)
    return pa


# -- loading -----------------------------------------------------------------------------------

class Transaction:
    """DIOCXBEGIN/XCOMMIT/XROLLBACK over the rulesets pfctl opens for one anchor (ALTQ left out:
    there is none here): nat, binat, rdr, scrub, filter and, with `tables`, the table set."""

    def __init__(self, dev, anchor="", tables=True):
        kinds = [PF_RULESET_NAT, PF_RULESET_BINAT, PF_RULESET_RDR, PF_RULESET_SCRUB,
                 PF_RULESET_FILTER] + ([PF_RULESET_TABLE] if tables else [])
        self.dev = dev
        self.anchor = anchor
        self.array = (S.pfioc_trans_e * len(kinds))()
        for i, k in enumerate(kinds):
            self.array[i].rs_num = k
            self.array[i].anchor = _cbytes(anchor)
        self.open = False

    def _issue(self, cmd):
        io = S.pfioc_trans(size=len(self.array), esize=ctypes.sizeof(S.pfioc_trans_e),
                           array=ctypes.addressof(self.array))
        self.dev.ioctl(cmd, io)

    def begin(self):
        self._issue(C.DIOCXBEGIN)
        self.open = True
        return self

    def ticket(self, rs_num):
        for e in self.array:
            if e.rs_num == rs_num:
                return e.ticket
        raise KeyError(rs_num)

    def commit(self):
        self._issue(C.DIOCXCOMMIT)
        self.open = False

    def rollback(self):
        if self.open:
            self.open = False
            self._issue(C.DIOCXROLLBACK)


def define_table(dev, ticket, name, addrs=(), flags=0, anchor=""):
    """DIOCRINADEFINE: a table of the open transaction (pfctl_define_table)."""
    buf = (S.pfr_addr * max(len(addrs), 1))(*[S.pfr_addr.of(a) for a in addrs])
    io = S.pfioc_table(pfrio_buffer=ctypes.addressof(buf), pfrio_esize=ctypes.sizeof(S.pfr_addr),
                       pfrio_size=len(addrs), pfrio_flags=PFR_FLAG_ADDRSTOO if addrs else 0,
                       pfrio_ticket=ticket)
    io.pfrio_table.pfrt_anchor = _cbytes(anchor)
    io.pfrio_table.pfrt_name = _cbytes(name)
    io.pfrio_table.pfrt_flags = flags
    dev.ioctl(C.DIOCRINADEFINE, io)
    return io.pfrio_nadd


def add_rule(dev, ticket, r, pool=(), anchor="", anchor_call=""):
    """pfctl_load_rule: DIOCBEGINADDRS, DIOCADDADDR per pool address, DIOCADDRULE."""
    pp = S.pfioc_pooladdr()
    dev.ioctl(C.DIOCBEGINADDRS, pp)
    pool_ticket = pp.ticket
    for pa in pool:
        q = S.pfioc_pooladdr(ticket=pool_ticket, af=r.af)
        q.addr = pa
        dev.ioctl(C.DIOCADDADDR, q)
    pr = S.pfioc_rule(ticket=ticket, pool_ticket=pool_ticket)
    pr.anchor = _cbytes(anchor)
    pr.anchor_call = _cbytes(anchor_call)
    pr.rule = r
    dev.ioctl(C.DIOCADDRULE, pr)


class Ruleset:
    """A parsed configuration for one anchor: tables and rules, loaded atomically (the whole
    transaction is rolled back if any step fails, as pfctl does)."""

    def __init__(self, anchor=""):
        self.anchor = anchor
        self.tables = []        # (name, [cidr], flags)
        self.rules = []         # (pf_rule, [pf_pooladdr])

    def table(self, name, addrs=(), flags=0):
        self.tables.append((name, list(addrs), flags))
        return self

    def add(self, r, pool=()):
        self.rules.append((r, list(pool)))
        return self

    def load(self, dev):
        t = Transaction(dev, self.anchor, tables=True).begin()
        try:
            for name, addrs, flags in self.tables:
                define_table(dev, t.ticket(PF_RULESET_TABLE), name, addrs, flags, self.anchor)
            # pfctl loads the rulesets in this order, each rule with its pool
            for rs_num in (PF_RULESET_SCRUB, PF_RULESET_NAT, PF_RULESET_RDR, PF_RULESET_BINAT,
                           PF_RULESET_FILTER):
                for r, pool in self.rules:
                    if RULESET_OF_ACTION[r.action] == rs_num:
                        add_rule(dev, t.ticket(rs_num), r, pool, self.anchor)
            t.commit()
        except BaseException:
            t.rollback()
            raise


# -- reading back ------------------------------------------------------------------------------

def read_rules(dev, action, anchor=""):
    """[(pf_rule, [pf_pooladdr])] of the active ruleset holding `action` (PF_PASS: filter,
    PF_NAT, PF_RDR, PF_BINAT, PF_SCRUB): DIOCGETRULES, then DIOCGETRULE and pfctl_get_pool
    (DIOCGETADDRS, DIOCGETADDR) per rule."""
    pr = S.pfioc_rule()
    pr.anchor = _cbytes(anchor)
    pr.rule.action = action
    dev.ioctl(C.DIOCGETRULES, pr)
    n, ticket = pr.nr, pr.ticket
    out = []
    for nr in range(n):
        q = S.pfioc_rule(ticket=ticket, nr=nr)
        q.anchor = _cbytes(anchor)
        q.rule.action = action
        dev.ioctl(C.DIOCGETRULE, q)
        pp = S.pfioc_pooladdr(r_action=action, r_num=nr, ticket=ticket)
        pp.anchor = _cbytes(anchor)
        dev.ioctl(C.DIOCGETADDRS, pp)
        pool = []
        for i in range(pp.nr):
            pp.nr = i
            dev.ioctl(C.DIOCGETADDR, pp)
            pool.append(pp.addr.copy())
        out.append((q.rule.copy(), pool))
    return out


def _sized(dev, cmd, io, etype, fill=None):
    """A DIOCR* list: ask for the size with an empty buffer, then fetch (retrying on growth)."""
    size = 0
    while True:
        buf = (etype * max(size, 1))()
        io.pfrio_buffer = ctypes.addressof(buf)
        io.pfrio_esize = ctypes.sizeof(etype)
        io.pfrio_size = size
        dev.ioctl(cmd, io)
        if io.pfrio_size <= size:
            return [etype.from_buffer_copy(buf[i]) for i in range(io.pfrio_size)]
        size = io.pfrio_size


def get_tables(dev, anchor=""):
    """DIOCRGETTABLES -> [pfr_table] of `anchor`."""
    io = S.pfioc_table()
    io.pfrio_table.pfrt_anchor = _cbytes(anchor)
    return _sized(dev, C.DIOCRGETTABLES, io, S.pfr_table)


def get_table_addrs(dev, name, anchor=""):
    """DIOCRGETADDRS -> [pfr_addr] of table `name`."""
    io = S.pfioc_table()
    io.pfrio_table.pfrt_anchor = _cbytes(anchor)
    io.pfrio_table.pfrt_name = _cbytes(name)
    return _sized(dev, C.DIOCRGETADDRS, io, S.pfr_addr)


__all__ = ["RULESET_OF_ACTION", "set_addr", "rule", "pool_addr", "Transaction", "define_table",
           "add_rule", "Ruleset", "read_rules", "get_tables", "get_table_addrs"]
