# cython: language_level=3
"""pf tables (FreeBSD pf_table.c): named sets of IPv4/IPv6 prefixes, some negated, matched by
longest prefix; each table belongs to an anchor, may have an inactive definition waiting for a
transaction's commit, and keeps per-table and per-address counters the datapath bumps.

The DIOCR* operations take the header's structs (pf_ioctl_table decodes the ioctl, checks sizes
and copies buffers) and follow FreeBSD 12.1's pfr_*() checks, errnos and output counts. Rules and
the datapath use the Python API at the end: attach/detach/count/match, and the ina_* calls of the
table transaction (DIOCXBEGIN/XCOMMIT/XROLLBACK with rs_num PF_RULESET_TABLE). The packet engine
reads nogil snapshots through pfr_match_addr and counts through pfr_dp_update_stats
(pfr_update_stats): a table's counts live in its pfr_dp, an entry's in its KEntry, which the
published snapshot points at, so republishing a snapshot loses none. Round-robin pools take
their next address from a table through pfr_dp_pool_get (pfr_pool_get).

Operations raise pfkern.errors exceptions; nothing changes when one is raised.
"""
import time

cimport cython

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, qsort
from libc.string cimport memcpy, memmove, memset, strlen, strncmp

from pfkern.pfvar_priv cimport pthread_mutex_t, pthread_mutex_lock, pthread_mutex_unlock

from pfkern.errors import Busy, ConstTable, Invalid, NoMemory, NoSuchTable, NotFound, PfError
from pfkern.pf_util cimport REQUEST_MAXCOUNT, af_in, cstr, put_cstr

# net.pf.request_maxcount: the most elements one ioctl may carry.
# Kernel-internal flag FreeBSD's ioctl layer adds: the request came from userland, so the
# reserved anchor is refused.
PFR_FLAG_USERIOCTL = 0x10000000
# A shadow table defined without PFR_FLAG_ADDRSTOO: its commit leaves the addresses alone.
NO_ADDRESSES = -1

cdef enum:
    AF_INET = 2
    AF_INET6 = 10               # Linux's value, the one the daemon stores and answers
    AF_INET6_BSD = 28           # FreeBSD's, accepted on input


# --- helpers on the header's structs --------------------------------------------------------

cdef bint zero_padded(const char *p, size_t size):
    """NUL-terminated within size and nothing but NULs after the terminator."""
    cdef size_t i
    if p[size - 1]:
        return False
    i = strlen(p)
    while i < size:
        if p[i]:
            return False
        i += 1
    return True


cdef bint fix_anchor(char *anchor):
    """pfr_fix_anchor: strip leading slashes in place; False unless the path is NUL-padded."""
    cdef size_t off = 0
    while off < PF_MAXPATHLEN and anchor[off] == b'/':
        off += 1
    if off:
        memmove(anchor, anchor + off, PF_MAXPATHLEN - off)
        memset(anchor + PF_MAXPATHLEN - off, 0, off)
    return zero_padded(anchor, PF_MAXPATHLEN)


cdef int validate_table(pfr_table *tbl, int allowed, int no_reserved) except -1:
    """pfr_validate_table, in FreeBSD's order: the reserved-anchor test looks at the anchor as
    sent, before its leading slashes are stripped."""
    if not tbl.pfrt_name[0]:
        raise Invalid("table name is empty")
    if no_reserved and strncmp(tbl.pfrt_anchor, b"_pf", 4) == 0:
        raise Invalid("anchor _pf is reserved")
    if not zero_padded(tbl.pfrt_name, PF_TABLE_NAME_SIZE):
        raise Invalid("table name not NUL-terminated and zero-padded")
    if not fix_anchor(tbl.pfrt_anchor):
        raise Invalid("anchor not NUL-terminated and zero-padded")
    if tbl.pfrt_flags & ~allowed:
        raise Invalid("table flags not allowed here")
    return 0


cdef inline int accept_flags(int flags, int allowed) except -1:
    """ACCEPT_FLAGS: only PFR_FLAG_* bits outside `allowed` are refused; others are ignored."""
    if flags & ~allowed & PFR_FLAG_ALLMASK:
        raise Invalid("request flags not allowed for this command")
    return 0


cdef inline tuple table_key(str anchor, str name):
    # pfr_ktable_compare's order: name, then anchor
    return (name, anchor)


cdef inline int addr_len(uint8_t af):
    return 4 if af == AF_INET else 16


cdef inline bint is_network(const pfr_addr *ad):
    return ad.pfra_net < (32 if ad.pfra_af == AF_INET else 128)


cdef inline const uint8_t *addr_bytes(const pfr_addr *ad):
    return <const uint8_t *>&ad.pfra_ip6addr


cdef bint valid_addr(const pfr_addr *ad):
    """pfr_validate_addr: a known family, a prefix length it allows, no bits set past the prefix
    (anywhere in the 16 bytes), pfra_not 0 or 1, pfra_fback 0."""
    cdef const uint8_t *a = addr_bytes(ad)
    cdef int net = ad.pfra_net, i
    if ad.pfra_af == AF_INET:
        if net > 32:
            return False
    elif ad.pfra_af == AF_INET6 or ad.pfra_af == AF_INET6_BSD:
        if net > 128:
            return False
    else:
        return False
    if net < 128 and a[net >> 3] & (0xff >> (net & 7)):
        return False
    for i in range((net + 7) >> 3, 16):
        if a[i]:
            return False
    return ad.pfra_not <= 1 and ad.pfra_fback == 0


cdef bytes make_key(uint8_t af, const uint8_t *a, int net):
    """Key of the prefix a/net (bits of a past net ignored): family, address, 255 - net, so that
    sorted keys list IPv4 before IPv6, by address, a more specific prefix first (radix order)."""
    cdef uint8_t k[18]
    cdef int alen = addr_len(af), full = net >> 3, rem = net & 7
    k[0] = af
    memset(k + 1, 0, alen)
    memcpy(k + 1, a, full)
    if rem:
        k[1 + full] = a[full] & (0xff << (8 - rem))
    k[1 + alen] = 255 - net
    return PyBytes_FromStringAndSize(<char *>k, alen + 2)


cdef inline bytes addr_key(const pfr_addr *ad):
    return make_key(af_in(ad.pfra_af), addr_bytes(ad), ad.pfra_net)


cdef void copyout_addr(pfr_addr *ad, KEntry ke):
    """pfr_copyout_addr: the entry as a pfr_addr (all zero for no entry)."""
    memset(ad, 0, sizeof(pfr_addr))
    if ke is None:
        return
    ad.pfra_af = ke.af
    ad.pfra_net = ke.net
    ad.pfra_not = ke.neg
    memcpy(<void *>addr_bytes(ad), ke.addr, addr_len(ke.af))


cdef void reset_feedback(pfr_addr *addr, int size):
    cdef int i
    for i in range(size):
        addr[i].pfra_fback = PFR_FB_NONE


cdef inline long now():
    return <long>time.time()


# --- entries and their radix -----------------------------------------------------------------

@cython.no_gc          # holds only a bytes key: never part of a cycle, and there are many
cdef class KEntry:
    cdef void clear_stats(self, long tzero):
        """Zero the counters (callers that may race the datapath use Tables.clear_counters)."""
        memset(&self.c, 0, sizeof(pfr_kctr))
        self.tzero = tzero

    def __repr__(self):
        return f"<KEntry {'!' if self.neg else ''}{self.key.hex()}>"


cdef class Radix:
    def __cinit__(self):
        self.entries = {}

    cdef KEntry exact(self, bytes key):
        return self.entries.get(key)

    cdef tuple present(self, int fam):
        """Prefix lengths with entries, longest first, for family 0 (IPv4) or 1 (IPv6)."""
        cdef tuple lens = self.lens6 if fam else self.lens4
        if lens is None:
            lens = tuple(n for n in range(128 if fam else 32, -1, -1) if self.nets[fam][n])
            if fam:
                self.lens6 = lens
            else:
                self.lens4 = lens
        return lens

    cdef KEntry longest(self, uint8_t af, const uint8_t *addr):
        """The entry of the longest prefix containing host address `addr` (rn_match)."""
        cdef int net
        for net in self.present(af != AF_INET):
            ke = self.entries.get(make_key(af, addr, net))
            if ke is not None:
                return ke
        return None

    cdef void add(self, KEntry ke):
        cdef int fam = ke.af != AF_INET
        self.entries[ke.key] = ke
        self.nets[fam][ke.net] += 1
        if self.nets[fam][ke.net] == 1:
            self.lens4 = self.lens6 = None

    cdef void remove(self, KEntry ke):
        cdef int fam = ke.af != AF_INET
        del self.entries[ke.key]
        self.nets[fam][ke.net] -= 1
        if self.nets[fam][ke.net] == 0:
            self.lens4 = self.lens6 = None

    cdef list ordered(self):
        cdef dict entries = self.entries
        return [entries[k] for k in sorted(entries)]


cdef class KTable:
    def __cinit__(self):
        self.radix = Radix()
        self.dp = <pfr_dp *>calloc(1, sizeof(pfr_dp))
        if self.dp == NULL:
            raise MemoryError()

    def __dealloc__(self):
        # Tables.sync() unpublished it first: nothing can reach this table's snapshot any more
        # (compiled rules hold the KTable object, so it outlives every generation using it)
        if self.dp != NULL:
            snap_free(self.dp.own)
            free(self.dp)
            self.dp = NULL

    def __repr__(self):
        return f"<KTable {self.anchor}:{self.name} flags={self.flags:#x} cnt={self.cnt}>"


# --- the tables ----------------------------------------------------------------------------

