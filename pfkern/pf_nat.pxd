# Address translation on the datapath (FreeBSD 12.1 pf.c: pf_map_addr, pf_get_sport, pf_change_ap,
# pf_change_a, pf_change_icmp and pf_get_translation's address arithmetic): address pools, port
# allocation, and rewriting a packet in place with incremental checksums. The translation rules
# themselves are matched by pf_test (the same compiled walk as filter rules, first match wins).
# Everything here runs without the GIL on C structs, allocation-free.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t
from pfkern.pfvar cimport pf_addr
from pfkern.pfvar_priv cimport pf_state_table
from pfkern.pf_tap cimport tap_pkt
from pfkern.pf_table cimport pfr_dp


# One pool address of a translation rule (struct pf_pooladdr, compiled).
# An "(ifname)" entry is compiled into one address entry per interface address (the datapath's
# interfaces are fixed while it runs); a <table> entry walks the table (round-robin pools only,
# as FreeBSD).
cdef enum:
    NP_ADDR = 0                 # address/mask
    NP_NONE = 1                 # no-route, or a table not attached: no address here
    NP_TABLE = 2                # <table>: tbl

ctypedef struct cf_pooladdr:
    uint8_t kind
    uint8_t af                  # Linux AF_INET / AF_INET6; 0 = the rule's family
    pf_addr addr
    pf_addr mask
    int16_t ifidx               # route-to pools: the entry's interface (tap_if.index), -1 none
    pfr_dp *tbl                 # NP_TABLE: pf_table's datapath handle

# A rule's pool (struct pf_pool): its addresses and the round-robin / random position, which
# lives as long as the compiled generation (FreeBSD keeps it in the rule).
ctypedef struct cf_pool:
    int n
    cf_pooladdr *a
    int cur                     # rpool.cur
    int tblidx                  # rpool.tblidx: the position in cur's table
    uint8_t opts                # PF_POOL_*
    uint32_t key[4]             # source-hash key
    uint16_t proxy_port[2]      # host order
    pf_addr counter
    int last                    # the entry nat_map_addr last took an address from (its interface
                                # is route-to's: FreeBSD's rpool.cur->kif); -1 after a sticky one

# xorshift64 state for random pools and port picks (the engine's).
cdef uint32_t nat_rand(uint64_t *rng) noexcept nogil

# naddr = raddr's bits under rmask, saddr's elsewhere (PF_POOLMASK).
cdef void nat_poolmask(pf_addr *naddr, const pf_addr *raddr, const pf_addr *rmask,
                       const pf_addr *saddr, uint8_t af) noexcept nogil

# pf_map_addr: the pool's address for a connection from saddr; 0 = found, 1 = none.
# init_addr (may be NULL) remembers the first address a port search started from; sticky (may
# be NULL) is the address a sticky-address source node already holds for saddr.
cdef int nat_map_addr(cf_pool *pool, uint8_t af, const pf_addr *saddr, pf_addr *naddr,
                      pf_addr *init_addr, uint64_t *rng, const pf_addr *sticky) noexcept nogil

# pf_get_sport: an address of the pool and a source port (network order) in [low, high] (host
# order; 0/0 = keep sport, static-port) such that no state holds the reply's wire key
# (daddr:dport -> naddr:nport); 0 = found, 1 = the pool is exhausted. Caller holds t.lock.
cdef int nat_get_sport(pf_state_table *t, cf_pool *pool, uint8_t af, uint8_t proto,
                       const pf_addr *saddr, uint16_t sport, const pf_addr *daddr, uint16_t dport,
                       pf_addr *naddr, uint16_t *nport, uint16_t low, uint16_t high,
                       uint64_t *rng, const pf_addr *sticky) noexcept nogil

# The first usable entry of the pool whose network holds a (route-to: the interface of the address
# nat_map_addr chose); -1 when none.

# Rewrite the packet's source (src = True) or destination address and port in place: addresses
# in the IP header (IPv4 header checksum), ports of TCP/UDP or the ICMP/ICMPv6 echo id, and the
# transport checksum (incrementally; a partial one of a vnet frame as a plain pseudo-header sum).
cdef void nat_rewrite(tap_pkt *p, bint src, const pf_addr *na, uint16_t np) noexcept nogil

# An ICMP error whose quoted packet belongs to a translated state: the quoted packet's address
# and port at `inner_src` (its source) or its destination become na:np, the outer address on the
# same side of the error (outer destination when inner_src, else outer source) becomes na too;
# inner IPv4 header, inner UDP and the ICMP checksums stay right.
cdef void nat_rewrite_icmp_error(tap_pkt *p, uint8_t *ip2, uint8_t proto2, uint32_t off2,
                                 uint32_t avail, bint inner_src, const pf_addr *na,
                                 uint16_t np) noexcept nogil

# Ones' complement helpers (checksum words read and written in memory order).
cdef uint32_t csum_words(const uint8_t *data, uint32_t n) noexcept nogil
cdef uint16_t csum_fold(uint32_t sum) noexcept nogil
