# The pf core's internal C types (FreeBSD's pfvar.h `#ifdef _KERNEL` part): what the state table
# and, later, the datapath work on without the GIL. Never part of the ABI; layouts may change.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


from pfkern.pfvar cimport *   # the header's types, declared once in pfvar.pxd

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *, const void *)
    int pthread_mutex_lock(pthread_mutex_t *)
    int pthread_mutex_unlock(pthread_mutex_t *)
    int pthread_mutex_destroy(pthread_mutex_t *)

cdef extern from "<sys/socket.h>" nogil:
    enum:
        AF_INET
        AF_INET6

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t ntohs(uint16_t)
    uint16_t htons(uint16_t)
    uint32_t ntohl(uint32_t)
    uint32_t htonl(uint32_t)

cdef extern from "<endian.h>" nogil:
    uint64_t htobe64(uint64_t)
    uint64_t be64toh(uint64_t)


# BSD's TCPS_FIN_WAIT_2 (netinet/tcp_fsm.h): peer states travel with BSD values; Linux has its own.
cdef enum:
    AF_INET6_BSD = 28             # FreeBSD's AF_INET6, accepted on input
    TCPS_CLOSED_ = 0
    TCPS_FIN_WAIT_2_ = 9
    PF_NO_RULE = 0xffffffff       # rule/anchor/nat_rule number of "no such rule"
    PF_IFNAMSIZ_ = 16


# --- state keys and states (FreeBSD pf_state_key / pf_state) ----------------------------------

# The part of a key that is hashed and compared byte for byte (FreeBSD pf_state_key_cmp):
# addresses and ports in network order, AF_INET addresses zero beyond their 4 bytes, pad zero.
ctypedef struct pf_state_key_cmp:
    pf_addr addr[2]
    uint16_t port[2]
    uint8_t af
    uint8_t proto
    uint8_t pad[2]

cdef struct pf_kstate

# A key and the states using it: states[PF_SK_WIRE] lists the states whose wire key it is,
# states[PF_SK_STACK] those whose stack key it is (one key serves both when nothing is
# translated). Each list holds if-bound states before floating ones, as pf_find_state expects.
cdef struct pf_kstate_key:
    pf_state_key_cmp k
    uint64_t hash
    pf_kstate_key *hnext          # key hash chain
    pf_kstate_key **hpprev
    pf_kstate *head[2]            # [PF_SK_WIRE], [PF_SK_STACK]
    pf_kstate *tail[2]

# One side's TCP tracking (FreeBSD pf_state_peer with its scrub record inline: no allocation).
ctypedef struct pf_kstate_peer:
    uint32_t seqlo                # max sequence number sent
    uint32_t seqhi                # max the other end ACKed + window
    uint32_t seqdiff              # sequence number modulator
    uint16_t max_win
    uint16_t mss
    uint8_t state                 # TCPS_* (BSD values), PFUDPS_*, PFOTHERS_*
    uint8_t wscale
    uint8_t tcp_est               # reached ESTABLISHED (src-node connection count)
    uint8_t scrub                 # the scrub record below is in use
    uint16_t pfss_flags
    uint8_t pfss_ttl
    uint32_t pfss_ts_mod
    uint32_t pfss_tsecr
    uint32_t pfss_tsval
    uint32_t pfss_tsval0

cdef struct pf_ksrc_node

cdef struct pf_kstate:
    uint64_t id                   # as exported: htobe64(counter), or what pfsync gave
    uint32_t creatorid            # as exported (hostid of the creator)
    pf_kstate_key *key[2]         # [PF_SK_WIRE], [PF_SK_STACK]; the same key when untranslated
    pf_kstate *knext[2]           # place in key[i]'s list i
    pf_kstate *kprev[2]
    pf_kstate *inext              # id hash chain
    pf_kstate **ipprev
    pf_kstate *anext              # every state, in insertion order (DIOCGETSTATES walks it)
    pf_kstate *aprev
    pf_kstate_peer src
    pf_kstate_peer dst
    pf_addr rt_addr
    char ifname[PF_IFNAMSIZ_]     # interface the state is bound to, "" = floating (kif "all")
    const char *label             # the rule's label (owned by the ruleset), NULL = none
    uint32_t rule                 # rule numbers, PF_NO_RULE for none
    uint32_t anchor
    uint32_t nat_rule
    uint32_t creation             # uptime seconds (CLOCK_MONOTONIC), FreeBSD time_uptime
    uint32_t expire               # uptime of the last activity; pf_state_expires adds the timeout
    uint64_t packets[2]           # [0] the state's direction, [1] the reverse
    uint64_t bytes[2]
    pf_ksrc_node *src_node
    pf_ksrc_node *nat_src_node
    uint16_t state_flags          # PFSTATE_*
    uint8_t af
    uint8_t proto
    uint8_t direction             # PF_IN / PF_OUT
    uint8_t log
    uint8_t timeout               # PFTM_* index (PFTM_PURGE: expire now)
    uint16_t tag                  # the rule's tag, given to every packet of the state
    uint8_t nat_rs                # PF_RULESET_* of nat_rule (the number alone is ambiguous)
    # The rules that made the state (FreeBSD's s->rule/anchor/nat_rule): the datapath keeps the
    # compiled generation they belong to alive while gen_refs (its count of states and source
    # nodes) is not zero, so these stay valid for the state's life. NULL: the default rule, or a
    # state made by DIOCADDSTATE.
    uint64_t *gen_refs
    void *rule_r                  # struct pf_rule *
    void *anchor_r
    void *nat_r
    void *rule_c                  # pf_test's compiled rule (cf_cold *) of rule_r / anchor_r
    void *anchor_c
    uint8_t rt_if                 # route-to/reply-to/dup-to: the datapath interface + 1 (rt_kif)