cdef class Tables:
    def __init__(self, core):
        self.core = core
        self.ktables = {}
        self.by_anchor = {}
        self.nentries = 0
        self.dirty = set()
        self.published = set()
        self.dplock = NULL
        self.bound = False
        self.snaprefs = {}

    # -- the DIOCR* operations ---------------------------------------------------------------

    cdef int table_count(self, pfr_table *filter, int flags) except? -2:
        """pfr_table_count: tables of the filter's anchor (all with ALLRSETS); -1 if the anchor
        does not exist."""
        if flags & PFR_FLAG_ALLRSETS:
            return len(self.ktables)
        rs = self.core.rulesets.find(cstr(filter.pfrt_anchor, PF_MAXPATHLEN))
        return rs.tables if rs is not None else -1

    cdef int clr_tables(self, pfr_table *filter, int flags) except -1:
        """Deactivate the tables of an anchor (all anchors with ALLRSETS) but the reserved one."""
        accept_flags(flags, PFR_FLAG_DUMMY | PFR_FLAG_ALLRSETS)
        if not fix_anchor(filter.pfrt_anchor):
            raise Invalid("anchor not NUL-terminated and zero-padded")
        if self.table_count(filter, flags) < 0:
            raise NotFound("no such anchor")
        anchor = cstr(filter.pfrt_anchor, PF_MAXPATHLEN)
        work = [(kt, PFR_TFLAG_ACTIVE, 0) for kt in self.sorted_tables()
                if (flags & PFR_FLAG_ALLRSETS or kt.anchor == anchor)
                and kt.anchor != "_pf" and kt.flags & PFR_TFLAG_ACTIVE]
        if not flags & PFR_FLAG_DUMMY:
            self.setflags_all(work)
        return len(work)

    cdef int add_tables(self, pfr_table *tbl, int size, int flags) except -1:
        """Create tables, or reactivate inactive ones; an anchored table gets (and creates, flag-
        less) the main ruleset's table of the same name as its root. Existing active tables are
        left alone. Returns how many were added or reactivated."""
        cdef pfr_table key
        cdef KTable p, r
        cdef int i, xadd = 0
        cdef long tzero = now()
        accept_flags(flags, PFR_FLAG_DUMMY)
        addq = []                       # created, in creation order
        added = {}                      # their keys
        changeq = []                    # (table, flags to clear, flags to set)
        changed = set()
        try:
            for i in range(size):
                memcpy(&key, &tbl[i], sizeof(pfr_table))
                validate_table(&key, PFR_TFLAG_USRMASK, flags & PFR_FLAG_USERIOCTL)
                key.pfrt_flags |= PFR_TFLAG_ACTIVE
                k = table_key(cstr(key.pfrt_anchor, PF_MAXPATHLEN), cstr(key.pfrt_name, PF_TABLE_NAME_SIZE))
                p = self.ktables.get(k)
                if p is None:
                    if k in added:
                        continue
                    p = self.create_ktable(&key, tzero, True)
                    addq.append(p)
                    added[k] = p
                    xadd += 1
                    if not key.pfrt_anchor[0]:
                        continue
                    rk = table_key("", p.name)
                    r = self.ktables.get(rk) or added.get(rk)
                    if r is None:
                        memset(key.pfrt_anchor, 0, PF_MAXPATHLEN)
                        key.pfrt_flags = 0
                        r = self.create_ktable(&key, 0, True)
                        addq.append(r)
                        added[rk] = r
                    p.root = r
                elif not p.flags & PFR_TFLAG_ACTIVE:
                    if k in changed:
                        continue
                    changeq.append((p, PFR_TFLAG_USRMASK, key.pfrt_flags))
                    changed.add(k)
                    xadd += 1
        except BaseException:
            for p in addq:
                self.destroy_ktable(p)
            raise
        if flags & PFR_FLAG_DUMMY:
            for p in addq:
                self.destroy_ktable(p)
        else:
            for p in reversed(addq):        # roots before the tables that use them
                self.insert_ktable(p)
            self.setflags_all(changeq)
        return xadd

    cdef int del_tables(self, pfr_table *tbl, int size, int flags) except -1:
        """Deactivate the listed active tables (deleted unless rules or anchors still use them)."""
        cdef pfr_table key
        cdef int i
        accept_flags(flags, PFR_FLAG_DUMMY)
        work = []
        seen = set()
        for i in range(size):
            memcpy(&key, &tbl[i], sizeof(pfr_table))
            validate_table(&key, 0, flags & PFR_FLAG_USERIOCTL)
            p = self.lookup(&key)
            if p is not None and p.flags & PFR_TFLAG_ACTIVE and p not in seen:
                work.append((p, PFR_TFLAG_ACTIVE, 0))
                seen.add(p)
        if not flags & PFR_FLAG_DUMMY:
            self.setflags_all(work)
        return len(work)

    cdef int get_tables(self, pfr_table *filter, char *out, int *size, int flags, bint stats) except -1:
        """pfr_table (or pfr_tstats) of every table of the anchor, in pf's order, into `out`;
        when more exist than *size, only *size = their number."""
        cdef int n, i = 0, d, o
        cdef KTable kt
        cdef pfr_tstats *ts
        accept_flags(flags, PFR_FLAG_ALLRSETS)
        if not fix_anchor(filter.pfrt_anchor):
            raise Invalid("anchor not NUL-terminated and zero-padded")
        n = self.table_count(filter, flags)
        if n < 0:
            raise NotFound("no such anchor")
        if n > size[0]:
            size[0] = n
            return 0
        anchor = cstr(filter.pfrt_anchor, PF_MAXPATHLEN)
        for kt in self.sorted_tables():
            if i >= n:
                break
            if not flags & PFR_FLAG_ALLRSETS and kt.anchor != anchor:
                continue
            if stats:
                ts = <pfr_tstats *>out + i
                fill_table(&ts.pfrts_t, kt)
                for d in range(PFR_DIR_MAX):
                    for o in range(PFR_OP_TABLE_MAX):
                        ts.pfrts_packets[d][o] = kt.packets[d][o] + kt.dp.packets[d][o]
                        ts.pfrts_bytes[d][o] = kt.nbytes[d][o] + kt.dp.nbytes[d][o]
                ts.pfrts_match = kt.nmatch + kt.dp.nmatch
                ts.pfrts_nomatch = kt.nnomatch + kt.dp.nnomatch
                ts.pfrts_tzero = kt.tzero
                ts.pfrts_cnt = kt.cnt
                ts.pfrts_refcnt[PFR_REFCNT_RULE] = kt.refcnt[PFR_REFCNT_RULE]
                ts.pfrts_refcnt[PFR_REFCNT_ANCHOR] = kt.refcnt[PFR_REFCNT_ANCHOR]
            else:
                fill_table(<pfr_table *>out + i, kt)
            i += 1
        size[0] = n
        return 0

    cdef int clr_tstats(self, pfr_table *tbl, int size, int flags) except -1:
        """Zero the counters of the listed tables (any state; their tzero becomes now), with
        ADDRSTOO their entries' too (tzero now as well). Counts a table listed twice twice, as
        FreeBSD does."""
        cdef pfr_table key
        cdef int i
        cdef long tzero = now()
        cdef KTable p
        accept_flags(flags, PFR_FLAG_DUMMY | PFR_FLAG_ADDRSTOO)
        work = []
        for i in range(size):
            memcpy(&key, &tbl[i], sizeof(pfr_table))
            validate_table(&key, 0, 0)
            p = self.lookup(&key)
            if p is not None:
                work.append(p)
        if not flags & PFR_FLAG_DUMMY:
            entries = []
            if flags & PFR_FLAG_ADDRSTOO:
                for p in set(work):
                    entries.extend(p.radix.entries.values())
            self.clear_counters(work, entries, tzero, tzero)
        return len(work)

    cdef int set_tflags(self, pfr_table *tbl, int size, int setflag, int clrflag, int *nchange,
                        int *ndel, int flags) except -1:
        """Set/clear user flags on active tables; losing PERSIST deletes an unreferenced table."""
        cdef pfr_table key
        cdef int i, nflags, xchange = 0, xdel = 0
        accept_flags(flags, PFR_FLAG_DUMMY)
        if (setflag & ~PFR_TFLAG_USRMASK or clrflag & ~PFR_TFLAG_USRMASK
                or setflag & clrflag):
            raise Invalid("flags to set or clear outside PERSIST|CONST|COUNTERS, or overlapping")
        work = []
        seen = set()
        for i in range(size):
            memcpy(&key, &tbl[i], sizeof(pfr_table))
            validate_table(&key, 0, flags & PFR_FLAG_USERIOCTL)
            p = self.lookup(&key)
            if p is None or not p.flags & PFR_TFLAG_ACTIVE:
                continue
            nflags = (p.flags | setflag) & ~clrflag
            if nflags == p.flags or p in seen:
                continue
            work.append((p, clrflag, setflag))
            seen.add(p)
            if (p.flags & PFR_TFLAG_PERSIST and clrflag & PFR_TFLAG_PERSIST
                    and not p.flags & PFR_TFLAG_REFERENCED):
                xdel += 1
            else:
                xchange += 1
        if not flags & PFR_FLAG_DUMMY:
            self.setflags_all(work)
        nchange[0] = xchange
        ndel[0] = xdel
        return 0

    cdef int clr_addrs(self, pfr_table *tbl, int flags) except -1:
        """Flush a table; returns how many entries went."""
        cdef KTable kt
        cdef int n
        accept_flags(flags, PFR_FLAG_DUMMY)
        validate_table(tbl, 0, flags & PFR_FLAG_USERIOCTL)
        kt = self.active_table(tbl, True)
        n = kt.cnt
        if not flags & PFR_FLAG_DUMMY:
            self.flush_entries(kt)
        return n

    cdef int add_addrs(self, pfr_table *tbl, pfr_addr *addr, int size, int flags) except -1:
        """Add prefixes; with FEEDBACK each pfra_fback says ADDED, DUPLICATE (twice in the
        request), CONFLICT (present with the other negation; left as it is) or NONE (present).
        Returns how many were added."""
        cdef KTable kt
        cdef KEntry p
        cdef pfr_addr *ad
        cdef int i
        cdef unsigned int limit = self.entry_limit()
        accept_flags(flags, PFR_FLAG_DUMMY | PFR_FLAG_FEEDBACK)
        validate_table(tbl, 0, flags & PFR_FLAG_USERIOCTL)
        kt = self.active_table(tbl, True)
        pending = {}                    # key -> new entry (FreeBSD's temporary table)
        try:
            for i in range(size):
                ad = &addr[i]
                if not valid_addr(ad):
                    raise Invalid("bad address")
                key = addr_key(ad)
                p = kt.radix.exact(key)
                if flags & PFR_FLAG_FEEDBACK:
                    if key in pending:
                        ad.pfra_fback = PFR_FB_DUPLICATE
                    elif p is None:
                        ad.pfra_fback = PFR_FB_ADDED
                    elif p.neg != ad.pfra_not:
                        ad.pfra_fback = PFR_FB_CONFLICT
                    else:
                        ad.pfra_fback = PFR_FB_NONE
                if p is None and key not in pending:
                    pending[key] = self.new_entry(ad, key, limit)
        except BaseException:
            self.nentries -= len(pending)
            raise
        if flags & PFR_FLAG_DUMMY:
            self.nentries -= len(pending)
        else:
            self.insert_entries(kt, pending.values(), now())
        return len(pending)

    cdef int del_addrs(self, pfr_table *tbl, pfr_addr *addr, int size, int flags) except -1:
        """Delete prefixes; feedback DELETED, NONE (absent), CONFLICT (other negation; kept),
        DUPLICATE (already deleted by this request). Returns how many went."""
        cdef KTable kt
        cdef KEntry p
        cdef pfr_addr *ad
        cdef int i
        accept_flags(flags, PFR_FLAG_DUMMY | PFR_FLAG_FEEDBACK)
        validate_table(tbl, 0, flags & PFR_FLAG_USERIOCTL)
        kt = self.active_table(tbl, True)
        doomed = {}
        for i in range(size):
            ad = &addr[i]
            if not valid_addr(ad):
                raise Invalid("bad address")
            key = addr_key(ad)
            p = kt.radix.exact(key)
            if flags & PFR_FLAG_FEEDBACK:
                if p is None:
                    ad.pfra_fback = PFR_FB_NONE
                elif p.neg != ad.pfra_not:
                    ad.pfra_fback = PFR_FB_CONFLICT
                elif key in doomed:
                    ad.pfra_fback = PFR_FB_DUPLICATE
                else:
                    ad.pfra_fback = PFR_FB_DELETED
            if p is not None and p.neg == ad.pfra_not:
                doomed[key] = p
        if not flags & PFR_FLAG_DUMMY:
            self.remove_entries(kt, list(doomed.values()))
        return len(doomed)

    cdef int set_addrs(self, pfr_table *tbl, pfr_addr *addr, int size, int *size2, int *nadd,
                       int *ndel, int *nchange, int flags) except -1:
        """Make the table hold exactly addr[0:size]. Feedback ADDED, CHANGED (negation flipped,
        counters zeroed), DUPLICATE, NONE. With FEEDBACK and *size2 > 0 the deleted entries are
        appended after addr[size] (DELETED) — or, when *size2 cannot hold them, *size2 becomes the
        room needed and nothing changes (the call still succeeds)."""
        cdef KTable kt
        cdef KEntry p
        cdef pfr_addr ad
        cdef int i, xdel
        cdef unsigned int limit = self.entry_limit()
        cdef long tzero = now()
        accept_flags(flags, PFR_FLAG_DUMMY | PFR_FLAG_FEEDBACK)
        validate_table(tbl, 0, flags & PFR_FLAG_USERIOCTL)
        kt = self.active_table(tbl, True)
        kept = set()
        pending = {}
        changeq = []
        try:
            for i in range(size):
                memcpy(&ad, &addr[i], sizeof(pfr_addr))
                if not valid_addr(&ad):
                    raise Invalid("bad address")
                key = addr_key(&ad)
                p = kt.radix.exact(key)
                if key in kept or key in pending:
                    ad.pfra_fback = PFR_FB_DUPLICATE
                elif p is not None:
                    kept.add(key)
                    if p.neg != ad.pfra_not:
                        changeq.append(p)
                        ad.pfra_fback = PFR_FB_CHANGED
                else:
                    pending[key] = self.new_entry(&ad, key, limit)
                    ad.pfra_fback = PFR_FB_ADDED
                if flags & PFR_FLAG_FEEDBACK:
                    memcpy(&addr[i], &ad, sizeof(pfr_addr))
            delq = [ke for ke in kt.radix.ordered() if ke.key not in kept]
            xdel = len(delq)
            if flags & PFR_FLAG_FEEDBACK and size2[0]:
                if size2[0] < size + xdel:
                    size2[0] = size + xdel
                    reset_feedback(addr, size)
                    self.nentries -= len(pending)
                    return 0
                for i in range(xdel):
                    copyout_addr(&addr[size + i], delq[i])
                    addr[size + i].pfra_fback = PFR_FB_DELETED
        except BaseException:
            self.nentries -= len(pending)
            raise
        if flags & PFR_FLAG_DUMMY:
            self.nentries -= len(pending)
        else:
            self.insert_entries(kt, pending.values(), tzero)
            self.remove_entries(kt, delq)
            for p in changeq:
                p.neg = not p.neg
            self.clear_counters([], changeq, 0, tzero)
        nadd[0] = len(pending)
        ndel[0] = xdel
        nchange[0] = len(changeq)
        if flags & PFR_FLAG_FEEDBACK:
            size2[0] = size + xdel
        return 0

    cdef int get_addrs(self, pfr_table *tbl, char *out, int size, int flags, bint stats) except -1:
        """The entries as pfr_addr (or pfr_astats) into `out` when they fit in `size`; returns
        their number either way. Tables without COUNTERS report zero counters, fback NOCOUNT."""
        cdef KTable kt
        cdef KEntry ke
        cdef pfr_astats *st
        cdef int i = 0
        accept_flags(flags, 0)
        validate_table(tbl, 0, 0)
        kt = self.active_table(tbl, False)
        if kt.cnt > size:
            return kt.cnt
        for ke in kt.radix.ordered():
            if not stats:
                copyout_addr(<pfr_addr *>out + i, ke)
            else:
                st = <pfr_astats *>out + i
                memset(st, 0, sizeof(pfr_astats))
                copyout_addr(&st.pfras_a, ke)
                st.pfras_tzero = ke.tzero
                if kt.flags & PFR_TFLAG_COUNTERS:
                    memcpy(st.pfras_packets, ke.c.packets, sizeof(ke.c.packets))
                    memcpy(st.pfras_bytes, ke.c.nbytes, sizeof(ke.c.nbytes))
                else:
                    st.pfras_a.pfra_fback = PFR_FB_NOCOUNT
            i += 1
        return kt.cnt

    cdef int clr_astats(self, pfr_table *tbl, pfr_addr *addr, int size, int flags) except -1:
        """Zero the listed entries' counters (their tzero becomes 0); feedback CLEARED or NONE."""
        cdef KTable kt
        cdef KEntry p
        cdef pfr_addr *ad
        cdef int i
        accept_flags(flags, PFR_FLAG_DUMMY | PFR_FLAG_FEEDBACK)
        validate_table(tbl, 0, 0)
        kt = self.active_table(tbl, False)
        work = []
        for i in range(size):
            ad = &addr[i]
            if not valid_addr(ad):
                raise Invalid("bad address")
            p = kt.radix.exact(addr_key(ad))
            if flags & PFR_FLAG_FEEDBACK:
                ad.pfra_fback = PFR_FB_CLEARED if p is not None else PFR_FB_NONE
            if p is not None:
                work.append(p)
        if not flags & PFR_FLAG_DUMMY:
            self.clear_counters([], work, 0, 0)
        return len(work)

    cdef int tst_addrs(self, pfr_table *tbl, pfr_addr *addr, int size, int flags) except -1:
        """Look host addresses up by longest prefix: fback MATCH, NOTMATCH (the longest match is
        negated) or NONE; REPLACE also returns the matching entry itself. Returns the matches."""
        cdef KTable kt
        cdef KEntry p
        cdef pfr_addr *ad
        cdef int i, xmatch = 0
        accept_flags(flags, PFR_FLAG_REPLACE)
        validate_table(tbl, 0, 0)
        kt = self.active_table(tbl, False)
        for i in range(size):
            ad = &addr[i]
            if not valid_addr(ad):
                raise Invalid("bad address")
            if is_network(ad):
                raise Invalid("only host addresses can be tested")
            p = kt.radix.longest(af_in(ad.pfra_af), addr_bytes(ad))
            if flags & PFR_FLAG_REPLACE:
                copyout_addr(ad, p)
            if p is None:
                ad.pfra_fback = PFR_FB_NONE
            elif p.neg:
                ad.pfra_fback = PFR_FB_NOTMATCH
            else:
                ad.pfra_fback = PFR_FB_MATCH
                xmatch += 1
        return xmatch

    cdef int ina_define(self, pfr_table *tbl, pfr_addr *addr, int size, int *nadd, int *naddr,
                        uint32_t ticket, int flags) except -1:
        """Define a table in the inactive set of its anchor's open table transaction: *nadd is 1
        when the table was not yet defined there, *naddr the distinct addresses. Without
        ADDRSTOO the commit will leave the table's addresses as they are."""
        cdef KTable kt, rt, shadow
        cdef KEntry ke
        cdef pfr_table key
        cdef pfr_addr *ad
        cdef int i, xadd = 0
        cdef unsigned int limit = self.entry_limit()
        accept_flags(flags, PFR_FLAG_DUMMY | PFR_FLAG_ADDRSTOO)
        if size and not flags & PFR_FLAG_ADDRSTOO:
            raise Invalid("addresses given without PFR_FLAG_ADDRSTOO")
        validate_table(tbl, PFR_TFLAG_USRMASK, flags & PFR_FLAG_USERIOCTL)
        rs = self.core.rulesets.find(cstr(tbl.pfrt_anchor, PF_MAXPATHLEN))
        if rs is None or not rs.topen or ticket != rs.tticket:
            raise Busy("no table transaction open with that ticket")
        tbl.pfrt_flags |= PFR_TFLAG_INACTIVE
        created = []                    # new tables, root last (it is inserted first)
        kt = self.lookup(tbl)
        shadow = None
        try:
            if kt is None:
                kt = self.create_ktable(tbl, 0, True)
                created.append(kt)
                xadd = 1
                if tbl.pfrt_anchor[0]:
                    rt = self.ktables.get(table_key("", kt.name))
                    if rt is None:
                        memset(&key, 0, sizeof(key))
                        memcpy(key.pfrt_name, tbl.pfrt_name, PF_TABLE_NAME_SIZE)
                        rt = self.create_ktable(&key, 0, True)
                        created.append(rt)
                    kt.root = rt
            elif not kt.flags & PFR_TFLAG_INACTIVE:
                xadd = 1
            shadow = self.create_ktable(tbl, 0, False)
            for i in range(size):
                ad = &addr[i]
                if not valid_addr(ad):
                    raise Invalid("bad address")
                k = addr_key(ad)
                if shadow.radix.exact(k) is not None:
                    continue
                ke = self.new_entry(ad, k, limit)
                shadow.radix.add(ke)
                shadow.cnt += 1
        except BaseException:
            if shadow is not None:
                self.destroy_ktable(shadow)
            for t in created:
                self.destroy_ktable(t)
            raise
        naddr[0] = shadow.cnt
        nadd[0] = xadd
        if flags & PFR_FLAG_DUMMY:
            self.destroy_ktable(shadow)
            for t in created:
                self.destroy_ktable(t)
            return 0
        if kt.shadow is not None:
            self.destroy_ktable(kt.shadow)
        kt.flags |= PFR_TFLAG_INACTIVE
        for t in reversed(created):
            self.insert_ktable(t)
        if not flags & PFR_FLAG_ADDRSTOO:
            shadow.cnt = NO_ADDRESSES
        kt.shadow = shadow
        return 0

    # -- internals ---------------------------------------------------------------------------

    def sorted_tables(self):
        """Every table in pf's order (name, then anchor)."""
        cdef dict ktables = self.ktables
        return [ktables[k] for k in sorted(ktables)]

    cdef KTable lookup(self, pfr_table *tbl):
        return self.ktables.get(table_key(cstr(tbl.pfrt_anchor, PF_MAXPATHLEN),
                                          cstr(tbl.pfrt_name, PF_TABLE_NAME_SIZE)))

    cdef KTable active_table(self, pfr_table *tbl, bint writable):
        """The table addresses are read or written in: ESRCH unless active, EPERM if const and
        about to change."""
        cdef KTable kt = self.lookup(tbl)
        if kt is None or not kt.flags & PFR_TFLAG_ACTIVE:
            raise NoSuchTable("no such active table")
        if writable and kt.flags & PFR_TFLAG_CONST:
            raise ConstTable("table is const")
        return kt

    cdef KTable create_ktable(self, pfr_table *tbl, long tzero, bint attach):
        """A table not yet in the tree; `attach` counts it in its anchor's ruleset (created on
        demand; ENOMEM when the path cannot be one, as pf_find_or_create_ruleset fails)."""
        cdef KTable kt = KTable()
        kt.anchor = cstr(tbl.pfrt_anchor, PF_MAXPATHLEN)
        kt.name = cstr(tbl.pfrt_name, PF_TABLE_NAME_SIZE)
        kt.flags = tbl.pfrt_flags
        kt.fback = tbl.pfrt_fback
        kt.tzero = tzero
        if attach:
            rs = self.core.rulesets.find_or_create(kt.anchor)
            if rs is None:
                raise NoMemory("anchor path cannot hold a ruleset")
            rs.tables += 1
            kt.rs = rs
        return kt

    cdef void destroy_ktable(self, KTable kt):
        """Free a table not (or no longer) in the tree, with its entries and shadow."""
        self.touch(kt)
        self.nentries -= len(kt.radix.entries)
        kt.radix = Radix()
        kt.cnt = 0
        if kt.shadow is not None:
            self.destroy_ktable(kt.shadow)
            kt.shadow = None
        if kt.rs is not None:
            rs, kt.rs = kt.rs, None
            rs.tables -= 1
            self.core.rulesets.remove_if_empty(rs)

    cdef void insert_ktable(self, KTable kt):
        cdef KTable rt = kt.root
        key = table_key(kt.anchor, kt.name)
        self.ktables[key] = kt
        self.by_anchor.setdefault(kt.anchor, {})[key] = kt
        if rt is not None:
            rt.refcnt[PFR_REFCNT_ANCHOR] += 1
            if rt.refcnt[PFR_REFCNT_ANCHOR] == 1:
                self.setflags_ktable(rt, rt.flags | PFR_TFLAG_REFDANCHOR)

    def setflags_all(self, list work):
        """Apply (table, flags to clear, flags to set), last first as FreeBSD's work queues do.
        Each change applies to the flags the table has by then: FreeBSD 12.1 computes the new
        flags of all before applying any, so a root table whose REFDANCHOR went while its
        anchored tables were deleted got it back, unreferenced, and was never freed."""
        for kt, clear, set_ in reversed(work):
            self.setflags_ktable(kt, (kt.flags & ~clear) | set_)

    cdef void setflags_ktable(self, KTable kt, int newf):
        """pfr_setflags_ktable: a table with neither a rule, an anchor nor PERSIST keeping it is
        not active; an inactive one has no user flags and no entries; one with none of the set
        flags left is deleted (and its root loses a reference)."""
        cdef KTable rt
        key = table_key(kt.anchor, kt.name)
        if self.ktables.get(key) is not kt:
            return                      # already deleted by an earlier cascade
        self.touch(kt)
        if not newf & (PFR_TFLAG_REFERENCED | PFR_TFLAG_REFDANCHOR | PFR_TFLAG_PERSIST):
            newf &= ~PFR_TFLAG_ACTIVE
        if not newf & PFR_TFLAG_ACTIVE:
            newf &= ~PFR_TFLAG_USRMASK
        if not newf & PFR_TFLAG_SETMASK:
            del self.ktables[key]
            in_anchor = self.by_anchor[kt.anchor]
            del in_anchor[key]
            if not in_anchor:
                del self.by_anchor[kt.anchor]
            rt = kt.root
            if rt is not None:
                rt.refcnt[PFR_REFCNT_ANCHOR] -= 1
                if rt.refcnt[PFR_REFCNT_ANCHOR] == 0:
                    self.setflags_ktable(rt, rt.flags & ~PFR_TFLAG_REFDANCHOR)
            self.destroy_ktable(kt)
            return
        if not newf & PFR_TFLAG_ACTIVE and kt.cnt:
            self.flush_entries(kt)
        if not newf & PFR_TFLAG_INACTIVE and kt.shadow is not None:
            self.destroy_ktable(kt.shadow)
            kt.shadow = None
        kt.flags = newf

    cdef int clstats_ktable(self, KTable kt, long tzero, bint recurse) except -1:
        return self.clear_counters([kt], list(kt.radix.entries.values()) if recurse else [],
                                   tzero, tzero)

    cdef int clear_counters(self, list tables, list entries, long ttzero, long etzero) except -1:
        """Zero the counters of `tables` (tzero ttzero) and `entries` (tzero etzero). The
        datapath's share is zeroed under its lock, so no increment in flight survives a clear."""
        cdef KTable kt
        cdef KEntry ke
        cdef Py_ssize_t i, nt = len(tables), ne = len(entries)
        cdef pfr_dp **dps = <pfr_dp **>calloc(nt + 1, sizeof(void *))
        cdef pfr_kctr **kcs = <pfr_kctr **>calloc(ne + 1, sizeof(void *))
        cdef pthread_mutex_t *lk = self.dplock if self.bound else NULL
        if dps == NULL or kcs == NULL:
            free(dps)
            free(kcs)
            raise MemoryError()
        for i in range(nt):
            kt = tables[i]
            memset(kt.packets, 0, sizeof(kt.packets))
            memset(kt.nbytes, 0, sizeof(kt.nbytes))
            kt.nmatch = kt.nnomatch = 0
            kt.tzero = ttzero
            dps[i] = kt.dp
        for i in range(ne):
            ke = entries[i]
            ke.tzero = etzero
            kcs[i] = &ke.c
        with nogil:
            if lk != NULL:
                pthread_mutex_lock(lk)
            for i in range(nt):
                dps[i].nmatch = dps[i].nnomatch = 0
                memset(dps[i].packets, 0, sizeof(dps[i].packets))
                memset(dps[i].nbytes, 0, sizeof(dps[i].nbytes))
            for i in range(ne):
                memset(kcs[i], 0, sizeof(pfr_kctr))
            if lk != NULL:
                pthread_mutex_unlock(lk)
        free(dps)
        free(kcs)
        return 0

    cdef void commit_ktable(self, KTable kt, long tzero):
        """Make the inactive definition the table: merge its entries into an active table (kept
        entries keep their counters), or hand them over to one that was not active."""
        cdef KTable shadow = kt.shadow
        cdef KEntry p, q
        cdef int garbage = 0
        if shadow.cnt == NO_ADDRESSES:
            if not kt.flags & PFR_TFLAG_ACTIVE:
                self.clstats_ktable(kt, tzero, True)
        elif kt.flags & PFR_TFLAG_ACTIVE:
            addq = []
            changeq = []
            kept = set()
            for p in shadow.radix.entries.values():
                q = kt.radix.exact(p.key)
                if q is not None:
                    if q.neg != p.neg:
                        changeq.append(q)
                    kept.add(p.key)
                    garbage += 1
                else:
                    addq.append(p)
            delq = [q for q in kt.radix.entries.values() if q.key not in kept]
            shadow.radix = Radix()      # its entries now belong to kt or are freed below
            self.nentries -= garbage
            self.insert_entries(kt, addq, tzero)
            self.remove_entries(kt, delq)
            for q in changeq:
                q.neg = not q.neg
            self.clear_counters([], changeq, 0, tzero)
        else:
            kt.radix, shadow.radix = shadow.radix, kt.radix
            kt.cnt, shadow.cnt = shadow.cnt, kt.cnt
            self.touch(kt)
            self.clstats_ktable(kt, tzero, True)
        nflags = ((shadow.flags & PFR_TFLAG_USRMASK) | (kt.flags & PFR_TFLAG_SETMASK)
                  | PFR_TFLAG_ACTIVE) & ~PFR_TFLAG_INACTIVE
        self.destroy_ktable(shadow)
        kt.shadow = None
        self.setflags_ktable(kt, nflags)

    cdef KEntry new_entry(self, pfr_addr *ad, bytes key, unsigned int limit):
        """A new entry, counted against the table-entries limit (ENOMEM past it)."""
        cdef KEntry ke
        if <unsigned long>self.nentries >= limit:
            raise NoMemory("table-entries limit reached")
        ke = KEntry.__new__(KEntry)
        ke.key = key
        ke.af = af_in(ad.pfra_af)
        ke.net = ad.pfra_net
        ke.neg = ad.pfra_not
        memcpy(ke.addr, addr_bytes(ad), 16)
        self.nentries += 1
        return ke

    cdef void insert_entries(self, KTable kt, entries, long tzero):
        cdef KEntry ke
        cdef int n = 0
        self.touch(kt)
        for ke in entries:
            kt.radix.add(ke)
            ke.tzero = tzero
            n += 1
        kt.cnt += n

    cdef void remove_entries(self, KTable kt, list entries):
        cdef KEntry ke
        self.touch(kt)
        for ke in entries:
            kt.radix.remove(ke)
        kt.cnt -= len(entries)
        self.nentries -= len(entries)

    cdef void flush_entries(self, KTable kt):
        self.touch(kt)
        self.nentries -= len(kt.radix.entries)
        kt.cnt -= len(kt.radix.entries)
        kt.radix = Radix()

    cdef unsigned int entry_limit(self):
        return self.core.get_limit(PF_LIMIT_TABLE_ENTRIES)

    cdef list anchor_tables(self, str anchor, int with_flag):
        in_anchor = self.by_anchor.get(anchor, {})
        return [kt for kt in (in_anchor[k] for k in sorted(in_anchor)) if kt.flags & with_flag]

    # -- table transactions (DIOCXBEGIN/XCOMMIT/XROLLBACK, rs_num PF_RULESET_TABLE) ------------

    def ina_begin(self, str path, bint drop=True):
        """Open a table transaction on anchor `path` (created if needed): the inactive
        definitions of an earlier one are dropped. Returns the new ticket. drop=False: the
        caller knows there are none (the same anchor again within one DIOCXBEGIN), so only the
        ticket moves on and the anchor's tables are not walked again."""
        anchor = path.lstrip("/")
        rs = self.core.rulesets.find_or_create(anchor)
        if rs is None:
            raise NoMemory("anchor path cannot hold a ruleset")
        rs.tticket = (rs.tticket + 1) & 0xffffffff
        rs.topen = True                 # set first: dropping tables must not drop the anchor
        if drop:
            self.setflags_all([(kt, PFR_TFLAG_INACTIVE, 0)
                               for kt in self.anchor_tables(anchor, PFR_TFLAG_INACTIVE)])
            self.sync()
        return rs.tticket

    def ina_check(self, str path, uint32_t ticket):
        """Whether `ticket` is the open table transaction of anchor `path`."""
        rs = self.core.rulesets.find(path.lstrip("/"))
        return rs is not None and bool(rs.topen) and rs.tticket == ticket

    def ina_commit(self, str path, uint32_t ticket):
        """Commit the inactive definitions of anchor `path`: EBUSY unless `ticket` is its open
        transaction. Returns (tables added, tables changed)."""
        cdef KTable kt
        cdef long tzero = now()
        cdef int xadd = 0, xchange = 0
        anchor = path.lstrip("/")
        if not self.ina_check(anchor, ticket):
            raise Busy("no table transaction open with that ticket")
        rs = self.core.rulesets.find(anchor)
        work = self.anchor_tables(anchor, PFR_TFLAG_INACTIVE)
        for kt in work:
            if kt.flags & PFR_TFLAG_ACTIVE:
                xchange += 1
            else:
                xadd += 1
        try:
            for kt in reversed(work):
                self.commit_ktable(kt, tzero)
            rs.topen = False
            self.core.rulesets.remove_if_empty(rs)
        finally:
            self.sync()
        return xadd, xchange

    def ina_rollback(self, str path, uint32_t ticket):
        """Drop the inactive definitions of anchor `path`; a stale ticket or a transaction that
        is not open is silently ignored. Returns how many were dropped."""
        anchor = path.lstrip("/")
        if not self.ina_check(anchor, ticket):
            return 0
        rs = self.core.rulesets.find(anchor)
        work = [(kt, PFR_TFLAG_INACTIVE, 0)
                for kt in self.anchor_tables(anchor, PFR_TFLAG_INACTIVE)]
        self.setflags_all(work)
        rs.topen = False
        self.core.rulesets.remove_if_empty(rs)
        self.sync()
        return len(work)

    # -- rules and the datapath --------------------------------------------------------------

    def attach(self, str path, str name):
        """pfr_attach_table: the table `name` a rule of anchor `path` refers to, created
        (inactive, referenced) if missing. A table of an anchor also names the main ruleset's
        table of the same name as its root: lookups fall back to it while the anchor's own table
        is not active. Returns the handle (ENOMEM if the anchor path is unusable)."""
        cdef pfr_table tbl
        cdef KTable kt, rt
        anchor = path.lstrip("/")
        memset(&tbl, 0, sizeof(tbl))
        put_cstr(tbl.pfrt_anchor, PF_MAXPATHLEN, anchor)
        put_cstr(tbl.pfrt_name, PF_TABLE_NAME_SIZE, name)
        kt = self.lookup(&tbl)
        if kt is None:
            kt = self.create_ktable(&tbl, now(), True)
            if anchor:
                memset(tbl.pfrt_anchor, 0, PF_MAXPATHLEN)
                rt = self.lookup(&tbl)
                if rt is None:
                    try:
                        rt = self.create_ktable(&tbl, 0, True)
                    except BaseException:
                        self.destroy_ktable(kt)
                        raise
                    self.insert_ktable(rt)
                kt.root = rt
            self.insert_ktable(kt)
        kt.refcnt[PFR_REFCNT_RULE] += 1
        if kt.refcnt[PFR_REFCNT_RULE] == 1:
            self.setflags_ktable(kt, kt.flags | PFR_TFLAG_REFERENCED)
        self.sync()
        return kt

    def detach(self, KTable kt):
        """pfr_detach_table: a rule no longer refers to the table."""
        if kt.refcnt[PFR_REFCNT_RULE] <= 0:
            raise ValueError(f"{kt!r} is not attached")
        kt.refcnt[PFR_REFCNT_RULE] -= 1
        if kt.refcnt[PFR_REFCNT_RULE] == 0:
            self.setflags_ktable(kt, kt.flags & ~PFR_TFLAG_REFERENCED)
        self.sync()

    def count(self, KTable kt):
        """Entries of the table a rule sees (its root when it is not active), -1 if none is
        active: what DIOCGETRULE reports in addr.p.tblcnt."""
        kt = effective(kt)
        return kt.cnt if kt is not None else -1

    def lookup_entry(self, KTable kt, int af, addr):
        """(table consulted, longest-prefix entry or None) for host address `addr` (the 16 bytes
        of a pf_addr, network order), or (None, None) when no table is active: what the
        datapath counts on (update_stats)."""
        cdef const uint8_t *a
        af = af_in(af)
        if len(addr) < addr_len(af):
            raise ValueError("address shorter than its family's")
        a = addr
        kt = effective(kt)
        if kt is None:
            return None, None
        return kt, kt.radix.longest(af, a)

    def match(self, KTable kt, int af, addr):
        """pfr_match_addr: whether host address `addr` is in the table (its longest match
        exists and is not negated); counts match/nomatch on the table consulted."""
        cdef KEntry ke
        kt, ke = self.lookup_entry(kt, af, addr)
        if kt is None:
            return False
        if ke is not None and not ke.neg:
            kt.nmatch += 1
            return True
        kt.nnomatch += 1
        return False

    def update_stats(self, KTable kt, int af, addr, uint64_t length, int dir_out, int op_pass,
                     bint notrule):
        """pfr_update_stats: count a packet of `length` bytes that a rule matched (or, with
        `notrule`, a rule negating the table matched) in direction dir_out (PFR_DIR_*) with
        verdict op_pass (PFR_OP_BLOCK/PASS); a verdict the table disagrees with counts as
        XPASS. Entries count too when the table has COUNTERS."""
        cdef KEntry ke
        if not (0 <= dir_out < PFR_DIR_MAX and 0 <= op_pass < PFR_OP_ADDR_MAX):
            raise ValueError("direction or verdict out of range")
        kt, ke = self.lookup_entry(kt, af, addr)
        if kt is None:
            return
        if (ke is None or ke.neg) != notrule:
            op_pass = PFR_OP_XPASS
        kt.packets[dir_out][op_pass] += 1
        kt.nbytes[dir_out][op_pass] += length
        if ke is not None and op_pass != PFR_OP_XPASS and kt.flags & PFR_TFLAG_COUNTERS:
            ke.c.packets[dir_out][op_pass] += 1
            ke.c.nbytes[dir_out][op_pass] += length

    # -- the datapath's snapshots --------------------------------------------------------------

    def bind_datapath(self, uintptr_t lock):
        """The packet engine matches tables from C from now on: keep a snapshot of every active
        table, swapped under the mutex at address `lock` (the engine's lock). Idempotent."""
        self.dplock = <pthread_mutex_t *>lock
        if not self.bound:
            self.bound = True
            self.dirty.update(self.ktables.values())
        self.sync()

    def sync(self):
        """Publish the changes since the last sync to the datapath: rebuild the snapshots of
        the tables whose entries or flags changed (outside the lock), then, under the lock,
        point every affected table (and the anchored tables falling back to it) at the
        snapshot its lookups now consult. The old snapshots are freed after the swap. Called
        at the end of every table operation (pf_ioctl_table) and table/rule transaction.
        Counters are not copied: a snapshot points at its entries' KEntry.c (those objects are
        kept in snaprefs while it is published) and at its table's pfr_dp."""
        cdef KTable kt, eff
        cdef list own_kt, snap_kt
        cdef pfr_snap **own_new
        cdef pfr_snap **own_old
        cdef pfr_dp **snap_dp
        cdef pfr_dp **own_dp
        cdef pfr_snap **snap_val
        cdef pfr_snap *sn
        cdef int i, nown, nsnap
        if not self.bound or not self.dirty:
            return
        dirty, self.dirty = self.dirty, set()
        ktables = self.ktables
        # 1. the tables whose own snapshot changes (in the tree, or gone from it)
        own_kt = [kt for kt in dirty
                  if kt.dp.own != NULL or ktables.get(table_key(kt.anchor, kt.name)) is kt]
        nown = len(own_kt)
        # 2. the tables whose effective snapshot may change: the dirty ones, the anchored tables
        # of a dirty root, and every table published before (a deleted one goes back to NULL)
        roots = set(own_kt)
        affected = set(own_kt)
        affected.update(self.published)
        for kt in ktables.values():
            if kt.root is not None and kt.root in roots:
                affected.add(kt)
        snap_kt = list(affected)
        nsnap = len(snap_kt)
        own_new = <pfr_snap **>calloc(nown + 1, sizeof(void *))
        own_old = <pfr_snap **>calloc(nown + 1, sizeof(void *))
        snap_dp = <pfr_dp **>calloc(nsnap + 1, sizeof(void *))
        snap_val = <pfr_snap **>calloc(nsnap + 1, sizeof(void *))
        own_dp = <pfr_dp **>calloc(nown + 1, sizeof(void *))
        if (own_new == NULL or own_old == NULL or snap_dp == NULL or snap_val == NULL
                or own_dp == NULL):
            free(own_new); free(own_old); free(snap_dp); free(snap_val); free(own_dp)
            self.dirty.update(dirty)
            raise MemoryError()
        try:
            newown = {}
            newrefs = []                # per own_kt: the KEntry objects its snapshot points into
            try:
                for i in range(nown):
                    kt = own_kt[i]
                    refs = None
                    if (ktables.get(table_key(kt.anchor, kt.name)) is kt
                            and kt.flags & PFR_TFLAG_ACTIVE):
                        refs = list(kt.radix.entries.values())
                        own_new[i] = snap_build(kt, refs)
                    newrefs.append(refs)
                    own_old[i] = kt.dp.own
                    own_dp[i] = kt.dp
                    newown[kt] = <uintptr_t>own_new[i]
            except BaseException:
                for i in range(nown):
                    snap_free(own_new[i])
                self.dirty.update(dirty)
                raise
            for i in range(nsnap):
                kt = snap_kt[i]
                snap_dp[i] = kt.dp
                if ktables.get(table_key(kt.anchor, kt.name)) is not kt:
                    snap_val[i] = NULL
                    self.published.discard(kt)
                    continue
                eff = effective(kt)
                if eff is None:
                    sn = NULL
                elif eff in newown:
                    sn = <pfr_snap *><uintptr_t>newown[eff]
                else:
                    sn = eff.dp.own
                snap_val[i] = sn
                if sn != NULL:
                    self.published.add(kt)
                else:
                    self.published.discard(kt)
            with nogil:
                if self.dplock != NULL:
                    pthread_mutex_lock(self.dplock)
                for i in range(nown):
                    own_dp[i].own = own_new[i]
                for i in range(nsnap):
                    snap_dp[i].snap = snap_val[i]
                if self.dplock != NULL:
                    pthread_mutex_unlock(self.dplock)
                for i in range(nown):
                    snap_free(own_old[i])
            # the old snapshots are gone: the entries only they pointed at may go too (a removed
            # entry's counters go with it, as in FreeBSD)
            for i in range(nown):
                if newrefs[i] is None:
                    self.snaprefs.pop(own_kt[i], None)
                else:
                    self.snaprefs[own_kt[i]] = newrefs[i]
        finally:
            free(own_new); free(own_old); free(snap_dp); free(snap_val); free(own_dp)

    def dp_lookup(self, KTable kt, int af, addr):
        """The datapath's lookup through `kt` (tests): -2 no active table, -1 no entry, 0 a
        plain entry, 1 a negated entry."""
        cdef const uint8_t *a = addr
        af = af_in(af)
        if len(addr) < addr_len(af):
            raise ValueError("address shorter than its family's")
        if kt.dp.snap == NULL:
            return -2
        return pfr_lookup(kt.dp.snap, af, a)

    def _dp_count_for_tests(self, KTable kt, int af, addr, uint64_t nbytes, int dir_out,
                            int op_pass, bint notrule, long repeat=1):
        """Test hook: what pf_test does for a packet whose matching rule has `kt` as its address
        (pfr_dp_update_stats on kt's pfr_dp), `repeat` times, each under the datapath lock as
        one packet, without the GIL. `addr`: the 16 bytes of a pf_addr (network order)."""
        cdef pf_addr pa
        cdef uint8_t caf = af_in(af)
        cdef pfr_dp *d = kt.dp
        cdef pthread_mutex_t *lk = self.dplock if self.bound else NULL
        cdef long i
        cdef bytes raw = bytes(addr)
        if len(raw) < addr_len(caf):
            raise ValueError("address shorter than its family's")
        memset(&pa, 0, sizeof(pa))
        memcpy(&pa, <const char *>raw, min(<size_t>len(raw), sizeof(pa)))
        with nogil:
            for i in range(repeat):
                if lk != NULL:
                    pthread_mutex_lock(lk)
                pfr_dp_update_stats(d, &pa, caf, nbytes, dir_out, op_pass, notrule)
                if lk != NULL:
                    pthread_mutex_unlock(lk)

    def _dp_pool_get_for_tests(self, KTable kt, int af, int idx, counter, bint wrap=True):
        """Test hook: what pf_map_addr does for a round-robin pool holding <kt>: pfr_dp_pool_get
        (wrap False: pfr_dp_pool_next) on kt's pfr_dp under the datapath lock, without the GIL.
        `counter`: the 16 bytes of a pf_addr (network order). Returns (its return value, *idx,
        the counter's 16 bytes)."""
        cdef pf_addr pa
        cdef uint8_t caf = af_in(af)
        cdef pfr_dp *d = kt.dp
        cdef pthread_mutex_t *lk = self.dplock if self.bound else NULL
        cdef int cidx = idx, r
        cdef bytes raw = bytes(counter)
        if len(raw) != sizeof(pa):
            raise ValueError("a pf_addr is 16 bytes")
        memcpy(&pa, <const char *>raw, sizeof(pa))
        with nogil:
            if lk != NULL:
                pthread_mutex_lock(lk)
            if wrap:
                r = pfr_dp_pool_get(d, &cidx, &pa, caf)
            else:
                r = pfr_dp_pool_next(d, &cidx, &pa, caf)
            if lk != NULL:
                pthread_mutex_unlock(lk)
        return r, cidx, PyBytes_FromStringAndSize(<char *>pa.addr8, sizeof(pa))


