# Scrub on the datapath (FreeBSD 12.1 sys/netpfil/pf/pf_norm.c): IPv4/IPv6 fragment reassembly,
# no-df, random-id, min-ttl, set-tos, and pf_normalize_tcp's header checks and max-mss clamp, for
# packets a scrub rule matched. pf_test finds the rule (first match of PF_RULESET_SCRUB, as
# pf_normalize_ip walks it) and calls pf_norm_packet at the start of pf_test_locked; pf_tap cuts
# what needs it on output (IPv4 without DF above the MTU, reassembled IPv6: pf_refragment6).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pfkern.pfvar cimport pf_rule
from pfkern.pf_tap cimport tap_pkt

cdef enum:
    NORM_PASS = 0       # go on with p (possibly now the reassembled packet)
    NORM_DROP = 1       # drop, *reason set (PFRES_FRAG, PFRES_NORM, PFRES_SHORT, PFRES_MEMORY...)
    NORM_HELD = 2       # a fragment kept for reassembly: the router must not forward it

cdef enum:
    NF_HASH = 1024              # fragment queues' hash buckets (power of two)
    NF_HEADROOM = 128           # bytes before the reassembled packet's IP header (Ethernet and
                                # virtio headers go there)
    NF_MAX_FRENT = 64           # 12.1's PF_MAX_FRENT_PER_FRAGMENT

# One fragment held (struct pf_frent): malloc'd with a copy of the packet behind it (FreeBSD keeps
# the mbuf from its zone); the number held is bounded by the frags limit.
ctypedef struct nf_frent:
    nf_frent *next              # the queue, by offset
    uint8_t *pkt                # the fragment as it arrived (after no-df), headers first
    uint16_t hdrlen             # bytes before its data: IPv4 header / IPv6 up to and with the
                                # fragment header
    uint16_t extoff             # IPv6: the last extension header before the fragment header, 0
    uint16_t off                # where its data goes in the datagram (after cuts)
    uint16_t len                # how much of it (after cuts)
    uint16_t skip               # bytes of its data cut from the front (overlaps)
    uint8_t mff                 # more fragments

# One datagram being reassembled (struct pf_fragment).
ctypedef struct nf_frag:
    nf_frag *hnext              # hash chain
    nf_frag *newer              # the age list (pf_fragqueue: newest first, purge from the oldest)
    nf_frag *older
    nf_frent *q
    uint32_t id                 # IPv4: ip_id; IPv6: ip6f_ident (both as on the wire)
    uint32_t timeout            # last touched (uptime seconds)
    uint16_t maxlen             # the largest fragment's data length (for pf_refragment6)
    uint16_t entries            # fragments added after the first (12.1's fr_entries)
    uint8_t af
    uint8_t proto               # IPv4 protocol; 0 for IPv6 (only the first fragment's counts)
    uint8_t src[16]
    uint8_t dst[16]

# The fragment cache and the buffer a reassembled packet is built in (it stays valid until the
# next reassembly completes: the router is done with a packet before it reads the next).
ctypedef struct pf_norm_state:
    unsigned int *limits        # core.limit (PF_LIMIT_MAX entries): frags at PF_LIMIT_FRAGS
    uint32_t *timeouts          # core.timeout: PFTM_FRAG
    uint64_t *counters          # pf_status.counters: REASON_SET counts the drops here
    nf_frag *hash[NF_HASH]
    nf_frag *newest
    nf_frag *oldest
    unsigned int nfrent         # fragments held
    unsigned int nfrag          # datagrams being reassembled
    uint8_t *rbuf               # NF_HEADROOM + IP_MAXPACKET + slack
    uint8_t rnd[256]            # random bytes for random-id (getrandom, refilled)
    unsigned int rnd_pos

# allocated/freed by pf_test's Filter (Python side calls these). limit_frags: core.limit, the
# whole PF_LIMIT_MAX array (as timeouts is core.timeout): the frags limit is read at
# [PF_LIMIT_FRAGS] on every allocation, so DIOCSETLIMIT takes effect at once (0 = no limit, as a
# zone without maximum).
cdef pf_norm_state *pf_norm_new(unsigned int *limit_frags, uint32_t *timeouts, uint64_t *status_counters) noexcept nogil
cdef void pf_norm_free(pf_norm_state *n) noexcept nogil
# pf_normalize_ip / pf_normalize_ip6 (+ pf_scrub_ip, and for TCP the max-mss clamp of
# pf_normalize_tcp) for one packet that scrub rule r (never NULL; action PF_SCRUB) matched;
# dir PF_IN/PF_OUT; now = uptime seconds; caller holds the engine lock.
cdef int pf_norm_packet(pf_norm_state *n, tap_pkt *p, int dir, const pf_rule *r, int *reason, uint32_t now) noexcept nogil
# pf_purge_expired_fragments: drop queues older than timeouts[PFTM_FRAG]; returns how many
# (datagrams dropped)
cdef unsigned int pf_norm_purge(pf_norm_state *n, uint32_t now) noexcept nogil
# how many fragments are held now (pf_status.fcounters / the frags limit)
cdef unsigned int pf_norm_count(pf_norm_state *n) noexcept nogil
