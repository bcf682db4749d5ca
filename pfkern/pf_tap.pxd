# The datapath's C view (DESIGN.md §4): TAP interfaces, the router, and the hook where pf_test
# goes. Everything here runs without the GIL on C structs; `from pfkern.pf_tap cimport *`.
#
# Per-packet flow (tap_run, one thread):
#   read frame -> Ethernet -> ARP | IPv4 | IPv6 -> validate header -> fill tap_pkt
#   -> tap_pf_hook(PF_IN, rcvif) -> local (echo, NDP, errors) | forward (TTL/hop limit,
#   longest-prefix route) -> tap_pf_hook(PF_OUT, oif) -> MTU (IPv4 without DF: fragments;
#   IPv6 pf reassembled: cut again as it came, pf_refragment6) -> neighbour -> write.
# Locally generated IP packets (ICMP errors, echo replies, NS/NA) pass tap_pf_hook(PF_OUT) too.
#
# Offloads (an interface added with vnet=True: IFF_VNET_HDR, TUNSETOFFLOAD CSUM|TSO4|TSO6|TSO_ECN):
# every frame read/written on it is preceded by a 10-byte struct virtio_net_hdr (tap_vnet_hdr; the
# 12-byte mrg_rxbuf variant is not used: its num_buffers only matters to virtio rings). The kernel
# may hand us TCP super-frames up to 64 KiB (GSO) and partial checksums; tap_pkt carries these
# facts (csum_partial, gso_*) through pf_test to the output, where a vnet interface gets them back
# in its header and any other interface gets complete checksums and MSS-sized segments (software).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t

cdef enum:
    TAP_MAXIF = 16
    TAP_MAXADDR = 8
    TAP_MAXROUTE = 256
    TAP_NBR_SIZE = 1024         # neighbour cache slots (power of two)
    TAP_PEND_SLOTS = 128        # frames waiting for a neighbour, shared by all
    TAP_PEND_PER_NBR = 16       # FreeBSD's arp_maxhold
    TAP_PEND_FRAME = 9216 + 14
    TAP_FRAME_MAX = 65536 + 14
    TAP_BATCH = 64              # frames read from one fd before looking at the others
    TAP_RT_ROUTE = 1            # tap_pkt.rt_kind: leave by rt_ifidx towards rt_addr instead
    TAP_RT_DUP = 2              # ... send a copy that way, the packet goes on as routed
    TAP_VNET_HDR_LEN = 10       # sizeof(struct virtio_net_hdr)
    TAP_VNET_F_NEEDS_CSUM = 1   # VIRTIO_NET_HDR_F_NEEDS_CSUM
    TAP_VNET_F_DATA_VALID = 2   # VIRTIO_NET_HDR_F_DATA_VALID
    TAP_GSO_NONE = 0            # VIRTIO_NET_HDR_GSO_*
    TAP_GSO_TCPV4 = 1
    TAP_GSO_TCPV6 = 4
    TAP_GSO_ECN = 0x80          # or'ed in: the super-frame carries ECN (CWR on its first segment)

# Per-interface engine statistics (index into tap_if.stats); names in pf_tap.STAT_NAMES.
cdef enum:
    ST_RX_FRAMES
    ST_RX_BYTES
    ST_TX_FRAMES
    ST_TX_BYTES
    ST_TX_ERRORS
    ST_DROP_SHORT        # frame shorter than its Ethernet / ARP / IP header
    ST_DROP_NOTUS        # unicast to another MAC
    ST_DROP_ETHERTYPE    # neither ARP, IPv4 nor IPv6
    ST_DROP_BADHDR       # IP version, header length, multicast source
    ST_DROP_BADSUM       # IPv4 header checksum
    ST_DROP_BADLEN       # IP length beyond the frame / shorter than the header
    ST_DROP_PF           # tap_pf_hook said PF_DROP
    ST_DROP_NOROUTE
    ST_DROP_TTL
    ST_DROP_MTU          # too big: DF (ICMP sent), a super-frame, or unfragmentable
    ST_DROP_NONBR        # neighbour unresolved: queue full or resolution failed
    ST_DROP_LOCAL        # to us but nothing to answer (TCP, multicast, fragments, ...)
    ST_FORWARDED
    ST_LOCAL_IN
    ST_ICMP_OUT          # ICMP/ICMPv6 errors and echo replies we sent
    ST_ARP_RX
    ST_ARP_TX
    ST_ND_RX
    ST_ND_TX
    ST_NSTATS