# --- snapshots: sorted prefix arrays per prefix length (nogil lookups) -------------------------

# while building: an entry with its counters' address, sorted together, then split into the
# compact search array (e4/e6) and its parallel counter array (c4/c6)
ctypedef struct pfr_b4:
    pfr_e4 e
    pfr_kctr *c

ctypedef struct pfr_b6:
    pfr_e6 e
    pfr_kctr *c

# while building the pool walk (pfr_snap.p4/p6): a non-negated entry with its network, sorted
# into radix order
ctypedef struct pfr_o4:
    uint32_t key
    pfr_pent p

ctypedef struct pfr_o6:
    uint64_t hi
    uint64_t lo
    pfr_pent p

cdef int cmp_b4(const void *a, const void *b) noexcept nogil:
    cdef const pfr_b4 *x = <const pfr_b4 *>a
    cdef const pfr_b4 *y = <const pfr_b4 *>b
    return (x.e.key > y.e.key) - (x.e.key < y.e.key)

cdef int cmp_b6(const void *a, const void *b) noexcept nogil:
    cdef const pfr_b6 *x = <const pfr_b6 *>a
    cdef const pfr_b6 *y = <const pfr_b6 *>b
    if x.e.hi != y.e.hi:
        return 1 if x.e.hi > y.e.hi else -1
    return (x.e.lo > y.e.lo) - (x.e.lo < y.e.lo)

