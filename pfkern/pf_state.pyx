# cython: language_level=3
"""The state table (FreeBSD pf.c "state table stuff", if_pfsync.c's import, pf_ioctl.c's export).

States live in malloc'd C structs (pfvar_priv.pxd) reachable without the GIL: a key hash whose keys
list the states using them as wire and as stack key, an id hash, and one list of every state in
insertion order. The C functions declared in pf_state.pxd are the datapath's API; the StateTable
methods are the control plane's (ioctls), each taking the table lock around its C calls.
"""
import os

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.errno cimport EEXIST, ENOMEM
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy, memcmp, strncpy, strncmp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME
from pfkern.pfvar cimport pf_addr, pf_rule, PF_IN, PF_OUT, PFTM_MAX, PF_LIMIT_STATES, PF_LIMIT_SRC_NODES
from pfkern.pfvar_priv cimport *
from pfkern.pf cimport PfCore

from pfkern.errors import Exists, Invalid, NoMemory, NotFound
from pfkern.pf_util cimport af_in, cstr

cdef extern from "<stddef.h>":
    # offsets inside the packed pfsync_state, for copies that must not take packed addresses
    enum:
        KEYS_OFF "offsetof(struct pfsync_state, key)"
        PACKETS_OFF "offsetof(struct pfsync_state, packets)"
        BYTES_OFF "offsetof(struct pfsync_state, bytes)"
        NBSD_ID_OFF "offsetof(struct pfsync_state_nbsd, id)"
        NBSD_LAN_OFF "offsetof(struct pfsync_state_nbsd, lan)"
        NBSD_GWY_OFF "offsetof(struct pfsync_state_nbsd, gwy)"
        NBSD_EXT_OFF "offsetof(struct pfsync_state_nbsd, ext)"
        NBSD_RT_ADDR_OFF "offsetof(struct pfsync_state_nbsd, rt_addr)"
        NBSD_PACKETS_OFF "offsetof(struct pfsync_state_nbsd, packets)"
        NBSD_BYTES_OFF "offsetof(struct pfsync_state_nbsd, bytes)"

cdef enum:
    DEF_BUCKETS = 1024      # initial hash buckets; each hash doubles past one item per bucket
    POOL_CHUNK = 256        # items per malloc'd chunk
    PF_SIZEOF_PFSYNC = 242
    PF_SIZEOF_STATE_OBSD37 = 368
    PF_SIZEOF_PFSYNC_NBSD = 240
    AF_INET6_OBSD = 24          # OpenBSD's and NetBSD's AF_INET6, accepted from their structs
    PFSTATE_NOSYNC_OBSD37 = 0x01    # OpenBSD 3.7 pf_state.sync_flags
    IPPROTO_TCP_ = 6

cdef char FLOATING_NAME[16]
memset(FLOATING_NAME, 0, 16)
memcpy(FLOATING_NAME, b"all", 3)     # the kif FreeBSD gives floating states (V_pfi_all)


# --- clock, hashing, pools ------------------------------------------------------------------

cdef uint32_t pf_uptime() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint32_t>ts.tv_sec


cdef inline uint64_t _word(const void *p, int i) noexcept nogil:
    cdef uint64_t w
    memcpy(&w, <const char *>p + 8 * i, 8)
    return w


