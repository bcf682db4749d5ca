# cython: language_level=3
"""pf_test on the datapath (FreeBSD 12.1 pf.c): translation (nat/binat/rdr) and filter evaluation
over rulesets compiled at commit, keep state through pf_state's C table with wire and stack keys,
TCP window tracking, UDP/ICMP/other pseudo-states, ICMP errors matched to (and translated back
through) the state of the packet they quote, block return, source tracking and its limits,
pflog, state purge.

Shape:
- `Filter(core, datapath)` registers `core.rulesets.on_commit`; every commit of a filter or
  translation ruleset (any anchor) recompiles the main rulesets and the anchors they call into C
  arrays (`cf_gen`) outside any lock, then swaps `e.gen` under the engine lock (the state table's
  `t.lock`, which the datapath holds for the length of one pf_test): no packet sees half a
  ruleset, and the control plane holds the lock for a pointer store.
- Each rule compiles to a compact `cf_rule` (its match fields, one cache line) that points at the
  committed `Rule.r`: packets, bytes and states_cur/tot of the matched rule are bumped there in
  place. Evaluations (every rule looked at, as FreeBSD counts them) go to a per-ruleset array
  that `Rule.ext_evals` points at (DIOCGETRULE adds it) and are folded into `Rule.r.evaluations`
  when the generation is swapped. Runs of rules that differ only in one address or port, each
  member an interval of keys (host, network, range, port, port range) and none overlapping, are
  looked up by binary search (cf_run), their evaluations counted as ranges; rulesets the walk
  would still visit rule by rule get a classifier (cf_cls) that names the rules it must stop at.
- Translation rules compile into the same records, as first-match walks (pf_match_translation);
  pools, port allocation and the packet rewriting (incremental checksums, partial ones of vnet
  frames included) are pf_nat's.
- States point at the rules (and compiled rules) that made them; a replaced generation lives as
  long as states or source nodes use it (cf_gen.refs), so counters and per-rule timeouts follow
  a state for its whole life, as FreeBSD's rule references do.
- Table addresses match through pf_table's nogil snapshots (`pfr_match_addr`: longest prefix,
  negated entries, root-table fallback for anchors, an inactive table never matches), which
  pf_table republishes under the same lock after every table change (`Tables.bind_datapath`);
  matched table rules count through `pfr_dp_update_stats`.
- `pf_test_hook` is tap_engine.pf_test; it runs without the GIL, allocation-free (states and
  source nodes come from pf_state's pools).
- A purge thread (PFTM_INTERVAL) unlinks expired states (PURGE_SLICE at a time, letting go of
  the engine lock between slices) and source nodes, frees generations no state uses, and adds
  overloading sources to their tables (under core.lock).

- Scrub rules (first match) hand packets to pf_norm (reassembly, no-df, random-id, min-ttl,
  set-tos, max-mss) before anything else; route-to/reply-to/dup-to set tap_pkt.rt_* for the
  router to act on after the hook.

What FreeBSD has and this does not (yet): os fingerprints (never match), no-route/urpf-failed addresses (never match), modulate/synproxy
state (treated as keep state), tables in translation pools (such an entry translates nothing),
anchor names in pflog records (the ruleset field stays empty).
"""
import bisect
import logging
import os
import threading

cimport cython

from cpython.bytes cimport PyBytes_AsString
from libc.stdlib cimport malloc, calloc, free

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **, size_t, size_t)
from libc.string cimport memset, memcpy, memcmp, strncpy, strlen
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int32_t, uintptr_t

from pfkern.pfvar cimport *   # the header's types and constants
from pfkern.pfvar_priv cimport (pf_state_table, pf_state_key_cmp, pf_kstate, pf_kstate_peer,
                                pf_ksrc_node,
                                pf_match_addr, pf_match_port, pf_match, pthread_mutex_lock,
                                pthread_mutex_unlock, ntohs, htons, ntohl, htonl, AF_INET,
                                AF_INET6, PF_NO_RULE, PF_SK_WIRE, PF_SK_STACK, PF_OP_EQ, PF_OP_NE)
from pfkern.pf_state cimport (pf_find_src_node, pf_src_node_alloc, pf_src_node_link,
                              pf_unlink_src_node)
from pfkern.pf_state cimport (pf_uptime, pf_state_key_fill, pf_state_alloc, pf_state_release,
                              pf_state_insert, pf_unlink_state, pf_find_state, pf_state_expires,
                              StateTable)
from pfkern.pf_rule cimport Rule, pf_rule_addr
from pfkern.pf_table cimport KTable, Tables, pfr_dp, pfr_match_addr, pfr_dp_update_stats
from pfkern.pf_util cimport put_cstr
from pfkern.pf_rule cimport PoolAddr
from pfkern.pf_log cimport pflog_rule
from pfkern.pf_norm cimport (pf_norm_new, pf_norm_free, pf_norm_packet, pf_norm_purge, NORM_PASS)
from pfkern.pf_nat cimport (cf_pool, cf_pooladdr, NP_ADDR, NP_NONE, NP_TABLE, nat_get_sport, nat_map_addr,
                            nat_poolmask, nat_rewrite, nat_rewrite_icmp_error)
from pfkern.pf_tap cimport TAP_RT_ROUTE, TAP_RT_DUP
from pfkern.pf cimport PfCore
from pfkern.pf_tap cimport tap_if, tap_pkt, tap_engine, Datapath

log = logging.getLogger("pfd.pf_test")

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *, unsigned long, int)
    enum:
        POLLIN

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int, int)
    enum:
        EFD_CLOEXEC
        EFD_NONBLOCK

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int, void *, size_t)
    ssize_t write(int, const void *, size_t)
    int close(int)

cdef extern from "<sys/random.h>" nogil:
    ssize_t getrandom(void *, size_t, unsigned int)

cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil

cdef extern from "<sched.h>" nogil:
    int sched_yield()

# The classifier's word loops (cls_stops), vectorised: one field's rows over every word.
cdef extern from *:
    """
    __attribute__((optimize("O3")))
    static void cls_unknown(uint64_t *restrict stops, uint64_t *restrict reach,
                            const uint64_t *restrict u, uint32_t words) {
        for (uint32_t w = 0; w < words; w++) {
            stops[w] |= reach[w] & u[w];
            reach[w] &= ~u[w];
        }
    }
    __attribute__((optimize("O3")))
    static void cls_field(uint64_t *restrict stops, uint64_t *restrict reach,
                          const uint64_t *restrict m, const uint64_t *restrict j, uint32_t words) {
        for (uint32_t w = 0; w < words; w++) {
            uint64_t p = reach[w];
            stops[w] |= p & ~m[w] & j[w];
            reach[w] = p & m[w];
        }
    }
    """
    void cls_unknown(uint64_t *stops, uint64_t *reach, const uint64_t *u, uint32_t words) nogil
    void cls_field(uint64_t *stops, uint64_t *reach, const uint64_t *m, const uint64_t *j,
                   uint32_t words) nogil

# block return through the router (pf_tap): RST for TCP, ICMP/ICMPv6 unreachable otherwise
cdef extern from *:
    """
    #define PF_RET_NONE 0
    #define PF_RET_RST 1
    #define PF_RET_ICMP 2
    #define PF_RET_ICMP6 3
    """
    enum:
        PF_RET_NONE
        PF_RET_RST
        PF_RET_ICMP
        PF_RET_ICMP6

from pfkern.pf_tap cimport tap_send_rst, tap_send_icmp_error

cdef enum:
    PURGE_SLICE = 1024          # states the purge looks at per hold of the engine lock
    AF_INET6_BSD = 28
    IPPROTO_ICMP = 1
    IPPROTO_TCP = 6
    IPPROTO_UDP = 17
    IPPROTO_ICMPV6 = 58
    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_ACK = 0x10
    TCPS_CLOSED = 0
    TCPS_SYN_SENT = 2
    TCPS_ESTABLISHED = 4
    TCPS_CLOSING = 7
    TCPS_FIN_WAIT_2 = 9
    TCPS_TIME_WAIT = 10
    MAXACKWINDOW = 0xffff + 1500


cdef uint32_t UID_MAX = <uint32_t>-1

cdef enum:
    STOP = 0xffffffff           # eval_ruleset's index after a quick match


# ---- the packet descriptor (FreeBSD struct pf_pdesc) ---------------------------------------------
ctypedef struct pdesc:
    tap_pkt *p
    tap_if *ifp
    int dir
    pf_addr *src
    pf_addr *dst
    uint16_t sport                  # network order; ICMP: the id
    uint16_t dport
    uint8_t af
    uint8_t proto
    uint8_t tos
    uint8_t icmptype
    uint8_t icmpcode
    uint8_t state_icmp
    uint32_t tot_len
    uint32_t p_len                  # TCP payload length
    uint8_t *th                     # TCP header

# What pf_test_rule found: the rule, the top-level anchor rule it was reached through, the tag.
ctypedef struct evalctx:
    cf_cold *rm
    cf_cold *am
    cf_cold *acur
    int match
    int tag
    int depth


cdef inline uint32_t rand32(pf_engine *e) noexcept nogil:
    cdef uint64_t x = e.rng
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    e.rng = x
    return <uint32_t>(x >> 16)

