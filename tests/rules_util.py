"""Helpers for the ruleset tests: building rules and pools with the ctypes client, the ioctl
sequences pfctl issues (pf-abi.md §5, §5.1) and reference computations of what the kernel
derives (skip steps, pf_chksum), written from FreeBSD 12.1's description, independently of the
daemon's code."""
import ctypes
import hashlib
import ipaddress
import socket
import struct

import pytest

from pfkern.client import (AF_INET, DIOCADDADDR, DIOCADDRULE, DIOCBEGINADDRS,
                           DIOCGETADDR, DIOCGETADDRS, DIOCGETRULE, DIOCGETRULES, DIOCGETRULESET,
                           DIOCGETRULESETS, DIOCRINADEFINE, DIOCSETDEBUG, DIOCSETHOSTID,
                           DIOCSETLIMIT, DIOCSETSTATUSIF, DIOCSETTIMEOUT, DIOCXBEGIN,
                           DIOCXCOMMIT, DIOCXROLLBACK, PF_ADDR_ADDRMASK, PF_ADDR_DYNIFTL,
                           PF_ADDR_RANGE, PF_ADDR_TABLE, PF_BINAT, PF_NAT, PF_PASS, PF_RDR,
                           PF_RULESET_BINAT, PF_RULESET_FILTER, PF_RULESET_NAT, PF_RULESET_RDR,
                           PF_RULESET_SCRUB, PF_RULESET_TABLE, PF_SCRUB, PFR_FLAG_ADDRSTOO,
                           pf_pooladdr, pf_rule, pfioc_limit, pfioc_if, pfioc_pooladdr,
                           pfioc_rule, pfioc_ruleset, pfioc_table, pfioc_tm, pfioc_trans,
                           pfioc_trans_e, pfr_addr)

TRANS_ESIZE = ctypes.sizeof(pfioc_trans_e)
SKIP_END = 0xFFFFFFFF
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
PF_OP_EQ = 2
# pf_get_ruleset_number: the ruleset of each rule action.
RULESET_OF_ACTION = {0: 1, 1: 1, 2: 0, 3: 0, 4: 2, 5: 2, 6: 3, 7: 3, 8: 4, 9: 4}


from conftest import errno_of  # noqa: F401,E402  (re-exported)


def cbytes(s):
    return s.encode() if isinstance(s, str) else bytes(s)


# -- transactions ----------------------------------------------------------------------------

def trans_array(elements):
    """elements: (rs_num, anchor[, ticket]) -> a pfioc_trans_e array."""
    arr = (pfioc_trans_e * max(len(elements), 1))()
    for i, e in enumerate(elements):
        arr[i].rs_num = e[0]
        arr[i].anchor = cbytes(e[1])
        arr[i].ticket = e[2] if len(e) > 2 else 0
    return arr


def trans(dev, cmd, elements, esize=TRANS_ESIZE, size=None, array=None):
    """Issue DIOCX* over elements; returns [(rs_num, anchor, ticket)] as the array reads after."""
    arr = trans_array(elements)
    io = pfioc_trans(size=len(elements) if size is None else size, esize=esize,
                     array=ctypes.addressof(arr) if array is None else array)
    dev.ioctl(cmd, io)
    return [(e[0], e[1], arr[i].ticket) for i, e in enumerate(elements)]


def xbegin(dev, elements):
    return trans(dev, DIOCXBEGIN, elements)


def xcommit(dev, elements):
    trans(dev, DIOCXCOMMIT, elements)


def xrollback(dev, elements):
    trans(dev, DIOCXROLLBACK, elements)


def ruleset_elements(anchor="", tables=False):
    """The transaction elements pfctl builds for one anchor (ALTQ left out: no ALTQ here)."""
    kinds = [PF_RULESET_NAT, PF_RULESET_BINAT, PF_RULESET_RDR, PF_RULESET_SCRUB, PF_RULESET_FILTER]
    if tables:
        kinds.append(PF_RULESET_TABLE)
    return [(k, anchor) for k in kinds]


