# cython: language_level=3
"""Rules and pool addresses in the form the core keeps them (FreeBSD's struct pf_rule and struct
pf_pooladdr, read from net/pfvar.h), and the per-ruleset computations FreeBSD does at commit:
skip steps (pf.c pf_calc_skip_steps) and the ruleset checksum (pf_ioctl.c pf_hash_rule).

A Rule holds the caller's pf_rule bytes with the kernel-set fields (nr, tags, anchor flags,
cuid/cpid, skip step numbers) and the live counters in place, so the packet engine can copy a
committed ruleset into a C array as is; its Python attributes link what a C struct cannot hold
(the anchor it calls, its pool, table handles).
"""
import hashlib

from libc.string cimport memcpy, memset, strncmp, memcmp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pfkern.pf cimport PfCore
from pfkern.pf_util cimport af_in, cstr

cdef extern from "arpa/inet.h" nogil:
    uint32_t htonl(uint32_t)
    uint16_t htons(uint16_t)

AF_INET = 2
AF_INET6 = 10
AF_INET6_BSD = 28           # accepted on input (DESIGN.md §2)

RULE_SIZE = sizeof(pf_rule)
POOLADDR_SIZE = sizeof(pf_pooladdr)
SKIP_END = 0xffffffff       # skip[i].nr of a step that runs off the end

# Non-zero stand-ins for the kernel pointers FreeBSD copies out raw (pf-abi.md H5): readers
# test them for NULL only.
cdef uint64_t KPTR_KIF = 0xfffff80200000000
cdef uint64_t KPTR_ANCHOR = 0xfffff80300000000
cdef uint64_t KPTR_TABLE = 0xfffff80400000000
cdef uint64_t KPTR_COUNTER = 0xfffff80500000000
cdef uint64_t KPTR_POOLADDR = 0xfffff80600000000


cdef class PoolAddr:
    """One pf_pooladdr of a rule's pool or of the pool buffer."""

    def __init__(self, data=None, int af=0):
        if data is not None:
            if len(data) != sizeof(pf_pooladdr):
                raise ValueError("pf_pooladdr has %d bytes" % sizeof(pf_pooladdr))
            memcpy(&self.pa, <const char *>data, sizeof(pf_pooladdr))
        self.af = af
        self.table = None

    def to_bytes(self):
        return (<char *>&self.pa)[:sizeof(pf_pooladdr)]

    @property
    def type(self):
        return self.pa.addr.type

    @property
    def tblname(self):
        return cstr(self.pa.addr.v.tblname, sizeof(self.pa.addr.v.tblname) - 1)

    @property
    def ifname(self):
        return cstr(self.pa.ifname, sizeof(self.pa.ifname) - 1)

    @property
    def family(self):
        return af_in(self.af)

    def addr_bytes(self):
        return (<char *>&self.pa.addr.v.a.addr)[:16]

    cdef void copyout(self, pf_pooladdr *out):
        memcpy(out, &self.pa, sizeof(pf_pooladdr))
        memset(&out.entries, 0, sizeof(out.entries))
        out.kif = <void *>KPTR_KIF if self.pa.ifname[0] else NULL