cdef inline uint64_t _fmix(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= <uint64_t>0xff51afd7ed558ccd
    h ^= h >> 33
    h *= <uint64_t>0xc4ceb9fe1a85ec53
    h ^= h >> 33
    return h


cdef inline uint64_t _key_hash(const pf_state_table *t, const pf_state_key_cmp *k) noexcept nogil:
    # 40 bytes = 5 words (sizeof checked at import)
    cdef uint64_t h = t.seed
    cdef int i
    for i in range(5):
        h = (h ^ _word(k, i)) * <uint64_t>0x9e3779b97f4a7c15
        h ^= h >> 29
    return _fmix(h)


cdef inline uint64_t _id_hash(const pf_state_table *t, uint64_t id, uint32_t creatorid) noexcept nogil:
    return _fmix(t.seed ^ id ^ (<uint64_t>creatorid << 17))


cdef inline uint64_t _src_hash(const pf_state_table *t, uint8_t af, const pf_addr *a,
                               uint32_t rule) noexcept nogil:
    return _fmix((t.seed + af) ^ _word(a, 0) ^ _fmix(_word(a, 1) ^ rule))


cdef void _pool_init(pf_mempool *p, size_t size) noexcept nogil:
    memset(p, 0, sizeof(pf_mempool))
    p.size = (size + 15) & ~(<size_t>15)
    p.per_chunk = POOL_CHUNK


cdef void *_pool_get(pf_mempool *p) noexcept nogil:
    cdef char *chunk
    cdef char *item
    cdef size_t i
    if p.free == NULL:
        chunk = <char *>malloc(16 + p.size * p.per_chunk)
        if chunk == NULL:
            return NULL
        (<void **>chunk)[0] = p.chunks
        p.chunks = chunk
        for i in range(p.per_chunk):
            item = chunk + 16 + i * p.size
            (<void **>item)[0] = p.free
            p.free = item
    item = <char *>p.free
    p.free = (<void **>item)[0]
    p.used += 1
    memset(item, 0, p.size)
    return item


cdef void _pool_put(pf_mempool *p, void *item) noexcept nogil:
    (<void **>item)[0] = p.free
    p.free = item
    p.used -= 1


cdef void _pool_destroy(pf_mempool *p) noexcept nogil:
    cdef void *c = p.chunks
    cdef void *n
    while c != NULL:
        n = (<void **>c)[0]
        free(c)
        c = n
    p.chunks = p.free = NULL


cdef void **_grow(void **buckets, size_t *mask, size_t count) noexcept nogil:
    """New bucket array of twice the size when count passed the bucket count (NULL: keep)."""
    if count <= mask[0] + 1:
        return NULL
    return <void **>calloc((mask[0] + 1) * 2, sizeof(void *))


# --- keys -----------------------------------------------------------------------------------

cdef void pf_state_key_fill(pf_state_key_cmp *k, uint8_t af, uint8_t proto, const pf_addr *a0,
                            const pf_addr *a1, uint16_t p0, uint16_t p1) noexcept nogil:
    cdef size_t n = 4 if af == AF_INET else sizeof(pf_addr)
    memset(k, 0, sizeof(pf_state_key_cmp))
    memcpy(&k.addr[0], a0, n)
    memcpy(&k.addr[1], a1, n)
    k.port[0] = p0
    k.port[1] = p1
    k.af = af
    k.proto = proto


cdef pf_kstate_key *_key_find(pf_state_table *t, const pf_state_key_cmp *k, uint64_t h) noexcept nogil:
    cdef pf_kstate_key *sk = t.khash[h & t.kmask]
    while sk != NULL:
        if sk.hash == h and memcmp(&sk.k, k, sizeof(pf_state_key_cmp)) == 0:
            return sk
        sk = sk.hnext
    return NULL


cdef inline void _key_hlink(pf_kstate_key **bucket, pf_kstate_key *sk) noexcept nogil:
    sk.hnext = bucket[0]
    if sk.hnext != NULL:
        sk.hnext.hpprev = &sk.hnext
    bucket[0] = sk
    sk.hpprev = bucket


cdef void _key_rehash(pf_state_table *t) noexcept nogil:
    cdef pf_kstate_key **nb = <pf_kstate_key **>_grow(<void **>t.khash, &t.kmask, t.nkeys)
    cdef pf_kstate_key *sk
    cdef pf_kstate_key *nxt
    cdef size_t i, nmask
    if nb == NULL:
        return
    nmask = t.kmask * 2 + 1
    for i in range(t.kmask + 1):
        sk = t.khash[i]
        while sk != NULL:
            nxt = sk.hnext
            _key_hlink(&nb[sk.hash & nmask], sk)
            sk = nxt
    free(t.khash)
    t.khash = nb
    t.kmask = nmask


cdef void _list_insert(pf_kstate_key *sk, pf_kstate *st, int idx) noexcept nogil:
    """If-bound states first, floating ones last (pf_state_key_attach)."""
    if st.ifname[0] == 0:
        st.kprev[idx] = sk.tail[idx]
        st.knext[idx] = NULL
        if sk.tail[idx] != NULL:
            sk.tail[idx].knext[idx] = st
        else:
            sk.head[idx] = st
        sk.tail[idx] = st
    else:
        st.knext[idx] = sk.head[idx]
        st.kprev[idx] = NULL
        if sk.head[idx] != NULL:
            sk.head[idx].kprev[idx] = st
        else:
            sk.tail[idx] = st
        sk.head[idx] = st


cdef void _key_detach(pf_state_table *t, pf_kstate *st, int idx) noexcept nogil:
    """Take st off key[idx]'s list idx; free the key once neither list holds a state."""
    cdef pf_kstate_key *sk = st.key[idx]
    if sk == NULL:
        return
    if st.kprev[idx] != NULL:
        st.kprev[idx].knext[idx] = st.knext[idx]
    else:
        sk.head[idx] = st.knext[idx]
    if st.knext[idx] != NULL:
        st.knext[idx].kprev[idx] = st.kprev[idx]
    else:
        sk.tail[idx] = st.kprev[idx]
    st.key[idx] = NULL
    st.knext[idx] = st.kprev[idx] = NULL
    if sk.head[0] == NULL and sk.head[1] == NULL:
        sk.hpprev[0] = sk.hnext
        if sk.hnext != NULL:
            sk.hnext.hpprev = sk.hpprev
        t.nkeys -= 1
        _pool_put(&t.key_pool, sk)


cdef void _detach_keys(pf_state_table *t, pf_kstate *st) noexcept nogil:
    _key_detach(t, st, PF_SK_STACK)
    _key_detach(t, st, PF_SK_WIRE)


cdef int _key_attach(pf_state_table *t, const pf_state_key_cmp *k, pf_kstate *st, int idx,
                     pf_kstate **olds) noexcept nogil:
    """Put st on the idx list of key k (created if new). A live state with the same interface and
    direction on that list is a collision (EEXIST), unless it is a TCP state past FIN_WAIT_2 on
    both sides: that one is returned in olds, for the caller to unlink once st is in."""
    cdef uint64_t h = _key_hash(t, k)
    cdef pf_kstate_key *sk = _key_find(t, k, h)
    cdef pf_kstate *si
    if sk != NULL:
        si = sk.head[idx]
        while si != NULL:
            if si.direction == st.direction and memcmp(si.ifname, st.ifname, PF_IFNAMSIZ_) == 0:
                if (k.proto == IPPROTO_TCP_ and si.src.state >= TCPS_FIN_WAIT_2_ and
                        si.dst.state >= TCPS_FIN_WAIT_2_):
                    si.src.state = si.dst.state = TCPS_CLOSED_
                    si.timeout = PFTM_PURGE
                    olds[0] = si
                else:
                    return EEXIST
            si = si.knext[idx]
    else:
        sk = <pf_kstate_key *>_pool_get(&t.key_pool)
        if sk == NULL:
            return ENOMEM
        sk.k = k[0]
        sk.hash = h
        _key_hlink(&t.khash[h & t.kmask], sk)
        t.nkeys += 1
        _key_rehash(t)
    st.key[idx] = sk
    _list_insert(sk, st, idx)
    return 0


# --- states ---------------------------------------------------------------------------------

cdef pf_kstate *pf_state_alloc(pf_state_table *t) noexcept nogil:
    if t.state_pool.used >= t.limits[PF_LIMIT_STATES]:
        return NULL
    return <pf_kstate *>_pool_get(&t.state_pool)


cdef void pf_state_release(pf_state_table *t, pf_kstate *st) noexcept nogil:
    _pool_put(&t.state_pool, st)


cdef pf_kstate *_find_byid(pf_state_table *t, uint64_t id, uint32_t creatorid) noexcept nogil:
    cdef pf_kstate *s = t.ihash[_id_hash(t, id, creatorid) & t.imask]
    while s != NULL:
        if s.id == id and s.creatorid == creatorid:
            return s
        s = s.inext
    return NULL


cdef inline void _id_hlink(pf_state_table *t, pf_kstate **bucket, pf_kstate *st) noexcept nogil:
    st.inext = bucket[0]
    if st.inext != NULL:
        st.inext.ipprev = &st.inext
    bucket[0] = st
    st.ipprev = bucket


cdef void _id_rehash(pf_state_table *t) noexcept nogil:
    cdef pf_kstate **nb = <pf_kstate **>_grow(<void **>t.ihash, &t.imask, t.nstates)
    cdef pf_kstate *s
    cdef pf_kstate *nxt
    cdef size_t i, nmask
    if nb == NULL:
        return
    nmask = t.imask * 2 + 1
    for i in range(t.imask + 1):
        s = t.ihash[i]
        while s != NULL:
            nxt = s.inext
            _id_hlink(t, &nb[_id_hash(t, s.id, s.creatorid) & nmask], s)
            s = nxt
    free(t.ihash)
    t.ihash = nb
    t.imask = nmask


cdef int pf_state_insert(pf_state_table *t, const char *ifname, const pf_state_key_cmp *wire,
                         const pf_state_key_cmp *stack, pf_kstate *st) noexcept nogil:
    cdef pf_kstate *olds[2]
    cdef int err, i
    olds[0] = olds[1] = NULL
    memset(st.ifname, 0, PF_IFNAMSIZ_)
    strncpy(st.ifname, ifname, PF_IFNAMSIZ_ - 1)
    if st.id == 0 and st.creatorid == 0:
        t.next_id += 1
        st.id = htobe64(t.next_id)
        st.creatorid = t.hostid[0]
    st.af = wire.af
    st.proto = wire.proto
    err = _key_attach(t, wire, st, PF_SK_WIRE, &olds[0])
    if err:
        return err
    if memcmp(wire, stack, sizeof(pf_state_key_cmp)) == 0:
        st.key[PF_SK_STACK] = st.key[PF_SK_WIRE]
        _list_insert(st.key[PF_SK_STACK], st, PF_SK_STACK)
    else:
        err = _key_attach(t, stack, st, PF_SK_STACK, &olds[1])
        if err:
            _detach_keys(t, st)
            return err
    if _find_byid(t, st.id, st.creatorid) != NULL:
        _detach_keys(t, st)
        return EEXIST
    _id_hlink(t, &t.ihash[_id_hash(t, st.id, st.creatorid) & t.imask], st)
    st.aprev = t.atail
    st.anext = NULL
    if t.atail != NULL:
        t.atail.anext = st
    else:
        t.ahead = st
    t.atail = st
    t.nstates += 1
    _id_rehash(t)
    t.fcounters[FCNT_STATE_INSERT] += 1
    # FreeBSD leaves the closed predecessor to the purge thread; there is none yet, and a state
    # in PFTM_PURGE is dead to every lookup, so it goes now.
    for i in range(2):
        if olds[i] != NULL and (i == 0 or olds[1] != olds[0]):
            pf_unlink_state(t, olds[i])
    return 0


cdef void _src_node_release_state(pf_state_table *t, pf_kstate *st, uint32_t now) noexcept nogil:
    """pf_src_tree_remove_state: a node nobody uses starts its PFTM_SRC_NODE countdown."""
    cdef pf_ksrc_node *sn = st.src_node
    if sn != NULL:
        if st.src.tcp_est and sn.conn:
            sn.conn -= 1
        if sn.states:
            sn.states -= 1
        if sn.states == 0:
            sn.expire = now + t.timeouts[PFTM_SRC_NODE]
    sn = st.nat_src_node
    if sn != NULL:
        if sn.states:
            sn.states -= 1
        if sn.states == 0:
            sn.expire = now + t.timeouts[PFTM_SRC_NODE]
    st.src_node = st.nat_src_node = NULL


cdef void pf_unlink_state(pf_state_table *t, pf_kstate *st) noexcept nogil:
    if t.pcursor == st:
        t.pcursor = st.anext
    _detach_keys(t, st)
    st.ipprev[0] = st.inext
    if st.inext != NULL:
        st.inext.ipprev = st.ipprev
    if st.aprev != NULL:
        st.aprev.anext = st.anext
    else:
        t.ahead = st.anext
    if st.anext != NULL:
        st.anext.aprev = st.aprev
    else:
        t.atail = st.aprev
    _src_node_release_state(t, st, pf_uptime())
    _dec_states_cur(st.rule_r)                  # STATE_DEC_COUNTERS
    _dec_states_cur(st.anchor_r)
    _dec_states_cur(st.nat_r)
    if st.gen_refs != NULL:
        st.gen_refs[0] -= 1
    t.nstates -= 1
    t.fcounters[FCNT_STATE_REMOVALS] += 1
    _pool_put(&t.state_pool, st)


cdef pf_kstate *pf_find_state(pf_state_table *t, const char *ifname, const pf_state_key_cmp *key,
                              int dir) noexcept nogil:
    cdef pf_kstate_key *sk
    cdef pf_kstate *s
    cdef int idx = PF_SK_WIRE if dir == PF_IN else PF_SK_STACK
    t.fcounters[FCNT_STATE_SEARCH] += 1
    sk = _key_find(t, key, _key_hash(t, key))
    if sk == NULL:
        return NULL
    s = sk.head[idx]
    while s != NULL:
        if s.ifname[0] == 0 or memcmp(s.ifname, ifname, PF_IFNAMSIZ_) == 0:
            return s if s.timeout < PFTM_MAX else NULL
        s = s.knext[idx]
    return NULL


cdef pf_kstate *pf_find_state_byid(pf_state_table *t, uint64_t id, uint32_t creatorid) noexcept nogil:
    t.fcounters[FCNT_STATE_SEARCH] += 1
    return _find_byid(t, id, creatorid)


cdef int pf_find_state_all(pf_state_table *t, const pf_state_key_cmp *key, int dir,
                           pf_kstate **out, int room) noexcept nogil:
    cdef pf_kstate_key *sk
    cdef pf_kstate *s
    cdef int n = 0, idx
    t.fcounters[FCNT_STATE_SEARCH] += 1
    sk = _key_find(t, key, _key_hash(t, key))
    if sk == NULL:
        return 0
    for idx in range(2):
        # PF_IN: wire list; PF_OUT: stack list; PF_INOUT: both (a state whose keys are one
        # key is then counted twice, as FreeBSD does)
        if (idx == PF_SK_WIRE and dir == PF_OUT) or (idx == PF_SK_STACK and dir == PF_IN):
            continue
        s = sk.head[idx]
        while s != NULL:
            if n < room:
                out[n] = s
            n += 1
            s = s.knext[idx]
    return n


cdef inline void _dec_states_cur(void *r) noexcept nogil:
    if r != NULL and (<pf_rule *>r).u_states_cur:
        (<pf_rule *>r).u_states_cur -= 1


cdef uint32_t pf_state_expires(const pf_state_table *t, const pf_kstate *st, uint32_t now) noexcept nogil:
    cdef uint32_t timeout = 0, start = 0, end = 0
    cdef uint64_t states = t.nstates
    cdef const pf_rule *r = <const pf_rule *>st.rule_r
    if st.timeout >= PFTM_MAX:
        return now
    # the rule's own timeouts where it sets them, else the default rule's (the core's)
    if r != NULL:
        timeout = r.timeout[st.timeout]
        start = r.timeout[PFTM_ADAPTIVE_START]
    if not timeout:
        timeout = t.timeouts[st.timeout]
    if start:
        end = r.timeout[PFTM_ADAPTIVE_END]
        states = r.u_states_cur
    else:
        start = t.timeouts[PFTM_ADAPTIVE_START]
        end = t.timeouts[PFTM_ADAPTIVE_END]
    if end and states > start and start < end:
        if states < end:
            return st.expire + <uint32_t>(<uint64_t>timeout * (end - states) / (end - start))
        return now
    return st.expire + timeout


cdef void pf_state_account(pf_kstate *st, int dirndx, uint32_t length, uint32_t now) noexcept nogil:
    st.packets[dirndx] += 1
    st.bytes[dirndx] += length
    st.expire = now


cdef inline void _peer_hton(const pf_kstate_peer *s, pfsync_state_peer *d) noexcept nogil:
    d.seqlo = htonl(s.seqlo)
    d.seqhi = htonl(s.seqhi)
    d.seqdiff = htonl(s.seqdiff)
    d.max_win = htons(s.max_win)
    d.mss = htons(s.mss)
    d.state = s.state
    d.wscale = s.wscale
    if s.scrub:
        d.scrub.pfss_flags = htons(s.pfss_flags & PFSS_TIMESTAMP)
        d.scrub.pfss_ttl = s.pfss_ttl
        d.scrub.pfss_ts_mod = htonl(s.pfss_ts_mod)
        d.scrub.scrub_flag = PFSYNC_SCRUB_FLAG_VALID


cdef inline void _peer_ntoh(const pfsync_state_peer *s, pf_kstate_peer *d) noexcept nogil:
    d.seqlo = ntohl(s.seqlo)
    d.seqhi = ntohl(s.seqhi)
    d.seqdiff = ntohl(s.seqdiff)
    d.max_win = ntohs(s.max_win)
    d.mss = ntohs(s.mss)
    d.state = s.state
    d.wscale = s.wscale
    # any scrub_flag allocates the scrub record; only a valid one fills it (if_pfsync.c)
    d.scrub = s.scrub.scrub_flag != 0
    if s.scrub.scrub_flag == PFSYNC_SCRUB_FLAG_VALID:
        d.pfss_flags = ntohs(s.scrub.pfss_flags) & PFSS_TIMESTAMP
        d.pfss_ttl = s.scrub.pfss_ttl
        d.pfss_ts_mod = ntohl(s.scrub.pfss_ts_mod)


cdef inline void _counter_hton(uint64_t v, void *d) noexcept nogil:
    cdef uint32_t c[2]
    c[0] = htonl(<uint32_t>(v >> 32))
    c[1] = htonl(<uint32_t>v)
    memcpy(d, c, 8)


cdef inline const char *_kif_name(const pf_kstate *st) noexcept nogil:
    if st.ifname[0] == 0:
        return <const char *>FLOATING_NAME
    return <const char *>st.ifname


cdef void pfsync_state_export(const pf_state_table *t, pfsync_state *sp, const pf_kstate *st,
                              uint32_t now) noexcept nogil:
    cdef int i
    cdef uint32_t expires
    memset(sp, 0, PF_SIZEOF_PFSYNC)
    for i in range(2):
        memcpy(sp.key[i].addr, st.key[i].k.addr, sizeof(st.key[i].k.addr))
        sp.key[i].port[0] = st.key[i].k.port[0]
        sp.key[i].port[1] = st.key[i].k.port[1]
    sp.proto = st.key[PF_SK_WIRE].k.proto
    sp.af = st.key[PF_SK_WIRE].k.af
    memcpy(sp.ifname, _kif_name(st), PF_IFNAMSIZ_)      # zero-padded, NUL within 16
    memcpy(&sp.rt_addr, &st.rt_addr, sizeof(pf_addr))
    sp.creation = htonl(now - st.creation)
    expires = pf_state_expires(t, st, now)
    sp.expire = htonl(0) if <int32_t>(expires - now) <= 0 else htonl(expires - now)
    sp.direction = st.direction
    sp.log = st.log
    sp.timeout = st.timeout
    sp.state_flags = <uint8_t>st.state_flags
    if st.src_node != NULL:
        sp.sync_flags |= PFSYNC_FLAG_SRCNODE
    if st.nat_src_node != NULL:
        sp.sync_flags |= PFSYNC_FLAG_NATSRCNODE
    sp.id = st.id
    sp.creatorid = st.creatorid
    _peer_hton(&st.src, &sp.src)
    _peer_hton(&st.dst, &sp.dst)
    sp.rule = htonl(st.rule)
    sp.anchor = htonl(st.anchor)
    sp.nat_rule = htonl(st.nat_rule)
    for i in range(2):
        _counter_hton(st.packets[i], <char *>sp + PACKETS_OFF + 8 * i)
        _counter_hton(st.bytes[i], <char *>sp + BYTES_OFF + 8 * i)


cdef bint pf_state_kill_match(const pf_kstate *st, const pf_kstate_kill *k) noexcept nogil:
    """The DIOCKILLSTATES criteria, on the wire key seen from the state's initiator."""
    cdef const pf_state_key_cmp *sk = &st.key[PF_SK_WIRE].k
    cdef int s = 1 if st.direction == PF_OUT else 0
    cdef int d = 1 - s
    return ((not k.af or sk.af == k.af) and
            (not k.proto or k.proto == sk.proto) and
            pf_match_addr(k.src.neg, &k.src.addr.v.a.addr, &k.src.addr.v.a.mask, &sk.addr[s], sk.af) and
            pf_match_addr(k.dst.neg, &k.dst.addr.v.a.addr, &k.dst.addr.v.a.mask, &sk.addr[d], sk.af) and
            (k.src.port_op == 0 or pf_match_port(k.src.port_op, k.src.port[0], k.src.port[1], sk.port[s])) and
            (k.dst.port_op == 0 or pf_match_port(k.dst.port_op, k.dst.port[0], k.dst.port[1], sk.port[d])) and
            (not k.label[0] or (st.label != NULL and st.label[0] and
                                strncmp(k.label, st.label, 64) == 0)) and
            (not k.ifname[0] or strncmp(k.ifname, _kif_name(st), PF_IFNAMSIZ_) == 0))


# --- the older generations' state forms (pf-abi.md §3.2, §3.3) ------------------------------
#
# OpenBSD 3.7 and NetBSD describe a state by three hosts: lan (the inside host), gwy (the address
# it is translated to; lan when untranslated) and ext (the peer). In FreeBSD 12's terms, whatever
# the direction: ext is wire key [0], gwy wire key [1], lan stack key [1] (stack key [0] is ext
# again: those generations could not translate the peer).

# Non-zero stand-ins for kernel pointers an old client may test as booleans (pfctl 3.x prints
# "source-track"/"sticky-address" when src_node/nat_src_node are set). Never dereferenced.
cdef size_t PTR_TOKEN_SRC_NODE = 0xfffff80200000000
cdef size_t PTR_TOKEN_NAT_SRC_NODE = 0xfffff80200001000
cdef size_t PTR_TOKEN_SCRUB = 0xfffff80200002000


cdef uint32_t pf_wallclock() noexcept nogil:
    """Wall-clock seconds: time_second of FreeBSD 6 / OpenBSD 3.7."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <uint32_t>ts.tv_sec


cdef inline uint32_t _expire_left(const pf_state_table *t, const pf_kstate *st, uint32_t now) noexcept nogil:
    cdef uint32_t expires = pf_state_expires(t, st, now)
    return 0 if <int32_t>(expires - now) <= 0 else expires - now


cdef inline void _peer_obsd37(const pf_kstate_peer *s, pf_state_peer_obsd37 *d) noexcept nogil:
    """The kernel's own peer: host order, scrub a (token) pointer."""
    d.seqlo = s.seqlo
    d.seqhi = s.seqhi
    d.seqdiff = s.seqdiff
    d.max_win = s.max_win
    d.state = s.state
    d.wscale = s.wscale
    d.mss = s.mss
    d.scrub = <void *>PTR_TOKEN_SCRUB if s.scrub else NULL


cdef inline void _host_obsd37(pf_state_host *h, const pf_state_key_cmp *k, int i) noexcept nogil:
    memcpy(&h.addr, &k.addr[i], sizeof(pf_addr))
    h.port = k.port[i]


cdef void pf_state_export_obsd37(const pf_state_table *t, pf_state_obsd37 *sp, const pf_kstate *st,
                                 uint32_t now, uint32_t wall) noexcept nogil:
    cdef const pf_state_key_cmp *wire = &st.key[PF_SK_WIRE].k
    cdef const pf_state_key_cmp *stack = &st.key[PF_SK_STACK].k
    cdef int i
    memset(sp, 0, PF_SIZEOF_STATE_OBSD37)
    sp.id = st.id
    # The kernel's links and kif pointer are not exported; the union's other face, the name
    # (what DIOCGETSTATES put there), is.
    memcpy(sp.u.ifname, _kif_name(st), PF_IFNAMSIZ_)
    _host_obsd37(&sp.lan, stack, 1)
    _host_obsd37(&sp.gwy, wire, 1)
    _host_obsd37(&sp.ext, wire, 0)
    _peer_obsd37(&st.src, &sp.src)
    _peer_obsd37(&st.dst, &sp.dst)
    sp.rule.nr = st.rule
    sp.anchor.nr = st.anchor
    sp.nat_rule.nr = st.nat_rule
    memcpy(&sp.rt_addr, &st.rt_addr, sizeof(pf_addr))
    if st.src_node != NULL:
        sp.src_node = <void *>PTR_TOKEN_SRC_NODE
    if st.nat_src_node != NULL:
        sp.nat_src_node = <void *>PTR_TOKEN_NAT_SRC_NODE
    sp.creation = wall - (now - st.creation)        # DIOCGETSTATE left it absolute
    sp.expire = _expire_left(t, st, now)
    for i in range(2):
        sp.packets[i] = <uint32_t>st.packets[i]     # the 3.7 kernel counted in 32 bits
        sp.bytes[i] = <uint32_t>st.bytes[i]
    sp.creatorid = st.creatorid
    sp.af = wire.af
    sp.proto = wire.proto
    sp.direction = st.direction
    sp.log = st.log
    sp.allow_opts = 1 if st.state_flags & PFSTATE_ALLOWOPTS else 0
    sp.timeout = st.timeout
    if st.state_flags & PFSTATE_NOSYNC:
        sp.sync_flags = PFSTATE_NOSYNC_OBSD37


cdef inline void _peer_nbsd(const pf_kstate_peer *s, pfsync_state_peer *d) noexcept nogil:
    """OpenBSD 4.2's pf_state_peer_to_pfsync as the ioctls use it: no byte swapping."""
    d.seqlo = s.seqlo
    d.seqhi = s.seqhi
    d.seqdiff = s.seqdiff
    d.max_win = s.max_win
    d.mss = s.mss
    d.state = s.state
    d.wscale = s.wscale
    if s.scrub:
        d.scrub.pfss_flags = s.pfss_flags & PFSS_TIMESTAMP
        d.scrub.pfss_ttl = s.pfss_ttl
        d.scrub.pfss_ts_mod = s.pfss_ts_mod
        d.scrub.scrub_flag = PFSYNC_SCRUB_FLAG_VALID


cdef inline void _host_nbsd(char *p, const pf_state_key_cmp *k, int i) noexcept nogil:
    memcpy(p, &k.addr[i], sizeof(pf_addr))
    memcpy(p + sizeof(pf_addr), &k.port[i], 2)


cdef void pfsync_state_export_nbsd(const pf_state_table *t, pfsync_state_nbsd *sp,
                                   const pf_kstate *st, uint32_t now) noexcept nogil:
    cdef const pf_state_key_cmp *wire = &st.key[PF_SK_WIRE].k
    cdef const pf_state_key_cmp *stack = &st.key[PF_SK_STACK].k
    cdef char *p = <char *>sp
    cdef uint32_t c[2][2]
    cdef int i
    memset(sp, 0, PF_SIZEOF_PFSYNC_NBSD)
    memcpy(p + NBSD_ID_OFF, &st.id, 8)
    memcpy(sp.ifname, _kif_name(st), PF_IFNAMSIZ_)
    _host_nbsd(p + NBSD_LAN_OFF, stack, 1)
    _host_nbsd(p + NBSD_GWY_OFF, wire, 1)
    _host_nbsd(p + NBSD_EXT_OFF, wire, 0)
    _peer_nbsd(&st.src, &sp.src)
    _peer_nbsd(&st.dst, &sp.dst)
    memcpy(p + NBSD_RT_ADDR_OFF, &st.rt_addr, sizeof(pf_addr))
    sp.rule = st.rule
    sp.anchor = st.anchor
    sp.nat_rule = st.nat_rule
    sp.creation = now - st.creation
    sp.expire = _expire_left(t, st, now)
    for i in range(2):                              # {high, low} words, host order
        c[i][0] = <uint32_t>(st.packets[i] >> 32)
        c[i][1] = <uint32_t>st.packets[i]
    memcpy(p + NBSD_PACKETS_OFF, c, sizeof(c))
    for i in range(2):
        c[i][0] = <uint32_t>(st.bytes[i] >> 32)
        c[i][1] = <uint32_t>st.bytes[i]
    memcpy(p + NBSD_BYTES_OFF, c, sizeof(c))
    sp.creatorid = st.creatorid
    sp.af = wire.af
    sp.proto = wire.proto
    sp.direction = st.direction
    sp.log = st.log
    sp.allow_opts = 1 if st.state_flags & PFSTATE_ALLOWOPTS else 0
    sp.timeout = st.timeout
    if st.src_node != NULL:
        sp.sync_flags |= PFSYNC_FLAG_SRCNODE
    if st.nat_src_node != NULL:
        sp.sync_flags |= PFSYNC_FLAG_NATSRCNODE


cdef bint pf_state_kill_match_obsd37(const pf_kstate *st, const pf_kstate_kill *k) noexcept nogil:
    cdef const pf_state_key_cmp *wire = &st.key[PF_SK_WIRE].k
    cdef const pf_state_key_cmp *stack = &st.key[PF_SK_STACK].k
    return ((not k.af or wire.af == k.af) and
            (not k.proto or k.proto == wire.proto) and
            pf_match_addr(k.src.neg, &k.src.addr.v.a.addr, &k.src.addr.v.a.mask, &stack.addr[1], wire.af) and
            pf_match_addr(k.dst.neg, &k.dst.addr.v.a.addr, &k.dst.addr.v.a.mask, &wire.addr[0], wire.af) and
            (k.src.port_op == 0 or pf_match_port(k.src.port_op, k.src.port[0], k.src.port[1], stack.port[1])) and
            (k.dst.port_op == 0 or pf_match_port(k.dst.port_op, k.dst.port[0], k.dst.port[1], wire.port[0])) and
            (not k.ifname[0] or strncmp(k.ifname, _kif_name(st), PF_IFNAMSIZ_) == 0))


ctypedef struct _idref:
    uint64_t id
    uint32_t creatorid
    pf_kstate *st


cdef inline bint _id_less(const _idref *a, const _idref *b) noexcept nogil:
    return a.id < b.id or (a.id == b.id and a.creatorid < b.creatorid)


cdef inline void _idref_swap(_idref *a, _idref *b) noexcept nogil:
    cdef _idref x = a[0]
    a[0] = b[0]
    b[0] = x


cdef pf_kstate *pf_state_nth(pf_state_table *t, size_t nr, int *err) noexcept nogil:
    """Quickselect with random pivots over (id, creatorid), unique per state: O(states) a call,
    as the 3.7 kernel's walk of its id tree was; ids are the clients' to choose, hence the
    random pivots."""
    cdef size_t n = t.nstates, i = 0, lo, hi, store
    cdef _idref *a
    cdef _idref pivot
    cdef pf_kstate *st
    cdef uint64_t rng = t.seed ^ (n * <uint64_t>0x9e3779b97f4a7c15) ^ nr
    err[0] = 0
    if nr >= n:
        return NULL
    a = <_idref *>malloc(n * sizeof(_idref))
    if a == NULL:
        err[0] = ENOMEM
        return NULL
    st = t.ahead
    while st != NULL and i < n:
        a[i].id = st.id
        a[i].creatorid = st.creatorid
        a[i].st = st
        i += 1
        st = st.anext
    lo = 0
    hi = n - 1
    while lo < hi:
        rng ^= rng << 13
        rng ^= rng >> 7
        rng ^= rng << 17
        _idref_swap(&a[lo + rng % (hi - lo + 1)], &a[hi])
        pivot = a[hi]
        store = lo
        for i in range(lo, hi):
            if _id_less(&a[i], &pivot):
                _idref_swap(&a[i], &a[store])
                store += 1
        _idref_swap(&a[store], &a[hi])
        if store == nr:
            break
        if nr < store:
            hi = store - 1
        else:
            lo = store + 1
    st = a[nr].st
    free(a)
    return st


# --- source nodes ---------------------------------------------------------------------------

cdef pf_ksrc_node *pf_find_src_node(pf_state_table *t, uint8_t af, const pf_addr *addr,
                                    uint32_t rule) noexcept nogil:
    cdef pf_ksrc_node *sn = t.shash[_src_hash(t, af, addr, rule) & t.smask]
    t.scounters[SCNT_SRC_NODE_SEARCH] += 1
    while sn != NULL:
        if sn.af == af and sn.rule == rule and memcmp(&sn.addr, addr, sizeof(pf_addr)) == 0:
            return sn
        sn = sn.hnext
    return NULL


cdef pf_ksrc_node *pf_src_node_alloc(pf_state_table *t) noexcept nogil:
    if t.src_pool.used >= t.limits[PF_LIMIT_SRC_NODES]:
        return NULL
    return <pf_ksrc_node *>_pool_get(&t.src_pool)


cdef inline void _src_hlink(pf_ksrc_node **bucket, pf_ksrc_node *sn) noexcept nogil:
    sn.hnext = bucket[0]
    if sn.hnext != NULL:
        sn.hnext.hpprev = &sn.hnext
    bucket[0] = sn
    sn.hpprev = bucket


cdef void pf_src_node_link(pf_state_table *t, pf_ksrc_node *sn) noexcept nogil:
    cdef pf_ksrc_node **nb
    cdef pf_ksrc_node *s
    cdef pf_ksrc_node *nxt
    cdef size_t i, nmask
    _src_hlink(&t.shash[_src_hash(t, sn.af, &sn.addr, sn.rule) & t.smask], sn)
    sn.aprev = t.stail
    sn.anext = NULL
    if t.stail != NULL:
        t.stail.anext = sn
    else:
        t.shead = sn
    t.stail = sn
    t.nsrc += 1
    t.src_nodes_gauge[0] = <uint32_t>t.nsrc
    t.scounters[SCNT_SRC_NODE_INSERT] += 1
    nb = <pf_ksrc_node **>_grow(<void **>t.shash, &t.smask, t.nsrc)
    if nb != NULL:
        nmask = t.smask * 2 + 1
        for i in range(t.smask + 1):
            s = t.shash[i]
            while s != NULL:
                nxt = s.hnext
                _src_hlink(&nb[_src_hash(t, s.af, &s.addr, s.rule) & nmask], s)
                s = nxt
        free(t.shash)
        t.shash = nb
        t.smask = nmask


cdef void pf_unlink_src_node(pf_state_table *t, pf_ksrc_node *sn) noexcept nogil:
    sn.hpprev[0] = sn.hnext
    if sn.hnext != NULL:
        sn.hnext.hpprev = sn.hpprev
    if sn.aprev != NULL:
        sn.aprev.anext = sn.anext
    else:
        t.shead = sn.anext
    if sn.anext != NULL:
        sn.anext.aprev = sn.aprev
    else:
        t.stail = sn.aprev
    t.nsrc -= 1
    t.src_nodes_gauge[0] = <uint32_t>t.nsrc
    t.scounters[SCNT_SRC_NODE_REMOVALS] += 1
    if sn.r != NULL and (<pf_rule *>sn.r).u_src_nodes:
        (<pf_rule *>sn.r).u_src_nodes -= 1
    if sn.gen_refs != NULL:
        sn.gen_refs[0] -= 1
    _pool_put(&t.src_pool, sn)


cdef void pf_src_node_export(pf_src_node *p, const pf_ksrc_node *n, uint32_t now) noexcept nogil:
    """DIOCGETSRCNODES' element: kernel links and kif pointer zero, creation as age, expire as
    seconds left, the connection-rate estimate decayed to now."""
    cdef int32_t diff
    memset(p, 0, sizeof(pf_src_node))
    memcpy(&p.addr, &n.addr, sizeof(pf_addr))
    memcpy(&p.raddr, &n.raddr, sizeof(pf_addr))
    p.rule.nr = n.rule
    p.bytes[0] = n.bytes[0]
    p.bytes[1] = n.bytes[1]
    p.packets[0] = n.packets[0]
    p.packets[1] = n.packets[1]
    p.states = n.states
    p.conn = n.conn
    p.conn_rate = n.conn_rate
    p.creation = now - n.creation
    p.expire = n.expire - now if <int32_t>(n.expire - now) > 0 else 0
    p.af = n.af
    p.ruletype = n.ruletype
    diff = <int32_t>(now - n.conn_rate.last)
    # FreeBSD compares the int difference with the unsigned period: a negative one clears too
    if <uint32_t>diff >= n.conn_rate.seconds:
        p.conn_rate.count = 0
    else:
        p.conn_rate.count -= n.conn_rate.count * <uint32_t>diff / n.conn_rate.seconds


# --- the control plane's table ----------------------------------------------------------------

def _check_layout():
    # the key is hashed as five 64-bit words
    assert sizeof(pf_state_key_cmp) == 40, sizeof(pf_state_key_cmp)
    assert sizeof(pfsync_state) == PF_SIZEOF_PFSYNC
    assert sizeof(pf_state_obsd37) == PF_SIZEOF_STATE_OBSD37
    assert sizeof(pfsync_state_nbsd) == PF_SIZEOF_PFSYNC_NBSD


_check_layout()


def struct_sizes():
    """Bytes per internal item (memory per state = state + its share of keys)."""
    return {"pf_kstate": sizeof(pf_kstate), "pf_kstate_key": sizeof(pf_kstate_key),
            "pf_ksrc_node": sizeof(pf_ksrc_node), "pf_state_key_cmp": sizeof(pf_state_key_cmp)}


class StateKeyView:
    """A copy of one state key for Python callers (DIOCNATLOOK): addr[i] 16-byte bytes,
    port[i] int in network order."""
    __slots__ = ("af", "proto", "addr", "port")

    def __init__(self, af, proto, addr, port):
        self.af = af
        self.proto = proto
        self.addr = addr
        self.port = port


class StateView:
    """A copy of a state's identity and keys: key[PF_SK_WIRE], key[PF_SK_STACK]."""
    __slots__ = ("id", "creatorid", "direction", "ifname", "key")

    def __init__(self, id, creatorid, direction, ifname, key):
        self.id = id
        self.creatorid = creatorid
        self.direction = direction
        self.ifname = ifname
        self.key = key


cdef object _key_view(const pf_state_key_cmp *k):
    return StateKeyView(k.af, k.proto,
                        ((<const char *>&k.addr[0])[:16], (<const char *>&k.addr[1])[:16]),
                        (k.port[0], k.port[1]))


cdef object _state_view(const pf_kstate *st):
    return StateView(st.id, st.creatorid, st.direction, cstr(_kif_name(st), PF_IFNAMSIZ_),
                     (_key_view(&st.key[0].k), _key_view(&st.key[1].k)))


cdef inline uint8_t _af_old(uint8_t af) noexcept nogil:
    """AF_INET6 from an old struct: Linux's, FreeBSD's or OpenBSD's/NetBSD's value."""
    return AF_INET6 if af == AF_INET6_BSD or af == AF_INET6_OBSD else af


cdef int _check_old(uint8_t af, uint8_t direction, uint8_t src_state, uint8_t dst_state) except -1:
    if (af != AF_INET and af != AF_INET6) or (direction != PF_IN and direction != PF_OUT) or \
            src_state > PF_TCPS_PROXY_DST or dst_state > PF_TCPS_PROXY_DST:
        raise Invalid("invalid state values")
    return 0


cdef inline void _peer_from_obsd37(const pf_state_peer_obsd37 *s, pf_kstate_peer *d) noexcept nogil:
    """The 3.7 kernel took the user's peer as is (host order); its scrub pointer is ignored."""
    d.seqlo = s.seqlo
    d.seqhi = s.seqhi
    d.seqdiff = s.seqdiff
    d.max_win = s.max_win
    d.mss = s.mss
    d.state = s.state
    d.wscale = s.wscale


cdef inline void _peer_from_nbsd(const pfsync_state_peer *s, pf_kstate_peer *d) noexcept nogil:
    """OpenBSD 4.2's pf_state_peer_from_pfsync: host order except mss (ntohs); the scrub record
    is never filled from an ioctl (the new state has none to fill)."""
    d.seqlo = s.seqlo
    d.seqhi = s.seqhi
    d.seqdiff = s.seqdiff
    d.max_win = s.max_win
    d.mss = ntohs(s.mss)
    d.state = s.state
    d.wscale = s.wscale


cdef str _old_kif(StateTable self, const char *ifname):
    """The interface an old DIOCADDSTATE names. Those kernels created a kif for any name
    and answered ENOENT only when that failed; here the interface must exist."""
    name = cstr(ifname, PF_IFNAMSIZ_ - 1)
    kifs = self.core.interfaces
    if kifs is None or kifs.get(name) is None:
        raise NotFound(f"unknown interface {name!r}")
    return name

cdef int _insert_old(StateTable self, str name, const pf_kstate *tmpl, const pf_state_key_cmp *wire,
                     const pf_state_key_cmp *stack) except -1:
    """Link a state decoded from an older generation's struct. Those kernels answered ENOMEM
    for a refused insert (key or id collision) as for the states limit."""
    cdef pf_state_table *t = self.t
    cdef pf_kstate *st
    cdef char ifname[16]
    cdef int err
    memset(ifname, 0, sizeof(ifname))
    if name != "all":                   # kif "all" holds the floating states
        bname = name.encode("latin-1")
        memcpy(ifname, <const char *>bname, len(bname))
    self.lock()
    try:
        st = pf_state_alloc(t)
        if st == NULL:
            raise NoMemory("state limit reached")
        memcpy(st, tmpl, sizeof(pf_kstate))
        err = pf_state_insert(t, ifname, wire, stack, st)
        if err:
            pf_state_release(t, st)
            raise NoMemory("state insert failed" if err == EEXIST else "no memory for state keys")
    finally:
        self.unlock()
    return 0


cdef class StateTable:
    def __cinit__(self, PfCore core):
        cdef pf_state_table *t = <pf_state_table *>calloc(1, sizeof(pf_state_table))
        if t == NULL:
            raise MemoryError()
        self.t = t
        pthread_mutex_init(&t.lock, NULL)
        t.seed = int.from_bytes(os.urandom(8), "little")
        t.kmask = t.imask = t.smask = DEF_BUCKETS - 1
        t.khash = <pf_kstate_key **>calloc(DEF_BUCKETS, sizeof(void *))
        t.ihash = <pf_kstate **>calloc(DEF_BUCKETS, sizeof(void *))
        t.shash = <pf_ksrc_node **>calloc(DEF_BUCKETS, sizeof(void *))
        if t.khash == NULL or t.ihash == NULL or t.shash == NULL:
            raise MemoryError()
        _pool_init(&t.state_pool, sizeof(pf_kstate))
        _pool_init(&t.key_pool, sizeof(pf_kstate_key))
        _pool_init(&t.src_pool, sizeof(pf_ksrc_node))
        self.core = core
        t.fcounters = core.status.fcounters
        t.scounters = core.status.scounters
        t.src_nodes_gauge = &core.status.src_nodes
        t.timeouts = core.timeout
        t.limits = core.limit
        t.hostid = &core.status.hostid

    def __init__(self, PfCore core):
        pass

    def __dealloc__(self):
        cdef pf_state_table *t = self.t
        if t == NULL:
            return
        _pool_destroy(&t.state_pool)
        _pool_destroy(&t.key_pool)
        _pool_destroy(&t.src_pool)
        free(t.khash)
        free(t.ihash)
        free(t.shash)
        pthread_mutex_destroy(&t.lock)
        free(t)

    cdef void lock(self) noexcept:
        with nogil:
            pthread_mutex_lock(&self.t.lock)

    cdef void unlock(self) noexcept:
        pthread_mutex_unlock(&self.t.lock)

    def run_locked(self, fn):
        """fn(*args) under the engine lock: for control-plane writes to what the datapath
        updates without the GIL (rule counters), so neither loses the other's store. fn must
        not wait for anything."""
        self.lock()
        try:
            return fn()
        finally:
            self.unlock()

    def __len__(self):
        return self.t.nstates

    # -- DIOCNATLOOK -----------------------------------------------------------------------
    def find_all(self, key, int direction):
        """States on key = (af, proto, (addr0, addr1), (port0, port1)) -- addresses as 16-byte
        bytes, ports in network order -- walking the wire list for PF_IN, the stack list for
        PF_OUT, both for PF_INOUT (pf_find_state_all). Returns StateView copies."""
        cdef pf_state_key_cmp k
        cdef pf_kstate **found = NULL
        cdef int n, i
        af, proto, (a0, a1), (p0, p1) = key
        a0 = bytes(a0).ljust(16, b"\0")[:16]
        a1 = bytes(a1).ljust(16, b"\0")[:16]
        pf_state_key_fill(&k, af_in(af), proto, <const pf_addr *><const char *>a0,
                          <const pf_addr *><const char *>a1, p0, p1)
        self.lock()
        try:
            n = pf_find_state_all(self.t, &k, direction, NULL, 0)
            found = <pf_kstate **>malloc(max(n, 1) * sizeof(pf_kstate *))
            if found == NULL:
                raise MemoryError()
            self.t.fcounters[FCNT_STATE_SEARCH] -= 1       # one search, counted once
            pf_find_state_all(self.t, &k, direction, found, n)
            return [_state_view(found[i]) for i in range(n)]
        finally:
            self.unlock()
            free(found)

    # -- DIOCADDSTATE ----------------------------------------------------------------------
    cdef int import_state(self, const pfsync_state *sp) except -1:
        """pfsync_state_import(PFSYNC_SI_IOCTL). Checks: FreeBSD's (timeout index, creatorid,
        known interface; states limit -> ENOMEM; key/id collisions -> EEXIST) plus the value
        checks pfsync applies to states from the network (af, direction, peer states), so that
        no state the datapath cannot handle enters the table."""
        cdef pf_state_table *t = self.t
        cdef pf_kstate *st
        cdef pf_state_key_cmp wire, stack
        cdef pfsync_state_key keys[2]
        cdef char ifname[16]
        cdef uint8_t af = af_in(sp.af)
        cdef uint32_t now, timeout
        cdef int err
        if sp.timeout >= PFTM_MAX:
            raise Invalid("timeout index out of range")
        if sp.creatorid == 0:
            raise Invalid("creatorid 0")
        name = cstr(sp.ifname, PF_IFNAMSIZ_ - 1)       # strlcpy into a kif name (pfi_kif_find)
        kifs = self.core.interfaces
        if kifs is None or kifs.get(name) is None:
            raise Invalid(f"unknown interface {name!r}")
        if (af != AF_INET and af != AF_INET6) or sp.direction > PF_OUT or \
                sp.src.state > PF_TCPS_PROXY_DST or sp.dst.state > PF_TCPS_PROXY_DST:
            raise Invalid("invalid state values")
        memset(ifname, 0, sizeof(ifname))
        if name != "all":                   # kif "all" is how floating states travel
            memcpy(ifname, <const char *>sp.ifname, len(name))
        memcpy(keys, <const char *>sp + KEYS_OFF, sizeof(keys))    # aligned copy (packed struct)
        pf_state_key_fill(&wire, af, sp.proto, &keys[PF_SK_WIRE].addr[0],
                          &keys[PF_SK_WIRE].addr[1], keys[PF_SK_WIRE].port[0],
                          keys[PF_SK_WIRE].port[1])
        pf_state_key_fill(&stack, af, sp.proto, &keys[PF_SK_STACK].addr[0],
                          &keys[PF_SK_STACK].addr[1], keys[PF_SK_STACK].port[0],
                          keys[PF_SK_STACK].port[1])
        self.lock()
        try:
            st = pf_state_alloc(t)
            if st == NULL:
                raise NoMemory("state limit reached")
            now = pf_uptime()
            memcpy(&st.rt_addr, &sp.rt_addr, sizeof(pf_addr))
            st.creation = now - ntohl(sp.creation)
            st.expire = now
            if sp.expire:
                # the exported expire may be adaptively scaled; keep it as the time left
                timeout = t.timeouts[sp.timeout]
                st.expire -= timeout - ntohl(sp.expire)
            st.direction = sp.direction
            st.log = sp.log
            st.timeout = sp.timeout
            st.state_flags = sp.state_flags
            st.id = sp.id
            st.creatorid = sp.creatorid
            _peer_ntoh(&sp.src, &st.src)
            _peer_ntoh(&sp.dst, &st.dst)
            # no rules own states yet: the default rule (nr -1), no anchor, no nat rule
            st.rule = st.anchor = st.nat_rule = PF_NO_RULE
            err = pf_state_insert(t, ifname, &wire, &stack, st)
            if err:
                pf_state_release(t, st)
                if err == EEXIST:
                    raise Exists("state exists")
                raise NoMemory("no memory for state keys")
            st.state_flags &= ~PFSTATE_ACK
        finally:
            self.unlock()
        return 0

    # -- DIOCGETSTATE(S) -------------------------------------------------------------------
    cdef bint get_state(self, uint64_t id, uint32_t creatorid, pfsync_state *out):
        cdef pf_kstate *st
        self.lock()
        st = pf_find_state_byid(self.t, id, creatorid)
        if st != NULL:
            pfsync_state_export(self.t, out, st, pf_uptime())
        self.unlock()
        return st != NULL

    cdef bytes export_states(self, size_t room):
        """Up to `room` states in pfsync form, in insertion order: the loop runs in C into one
        buffer (one copy out to the caller afterwards)."""
        cdef pf_state_table *t = self.t
        cdef size_t n, i = 0
        cdef char *p
        cdef bytes out
        cdef pf_kstate *st
        cdef uint32_t now = pf_uptime()
        self.lock()
        try:
            n = min(room, t.nstates)
            out = PyBytes_FromStringAndSize(NULL, n * PF_SIZEOF_PFSYNC)
            p = PyBytes_AS_STRING(out)
            with nogil:
                st = t.ahead
                while st != NULL and i < n:
                    pfsync_state_export(t, <pfsync_state *>(p + i * PF_SIZEOF_PFSYNC), st, now)
                    i += 1
                    st = st.anext
        finally:
            self.unlock()
        return out

    # -- DIOCKILLSTATES / DIOCCLRSTATES ----------------------------------------------------
    cdef bint kill_by_id(self, uint64_t id, uint32_t creatorid):
        cdef pf_kstate *st
        self.lock()
        st = pf_find_state_byid(self.t, id, creatorid)
        if st != NULL:
            pf_unlink_state(self.t, st)
        self.unlock()
        return st != NULL

    cdef unsigned int kill_states(self, const pf_kstate_kill *k):
        cdef pf_state_table *t = self.t
        cdef pf_kstate *st
        cdef pf_kstate *nxt
        cdef unsigned int killed = 0
        self.lock()
        with nogil:
            st = t.ahead
            while st != NULL:
                nxt = st.anext
                if pf_state_kill_match(st, k):
                    pf_unlink_state(t, st)
                    killed += 1
                st = nxt
        self.unlock()
        return killed

    cdef unsigned int clear_states(self, const char *ifname):
        cdef pf_state_table *t = self.t
        cdef pf_kstate *st
        cdef pf_kstate *nxt
        cdef unsigned int killed = 0
        self.lock()
        with nogil:
            st = t.ahead
            while st != NULL:
                nxt = st.anext
                if not ifname[0] or strncmp(ifname, _kif_name(st), PF_IFNAMSIZ_) == 0:
                    st.state_flags |= PFSTATE_NOSYNC     # no per-state pfsync deletes
                    pf_unlink_state(t, st)
                    killed += 1
                st = nxt
        self.unlock()
        return killed

    # -- source nodes ------------------------------------------------------------------------
    cdef size_t src_node_count(self):
        return self.t.nsrc

    cdef bytes export_src_nodes(self, size_t room):
        cdef pf_state_table *t = self.t
        cdef size_t n, i = 0
        cdef char *p
        cdef bytes out
        cdef pf_ksrc_node *sn
        cdef uint32_t now = pf_uptime()
        self.lock()
        try:
            n = min(room, t.nsrc)
            out = PyBytes_FromStringAndSize(NULL, n * sizeof(pf_src_node))
            p = PyBytes_AS_STRING(out)
            with nogil:
                sn = t.shead
                while sn != NULL and i < n:
                    pf_src_node_export(<pf_src_node *>(p + i * sizeof(pf_src_node)), sn, now)
                    i += 1
                    sn = sn.anext
        finally:
            self.unlock()
        return out

    cdef unsigned int clear_src_nodes(self):
        """DIOCCLRSRCNODES: pf_clear_srcnodes(NULL) detaches every node from the states and
        expires it; the purge that follows frees them all."""
        cdef pf_state_table *t = self.t
        cdef pf_kstate *st
        cdef unsigned int n = 0
        self.lock()
        with nogil:
            st = t.ahead
            while st != NULL:
                st.src_node = st.nat_src_node = NULL
                st = st.anext
            while t.shead != NULL:
                pf_unlink_src_node(t, t.shead)
                n += 1
        self.unlock()
        return n

    cdef unsigned int kill_src_nodes(self, const pf_rule_addr *src, const pf_rule_addr *dst):
        """pf_kill_srcnodes: nodes whose address matches src and whose translation address
        matches dst (each with its mask and negation)."""
        cdef pf_state_table *t = self.t
        cdef pf_ksrc_node *sn
        cdef pf_ksrc_node *nxt
        cdef pf_kstate *st
        cdef unsigned int killed = 0
        self.lock()
        with nogil:
            sn = t.shead
            while sn != NULL:
                sn.killed = (pf_match_addr(src.neg, &src.addr.v.a.addr, &src.addr.v.a.mask,
                                           &sn.addr, sn.af) and
                             pf_match_addr(dst.neg, &dst.addr.v.a.addr, &dst.addr.v.a.mask,
                                           &sn.raddr, sn.af))
                killed += sn.killed
                sn = sn.anext
            if killed:
                st = t.ahead
                while st != NULL:
                    if st.src_node != NULL and st.src_node.killed:
                        st.src_node = NULL
                    if st.nat_src_node != NULL and st.nat_src_node.killed:
                        st.nat_src_node = NULL
                    st = st.anext
                sn = t.shead
                while sn != NULL:
                    nxt = sn.anext
                    if sn.killed:
                        pf_unlink_src_node(t, sn)
                    sn = nxt
        self.unlock()
        return killed

    # -- the older generations (pf-abi.md §3.2, §3.3) ----------------------------------------
    cdef bint get_state_nth_obsd37(self, uint32_t nr, pf_state_obsd37 *out) except -1:
        """OpenBSD 3.7's DIOCGETSTATE: the nr-th state of the id tree, raw kernel form."""
        cdef pf_kstate *st
        cdef int err
        self.lock()
        st = pf_state_nth(self.t, nr, &err)
        if st != NULL:
            pf_state_export_obsd37(self.t, out, st, pf_uptime(), pf_wallclock())
        self.unlock()
        if err:
            raise NoMemory("no memory to order the states")
        return st != NULL

    cdef bint get_state_nth_nbsd(self, uint32_t nr, pfsync_state_nbsd *out) except -1:
        """NetBSD's DIOCGETSTATE: the nr-th state of the id tree, NetBSD's pfsync form."""
        cdef pf_kstate *st
        cdef int err
        self.lock()
        st = pf_state_nth(self.t, nr, &err)
        if st != NULL:
            pfsync_state_export_nbsd(self.t, out, st, pf_uptime())
        self.unlock()
        if err:
            raise NoMemory("no memory to order the states")
        return st != NULL

    cdef unsigned int kill_states_obsd37(self, const pf_kstate_kill *k):
        cdef pf_state_table *t = self.t
        cdef pf_kstate *st
        cdef pf_kstate *nxt
        cdef unsigned int killed = 0
        self.lock()
        with nogil:
            st = t.ahead
            while st != NULL:
                nxt = st.anext
                if pf_state_kill_match_obsd37(st, k):
                    pf_unlink_state(t, st)
                    killed += 1
                st = nxt
        self.unlock()
        return killed

    cdef int import_state_obsd37(self, const pf_state_obsd37 *sp) except -1:
        """OpenBSD 3.7's DIOCADDSTATE: the kernel copied the user's pf_state and replaced only
        its rule pointers (default rule), creation (now), counters (0) and kernel pointers.
        `expire` stays what it was there, the wall-clock time of the last activity (kept within
        [boot, now] here). Beyond that kernel: af, direction and peer states are checked (EINVAL)
        so that no state the datapath cannot handle enters the table."""
        cdef pf_kstate tmpl
        cdef pf_state_key_cmp wire, stack
        cdef uint8_t af = _af_old(sp.af)
        cdef uint32_t now, wall
        cdef int64_t idle
        if sp.timeout >= PFTM_MAX:
            raise Invalid("timeout index out of range")
        _check_old(af, sp.direction, sp.src.state, sp.dst.state)
        name = _old_kif(self, sp.u.ifname)
        pf_state_key_fill(&wire, af, sp.proto, &sp.ext.addr, &sp.gwy.addr, sp.ext.port, sp.gwy.port)
        pf_state_key_fill(&stack, af, sp.proto, &sp.ext.addr, &sp.lan.addr, sp.ext.port, sp.lan.port)
        memset(&tmpl, 0, sizeof(tmpl))
        tmpl.id = sp.id
        tmpl.creatorid = sp.creatorid
        _peer_from_obsd37(&sp.src, &tmpl.src)
        _peer_from_obsd37(&sp.dst, &tmpl.dst)
        memcpy(&tmpl.rt_addr, &sp.rt_addr, sizeof(pf_addr))
        tmpl.rule = tmpl.anchor = tmpl.nat_rule = PF_NO_RULE
        tmpl.direction = sp.direction
        tmpl.log = sp.log
        tmpl.timeout = sp.timeout
        if sp.allow_opts:
            tmpl.state_flags = PFSTATE_ALLOWOPTS
        now = pf_uptime()
        wall = pf_wallclock()
        idle = <int64_t>wall - <int64_t>sp.expire
        idle = 0 if idle < 0 else (now if idle > now else idle)
        tmpl.creation = now
        tmpl.expire = now - <uint32_t>idle
        return _insert_old(self, name, &tmpl, &wire, &stack)

    cdef int import_state_nbsd(self, const pfsync_state_nbsd *sp) except -1:
        """NetBSD's DIOCADDSTATE (pf_state_add/pf_state_import): keys, id, creatorid, peers (host
        order, but mss taken through ntohs() -- so NetBSD did), timeout and expire (seconds left,
        host order) are imported; log, allow_opts, rt_addr and scrub data are not. The same
        value checks as OpenBSD 3.7's form."""
        cdef const char *p = <const char *>sp
        cdef pf_kstate tmpl
        cdef pf_state_key_cmp wire, stack
        cdef pf_addr lan, gwy, ext
        cdef uint16_t lan_port, gwy_port, ext_port
        cdef uint8_t af = _af_old(sp.af)
        cdef uint32_t now
        if sp.timeout >= PFTM_MAX:
            raise Invalid("timeout index out of range")
        _check_old(af, sp.direction, sp.src.state, sp.dst.state)
        name = _old_kif(self, sp.ifname)
        memcpy(&lan, p + NBSD_LAN_OFF, sizeof(pf_addr))
        memcpy(&lan_port, p + NBSD_LAN_OFF + sizeof(pf_addr), 2)
        memcpy(&gwy, p + NBSD_GWY_OFF, sizeof(pf_addr))
        memcpy(&gwy_port, p + NBSD_GWY_OFF + sizeof(pf_addr), 2)
        memcpy(&ext, p + NBSD_EXT_OFF, sizeof(pf_addr))
        memcpy(&ext_port, p + NBSD_EXT_OFF + sizeof(pf_addr), 2)
        pf_state_key_fill(&wire, af, sp.proto, &ext, &gwy, ext_port, gwy_port)
        pf_state_key_fill(&stack, af, sp.proto, &ext, &lan, ext_port, lan_port)
        memset(&tmpl, 0, sizeof(tmpl))
        memcpy(&tmpl.id, p + NBSD_ID_OFF, 8)
        tmpl.creatorid = sp.creatorid
        _peer_from_nbsd(&sp.src, &tmpl.src)
        _peer_from_nbsd(&sp.dst, &tmpl.dst)
        tmpl.rule = tmpl.anchor = tmpl.nat_rule = PF_NO_RULE
        tmpl.direction = sp.direction
        tmpl.timeout = sp.timeout
        now = pf_uptime()
        tmpl.creation = now
        tmpl.expire = now
        if sp.expire:
            tmpl.expire -= self.t.timeouts[sp.timeout] - sp.expire
        return _insert_old(self, name, &tmpl, &wire, &stack)

    # -- control-plane helpers (tests, benchmarks, future source tracking) -----------------
    def account(self, uint64_t id, uint32_t creatorid, int dirndx, uint32_t packets, uint32_t length):
        """Count `packets` packets of `length` bytes each on a state, as the datapath does."""
        cdef pf_kstate *st
        cdef uint32_t i
        if dirndx not in (0, 1):
            raise Invalid("dirndx must be 0 or 1")
        self.lock()
        try:
            st = pf_find_state_byid(self.t, id, creatorid)
            if st == NULL:
                return False
            for i in range(packets):
                pf_state_account(st, dirndx, length, pf_uptime())
            return True
        finally:
            self.unlock()

    def add_src_node(self, af, addr, raddr=b"", uint32_t rule=PF_NO_RULE, uint32_t states=0,
                     ruletype=0, conn_rate=(0, 0, 0, 0), uint32_t age=0, uint32_t expire_in=0):
        """Insert a source node as source tracking will (addresses as 16-byte bytes)."""
        cdef pf_ksrc_node *sn
        cdef uint32_t now = pf_uptime()
        a = bytes(addr).ljust(16, b"\0")[:16]
        r = bytes(raddr).ljust(16, b"\0")[:16]
        self.lock()
        try:
            if pf_find_src_node(self.t, af, <const pf_addr *><const char *>a, rule) != NULL:
                raise Exists("source node exists")
            sn = pf_src_node_alloc(self.t)
            if sn == NULL:
                raise NoMemory("source node limit reached")
            sn.af = af
            memcpy(&sn.addr, <const char *>a, 16)
            memcpy(&sn.raddr, <const char *>r, 16)
            sn.rule = rule
            sn.ruletype = ruletype
            sn.states = states
            sn.creation = now - age
            sn.expire = now + expire_in if expire_in else 0
            limit, seconds, count, last_age = conn_rate
            sn.conn_rate.limit = limit
            sn.conn_rate.seconds = seconds
            sn.conn_rate.count = count
            sn.conn_rate.last = now - <uint32_t>last_age
            pf_src_node_link(self.t, sn)
        finally:
            self.unlock()

    @property
    def src_nodes(self):
        return self.t.nsrc
