# pf tables: the header's table types (declared here, not in pfvar.pxd, which the lead owns) and
# the core's C-level interface, used by pf_ioctl_table.
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from pfkern.pfvar_priv cimport pthread_mutex_t


from pfkern.pfvar cimport *   # the header's types, declared once in pfvar.pxd

# --- the datapath's view of a table (nogil) ---------------------------------------------------
# A snapshot of one active table's entries, built outside the datapath lock whenever the table's
# entries change: per address family, one group per prefix length present (longest first), each
# a sorted array of (masked address, negated) for binary search. Read only once published.
ctypedef struct pfr_e4:
    uint32_t key                        # host order
    uint32_t neg

ctypedef struct pfr_e6:
    uint64_t hi                         # host order, first 8 bytes
    uint64_t lo
    uint64_t neg

ctypedef struct pfr_group:
    uint32_t start
    uint32_t n
    uint32_t net

cdef struct pfr_dp

# pfr_pool_get's walk (pfr_snap.p4/p6): one non-negated entry of a family, in FreeBSD's radix
# tree order (rn_walktree: by network address, a more specific prefix before a less specific
# one of the same address), as its index in e4/e6 and its prefix length. The e4/e6 arrays are
# in lookup order instead (longest prefix group first), which is not the order FreeBSD walks.
ctypedef struct pfr_pent:
    uint32_t at
    uint32_t net

# An entry's packet/byte counters (pfr_kcounters), stored in its KEntry: the snapshots point at
# them, so the datapath and the ioctls share one copy and a republish loses no count.
ctypedef struct pfr_kctr:
    uint64_t packets[2][2]              # [PFR_DIR_*][PFR_OP_BLOCK/PASS]
    uint64_t nbytes[2][2]

ctypedef struct pfr_snap:
    pfr_dp *owner                       # the table it was built from (its counters)
    int ngroups[2]                      # [IPv4, IPv6]
    pfr_group groups[2][129]
    pfr_e4 *e4
    pfr_e6 *e6
    # (fields below appended: compiled users of the ones above keep working)
    pfr_kctr **c4                       # counters of e4[i] / e6[i] (same order)
    pfr_kctr **c6
    bint counters                       # the owner had PFR_TFLAG_COUNTERS when this was built
    # (appended for pfr_dp_pool_get) the non-negated entries in radix order, per family
    pfr_pent *p4
    pfr_pent *p6
    uint32_t np4
    uint32_t np6

# One per KTable, alive as long as the KTable object: what a compiled rule points at. `snap` is
# the snapshot lookups through this table consult (its own, or its root's while it is not
# active; NULL: no active table, never matches), swapped under the datapath lock.
cdef struct pfr_dp:
    pfr_snap *snap
    pfr_snap *own                       # this table's own snapshot (NULL unless active)
    uint64_t nmatch                     # pfr_match_addr's counts from the datapath
    uint64_t nnomatch
    # (appended: pf_test was compiled against the fields above)
    uint64_t packets[2][3]              # pfr_dp_update_stats's counts: [PFR_DIR_*][PFR_OP_*]
    uint64_t nbytes[2][3]

# -1: no entry covers the address; 0: the longest prefix is a plain entry; 1: a negated one
cdef int pfr_lookup(const pfr_snap *s, uint8_t af, const uint8_t *addr) noexcept nogil
# pfr_match_addr: the address is in the table (longest match exists, not negated); counts
# match/nomatch on the table consulted. `af` is Linux's AF_INET/AF_INET6.
cdef bint pfr_match_addr(pfr_dp *d, uint8_t af, const uint8_t *addr) noexcept nogil
# pfr_update_stats: a packet of `bytes` bytes (the IP total length) that a rule with this table
# as its address matched, in direction dir_out (PFR_DIR_IN/OUT) with verdict op_pass
# (PFR_OP_BLOCK/PASS); `notrule`: the rule's address is "! <table>". Counted on the table
# consulted (the root table while an anchor's own is not active; nothing without an active
# one) as op_pass, or as PFR_OP_XPASS when the table's answer disagrees with the rule's (no
# entry or a negated one, unless notrule); and, when the table has PFR_TFLAG_COUNTERS and the
# verdict is not XPASS, on the longest-prefix entry. The caller holds the datapath lock.
cdef void pfr_dp_update_stats(pfr_dp *t, const pf_addr *a, uint8_t af, uint64_t bytes,
                              int dir_out, int op_pass, bint notrule) noexcept nogil