# radix tree order (rn_walktree): by network address, then the more specific prefix first (a
# duplicated key's chain is kept most specific first, rn_addroute)
cdef int cmp_o4(const void *a, const void *b) noexcept nogil:
    cdef const pfr_o4 *x = <const pfr_o4 *>a
    cdef const pfr_o4 *y = <const pfr_o4 *>b
    if x.key != y.key:
        return 1 if x.key > y.key else -1
    return (x.p.net < y.p.net) - (x.p.net > y.p.net)

cdef int cmp_o6(const void *a, const void *b) noexcept nogil:
    cdef const pfr_o6 *x = <const pfr_o6 *>a
    cdef const pfr_o6 *y = <const pfr_o6 *>b
    if x.hi != y.hi:
        return 1 if x.hi > y.hi else -1
    if x.lo != y.lo:
        return 1 if x.lo > y.lo else -1
    return (x.p.net < y.p.net) - (x.p.net > y.p.net)

cdef inline uint32_t be32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline uint64_t be64(const uint8_t *p) noexcept nogil:
    return (<uint64_t>be32(p) << 32) | be32(p + 4)

cdef inline uint64_t mask64(int bits) noexcept nogil:
    """The top `bits` (0..64) bits set."""
    if bits <= 0:
        return 0
    if bits >= 64:
        return <uint64_t>-1
    return (<uint64_t>-1) << (64 - bits)