cdef class Rule:
    """One rule; see the module docstring."""

    def __init__(self, data=None):
        if data is not None:
            if len(data) != sizeof(pf_rule):
                raise ValueError("pf_rule has %d bytes" % sizeof(pf_rule))
            memcpy(&self.r, <const char *>data, sizeof(pf_rule))
        self.anchor = None
        self.pool = []
        self.src_table = None
        self.dst_table = None
        self.overload_table = None

    def to_bytes(self):
        return (<char *>&self.r)[:sizeof(pf_rule)]

    cdef uint64_t ext_pending(self) noexcept nogil:
        """Evaluations the engine counted and r.evaluations does not hold yet."""
        cdef uint64_t n = self.ext_evals[0] if self.ext_evals != NULL else 0
        cdef uint32_t j
        if self.ext_diff != NULL:
            for j in range(self.ext_pos + 1):
                n += self.ext_diff[j]
        return n

    cdef void ext_clear(self) noexcept nogil:
        cdef uint64_t v = 0
        cdef uint32_t j
        if self.ext_evals != NULL:
            self.ext_evals[0] = 0
        if self.ext_diff != NULL:
            # take this member's share out of the range counts without touching its neighbours
            for j in range(self.ext_pos + 1):
                v += self.ext_diff[j]
            self.ext_diff[self.ext_pos] -= v
            self.ext_diff[self.ext_pos + 1] += v

    cdef void copyout(self, pf_rule *out):
        """The rule as DIOCGETRULE copies it out, kernel pointers as tokens (the caller then
        fills anchor_call and the address counts)."""
        memcpy(out, &self.r, sizeof(pf_rule))
        memset(&out.entries, 0, sizeof(out.entries))
        memset(&out.rpool.list, 0, sizeof(out.rpool.list))
        out.rpool.cur = <void *>KPTR_POOLADDR if self.pool else NULL
        out.kif = <void *>KPTR_KIF if self.r.ifname[0] else NULL
        out.anchor = <void *>KPTR_ANCHOR if self.anchor is not None else NULL
        out.overload_tbl = <void *>KPTR_TABLE if self.overload_table is not None else NULL
        out.states_cur = <void *>KPTR_COUNTER
        out.states_tot = <void *>(KPTR_COUNTER + 8)
        out.src_nodes = <void *>(KPTR_COUNTER + 16)
        out.evaluations += self.ext_pending()

    # -- what the ruleset logic reads ------------------------------------------------------
    @property
    def action(self):
        return self.r.action

    @property
    def direction(self):
        return self.r.direction

    @property
    def af(self):
        return self.r.af

    @property
    def family(self):
        return af_in(self.r.af)

    @property
    def rt(self):
        return self.r.rt

    @property
    def log(self):
        return self.r.log

    @property
    def return_icmp(self):
        return self.r.return_icmp

    @property
    def scrub_flags(self):
        return self.r.scrub_flags

    @property
    def set_prio(self):
        return (self.r.set_prio[0], self.r.set_prio[1])

    @property
    def rtableid(self):
        return self.r.rtableid

    @property
    def ifname(self):
        return cstr(self.r.ifname, sizeof(self.r.ifname) - 1)

    @property
    def label(self):
        return cstr(self.r.label, sizeof(self.r.label) - 1)

    @property
    def tagname(self):
        return cstr(self.r.tagname, sizeof(self.r.tagname) - 1)

    @property
    def match_tagname(self):
        return cstr(self.r.match_tagname, sizeof(self.r.match_tagname) - 1)

    @property
    def overload_tblname(self):
        return cstr(self.r.overload_tblname, sizeof(self.r.overload_tblname) - 1)

    @property
    def src_type(self):
        return self.r.src.addr.type

    @property
    def dst_type(self):
        return self.r.dst.addr.type

    @property
    def src_tblname(self):
        return cstr(self.r.src.addr.v.tblname, sizeof(self.r.src.addr.v.tblname) - 1)

    @property
    def dst_tblname(self):
        return cstr(self.r.dst.addr.v.tblname, sizeof(self.r.dst.addr.v.tblname) - 1)

    @property
    def counters(self):
        """(evaluations, packets in/out, bytes in/out, states_cur, states_tot, src_nodes)."""
        cdef uint64_t ev = self.r.evaluations + self.ext_pending()
        return (ev, self.r.packets[0], self.r.packets[1], self.r.bytes[0],
                self.r.bytes[1], self.r.u_states_cur, self.r.u_states_tot, self.r.u_src_nodes)

    # -- what the kernel sets ----------------------------------------------------------------
    @property
    def nr(self):
        return self.r.nr

    @nr.setter
    def nr(self, uint32_t value):
        self.r.nr = value

    @property
    def logif(self):
        return self.r.logif

    @logif.setter
    def logif(self, uint8_t value):
        self.r.logif = value

    @property
    def tag(self):
        return self.r.tag

    @tag.setter
    def tag(self, uint16_t value):
        self.r.tag = value

    @property
    def match_tag(self):
        return self.r.match_tag

    @match_tag.setter
    def match_tag(self, uint16_t value):
        self.r.match_tag = value

    @property
    def anchor_relative(self):
        return self.r.anchor_relative

    @anchor_relative.setter
    def anchor_relative(self, uint8_t value):
        self.r.anchor_relative = value

    @property
    def anchor_wildcard(self):
        return self.r.anchor_wildcard

    @anchor_wildcard.setter
    def anchor_wildcard(self, uint8_t value):
        self.r.anchor_wildcard = value

    def set_creator(self, uint32_t uid, int pid):
        self.r.cuid = uid
        self.r.cpid = pid

    def clear_counters(self, bint states_tot=True):
        """What DIOCGETRULE with PF_GET_CLR_CNTR clears (states_cur and src_nodes stay);
        DIOCCLRRULECTRS leaves states_tot too."""
        self.r.evaluations = 0
        self.ext_clear()
        self.r.packets[0] = self.r.packets[1] = 0
        self.r.bytes[0] = self.r.bytes[1] = 0
        if states_tot:
            self.r.u_states_tot = 0

    def reset_counters(self):
        """A new rule: its counters start at zero whatever the caller sent."""
        self.clear_counters()
        self.r.u_states_cur = 0
        self.r.u_src_nodes = 0

    def pool_changed(self):
        """After a DIOCCHANGEADDR: the round-robin counter restarts at the first address."""
        cdef PoolAddr first
        if not self.pool:
            return
        first = self.pool[0]
        memcpy(&self.r.rpool.counter, &first.pa.addr.v.a.addr,
               4 if first.family == AF_INET else sizeof(pf_addr))