# Offload statistics per interface (tap_engine.vstats[ifidx]); names in pf_tap.VSTAT_NAMES. Kept
# apart from tap_if.stats, whose size other modules' compiled code depends on.
cdef enum:
    VS_RX_CSUM_PARTIAL   # frames received with a partial checksum (NEEDS_CSUM)
    VS_RX_GSO            # TCP super-frames received
    VS_TX_CSUM_PARTIAL   # frames written with NEEDS_CSUM (not GSO) to a vnet interface
    VS_TX_GSO            # super-frames written whole to a vnet interface
    VS_SW_CSUM           # checksums completed in software (non-vnet output, local delivery)
    VS_SW_GSO            # super-frames segmented in software (non-vnet output)
    VS_SW_SEGMENTS       # segments those made
    VS_DROP_VNET         # unusable virtio_net_hdr (bad offsets, GSO type not offered) or unsegmentable
    VS_NSTATS

# Fragmentation statistics per interface (tap_engine.fstats[ifidx]); names in pf_tap.FSTAT_NAMES.
cdef enum:
    FS_FRAG_OK           # IPv4 packets fragmented on output (ip_output's ips_fragmented)
    FS_FRAG_CREATED      # fragments those made (ips_ofragments)
    FS_FRAG_FAIL         # could not be fragmented (MTU too small for 8 bytes of data)
    FS_REFRAG6           # reassembled IPv6 packets cut again (pf_refragment6)
    FS_REFRAG6_CREATED   # fragments those made
    FS_REFRAG6_FAIL      # refragmentation impossible (maxlen < 8) or fragments above the MTU
    FS_NSTATS

# struct virtio_net_hdr in the host's order (the legacy virtio default tun uses; pfd never sets
# TUNSETVNETLE/BE). csum_start counts from the Ethernet header.
ctypedef struct tap_vnet_hdr:
    uint8_t flags
    uint8_t gso_type
    uint16_t hdr_len
    uint16_t gso_size
    uint16_t csum_start
    uint16_t csum_offset

# pf's per-interface counters, flattened as pf_if.Kif expects: [af inet/inet6][dir in/out]
# [pass/block] -> af * 4 + dir * 2 + action.
ctypedef struct tap_counters:
    uint64_t packets[8]
    uint64_t bytes[8]

ctypedef struct tap_if:
    int fd
    int index                   # position in tap_engine.ifs
    int ifindex                 # host ifindex when attached
    uint32_t mtu
    char name[16]               # zero-padded, as pf keys interfaces
    uint8_t mac[6]
    int n4
    int n6                      # a6[0] is the link-local address derived from mac
    uint8_t a4[TAP_MAXADDR][4]
    uint8_t p4[TAP_MAXADDR]
    uint8_t a6[TAP_MAXADDR][16]
    uint8_t p6[TAP_MAXADDR]
    tap_counters pf
    uint64_t stats[ST_NSTATS]