cdef inline uint16_t rd16(const uint8_t *p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t rd32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline bint seq_gt(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(a - b) > 0

cdef inline bint seq_geq(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(a - b) >= 0

cdef inline void reason_set(pf_engine *e, int *reason, int r) noexcept nogil:
    """REASON_SET: remember the reason and count it in pf_status."""
    reason[0] = r
    if r < PFRES_MAX:
        e.status.counters[r] += 1


# ---- matching (pf_match_addr & co.) -----------------------------------------------------------------
cdef inline bint azero(const pf_addr *a, uint8_t af) noexcept nogil:
    if af == AF_INET:
        return a.addr32[0] == 0
    return (a.addr32[0] | a.addr32[1] | a.addr32[2] | a.addr32[3]) == 0

cdef bint match_range(const pf_addr *lo, const pf_addr *hi, const pf_addr *a, uint8_t af) noexcept nogil:
    """pf_match_addr_range: lo <= a <= hi, as numbers."""
    cdef int i, n = 1 if af == AF_INET else 4
    for i in range(n):
        if ntohl(a.addr32[i]) > ntohl(lo.addr32[i]):
            break
        if ntohl(a.addr32[i]) < ntohl(lo.addr32[i]):
            return False
    for i in range(n):
        if ntohl(a.addr32[i]) < ntohl(hi.addr32[i]):
            break
        if ntohl(a.addr32[i]) > ntohl(hi.addr32[i]):
            return False
    return True

cdef bint match_dyn(const cf_dyn *d, const pf_addr *a, uint8_t af) noexcept nogil:
    cdef int i
    if d == NULL:
        return False
    for i in range(d.n):
        if d.af[i] == af and pf_match_addr(0, &d.addr[i], &d.mask[i], a, af):
            return True
    return False

cdef bint mismatch_aw(uint8_t kind, const cf_cold *cc, bint src, const pf_addr *x,
                      uint8_t af) noexcept nogil:
    """PF_MISMATCHAW on a compiled address other than CK_MASK4: the packet's address does not
    match (negation applied)."""
    cdef uint8_t k = kind & 0x7f
    cdef const pf_addr *a = &cc.src_addr if src else &cc.dst_addr
    cdef const pf_addr *m = &cc.src_mask if src else &cc.dst_mask
    cdef bint bad
    if k == CK_MASK:
        bad = not azero(m, af) and not pf_match_addr(0, a, m, x, af)
    elif k == CK_ANY:
        bad = False
    elif k == CK_TABLE:
        bad = not pfr_match_addr(cc.src_tbl if src else cc.dst_tbl, af, x.addr8)
    elif k == CK_RANGE:
        bad = not match_range(a, m, x, af)
    elif k == CK_DYN:
        bad = not match_dyn(cc.src_dyn if src else cc.dst_dyn, x, af)
    else:
        bad = True              # no-route, urpf-failed (no routing table lookups here)
    return bad != ((kind & CK_NEG) != 0)

cdef inline bint match_uid(uint8_t op, uint32_t a1, uint32_t a2, uint32_t u) noexcept nogil:
    """pf_match_uid/gid: forwarded packets have no socket, their uid is UID_MAX."""
    if u == UID_MAX and op != PF_OP_EQ and op != PF_OP_NE:
        return False
    return pf_match(op, a1, a2, u)


# ---- pf_test_rule's walk ------------------------------------------------------------------------------
cdef bint slow_mismatch(pf_engine *e, cf_rule *cr, cf_cold *cc, pdesc *pd, evalctx *c) noexcept nogil:
    """The rarely used checks that follow tos in pf_test_rule, in its order (fragment, TCP
    flags, uid, gid, prio, probability, tag, os fingerprint), read from the pf_rule."""
    cdef pf_rule *r = <pf_rule *>cc.r
    if r.rule_flag & PFRULE_FRAGMENT:
        return True
    if pd.proto == IPPROTO_TCP and (cr.flagset & pd.p.tcp_flags) != cr.flags:
        return True
    if r.uid.op and not match_uid(r.uid.op, r.uid.uid[0], r.uid.uid[1], UID_MAX):
        return True
    if r.gid.op and not match_uid(r.gid.op, r.gid.gid[0], r.gid.gid[1], UID_MAX):
        return True
    if r.prio:
        return True             # no 802.1q priority on TAP frames: never matches
    if r.prob and r.prob <= rand32(e):
        return True
    if r.match_tag and not match_tag(r, c, pd):
        return True
    if r.os_fingerprint != 0:
        return True             # no passive OS fingerprinting here
    return False


cdef inline uint32_t skip_to(const cf_ruleset *rs, const cf_rule *cr, uint32_t i, int k) noexcept nogil:
    cdef uint16_t d = cr.skip[k]
    if d != CF_SKIP_FAR:
        return i + d
    return rs.cold[i].skip_far[k]


cdef inline uint32_t itab_find(const cf_itab *t, uint64_t khi, uint64_t klo) noexcept nogil:
    """The entry whose interval holds the key (khi:klo, host order), else RUN_NONE."""
    cdef uint32_t a = 0, b = t.nint, m
    cdef uint64_t lhi, llo
    # the first interval whose lower bound is above the key
    if t.wide:
        while a < b:
            m = (a + b) >> 1
            lhi, llo = t.lo[2 * m], t.lo[2 * m + 1]
            if lhi < khi or (lhi == khi and llo <= klo):
                a = m + 1
            else:
                b = m
    else:
        while a < b:
            m = (a + b) >> 1
            if t.lo[m] <= klo:
                a = m + 1
            else:
                b = m
    if a == 0:
        return RUN_NONE
    a -= 1
    if t.wide:
        lhi, llo = t.hi[2 * a], t.hi[2 * a + 1]
        if khi > lhi or (khi == lhi and klo > llo):
            return RUN_NONE
    elif klo > t.hi[a]:
        return RUN_NONE
    return t.pos[a]

cdef inline void addr_key(const pf_addr *a, bint wide, uint64_t *khi, uint64_t *klo) noexcept nogil:
    """An address as the number itab_find compares."""
    if wide:
        khi[0] = (<uint64_t>ntohl(a.addr32[0]) << 32) | ntohl(a.addr32[1])
        klo[0] = (<uint64_t>ntohl(a.addr32[2]) << 32) | ntohl(a.addr32[3])
    else:
        khi[0] = 0
        klo[0] = ntohl(a.addr32[0])

cdef uint32_t run_next(cf_ruleset *rs, uint32_t i, const pdesc *pd) noexcept nogil:
    """At run member i, whose fields before the key matched: the next member at or after i
    whose interval holds the packet's key, else the index past the run; the members in between
    count one evaluation each."""
    cdef cf_run *run = rs.cold[i].run
    cdef uint32_t pos = rs.cold[i].run_pos
    cdef uint32_t hit, target
    cdef uint64_t khi = 0, klo
    if run.key == RUN_DPORT:
        klo = ntohs(pd.dport)
    elif run.key == RUN_SPORT:
        klo = ntohs(pd.sport)
    else:
        addr_key(pd.dst if run.key == RUN_DST else pd.src, run.keys.wide, &khi, &klo)
    hit = itab_find(&run.keys, khi, klo)
    if hit == pos:
        return i
    target = hit if hit != RUN_NONE and hit > pos else run.n
    if target > pos + 1:
        run.diff[pos + 1] += 1
        run.diff[target] -= 1
    return run.start + target


cdef bint cls_stops(const cf_cls *c, const pdesc *pd, uint64_t *stops) noexcept nogil:
    """The packet's stops (cf_cls), a bit per rule; False where the classifier cannot tell (a
    family other than IPv4/IPv6: walk every rule)."""
    cdef int fam, k
    cdef uint32_t w, row
    cdef uint64_t khi, klo
    cdef const uint64_t *m[8]
    cdef uint64_t reach[CLS_MAXWORDS]
    cdef uint32_t words = c.words
    if pd.af == AF_INET:
        fam = 0
    elif pd.af == AF_INET6:
        fam = 1
    else:
        return False
    m[PF_SKIP_IFP] = c.ifp[pd.ifp.index]
    m[PF_SKIP_DIR] = c.dir[pd.dir]
    m[PF_SKIP_AF] = c.af[fam]
    m[PF_SKIP_PROTO] = c.proto[pd.proto]
    addr_key(pd.src, fam, &khi, &klo)
    row = itab_find(&c.addr[0][fam], khi, klo)
    m[PF_SKIP_SRC_ADDR] = c.addr_bits[0][fam] + <size_t>row * c.words
    row = itab_find(&c.port[0], 0, ntohs(pd.sport))
    m[PF_SKIP_SRC_PORT] = c.port_bits[0] + <size_t>row * c.words
    addr_key(pd.dst, fam, &khi, &klo)
    row = itab_find(&c.addr[1][fam], khi, klo)
    m[PF_SKIP_DST_ADDR] = c.addr_bits[1][fam] + <size_t>row * c.words
    row = itab_find(&c.port[1], 0, ntohs(pd.dport))
    m[PF_SKIP_DST_PORT] = c.port_bits[1] + <size_t>row * c.words
    # field by field over all words (the words are independent: no chain of dependent steps)
    for w in range(words):
        reach[w] = c.present[w]     # rules the walk could still reach past the fields so far
        stops[w] = 0
    for k in range(8):
        if c.unknown_any[k]:
            cls_unknown(stops, reach, c.unknown[k], words)
        cls_field(stops, reach, m[k], c.jump[k], words)
    for w in range(words):
        stops[w] |= reach[w]
    return True


cdef inline uint32_t next_stop(const uint64_t *stops, uint32_t i, uint32_t n) noexcept nogil:
    """The first stop at or after rule i, n if none."""
    cdef uint32_t w = i >> 6
    cdef uint64_t bits
    if i >= n:
        return n
    bits = stops[w] & (~<uint64_t>0 << (i & 63))
    while bits == 0:
        w += 1
        if (w << 6) >= n:
            return n
        bits = stops[w]
    i = (w << 6) + <uint32_t>__builtin_ctzll(bits)
    return i if i < n else n


cdef int eval_ruleset(pf_engine *e, cf_ruleset *rs, pdesc *pd, evalctx *c) noexcept nogil:
    """Walk one ruleset (pf_test_rule's loop, anchors by recursion as pf_step_into_anchor /
    pf_step_out_of_anchor do by stack); 1 = stop evaluating (a quick match). Reads the compact
    cf_rule array (one cache line a rule); evaluations are counted in rs.evals, and as ranges in
    a run's diff array or, with a classifier, in rs.cdiff."""
    cdef uint32_t i = 0, n = rs.n
    cdef cf_rule *cr
    cdef cf_rule *rules = rs.rules
    cdef uint64_t *evals = rs.evals
    cdef uint32_t ifbit = 1u << pd.ifp.index
    cdef uint8_t dir = pd.dir, af = pd.af, proto = pd.proto
    cdef uint32_t src4 = pd.src.addr32[0], dst4 = pd.dst.addr32[0]
    cdef uint32_t k, nxt
    cdef bint kmatch
    cdef uint64_t stops[CLS_MAXWORDS]
    cdef bint cls = rs.cls != NULL and cls_stops(rs.cls, pd, stops)
    while i < n:
        if cls:
            nxt = next_stop(stops, i, n)
            if nxt != i:
                # rules the walk would reject one by one, each going on to the next
                rs.cdiff[i] += 1
                rs.cdiff[nxt] -= 1
                i = nxt
                if i >= n:
                    break
        cr = &rules[i]
        evals[i] += 1
        if cr.ifchk:
            kmatch = (not (cr.ifchk & 1)) or (cr.ifmask & ifbit) != 0
            if kmatch == ((cr.ifchk >> 1) & 1):
                i = skip_to(rs, cr, i, PF_SKIP_IFP)
                continue
        if cr.direction and cr.direction != dir:
            i = skip_to(rs, cr, i, PF_SKIP_DIR)
            continue
        if cr.af and cr.af != af:
            i = skip_to(rs, cr, i, PF_SKIP_AF)
            continue
        if cr.proto and cr.proto != proto:
            i = skip_to(rs, cr, i, PF_SKIP_PROTO)
            continue
        if cr.run == RUN_SRC:
            k = run_next(rs, i, pd)
            if k != i:
                i = k
                continue
        k = cr.src_kind
        if k:
            if (k & 0x7f) == CK_MASK4:
                if ((src4 & cr.src4mask) != cr.src4) != ((k & CK_NEG) != 0):
                    i = skip_to(rs, cr, i, PF_SKIP_SRC_ADDR)
                    continue
            elif mismatch_aw(k, &rs.cold[i], True, pd.src, af):
                i = skip_to(rs, cr, i, PF_SKIP_SRC_ADDR)
                continue
        if cr.run == RUN_SPORT:
            k = run_next(rs, i, pd)
            if k != i:
                i = k
                continue
        if cr.src_op and not pf_match_port(cr.src_op, cr.src_port[0], cr.src_port[1], pd.sport):
            i = skip_to(rs, cr, i, PF_SKIP_SRC_PORT)
            continue
        if cr.run == RUN_DST:
            k = run_next(rs, i, pd)
            if k != i:
                i = k
                continue
        k = cr.dst_kind
        if k:
            if (k & 0x7f) == CK_MASK4:
                if ((dst4 & cr.dst4mask) != cr.dst4) != ((k & CK_NEG) != 0):
                    i = skip_to(rs, cr, i, PF_SKIP_DST_ADDR)
                    continue
            elif mismatch_aw(k, &rs.cold[i], False, pd.dst, af):
                i = skip_to(rs, cr, i, PF_SKIP_DST_ADDR)
                continue
        if cr.run == RUN_DPORT:
            k = run_next(rs, i, pd)
            if k != i:
                i = k
                continue
        if cr.dst_op and not pf_match_port(cr.dst_op, cr.dst_port[0], cr.dst_port[1], pd.dport):
            i = skip_to(rs, cr, i, PF_SKIP_DST_PORT)
            continue
        if cr.type and cr.type != pd.icmptype + 1:
            i += 1
        elif cr.code and cr.code != pd.icmpcode + 1:
            i += 1
        elif cr.tos and cr.tos != pd.tos:
            i += 1
        elif cr.slow:
            if slow_mismatch(e, cr, &rs.cold[i], pd, c):
                i += 1
            else:
                i = matched(e, rs, i, pd, c)
        elif proto == IPPROTO_TCP and (cr.flagset & pd.p.tcp_flags) != cr.flags:
            i += 1
        else:
            i = matched(e, rs, i, pd, c)
    return 0 if i != STOP else 1


cdef uint32_t matched(pf_engine *e, cf_ruleset *rs, uint32_t i, pdesc *pd, evalctx *c) noexcept nogil:
    """A rule matched every criterion: remember it, or step into the anchor it calls. Returns the
    next index, STOP to end evaluation (quick)."""
    cdef cf_rule *cr = &rs.rules[i]
    cdef cf_cold *cc = &rs.cold[i]
    cdef bint fmatch, top
    cdef int k
    if cr.tag:
        c.tag = cr.tag
    if not cr.is_anchor:
        c.match = 1
        c.rm = cc
        c.am = c.acur
        if cr.quick:
            return STOP
        return i + 1
    if c.depth >= CF_STACKSIZE:
        return i + 1
    c.match = 0
    top = c.depth == 0
    if top:
        c.acur = cc
    c.depth += 1
    fmatch = False
    if cc.wildcard:
        for k in range(cc.nchildren):
            if eval_ruleset(e, cc.children[k], pd, c):
                return STOP
            if c.match:
                fmatch = True
                c.match = 0
    elif cc.anchor != NULL:
        if eval_ruleset(e, cc.anchor, pd, c):
            return STOP
    c.depth -= 1
    if top:
        c.acur = NULL
    if (fmatch or c.match) and cr.quick:
        return STOP
    return i + 1

cdef inline bint match_tag(pf_rule *r, evalctx *c, pdesc *pd) noexcept nogil:
    """pf_match_tag: the tag so far, else the packet's (set by an earlier pass or state)."""
    if c.tag == -1:
        c.tag = pd.p.pf_tag
    return ((not r.match_tag_not and r.match_tag == c.tag) or
            (r.match_tag_not and r.match_tag != c.tag))


# ---- state keys and state lookups ----------------------------------------------------------------
cdef inline void key_of(pf_state_key_cmp *k, uint8_t af, uint8_t proto, const pf_addr *src,
                        const pf_addr *dst, uint16_t sport, uint16_t dport, int dir) noexcept nogil:
    """The key a packet looks up / creates: index 0 is the source on the way in (wire side,
    straight), the destination on the way out (stack side, reversed)."""
    if dir == PF_IN:
        pf_state_key_fill(k, af, proto, src, dst, sport, dport)
    else:
        pf_state_key_fill(k, af, proto, dst, src, dport, sport)

cdef inline cf_cold *state_rule(pf_engine *e, pf_kstate *st, cf_cold **anchor) noexcept nogil:
    """The compiled rule (and top-level anchor rule) that created a state (its generation
    lives as long as the state); NULL for the default rule and DIOCADDSTATE's states."""
    anchor[0] = <cf_cold *>st.anchor_c
    return <cf_cold *>st.rule_c

cdef uint8_t get_wscale(const uint8_t *th, uint32_t avail) noexcept nogil:
    """pf_get_wscale: the window scale option of a TCP header, PF_WSCALE_FLAG set when present."""
    cdef uint32_t hlen = (th[12] >> 4) * 4
    cdef const uint8_t *opt
    cdef uint8_t wscale = 0, optlen
    cdef int n
    if hlen <= 20 or hlen > avail:
        return 0
    opt = th + 20
    n = hlen - 20
    while n >= 3:
        if opt[0] == 0 or opt[0] == 1:
            opt += 1
            n -= 1
            continue
        if opt[0] == 3:
            wscale = opt[2]
            if wscale > 14:
                wscale = 14
            wscale |= PF_WSCALE_FLAG
        optlen = opt[1]
        if optlen < 2:
            optlen = 2
        n -= optlen
        opt += optlen
    return wscale


cdef inline void tcp_timeout(pf_kstate *st, pf_kstate_peer *src, pf_kstate_peer *dst) noexcept nogil:
    if src.state >= TCPS_FIN_WAIT_2 and dst.state >= TCPS_FIN_WAIT_2:
        st.timeout = PFTM_TCP_CLOSED
    elif src.state >= TCPS_CLOSING and dst.state >= TCPS_CLOSING:
        st.timeout = PFTM_TCP_FIN_WAIT
    elif src.state < TCPS_ESTABLISHED or dst.state < TCPS_ESTABLISHED:
        st.timeout = PFTM_TCP_OPENING
    elif src.state >= TCPS_CLOSING or dst.state >= TCPS_CLOSING:
        st.timeout = PFTM_TCP_CLOSING
    else:
        st.timeout = PFTM_TCP_ESTABLISHED


cdef int tcp_track_full(pf_engine *e, pf_kstate_peer *src, pf_kstate_peer *dst, pf_kstate *st,
                        pdesc *pd, int *reason, uint32_t now) noexcept nogil:
    """pf_tcp_track_full (no scrub, no sequence modulation)."""
    cdef uint8_t *th = pd.th
    cdef uint8_t flags = th[13]
    cdef uint32_t win = rd16(th + 14)
    cdef uint32_t ack, end, seq, orig_seq
    cdef uint8_t sws, dws
    cdef int32_t ackskew
    cdef uint32_t dmw
    if src.wscale and dst.wscale and not (flags & TH_SYN):
        sws = src.wscale & PF_WSCALE_MASK
        dws = dst.wscale & PF_WSCALE_MASK
    else:
        sws = dws = 0
    orig_seq = seq = rd32(th + 4)
    if src.seqlo == 0:
        # first packet from this end
        ack = rd32(th + 8)
        end = seq + pd.p_len
        if flags & TH_SYN:
            end += 1
            if dst.wscale & PF_WSCALE_FLAG:
                src.wscale = get_wscale(th, pd.tot_len - pd.p.l4off)
                if src.wscale & PF_WSCALE_FLAG:
                    sws = src.wscale & PF_WSCALE_MASK
                    win = (win + (1u << sws) - 1) >> sws
                    dws = dst.wscale & PF_WSCALE_MASK
                else:
                    dst.max_win = <uint16_t>(dst.max_win << (dst.wscale & PF_WSCALE_MASK))
                    dst.wscale = 0
        if flags & TH_FIN:
            end += 1
        src.seqlo = seq
        if src.state < TCPS_SYN_SENT:
            src.state = TCPS_SYN_SENT
        dmw = <uint32_t>dst.max_win << dws
        if dmw < 1:
            dmw = 1
        if src.seqhi == 1 or seq_geq(end + dmw, src.seqhi):
            src.seqhi = end + dmw
        if win > src.max_win:
            src.max_win = <uint16_t>win
    else:
        ack = rd32(th + 8) - dst.seqdiff
        end = seq + pd.p_len
        if flags & TH_SYN:
            end += 1
        if flags & TH_FIN:
            end += 1
    if (flags & TH_ACK) == 0:
        ack = dst.seqlo
    elif (ack == 0 and (flags & (TH_ACK | TH_RST)) == (TH_ACK | TH_RST)) or dst.state < TCPS_SYN_SENT:
        ack = dst.seqlo
    if seq == end:
        seq = src.seqlo
        end = seq
    ackskew = <int32_t>(dst.seqlo - ack)
    if (seq_geq(src.seqhi, end) and
            seq_geq(seq, src.seqlo - (<uint32_t>dst.max_win << dws)) and
            ackskew >= -MAXACKWINDOW and
            ackskew <= (MAXACKWINDOW << sws)):
        # (the RST exact-match clause applies only to reassembled packets: none here)
        if src.max_win < win:
            src.max_win = <uint16_t>win
        if seq_gt(end, src.seqlo):
            src.seqlo = end
        if seq_geq(ack + (win << sws), dst.seqhi):
            dst.seqhi = ack + (win << sws if (win << sws) > 1 else 1)
        if flags & TH_SYN:
            if src.state < TCPS_SYN_SENT:
                src.state = TCPS_SYN_SENT
        if flags & TH_FIN:
            if src.state < TCPS_CLOSING:
                src.state = TCPS_CLOSING
        if flags & TH_ACK:
            if dst.state == TCPS_SYN_SENT:
                dst.state = TCPS_ESTABLISHED
                if src.state == TCPS_ESTABLISHED and st.src_node != NULL and \
                        src_connlimit(e, st, now):
                    reason_set(e, reason, PFRES_SRCLIMIT)
                    return PF_DROP
            elif dst.state == TCPS_CLOSING:
                dst.state = TCPS_FIN_WAIT_2
        if flags & TH_RST:
            src.state = dst.state = TCPS_TIME_WAIT
        st.expire = now
        tcp_timeout(st, src, dst)
    elif ((dst.state < TCPS_SYN_SENT or dst.state >= TCPS_FIN_WAIT_2 or src.state >= TCPS_FIN_WAIT_2)
          and seq_geq(src.seqhi + MAXACKWINDOW, end) and seq_geq(seq, src.seqlo - MAXACKWINDOW)):
        # loose match: shotgunned SYNs, a connection picked up midway, funk after the close
        if src.max_win < win:
            src.max_win = <uint16_t>win
        if seq_gt(end, src.seqlo):
            src.seqlo = end
        if seq_geq(ack + (win << sws), dst.seqhi):
            dst.seqhi = ack + (win << sws if (win << sws) > 1 else 1)
        if flags & TH_FIN:
            if src.state < TCPS_CLOSING:
                src.state = TCPS_CLOSING
        if flags & TH_RST:
            src.state = dst.state = TCPS_TIME_WAIT
    else:
        if st.dst.state == TCPS_SYN_SENT and st.src.state == TCPS_SYN_SENT:
            # FreeBSD sends a RST for a mismatch during the handshake; resynchronise
            src.seqlo = 0
            src.seqhi = 1
            src.max_win = 1
        reason_set(e, reason, PFRES_BADSTATE)
        return PF_DROP
    return PF_PASS


cdef int tcp_track_sloppy(pf_kstate_peer *src, pf_kstate_peer *dst, pf_kstate *st, pdesc *pd,
                          uint32_t now) noexcept nogil:
    cdef uint8_t flags = pd.th[13]
    if flags & TH_SYN:
        if src.state < TCPS_SYN_SENT:
            src.state = TCPS_SYN_SENT
    if flags & TH_FIN:
        if src.state < TCPS_CLOSING:
            src.state = TCPS_CLOSING
    if flags & TH_ACK:
        if dst.state == TCPS_SYN_SENT:
            dst.state = TCPS_ESTABLISHED
        elif dst.state == TCPS_CLOSING:
            dst.state = TCPS_FIN_WAIT_2
        elif src.state == TCPS_SYN_SENT and dst.state < TCPS_SYN_SENT:
            dst.state = src.state = TCPS_ESTABLISHED
        elif src.state == TCPS_CLOSING and dst.state == TCPS_ESTABLISHED and dst.seqlo == 0:
            dst.state = TCPS_CLOSING
    if flags & TH_RST:
        src.state = dst.state = TCPS_TIME_WAIT
    st.expire = now
    tcp_timeout(st, src, dst)
    return PF_PASS


cdef int test_state(pf_engine *e, pdesc *pd, pf_kstate **sp, int *reason, uint32_t now) noexcept nogil:
    """pf_test_state_tcp/udp/other and the query half of pf_test_state_icmp: PF_PASS with *sp
    set, PF_DROP with *sp NULL (no state: evaluate the rules), PF_DROP with *sp set (the state
    refused the packet)."""
    cdef pf_state_key_cmp k
    cdef pf_kstate *st
    cdef pf_kstate_peer *src
    cdef pf_kstate_peer *dst
    key_of(&k, pd.af, pd.proto, pd.src, pd.dst, pd.sport, pd.dport, pd.dir)
    st = pf_find_state(e.t, pd.ifp.name, &k, pd.dir)
    sp[0] = st
    if st == NULL:
        return PF_DROP
    if pd.dir == st.direction:
        src = &st.src
        dst = &st.dst
    else:
        src = &st.dst
        dst = &st.src
    if pd.proto == IPPROTO_TCP:
        if ((pd.th[13] & (TH_SYN | TH_ACK)) == TH_SYN and dst.state >= TCPS_FIN_WAIT_2 and
                src.state >= TCPS_FIN_WAIT_2):
            # a new connection on the key of a closed one: the old state goes
            st.src.state = st.dst.state = TCPS_CLOSED
            pf_unlink_state(e.t, st)          # (it takes the state off its rules' states_cur)
            sp[0] = NULL
            return PF_DROP
        if st.state_flags & PFSTATE_SLOPPY:
            return tcp_track_sloppy(src, dst, st, pd, now)
        return tcp_track_full(e, src, dst, st, pd, reason, now)
    if pd.proto == IPPROTO_UDP:
        if src.state < PFUDPS_SINGLE:
            src.state = PFUDPS_SINGLE
        if dst.state == PFUDPS_SINGLE:
            dst.state = PFUDPS_MULTIPLE
        st.expire = now
        st.timeout = PFTM_UDP_MULTIPLE if (src.state == PFUDPS_MULTIPLE and
                                           dst.state == PFUDPS_MULTIPLE) else PFTM_UDP_SINGLE
        return PF_PASS
    if pd.proto == IPPROTO_ICMP or pd.proto == IPPROTO_ICMPV6:
        st.expire = now
        st.timeout = PFTM_ICMP_ERROR_REPLY
        return PF_PASS
    if src.state < PFOTHERS_SINGLE:
        src.state = PFOTHERS_SINGLE
    if dst.state == PFOTHERS_SINGLE:
        dst.state = PFOTHERS_MULTIPLE
    st.expire = now
    st.timeout = PFTM_OTHER_MULTIPLE if (src.state == PFOTHERS_MULTIPLE and
                                         dst.state == PFOTHERS_MULTIPLE) else PFTM_OTHER_SINGLE
    return PF_PASS


cdef int test_state_icmp_error(pf_engine *e, pdesc *pd, pf_kstate **sp, int *reason) noexcept nogil:
    """The error half of pf_test_state_icmp: find the state of the packet an ICMP error quotes
    (it travelled the other way)."""
    cdef tap_pkt *p = pd.p
    cdef uint8_t *ip2 = p.l4 + 8
    cdef uint32_t avail = p.len - p.l4off - 8 if p.len >= p.l4off + 8 else 0
    cdef uint32_t off2, elen
    cdef uint8_t proto2, nxt
    cdef const pf_addr *src2
    cdef const pf_addr *dst2
    cdef uint8_t *h2
    cdef uint16_t sp2, dp2
    cdef pf_state_key_cmp k
    cdef pf_kstate *st
    cdef pf_kstate_peer *src
    cdef pf_kstate_peer *dst
    cdef uint8_t dws
    cdef uint32_t seq
    cdef int n
    sp[0] = NULL
    if pd.af == AF_INET:
        if avail < 20:
            reason_set(e, reason, PFRES_SHORT)
            return PF_DROP
        if rd16(ip2 + 6) & 0x1fff:
            reason_set(e, reason, PFRES_FRAG)
            return PF_DROP
        off2 = (ip2[0] & 0x0f) * 4
        proto2 = ip2[9]
        src2 = <const pf_addr *>(ip2 + 12)
        dst2 = <const pf_addr *>(ip2 + 16)
    else:
        if avail < 40:
            reason_set(e, reason, PFRES_SHORT)
            return PF_DROP
        nxt = ip2[6]
        off2 = 40
        src2 = <const pf_addr *>(ip2 + 8)
        dst2 = <const pf_addr *>(ip2 + 24)
        n = 0
        while n < 8:
            if nxt == 44:
                reason_set(e, reason, PFRES_FRAG)
                return PF_DROP
            if nxt == 0 or nxt == 43 or nxt == 60 or nxt == 51:
                if off2 + 8 > avail:
                    reason_set(e, reason, PFRES_SHORT)
                    return PF_DROP
                elen = (ip2[off2 + 1] + 2) * 4 if nxt == 51 else (ip2[off2 + 1] + 1) * 8
                nxt = ip2[off2]
                off2 += elen
                n += 1
            else:
                break
        proto2 = nxt
    h2 = ip2 + off2
    sp2 = dp2 = 0
    if proto2 == IPPROTO_TCP or proto2 == IPPROTO_UDP:
        if off2 + 8 > avail:
            reason_set(e, reason, PFRES_SHORT)
            return PF_DROP
        sp2 = (<uint16_t *>h2)[0]
        dp2 = (<uint16_t *>h2)[1]
    elif proto2 == IPPROTO_ICMP or proto2 == IPPROTO_ICMPV6:
        if off2 + 8 > avail:
            reason_set(e, reason, PFRES_SHORT)
            return PF_DROP
        sp2 = dp2 = (<uint16_t *>h2)[2]
    # the quoted packet went the other way: its source is index 1 on the way in
    if pd.dir == PF_IN:
        pf_state_key_fill(&k, pd.af, proto2, dst2, src2, dp2, sp2)
    else:
        pf_state_key_fill(&k, pd.af, proto2, src2, dst2, sp2, dp2)
    st = pf_find_state(e.t, pd.ifp.name, &k, pd.dir)
    sp[0] = st
    if st == NULL:
        return PF_DROP
    cdef pf_state_key_cmp *nk
    if proto2 == IPPROTO_TCP:
        if pd.dir == st.direction:
            src = &st.dst
            dst = &st.src
        else:
            src = &st.src
            dst = &st.dst
        dws = dst.wscale & PF_WSCALE_MASK if (src.wscale and dst.wscale) else 0
        seq = rd32(h2 + 4) - src.seqdiff
        if not (st.state_flags & PFSTATE_SLOPPY) and (
                not seq_geq(src.seqhi, seq) or
                not seq_geq(seq, src.seqlo - (<uint32_t>dst.max_win << dws))):
            reason_set(e, reason, PFRES_BADSTATE)
            return PF_DROP
    if st.key[PF_SK_WIRE] != st.key[PF_SK_STACK]:
        # the quoted packet's translated side (inward: its source; outward: its destination)
        # back to what this side of the engine knows, and the error's own address with it
        nk = &st.key[PF_SK_STACK if pd.dir == PF_IN else PF_SK_WIRE].k
        if pd.dir == PF_IN:
            if not addr_eq(src2, &nk.addr[1], pd.af) or nk.port[1] != sp2:
                nat_rewrite_icmp_error(p, ip2, proto2, off2, avail, True, &nk.addr[1], nk.port[1])
        elif not addr_eq(dst2, &nk.addr[1], pd.af) or nk.port[1] != dp2:
            nat_rewrite_icmp_error(p, ip2, proto2, off2, avail, False, &nk.addr[1], nk.port[1])
    return PF_PASS


# ---- state creation (pf_create_state) -------------------------------------------------------------
cdef const char *intern_label(pf_engine *e, const char *label) noexcept nogil:
    cdef int i
    cdef size_t n
    cdef char *copy
    if label[0] == 0:
        return NULL
    for i in range(e.nlabels):
        if strncmp_(e.labels[i], label, 64) == 0:
            return e.labels[i]
    if e.nlabels >= CF_MAXLABELS:
        return NULL
    copy = <char *>calloc(1, 64)
    if copy == NULL:
        return NULL
    n = 0
    while n < 63 and label[n] != 0:
        copy[n] = label[n]
        n += 1
    e.labels[e.nlabels] = copy
    e.nlabels += 1
    return copy

cdef inline int strncmp_(const char *a, const char *b, size_t n) noexcept nogil:
    cdef size_t i
    for i in range(n):
        if a[i] != b[i]:
            return 1
        if a[i] == 0:
            return 0
    return 0


# ---- source tracking (pf_insert_src_node, pf_src_connlimit) -------------------------------------
cdef int insert_src_node(pf_engine *e, pf_ksrc_node **snp, pf_rule *r, const pf_addr *src,
                         uint8_t af, uint32_t now) noexcept nogil:
    """The source node of src for rule r (per rule with "source-track rule" or a sticky pool,
    else shared: key PF_NO_RULE), created within max-src-nodes; -1 at a limit (max-src-nodes,
    max-src-states, the src-nodes limit)."""
    cdef bint per_rule = (r.rule_flag & PFRULE_RULESRCTRACK) or (r.rpool.opts & PF_POOL_STICKYADDR)
    cdef uint32_t key = r.nr if per_rule else PF_NO_RULE
    cdef pf_addr a
    cdef pf_ksrc_node *sn
    src_key(&a, src, af)
    sn = pf_find_src_node(e.t, af, &a, key)
    if sn == NULL:
        if r.max_src_nodes and r.u_src_nodes >= r.max_src_nodes:
            e.status.lcounters[LCNT_SRCNODES] += 1
            return -1
        sn = pf_src_node_alloc(e.t)
        if sn == NULL:
            return -1
        sn.af = af
        sn.addr = a
        sn.rule = key
        sn.creation = now
        sn.ruletype = r.action
        sn.conn_rate.limit = r.max_src_conn_rate.limit * PF_THRESHOLD_MULT
        sn.conn_rate.seconds = r.max_src_conn_rate.seconds
        sn.conn_rate.last = now
        if per_rule:
            sn.r = r
            r.u_src_nodes += 1
            if e.gen != NULL:
                sn.gen_refs = &e.gen.refs
                e.gen.refs += 1
        pf_src_node_link(e.t, sn)
    elif r.max_src_states and sn.states >= r.max_src_states:
        e.status.lcounters[LCNT_SRCSTATES] += 1
        return -1
    snp[0] = sn
    return 0

cdef void drop_src_node(pf_engine *e, pf_ksrc_node *sn) noexcept nogil:
    """Undo a node insert_src_node made for a state that was not created."""
    if sn == NULL or sn.states or sn.expire:
        return
    pf_unlink_src_node(e.t, sn)

cdef bint src_connlimit(pf_engine *e, pf_kstate *st, uint32_t now) noexcept nogil:
    """pf_src_connlimit: one more established connection from the state's source; over
    max-src-conn or max-src-conn-rate the state is killed (and the source queued for its rule's
    overload table). True = drop the packet."""
    cdef pf_ksrc_node *sn = st.src_node
    cdef cf_cold *a
    cdef cf_cold *rc = state_rule(e, st, &a)
    cdef pf_rule *r
    cdef uint32_t diff
    cdef int bad = 0
    cdef cf_overload *o
    cdef uint64_t one = 1
    sn.conn += 1
    st.src.tcp_est = 1
    # pf_add_threshold: the count decays linearly over `seconds`
    diff = now - sn.conn_rate.last
    if sn.conn_rate.seconds == 0 or diff >= sn.conn_rate.seconds:
        sn.conn_rate.count = 0
    else:
        sn.conn_rate.count -= <uint32_t>(<uint64_t>sn.conn_rate.count * diff / sn.conn_rate.seconds)
    sn.conn_rate.count += PF_THRESHOLD_MULT
    sn.conn_rate.last = now
    if rc == NULL:
        return False                # its rule is gone: no limits to apply
    r = <pf_rule *>rc.r
    if r.max_src_conn and r.max_src_conn < sn.conn:
        e.status.lcounters[LCNT_SRCCONN] += 1
        bad += 1
    if r.max_src_conn_rate.limit and sn.conn_rate.limit and sn.conn_rate.count > sn.conn_rate.limit:
        e.status.lcounters[LCNT_SRCCONNRATE] += 1
        bad += 1
    if not bad:
        return False
    st.timeout = PFTM_PURGE
    st.src.state = st.dst.state = TCPS_CLOSED
    if rc.overload1 and e.novl < CF_OVERLOAD_Q and e.gen != NULL and st.gen_refs == &e.gen.refs:
        # (a state of an older generation: its rule's table index means nothing now)
        o = &e.ovl[e.novl]
        e.novl += 1
        o.serial = e.gen.serial
        o.idx = rc.overload1 - 1
        o.rule_r = st.rule_r
        o.af = sn.af
        o.dir = st.direction
        o.flush = r.flush
        o.addr = sn.addr
        if e.wakefd >= 0:
            write(e.wakefd, &one, 8)
    return True


cdef int route_target(pf_engine *e, cf_pool *pool, pdesc *pd, pf_addr *addr) noexcept nogil:
    """pf_map_addr for route-to: the next hop from the rule's pool and its interface
    (tap_if.index), -1 when the pool has none for the packet's family or names no interface."""
    if nat_map_addr(pool, pd.af, pd.src, addr, NULL, &e.rng, NULL) or pool.last < 0:
        return -1
    return pool.a[pool.last].ifidx


cdef int create_state(pf_engine *e, cf_cold *cr, cf_cold *ca, cf_cold *nr, pdesc *pd,
                      const pf_state_key_cmp *wire, const pf_state_key_cmp *stack, pf_kstate **sm,
                      int *reason, uint32_t now, uint16_t tag) noexcept nogil:
    """pf_create_state: cr NULL is the default rule (a translation without a filter rule);
    wire/stack are the state's keys (equal without translation)."""
    cdef pf_rule *r = <pf_rule *>cr.r if cr != NULL else <pf_rule *>e.default_rule
    cdef pf_rule *a = <pf_rule *>ca.r if ca != NULL else NULL
    cdef pf_rule *n = <pf_rule *>nr.r if nr != NULL else NULL
    cdef pf_kstate *st
    cdef uint8_t *th
    cdef uint32_t win
    cdef char ifname[16]
    cdef pf_ksrc_node *sn = NULL
    cdef pf_ksrc_node *nsn = NULL
    cdef int k
    if r.max_states and r.u_states_cur >= r.max_states:
        e.status.lcounters[LCNT_STATES] += 1
        reason_set(e, reason, PFRES_MAXSTATES)
        return PF_DROP
    # source nodes: the filter rule's (source tracking, sticky pool) on the packet's source as
    # it is now, the translation rule's (sticky pool) on the original source
    if ((r.rule_flag & PFRULE_SRCTRACK) or (r.rpool.opts & PF_POOL_STICKYADDR)) and \
            insert_src_node(e, &sn, r, pd.src, pd.af, now) != 0:
        reason_set(e, reason, PFRES_SRCLIMIT)
        drop_src_node(e, sn)
        return PF_DROP
    if n != NULL and (n.rpool.opts & PF_POOL_STICKYADDR) and insert_src_node(
            e, &nsn, n, &wire.addr[0] if pd.dir == PF_IN else &stack.addr[1], pd.af, now) != 0:
        reason_set(e, reason, PFRES_SRCLIMIT)
        drop_src_node(e, sn)
        if nsn != sn:
            drop_src_node(e, nsn)
        return PF_DROP
    st = pf_state_alloc(e.t)
    if st == NULL:
        reason_set(e, reason, PFRES_MEMORY)
        drop_src_node(e, sn)
        if nsn != sn:
            drop_src_node(e, nsn)
        return PF_DROP
    if cr != NULL and cr.pool != NULL and r.rt != PF_FASTROUTE and r.rt != 0:
        # route-to / reply-to / dup-to: the state keeps where its packets go
        k = route_target(e, cr.pool, pd, &st.rt_addr)
        if k < 0:
            pf_state_release(e.t, st)
            reason_set(e, reason, PFRES_MAPFAILED)
            drop_src_node(e, sn)
            drop_src_node(e, nsn)
            return PF_DROP
        st.rt_if = <uint8_t>(k + 1)
    st.rule = r.nr
    st.anchor = a.nr if a != NULL else PF_NO_RULE
    st.nat_rule = PF_NO_RULE
    st.rule_c = cr
    st.rule_r = r if cr != NULL else NULL
    st.anchor_c = ca
    st.anchor_r = a
    if n != NULL:
        st.nat_rule = n.nr
        st.nat_r = n
        st.nat_rs = (PF_RULESET_NAT if n.action == PF_NAT else
                     PF_RULESET_BINAT if n.action == PF_BINAT else PF_RULESET_RDR)
    if r.allow_opts:
        st.state_flags |= PFSTATE_ALLOWOPTS
    if r.rule_flag & PFRULE_STATESLOPPY:
        st.state_flags |= PFSTATE_SLOPPY
    st.log = r.log & PF_LOG_ALL
    st.label = intern_label(e, r.label)
    st.tag = tag                  # the tag this evaluation gave (pf_create_state's `tag`)
    if pd.proto == IPPROTO_TCP:
        th = pd.th
        st.src.seqlo = rd32(th + 4)
        st.src.seqhi = st.src.seqlo + pd.p_len + 1
        if th[13] & TH_SYN:
            st.src.seqhi += 1
            st.src.wscale = get_wscale(th, pd.tot_len - pd.p.l4off)
        win = rd16(th + 14)
        st.src.max_win = <uint16_t>(win if win > 1 else 1)
        if st.src.wscale & PF_WSCALE_MASK:
            win = <uint32_t>st.src.max_win + (1u << (st.src.wscale & PF_WSCALE_MASK))
            st.src.max_win = <uint16_t>((win - 1) >> (st.src.wscale & PF_WSCALE_MASK))
        if th[13] & TH_FIN:
            st.src.seqhi += 1
        st.dst.seqhi = 1
        st.dst.max_win = 1
        st.src.state = TCPS_SYN_SENT
        st.dst.state = TCPS_CLOSED
        st.timeout = PFTM_TCP_FIRST_PACKET
    elif pd.proto == IPPROTO_UDP:
        st.src.state = PFUDPS_SINGLE
        st.dst.state = PFUDPS_NO_TRAFFIC
        st.timeout = PFTM_UDP_FIRST_PACKET
    elif pd.proto == IPPROTO_ICMP or pd.proto == IPPROTO_ICMPV6:
        st.timeout = PFTM_ICMP_FIRST_PACKET
    else:
        st.src.state = PFOTHERS_SINGLE
        st.dst.state = PFOTHERS_NO_TRAFFIC
        st.timeout = PFTM_OTHER_FIRST_PACKET
    st.creation = now
    st.expire = now
    st.direction = pd.dir
    st.af = pd.af
    st.proto = pd.proto
    memset(ifname, 0, 16)
    if r.rule_flag & PFRULE_IFBOUND:
        memcpy(ifname, pd.ifp.name, 16)
    if pf_state_insert(e.t, ifname, wire, stack, st) != 0:
        pf_state_release(e.t, st)
        reason_set(e, reason, PFRES_STATEINS)
        drop_src_node(e, sn)
        if nsn != sn:
            drop_src_node(e, nsn)
        return PF_DROP
    if sn != NULL:
        st.src_node = sn
        sn.states += 1
        sn.expire = 0
    if nsn != NULL:
        st.nat_src_node = nsn
        nsn.states += 1
        nsn.expire = 0
        # sticky-address: later connections from this source get the same translated address
        memcpy(&nsn.raddr, &wire.addr[1] if pd.dir == PF_OUT else &stack.addr[1], sizeof(pf_addr))
    r.u_states_cur += 1
    r.u_states_tot += 1
    if e.gen != NULL:
        st.gen_refs = &e.gen.refs
        e.gen.refs += 1
    if n != NULL:
        n.u_states_cur += 1
        n.u_states_tot += 1
    if a != NULL:
        a.u_states_cur += 1
        a.u_states_tot += 1
    sm[0] = st
    return PF_PASS


# ---- pf_test_rule ------------------------------------------------------------------------------------
cdef inline void ctx_init(evalctx *c) noexcept nogil:
    """A walk's start: nothing matched, the packet's own tag not read yet (-1)."""
    c.rm = NULL
    c.am = NULL
    c.acur = NULL
    c.match = 0
    c.tag = -1
    c.depth = 0


cdef int test_rule(pf_engine *e, pdesc *pd, cf_cold **rm, cf_cold **am, pf_kstate **sm,
                   int *reason, uint32_t now, bint fragment) noexcept nogil:
    """pf_test_rule (pf_test_fragment when fragment): translation (nat/binat/rdr), then the
    filter rules on the translated packet, then the state."""
    cdef evalctx c
    cdef pf_rule *r
    cdef int action
    cdef cf_cold *nr = NULL
    cdef pf_state_key_cmp sk, nk
    ctx_init(&c)
    if not fragment and e.gen != NULL:
        nr = get_translation(e, pd, &sk, &nk)
        if nr != NULL:
            apply_translation(pd, &nk)
    if e.gen != NULL and not (nr != NULL and (<pf_rule *>nr.r).natpass):
        eval_ruleset(e, e.gen.main, pd, &c)
    rm[0] = c.rm
    am[0] = c.am
    reason_set(e, reason, PFRES_MATCH)
    r = <pf_rule *>c.rm.r if c.rm != NULL else <pf_rule *>e.default_rule
    if r.log or (nr != NULL and (<pf_rule *>nr.r).log):
        # the packet as translated, before a block's answer undoes the translation
        pflog_rule(pd.p, pd.dir, PFRES_MATCH, pd.ifp.name, r if r.log else <pf_rule *>nr.r,
                   <pf_rule *>c.am.r if c.am != NULL else NULL, NULL)
    if r.action == PF_DROP:
        if not fragment and r.rule_flag & (PFRULE_RETURNRST | PFRULE_RETURNICMP | PFRULE_RETURN):
            if nr != NULL:
                apply_translation(pd, &sk)      # answer what the sender sent
            want_return(e, r, pd)
        return PF_DROP
    if c.tag > 0:
        pd.p.pf_tag = <uint16_t>c.tag
    if fragment:
        return PF_PASS
    if not pd.state_icmp and (r.keep_state or nr != NULL):
        if nr == NULL:
            key_of(&sk, pd.af, pd.proto, pd.src, pd.dst, pd.sport, pd.dport, pd.dir)
            nk = sk
        # the wire key is what crosses this interface: the original inbound, the translated out
        action = create_state(e, c.rm, c.am, nr, pd, &sk if pd.dir == PF_IN else &nk,
                              &nk if pd.dir == PF_IN else &sk, sm, reason, now,
                              <uint16_t>c.tag if c.tag > 0 else 0)
        if action != PF_PASS:
            if r.rule_flag & PFRULE_RETURN:
                if nr != NULL:
                    apply_translation(pd, &sk)  # answer what the sender sent
                want_return(e, r, pd)
            return action
    return PF_PASS


# ---- translation (pf_get_translation, pf_match_translation) -----------------------------------------
cdef cf_cold *match_first(pf_engine *e, cf_ruleset *rs, pdesc *pd) noexcept nogil:
    """The first rule of a first-match ruleset (translation, scrub: compiled all quick) and
    the anchors it calls that the packet matches, or NULL."""
    cdef evalctx c
    if rs == NULL or rs.n == 0:
        return NULL
    ctx_init(&c)
    eval_ruleset(e, rs, pd, &c)
    if c.tag > 0:
        pd.p.pf_tag = <uint16_t>c.tag
    return c.rm

cdef cf_cold *match_translation(pf_engine *e, cf_ruleset *rs, pdesc *pd) noexcept nogil:
    """The first translation rule of rs (and the anchors it calls) the packet matches; NULL for
    none or a "no nat/rdr/binat" rule. A tag it gives sticks to the packet either way."""
    cdef uint8_t action
    cdef cf_cold *rm = match_first(e, rs, pd)
    if rm == NULL:
        return NULL
    action = (<pf_rule *>rm.r).action
    if action == PF_NONAT or action == PF_NORDR or action == PF_NOBINAT:
        return NULL
    return rm

cdef const cf_pooladdr *pool_entry(cf_pool *pool, uint8_t af) noexcept nogil:
    """rpool.cur, or the first entry of the packet's family when cur is of the other."""
    cdef int k
    if pool == NULL or pool.n == 0:
        return NULL
    if pool.a[pool.cur].kind == NP_ADDR and pool.a[pool.cur].af in (0, af):
        return &pool.a[pool.cur]
    for k in range(pool.n):
        if pool.a[k].kind == NP_ADDR and pool.a[k].af in (0, af):
            return &pool.a[k]
    return NULL

cdef inline void src_key(pf_addr *k, const pf_addr *src, uint8_t af) noexcept nogil:
    """A source node's address key: the address, zero beyond its family's length."""
    memset(k, 0, sizeof(pf_addr))
    memcpy(k, src, 4 if af == AF_INET else 16)

cdef cf_cold *get_translation(pf_engine *e, pdesc *pd, pf_state_key_cmp *sk,
                              pf_state_key_cmp *nk) noexcept nogil:
    """The translation rule for a packet without state and the keys it gives: sk as the packet
    is, nk as it will be (index 1 is the side that changes: the source out, the destination
    in); NULL when nothing applies, the pool is exhausted or the translation changes nothing."""
    cdef cf_gen *g = e.gen
    cdef cf_cold *nr
    cdef pf_rule *r
    cdef cf_pool *pool
    cdef const cf_pooladdr *pa
    cdef pf_addr *naddr
    cdef uint32_t tmp
    cdef int k
    cdef pf_addr src0
    cdef pf_ksrc_node *sticky = NULL
    cdef const pf_addr *stickyaddr = NULL
    if pd.dir == PF_OUT:
        nr = match_translation(e, g.binat, pd)
        if nr == NULL:
            nr = match_translation(e, g.nat, pd)
    else:
        nr = match_translation(e, g.rdr, pd)
        if nr == NULL:
            nr = match_translation(e, g.binat_in, pd)
    if nr == NULL or nr.pool == NULL:
        return NULL
    r = <pf_rule *>nr.r
    pool = nr.pool
    if pool.opts & PF_POOL_STICKYADDR:
        # the address this source got before, while its node lives
        src_key(&src0, pd.src, pd.af)
        sticky = pf_find_src_node(e.t, pd.af, &src0, r.nr)
        if sticky != NULL:
            stickyaddr = &sticky.raddr
    key_of(sk, pd.af, pd.proto, pd.src, pd.dst, pd.sport, pd.dport, pd.dir)
    nk[0] = sk[0]
    naddr = &nk.addr[1]
    if r.action == PF_NAT:
        if nat_get_sport(e.t, pool, pd.af, pd.proto, pd.src, pd.sport, pd.dst, pd.dport, naddr,
                         &nk.port[1], pool.proxy_port[0], pool.proxy_port[1], &e.rng, stickyaddr):
            return NULL
    elif r.action == PF_BINAT:
        if pd.dir == PF_OUT:
            pa = pool_entry(pool, pd.af)
            if pa == NULL:
                return NULL
            nat_poolmask(naddr, &pa.addr, &pa.mask, pd.src, pd.af)
        elif nr.map_dyn != NULL:
            for k in range(nr.map_dyn.n):
                if nr.map_dyn.af[k] == pd.af:
                    break
            else:
                return NULL
            nat_poolmask(naddr, &nr.map_dyn.addr[k], &nr.map_dyn.mask[k], pd.dst, pd.af)
        else:
            nat_poolmask(naddr, &r.src.addr.v.a.addr, &r.src.addr.v.a.mask, pd.dst, pd.af)
    elif r.action == PF_RDR:
        if nat_map_addr(pool, pd.af, pd.src, naddr, NULL, &e.rng, stickyaddr):
            return NULL
        if (pool.opts & PF_POOL_TYPEMASK) == PF_POOL_BITMASK:
            nat_poolmask(naddr, naddr, &pool.a[pool.cur].mask, pd.dst, pd.af)
        if pool.proxy_port[1] >= pool.proxy_port[0] and pool.proxy_port[1]:
            tmp = ((<uint32_t>ntohs(pd.dport) - ntohs(r.dst.port[0])) %
                   (<uint32_t>pool.proxy_port[1] - pool.proxy_port[0] + 1)) + pool.proxy_port[0]
            if tmp > 65535:
                tmp -= 65535
            nk.port[1] = htons(<uint16_t>tmp)
        elif pool.proxy_port[0]:
            nk.port[1] = htons(pool.proxy_port[0])
    else:
        return NULL
    if pd.proto == IPPROTO_ICMP or pd.proto == IPPROTO_ICMPV6:
        nk.port[0] = nk.port[1]             # one id on both sides
    if memcmp(sk, nk, sizeof(pf_state_key_cmp)) == 0:
        return NULL
    return nr

cdef void apply_translation(pdesc *pd, const pf_state_key_cmp *k) noexcept nogil:
    """Rewrite the packet to the addresses and ports of key k (the key of the packet's own
    direction: sidx/didx as pf_test sets them)."""
    cdef int sidx = 0 if pd.dir == PF_IN else 1
    cdef int didx = 1 - sidx
    cdef uint8_t af = pd.af
    if not addr_eq(pd.src, &k.addr[sidx], af) or k.port[sidx] != pd.sport:
        nat_rewrite(pd.p, True, &k.addr[sidx], k.port[sidx])
    if not addr_eq(pd.dst, &k.addr[didx], af) or k.port[didx] != pd.dport:
        nat_rewrite(pd.p, False, &k.addr[didx], k.port[didx])
    pd.sport = pd.p.sport
    pd.dport = pd.p.dport

cdef inline bint addr_eq(const pf_addr *a, const pf_addr *b, uint8_t af) noexcept nogil:
    if af == AF_INET:
        return a.addr32[0] == b.addr32[0]
    return memcmp(a, b, 16) == 0


cdef void want_return(pf_engine *e, pf_rule *r, pdesc *pd) noexcept nogil:
    """pf_return: remember what to send back (sent once the lock is released)."""
    cdef tap_pkt *p = pd.p
    if p.rcvif == NULL and pd.dir == PF_OUT:
        return                      # not about packets the router generated
    e.ret_ttl = r.return_ttl
    if ((r.rule_flag & (PFRULE_RETURNRST | PFRULE_RETURN)) and pd.proto == IPPROTO_TCP and
            not (pd.th[13] & TH_RST)):
        e.ret_kind = PF_RET_RST
    elif pd.proto != IPPROTO_ICMP and pd.af == AF_INET and r.return_icmp:
        e.ret_kind = PF_RET_ICMP
        e.ret_type = r.return_icmp >> 8
        e.ret_code = r.return_icmp & 0xff
    elif pd.proto != IPPROTO_ICMPV6 and pd.af == AF_INET6 and r.return_icmp6:
        e.ret_kind = PF_RET_ICMP6
        e.ret_type = r.return_icmp6 >> 8
        e.ret_code = r.return_icmp6 & 0xff


# ---- pf_test / pf_test6 ------------------------------------------------------------------------------
cdef void pdesc_of(pdesc *pd, tap_pkt *p, tap_if *ifp, int dir) noexcept nogil:
    """The descriptor's first fill from the router's tap_pkt (ports and headers come later)."""
    pd.p = p
    pd.ifp = ifp
    pd.dir = dir
    pd.af = p.af
    pd.proto = p.proto
    pd.src = <pf_addr *>p.src
    pd.dst = <pf_addr *>p.dst
    pd.tot_len = p.len
    pd.sport = pd.dport = 0
    pd.icmptype = pd.icmpcode = 0
    pd.state_icmp = 0
    pd.p_len = 0
    pd.th = NULL
    if p.af == AF_INET:
        pd.tos = p.l3[1] & 0xfc
    else:
        pd.tos = ((p.l3[0] & 0x0f) << 4 | (p.l3[1] >> 4)) & 0xfc


cdef int pf_test_locked(pf_engine *e, int dir, tap_if *ifp, tap_pkt *p, int *reason) noexcept nogil:
    cdef pdesc pd
    cdef pf_kstate *s = NULL
    cdef cf_cold *rm = NULL
    cdef cf_cold *am = NULL
    cdef pf_rule *r
    cdef pf_rule *a
    cdef int action, dirndx
    cdef uint32_t now = pf_uptime()
    cdef uint8_t t
    cdef bint from_state = False
    cdef cf_cold *sr
    cdef int rc

    pdesc_of(&pd, p, ifp, dir)
    if e.gen != NULL and e.gen.scrub.n and e.norm != NULL:
        # pf_normalize_ip(6): the first scrub rule that matches decides; a fragment may be held
        # for reassembly, or come back as the whole packet
        sr = match_first(e, e.gen.scrub, &pd)
        if sr != NULL and (<pf_rule *>sr.r).action == PF_SCRUB:
            rc = pf_norm_packet(e.norm, p, dir, <const pf_rule *>sr.r, reason, now)
            if rc != NORM_PASS:
                return PF_DROP
            pdesc_of(&pd, p, ifp, dir)

    if p.frag:
        # fragments are not reassembled (no scrub): pf_test_fragment
        action = test_rule(e, &pd, &rm, &am, &s, reason, now, True)
    elif p.proto == IPPROTO_TCP or p.proto == IPPROTO_UDP or p.proto == IPPROTO_ICMP or \
            p.proto == IPPROTO_ICMPV6:
        if not p.l4ok:
            reason_set(e, reason, PFRES_SHORT)
            return PF_DROP
        if (p.proto == IPPROTO_ICMPV6 and p.af == AF_INET) or (p.proto == IPPROTO_ICMP and p.af == AF_INET6):
            return PF_DROP
        pd.sport = p.sport
        pd.dport = p.dport
        if p.proto == IPPROTO_TCP:
            pd.th = p.l4
            if (p.l4[12] >> 4) * 4 > p.len - p.l4off:
                reason_set(e, reason, PFRES_SHORT)
                return PF_DROP
            pd.p_len = p.len - p.l4off - (p.l4[12] >> 4) * 4
        elif p.proto == IPPROTO_UDP:
            if (p.dport == 0 or rd16(p.l4 + 4) > p.len - p.l4off or rd16(p.l4 + 4) < 8):
                reason_set(e, reason, PFRES_SHORT)
                return PF_DROP
        else:
            pd.icmptype = t = p.icmp_type
            pd.icmpcode = p.icmp_code
            if p.proto == IPPROTO_ICMP:
                pd.state_icmp = t == 3 or t == 4 or t == 5 or t == 11 or t == 12
            else:
                pd.state_icmp = t == 1 or t == 2 or t == 3 or t == 4
        if pd.state_icmp:
            action = test_state_icmp_error(e, &pd, &s, reason)
        else:
            action = test_state(e, &pd, &s, reason, now)
            if action == PF_PASS and s.key[PF_SK_WIRE] != s.key[PF_SK_STACK]:
                apply_translation(&pd, &s.key[PF_SK_STACK if dir == PF_IN else PF_SK_WIRE].k)
        if action == PF_PASS:
            from_state = True
        elif s == NULL:
            action = test_rule(e, &pd, &rm, &am, &s, reason, now, False)
    else:
        action = test_state(e, &pd, &s, reason, now)
        if action == PF_PASS and s.key[PF_SK_WIRE] != s.key[PF_SK_STACK]:
            apply_translation(&pd, &s.key[PF_SK_STACK if dir == PF_IN else PF_SK_WIRE].k)
        if action == PF_PASS:
            from_state = True
        elif s == NULL:
            action = test_rule(e, &pd, &rm, &am, &s, reason, now, False)

    if from_state:
        rm = state_rule(e, s, &am)
        if s.tag:
            p.pf_tag = s.tag
        if s.log & PF_LOG_ALL:
            # "log (all)": every packet of the state, under its translation rule if that logs all
            if s.nat_r != NULL and (<pf_rule *>s.nat_r).log & PF_LOG_ALL:
                pflog_rule(p, dir, PFRES_MATCH, ifp.name, <pf_rule *>s.nat_r, NULL, NULL)
            elif rm != NULL:
                pflog_rule(p, dir, PFRES_MATCH, ifp.name, <pf_rule *>rm.r,
                           <pf_rule *>am.r if am != NULL else NULL, NULL)
    r = <pf_rule *>rm.r if rm != NULL else <pf_rule *>e.default_rule
    a = <pf_rule *>am.r if am != NULL else NULL

    # IPv4 options need allow-opts (the state's or the rule's)
    if action == PF_PASS and p.af == AF_INET and p.l4off > 20 and not (
            (s != NULL and s.state_flags & PFSTATE_ALLOWOPTS) or r.allow_opts):
        action = PF_DROP
        reason_set(e, reason, PFRES_IPOPTIONS)

    if action == PF_PASS or r.action == PF_DROP:
        dirndx = 1 if dir == PF_OUT else 0
        r.packets[dirndx] += 1
        r.bytes[dirndx] += pd.tot_len
        if a != NULL:
            a.packets[dirndx] += 1
            a.bytes[dirndx] += pd.tot_len
        if s != NULL:
            if s.nat_r != NULL:
                (<pf_rule *>s.nat_r).packets[dirndx] += 1
                (<pf_rule *>s.nat_r).bytes[dirndx] += pd.tot_len
            dirndx = 0 if dir == s.direction else 1
            s.packets[dirndx] += 1
            s.bytes[dirndx] += pd.tot_len
        if rm != NULL:
            count_tables(rm, r, s, &pd, action)
    if action == PF_PASS and r.rt > PF_FASTROUTE and rm != NULL:
        want_route(e, r, rm, s, &pd)
    return action


cdef void want_route(pf_engine *e, pf_rule *r, cf_cold *rm, pf_kstate *s, pdesc *pd) noexcept nogil:
    """pf_route's decision: route-to in the rule's direction, reply-to against it, dup-to both
    ways; where to from the state (rt_addr, rt_kif) or, without one, from the rule's pool. The
    router acts on tap_pkt.rt_* after the hook."""
    cdef tap_pkt *p = pd.p
    cdef pf_addr a
    cdef int k
    if r.rt != PF_DUPTO and (r.rt == PF_REPLYTO) == (r.direction == pd.dir):
        return
    if s != NULL and s.rt_if:
        k = s.rt_if - 1
        memcpy(p.rt_addr, &s.rt_addr, 16)
    elif rm.pool != NULL:
        memset(&a, 0, sizeof(a))
        k = route_target(e, rm.pool, pd, &a)
        memcpy(p.rt_addr, &a, 16)
    else:
        return
    if pd.af == AF_INET:
        memset(p.rt_addr + 4, 0, 12)
    p.rt_ifidx = <int16_t>k
    p.rt_kind = TAP_RT_DUP if r.rt == PF_DUPTO else TAP_RT_ROUTE


cdef void count_tables(cf_cold *rm, pf_rule *r, pf_kstate *s, pdesc *pd, int action) noexcept nogil:
    """pfr_update_stats for a rule whose address is a table: the packet's addresses, or for a
    packet of a state the addresses its stack key holds (untranslated)."""
    cdef const pf_addr *a
    cdef pf_state_key_cmp *k
    cdef pfr_dp *tbl
    cdef pf_rule_addr *ra
    cdef int side                   # 0 source, 1 destination
    for side in range(2):
        tbl = rm.src_tbl if side == 0 else rm.dst_tbl
        ra = &r.src if side == 0 else &r.dst
        if tbl == NULL or ra.addr.type != PF_ADDR_TABLE:
            continue
        a = pd.src if side == 0 else pd.dst
        if s != NULL:
            k = &s.key[PF_SK_STACK if s.direction == PF_IN else PF_SK_WIRE].k
            # the source is index 1 of an outbound state's key, the destination of an inbound's
            a = &k.addr[1 if (s.direction == PF_OUT) == (side == 0) else 0]
        pfr_dp_update_stats(tbl, a, pd.af, pd.tot_len, pd.dir == PF_OUT, r.action == PF_PASS,
                            ra.neg)


cdef int pf_test_hook(void *ctx, int dir, tap_if *ifp, tap_pkt *pkt) noexcept nogil:
    cdef pf_engine *e = <pf_engine *>ctx
    cdef int action, reason = 0, kind
    if not e.status.running:
        return PF_PASS
    if (e.skipmask >> ifp.index) & 1:
        return PF_PASS
    pthread_mutex_lock(&e.t.lock)
    e.ret_kind = PF_RET_NONE
    action = pf_test_locked(e, dir, ifp, pkt, &reason)
    kind = e.ret_kind
    pthread_mutex_unlock(&e.t.lock)
    if kind != PF_RET_NONE and action == PF_DROP and e.tap != NULL:
        if kind == PF_RET_RST:
            tap_send_rst(e.tap, pkt, e.ret_ttl)
        else:
            tap_send_icmp_error(e.tap, pkt, e.ret_type, e.ret_code)
    return action


# ---- the purge (pf_purge_thread / pf_purge_expired_states) -----------------------------------------
cdef unsigned int purge_expired(pf_engine *e) noexcept nogil:
    """Unlink every expired state (pf_purge_expired_states) and every source node no state uses
    whose PFTM_SRC_NODE time is up (pf_purge_expired_src_nodes). The states go PURGE_SLICE at a
    time, the lock let go between slices (FreeBSD purges a share of its hash rows per tick): with
    a million states the datapath and the ioctls wait for one slice, not for all of them. Another
    purge under way makes this one a no-op."""
    cdef pf_state_table *t = e.t
    cdef pf_kstate *st
    cdef unsigned int n = 0, k
    cdef uint32_t now
    cdef pf_ksrc_node *sn
    cdef pf_ksrc_node *snext
    pthread_mutex_lock(&t.lock)
    if t.purging:
        pthread_mutex_unlock(&t.lock)
        return 0
    t.purging = 1
    now = pf_uptime()
    t.pcursor = t.ahead
    while t.pcursor != NULL:
        k = 0
        while t.pcursor != NULL and k < PURGE_SLICE:
            st = t.pcursor
            t.pcursor = st.anext
            if st.timeout == PFTM_PURGE or pf_state_expires(t, st, now) <= now:
                pf_unlink_state(e.t, st)      # (it takes the state off its rules' states_cur)
                n += 1
            k += 1
        if t.pcursor != NULL:
            # states unlinked meanwhile move the cursor on (pf_unlink_state); new ones are
            # appended after it and looked at in this pass too
            pthread_mutex_unlock(&t.lock)
            sched_yield()           # the mutex is not fair: let a waiting pf_test in first
            pthread_mutex_lock(&t.lock)
    t.purging = 0
    if e.norm != NULL:
        pf_norm_purge(e.norm, now)
    sn = t.shead
    while sn != NULL:
        snext = sn.anext
        if sn.states == 0 and sn.expire <= now:
            pf_unlink_src_node(t, sn)
        sn = snext
    pthread_mutex_unlock(&t.lock)
    return n

# ---- the compiler ------------------------------------------------------------------------------------


@cython.no_gc_clear      # its Rule objects must outlive the counter fold in __dealloc__
cdef class _Gen:
    """A compiled generation and everything it points into (Rule objects, C arrays)."""
    cdef cf_gen *g
    cdef list rules             # Rule objects whose .r the arrays point at
    cdef list tables            # KTable objects whose pfr_dp the arrays point at
    cdef readonly list overload # KTable of each rule's `overload <table>` (cf_cold.overload1)
    cdef list blocks            # malloc'd blocks (as integers) to free

    def __cinit__(self):
        self.g = NULL
        self.rules = []
        self.tables = []
        self.overload = []
        self.blocks = []

    cdef void *alloc(self, size_t size) except NULL:
        cdef void *p = NULL
        if posix_memalign(&p, 64, size if size else 1) != 0 or p == NULL:
            raise MemoryError()
        memset(p, 0, size if size else 1)
        self.blocks.append(<uintptr_t>p)
        return p

    def __dealloc__(self):
        if self.g != NULL and self.g.fold_r != NULL:
            fold_evals(self.g)
        for b in self.blocks:
            free(<void *><uintptr_t>b)


cdef void fold_evals(cf_gen *g) noexcept nogil:
    """Move the generation's evaluation counters into their pf_rules and unhook Rule.ext_evals
    (call under the engine lock while the generation is active)."""
    cdef uint32_t k, j
    cdef uint64_t sum
    cdef cf_run *run
    for k in range(g.nrules):
        (<pf_rule *>g.fold_r[k]).evaluations += g.fold_ev[k][0]
        g.fold_ev[k][0] = 0
        if g.fold_slot[k][0] == g.fold_ev[k]:
            g.fold_slot[k][0] = NULL
        if g.fold_diff[k] != NULL and g.fold_dslot[k][0] == g.fold_diff[k]:
            g.fold_dslot[k][0] = NULL
    for k in range(g.nruns):
        run = g.runs[k]
        sum = 0
        for j in range(run.n):
            sum += run.diff[j]
            (<pf_rule *>run.r[j]).evaluations += sum
        memset(run.diff, 0, sizeof(uint64_t) * (run.n + 1))

cdef void hook_evals(cf_gen *g) noexcept nogil:
    cdef uint32_t k
    for k in range(g.nrules):
        g.fold_slot[k][0] = g.fold_ev[k]
        if g.fold_diff[k] != NULL:
            g.fold_dslot[k][0] = g.fold_diff[k]
            g.fold_pslot[k][0] = g.fold_pos[k]


cdef class _Compiler:
    cdef _Gen gen
    cdef dict done              # (id(Ruleset), rs_num, variant) -> address of its cf_ruleset
    cdef list fold              # [pf_rule *, &Rule.ext_evals, &evals[i], &Rule.ext_diff,
                                #  &Rule.ext_pos, run diff or 0, place in the run] of every rule
    cdef list runs              # cf_run * of every indexed run
    cdef object interfaces      # core.interfaces
    cdef dict ifindex           # name -> tap_if.index
    cdef Datapath dp

    cdef uint32_t ifmask(self, str name):
        cdef uint32_t m = 0
        if self.interfaces is None:
            kifs = [name]
        else:
            kifs = [k.name for k in self.interfaces.members(name)] or [name]
        for kname in kifs:
            i = self.ifindex.get(kname)
            if i is not None:
                m |= 1u << <int>i
        return m

    cdef cf_dyn *dyn(self, pf_rule_addr *ra, int af):
        """An "(ifname)" address: the datapath interface addresses it stands for."""
        cdef cf_dyn *d = <cf_dyn *>self.gen.alloc(sizeof(cf_dyn))
        cdef tap_if *ifp
        cdef int i, j, plen
        name = ra.addr.v.ifname[:16].split(b"\0", 1)[0].decode("latin-1")
        network = ra.addr.iflags & PFI_AFLAG_NETWORK
        for i in range(32):
            if not (self.ifmask(name) >> i) & 1 or self.dp is None:
                continue
            ifp = &self.dp.e.ifs[i]
            if af in (0, AF_INET):
                for j in range(ifp.n4):
                    if d.n < CF_MAXDYN:
                        d.af[d.n] = AF_INET
                        memcpy(&d.addr[d.n], ifp.a4[j], 4)
                        set_mask(&d.mask[d.n], ifp.p4[j] if network else 32)
                        d.n += 1
            if af in (0, AF_INET6):
                for j in range(ifp.n6):
                    if d.n < CF_MAXDYN:
                        d.af[d.n] = AF_INET6
                        memcpy(&d.addr[d.n], ifp.a6[j], 16)
                        set_mask(&d.mask[d.n], ifp.p6[j] if network else 128)
                        d.n += 1
        return d

    cdef cf_ruleset *ruleset(self, object rs, int rs_num=PF_RULESET_FILTER, int variant=0):
        """One ruleset of one anchor, compiled (once) with the anchors it calls. Translation
        rulesets compile as first-match walks (every rule quick, only the fields
        pf_match_translation looks at); variant 1 is inbound binat's view of the binat rules,
        which shares the evaluation counters of variant 0."""
        key = (id(rs), rs_num, variant)
        if key in self.done:
            return <cf_ruleset *><uintptr_t>self.done[key]
        rules = list(rs.active[rs_num].rules)
        cdef cf_ruleset *crs = <cf_ruleset *>self.gen.alloc(sizeof(cf_ruleset))
        self.done[key] = <uintptr_t>crs
        crs.rules = <cf_rule *>self.gen.alloc(sizeof(cf_rule) * max(len(rules), 1))
        crs.cold = <cf_cold *>self.gen.alloc(sizeof(cf_cold) * max(len(rules), 1))
        crs.n = len(rules)
        cdef Rule rule
        cdef PoolAddr pa
        cdef cf_rule *cr
        cdef cf_cold *cc
        cdef pf_rule *r
        cdef pf_rule_addr xdst
        cdef int i, k, n = len(rules)
        cdef uint32_t target
        cdef bint translation = rs_num != PF_RULESET_FILTER
        cdef list mine = []             # this ruleset's fold entries (its anchors add their own)
        if variant:
            crs.evals = self.ruleset(rs, rs_num, 0).evals
        else:
            crs.evals = <uint64_t *>self.gen.alloc(sizeof(uint64_t) * max(n, 1))
        for i in range(n):
            rule = rules[i]
            self.gen.rules.append(rule)
            cr = &crs.rules[i]
            cc = &crs.cold[i]
            cc.r = <void *>&rule.r
            r = <pf_rule *>cc.r
            if not variant:
                entry = [<uintptr_t>cc.r, <uintptr_t>&rule.ext_evals, <uintptr_t>&crs.evals[i],
                         <uintptr_t>&rule.ext_diff, <uintptr_t>&rule.ext_pos, 0, 0]
                mine.append(entry)
                self.fold.append(entry)         # the same list: index_runs completes it
            for k in range(8):
                target = rule.r.skip[k].nr
                target = n if target >= <uint32_t>n or target <= <uint32_t>i else target
                cc.skip_far[k] = target
                cr.skip[k] = target - i if target - i < CF_SKIP_FAR else CF_SKIP_FAR
            cr.af = AF_INET6 if r.af == AF_INET6_BSD else r.af
            name = rule.ifname
            cr.ifchk = (1 if name else 0) | (2 if r.ifnot else 0)
            cr.ifmask = self.ifmask(name) if name else 0
            cr.direction = r.direction
            cr.proto = r.proto
            cr.src_kind = self.addr_kind(&r.src, rule.src_table, cr, cc, True)
            cr.dst_kind = self.addr_kind(&r.dst, rule.dst_table, cr, cc, False)
            cr.src_op = r.src.port_op
            cr.dst_op = r.dst.port_op
            cr.src_port[0] = r.src.port[0]
            cr.src_port[1] = r.src.port[1]
            cr.dst_port[0] = r.dst.port[0]
            cr.dst_port[1] = r.dst.port[1]
            cr.type = r.type
            cr.code = r.code
            cr.tos = r.tos
            cr.flags = r.flags
            cr.flagset = r.flagset
            cr.slow = 1 if ((r.rule_flag & PFRULE_FRAGMENT) or r.uid.op or r.gid.op or r.prio
                            or r.prob or r.match_tag or r.os_fingerprint) else 0
            cr.quick = r.quick
            cr.tag = r.tag
            if rule.overload_table is not None and not variant:
                self.gen.overload.append(rule.overload_table)
                cc.overload1 = len(self.gen.overload)
            if rs_num == PF_RULESET_SCRUB:
                # pf_normalize_ip looks at interface, direction, family, protocol, addresses
                cr.src_op = cr.dst_op = 0
            if translation:
                cr.type = cr.code = cr.tos = cr.flags = cr.flagset = 0
                cr.slow = 1 if (r.match_tag or r.os_fingerprint) else 0
                cr.quick = 1
                if rule.anchor is None:
                    cc.pool = self.pool(rule, cr.af)
            elif r.rt in (PF_ROUTETO, PF_REPLYTO, PF_DUPTO) and rule.anchor is None:
                cc.pool = self.pool(rule, cr.af)
            if variant:
                # inbound binat: the packet's source against the rule's destination, its
                # destination against the pool address, no destination port; a mismatch there
                # goes to the next rule. The rule's own source "(if)" maps the address back.
                cc.map_dyn = cc.src_dyn
                cr.src_kind = self.addr_kind(&r.dst, rule.dst_table, cr, cc, True)
                cr.src_op = r.dst.port_op
                cr.src_port[0] = r.dst.port[0]
                cr.src_port[1] = r.dst.port[1]
                cr.dst_op = 0
                cr.dst_kind = CK_ANY
                if rule.pool:
                    pa = rule.pool[0]
                    memset(&xdst, 0, sizeof(xdst))
                    xdst.addr = pa.pa.addr
                    cr.dst_kind = self.addr_kind(&xdst, pa.table, cr, cc, False)
                # pf_match_translation skips by the destination's steps here
                cr.skip[PF_SKIP_SRC_ADDR] = cr.skip[PF_SKIP_DST_ADDR]
                cr.skip[PF_SKIP_SRC_PORT] = cr.skip[PF_SKIP_DST_PORT]
                cc.skip_far[PF_SKIP_SRC_ADDR] = cc.skip_far[PF_SKIP_DST_ADDR]
                cc.skip_far[PF_SKIP_SRC_PORT] = cc.skip_far[PF_SKIP_DST_PORT]
                cr.skip[PF_SKIP_DST_ADDR] = 1
            anchor = rule.anchor
            if anchor is not None:
                cr.is_anchor = 1
                if rule.anchor_wildcard:
                    cr.wildcard = cc.wildcard = 1
                    kids = sorted(anchor.children.values(), key=lambda a: a.name.encode("latin-1"))
                    cc.nchildren = len(kids)
                    cc.children = <cf_ruleset **>self.gen.alloc(sizeof(void *) * max(len(kids), 1))
                    for k in range(len(kids)):
                        cc.children[k] = self.ruleset(kids[k].ruleset, rs_num, variant)
                else:
                    cc.anchor = self.ruleset(anchor.ruleset, rs_num, variant)
        if not variant:
            self.index_runs(crs, mine)
            self.gen.g.nrules += n
        return crs

    cdef cf_pool *pool(self, Rule rule, int af):
        """A translation rule's rpool: address/mask entries as they are, "(ifname)" entries as
        the datapath interface's addresses, tables and no-route as unusable entries."""
        cdef cf_pool *pl = <cf_pool *>self.gen.alloc(sizeof(cf_pool))
        cdef PoolAddr pa
        cdef pf_rule_addr ra
        cdef cf_dyn *d
        cdef cf_pooladdr *e
        cdef KTable kt
        cdef int i, j
        entries = []
        tables = {}
        for pa in rule.pool:
            t = pa.pa.addr.type
            ifname = pa.pa.ifname[:16].split(b"\0", 1)[0].decode("latin-1")
            ifidx = self.ifindex.get(ifname, -1) if ifname else -1
            if t == PF_ADDR_ADDRMASK:
                paf = AF_INET6 if pa.af == AF_INET6_BSD else (pa.af or af)
                entries.append((NP_ADDR, paf, bytes((<char *>&pa.pa.addr.v.a.addr)[:16]),
                                bytes((<char *>&pa.pa.addr.v.a.mask)[:16]), ifidx))
            elif t == PF_ADDR_DYNIFTL:
                memset(&ra, 0, sizeof(ra))
                ra.addr = pa.pa.addr
                d = self.dyn(&ra, af)
                for j in range(d.n):
                    entries.append((NP_ADDR, d.af[j], bytes((<char *>&d.addr[j])[:16]),
                                    bytes((<char *>&d.mask[j])[:16]), ifidx))
            elif t == PF_ADDR_TABLE and pa.table is not None:
                self.gen.tables.append(pa.table)
                entries.append((NP_TABLE, af, b"\0" * 16, b"\0" * 16, ifidx))
                tables[len(entries) - 1] = pa.table
            else:
                entries.append((NP_NONE, af, b"\0" * 16, b"\0" * 16, ifidx))
        pl.n = len(entries)
        pl.a = <cf_pooladdr *>self.gen.alloc(sizeof(cf_pooladdr) * max(pl.n, 1))
        for i, (kind, paf, addr, mask, ifidx) in enumerate(entries):
            e = &pl.a[i]
            e.kind = kind
            e.af = paf
            e.ifidx = ifidx
            if kind == NP_TABLE:
                kt = tables[i]
                e.tbl = kt.dp
            memcpy(&e.addr, <char *>addr, 16)
            memcpy(&e.mask, <char *>mask, 16)
        pl.opts = rule.r.rpool.opts
        for i in range(4):
            pl.key[i] = rule.r.rpool.key.key32[i]
        pl.proxy_port[0] = rule.r.rpool.proxy_port[0]
        pl.proxy_port[1] = rule.r.rpool.proxy_port[1]
        pl.tblidx = -1
        if pl.n:
            memcpy(&pl.counter, &pl.a[0].addr, sizeof(pf_addr))
        return pl

    cdef object field_spans(self, cf_ruleset *crs, uint32_t i, int key, int fam):
        """The keys rule i's address or port field (key: RUN_*) lets through, for packets of
        family fam (0 IPv4, 1 IPv6), as sorted disjoint intervals of host-order numbers ([] =
        none); None where the walk has to look (a table, "(if)", a non-contiguous mask, an
        address on a rule of either family)."""
        cdef cf_rule *a = &crs.rules[i]
        cdef cf_cold *ac = &crs.cold[i]
        if key in (RUN_DPORT, RUN_SPORT):
            op = a.dst_op if key == RUN_DPORT else a.src_op
            p1 = int(ntohs(a.dst_port[0] if key == RUN_DPORT else a.src_port[0]))
            p2 = int(ntohs(a.dst_port[1] if key == RUN_DPORT else a.src_port[1]))
            top = 0xffff
            spans = {0: [(0, top)], PF_OP_EQ: [(p1, p1)], PF_OP_NE: [(0, p1 - 1), (p1 + 1, top)],
                     PF_OP_LT: [(0, p1 - 1)], PF_OP_LE: [(0, p1)], PF_OP_GT: [(p1 + 1, top)],
                     PF_OP_GE: [(p1, top)], PF_OP_IRG: [(p1 + 1, p2 - 1)], PF_OP_RRG: [(p1, p2)],
                     PF_OP_XRG: [(0, p1 - 1), (p2 + 1, top)]}.get(op, [])
            return [x for x in spans if x[0] <= x[1]]
        kind = a.dst_kind if key == RUN_DST else a.src_kind
        base = kind & 0x7f
        top = addr_top(fam)
        if a.af and a.af != (AF_INET6 if fam else AF_INET):
            return [(0, top)]                   # the family check rejects the rule first
        if base == CK_ANY:
            spans = [(0, top)]
        elif base == CK_NEVER:
            spans = []
        elif not a.af or base not in (CK_MASK4, CK_MASK, CK_RANGE):
            return None
        else:
            addr = &ac.dst_addr if key == RUN_DST else &ac.src_addr
            mask = &ac.dst_mask if key == RUN_DST else &ac.src_mask
            lo = hi = 0
            for w in range(4 if fam else 1):
                lo = (lo << 32) | ntohl(addr.addr32[w])
                hi = (hi << 32) | ntohl(mask.addr32[w])
            if base == CK_RANGE:
                spans = [(lo, hi)] if lo <= hi else []
            else:
                inv = top ^ hi                  # the host part of a contiguous mask: 0...01...1
                if inv & (inv + 1):
                    return None
                spans = [(lo & hi, (lo & hi) | inv)]
        if kind & CK_NEG:
            rest, at = [], 0
            for lo, hi in spans:
                if lo > at:
                    rest.append((at, lo - 1))
                at = hi + 1
            if at <= top:
                rest.append((at, top))
            spans = rest
        return spans

    cdef object run_interval(self, cf_ruleset *crs, uint32_t i, int key):
        """The keys rule i matches in its key field as one interval (lo, hi), or None where
        they are not one."""
        spans = self.field_spans(crs, i, key, 1 if crs.rules[i].af == AF_INET6 else 0)
        return spans[0] if spans is not None and len(spans) == 1 else None

    cdef bint run_prefix_same(self, cf_ruleset *crs, uint32_t i, uint32_t head, int key):
        """Every field the walk checks before rule i's key compiled as rule head's (then "the
        fields before the key match" is the same statement for every member)."""
        cdef cf_rule *a = &crs.rules[i]
        cdef cf_rule *h = &crs.rules[head]
        if a.is_anchor or (a.ifchk, a.ifmask, a.direction, a.af, a.proto) != \
                (h.ifchk, h.ifmask, h.direction, h.af, h.proto):
            return False
        if key == RUN_SRC:
            return True
        if not self.same_addr(crs, i, head, True):
            return False
        if key == RUN_SPORT:
            return True
        if (a.src_op, a.src_port[0], a.src_port[1]) != (h.src_op, h.src_port[0], h.src_port[1]):
            return False
        return key == RUN_DST or self.same_addr(crs, i, head, False)

    cdef bint same_addr(self, cf_ruleset *crs, uint32_t i, uint32_t head, bint src):
        cdef cf_rule *a = &crs.rules[i]
        cdef cf_rule *h = &crs.rules[head]
        cdef cf_cold *ac = &crs.cold[i]
        cdef cf_cold *hc = &crs.cold[head]
        kind = a.src_kind if src else a.dst_kind
        if kind != (h.src_kind if src else h.dst_kind):
            return False
        base = kind & 0x7f
        if base == CK_ANY:
            return True
        if base == CK_MASK4:
            return (a.src4, a.src4mask) == (h.src4, h.src4mask) if src else \
                (a.dst4, a.dst4mask) == (h.dst4, h.dst4mask)
        if base in (CK_MASK, CK_RANGE):
            return memcmp(&ac.src_addr if src else &ac.dst_addr,
                          &hc.src_addr if src else &hc.dst_addr, sizeof(pf_addr)) == 0 and \
                memcmp(&ac.src_mask if src else &ac.dst_mask,
                       &hc.src_mask if src else &hc.dst_mask, sizeof(pf_addr)) == 0
        if base == CK_TABLE:
            return (ac.src_tbl == hc.src_tbl) if src else (ac.dst_tbl == hc.dst_tbl)
        return False

    cdef list run_from(self, cf_ruleset *crs, uint32_t head, int key):
        """The longest run keyed on key that starts at rule head: its members' intervals."""
        cdef uint32_t j = head
        if crs.rules[head].af not in (AF_INET, AF_INET6):
            return []
        spans = []
        lows = []                   # sorted lower bounds, and their intervals
        byl = []
        while j < <uint32_t>crs.n and self.run_prefix_same(crs, j, head, key):
            span = self.run_interval(crs, j, key)
            if span is None:
                break
            k = bisect.bisect_left(lows, span[0])
            if (k < len(lows) and lows[k] <= span[1]) or (k > 0 and byl[k - 1][1] >= span[0]):
                break               # overlaps a member: the walk could match both
            lows.insert(k, span[0])
            byl.insert(k, span)
            spans.append(span)
            j += 1
        return spans

    cdef void itab_fill(self, cf_itab *t, list spans, bint wide) except *:
        """t: the intervals spans [(lo, hi, entry)], sorted and disjoint."""
        cdef uint32_t k, w, words = 2 if wide else 1
        t.nint = len(spans)
        t.wide = wide
        t.lo = <uint64_t *>self.gen.alloc(sizeof(uint64_t) * max(t.nint, 1) * words)
        t.hi = <uint64_t *>self.gen.alloc(sizeof(uint64_t) * max(t.nint, 1) * words)
        t.pos = <uint32_t *>self.gen.alloc(sizeof(uint32_t) * max(t.nint, 1))
        for k in range(t.nint):
            lo, hi, entry = spans[k]
            for w in range(words):
                shift = 64 * (words - 1 - w)
                t.lo[k * words + w] = (lo >> shift) & 0xffffffffffffffff
                t.hi[k * words + w] = (hi >> shift) & 0xffffffffffffffff
            t.pos[k] = entry

    cdef list find_runs(self, cf_ruleset *crs):
        """The indexed runs one ruleset can have (cf_run in pf_test.pxd): [(start, the members'
        intervals, RUN_*)]."""
        cdef uint32_t i = 0, n = crs.n
        cdef int key
        found = []
        while i < n:
            best, best_key = [], 0
            for key in (RUN_DST, RUN_SRC, RUN_DPORT, RUN_SPORT):
                spans = self.run_from(crs, i, key)
                if len(spans) > len(best):
                    best, best_key = spans, key
            if len(best) < RUN_MIN:
                i += 1
                continue
            found.append((i, best, best_key))
            i += len(best)
        return found

    cdef cf_run *add_run(self, cf_ruleset *crs, list fold, uint32_t start, uint32_t m, int key) except NULL:
        """rules[start .. start + m) share one evaluation difference array (cf_run); key 0: the
        whole ruleset of a classifier, whose walk counts the rules it passes over as a range."""
        cdef uint32_t j
        cdef cf_run *run = <cf_run *>self.gen.alloc(sizeof(cf_run))
        run.start, run.n, run.key = start, m, key
        run.diff = <uint64_t *>self.gen.alloc(sizeof(uint64_t) * (m + 1))
        run.r = <void **>self.gen.alloc(sizeof(void *) * m)
        for j in range(m):
            crs.rules[start + j].run = <uint8_t>key
            crs.cold[start + j].run = run
            crs.cold[start + j].run_pos = j
            run.r[j] = crs.cold[start + j].r
            fold[start + j][5] = <uintptr_t>run.diff
            fold[start + j][6] = j
        self.runs.append(<uintptr_t>run)
        return run

    cdef void index_runs(self, cf_ruleset *crs, list fold) except *:
        """Index the ruleset's runs, or, where the walk would still visit many rules one by one,
        give it a classifier instead (which passes over a run's members as well)."""
        cdef cf_run *run
        found = self.find_runs(crs)
        walked = crs.n - sum(len(spans) for _s, spans, _k in found) + len(found)
        if walked >= CLS_MINWALK and self.classify(crs):
            crs.cdiff = self.add_run(crs, fold, 0, crs.n, 0).diff
            return
        for start, spans, key in found:
            run = self.add_run(crs, fold, start, len(spans), key)
            self.itab_fill(&run.keys, sorted((lo, hi, pos) for pos, (lo, hi) in enumerate(spans)),
                           key in (RUN_DST, RUN_SRC) and crs.rules[start].af == AF_INET6)

    cdef uint64_t *cls_row(self, cf_cls *c, list rules_in):
        """A bit set of the given rules."""
        cdef uint64_t *row = <uint64_t *>self.gen.alloc(sizeof(uint64_t) * c.words)
        for i in rules_in:
            row[i >> 6] |= (<uint64_t>1) << (i & 63)
        return row

    cdef void cls_table(self, cf_cls *c, cf_itab *t, uint64_t **bits, list per_rule, list bounds,
                        object top, bint wide) except *:
        """The elementary intervals (from bounds, see elementary_bounds) of the rules' spans (None:
        let through, the unknown bit decides) and a bit set of the rules each lets through."""
        cdef uint32_t i, r, t0, t1, words = c.words
        cdef uint64_t *row
        cdef uint64_t bit
        self.itab_fill(t, [(b, (bounds[k + 1] - 1) if k + 1 < len(bounds) else top, k)
                           for k, b in enumerate(bounds)], wide)
        row = <uint64_t *>self.gen.alloc(sizeof(uint64_t) * words * t.nint)
        bits[0] = row
        for r in range(len(per_rule)):
            spans = per_rule[r]
            bit = (<uint64_t>1) << (r & 63)
            for lo, hi in ([(0, top)] if spans is None else spans):
                t0 = bisect.bisect_left(bounds, lo)
                t1 = bisect.bisect_left(bounds, hi + 1) if hi < top else t.nint
                for i in range(t0, t1):
                    row[<size_t>i * words + (r >> 6)] |= bit

    cdef bint classify(self, cf_ruleset *crs) except -1:
        """Build the ruleset's classifier (cf_cls in pf_test.pxd), unless it is too large."""
        cdef uint32_t n = crs.n, i, k, d, fam, t
        cdef cf_cls *c
        cdef cf_rule *cr
        if n > CLS_MAXRULES:
            log.info("ruleset of %d rules walked rule by rule: a classifier takes at most %d",
                     n, CLS_MAXRULES)
            return False
        words = (n + 63) >> 6
        addr = [[[self.field_spans(crs, i, key, fam) for i in range(n)] for fam in (0, 1)]
                for key in (RUN_SRC, RUN_DST)]
        port = [[self.field_spans(crs, i, key, 0) for i in range(n)] for key in (RUN_SPORT, RUN_DPORT)]
        addr_bounds = [[elementary_bounds(addr[k][fam], addr_top(fam))
                        for fam in (0, 1)] for k in (0, 1)]
        port_bounds = [elementary_bounds(port[k], 0xffff) for k in (0, 1)]
        rows = 32 + 3 + 2 + 257 + 8 + 8 + 1 + sum(map(len, [*addr_bounds[0], *addr_bounds[1], *port_bounds]))
        if rows * words * 8 > CLS_MAXBYTES:
            log.info("ruleset of %d rules walked rule by rule: its classifier would take %d bytes",
                     n, rows * words * 8)
            return False
        c = <cf_cls *>self.gen.alloc(sizeof(cf_cls))
        c.words = words
        c.present = self.cls_row(c, list(range(n)))
        for t in range(32):
            ok = []
            for i in range(n):
                cr = &crs.rules[i]
                kmatch = (not (cr.ifchk & 1)) or ((cr.ifmask >> t) & 1) != 0
                if not cr.ifchk or kmatch != ((cr.ifchk >> 1) & 1):
                    ok.append(i)
            c.ifp[t] = self.cls_row(c, ok)
        for d in range(3):
            c.dir[d] = self.cls_row(c, [i for i in range(n) if crs.rules[i].direction in (0, d)])
        for fam in range(2):
            c.af[fam] = self.cls_row(c, [i for i in range(n)
                                         if crs.rules[i].af in (0, AF_INET6 if fam else AF_INET)])
        protos = {crs.rules[i].proto for i in range(n)} - {0}
        other = self.cls_row(c, [i for i in range(n) if crs.rules[i].proto == 0])
        for k in range(256):
            c.proto[k] = self.cls_row(c, [i for i in range(n) if crs.rules[i].proto in (0, k)]) \
                if k in protos else other
        for k in range(2):
            for fam in range(2):
                self.cls_table(c, &c.addr[k][fam], &c.addr_bits[k][fam], addr[k][fam],
                               addr_bounds[k][fam], addr_top(fam), fam == 1)
            c.unknown[PF_SKIP_DST_ADDR if k else PF_SKIP_SRC_ADDR] = self.cls_row(
                c, [i for i in range(n) if addr[k][0][i] is None or addr[k][1][i] is None])
            self.cls_table(c, &c.port[k], &c.port_bits[k], port[k], port_bounds[k], 0xffff, False)
        for k in range(8):
            c.jump[k] = self.cls_row(c, [i for i in range(n)
                                         if skip_to(crs, &crs.rules[i], i, k) > i + 1])
            if c.unknown[k] == NULL:
                c.unknown[k] = self.cls_row(c, [])      # a field always known
            c.unknown_any[k] = any(c.unknown[k][w] for w in range(words))
        crs.cls = c
        self.gen.g.ncls += 1
        return True

    cdef uint8_t addr_kind(self, pf_rule_addr *ra, table, cf_rule *cr, cf_cold *cc,
                           bint src) except? 0xff:
        """Compile one rule address: its CK_* kind (CK_NEG for "!"), the address words, and the
        dyn / table matcher it needs."""
        cdef uint8_t t = ra.addr.type
        cdef uint8_t kind
        cdef pf_addr *a = &cc.src_addr if src else &cc.dst_addr
        cdef pf_addr *m = &cc.src_mask if src else &cc.dst_mask
        cdef KTable kt
        memcpy(a, &ra.addr.v.a.addr, sizeof(pf_addr))
        memcpy(m, &ra.addr.v.a.mask, sizeof(pf_addr))
        if t == PF_ADDR_ADDRMASK:
            if cr.af == AF_INET:
                # only the first word counts for IPv4 (PF_AZERO / PF_MATCHA on AF_INET)
                kind = CK_MASK4 if m.addr32[0] else CK_ANY
                if src:
                    cr.src4mask = m.addr32[0]
                    cr.src4 = a.addr32[0] & m.addr32[0]
                else:
                    cr.dst4mask = m.addr32[0]
                    cr.dst4 = a.addr32[0] & m.addr32[0]
            else:
                kind = CK_MASK if (m.addr32[0] | m.addr32[1] | m.addr32[2] | m.addr32[3]) else CK_ANY
        elif t == PF_ADDR_RANGE:
            kind = CK_RANGE
        elif t == PF_ADDR_DYNIFTL:
            kind = CK_DYN
            if src:
                cc.src_dyn = self.dyn(ra, cr.af)
            else:
                cc.dst_dyn = self.dyn(ra, cr.af)
        elif t == PF_ADDR_TABLE and table is not None:
            kind = CK_TABLE
            kt = table
            self.gen.tables.append(kt)
            if src:
                cc.src_tbl = kt.dp
            else:
                cc.dst_tbl = kt.dp
        else:
            kind = CK_NEVER
        if ra.neg:
            kind |= CK_NEG
        return kind


def addr_top(fam):
    """The largest address of a family (0 IPv4, 1 IPv6) as a number (a Python integer: with
    literals alone Cython shifts in C)."""
    return (<object>1 << (128 if fam else 32)) - 1


def elementary_bounds(list per_rule, top):
    """The lower bounds of the elementary intervals of [0, top] that the rules' spans cut it into
    (every key of one interval meets the same rules), sorted."""
    bounds = {0}
    for spans in per_rule:
        for lo, hi in (spans or ()):
            bounds.add(lo)
            if hi < top:
                bounds.add(hi + 1)
    return sorted(bounds)


cdef fold_arrays(_Gen gen, list fold, list runs):
    cdef cf_gen *g = gen.g
    cdef Py_ssize_t k, n = len(fold)
    cdef size_t w = sizeof(void *) * max(n, 1)
    g.fold_r = <void **>gen.alloc(w)
    g.fold_slot = <uint64_t ***>gen.alloc(w)
    g.fold_ev = <uint64_t **>gen.alloc(w)
    g.fold_dslot = <uint64_t ***>gen.alloc(w)
    g.fold_pslot = <uint32_t **>gen.alloc(w)
    g.fold_diff = <uint64_t **>gen.alloc(w)
    g.fold_pos = <uint32_t *>gen.alloc(sizeof(uint32_t) * max(n, 1))
    for k in range(n):
        rp, slot, ev, dslot, pslot, diff, pos = fold[k]
        g.fold_r[k] = <void *><uintptr_t>rp
        g.fold_slot[k] = <uint64_t **><uintptr_t>slot
        g.fold_ev[k] = <uint64_t *><uintptr_t>ev
        g.fold_dslot[k] = <uint64_t **><uintptr_t>dslot
        g.fold_pslot[k] = <uint32_t *><uintptr_t>pslot
        g.fold_diff[k] = <uint64_t *><uintptr_t>diff
        g.fold_pos[k] = pos
    g.nruns = len(runs)
    g.runs = <cf_run **>gen.alloc(sizeof(void *) * max(len(runs), 1))
    for k in range(len(runs)):
        g.runs[k] = <cf_run *><uintptr_t>runs[k]


cdef void set_mask(pf_addr *m, int plen) noexcept nogil:
    cdef int i
    memset(m, 0, sizeof(pf_addr))
    for i in range(16):
        if plen >= 8:
            m.addr8[i] = 0xff
            plen -= 8
        elif plen > 0:
            m.addr8[i] = <uint8_t>(0xff << (8 - plen))
            plen = 0


cdef uint32_t gen_serial = 0     # compiled generations so far (cf_gen.serial)


cdef class Filter:
    """pf_test for one Datapath over one PfCore: attach() installs the hook, close() removes it."""

    def __cinit__(self):
        self.e = <pf_engine *>calloc(1, sizeof(pf_engine))
        if self.e == NULL:
            raise MemoryError()
        self.e.default_rule = calloc(1, sizeof(pf_rule))
        if self.e.default_rule == NULL:
            raise MemoryError()
        (<pf_rule *>self.e.default_rule).action = PF_PASS
        (<pf_rule *>self.e.default_rule).nr = <uint32_t>-1
        self.wakefd = -1
        self.e.wakefd = -1
        self.e.norm = NULL

    def __init__(self, PfCore core, datapath=None):
        cdef StateTable states = core.states
        cdef uint64_t seed = 0
        getrandom(&seed, sizeof(seed), 0)
        self.core = core
        self.datapath = datapath
        self.e.t = states.t
        self.e.status = &core.status
        self.e.timeouts = core.timeout
        self.e.rng = seed | 1
        self.e.norm = pf_norm_new(core.limit, core.timeout, core.status.counters)
        if self.e.norm == NULL:
            raise MemoryError()
        self.ifindex = {}
        if datapath is not None:
            self.e.tap = (<Datapath>datapath).e
            for i, (name, _ifindex, _mac, _mtu) in enumerate(datapath.interfaces()):
                self.ifindex[name] = i
        self.gen = None
        self.retired = []
        self.genlock = threading.RLock()
        self.purger = None
        self.closing = False
        tables = getattr(core, "tables", None)
        if tables is not None and hasattr(tables, "bind_datapath"):
            tables.bind_datapath(<uintptr_t>&states.t.lock)
        self.recompile()
        core.rulesets.on_commit(self._on_commit)
        self.refresh_skip()

    def __dealloc__(self):
        cdef int i
        if self.e != NULL:
            for i in range(self.e.nlabels):
                free(self.e.labels[i])
            free(self.e.default_rule)
            if self.e.norm != NULL:
                pf_norm_free(self.e.norm)
            free(self.e)
        if self.wakefd >= 0:
            close(self.wakefd)

    # -- compile and swap --------------------------------------------------------------------
    def _on_commit(self, ruleset, rs_num):
        if rs_num in (PF_RULESET_FILTER, PF_RULESET_NAT, PF_RULESET_BINAT, PF_RULESET_RDR,
                      PF_RULESET_SCRUB) and not self.closing:
            self.recompile()

    def recompile(self):
        """Compile the active filter and translation rulesets (main and every anchor they
        reach) and swap."""
        cdef _Gen gen = _Gen()
        cdef _Compiler c = _Compiler()
        cdef pf_state_table *t = self.e.t
        gen.g = <cf_gen *>gen.alloc(sizeof(cf_gen))
        c.gen = gen
        c.done = {}
        c.interfaces = self.core.interfaces
        c.ifindex = self.ifindex
        c.dp = self.datapath
        c.fold = []
        c.runs = []
        main = self.core.rulesets.main
        gen.g.main = c.ruleset(main)
        gen.g.nat = c.ruleset(main, PF_RULESET_NAT)
        gen.g.binat = c.ruleset(main, PF_RULESET_BINAT)
        gen.g.binat_in = c.ruleset(main, PF_RULESET_BINAT, 1)
        gen.g.rdr = c.ruleset(main, PF_RULESET_RDR)
        gen.g.scrub = c.ruleset(main, PF_RULESET_SCRUB)
        global gen_serial
        gen_serial += 1
        gen.g.serial = gen_serial
        fold_arrays(gen, c.fold, c.runs)
        cdef cf_gen *old = self.e.gen
        with nogil:
            pthread_mutex_lock(&t.lock)
            if old != NULL:
                fold_evals(old)
            self.e.gen = gen.g
            hook_evals(gen.g)
            pthread_mutex_unlock(&t.lock)
        with self.genlock:
            if self.gen is not None:
                self.retired.append(self.gen)
            self.gen = gen
            self.reap()
        log.debug("rules compiled: %d (filter %d, nat %d, binat %d, rdr %d in the main ruleset); "
                  "indexed runs: %d (%d rules); classified rulesets: %d", gen.g.nrules, gen.g.main.n,
                  gen.g.nat.n, gen.g.binat.n, gen.g.rdr.n, gen.g.nruns - gen.g.ncls,
                  sum(gen.g.runs[k].n for k in range(gen.g.nruns) if gen.g.runs[k].key),
                  gen.g.ncls)

    def reap(self):
        """Free the replaced generations no state or source node points into any more."""
        cdef _Gen old
        cdef pf_state_table *t = self.e.t
        cdef uint64_t refs
        keep = []
        with self.genlock:          # the purge thread and commits both reap
            for old in self.retired:
                with nogil:
                    pthread_mutex_lock(&t.lock)
                    refs = old.g.refs
                    pthread_mutex_unlock(&t.lock)
                if refs:
                    keep.append(old)
            self.retired = keep     # the others are freed here, unreferenced

    def unhook(self):
        """Fold the evaluation counters into the rules and detach them from this engine."""
        cdef pf_state_table *t = self.e.t
        cdef cf_gen *g = self.e.gen
        if g == NULL:
            return
        with nogil:
            pthread_mutex_lock(&t.lock)
            fold_evals(g)
            pthread_mutex_unlock(&t.lock)

    def refresh_skip(self):
        """`set skip on`: the interfaces whose kif carries PFI_IFLAG_SKIP."""
        cdef uint32_t m = 0
        ifs = self.core.interfaces
        if ifs is not None:
            for name, i in self.ifindex.items():
                kif = ifs.get(name)
                if kif is not None and kif.flags & PFI_IFLAG_SKIP:
                    m |= 1u << <int>i
        self.e.skipmask = m

    # -- the datapath ------------------------------------------------------------------------
    def attach(self):
        """Install pf_test as the datapath's hook and start the purge thread."""
        cdef Datapath dp = self.datapath
        dp.e.pf_ctx = <void *>self.e
        dp.e.pf_test = pf_test_hook
        self.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
        self.e.wakefd = self.wakefd
        self.purger = threading.Thread(target=self._purge_loop, name="pf-purge", daemon=True)
        self.purger.start()

    def close(self):
        """Remove the hook (call with the datapath stopped or before it starts) and stop purging."""
        cdef Datapath dp = self.datapath
        cdef uint64_t one = 1
        self.closing = True
        if dp is not None and dp.e != NULL and dp.e.pf_ctx == <void *>self.e:
            dp.e.pf_test = NULL
            dp.e.pf_ctx = NULL
        if self.purger is not None:
            write(self.wakefd, &one, 8)
            self.purger.join()
            self.purger = None

    def purge(self):
        """One purge pass now; returns the number of states removed."""
        cdef unsigned int n
        with nogil:                 # the lock's other holders may want the GIL (run_locked)
            n = purge_expired(self.e)
        return n

    def overload(self):
        """pf_overload_task: add the sources the engine queued to their rules' overload tables
        and, with `flush`, kill their states (all of them with `flush global`, else those of the
        same rule). Runs on the purge thread, one control-plane change under core.lock."""
        cdef pf_state_table *t = self.e.t
        cdef cf_overload q[CF_OVERLOAD_Q]
        cdef int i, n
        cdef pfr_table tbl
        cdef pfr_addr ad
        cdef _Gen gen = self.gen
        cdef pf_kstate *st
        cdef pf_state_key_cmp *sk
        with nogil:
            pthread_mutex_lock(&t.lock)
            n = self.e.novl
            memcpy(q, self.e.ovl, sizeof(cf_overload) * n)
            self.e.novl = 0
            pthread_mutex_unlock(&t.lock)
        if n == 0 or gen is None:
            return 0
        tables = self.core.tables
        with self.core.lock:
            for i in range(n):
                if q[i].serial != gen.g.serial or q[i].idx >= <uint32_t>len(gen.overload):
                    continue                # the rule was replaced meanwhile
                kt = gen.overload[q[i].idx]
                memset(&tbl, 0, sizeof(tbl))
                memset(&ad, 0, sizeof(ad))
                put_cstr(tbl.pfrt_anchor, sizeof(tbl.pfrt_anchor), kt.anchor)
                put_cstr(tbl.pfrt_name, sizeof(tbl.pfrt_name), kt.name)
                ad.pfra_af = AF_INET if q[i].af == AF_INET else AF_INET6_BSD
                ad.pfra_net = 32 if q[i].af == AF_INET else 128
                memcpy(&ad.pfra_ip6addr, &q[i].addr, 4 if q[i].af == AF_INET else 16)
                try:
                    (<Tables>tables).add_addrs(&tbl, &ad, 1, 0)
                    tables.sync()
                except Exception as exc:
                    log.warning("overload table <%s>: %s", kt.name, exc)
                with nogil:
                    pthread_mutex_lock(&t.lock)
                    self.e.status.lcounters[LCNT_OVERLOAD_TABLE] += 1
                    pthread_mutex_unlock(&t.lock)
                if not q[i].flush & PF_FLUSH:
                    continue
                with nogil:
                    pthread_mutex_lock(&t.lock)
                    self.e.status.lcounters[LCNT_OVERLOAD_FLUSH] += 1
                    st = t.ahead
                    while st != NULL:
                        sk = &st.key[PF_SK_WIRE].k
                        if sk.af == q[i].af and (
                                (q[i].dir == PF_OUT and addr_eq(&q[i].addr, &sk.addr[1], sk.af)) or
                                (q[i].dir == PF_IN and addr_eq(&q[i].addr, &sk.addr[0], sk.af))) and (
                                q[i].flush & PF_FLUSH_GLOBAL or st.rule_r == q[i].rule_r):
                            st.timeout = PFTM_PURGE
                            st.src.state = st.dst.state = TCPS_CLOSED
                        st = st.anext
                    pthread_mutex_unlock(&t.lock)
        return n

    def _purge_loop(self):
        cdef pollfd pfd
        cdef uint64_t v
        cdef int rc
        cdef uint32_t last = pf_uptime()
        pfd.fd = self.wakefd
        pfd.events = POLLIN
        while not self.closing:
            with nogil:
                rc = poll(&pfd, 1, 1000)
                if rc > 0:
                    read(self.wakefd, &v, 8)
            if self.closing:
                break
            try:
                self.overload()
            except Exception:
                log.exception("overload table")
            try:
                self.refresh_skip()
            except Exception:
                log.exception("refreshing skip flags")
            if pf_uptime() - last >= max(self.core.get_timeout(PFTM_INTERVAL), 1):
                last = pf_uptime()
                with nogil:
                    purge_expired(self.e)
                self.reap()

    # -- for tests and tools -------------------------------------------------------------------
    @property
    def nrules(self):
        return self.e.gen.nrules if self.e.gen != NULL else 0
