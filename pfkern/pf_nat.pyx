# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Address translation arithmetic for the datapath (see pf_nat.pxd): pools (pf_map_addr), source
port allocation (pf_get_sport) and in-place packet rewriting with incremental checksums
(pf_change_ap / pf_change_a / pf_change_icmp). pf_test decides when; this module does the sums."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memcmp, memset
from pfkern.pfvar cimport *
from pfkern.pfvar_priv cimport pf_state_key_cmp
from pfkern.pf_state cimport pf_state_key_fill, pf_find_state_all
from pfkern.pf_table cimport pfr_dp_pool_next

cdef extern from "<arpa/inet.h>" nogil:
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)

cdef enum:
    AF_INET = 2
    AF_INET6 = 10
    IPPROTO_ICMP = 1
    IPPROTO_TCP = 6
    IPPROTO_UDP = 17
    IPPROTO_ICMPV6 = 58


# ---- checksums -------------------------------------------------------------------------------------
cdef inline uint16_t ld16(const uint8_t *p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v

cdef inline void st16(uint8_t *p, uint16_t v) noexcept nogil:
    memcpy(p, &v, 2)

cdef uint32_t csum_words(const uint8_t *data, uint32_t n) noexcept nogil:
    """The 32-bit sum of n bytes taken as 16-bit words in memory order (an odd tail padded)."""
    cdef uint64_t s = 0
    cdef uint32_t i = 0
    cdef uint8_t tail[2]
    while i + 1 < n:
        s += ld16(data + i)
        i += 2
    if i < n:
        tail[0] = data[i]
        tail[1] = 0
        s += ld16(tail)
    while s >> 32:
        s = (s & 0xffffffffu) + (s >> 32)
    return <uint32_t>s

cdef uint16_t csum_fold(uint32_t sum) noexcept nogil:
    sum = (sum & 0xffff) + (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16)
    return <uint16_t>sum

cdef inline uint16_t fix_full(uint16_t c, uint32_t old_sum, uint32_t new_sum) noexcept nogil:
    """RFC 1624 eqn. 3 for a complemented checksum: C' = ~(~C + ~old + new)."""
    cdef uint32_t x = (<uint16_t>~c) + (<uint16_t>~csum_fold(old_sum)) + csum_fold(new_sum)
    return <uint16_t>~csum_fold(x)

cdef inline uint16_t fix_plain(uint16_t c, uint32_t old_sum, uint32_t new_sum) noexcept nogil:
    """The same for a partial checksum (a plain, uncomplemented pseudo-header sum)."""
    cdef uint32_t x = c + (<uint16_t>~csum_fold(old_sum)) + csum_fold(new_sum)
    return csum_fold(x)


# ---- random ------------------------------------------------------------------------------------------
cdef uint32_t nat_rand(uint64_t *rng) noexcept nogil:
    cdef uint64_t x = rng[0]
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    rng[0] = x
    return <uint32_t>(x >> 32)


# ---- pools -------------------------------------------------------------------------------------------
cdef void nat_poolmask(pf_addr *naddr, const pf_addr *raddr, const pf_addr *rmask,
                       const pf_addr *saddr, uint8_t af) noexcept nogil:
    cdef int i, n = 1 if af == AF_INET else 4
    for i in range(n):
        naddr.addr32[i] = (raddr.addr32[i] & rmask.addr32[i]) | (saddr.addr32[i] & ~rmask.addr32[i])

cdef inline bint azero(const pf_addr *a, uint8_t af) noexcept nogil:
    if af == AF_INET:
        return a.addr32[0] == 0
    return (a.addr32[0] | a.addr32[1] | a.addr32[2] | a.addr32[3]) == 0

cdef inline bint aeq(const pf_addr *a, const pf_addr *b, uint8_t af) noexcept nogil:
    if af == AF_INET:
        return a.addr32[0] == b.addr32[0]
    return memcmp(a, b, 16) == 0

cdef inline void acpy(pf_addr *d, const pf_addr *s, uint8_t af) noexcept nogil:
    if af == AF_INET:
        d.addr32[0] = s.addr32[0]
    else:
        memcpy(d, s, 16)

cdef void ainc(pf_addr *a, uint8_t af) noexcept nogil:
    """PF_AINC: the next address (big-endian increment with carry)."""
    cdef int i
    if af == AF_INET:
        a.addr32[0] = htonl(ntohl(a.addr32[0]) + 1)
        return
    for i in range(3, -1, -1):
        a.addr32[i] = htonl(ntohl(a.addr32[i]) + 1)
        if a.addr32[i] != 0:
            break

cdef bint in_net(const pf_addr *a, const pf_addr *net, const pf_addr *mask, uint8_t af) noexcept nogil:
    cdef int i, n = 1 if af == AF_INET else 4
    for i in range(n):
        if (a.addr32[i] & mask.addr32[i]) != (net.addr32[i] & mask.addr32[i]):
            return False
    return True

cdef inline void jmix(uint32_t *a, uint32_t *b, uint32_t *c) noexcept nogil:
    # Bob Jenkins' lookup2 mix, as pf's source-hash pool uses
    a[0] -= b[0]; a[0] -= c[0]; a[0] ^= c[0] >> 13
    b[0] -= c[0]; b[0] -= a[0]; b[0] ^= a[0] << 8
    c[0] -= a[0]; c[0] -= b[0]; c[0] ^= b[0] >> 13
    a[0] -= b[0]; a[0] -= c[0]; a[0] ^= c[0] >> 12
    b[0] -= c[0]; b[0] -= a[0]; b[0] ^= a[0] << 16
    c[0] -= a[0]; c[0] -= b[0]; c[0] ^= b[0] >> 5
    a[0] -= b[0]; a[0] -= c[0]; a[0] ^= c[0] >> 3
    b[0] -= c[0]; b[0] -= a[0]; b[0] ^= a[0] << 10
    c[0] -= a[0]; c[0] -= b[0]; c[0] ^= b[0] >> 15

cdef void src_hash(const pf_addr *s, pf_addr *h, const uint32_t *key, uint8_t af) noexcept nogil:
    """pf_hash: the source address hashed with the pool's key."""
    cdef uint32_t a = 0x9e3779b9u, b = 0x9e3779b9u, c = key[0]
    if af == AF_INET:
        a += s.addr32[0]
        b += key[1]
        jmix(&a, &b, &c)
        h.addr32[0] = c + key[2]
        return
    a += s.addr32[0]; b += s.addr32[2]
    jmix(&a, &b, &c)
    h.addr32[0] = c
    a += s.addr32[1]; b += s.addr32[3]; c += key[1]
    jmix(&a, &b, &c)
    h.addr32[1] = c
    a += s.addr32[2]; b += s.addr32[1]; c += key[2]
    jmix(&a, &b, &c)
    h.addr32[2] = c
    a += s.addr32[3]; b += s.addr32[0]; c += key[3]
    jmix(&a, &b, &c)
    h.addr32[3] = c

cdef inline bint usable(const cf_pooladdr *pa, uint8_t af) noexcept nogil:
    return pa.kind == NP_ADDR and (pa.af == 0 or pa.af == af)

cdef int nat_map_addr(cf_pool *pool, uint8_t af, const pf_addr *saddr, pf_addr *naddr,
                      pf_addr *init_addr, uint64_t *rng, const pf_addr *sticky) noexcept nogil:
    cdef cf_pooladdr *cur
    cdef pf_addr h
    cdef int k, start
    cdef bint ok
    cdef uint8_t kind = pool.opts & PF_POOL_TYPEMASK
    if sticky != NULL and not azero(sticky, af):
        pool.last = -1
        acpy(naddr, sticky, af)
        if init_addr != NULL and azero(init_addr, af):
            acpy(init_addr, naddr, af)      # a port search on it ends when it is full
        return 0
    if pool.n == 0:
        return 1
    if kind != PF_POOL_ROUNDROBIN:
        # one address (the current entry, or the first of this family when it is of the other)
        cur = &pool.a[pool.cur]
        if not usable(cur, af):
            cur = NULL
            for k in range(pool.n):
                if usable(&pool.a[k], af):
                    cur = &pool.a[k]
                    break
            if cur == NULL:
                return 1
        pool.last = <int>(cur - pool.a)
        if kind == PF_POOL_NONE:
            acpy(naddr, &cur.addr, af)
        elif kind == PF_POOL_BITMASK:
            nat_poolmask(naddr, &cur.addr, &cur.mask, saddr, af)
        elif kind == PF_POOL_RANDOM:
            if init_addr != NULL and azero(init_addr, af):
                if af == AF_INET:
                    pool.counter.addr32[0] = htonl(nat_rand(rng))
                else:
                    for k in range(3, -1, -1):
                        if cur.mask.addr32[k] == 0xffffffffu:
                            break
                        pool.counter.addr32[k] = nat_rand(rng)
                nat_poolmask(naddr, &cur.addr, &cur.mask, &pool.counter, af)
                acpy(init_addr, naddr, af)
            else:
                ainc(&pool.counter, af)
                nat_poolmask(naddr, &cur.addr, &cur.mask, &pool.counter, af)
        elif kind == PF_POOL_SRCHASH:
            memset(&h, 0, sizeof(h))
            src_hash(saddr, &h, pool.key, af)
            nat_poolmask(naddr, &cur.addr, &cur.mask, &h, af)
        else:
            return 1
        return 0
    # round robin: the counter walks the current entry's network (or table), then the next entry's
    cur = &pool.a[pool.cur]
    if cur.kind == NP_TABLE:
        ok = pfr_dp_pool_next(cur.tbl, &pool.tblidx, &pool.counter, af) == 0
    else:
        ok = usable(cur, af) and in_net(&pool.counter, &cur.addr, &cur.mask, af)
    if not ok:
        start = pool.cur
        while True:
            pool.cur = (pool.cur + 1) % pool.n
            cur = &pool.a[pool.cur]
            if cur.kind == NP_TABLE:
                pool.tblidx = -1
                if pfr_dp_pool_next(cur.tbl, &pool.tblidx, &pool.counter, af) == 0:
                    break
            elif usable(cur, af):
                memset(&pool.counter, 0, sizeof(pf_addr))
                acpy(&pool.counter, &cur.addr, af)
                break
            if pool.cur == start:
                return 1
    pool.last = pool.cur
    acpy(naddr, &pool.counter, af)
    if init_addr != NULL and azero(init_addr, af):
        acpy(init_addr, naddr, af)
    ainc(&pool.counter, af)
    return 0


cdef int nat_get_sport(pf_state_table *t, cf_pool *pool, uint8_t af, uint8_t proto,
                       const pf_addr *saddr, uint16_t sport, const pf_addr *daddr, uint16_t dport,
                       pf_addr *naddr, uint16_t *nport, uint16_t low, uint16_t high,
                       uint64_t *rng, const pf_addr *sticky) noexcept nogil:
    cdef pf_state_key_cmp key
    cdef pf_addr init_addr
    cdef uint32_t tmp, cut, lo, hi
    cdef uint8_t kind = pool.opts & PF_POOL_TYPEMASK
    memset(&init_addr, 0, sizeof(init_addr))
    if nat_map_addr(pool, af, saddr, naddr, &init_addr, rng, sticky):
        return 1
    if proto == IPPROTO_ICMP:
        low, high = 1, 65535
    while True:
        # a candidate is free when no state holds the reply's wire key; ICMPv6 ids are kept
        # (12.1's pf_get_sport searches ids for ICMP only)
        if not (proto == IPPROTO_TCP or proto == IPPROTO_UDP or proto == IPPROTO_ICMP):
            pf_state_key_fill(&key, af, proto, daddr, naddr, dport, sport)
            if pf_find_state_all(t, &key, PF_IN, NULL, 0) == 0:
                nport[0] = sport
                return 0
        elif low == 0 and high == 0:            # static-port
            pf_state_key_fill(&key, af, proto, daddr, naddr, dport, sport)
            if pf_find_state_all(t, &key, PF_IN, NULL, 0) == 0:
                nport[0] = sport
                return 0
        elif low == high:
            pf_state_key_fill(&key, af, proto, daddr, naddr, dport, htons(low))
            if pf_find_state_all(t, &key, PF_IN, NULL, 0) == 0:
                nport[0] = htons(low)
                return 0
        else:
            lo, hi = (low, high) if low < high else (high, low)
            cut = nat_rand(rng) % (1 + hi - lo) + lo
            tmp = cut
            while tmp <= hi:
                pf_state_key_fill(&key, af, proto, daddr, naddr, dport, htons(<uint16_t>tmp))
                if pf_find_state_all(t, &key, PF_IN, NULL, 0) == 0:
                    nport[0] = htons(<uint16_t>tmp)
                    return 0
                tmp += 1
            tmp = cut - 1
            while tmp >= lo and tmp <= 0xffff:
                pf_state_key_fill(&key, af, proto, daddr, naddr, dport, htons(<uint16_t>tmp))
                if pf_find_state_all(t, &key, PF_IN, NULL, 0) == 0:
                    nport[0] = htons(<uint16_t>tmp)
                    return 0
                if tmp == 0:
                    break
                tmp -= 1
        if kind == PF_POOL_RANDOM or kind == PF_POOL_ROUNDROBIN:
            if nat_map_addr(pool, af, saddr, naddr, &init_addr, rng, sticky):
                return 1
            if aeq(&init_addr, naddr, af):
                return 1                        # every address of the pool tried
        else:
            return 1


# ---- rewriting -----------------------------------------------------------------------------------------
cdef inline int l4_csum_off(uint8_t proto) noexcept nogil:
    if proto == IPPROTO_TCP:
        return 16
    if proto == IPPROTO_UDP:
        return 6
    if proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
        return 2
    return -1

cdef void nat_rewrite(tap_pkt *p, bint src, const pf_addr *na, uint16_t np) noexcept nogil:
    cdef uint8_t *a = p.src if src else p.dst
    cdef uint32_t n = 4 if p.af == AF_INET else 16
    cdef uint32_t olds = csum_words(a, n), news = csum_words(<const uint8_t *>na, n)
    cdef uint8_t *l4 = p.l4
    cdef uint8_t proto = p.proto
    cdef int co
    cdef uint16_t c, oldp
    cdef bint partial, has_sum
    if p.af == AF_INET:
        st16(p.l3 + 10, fix_full(ld16(p.l3 + 10), olds, news))
    memcpy(a, na, n)
    if l4 == NULL or not p.l4ok:
        return                                  # a later fragment: addresses only
    co = l4_csum_off(proto)
    if co < 0:
        return
    partial = p.csum_partial and (proto == IPPROTO_TCP or proto == IPPROTO_UDP)
    c = ld16(l4 + co)
    has_sum = not (proto == IPPROTO_UDP and p.af == AF_INET and c == 0 and not partial)
    # the pseudo-header holds the addresses (not for ICMPv4)
    if has_sum and proto != IPPROTO_ICMP:
        c = fix_plain(c, olds, news) if partial else fix_full(c, olds, news)
    if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
        oldp = ld16(l4 + (0 if src else 2))
        if oldp != np:
            st16(l4 + (0 if src else 2), np)
            if has_sum and not partial:         # ports are data: a partial sum adds them later
                c = fix_full(c, oldp, np)
        if src:
            p.sport = np
        else:
            p.dport = np
    else:                                       # ICMP / ICMPv6 query: the id
        oldp = ld16(l4 + 4)
        if oldp != np:
            st16(l4 + 4, np)
            c = fix_full(c, oldp, np)
        p.sport = p.dport = np
    if has_sum:
        if proto == IPPROTO_UDP and c == 0 and not partial:
            c = 0xffff
        st16(l4 + co, c)


cdef void nat_rewrite_icmp_error(tap_pkt *p, uint8_t *ip2, uint8_t proto2, uint32_t off2,
                                 uint32_t avail, bint inner_src, const pf_addr *na,
                                 uint16_t np) noexcept nogil:
    cdef bint v4 = p.af == AF_INET
    cdef uint32_t n = 4 if v4 else 16
    cdef uint8_t *ia = ip2 + ((12 if inner_src else 16) if v4 else (8 if inner_src else 24))
    cdef uint8_t *oa = p.dst if inner_src else p.src
    cdef uint32_t olds = csum_words(ia, n), news = csum_words(<const uint8_t *>na, n)
    cdef uint32_t oolds = csum_words(oa, n)
    cdef uint8_t *h2 = ip2 + off2
    cdef uint16_t c, oldp
    cdef uint32_t sum, mlen
    # the quoted packet: address, its IPv4 header checksum, port / echo id, UDP checksum
    if v4:
        st16(ip2 + 10, fix_full(ld16(ip2 + 10), olds, news))
    memcpy(ia, na, n)
    if (proto2 == IPPROTO_TCP or proto2 == IPPROTO_UDP) and off2 + 4 <= avail:
        oldp = ld16(h2 + (0 if inner_src else 2))
        st16(h2 + (0 if inner_src else 2), np)
        if proto2 == IPPROTO_UDP and off2 + 8 <= avail:
            c = ld16(h2 + 6)
            if c != 0 or not v4:
                c = fix_full(fix_full(c, olds, news), oldp, np)
                st16(h2 + 6, 0xffff if c == 0 else c)
    elif (proto2 == IPPROTO_ICMP or proto2 == IPPROTO_ICMPV6) and off2 + 8 <= avail:
        st16(h2 + 4, np)
    # the error itself: the outer address, then its checksum over the whole message
    if v4:
        st16(p.l3 + 10, fix_full(ld16(p.l3 + 10), oolds, news))
    memcpy(oa, na, n)
    mlen = p.len - p.l4off
    st16(p.l4 + 2, 0)
    sum = csum_words(p.l4, mlen)
    if not v4:                                  # ICMPv6 sums the pseudo-header too
        sum = <uint32_t>csum_fold(sum) + csum_fold(csum_words(p.src, 16)) + \
            csum_fold(csum_words(p.dst, 16)) + htons(<uint16_t>(mlen >> 16)) + \
            htons(<uint16_t>mlen) + htons(IPPROTO_ICMPV6)
    st16(p.l4 + 2, <uint16_t>~csum_fold(sum))
