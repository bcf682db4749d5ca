# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Scrub (FreeBSD 12.1 pf_norm.c) for packets a scrub rule matched; see pf_norm.pxd.

What a matched packet goes through, in 12.1's order:
- IPv4 (pf_normalize_ip): header length sanity (PFRES_NORM); no-df clears DF first, so a
  fragment whose DF no-df cleared may enter the cache, any other fragment with DF is dropped
  (PFRES_FRAG); fragment data a multiple of 8 unless last, offset + length within IP_MAXPACKET;
  then reassembly. Whole packets (and reassembled ones) lose every ip_off bit but DF, then
  pf_scrub_ip: no-df, min-ttl, set-tos (the ECN bits kept), random-id.
- IPv6 (pf_normalize_ip6): the header chain is walked (hop-by-hop options checked: an option
  overrunning its header or a jumbo payload option drops, PFRES_NORM; a chain running past the
  packet: PFRES_SHORT); a fragment header sends the packet to reassembly, whose result goes on
  unscrubbed (12.1 returns right after reassembly; later FreeBSD walks the chain again); others
  get min-ttl (hop limit; 12.1 sets no tos on IPv6).
- Reassembly (pf_reassemble, pf_reassemble6, pf_fillup_fragment, pf_isfull_fragment,
  pf_join_fragment): queues keyed by (af, src, dst, id, proto) (proto 0 for IPv6), an empty
  fragment, a non-final one not a multiple of 8, one beyond IP_MAXPACKET, more than 64
  fragments added to one datagram, a non-final fragment without MF, anything past a final
  fragment already seen, a second different end: PFRES_FRAG. Overlaps as 12.1: the new
  fragment's front is cut where the previous one reaches into it (wholly covered: PFRES_FRAG),
  later fragments it reaches into are cut at their front or, wholly covered, thrown away. The
  first fragment's headers head the datagram; IPv4 length and offset fixed (and the header
  checksum, which FreeBSD left to ip_output); IPv6 loses the fragment header, its protocol goes
  into the preceding next-header field, and the largest fragment size, the unfragmentable part
  and the identification ride along in tap_pkt (frag_max, frag_hdrlen, frag_id) for
  pf_refragment6 in pf_tap. Above IP_MAXPACKET once joined: PFRES_SHORT.
- The cache: at most limits[PF_LIMIT_FRAGS] fragments held; when full the oldest datagrams go
  until a tenth is free (pf_flush_fragments), else PFRES_MEMORY. Touching a queue renews its
  time; pf_norm_purge drops those untouched for timeouts[PFTM_FRAG].