def ticket_of(elements, rs_num, anchor=""):
    """pfctl_get_ticket."""
    for e in elements:
        if e[0] == rs_num and e[1] == anchor:
            return e[2]
    raise KeyError((rs_num, anchor))


def load(dev, rules, anchor=""):
    """XBEGIN, add (rule, pool) pairs, XCOMMIT for one anchor; returns the elements."""
    elements = xbegin(dev, ruleset_elements(anchor))
    for item in rules:
        r, pool = item if isinstance(item, tuple) else (item, ())
        add_rule(dev, r, ticket_of(elements, RULESET_OF_ACTION[r.action], anchor), anchor, pool)
    xcommit(dev, elements)
    return elements


def flush(dev, anchor=""):
    xcommit(dev, xbegin(dev, ruleset_elements(anchor)))


# -- building rules and pools ----------------------------------------------------------------

def set_addr(wrap, spec):
    """spec: "a.b.c.d[/n]" or IPv6, "lo - hi" (a range), "addr&mask" (any mask, contiguous or
    not), "<table>", "(ifname)", or None (any)."""
    if spec is None:
        wrap.type = PF_ADDR_ADDRMASK
        return
    if spec.startswith("<"):
        wrap.type = PF_ADDR_TABLE
        wrap.v.tblname = spec[1:-1].encode()
        return
    if spec.startswith("("):
        wrap.type = PF_ADDR_DYNIFTL
        wrap.v.ifname = spec[1:-1].encode()
        ctypes.memmove(ctypes.addressof(wrap.v.a.mask), b"\xff" * 16, 16)
        return
    if " - " in spec or "&" in spec:
        first, second = (x.strip() for x in spec.replace(" - ", "&").split("&"))
        wrap.type = PF_ADDR_RANGE if " - " in spec else PF_ADDR_ADDRMASK
        wrap.v.a.addr.set(ipaddress.ip_address(first))
        wrap.v.a.mask.set(ipaddress.ip_address(second))
        return
    net = ipaddress.ip_network(spec, strict=False)
    wrap.type = PF_ADDR_ADDRMASK
    wrap.v.a.addr.set(net.network_address)
    wrap.v.a.mask.set(net.netmask)


def make_rule(action=PF_PASS, af=AF_INET, proto=0, src=None, dst=None, dport=None, ifname="",
              direction=0, quick=0, label="", keep_state=0, **fields):
    """A pf_rule as pfctl's parser fills one (rtableid -1 = none)."""
    r = pf_rule()
    r.action = action
    r.af = af
    r.proto = proto
    r.direction = direction
    r.quick = quick
    r.keep_state = keep_state
    r.rtableid = -1
    r.ifname = ifname.encode()
    r.label = label.encode()
    set_addr(r.src.addr, src)
    set_addr(r.dst.addr, dst)
    if dport is not None:
        r.dst.port_op = PF_OP_EQ
        r.dst.port[0] = socket.htons(dport)
    for name, value in fields.items():
        setattr(r, name, value)
    return r


def pool_addr(spec, ifname=""):
    pa = pf_pooladdr()
    set_addr(pa.addr, spec)
    pa.ifname = ifname.encode()
    return pa


def begin_addrs(dev):
    pp = pfioc_pooladdr()
    dev.ioctl(DIOCBEGINADDRS, pp)
    return pp.ticket


def add_addr(dev, ticket, pa, af=AF_INET):
    pp = pfioc_pooladdr(ticket=ticket, af=af)
    pp.addr = pa
    dev.ioctl(DIOCADDADDR, pp)


def add_rule(dev, r, ticket, anchor="", pool=(), anchor_call="", pool_ticket=None):
    """pfctl_load_rule: DIOCBEGINADDRS, DIOCADDADDR per pool address, DIOCADDRULE."""
    pticket = begin_addrs(dev)
    for pa in pool:
        add_addr(dev, pticket, pa, r.af)
    pr = pfioc_rule(ticket=ticket, pool_ticket=pticket if pool_ticket is None else pool_ticket)
    pr.anchor = cbytes(anchor)
    pr.anchor_call = cbytes(anchor_call)
    pr.rule = r
    dev.ioctl(DIOCADDRULE, pr)
    return pr