cdef void snap_free(pfr_snap *s) noexcept nogil:
    if s != NULL:
        free(s.e4)
        free(s.e6)
        free(s.c4)
        free(s.c6)
        free(s.p4)
        free(s.p6)
        free(s)


cdef pfr_snap *snap_build(KTable kt, list entries) except NULL:
    """A snapshot of kt's entries (pfr_snap): `entries`, kt's KEntry objects, which the caller
    keeps alive while the snapshot is published (its counter pointers lead into them)."""
    cdef pfr_snap *s = <pfr_snap *>calloc(1, sizeof(pfr_snap))
    cdef int count[2][129]
    cdef uint32_t pos[2][129]
    cdef KEntry ke
    cdef int net, g
    cdef uint32_t n4 = 0, n6 = 0, at4 = 0, at6 = 0, k
    cdef pfr_b4 *b4 = NULL
    cdef pfr_b6 *b6 = NULL
    cdef pfr_o4 *o4 = NULL
    cdef pfr_o6 *o6 = NULL
    if s == NULL:
        raise MemoryError()
    s.owner = kt.dp
    s.counters = (kt.flags & PFR_TFLAG_COUNTERS) != 0
    memset(count, 0, sizeof(count))
    for ke in entries:
        if ke.af == AF_INET:
            count[0][ke.net] += 1
            n4 += 1
        else:
            count[1][ke.net] += 1
            n6 += 1
    s.e4 = <pfr_e4 *>calloc(n4 + 1, sizeof(pfr_e4))
    s.e6 = <pfr_e6 *>calloc(n6 + 1, sizeof(pfr_e6))
    s.c4 = <pfr_kctr **>calloc(n4 + 1, sizeof(pfr_kctr *))
    s.c6 = <pfr_kctr **>calloc(n6 + 1, sizeof(pfr_kctr *))
    b4 = <pfr_b4 *>calloc(n4 + 1, sizeof(pfr_b4))
    b6 = <pfr_b6 *>calloc(n6 + 1, sizeof(pfr_b6))
    s.p4 = <pfr_pent *>calloc(n4 + 1, sizeof(pfr_pent))
    s.p6 = <pfr_pent *>calloc(n6 + 1, sizeof(pfr_pent))
    o4 = <pfr_o4 *>calloc(n4 + 1, sizeof(pfr_o4))
    o6 = <pfr_o6 *>calloc(n6 + 1, sizeof(pfr_o6))
    if (s.e4 == NULL or s.e6 == NULL or s.c4 == NULL or s.c6 == NULL or b4 == NULL
            or b6 == NULL or s.p4 == NULL or s.p6 == NULL or o4 == NULL or o6 == NULL):
        free(b4)
        free(b6)
        free(o4)
        free(o6)
        snap_free(s)
        raise MemoryError()
    # groups longest prefix first; pos = where each length's entries start
    for net in range(32, -1, -1):
        if count[0][net]:
            g = s.ngroups[0]
            s.groups[0][g].start = at4
            s.groups[0][g].n = count[0][net]
            s.groups[0][g].net = net
            s.ngroups[0] += 1
            pos[0][net] = at4
            at4 += count[0][net]
    for net in range(128, -1, -1):
        if count[1][net]:
            g = s.ngroups[1]
            s.groups[1][g].start = at6
            s.groups[1][g].n = count[1][net]
            s.groups[1][g].net = net
            s.ngroups[1] += 1
            pos[1][net] = at6
            at6 += count[1][net]
    for ke in entries:
        if ke.af == AF_INET:
            k = pos[0][ke.net]
            pos[0][ke.net] += 1
            b4[k].e.key = be32(ke.addr) & <uint32_t>(mask64(ke.net) >> 32)
            b4[k].e.neg = ke.neg
            b4[k].c = &ke.c
        else:
            k = pos[1][ke.net]
            pos[1][ke.net] += 1
            b6[k].e.hi = be64(ke.addr) & mask64(ke.net)
            b6[k].e.lo = be64(ke.addr + 8) & mask64(ke.net - 64)
            b6[k].e.neg = ke.neg
            b6[k].c = &ke.c
    with nogil:
        for g in range(s.ngroups[0]):
            qsort(&b4[s.groups[0][g].start], s.groups[0][g].n, sizeof(pfr_b4), cmp_b4)
        for g in range(s.ngroups[1]):
            qsort(&b6[s.groups[1][g].start], s.groups[1][g].n, sizeof(pfr_b6), cmp_b6)
        for k in range(n4):
            s.e4[k] = b4[k].e
            s.c4[k] = b4[k].c
        for k in range(n6):
            s.e6[k] = b6[k].e
            s.c6[k] = b6[k].c
        # the pool walk: the non-negated entries, from the lookup order (groups) to radix order
        for g in range(s.ngroups[0]):
            for k in range(s.groups[0][g].start, s.groups[0][g].start + s.groups[0][g].n):
                if not s.e4[k].neg:
                    o4[s.np4].key = s.e4[k].key
                    o4[s.np4].p.at = k
                    o4[s.np4].p.net = s.groups[0][g].net
                    s.np4 += 1
        for g in range(s.ngroups[1]):
            for k in range(s.groups[1][g].start, s.groups[1][g].start + s.groups[1][g].n):
                if not s.e6[k].neg:
                    o6[s.np6].hi = s.e6[k].hi
                    o6[s.np6].lo = s.e6[k].lo
                    o6[s.np6].p.at = k
                    o6[s.np6].p.net = s.groups[1][g].net
                    s.np6 += 1
        qsort(o4, s.np4, sizeof(pfr_o4), cmp_o4)
        qsort(o6, s.np6, sizeof(pfr_o6), cmp_o6)
        for k in range(s.np4):
            s.p4[k] = o4[k].p
        for k in range(s.np6):
            s.p6[k] = o6[k].p
    free(b4)
    free(b6)
    free(o4)
    free(o6)
    return s