- TCP (pf_normalize_tcp without its own rule walk: pf_test's scrub match decides): SYN with RST
  or FIN, neither SYN nor ACK nor RST, FIN/PSH/URG without ACK, a data offset under 5 words:
  PFRES_NORM. Reserved bits cleared, the urgent pointer cleared without URG, and the MSS option
  lowered to max-mss. Checksums incrementally (a partial checksum of a vnet frame is the
  pseudo-header sum only: header edits leave it alone).

random-id: 12.1 calls ip_fillid, which gives random ids only with net.inet.ip.random_id=1 (else
a counter, and 0 for DF packets when net.inet.ip.rfc6864=1); here every scrubbed non-fragment
gets a random id, as pf.conf(5) describes the option.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t
from libc.string cimport memcpy, memset, memcmp
from libc.stdlib cimport malloc, calloc, free
from pfkern.pfvar cimport (pf_rule, PF_LIMIT_FRAGS, PF_LIMIT_MAX, PFTM_MAX, PFRES_MAX, PFRES_FRAG,
                           PFRES_SHORT, PFRES_MEMORY)
from pfkern.pf_tap cimport tap_pkt, tap_if, parse_ip4, parse_ip6

cdef extern from "<sys/types.h>" nogil:
    ctypedef long ssize_t

cdef extern from "<sys/random.h>" nogil:
    ssize_t getrandom(void *, size_t, unsigned int)

# 12.1's scrub fields and flags, read through the header (pfvar.pxd does not declare them)
cdef extern from *:
    """
    #include "net/pfvar.h"
    static inline uint32_t pfn_rule_flag(const struct pf_rule *r) { return r->rule_flag; }
    static inline uint8_t pfn_min_ttl(const struct pf_rule *r) { return r->min_ttl; }
    static inline uint16_t pfn_max_mss(const struct pf_rule *r) { return r->max_mss; }
    static inline uint8_t pfn_set_tos(const struct pf_rule *r) { return r->set_tos; }
    static inline void pfn_set_scrub(struct pf_rule *r, uint32_t flags, uint8_t min_ttl,
                                     uint16_t max_mss, uint8_t tos)
    {
        r->rule_flag = flags; r->min_ttl = min_ttl; r->max_mss = max_mss; r->set_tos = tos;
    }
    """
    uint32_t pfn_rule_flag(const pf_rule *r) nogil
    uint8_t pfn_min_ttl(const pf_rule *r) nogil
    uint16_t pfn_max_mss(const pf_rule *r) nogil
    uint8_t pfn_set_tos(const pf_rule *r) nogil
    void pfn_set_scrub(pf_rule *r, uint32_t flags, uint8_t min_ttl, uint16_t max_mss, uint8_t tos) nogil

cdef extern from "net/pfvar.h" nogil:
    enum:
        PFRULE_NODF
        PFRULE_RANDOMID
        PFRULE_SET_TOS
        PFTM_FRAG
        PFRES_NORM

cdef enum:
    AF_INET = 2
    AF_INET6 = 10
    IP_MAXPACKET = 65535
    IP_DF = 0x4000
    IP_MF = 0x2000
    IP_OFFMASK = 0x1fff
    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_PUSH = 0x08
    TH_ACK = 0x10
    TH_URG = 0x20


# ---- small helpers ----------------------------------------------------------------------------------
cdef inline uint16_t be16(const uint8_t *p) noexcept nogil:
    return (p[0] << 8) | p[1]

cdef inline void put16(uint8_t *p, uint16_t v) noexcept nogil:
    p[0] = v >> 8
    p[1] = v & 0xff

cdef inline uint16_t fold(uint32_t s) noexcept nogil:
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return <uint16_t>s

cdef inline uint32_t sum_be(const uint8_t *p, uint32_t n) noexcept nogil:
    """Big-endian 16-bit words of p (n even) added up."""
    cdef uint32_t s = 0, i = 0
    while i + 1 < n:
        s += (p[i] << 8) | p[i + 1]
        i += 2
    return s

cdef inline void ip4_sum(uint8_t *h, uint32_t hlen) noexcept nogil:
    put16(h + 10, 0)
    put16(h + 10, (~fold(sum_be(h, hlen))) & 0xffff)

cdef inline void set_reason(pf_norm_state *n, int *reason, int r) noexcept nogil:
    """REASON_SET: remember the reason and count it in pf_status."""
    reason[0] = r
    if n.counters != NULL and r < PFRES_MAX:
        n.counters[r] += 1

cdef void l4_patch(tap_pkt *p, uint8_t *th, uint16_t csum_off, uint32_t off, const uint8_t *new,
                   uint32_t cnt) noexcept nogil:
    """Replace cnt bytes at th + off, fixing the transport checksum at th + csum_off over the
    16-bit words (counted from th) they touch, whatever their alignment (RFC 1624 eqn. 3). A
    partial checksum (vnet) covers the pseudo-header only: left alone."""
    cdef uint32_t a = off & ~1u, b = (off + cnt + 1) & ~1u
    cdef uint32_t olds = sum_be(th + a, b - a), news
    cdef uint16_t c
    memcpy(th + off, new, cnt)
    if p.csum_partial:
        return
    news = sum_be(th + a, b - a)
    c = be16(th + csum_off)
    c = (~fold(((~c) & 0xffff) + ((~fold(olds)) & 0xffff) + fold(news))) & 0xffff
    put16(th + csum_off, c)

cdef uint16_t rand16(pf_norm_state *n) noexcept nogil:
    cdef uint16_t v
    cdef unsigned int i
    if n.rnd_pos + 2 > sizeof(n.rnd):
        if getrandom(n.rnd, sizeof(n.rnd), 0) != <ssize_t>sizeof(n.rnd):
            # no entropy to be had: stir what is there (never expected on Linux >= 3.17)
            for i in range(sizeof(n.rnd)):
                n.rnd[i] = <uint8_t>(n.rnd[i] * 167 + 13 + i)
        n.rnd_pos = 0
    v = (n.rnd[n.rnd_pos] << 8) | n.rnd[n.rnd_pos + 1]
    n.rnd_pos += 2
    return v


# ---- the cache ---------------------------------------------------------------------------------------
cdef pf_norm_state *pf_norm_new(unsigned int *limit_frags, uint32_t *timeouts, uint64_t *status_counters) noexcept nogil:
    cdef pf_norm_state *n = <pf_norm_state *>calloc(1, sizeof(pf_norm_state))
    if n == NULL:
        return NULL
    n.rbuf = <uint8_t *>malloc(NF_HEADROOM + IP_MAXPACKET + 128)
    if n.rbuf == NULL:
        free(n)
        return NULL
    n.limits = limit_frags
    n.timeouts = timeouts
    n.counters = status_counters
    n.rnd_pos = sizeof(n.rnd)
    return n

cdef void pf_norm_free(pf_norm_state *n) noexcept nogil:
    if n == NULL:
        return
    while n.oldest != NULL:
        frag_free(n, n.oldest)
    free(n.rbuf)
    free(n)

cdef unsigned int pf_norm_count(pf_norm_state *n) noexcept nogil:
    return n.nfrent

cdef unsigned int pf_norm_purge(pf_norm_state *n, uint32_t now) noexcept nogil:
    """pf_purge_expired_fragments: datagrams untouched for PFTM_FRAG seconds go; how many."""
    cdef unsigned int k = 0
    cdef uint32_t tmo = n.timeouts[PFTM_FRAG] if n.timeouts != NULL else 30
    while n.oldest != NULL and <uint64_t>n.oldest.timeout + tmo <= now:
        frag_free(n, n.oldest)
        k += 1
    return k

cdef inline uint32_t frag_hash(uint8_t af, uint8_t proto, uint32_t id, const uint8_t *src,
                               const uint8_t *dst) noexcept nogil:
    cdef uint32_t h = 2166136261u ^ af ^ (<uint32_t>proto << 8)
    cdef int i, k = 4 if af == AF_INET else 16
    h = (h ^ id) * 16777619u
    for i in range(k):
        h = (h ^ src[i]) * 16777619u
        h = (h ^ dst[i]) * 16777619u
    return h & (NF_HASH - 1)

cdef void frag_unlink_age(pf_norm_state *n, nf_frag *f) noexcept nogil:
    if f.newer != NULL:
        f.newer.older = f.older
    else:
        n.newest = f.older
    if f.older != NULL:
        f.older.newer = f.newer
    else:
        n.oldest = f.newer
    f.newer = f.older = NULL

cdef void frag_push_newest(pf_norm_state *n, nf_frag *f) noexcept nogil:
    f.older = n.newest
    f.newer = NULL
    if n.newest != NULL:
        n.newest.newer = f
    n.newest = f
    if n.oldest == NULL:
        n.oldest = f

cdef void frag_free(pf_norm_state *n, nf_frag *f) noexcept nogil:
    """pf_free_fragment: the datagram's fragments and its queue."""
    cdef nf_frent *fe = f.q
    cdef nf_frent *nx
    cdef uint32_t b = frag_hash(f.af, f.proto, f.id, f.src, f.dst)
    cdef nf_frag **pp = &n.hash[b]
    while fe != NULL:
        nx = fe.next
        free(fe)
        n.nfrent -= 1
        fe = nx
    while pp[0] != NULL and pp[0] != f:
        pp = &pp[0].hnext
    if pp[0] == f:
        pp[0] = f.hnext
    frag_unlink_age(n, f)
    n.nfrag -= 1
    free(f)

cdef void flush_fragments(pf_norm_state *n) noexcept nogil:
    """pf_flush_fragments: the oldest datagrams go until a tenth of the fragments is free."""
    cdef unsigned int goal = n.nfrent * 9 // 10
    while goal < n.nfrent and n.oldest != NULL:
        frag_free(n, n.oldest)

cdef inline bint at_limit(pf_norm_state *n) noexcept nogil:
    cdef unsigned int lim = n.limits[PF_LIMIT_FRAGS] if n.limits != NULL else 5000
    return lim != 0 and n.nfrent >= lim

cdef nf_frent *frent_new(pf_norm_state *n, tap_pkt *p, int *reason) noexcept nogil:
    """pf_create_fragment, with the fragment copied in: a full cache is flushed first; still full
    (or no memory): PFRES_MEMORY."""
    cdef nf_frent *fe
    if at_limit(n):
        flush_fragments(n)
        if at_limit(n):
            set_reason(n, reason, PFRES_MEMORY)
            return NULL
    fe = <nf_frent *>malloc(sizeof(nf_frent) + p.len)
    if fe == NULL:
        flush_fragments(n)
        fe = <nf_frent *>malloc(sizeof(nf_frent) + p.len)
        if fe == NULL:
            set_reason(n, reason, PFRES_MEMORY)
            return NULL
    memset(fe, 0, sizeof(nf_frent))
    fe.pkt = <uint8_t *>(fe + 1)
    memcpy(fe.pkt, p.l3, p.len)
    n.nfrent += 1
    return fe

cdef inline void frent_drop(pf_norm_state *n, nf_frent *fe) noexcept nogil:
    free(fe)
    n.nfrent -= 1

cdef nf_frag *frag_find(pf_norm_state *n, uint8_t af, uint8_t proto, uint32_t id,
                        const uint8_t *src, const uint8_t *dst, uint32_t now) noexcept nogil:
    """pf_find_fragment: the datagram's queue, its time renewed and made the newest."""
    cdef int k = 4 if af == AF_INET else 16
    cdef nf_frag *f = n.hash[frag_hash(af, proto, id, src, dst)]
    while f != NULL:
        if f.id == id and f.af == af and f.proto == proto and memcmp(f.src, src, k) == 0 \
                and memcmp(f.dst, dst, k) == 0:
            f.timeout = now
            frag_unlink_age(n, f)
            frag_push_newest(n, f)
            return f
        f = f.hnext
    return NULL

cdef nf_frag *fillup(pf_norm_state *n, uint8_t af, uint8_t proto, uint32_t id, const uint8_t *src,
                     const uint8_t *dst, nf_frent *fe, int *reason, uint32_t now) noexcept nogil:
    """pf_fillup_fragment (12.1): file fe into its datagram's queue (created if new); NULL with
    the reason set (fe freed) when fe is bad or memory ran out."""
    cdef nf_frag *f
    cdef nf_frent *prev
    cdef nf_frent *after
    cdef nf_frent *last
    cdef nf_frent *x
    cdef uint32_t total, end, cut, b
    cdef int k = 4 if af == AF_INET else 16
    if fe.len == 0 or (fe.mff and (fe.len & 7)) or <uint32_t>fe.off + fe.len > IP_MAXPACKET:
        set_reason(n, reason, PFRES_FRAG)
        frent_drop(n, fe)
        return NULL
    f = frag_find(n, af, proto, id, src, dst, now)
    if f == NULL:
        f = <nf_frag *>calloc(1, sizeof(nf_frag))
        if f == NULL:
            flush_fragments(n)
            f = <nf_frag *>calloc(1, sizeof(nf_frag))
            if f == NULL:
                set_reason(n, reason, PFRES_MEMORY)
                frent_drop(n, fe)
                return NULL
        f.af = af
        f.proto = proto
        f.id = id
        memcpy(f.src, src, k)
        memcpy(f.dst, dst, k)
        f.timeout = now
        f.maxlen = fe.len
        f.entries = 0
        b = frag_hash(af, proto, id, src, dst)
        f.hnext = n.hash[b]
        n.hash[b] = f
        frag_push_newest(n, f)
        n.nfrag += 1
        fe.next = NULL
        f.q = fe
        return f
    if f.entries >= NF_MAX_FRENT:
        set_reason(n, reason, PFRES_FRAG)
        frent_drop(n, fe)
        return NULL
    if fe.len > f.maxlen:
        f.maxlen = fe.len
    last = f.q
    while last.next != NULL:
        last = last.next
    total = <uint32_t>last.off + last.len
    end = <uint32_t>fe.off + fe.len
    # only the final fragment lacks MF; nothing may reach past a final fragment seen, and a
    # second fragment may not end where the datagram ends without being final
    if (end < total and not fe.mff) or \
            (not last.mff and (end > total or (end == total and fe.mff))) or \
            (last.mff and end == total and not fe.mff):
        set_reason(n, reason, PFRES_FRAG)
        frent_drop(n, fe)
        return NULL
    prev = NULL
    after = f.q
    while after != NULL and after.off <= fe.off:
        prev = after
        after = after.next
    if prev != NULL and <uint32_t>prev.off + prev.len > fe.off:
        cut = <uint32_t>prev.off + prev.len - fe.off
        if cut >= fe.len:
            set_reason(n, reason, PFRES_FRAG)
            frent_drop(n, fe)
            return NULL
        fe.off += cut
        fe.len -= cut
        fe.skip += cut
    while after != NULL and <uint32_t>fe.off + fe.len > after.off:
        cut = <uint32_t>fe.off + fe.len - after.off
        if cut < after.len:
            after.off += cut
            after.len -= cut
            after.skip += cut
            break
        x = after.next                      # wholly covered by the new one: lost
        if prev != NULL:
            prev.next = x
        else:
            f.q = x
        frent_drop(n, after)
        after = x
    fe.next = after
    if prev != NULL:
        prev.next = fe
    else:
        f.q = fe
    f.entries += 1
    return f

cdef bint frag_full(nf_frag *f) noexcept nogil:
    """pf_isfull_fragment: the final fragment is there and nothing is missing before it."""
    cdef nf_frent *fe = f.q
    cdef nf_frent *last = f.q
    cdef uint32_t off = 0, total
    while last.next != NULL:
        last = last.next
    if last.mff:
        return False
    total = <uint32_t>last.off + last.len
    while fe != NULL:
        off += fe.len
        if off < total and (fe.next == NULL or fe.next.off != off):
            return False
        fe = fe.next
    return off >= total

cdef uint32_t frag_join(pf_norm_state *n, nf_frag *f, uint32_t hdrlen, uint8_t *dst) noexcept nogil:
    """pf_join_fragment: the first fragment's hdrlen header bytes, then every fragment's data at
    its offset, into dst; the queue is freed. Returns the data length."""
    cdef nf_frent *fe = f.q
    cdef nf_frent *last = f.q
    cdef uint32_t total
    while last.next != NULL:
        last = last.next
    total = <uint32_t>last.off + last.len
    memcpy(dst, fe.pkt, hdrlen)
    while fe != NULL:
        memcpy(dst + hdrlen + fe.off, fe.pkt + fe.hdrlen + fe.skip, fe.len)
        fe = fe.next
    frag_free(n, f)
    return total

cdef inline uint32_t frag_total(nf_frag *f) noexcept nogil:
    cdef nf_frent *last = f.q
    while last.next != NULL:
        last = last.next
    return <uint32_t>last.off + last.len

cdef int repoint(pf_norm_state *n, tap_pkt *p, uint8_t *l3, uint32_t len, int *reason) noexcept nogil:
    """Make p describe the reassembled packet at l3 (the router's own parser), keeping what the
    hook and the router set on the packet (input interface, tag, reroutes)."""
    cdef tap_if *rcvif = p.rcvif
    cdef uint16_t tag = p.pf_tag
    cdef uint8_t hops = p.rt_hops, kind = p.rt_kind
    cdef int16_t ifidx = p.rt_ifidx
    cdef uint8_t addr[16]
    cdef int rc
    memcpy(addr, p.rt_addr, 16)
    if p.af == AF_INET:
        rc = parse_ip4(p, l3, len, rcvif)
    else:
        rc = parse_ip6(p, l3, len, rcvif)
    p.pf_tag = tag
    p.rt_hops = hops
    p.rt_kind = kind
    p.rt_ifidx = ifidx
    memcpy(p.rt_addr, addr, 16)
    if rc != 0:
        set_reason(n, reason, PFRES_NORM)
        return NORM_DROP
    return NORM_PASS


# ---- IPv4 ---------------------------------------------------------------------------------------------
cdef int reassemble4(pf_norm_state *n, tap_pkt *p, int *reason, uint32_t now) noexcept nogil:
    """pf_reassemble: hold the fragment; when the datagram is whole, p becomes it."""
    cdef uint8_t *h = p.l3
    cdef uint32_t hlen = (h[0] & 0x0f) * 4, total
    cdef uint16_t off = be16(h + 6)
    cdef uint8_t *out = n.rbuf + NF_HEADROOM
    cdef nf_frent *fe = frent_new(n, p, reason)
    cdef nf_frag *f
    if fe == NULL:
        return NORM_DROP
    fe.hdrlen = hlen
    fe.len = be16(h + 2) - hlen
    fe.off = (off & IP_OFFMASK) << 3
    fe.mff = 1 if off & IP_MF else 0
    f = fillup(n, AF_INET, h[9], be16(h + 4), h + 12, h + 16, fe, reason, now)
    if f == NULL:
        return NORM_DROP
    if not frag_full(f):
        return NORM_HELD
    hlen = f.q.hdrlen
    total = frag_total(f)
    if hlen + total > IP_MAXPACKET:
        frag_free(n, f)
        set_reason(n, reason, PFRES_SHORT)
        return NORM_DROP
    frag_join(n, f, hlen, out)
    put16(out + 2, hlen + total)
    put16(out + 6, be16(out + 6) & ~(IP_MF | IP_OFFMASK))
    ip4_sum(out, hlen)
    return repoint(n, p, out, hlen + total, reason)

cdef void scrub_ip4(pf_norm_state *n, tap_pkt *p, const pf_rule *r) noexcept nogil:
    """pf_scrub_ip: no-df, min-ttl, set-tos (ECN bits kept), random-id (not for fragments)."""
    cdef uint8_t *h = p.l3
    cdef uint32_t flags = pfn_rule_flag(r)
    cdef uint8_t min_ttl = pfn_min_ttl(r)
    cdef uint16_t off = be16(h + 6)
    cdef bint dirty = False
    if (flags & PFRULE_NODF) and (off & IP_DF):
        off &= ~IP_DF
        put16(h + 6, off)
        dirty = True
    if min_ttl and h[8] < min_ttl:
        h[8] = min_ttl
        p.ttl = min_ttl
        dirty = True
    if flags & PFRULE_SET_TOS:
        h[1] = pfn_set_tos(r) | (h[1] & 0x03)
        dirty = True
    if (flags & PFRULE_RANDOMID) and not (off & ~IP_DF):
        put16(h + 4, rand16(n))
        dirty = True
    if dirty:
        ip4_sum(h, p.l4off)

cdef int norm_ip4(pf_norm_state *n, tap_pkt *p, const pf_rule *r, int *reason, uint32_t now) noexcept nogil:
    """pf_normalize_ip after the rule walk."""
    cdef uint8_t *h = p.l3
    cdef uint32_t hlen = (h[0] & 0x0f) * 4, iplen = be16(h + 2), flen
    cdef uint16_t off = be16(h + 6)
    cdef int rc
    if hlen < 20 or hlen > iplen:
        set_reason(n, reason, PFRES_NORM)
        return NORM_DROP
    if (pfn_rule_flag(r) & PFRULE_NODF) and (off & IP_DF):
        off &= ~IP_DF
        put16(h + 6, off)
        ip4_sum(h, hlen)
    if off & (IP_MF | IP_OFFMASK):
        # a fragment: DF (unless no-df cleared it), unaligned or oversized ones are bad
        flen = iplen - hlen
        if (off & IP_DF) or ((off & IP_MF) and (flen & 7)) or \
                ((<uint32_t>(off & IP_OFFMASK) << 3) + flen > IP_MAXPACKET):
            set_reason(n, reason, PFRES_FRAG)
            return NORM_DROP
        rc = reassemble4(n, p, reason, now)
        if rc != NORM_PASS:
            return rc
        h = p.l3
        off = be16(h + 6)
    if off & ~IP_DF:                        # only DF may remain
        put16(h + 6, off & IP_DF)
        ip4_sum(h, p.l4off)
    scrub_ip4(n, p, r)
    return norm_tcp(n, p, r, reason)


# ---- IPv6 ---------------------------------------------------------------------------------------------
cdef int reassemble6(pf_norm_state *n, tap_pkt *p, uint32_t hdrlen, uint32_t extoff, int *reason,
                     uint32_t now) noexcept nogil:
    """pf_reassemble6: hdrlen counts the headers up to and with the fragment header; extoff is the
    last extension header before it (0: the IPv6 header names it)."""
    cdef uint8_t *h = p.l3
    cdef uint8_t *fh = h + hdrlen - 8
    cdef uint8_t *out = n.rbuf + NF_HEADROOM
    cdef uint32_t id, total, unfrag, maxlen
    cdef uint16_t offlg = be16(fh + 2)
    cdef uint8_t proto
    cdef nf_frent *fe
    cdef nf_frag *f
    cdef nf_frent *first
    if 40 + be16(h + 4) < hdrlen:
        set_reason(n, reason, PFRES_SHORT)
        return NORM_DROP
    fe = frent_new(n, p, reason)
    if fe == NULL:
        return NORM_DROP
    memcpy(&id, fh + 4, 4)
    fe.hdrlen = hdrlen
    fe.extoff = extoff
    fe.len = 40 + be16(h + 4) - hdrlen
    fe.off = offlg & 0xfff8
    fe.mff = offlg & 1
    f = fillup(n, AF_INET6, 0, id, h + 8, h + 24, fe, reason, now)
    if f == NULL:
        return NORM_DROP
    if not frag_full(f):
        return NORM_HELD
    first = f.q
    unfrag = first.hdrlen - 8
    extoff = first.extoff
    proto = first.pkt[unfrag]               # the first fragment's fragment header names it
    maxlen = f.maxlen
    total = frag_total(f)
    if unfrag - 40 + total > IP_MAXPACKET:
        frag_free(n, f)
        set_reason(n, reason, PFRES_SHORT)
        return NORM_DROP
    # the unfragmentable part, then the data where the fragment header was
    frag_join(n, f, unfrag, out)
    put16(out + 4, unfrag - 40 + total)
    if extoff:
        out[extoff] = proto
    else:
        out[6] = proto
    if repoint(n, p, out, unfrag + total, reason) != NORM_PASS:
        return NORM_DROP
    p.frag_max = maxlen
    p.frag_hdrlen = unfrag
    p.frag_id = id
    return NORM_PASS

cdef int norm_ip6(pf_norm_state *n, tap_pkt *p, const pf_rule *r, int *reason, uint32_t now) noexcept nogil:
    """pf_normalize_ip6 (12.1) after the rule walk."""
    cdef uint8_t *h = p.l3
    cdef uint32_t plen = be16(h + 4), len = p.len, off = 40, extoff = 0, optend, ooff
    cdef uint8_t proto = h[6], otype, min_ttl
    cdef int rc
    if plen == 0 or len > 40 + IP_MAXPACKET:
        set_reason(n, reason, PFRES_NORM)
        return NORM_DROP
    while True:
        if proto == 44:                                 # fragment
            if off + 8 > len:
                set_reason(n, reason, PFRES_SHORT)
                return NORM_DROP
            rc = reassemble6(n, p, off + 8, extoff, reason, now)
            if rc != NORM_PASS:
                return rc
            # 12.1 returns the reassembled packet as it is (no min-ttl); TCP checks still apply
            return norm_tcp(n, p, r, reason)
        elif proto == 51 or proto == 43 or proto == 60:     # AH, routing, destination options
            if off + 2 > len:
                set_reason(n, reason, PFRES_SHORT)
                return NORM_DROP
            extoff = off
            off += (h[off + 1] + 2) * 4 if proto == 51 else (h[off + 1] + 1) * 8
            proto = h[extoff]
        elif proto == 0:                                # hop-by-hop: its options checked
            if off + 2 > len:
                set_reason(n, reason, PFRES_SHORT)
                return NORM_DROP
            extoff = off
            optend = off + (h[off + 1] + 1) * 8
            ooff = off + 2
            while ooff < optend:
                if ooff + 1 > len:
                    set_reason(n, reason, PFRES_SHORT)
                    return NORM_DROP
                otype = h[ooff]
                if otype == 0:                          # Pad1
                    ooff += 1
                    continue
                if ooff + 2 > len:
                    set_reason(n, reason, PFRES_SHORT)
                    return NORM_DROP
                if ooff + 2 + h[ooff + 1] > optend or otype == 0xc2:   # overrun / jumbo payload
                    set_reason(n, reason, PFRES_NORM)
                    return NORM_DROP
                ooff += 2 + h[ooff + 1]
            off = optend
            proto = h[extoff]
        else:
            break
    if 40 + plen > len:
        set_reason(n, reason, PFRES_SHORT)
        return NORM_DROP
    min_ttl = pfn_min_ttl(r)                            # pf_scrub_ip6
    if min_ttl and h[7] < min_ttl:
        h[7] = min_ttl
        p.ttl = min_ttl
    return norm_tcp(n, p, r, reason)


# ---- TCP ----------------------------------------------------------------------------------------------
cdef int norm_tcp(pf_norm_state *n, tap_pkt *p, const pf_rule *r, int *reason) noexcept nogil:
    """pf_normalize_tcp's checks and edits, and pf_normalize_tcpopt's MSS clamp."""
    cdef uint8_t *th = p.l4
    cdef uint8_t flags
    cdef uint8_t b[2]
    cdef uint32_t thoff, cnt, optlen, i
    cdef uint16_t max_mss = pfn_max_mss(r)
    if p.proto != 6 or p.frag or th == NULL or not p.l4ok:
        return NORM_PASS
    flags = th[13]
    if flags & TH_SYN:
        if flags & (TH_RST | TH_FIN):
            set_reason(n, reason, PFRES_NORM)
            return NORM_DROP
    elif not (flags & (TH_ACK | TH_RST)):
        set_reason(n, reason, PFRES_NORM)
        return NORM_DROP
    if not (flags & TH_ACK) and (flags & (TH_FIN | TH_PUSH | TH_URG)):
        set_reason(n, reason, PFRES_NORM)
        return NORM_DROP
    thoff = (th[12] >> 4) * 4
    if thoff < 20:
        set_reason(n, reason, PFRES_NORM)
        return NORM_DROP
    if th[12] & 0x0f:                                   # th_x2
        b[0] = th[12] & 0xf0
        l4_patch(p, th, 16, 12, b, 1)
    if not (flags & TH_URG) and (th[18] | th[19]):
        b[0] = b[1] = 0
        l4_patch(p, th, 16, 18, b, 2)
    if max_mss == 0 or thoff <= 20 or p.l4off + thoff > p.len:
        return NORM_PASS
    i = 20
    cnt = thoff - 20
    while cnt > 0:
        if th[i] == 0:                                  # EOL
            break
        if th[i] == 1:                                  # NOP
            optlen = 1
        else:
            if cnt < 2:
                break
            optlen = th[i + 1]
            if optlen < 2 or optlen > cnt:
                break
            if th[i] == 2 and optlen >= 4 and be16(th + i + 2) > max_mss:
                put16(b, max_mss)
                l4_patch(p, th, 16, i + 2, b, 2)
        cnt -= optlen
        i += optlen
    return NORM_PASS


# ---- the entry point -----------------------------------------------------------------------------------
cdef int pf_norm_packet(pf_norm_state *n, tap_pkt *p, int dir, const pf_rule *r, int *reason, uint32_t now) noexcept nogil:
    if p.af == AF_INET:
        return norm_ip4(n, p, r, reason, now)
    return norm_ip6(n, p, r, reason, now)


# ---- for the tests: raw IP packets through pf_norm_packet ------------------------------------------------
cdef class _NormForTests:
    """A fragment cache of its own and a scrub rule filled from Python: feed(packet) runs
    pf_norm_packet on an IPv4/IPv6 packet (bytes, from its IP header) and returns (verdict,
    reason, packet after, info) — the packet is None unless the verdict is NORM_PASS."""
    cdef pf_norm_state *n
    cdef pf_rule *r
    cdef unsigned int limits[PF_LIMIT_MAX]
    cdef uint32_t timeouts[PFTM_MAX]
    cdef uint64_t cnt[PFRES_MAX]
    cdef uint8_t *buf

    def __cinit__(self):
        memset(self.limits, 0, sizeof(self.limits))
        memset(self.timeouts, 0, sizeof(self.timeouts))
        memset(self.cnt, 0, sizeof(self.cnt))
        self.limits[PF_LIMIT_FRAGS] = 5000
        self.timeouts[PFTM_FRAG] = 30
        self.n = pf_norm_new(self.limits, self.timeouts, self.cnt)
        self.r = <pf_rule *>calloc(1, sizeof(pf_rule))
        self.buf = <uint8_t *>malloc(NF_HEADROOM + IP_MAXPACKET + 128)
        if self.n == NULL or self.r == NULL or self.buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        pf_norm_free(self.n)
        free(self.r)
        free(self.buf)

    def rule(self, rule_flag=0, min_ttl=0, max_mss=0, set_tos=0):
        pfn_set_scrub(self.r, rule_flag, min_ttl, max_mss, set_tos)

    def set_limit(self, frags):
        self.limits[PF_LIMIT_FRAGS] = frags

    def set_timeout(self, seconds):
        self.timeouts[PFTM_FRAG] = seconds

    def feed(self, bytes packet, int now=1, int dir=1, bint csum_partial=False):
        cdef tap_pkt p
        cdef int reason = 0, rc
        cdef uint32_t n = len(packet)
        if n > IP_MAXPACKET + 40:
            raise ValueError("packet too long")
        memcpy(self.buf + NF_HEADROOM, <const char *>packet, n)
        memset(&p, 0, sizeof(p))
        if n and (packet[0] >> 4) == 4:
            rc = parse_ip4(&p, self.buf + NF_HEADROOM, n, NULL)
        else:
            rc = parse_ip6(&p, self.buf + NF_HEADROOM, n, NULL)
        if rc != 0:
            raise ValueError(f"the router's parser refuses this packet ({-rc})")
        p.csum_partial = csum_partial
        rc = pf_norm_packet(self.n, &p, dir, self.r, &reason, now)
        out = None
        if rc == NORM_PASS:
            out = bytes((<char *>p.l3)[:p.len])
        info = dict(len=p.len, l4off=p.l4off, proto=p.proto, ttl=p.ttl, frag=p.frag, l4ok=p.l4ok,
                    sport=p.sport, dport=p.dport, tcp_flags=p.tcp_flags, icmp_type=p.icmp_type,
                    frag_max=p.frag_max, frag_hdrlen=p.frag_hdrlen,
                    frag_id=(<char *>&p.frag_id)[:4],
                    reassembled=p.l3 == self.n.rbuf + NF_HEADROOM,
                    headroom=<long>(p.l3 - self.n.rbuf))
        return rc, reason, out, info

    def purge(self, int now):
        return pf_norm_purge(self.n, now)

    def count(self):
        return pf_norm_count(self.n)

    def queues(self):
        return self.n.nfrag

    def counters(self):
        return [self.cnt[i] for i in range(PFRES_MAX)]