# pfr_pool_get: the next address of the table for a round-robin pool. *idx is the pool's
# position (the entry index, -1 = start over), counter the pool's current address (in/out,
# network order, Linux af). 0 = counter holds the address to use; 1 = the table has no usable
# (non-negated) address of that family. Caller holds the datapath lock.
# The walk: the table's non-negated entries of `af` in radix order (pfr_pent); the counter is
# used while it lies in entry *idx's network, stepping past any more specific entry (negated or
# not) nested in it, else the next entry's network address is; past the last entry the walk
# starts over at entry 0 (*idx = 0), as pf_map_addr's retry with tblidx = -1 does for a pool
# holding just this table. The table consulted is the lookups' (root fallback); none: 1.
# Counts match / nomatch on it as FreeBSD does (a wrap: one nomatch, then a match).
cdef int pfr_dp_pool_get(pfr_dp *t, int *idx, pf_addr *counter, uint8_t af) noexcept nogil
# The same step without the wrap, FreeBSD's pfr_pool_get itself: 1 also when the walk runs past
# the table's last entry (*idx left alone; pf_map_addr then moves to the pool's next address and
# calls again with *idx = -1); -1: no active table. For pools of several addresses.
cdef int pfr_dp_pool_next(pfr_dp *t, int *idx, pf_addr *counter, uint8_t af) noexcept nogil


cdef class KEntry:
    """pfr_kentry: one prefix of a table and its counters."""
    cdef readonly bytes key             # af, address, 255 - prefix length (sorts as FreeBSD lists)
    cdef readonly uint8_t af            # AF_INET or Linux's AF_INET6
    cdef readonly uint8_t net
    cdef public bint neg                # a negated entry ("!addr")
    cdef uint8_t addr[16]
    cdef pfr_kctr c                     # its counters (the published snapshot points here)
    cdef public long tzero

    cdef void clear_stats(self, long tzero)


cdef class Radix:
    """The prefixes of one table (FreeBSD's two radix heads): exact and longest-prefix lookup."""
    cdef dict entries                   # key -> KEntry
    cdef int nets[2][129]               # entries per [family][prefix length]
    cdef tuple lens4                    # prefix lengths present, longest first (None: stale)
    cdef tuple lens6

    cdef tuple present(self, int fam)

    cdef KEntry exact(self, bytes key)
    cdef KEntry longest(self, uint8_t af, const uint8_t *addr)
    cdef void add(self, KEntry ke)
    cdef void remove(self, KEntry ke)
    cdef list ordered(self)


cdef class KTable:
    """pfr_ktable: a named table of an anchor, its inactive shadow and counters."""
    cdef readonly str anchor
    cdef readonly str name
    cdef public int flags               # PFR_TFLAG_*
    cdef uint8_t fback                  # pfrt_fback as the creating request gave it
    cdef Radix radix
    cdef public int cnt                 # entries (NO_ADDRESSES in a shadow defined without any)
    cdef KTable root                    # the main ruleset's table of the same name (anchored tables)
    cdef KTable shadow                  # the inactive definition of an open transaction
    cdef object rs                      # the anchor's Ruleset (None for shadows)
    cdef int refcnt[2]                  # [PFR_REFCNT_RULE / ANCHOR]
    cdef uint64_t packets[2][3]         # [PFR_DIR_*][PFR_OP_BLOCK/PASS/XPASS] (Python API;
    cdef uint64_t nbytes[2][3]          # the datapath's are in dp: the stats add both)
    cdef uint64_t nmatch
    cdef uint64_t nnomatch
    cdef public long tzero
    cdef pfr_dp *dp                     # the datapath's view (see pfr_dp)