# -- reading back, as pfctl -s does ----------------------------------------------------------

def get_rules(dev, anchor, action):
    pr = pfioc_rule()
    pr.anchor = cbytes(anchor)
    pr.rule.action = action
    dev.ioctl(DIOCGETRULES, pr)
    return pr.nr, pr.ticket


def get_pool(dev, anchor, ticket, action, nr):
    """pfctl_get_pool: DIOCGETADDRS then DIOCGETADDR per address."""
    pp = pfioc_pooladdr(r_action=action, r_num=nr, ticket=ticket)
    pp.anchor = cbytes(anchor)
    dev.ioctl(DIOCGETADDRS, pp)
    out = []
    for i in range(pp.nr):
        pp.nr = i
        dev.ioctl(DIOCGETADDR, pp)
        out.append(pp.addr.copy())
    return out


def read_ruleset(dev, anchor, action, clear=False):
    """[(pfioc_rule, [pf_pooladdr])] of one active ruleset, with pfctl's ioctl sequence."""
    n, ticket = get_rules(dev, anchor, action)
    out = []
    for nr in range(n):
        pr = pfioc_rule(ticket=ticket, nr=nr, action=1 if clear else 0)
        pr.anchor = cbytes(anchor)
        pr.rule.action = action
        dev.ioctl(DIOCGETRULE, pr)
        out.append((pr, get_pool(dev, anchor, ticket, action, nr)))
    return out


def show_rules(dev, anchor="", recurse=False):
    """pfctl [-a anchor] -s rules: scrub then filter rules; an anchor rule is expanded in place
    when its call's last component starts with "_" (inline anonymous anchors) or with -a 'x/*'
    (recurse). Returns [(path, pfioc_rule, pool)]."""
    out = []
    for action in (PF_SCRUB, PF_PASS):
        for pr, pool in read_ruleset(dev, anchor, action):
            out.append((anchor, pr, pool))
            last = pr.anchor_call.decode().rsplit("/", 1)[-1]
            if action == PF_PASS and last and (last.startswith("_") or recurse):
                sub = f"{anchor}/{last}" if anchor else last
                out.extend(show_rules(dev, sub, recurse))
    return out


def show_nat(dev, anchor=""):
    """pfctl -s nat: nat, rdr, binat rules in that order."""
    return [(anchor, pr, pool) for action in (PF_NAT, PF_RDR, PF_BINAT)
            for pr, pool in read_ruleset(dev, anchor, action)]


def anchors(dev, path="", recursive=False):
    """pfctl -s Anchors [-v]: DIOCGETRULESETS, DIOCGETRULESET per child."""
    pr = pfioc_ruleset()
    pr.path = cbytes(path)
    dev.ioctl(DIOCGETRULESETS, pr)
    names = []
    for nr in range(pr.nr):
        q = pfioc_ruleset(nr=nr)
        q.path = cbytes(path)
        dev.ioctl(DIOCGETRULESET, q)
        sub = f"{path}/{q.name.decode()}" if path else q.name.decode()
        names.append(sub)
        if recursive:
            names.extend(anchors(dev, sub, True))
    return names


# -- comparing what was loaded with what is read back ----------------------------------------

# Fields the kernel sets or replaces (pf-abi.md §2.6): not compared with what was loaded.
KERNEL_SET = {"skip", "entries", "rpool.list", "rpool.cur", "evaluations", "packets", "bytes",
              "kif", "anchor", "overload_tbl", "nr", "cuid", "cpid", "states_cur", "states_tot",
              "src_nodes", "tag", "match_tag", "anchor_relative", "anchor_wildcard",
              "u_states_cur", "u_states_tot", "u_src_nodes", "src.addr.p", "dst.addr.p",
              "addr.p", "kif"}