# -- skip steps ---------------------------------------------------------------------------------

cdef bint addr_wrap_neq(pf_addr_wrap *a, pf_addr_wrap *b):
    """pf_addr_wrap_neq, with the kernel objects compared by what identifies them: a table by
    its name (both rules are in one ruleset), a dynamic address by interface, flags and mask."""
    if a.type != b.type:
        return True
    if a.type == PF_ADDR_ADDRMASK or a.type == PF_ADDR_RANGE:
        return memcmp(&a.v.a, &b.v.a, sizeof(a.v.a)) != 0
    if a.type == PF_ADDR_DYNIFTL:
        return (strncmp(a.v.ifname, b.v.ifname, sizeof(a.v.ifname)) != 0 or a.iflags != b.iflags
                or memcmp(&a.v.a.mask, &b.v.a.mask, sizeof(pf_addr)) != 0)
    if a.type == PF_ADDR_NOROUTE or a.type == PF_ADDR_URPFFAILED:
        return False
    if a.type == PF_ADDR_TABLE:
        return strncmp(a.v.tblname, b.v.tblname, sizeof(a.v.tblname)) != 0
    return True


cdef inline bint ports_neq(pf_rule_addr *a, pf_rule_addr *b):
    return a.port[0] != b.port[0] or a.port[1] != b.port[1] or a.port_op != b.port_op


cdef void set_skip(list rules, Py_ssize_t *head, int i, Py_ssize_t target):
    """Rules from head[i] up to target skip to target (its nr, or SKIP_END past the end)."""
    cdef Rule rule
    cdef uint32_t nr = SKIP_END if target >= len(rules) else (<Rule>rules[target]).r.nr
    while head[i] < target:
        rule = rules[head[i]]
        rule.r.skip[i].ptr = NULL
        rule.r.skip[i].nr = nr
        head[i] += 1


def calc_skip_steps(list rules):
    """pf_calc_skip_steps over one rule queue, numbered 0..n-1."""
    cdef Py_ssize_t head[8]
    cdef Py_ssize_t i, n = len(rules)
    cdef Rule cur, prev
    cdef pf_rule *c
    cdef pf_rule *p
    for i in range(PF_SKIP_COUNT):
        head[i] = 0
    for i in range(1, n):
        cur = rules[i]
        prev = rules[i - 1]
        c = &cur.r
        p = &prev.r
        if strncmp(c.ifname, p.ifname, sizeof(c.ifname)) != 0 or c.ifnot != p.ifnot:
            set_skip(rules, head, PF_SKIP_IFP, i)
        if c.direction != p.direction:
            set_skip(rules, head, PF_SKIP_DIR, i)
        if c.af != p.af:
            set_skip(rules, head, PF_SKIP_AF, i)
        if c.proto != p.proto:
            set_skip(rules, head, PF_SKIP_PROTO, i)
        if c.src.neg != p.src.neg or addr_wrap_neq(&c.src.addr, &p.src.addr):
            set_skip(rules, head, PF_SKIP_SRC_ADDR, i)
        if ports_neq(&c.src, &p.src):
            set_skip(rules, head, PF_SKIP_SRC_PORT, i)
        if c.dst.neg != p.dst.neg or addr_wrap_neq(&c.dst.addr, &p.dst.addr):
            set_skip(rules, head, PF_SKIP_DST_ADDR, i)
        if ports_neq(&c.dst, &p.dst):
            set_skip(rules, head, PF_SKIP_DST_PORT, i)
    for i in range(PF_SKIP_COUNT):
        set_skip(rules, head, i, n)


def renumber(list rules):
    cdef Py_ssize_t i
    for i in range(len(rules)):
        (<Rule>rules[i]).r.nr = i