cdef class Tables:
    cdef public object core
    cdef dict ktables                   # (anchor, name) -> KTable: pfr_ktables
    cdef dict by_anchor                 # anchor -> {key: KTable}: an anchor's tables, found
                                        # without walking every table (transactions per anchor)
    cdef public long nentries           # entries allocated (tables, shadows, in-flight requests)
    # the datapath's snapshots (bind_datapath): tables whose entries or flags changed since
    # the last sync(), tables whose pfr_dp.snap is set, and the lock snapshots swap under
    cdef set dirty
    cdef set published
    cdef pthread_mutex_t *dplock
    cdef bint bound
    cdef dict snaprefs                  # KTable -> its KEntry objects dp.own's counters point
                                        # into (kept alive while that snapshot is published)

    cdef inline void touch(self, KTable kt):
        if self.bound:
            self.dirty.add(kt)

    # one per DIOCR* command, as pfr_*() in FreeBSD's pf_table.c; `flags` may carry
    # PFR_FLAG_USERIOCTL (the request came from a user: the reserved anchor is refused)
    cdef int table_count(self, pfr_table *filter, int flags) except? -2
    cdef int clr_tables(self, pfr_table *filter, int flags) except -1
    cdef int add_tables(self, pfr_table *tbl, int size, int flags) except -1
    cdef int del_tables(self, pfr_table *tbl, int size, int flags) except -1
    cdef int get_tables(self, pfr_table *filter, char *out, int *size, int flags, bint stats) except -1
    cdef int clr_tstats(self, pfr_table *tbl, int size, int flags) except -1
    cdef int set_tflags(self, pfr_table *tbl, int size, int setflag, int clrflag, int *nchange,
                        int *ndel, int flags) except -1
    cdef int clr_addrs(self, pfr_table *tbl, int flags) except -1
    cdef int add_addrs(self, pfr_table *tbl, pfr_addr *addr, int size, int flags) except -1
    cdef int del_addrs(self, pfr_table *tbl, pfr_addr *addr, int size, int flags) except -1
    cdef int set_addrs(self, pfr_table *tbl, pfr_addr *addr, int size, int *size2, int *nadd,
                       int *ndel, int *nchange, int flags) except -1
    cdef int get_addrs(self, pfr_table *tbl, char *out, int size, int flags, bint stats) except -1
    cdef int clr_astats(self, pfr_table *tbl, pfr_addr *addr, int size, int flags) except -1
    cdef int tst_addrs(self, pfr_table *tbl, pfr_addr *addr, int size, int flags) except -1
    cdef int ina_define(self, pfr_table *tbl, pfr_addr *addr, int size, int *nadd, int *naddr,
                        uint32_t ticket, int flags) except -1

    # internals
    cdef KTable lookup(self, pfr_table *tbl)
    cdef KTable active_table(self, pfr_table *tbl, bint writable)
    cdef KTable create_ktable(self, pfr_table *tbl, long tzero, bint attach)
    cdef void destroy_ktable(self, KTable kt)
    cdef void insert_ktable(self, KTable kt)
    cdef void setflags_ktable(self, KTable kt, int newf)
    cdef int clstats_ktable(self, KTable kt, long tzero, bint recurse) except -1
    cdef void commit_ktable(self, KTable kt, long tzero)
    cdef KEntry new_entry(self, pfr_addr *ad, bytes key, unsigned int limit)
    cdef void insert_entries(self, KTable kt, entries, long tzero)
    cdef void remove_entries(self, KTable kt, list entries)
    cdef void flush_entries(self, KTable kt)
    cdef unsigned int entry_limit(self)
    cdef list anchor_tables(self, str anchor, int with_flag)
    cdef int clear_counters(self, list tables, list entries, long ttzero, long etzero) except -1