cdef inline int snap_find4(const pfr_snap *s, uint32_t a4, uint32_t *at,
                           uint32_t *net) noexcept nogil:
    """Longest-prefix search of host-order IPv4 address a4: -1 no entry covers it, else the
    entry's negation (0/1), its index in e4 (and c4) in *at, its prefix length in *net."""
    cdef int g
    cdef uint32_t lo, hi, mid, k4
    cdef const pfr_group *gr
    cdef const pfr_e4 *e4
    for g in range(s.ngroups[0]):
        gr = &s.groups[0][g]
        k4 = a4 & <uint32_t>(mask64(gr.net) >> 32)
        e4 = s.e4 + gr.start
        lo = 0
        hi = gr.n
        while lo < hi:
            mid = (lo + hi) >> 1
            if e4[mid].key < k4:
                lo = mid + 1
            elif e4[mid].key > k4:
                hi = mid
            else:
                at[0] = gr.start + mid
                net[0] = gr.net
                return <int>e4[mid].neg
    return -1


cdef inline int snap_find6(const pfr_snap *s, uint64_t ahi, uint64_t alo, uint32_t *at,
                           uint32_t *net) noexcept nogil:
    """snap_find4 for the host-order IPv6 address (ahi, alo), in e6/c6."""
    cdef int g
    cdef uint32_t lo, hi, mid
    cdef uint64_t khi, klo
    cdef const pfr_group *gr
    cdef const pfr_e6 *e6
    for g in range(s.ngroups[1]):
        gr = &s.groups[1][g]
        khi = ahi & mask64(gr.net)
        klo = alo & mask64(<int>gr.net - 64)
        e6 = s.e6 + gr.start
        lo = 0
        hi = gr.n
        while lo < hi:
            mid = (lo + hi) >> 1
            if e6[mid].hi < khi or (e6[mid].hi == khi and e6[mid].lo < klo):
                lo = mid + 1
            elif e6[mid].hi > khi or e6[mid].lo > klo:
                hi = mid
            else:
                at[0] = gr.start + mid
                net[0] = gr.net
                return <int>e6[mid].neg
    return -1