def fields(obj, prefix=""):
    """(dotted name, value) of every leaf of a ctypes struct; unions compare as raw bytes."""
    for name, _type in obj._fields_:
        path = f"{prefix}{name}"
        value = getattr(obj, name)
        if isinstance(value, ctypes.Union):
            yield path, bytes(value)
        elif isinstance(value, ctypes.Structure):
            yield from fields(value, path + ".")
        elif isinstance(value, ctypes.Array):
            yield path, bytes(value)
        else:
            yield path, value


def diff_loaded(loaded, read):
    """Names of the fields that differ, kernel-set ones excluded."""
    got = dict(fields(read))
    return [name for name, value in fields(loaded)
            if name not in KERNEL_SET and not any(name.startswith(k + ".") for k in KERNEL_SET)
            and got[name] != value]


# -- what the kernel derives, computed independently -----------------------------------------

def _wrap_key(w):
    """What pf_addr_wrap_neq compares for one address."""
    raw = bytes(w.v)
    if w.type in (PF_ADDR_ADDRMASK, 5):
        return (w.type, raw[:32])
    if w.type == PF_ADDR_DYNIFTL:
        return (w.type, raw[:16].split(b"\0")[0], w.iflags, raw[16:32])
    if w.type == PF_ADDR_TABLE:
        return (w.type, raw[:32].split(b"\0")[0])
    return (w.type,)


def expected_skips(rules):
    """pf_calc_skip_steps over read-back pf_rules: skip[i] of each rule as rule numbers."""
    keys = [
        lambda r: (r.ifname, r.ifnot),
        lambda r: r.direction,
        lambda r: r.af,
        lambda r: r.proto,
        lambda r: (r.src.neg, _wrap_key(r.src.addr)),
        lambda r: (bytes(r.src.port), r.src.port_op),
        lambda r: (r.dst.neg, _wrap_key(r.dst.addr)),
        lambda r: (bytes(r.dst.port), r.dst.port_op),
    ]
    out = [[None] * 8 for _ in rules]
    for i, key in enumerate(keys):
        for n in range(len(rules)):
            j = n + 1
            while j < len(rules) and key(rules[j]) == key(rules[n]):
                j += 1
            out[n][i] = j if j < len(rules) else SKIP_END
    return out


def _hash_addr(a):
    out = bytes([a.addr.type])
    raw = bytes(a.addr.v)
    if a.addr.type == PF_ADDR_DYNIFTL:
        out += raw[:16] + bytes([a.addr.iflags])
    elif a.addr.type == PF_ADDR_TABLE:
        out += raw[:32]
    elif a.addr.type == PF_ADDR_ADDRMASK:
        out += raw[:32]
    return out + bytes(a.port) + bytes([a.neg, a.port_op])


def rule_hash_bytes(r):
    """The bytes pf_hash_rule feeds MD5 for one rule (FreeBSD 12.1 pf_ioctl.c)."""
    cstr = lambda b: bytes(b).split(b"\0")[0]
    out = _hash_addr(r.src) + _hash_addr(r.dst)
    out += cstr(r.label) + cstr(r.ifname) + cstr(r.match_tagname)
    out += struct.pack("!HIIIIBIIBI", r.match_tag, r.os_fingerprint, r.prob, r.uid.uid[0],
                       r.uid.uid[1], r.uid.op, r.gid.gid[0], r.gid.gid[1], r.gid.op, r.rule_flag)
    out += bytes([r.action, r.direction, r.af, r.quick, r.ifnot, r.match_tag_not, r.natpass,
                  r.keep_state, r.proto, r.type, r.code, r.flags, r.flagset, r.allow_opts, r.rt,
                  r.tos])
    return out


def expected_chksum(rules):
    return hashlib.md5(b"".join(rule_hash_bytes(r) for r in rules)).digest()


# -- the pfctl -f replay (pf-abi.md §5.1) ----------------------------------------------------