# The packet descriptor handed to pf_test: headers located once, pointers into the frame, so
# pf_test reads L3/L4 without re-parsing (FreeBSD's struct pf_pdesc plays this role).
ctypedef struct tap_pkt:
    uint8_t *l3                 # IP header (the Ethernet header is the 14 bytes before it)
    uint8_t *l4                 # transport header; NULL for a non-first fragment
    uint32_t len                # IP total length (pf's pd->tot_len); bytes from l3 on
    uint32_t l4off              # l4 - l3: IPv4 header length / IPv6 header + extensions
    uint8_t af                  # AF_INET or AF_INET6 (Linux values)
    uint8_t proto               # final protocol after IPv6 extension headers
    uint8_t ttl                 # TTL / hop limit as received
    uint8_t frag                # 0 none, 1 first fragment, 2 later fragment
    uint8_t l4ok                # the minimal header of proto is present from l4 on
    uint8_t tcp_flags
    uint8_t icmp_type
    uint8_t icmp_code
    uint16_t sport              # network order; ICMP/ICMPv6 echo: the identifier
    uint16_t dport              # network order; ICMP/ICMPv6 echo: the identifier
    uint8_t *src                # address bytes inside l3 (4 or 16): castable to pf_addr *
    uint8_t *dst
    tap_if *rcvif               # input interface; NULL for packets the router generated
    uint16_t pf_tag             # pf's tag (tag/tagged): set on input, seen again on output
    # Offloads (vnet interfaces only; all 0 for packets from other interfaces and generated ones):
    uint8_t csum_partial        # 1: the L4 checksum field holds only the pseudo-header sum, folded
                                # and NOT complemented (VIRTIO_NET_HDR_F_NEEDS_CSUM; Linux's
                                # CHECKSUM_PARTIAL): the engine or the receiving kernel sums the
                                # data in later. A NAT changing addresses must update that field as
                                # a plain sum (x' = ~csum_upd16(~x, old, new)) and must not fold port
                                # changes into it (ports are data, summed later).
    uint8_t gso_type            # TAP_GSO_TCPV4 / TAP_GSO_TCPV6 (| TAP_GSO_ECN) for a super-frame
    uint16_t gso_size           # super-frame: TCP payload per segment (the MSS); 0 = not GSO. A
                                # super-frame (len up to 65535) is one TCP segment to pf; it leaves
                                # as gso_size-byte segments, so the MTU applies to those.
    uint16_t csum_start         # csum_partial: where summing starts, counted from l3 (= l4off
                                # for TCP/UDP)
    uint16_t csum_offset        # csum_partial: the checksum field, from csum_start (16 TCP, 6 UDP)
    uint16_t gso_hdr_len        # the header's hdr_len, passed on unchanged
    # pf's route-to / reply-to / dup-to for the pass just made (pf_route): set by pf_test, acted
    # on by the router after the hook; rt_hops counts how often pf rerouted this packet
    # (FreeBSD's pf_mtag->routed: past 3 it is dropped).
    uint8_t rt_kind             # 0 none, TAP_RT_ROUTE, TAP_RT_DUP
    uint8_t rt_hops
    int16_t rt_ifidx            # tap_if.index to leave by
    uint8_t rt_addr[16]         # next hop; all zero: the packet's destination
    # appended (scrub, pf_norm): an IPv6 packet pf_norm reassembled from fragments, to be cut
    # again on output as pf_refragment6 does (forwarded packets only). parse_ip4/parse_ip6 zero
    # them; pf_norm sets them on the packet it hands back.
    uint16_t frag_max           # the largest fragment payload seen (FreeBSD's fr_maxlen); 0: not
                                # a reassembled IPv6 packet
    uint16_t frag_hdrlen        # the unfragmentable part: IPv6 header + extension headers that
                                # preceded the fragment header
    uint32_t frag_id            # the fragments' identification (as on the wire), reused

# pf_test's slot: called on input (PF_IN, rcvif) and output (PF_OUT, oif) of every IP packet;
# returns PF_PASS or PF_DROP. May rewrite the packet in place (NAT) keeping its length. The
# engine counts the interface counters itself from the return value (af/dir/pass-block, len).
ctypedef int (*tap_pf_test_t)(void *ctx, int dir, tap_if *ifp, tap_pkt *pkt) noexcept nogil