cdef inline int snap_find(const pfr_snap *s, uint8_t af, const uint8_t *addr,
                          uint32_t *at) noexcept nogil:
    """Longest-prefix search: -1 no entry covers `addr`, else the entry's negation (0/1), its
    index in e4/e6 (and c4/c6) stored in *at."""
    cdef uint32_t net
    if af == AF_INET:
        return snap_find4(s, be32(addr), at, &net)
    return snap_find6(s, be64(addr), be64(addr + 8), at, &net)


cdef int pfr_lookup(const pfr_snap *s, uint8_t af, const uint8_t *addr) noexcept nogil:
    cdef uint32_t at
    return snap_find(s, af, addr, &at)


cdef bint pfr_match_addr(pfr_dp *d, uint8_t af, const uint8_t *addr) noexcept nogil:
    cdef const pfr_snap *s = d.snap
    if s == NULL:
        return False                    # no active table: never matches, nothing counted
    if pfr_lookup(s, af, addr) == 0:
        s.owner.nmatch += 1
        return True
    s.owner.nnomatch += 1
    return False


cdef void pfr_dp_update_stats(pfr_dp *t, const pf_addr *a, uint8_t af, uint64_t bytes,
                              int dir_out, int op_pass, bint notrule) noexcept nogil:
    cdef const pfr_snap *s
    cdef pfr_dp *o
    cdef pfr_kctr *c
    cdef uint32_t at = 0
    cdef int r
    if t == NULL:
        return
    s = t.snap
    if s == NULL:
        return                          # no active table (nor root): nothing counted
    if (dir_out < 0 or dir_out >= PFR_DIR_MAX or op_pass < 0 or op_pass >= PFR_OP_TABLE_MAX
            or (af != AF_INET and af != AF_INET6)):
        return
    r = snap_find(s, af, a.addr8, &at)
    # the table's answer (an entry, not negated) differs from what the rule required of it
    if (r != 0) != (notrule != 0):
        op_pass = PFR_OP_XPASS
    o = s.owner
    o.packets[dir_out][op_pass] += 1
    o.nbytes[dir_out][op_pass] += bytes
    if r >= 0 and op_pass != PFR_OP_XPASS and s.counters:
        c = s.c4[at] if af == AF_INET else s.c6[at]
        c.packets[dir_out][op_pass] += 1
        c.nbytes[dir_out][op_pass] += bytes