class PfctlAnchor:
    """pfctl's in-memory anchor: rules per ruleset as (pf_rule, pool, call) where call is ""
    (plain rule), a PfctlAnchor (inline "anchor name { ... }") or a string (anchor "path")."""

    def __init__(self, name=""):
        self.name = name
        self.rules = {k: [] for k in range(5)}

    def add(self, r, pool=(), call=""):
        self.rules[RULESET_OF_ACTION[r.action]].append((r, list(pool), call))
        return self


class PfctlLoad:
    """Issues what `pfctl -f` issues for a parsed configuration, recording every call."""

    def __init__(self, dev, tables=None, options=None, files=None):
        self.dev = dev
        self.tables = tables or []          # (anchor, name, flags, [cidr...]) defined at parse time
        self.options = options              # dict for step g, or None
        self.files = files or {}            # "load anchor" path -> PfctlAnchor
        self.trans = []                     # [(rs_num, path, ticket)], pfctl's trans buffer
        self.with_tables = tables is not None

    def ruleset_trans(self, path):
        """pfctl_ruleset_trans: append the anchor's elements and XBEGIN only those."""
        new = ruleset_elements(path, self.with_tables)
        self.trans.extend(xbegin(self.dev, new))

    def ina_define(self, anchor, name, flags, addrs):
        buf = (pfr_addr * max(len(addrs), 1))(*[pfr_addr.of(cidr) for cidr in addrs])
        io = pfioc_table(pfrio_buffer=ctypes.addressof(buf), pfrio_esize=ctypes.sizeof(pfr_addr),
                         pfrio_size=len(addrs), pfrio_flags=PFR_FLAG_ADDRSTOO if addrs else 0,
                         pfrio_ticket=ticket_of(self.trans, PF_RULESET_TABLE, anchor))
        io.pfrio_table.pfrt_anchor = anchor.encode()
        io.pfrio_table.pfrt_name = name.encode()
        io.pfrio_table.pfrt_flags = flags
        self.dev.ioctl(DIOCRINADEFINE, io)

    def load_ruleset(self, anchor, rs_num, path, depth):
        """pfctl_load_ruleset."""
        if depth:
            path = f"{path}/{anchor.name}" if path else anchor.name
            if anchor.rules[rs_num]:
                self.ruleset_trans(path)
        for r, pool, call in anchor.rules[rs_num]:
            name = call.name if isinstance(call, PfctlAnchor) else call
            add_rule(self.dev, r, ticket_of(self.trans, rs_num, path), path, pool, name)
            if isinstance(call, PfctlAnchor):
                self.load_ruleset(call, rs_num, path, depth + 1)

    def rules(self, main, path=""):
        """pfctl_rules for one file: begin, parse-time tables, rulesets, load anchors."""
        self.ruleset_trans(path)
        for anchor, name, flags, addrs in self.tables:
            if anchor == path:
                self.ina_define(anchor, name, flags, addrs)
        for rs_num in (PF_RULESET_SCRUB, PF_RULESET_NAT, PF_RULESET_RDR, PF_RULESET_BINAT,
                       PF_RULESET_FILTER):
            self.load_ruleset(main, rs_num, path, 0)
        if not path:
            for sub, anchor in self.files.items():
                self.rules(anchor, sub)

    def load_options(self):
        o = self.options
        for i, limit in enumerate(o["limits"]):
            self.dev.ioctl(DIOCSETLIMIT, pfioc_limit(index=i, limit=limit))
        for i, seconds in enumerate(o["timeouts"]):
            self.dev.ioctl(DIOCSETTIMEOUT, pfioc_tm(timeout=i, seconds=seconds))
        self.dev.ioctl(DIOCSETDEBUG, ctypes.c_uint32(o["debug"]))
        self.dev.ioctl(DIOCSETSTATUSIF, pfioc_if(ifname=o["loginterface"].encode()))
        self.dev.ioctl(DIOCSETHOSTID, ctypes.c_uint32(socket.htonl(o["hostid"])))

    def run(self, main):
        try:
            self.rules(main)
            if self.options is not None:
                self.load_options()
            trans(self.dev, DIOCXCOMMIT, self.trans)
        except OSError:
            trans(self.dev, DIOCXROLLBACK, self.trans)
            raise