ctypedef struct tap_nbr:
    uint8_t used
    uint8_t af
    uint8_t state
    uint8_t probes
    int ifidx
    uint8_t addr[16]
    uint8_t mac[6]
    uint64_t expire_ms
    uint64_t next_probe_ms
    int qhead                   # pending slots, -1 = none
    int qlen

ctypedef struct tap_pend:
    int next
    int rcvif                   # input interface index, -1 when generated here
    uint32_t len                # frame length (Ethernet header included)
    uint8_t af
    uint8_t data[TAP_PEND_FRAME]

ctypedef struct tap_route:
    uint8_t af
    uint8_t plen
    uint8_t has_gw
    int ifidx
    uint8_t dst[16]
    uint8_t gw[16]

ctypedef struct tap_engine:
    int nif
    tap_if ifs[TAP_MAXIF]
    int nroute4
    int nroute6
    tap_route routes4[TAP_MAXROUTE]     # longest prefix first
    tap_route routes6[TAP_MAXROUTE]
    tap_nbr nbr[TAP_NBR_SIZE]
    tap_pend pend[TAP_PEND_SLOTS]
    int pfree
    int wakefd
    volatile int stop
    uint64_t now_ms
    uint64_t next_timer_ms
    uint32_t nbr_reachable_ms
    uint32_t nbr_probe_ms
    uint32_t nbr_max_probes
    uint16_t ip_id
    tap_pf_test_t pf_test
    void *pf_ctx
    uint8_t rxbuf[TAP_FRAME_MAX + 64]   # a vnet interface's header + frame fits (10 + 65550)
    uint8_t txbuf[TAP_FRAME_MAX + 64]
    # appended (offloads): compiled users of the fields above keep their offsets
    uint8_t vnet[TAP_MAXIF]                     # 1: ifs[i] was opened with IFF_VNET_HDR
    uint64_t vstats[TAP_MAXIF][VS_NSTATS]
    tap_vnet_hdr pend_vh[TAP_PEND_SLOTS]        # the offloads of pend[i]'s frame
    uint8_t dupbuf[TAP_FRAME_MAX + 64]  # dup-to's copy (Ethernet room before its IP header)
    # appended (fragmentation on output): IPv4 packets without DF larger than the MTU, and IPv6
    # packets pf_norm reassembled (tap_pkt.frag_max), leave as fragments built here one at a time
    uint64_t fstats[TAP_MAXIF][FS_NSTATS]
    uint8_t fragbuf[TAP_FRAME_MAX + 64]

# Header validation and the packet descriptor (ip_input's checks): fill p for the IPv4/IPv6 packet
# at l3 (avail bytes readable), 0 on success, -ST_* on failure. pf_norm reuses them for the
# packets it reassembles.
cdef int parse_ip4(tap_pkt *p, uint8_t *l3, uint32_t avail, tap_if *rcvif) noexcept nogil
cdef int parse_ip6(tap_pkt *p, uint8_t *l3, uint32_t avail, tap_if *rcvif) noexcept nogil

# The hook: pf_test (or PF_PASS when none is installed), then the kif counters.
cdef int tap_pf_hook(tap_engine *e, int dir, tap_if *ifp, tap_pkt *p) noexcept nogil
# What pf_test sends back for `block return` (after releasing its lock; never about a packet the
# router built): an ICMP/ICMPv6 error about p to its source, or a TCP RST|ACK for p (ttl 0 = 64).
cdef void tap_send_icmp_error(tap_engine *e, tap_pkt *p, uint8_t type, uint8_t code) noexcept nogil
cdef void tap_send_rst(tap_engine *e, tap_pkt *p, uint8_t ttl) noexcept nogil
# The forwarding loop; returns when e.stop is set (Datapath.stop writes e.wakefd).
cdef void tap_run(tap_engine *e) noexcept nogil


cdef class Datapath:
    cdef tap_engine *e
    cdef object thread
    cdef readonly bint running