# --- round-robin pools: pfr_pool_get ----------------------------------------------------------

cdef inline void put32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v

cdef inline void put64(uint8_t *p, uint64_t v) noexcept nogil:
    put32(p, <uint32_t>(v >> 32))
    put32(p + 4, <uint32_t>v)


cdef int pool_next4(const pfr_snap *s, int *pidx, pf_addr *counter) noexcept nogil:
    """pfr_pool_get for AF_INET on snapshot s (see pfr_dp_pool_next)."""
    cdef int idx = pidx[0]
    cdef bint use_counter = idx >= 0, found = False
    cdef uint32_t c = be32(counter.addr8), cur, m, a = 0, at2 = 0, net2 = 0
    cdef const pfr_pent *pe
    if idx < 0:
        idx = 0
    while True:                                     # _next_block
        if <uint32_t>idx >= s.np4:
            s.owner.nnomatch += 1
            return 1
        pe = &s.p4[idx]
        cur = s.e4[pe.at].key
        m = <uint32_t>(mask64(pe.net) >> 32)
        # the counter while it is within the block, else the block's first address
        if not use_counter or (c & m) == cur:
            a = c if use_counter else cur
            while True:
                # a host has nothing nested; else the address must not be in a more specific
                # entry (negated or not): step past that one's network
                if (pe.net == 32 or snap_find4(s, a, &at2, &net2) < 0 or at2 == pe.at):
                    found = True
                    break
                a = (a | ~<uint32_t>(mask64(<int>net2) >> 32)) + 1
                if a == 0 or (a & m) != cur:       # past the block's end (or 2^32 wrapped)
                    break
            if found:
                break
        idx += 1
        use_counter = False
    put32(counter.addr8, a)
    pidx[0] = idx
    s.owner.nmatch += 1
    return 0


cdef int pool_next6(const pfr_snap *s, int *pidx, pf_addr *counter) noexcept nogil:
    """pfr_pool_get for AF_INET6 on snapshot s (see pfr_dp_pool_next)."""
    cdef int idx = pidx[0]
    cdef bint use_counter = idx >= 0, found = False
    cdef uint64_t chi = be64(counter.addr8), clo = be64(counter.addr8 + 8)
    cdef uint64_t curhi, curlo, mhi, mlo, ahi = 0, alo = 0
    cdef uint32_t at2 = 0, net2 = 0
    cdef const pfr_pent *pe
    if idx < 0:
        idx = 0
    while True:                                     # _next_block
        if <uint32_t>idx >= s.np6:
            s.owner.nnomatch += 1
            return 1
        pe = &s.p6[idx]
        curhi = s.e6[pe.at].hi
        curlo = s.e6[pe.at].lo
        mhi = mask64(pe.net)
        mlo = mask64(<int>pe.net - 64)
        if not use_counter or ((chi & mhi) == curhi and (clo & mlo) == curlo):
            if use_counter:
                ahi = chi
                alo = clo
            else:
                ahi = curhi
                alo = curlo
            while True:
                if (pe.net == 128 or snap_find6(s, ahi, alo, &at2, &net2) < 0
                        or at2 == pe.at):
                    found = True
                    break
                # past the nested network: its last address + 1 (FreeBSD 12.1 builds that
                # mask with AF_INET here, which for IPv6 is all zero: see pfr_dp_pool_next)
                ahi |= ~mask64(<int>net2)
                alo |= ~mask64(<int>net2 - 64)
                alo += 1
                if alo == 0:
                    ahi += 1
                if ((ahi == 0 and alo == 0) or (ahi & mhi) != curhi
                        or (alo & mlo) != curlo):
                    break
            if found:
                break
        idx += 1
        use_counter = False
    put64(counter.addr8, ahi)
    put64(counter.addr8 + 8, alo)
    pidx[0] = idx
    s.owner.nmatch += 1
    return 0


cdef int pfr_dp_pool_next(pfr_dp *t, int *idx, pf_addr *counter, uint8_t af) noexcept nogil:
    # FreeBSD 12.1 pfr_pool_get: with idx >= 0 the counter is used if it lies within entry idx
    # (pfr_kentry_byidx: the idx-th non-negated entry in rn_walktree order, our p4/p6), else
    # the walk moves to the next entry's first address; an address inside a more specific
    # entry is stepped past (PF_POOLMASK with that entry's mask, PF_AINC). Differences, all in
    # cases FreeBSD gets wrong: the nested entry's mask is the family's (12.1 prepares it with
    # AF_INET, an all-zero IPv6 mask, so an IPv6 walk meeting a nested entry leaves the rest of
    # the block); stepping past the top of the address space ends the block (FreeBSD wraps to
    # 0, inside a /0, and may loop forever).
    cdef const pfr_snap *s
    if t == NULL or idx == NULL or counter == NULL:
        return 1
    s = t.snap
    if s == NULL:
        return -1                       # no active table (nor root): nothing counted
    if af == AF_INET:
        return pool_next4(s, idx, counter)
    if af == AF_INET6:
        return pool_next6(s, idx, counter)
    s.owner.nnomatch += 1               # pfr_kentry_byidx: no entry of an unknown family
    return 1


cdef int pfr_dp_pool_get(pfr_dp *t, int *idx, pf_addr *counter, uint8_t af) noexcept nogil:
    cdef int r
    if t == NULL or idx == NULL or counter == NULL:
        return 1
    r = pfr_dp_pool_next(t, idx, counter, af)
    if r == 1 and idx[0] >= 0:
        # past the last entry: start over, as pf_map_addr's try_next does (tblidx = -1) when
        # this table is the pool's only address
        idx[0] = -1
        r = pfr_dp_pool_next(t, idx, counter, af)
    return 0 if r == 0 else 1


cdef inline KTable effective(KTable kt):
    """The table a rule's lookups use: its own if active, else its root's if that is active."""
    if not kt.flags & PFR_TFLAG_ACTIVE and kt.root is not None:
        kt = kt.root
    return kt if kt.flags & PFR_TFLAG_ACTIVE else None


cdef void fill_table(pfr_table *out, KTable kt):
    memset(out, 0, sizeof(pfr_table))
    put_cstr(out.pfrt_anchor, PF_MAXPATHLEN, kt.anchor)
    put_cstr(out.pfrt_name, PF_TABLE_NAME_SIZE, kt.name)
    out.pfrt_flags = kt.flags
    out.pfrt_fback = kt.fback