# -- the ruleset checksum (pf_setup_pfsync_matching) --------------------------------------------

# Most bytes one rule adds to the hash: two addresses, three strings and the fixed fields.
cdef enum:
    HASH_ADDR_MAX = 1 + 32 + 2 + 2 + 1 + 1
    HASH_RULE_MAX = 2 * HASH_ADDR_MAX + 64 + 16 + 64 + 2 + 4 * 9 + 2 + 16


cdef inline size_t put(uint8_t *buf, size_t at, const void *src, size_t n):
    memcpy(buf + at, src, n)
    return at + n


cdef inline size_t put32(uint8_t *buf, size_t at, uint32_t v):
    v = htonl(v)
    return put(buf, at, &v, 4)


cdef inline size_t put_str(uint8_t *buf, size_t at, const char *s, size_t size):
    cdef size_t n = 0
    while n < size and s[n] != 0:
        n += 1
    return put(buf, at, s, n)


cdef size_t hash_rule_addr(uint8_t *buf, size_t at, pf_rule_addr *a):
    at = put(buf, at, &a.addr.type, 1)
    if a.addr.type == PF_ADDR_DYNIFTL:
        at = put(buf, at, a.addr.v.ifname, sizeof(a.addr.v.ifname))
        at = put(buf, at, &a.addr.iflags, 1)
    elif a.addr.type == PF_ADDR_TABLE:
        at = put(buf, at, a.addr.v.tblname, sizeof(a.addr.v.tblname))
    elif a.addr.type == PF_ADDR_ADDRMASK:
        at = put(buf, at, &a.addr.v.a.addr, 16)
        at = put(buf, at, &a.addr.v.a.mask, 16)
    at = put(buf, at, &a.port[0], 2)
    at = put(buf, at, &a.port[1], 2)
    at = put(buf, at, &a.neg, 1)
    return put(buf, at, &a.port_op, 1)


cdef size_t hash_rule(uint8_t *buf, size_t at, pf_rule *r):
    """The bytes pf_hash_rule feeds to MD5 for one rule, in its order."""
    cdef uint16_t match_tag = htons(r.match_tag)
    cdef uint8_t tail[16]
    at = hash_rule_addr(buf, at, &r.src)
    at = hash_rule_addr(buf, at, &r.dst)
    at = put_str(buf, at, r.label, sizeof(r.label))
    at = put_str(buf, at, r.ifname, sizeof(r.ifname))
    at = put_str(buf, at, r.match_tagname, sizeof(r.match_tagname))
    at = put(buf, at, &match_tag, 2)
    at = put32(buf, at, r.os_fingerprint)
    at = put32(buf, at, r.prob)
    at = put32(buf, at, r.uid.uid[0])
    at = put32(buf, at, r.uid.uid[1])
    at = put(buf, at, &r.uid.op, 1)
    at = put32(buf, at, r.gid.gid[0])
    at = put32(buf, at, r.gid.gid[1])
    at = put(buf, at, &r.gid.op, 1)
    at = put32(buf, at, r.rule_flag)
    tail[0] = r.action
    tail[1] = r.direction
    tail[2] = r.af
    tail[3] = r.quick
    tail[4] = r.ifnot
    tail[5] = r.match_tag_not
    tail[6] = r.natpass
    tail[7] = r.keep_state
    tail[8] = r.proto
    tail[9] = r.type
    tail[10] = r.code
    tail[11] = r.flags
    tail[12] = r.flagset
    tail[13] = r.allow_opts
    tail[14] = r.rt
    tail[15] = r.tos
    return put(buf, at, tail, 16)


def ruleset_digest(queues):
    """MD5 over the rules of the given queues (lists of Rule), as pf_setup_pfsync_matching
    hashes a main ruleset's inactive filter, nat, binat and rdr queues."""
    cdef Py_ssize_t count = sum(len(q) for q in queues)
    cdef bytearray room = bytearray(count * HASH_RULE_MAX + 1)
    cdef uint8_t *buf = <uint8_t *><char *>room
    cdef size_t at = 0
    cdef Rule rule
    for queue in queues:
        for rule in queue:
            at = hash_rule(buf, at, &rule.r)
    return hashlib.md5(memoryview(room)[:at]).digest()


def store_chksum(PfCore core, bytes digest):
    """V_pf_status.pf_chksum, which DIOCGETSTATUS reports."""
    memcpy(core.status.pf_chksum, <const char *>digest, sizeof(core.status.pf_chksum))