# --- source nodes (FreeBSD pf_src_node) ------------------------------------------------------

cdef struct pf_ksrc_node:
    pf_ksrc_node *hnext           # hash chain (key: af, addr, rule)
    pf_ksrc_node **hpprev
    pf_ksrc_node *anext           # every node, in insertion order
    pf_ksrc_node *aprev
    pf_addr addr
    pf_addr raddr
    uint32_t rule                 # rule number
    char ifname[PF_IFNAMSIZ_]
    uint64_t bytes[2]
    uint64_t packets[2]
    uint32_t states
    uint32_t conn
    pf_threshold conn_rate
    uint32_t creation             # uptime seconds
    uint32_t expire               # uptime when it may be purged (0 while states use it)
    uint8_t af
    uint8_t ruletype
    uint8_t killed                # marked by DIOCKILLSRCNODES before states let go of it
    uint64_t *gen_refs            # as pf_kstate.gen_refs: keeps r's generation alive
    void *r                       # struct pf_rule * whose src_nodes count this node is in


# --- the table -------------------------------------------------------------------------------

# Fixed-size items from malloc'd chunks with a free list: state creation on the datapath does not
# call malloc once the pool has grown to the working set (FreeBSD's uma zones).
ctypedef struct pf_mempool:
    size_t size                   # item size
    size_t per_chunk
    void *free                    # free list threaded through the items
    void *chunks                  # chunk list (first word of each chunk links the next)
    size_t used                   # items handed out

# Everything the state code needs, reachable from C without Python objects. Every pf_state_*
# function expects `lock` held by its caller (the control plane takes it around each call; the
# datapath around a burst). The pointers into the core (status counters, default timeouts,
# limits, hostid) stay valid while the StateTable object holds its PfCore.
ctypedef struct pf_state_table:
    pthread_mutex_t lock
    uint64_t seed                 # hash seed, random per table (no chosen-collision floods)
    pf_kstate_key **khash         # key hash buckets
    size_t kmask                  # buckets - 1
    size_t nkeys
    pf_kstate **ihash             # id hash buckets
    size_t imask
    size_t nstates
    pf_kstate *ahead              # all states
    pf_kstate *atail
    uint64_t next_id              # ids of locally created states (host order)
    pf_ksrc_node **shash          # source node hash buckets
    size_t smask
    size_t nsrc
    pf_ksrc_node *shead           # all source nodes
    pf_ksrc_node *stail
    pf_mempool state_pool
    pf_mempool key_pool
    pf_mempool src_pool
    uint64_t *fcounters           # core.status.fcounters (FCNT_*)
    uint64_t *scounters           # core.status.scounters (SCNT_*)
    uint32_t *src_nodes_gauge     # core.status.src_nodes
    uint32_t *timeouts            # core.timeout (the default rule's timeouts)
    unsigned int *limits          # core.limit (PF_LIMIT_*)
    uint32_t *hostid              # core.status.hostid
    pf_kstate *pcursor            # the purge's place in the all-states list while it lets go of
                                  # the lock between slices (pf_unlink_state moves it on)
    int purging                   # a purge is under way (one at a time)


# Filter of DIOCKILLSTATES (FreeBSD 13's pf_kstate_kill): decoded from pfioc_state_kill, matched
# by pf_state_table.kill_states.
ctypedef struct pf_kstate_kill:
    uint8_t af                    # 0 = any
    int proto                     # 0 = any
    pf_rule_addr src              # addr/mask/neg, port_op/port[] (network order)
    pf_rule_addr dst
    char ifname[PF_IFNAMSIZ_]     # "" = any; "all" = floating states
    char label[64]                # "" = any


# --- address and port matching (pf.c pf_match_addr / pf_match_port), shared with rules ------

cdef inline bint pf_match_addr(uint8_t neg, const pf_addr *a, const pf_addr *m, const pf_addr *b,
                               uint8_t af) noexcept nogil:
    """a == b under mask m (neg inverts); an unknown family never matches (so neg matches)."""
    cdef bint match = False
    cdef int i
    if af == AF_INET:
        match = (a.addr32[0] & m.addr32[0]) == (b.addr32[0] & m.addr32[0])
    elif af == AF_INET6:
        match = True
        for i in range(4):
            if (a.addr32[i] & m.addr32[i]) != (b.addr32[i] & m.addr32[i]):
                match = False
    return not match if neg else match


cdef inline bint pf_match(uint8_t op, uint32_t a1, uint32_t a2, uint32_t p) noexcept nogil:
    if op == PF_OP_IRG:
        return p > a1 and p < a2
    if op == PF_OP_XRG:
        return p < a1 or p > a2
    if op == PF_OP_RRG:
        return p >= a1 and p <= a2
    if op == PF_OP_EQ:
        return p == a1
    if op == PF_OP_NE:
        return p != a1
    if op == PF_OP_LT:
        return p < a1
    if op == PF_OP_LE:
        return p <= a1
    if op == PF_OP_GT:
        return p > a1
    if op == PF_OP_GE:
        return p >= a1
    return False


cdef inline bint pf_match_port(uint8_t op, uint16_t a1, uint16_t a2, uint16_t p) noexcept nogil:
    """Ports in network order, compared as numbers."""
    return pf_match(op, ntohs(a1), ntohs(a2), ntohs(p))
