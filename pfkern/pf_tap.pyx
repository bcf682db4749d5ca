# cython: language_level=3
"""The datapath (DESIGN.md §4): TAP interfaces and an IPv4/IPv6 router between them, in C
without the GIL; the hook where pf_test runs on input and output of every IP packet.

Control plane (Python, GIL): `Datapath.add_interface`, `add_route`, `start`, `stop`, `counters`,
`stats`. Data plane (tap_run, its own thread, nogil): one poll() over the TAP fds and a wake-up
eventfd; frames are read into one buffer and forwarded in place (no per-packet allocation);
frames waiting for ARP/NDP resolution are copied into a fixed pool.

What the router does (ip_input/ip_forward/ip_output, arp, nd6 of FreeBSD, in small):
Ethernet (our MAC, broadcast, multicast); ARP replies for our addresses, resolution with a
pending queue (16 frames per neighbour), retries and expiry; IPv6 NS/NA (solicited-node
multicast included), resolution the same way; IPv4/IPv6 forwarding by longest prefix over
connected and static routes; TTL/hop limit with incremental checksum; ICMP/ICMPv6 time exceeded,
net/host/port unreachable, fragmentation needed / packet too big; echo replies for our
addresses. IPv4 packets without DF larger than the MTU are fragmented on output (ip_output's
ip_fragment); IPv6 packets pf's scrub reassembled are cut again on output to the largest fragment
size they arrived in (pf_refragment6). Reassembly itself is pf's (pf_norm, scrub rules): the
router alone delivers no fragments locally and forwards them as they are.

Offloads (`add_interface(..., vnet=True)`, see pf_tap.pxd): frames carry a virtio_net_hdr; partial
checksums and TCP super-frames (TSO/GSO, up to 64 KiB) are forwarded as they are to vnet
interfaces, and completed / segmented in software for the others (Linux's skb_checksum_help and
tcp_gso_segment, in small); the MTU check applies to a super-frame's segments.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memmove, memset, memcmp, strncpy
from libc.stdlib cimport calloc, free
from libc.errno cimport errno, EAGAIN, EINTR
from posix.unistd cimport read, write, close
from posix.uio cimport iovec, writev
from pfkern.pfvar cimport PF_IN, PF_OUT, PF_PASS, PF_DROP

import os
import threading

cdef extern from "<sys/types.h>" nogil:
    ctypedef long ssize_t

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum: POLLIN

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    enum: EFD_NONBLOCK
    enum: EFD_CLOEXEC

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    enum: CLOCK_MONOTONIC

cdef extern from "<fcntl.h>" nogil:
    int c_open "open"(const char *path, int flags)
    enum: O_RDWR
    enum: O_NONBLOCK
    enum: O_CLOEXEC

cdef extern from "<sys/ioctl.h>" nogil:
    int ioctl(int fd, unsigned long req, ...)

cdef extern from "<sys/socket.h>" nogil:
    int socket(int domain, int type, int protocol)
    enum: AF_INET
    enum: AF_INET6
    enum: SOCK_DGRAM

cdef extern from "<net/if.h>" nogil:
    struct ifreq:
        char ifr_name[16]
        short ifr_flags
        int ifr_mtu
    unsigned int if_nametoindex(const char *name)
    enum: IFF_UP
    enum: SIOCGIFFLAGS
    enum: SIOCSIFFLAGS
    enum: SIOCGIFMTU

cdef extern from "<linux/if_tun.h>" nogil:
    enum: TUNSETIFF
    enum: IFF_TAP
    enum: IFF_NO_PI
    enum: IFF_VNET_HDR
    enum: TUNSETVNETHDRSZ
    enum: TUNSETOFFLOAD
    enum: TUN_F_CSUM
    enum: TUN_F_TSO4
    enum: TUN_F_TSO6
    enum: TUN_F_TSO_ECN

cdef enum:
    ETH_HLEN = 14
    ET_IP4 = 0x0800
    ET_ARP = 0x0806
    ET_IP6 = 0x86dd
    NBR_NONE = 0
    NBR_INCOMPLETE = 1
    NBR_REACHABLE = 2
    NBR_STALE = 3
    NBR_PROBE = 4
    TIMER_MS = 100

STAT_NAMES = ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "tx_errors", "drop_short",
              "drop_notus", "drop_ethertype", "drop_badhdr", "drop_badsum", "drop_badlen", "drop_pf",
              "drop_noroute", "drop_ttl", "drop_mtu", "drop_nonbr", "drop_local", "forwarded",
              "local_in", "icmp_out", "arp_rx", "arp_tx", "nd_rx", "nd_tx")
assert len(STAT_NAMES) == ST_NSTATS
VSTAT_NAMES = ("vnet_rx_csum_partial", "vnet_rx_gso", "vnet_tx_csum_partial", "vnet_tx_gso",
               "vnet_sw_csum", "vnet_sw_gso", "vnet_sw_segments", "vnet_drop")
assert len(VSTAT_NAMES) == VS_NSTATS
FSTAT_NAMES = ("frag_ok", "frag_created", "frag_fail", "refrag6", "refrag6_created", "refrag6_fail")
assert len(FSTAT_NAMES) == FS_NSTATS
# offered to the kernel on vnet interfaces: checksum offload and TSO (UFO/USO are not: nothing
# here segments UDP)
VNET_OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN

cdef uint8_t BCAST[6]
BCAST[:] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
cdef uint8_t ZERO16[16]
memset(ZERO16, 0, 16)


# ---- small helpers ------------------------------------------------------------------------------
cdef inline uint16_t be16(const uint8_t *p) noexcept nogil:
    return (p[0] << 8) | p[1]

cdef inline void put16(uint8_t *p, uint16_t v) noexcept nogil:
    p[0] = v >> 8
    p[1] = v & 0xff

cdef inline uint32_t csum_add(uint32_t s, const uint8_t *p, uint32_t n) noexcept nogil:
    """Add n bytes as big-endian 16-bit words (odd tail padded) to a one's complement sum."""
    cdef uint32_t i = 0
    while i + 1 < n:
        s += (p[i] << 8) | p[i + 1]
        i += 2
    if i < n:
        s += p[i] << 8
    return s

cdef inline uint16_t csum_fold(uint32_t s) noexcept nogil:
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

cdef inline uint16_t csum_upd16(uint16_t hc, uint16_t old, uint16_t new) noexcept nogil:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')."""
    cdef uint32_t s = ((~hc) & 0xffff) + ((~old) & 0xffff) + new
    return csum_fold(s)

cdef inline uint32_t pseudo6(const uint8_t *src, const uint8_t *dst, uint32_t len, uint8_t nxt) noexcept nogil:
    cdef uint32_t s = csum_add(0, src, 16)
    s = csum_add(s, dst, 16)
    return s + (len >> 16) + (len & 0xffff) + nxt

cdef inline uint32_t be32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline void put32(uint8_t *p, uint32_t v) noexcept nogil:
    put16(p, v >> 16)
    put16(p + 2, v & 0xffff)

cdef uint16_t ONE16 = 1
cdef bint HOST_LE = (<uint8_t *>&ONE16)[0] == 1

cdef uint32_t csum_add_fast(uint32_t s, const uint8_t *p, uint32_t n) noexcept nogil:
    """csum_add for large buffers: native 32-bit words, folded, then swapped to the big-endian
    word order csum_add uses (one's complement sums do not depend on byte order, RFC 1071)."""
    cdef uint64_t acc = 0
    cdef uint32_t w0, w1, i = 0
    while i + 8 <= n:
        memcpy(&w0, p + i, 4)
        memcpy(&w1, p + i + 4, 4)
        acc += <uint64_t>w0 + w1
        i += 8
    if i + 4 <= n:
        memcpy(&w0, p + i, 4)
        acc += w0
        i += 4
    while acc >> 16:
        acc = (acc & 0xffff) + (acc >> 16)
    if HOST_LE:
        acc = ((acc & 0xff) << 8) | (acc >> 8)
    return csum_add(s + <uint32_t>acc, p + i, n - i)

cdef inline uint64_t now_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000 + <uint64_t>(ts.tv_nsec // 1000000)

cdef inline bint prefix_match(const uint8_t *a, const uint8_t *net, int plen) noexcept nogil:
    cdef int full = plen >> 3, rem = plen & 7
    if memcmp(a, net, full) != 0:
        return False
    if rem == 0:
        return True
    cdef uint8_t m = (0xff << (8 - rem)) & 0xff
    return (a[full] & m) == (net[full] & m)

cdef inline bint v4_is_mcast_or_bcast(const uint8_t *a) noexcept nogil:
    return a[0] >= 224

cdef inline bint v6_is_linklocal(const uint8_t *a) noexcept nogil:
    return a[0] == 0xfe and (a[1] & 0xc0) == 0x80

cdef inline int af_index(uint8_t af) noexcept nogil:
    return 0 if af == AF_INET else 1


# ---- the pf_test hook ---------------------------------------------------------------------------
cdef int tap_pf_hook(tap_engine *e, int dir, tap_if *ifp, tap_pkt *p) noexcept nogil:
    cdef int action = PF_PASS
    p.rt_kind = 0
    if e.pf_test != NULL:
        action = e.pf_test(e.pf_ctx, dir, ifp, p)
    cdef int i = af_index(p.af) * 4 + (0 if dir == PF_IN else 2) + (0 if action == PF_PASS else 1)
    ifp.pf.packets[i] += 1
    ifp.pf.bytes[i] += p.len
    return action


# ---- packet parsing -----------------------------------------------------------------------------
cdef inline void pkt_no_offload(tap_pkt *p) noexcept nogil:
    p.csum_partial = 0
    p.gso_type = 0
    p.gso_size = 0
    p.csum_start = 0
    p.csum_offset = 0
    p.gso_hdr_len = 0

cdef void parse_l4(tap_pkt *p) noexcept nogil:
    """Locate ports/flags/ICMP type of the transport header (p.l4, p.proto set)."""
    cdef uint32_t n = p.len - p.l4off
    cdef uint8_t *h = p.l4
    p.l4ok = 0
    p.sport = p.dport = 0
    p.tcp_flags = p.icmp_type = p.icmp_code = 0
    if h == NULL:
        return
    if p.proto == 6:
        if n >= 20:
            p.l4ok = 1
            p.sport = (<uint16_t *>h)[0]
            p.dport = (<uint16_t *>h)[1]
            p.tcp_flags = h[13]
    elif p.proto == 17:
        if n >= 8:
            p.l4ok = 1
            p.sport = (<uint16_t *>h)[0]
            p.dport = (<uint16_t *>h)[1]
    elif p.proto == 1 or p.proto == 58:
        if n >= 8:
            p.l4ok = 1
            p.icmp_type = h[0]
            p.icmp_code = h[1]
            p.sport = p.dport = (<uint16_t *>h)[2]
    else:
        p.l4ok = 1


cdef int parse_ip4(tap_pkt *p, uint8_t *l3, uint32_t avail, tap_if *rcvif) noexcept nogil:
    """Validate an IPv4 header (ip_input's checks) and fill p; -ST_* on failure, 0 on success."""
    if avail < 20:
        return -ST_DROP_SHORT
    if (l3[0] >> 4) != 4:
        return -ST_DROP_BADHDR
    cdef uint32_t hl = (l3[0] & 0x0f) * 4
    if hl < 20:
        return -ST_DROP_BADHDR
    if hl > avail:
        return -ST_DROP_SHORT
    if csum_fold(csum_add(0, l3, hl)) != 0:
        return -ST_DROP_BADSUM
    cdef uint32_t tot = be16(l3 + 2)
    if tot < hl or tot > avail:
        return -ST_DROP_BADLEN
    if l3[12] >= 224:            # multicast / class E / broadcast source
        return -ST_DROP_BADHDR
    cdef uint16_t off = be16(l3 + 6)
    p.l3 = l3
    p.len = tot
    p.l4off = hl
    p.af = AF_INET
    p.proto = l3[9]
    p.ttl = l3[8]
    p.src = l3 + 12
    p.dst = l3 + 16
    p.rcvif = rcvif
    p.pf_tag = 0
    p.rt_kind = p.rt_hops = 0
    p.frag_max = p.frag_hdrlen = 0
    p.frag_id = 0
    pkt_no_offload(p)
    if off & 0x1fff:
        p.frag = 2
        p.l4 = NULL
    else:
        p.frag = 1 if off & 0x2000 else 0
        p.l4 = l3 + hl
    parse_l4(p)
    return 0


cdef int parse_ip6(tap_pkt *p, uint8_t *l3, uint32_t avail, tap_if *rcvif) noexcept nogil:
    if avail < 40:
        return -ST_DROP_SHORT
    if (l3[0] >> 4) != 6:
        return -ST_DROP_BADHDR
    cdef uint32_t pl = be16(l3 + 4)
    if pl == 0 or 40 + pl > avail:          # jumbograms are not supported
        return -ST_DROP_BADLEN
    if l3[8] == 0xff:                       # multicast source
        return -ST_DROP_BADHDR
    p.l3 = l3
    p.len = 40 + pl
    p.af = AF_INET6
    p.ttl = l3[7]
    p.src = l3 + 8
    p.dst = l3 + 24
    p.rcvif = rcvif
    p.pf_tag = 0
    p.rt_kind = p.rt_hops = 0
    p.frag_max = p.frag_hdrlen = 0
    p.frag_id = 0
    pkt_no_offload(p)
    p.frag = 0
    cdef uint8_t nxt = l3[6]
    cdef uint32_t off = 40, elen
    cdef int n = 0
    while n < 8:
        if nxt == 0 or nxt == 43 or nxt == 60:      # hop-by-hop, routing, destination options
            if off + 8 > p.len:
                return -ST_DROP_SHORT
            elen = (l3[off + 1] + 1) * 8
            if off + elen > p.len:
                return -ST_DROP_SHORT
            nxt = l3[off]
            off += elen
        elif nxt == 44:                             # fragment
            if off + 8 > p.len:
                return -ST_DROP_SHORT
            if be16(l3 + off + 2) & 0xfff8:
                p.frag = 2
            else:
                p.frag = 1 if (l3[off + 3] & 1) else 0
            nxt = l3[off]
            off += 8
            if p.frag == 2:
                break
        else:
            break
        n += 1
    p.proto = nxt
    p.l4off = off
    p.l4 = NULL if p.frag == 2 else l3 + off
    parse_l4(p)
    return 0


# ---- addresses and routes -----------------------------------------------------------------------
cdef int ours4(tap_engine *e, const uint8_t *a) noexcept nogil:
    cdef int i, j
    for i in range(e.nif):
        for j in range(e.ifs[i].n4):
            if memcmp(e.ifs[i].a4[j], a, 4) == 0:
                return 1
    return 0

cdef int ours6(tap_engine *e, tap_if *ifp, const uint8_t *a) noexcept nogil:
    """1 if a is one of our unicast addresses (link-local ones only on ifp), 2 if a multicast
    group we listen to on ifp (all-nodes, all-routers, a solicited-node group of ours)."""
    cdef int i, j
    if a[0] == 0xff:
        if a[1] != 0x02:
            return 0
        if memcmp(a + 2, ZERO16, 13) == 0 and (a[15] == 1 or a[15] == 2):
            return 2
        if memcmp(a + 2, ZERO16, 9) == 0 and a[11] == 1 and a[12] == 0xff:
            for j in range(ifp.n6):
                if memcmp(ifp.a6[j] + 13, a + 13, 3) == 0:
                    return 2
        return 0
    if v6_is_linklocal(a):
        return 1 if memcmp(ifp.a6[0], a, 16) == 0 else 0
    for i in range(e.nif):
        for j in range(1, e.ifs[i].n6):
            if memcmp(e.ifs[i].a6[j], a, 16) == 0:
                return 1
    return 0

cdef inline const uint8_t *nexthop_of(tap_route *r, const uint8_t *dst) noexcept nogil:
    if r.has_gw:
        return r.gw
    return dst

cdef tap_route *route_lookup(tap_engine *e, uint8_t af, const uint8_t *dst) noexcept nogil:
    cdef int i
    if af == AF_INET:
        for i in range(e.nroute4):
            if prefix_match(dst, e.routes4[i].dst, e.routes4[i].plen):
                return &e.routes4[i]
    else:
        for i in range(e.nroute6):
            if prefix_match(dst, e.routes6[i].dst, e.routes6[i].plen):
                return &e.routes6[i]
    return NULL

cdef const uint8_t *src4_for(tap_engine *e, tap_if *ifp, const uint8_t *peer) noexcept nogil:
    """Our IPv4 address to speak from on ifp: one on peer's subnet, else ifp's first, else any."""
    cdef int j
    if ifp != NULL:
        for j in range(ifp.n4):
            if peer != NULL and prefix_match(peer, ifp.a4[j], ifp.p4[j]):
                return ifp.a4[j]
        if ifp.n4:
            return ifp.a4[0]
    for j in range(e.nif):
        if e.ifs[j].n4:
            return e.ifs[j].a4[0]
    return NULL

cdef const uint8_t *src6_for(tap_engine *e, tap_if *ifp, const uint8_t *peer) noexcept nogil:
    cdef int j
    if peer != NULL and v6_is_linklocal(peer) and ifp != NULL:
        return ifp.a6[0]
    if ifp != NULL:
        for j in range(1, ifp.n6):
            if peer != NULL and prefix_match(peer, ifp.a6[j], ifp.p6[j]):
                return ifp.a6[j]
        if ifp.n6 > 1:
            return ifp.a6[1]
    for j in range(e.nif):
        if e.ifs[j].n6 > 1:
            return e.ifs[j].a6[1]
    return ifp.a6[0] if ifp != NULL else NULL


# ---- frame output -------------------------------------------------------------------------------
cdef void frame_write(tap_if *ifp, uint8_t *f, uint32_t n) noexcept nogil:
    if write(ifp.fd, f, n) == <ssize_t>n:
        ifp.stats[ST_TX_FRAMES] += 1
        ifp.stats[ST_TX_BYTES] += n
    else:
        ifp.stats[ST_TX_ERRORS] += 1

cdef inline void eth_fill(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t et) noexcept nogil:
    memcpy(f, dst, 6)
    memcpy(f + 6, src, 6)
    put16(f + 12, et)


# ---- offloads (virtio_net_hdr) ----------------------------------------------------------------------
cdef int vnet_apply(tap_engine *e, tap_if *ifp, tap_pkt *p, const tap_vnet_hdr *vh) noexcept nogil:
    """Take the offloads of a frame read from a vnet interface into p (parsed); -1, counted, for a
    header this engine cannot honour (it would otherwise forward a packet it cannot complete)."""
    cdef uint32_t start, thl
    cdef uint8_t gt = vh.gso_type & ~TAP_GSO_ECN
    if vh.flags & TAP_VNET_F_NEEDS_CSUM:
        start = vh.csum_start - ETH_HLEN if vh.csum_start >= ETH_HLEN else 0
        if p.frag or start < (20 if p.af == AF_INET else 40) or start + vh.csum_offset + 2 > p.len:
            e.vstats[ifp.index][VS_DROP_VNET] += 1
            return -1
        p.csum_partial = 1
        p.csum_start = start
        p.csum_offset = vh.csum_offset
        e.vstats[ifp.index][VS_RX_CSUM_PARTIAL] += 1
    if vh.gso_type == TAP_GSO_NONE:
        return 0
    # only what TUNSETOFFLOAD offered: TCP super-frames whose checksum is left to us
    if not p.csum_partial or vh.gso_size == 0 or p.proto != 6 or p.l4 == NULL or not p.l4ok \
            or (gt != TAP_GSO_TCPV4 and gt != TAP_GSO_TCPV6) or (gt == TAP_GSO_TCPV4) != (p.af == AF_INET) \
            or p.csum_start != p.l4off or p.csum_offset != 16:
        e.vstats[ifp.index][VS_DROP_VNET] += 1
        return -1
    thl = (p.l4[12] >> 4) * 4
    if thl < 20 or p.l4off + thl > p.len:
        e.vstats[ifp.index][VS_DROP_VNET] += 1
        return -1
    p.gso_type = vh.gso_type
    p.gso_size = vh.gso_size
    p.gso_hdr_len = vh.hdr_len
    e.vstats[ifp.index][VS_RX_GSO] += 1
    return 0

cdef inline void vnet_hdr_of(tap_vnet_hdr *vh, const tap_pkt *p) noexcept nogil:
    """The header a packet leaves with (DATA_VALID is not passed on: the receiver verifies)."""
    memset(vh, 0, sizeof(tap_vnet_hdr))
    if p.csum_partial:
        vh.flags = TAP_VNET_F_NEEDS_CSUM
        vh.csum_start = ETH_HLEN + p.csum_start
        vh.csum_offset = p.csum_offset
        if p.gso_size:
            vh.gso_type = p.gso_type
            vh.gso_size = p.gso_size
            vh.hdr_len = p.gso_hdr_len

cdef inline void csum_complete(uint8_t *start, uint32_t n, uint16_t off) noexcept nogil:
    """Finish a partial checksum: the field already holds the pseudo-header sum, so summing the
    whole range gives the checksum (0 goes out as 0xffff, as skb_checksum_help does: UDP's 0
    means none)."""
    cdef uint16_t c = csum_fold(csum_add_fast(0, start, n))
    put16(start + off, c if c else 0xffff)

cdef enum:
    SEG_HDR_MAX = 256           # Ethernet + IP (with IPv6 extensions) + TCP headers we segment

cdef void sw_segment(tap_engine *e, tap_if *ifp, uint8_t *f, uint32_t n, const tap_vnet_hdr *vh) noexcept nogil:
    """TCP segmentation in software (tcp_gso_segment's rules): gso_size bytes of payload per
    segment, IPv4 ids counting up from the super-frame's, lengths and sequence numbers set, FIN
    and PSH on the last segment only, CWR on the first only, full checksums."""
    cdef uint8_t hdr[SEG_HDR_MAX]
    cdef iovec iov[2]
    cdef uint8_t *ip = hdr + ETH_HLEN
    cdef uint8_t *th
    cdef uint32_t l4off = vh.csum_start - ETH_HLEN
    cdef uint32_t thl, hlen, total, off = 0, seg, seq0, mss = vh.gso_size
    cdef uint16_t id0
    cdef uint8_t flags0
    cdef bint v4 = (vh.gso_type & ~TAP_GSO_ECN) == TAP_GSO_TCPV4
    cdef uint32_t ph
    cdef int i = 0
    thl = (f[ETH_HLEN + l4off + 12] >> 4) * 4
    hlen = ETH_HLEN + l4off + thl
    if hlen > SEG_HDR_MAX or hlen > n or mss == 0:
        e.vstats[ifp.index][VS_DROP_VNET] += 1
        return
    memcpy(hdr, f, hlen)
    th = ip + l4off
    total = n - hlen
    seq0 = be32(th + 4)
    flags0 = th[13]
    id0 = be16(ip + 4)
    e.vstats[ifp.index][VS_SW_GSO] += 1
    while True:
        seg = total - off if total - off < mss else mss
        if v4:
            put16(ip + 2, l4off + thl + seg)
            put16(ip + 4, <uint16_t>(id0 + i))
            put16(ip + 10, 0)
            put16(ip + 10, csum_fold(csum_add(0, ip, l4off)))
            ph = csum_add(0, ip + 12, 8)
        else:
            put16(ip + 4, l4off - 40 + thl + seg)
            ph = csum_add(csum_add(0, ip + 8, 16), ip + 24, 16)
        put32(th + 4, seq0 + off)
        th[13] = flags0
        if off + seg < total:
            th[13] &= ~0x09                 # FIN, PSH: the last segment's
        if i > 0:
            th[13] &= ~0x80                 # CWR: the first segment's
        put16(th + 16, 0)
        ph += 6 + thl + seg
        put16(th + 16, csum_fold(csum_add_fast(csum_add(ph, th, thl), f + hlen + off, seg)))
        iov[0].iov_base = hdr
        iov[0].iov_len = hlen
        iov[1].iov_base = f + hlen + off
        iov[1].iov_len = seg
        if writev(ifp.fd, iov, 2) == <ssize_t>(hlen + seg):
            ifp.stats[ST_TX_FRAMES] += 1
            ifp.stats[ST_TX_BYTES] += hlen + seg
        else:
            ifp.stats[ST_TX_ERRORS] += 1
        e.vstats[ifp.index][VS_SW_SEGMENTS] += 1
        i += 1
        off += seg
        if off >= total:
            break

cdef void frame_xmit(tap_engine *e, tap_if *ifp, uint8_t *f, uint32_t n, const tap_vnet_hdr *vh) noexcept nogil:
    """Send a frame whose offloads are vh (NULL: complete checksums, no GSO): with its header to a
    vnet interface (a zero one when NULL); completed or segmented here for any other."""
    cdef tap_vnet_hdr zero
    cdef iovec iov[2]
    if e.vnet[ifp.index]:
        if vh == NULL:
            memset(&zero, 0, sizeof(zero))
            vh = &zero
        iov[0].iov_base = <void *>vh
        iov[0].iov_len = TAP_VNET_HDR_LEN
        iov[1].iov_base = f
        iov[1].iov_len = n
        if writev(ifp.fd, iov, 2) == <ssize_t>(n + TAP_VNET_HDR_LEN):
            ifp.stats[ST_TX_FRAMES] += 1
            ifp.stats[ST_TX_BYTES] += n
            if vh.gso_type != TAP_GSO_NONE:
                e.vstats[ifp.index][VS_TX_GSO] += 1
            elif vh.flags & TAP_VNET_F_NEEDS_CSUM:
                e.vstats[ifp.index][VS_TX_CSUM_PARTIAL] += 1
        else:
            ifp.stats[ST_TX_ERRORS] += 1
        return
    if vh != NULL and vh.gso_type != TAP_GSO_NONE:
        sw_segment(e, ifp, f, n, vh)
        return
    if vh != NULL and (vh.flags & TAP_VNET_F_NEEDS_CSUM):
        csum_complete(f + vh.csum_start, n - vh.csum_start, vh.csum_offset)
        e.vstats[ifp.index][VS_SW_CSUM] += 1
    frame_write(ifp, f, n)


# ---- neighbour cache (ARP and NDP) --------------------------------------------------------------
cdef uint32_t nbr_hash(uint8_t af, int ifidx, const uint8_t *a) noexcept nogil:
    cdef uint32_t h = 2166136261u ^ af ^ (<uint32_t>ifidx << 8)
    cdef int i, n = 4 if af == AF_INET else 16
    for i in range(n):
        h = (h ^ a[i]) * 16777619u
    return h

cdef tap_nbr *nbr_find(tap_engine *e, uint8_t af, int ifidx, const uint8_t *a, bint create) noexcept nogil:
    """The entry for (af, ifidx, a); with create, a new or recycled one (open addressing over a
    window of 16 slots; entries are recycled, never removed, so probing stays correct)."""
    cdef uint32_t h = nbr_hash(af, ifidx, a)
    cdef int n = 4 if af == AF_INET else 16
    cdef int k, victim = -1
    cdef tap_nbr *x
    for k in range(16):
        x = &e.nbr[(h + k) & (TAP_NBR_SIZE - 1)]
        if not x.used:
            if victim < 0:
                victim = (h + k) & (TAP_NBR_SIZE - 1)
            break
        if x.af == af and x.ifidx == ifidx and memcmp(x.addr, a, n) == 0:
            return x
        if victim < 0 and x.state == NBR_NONE and x.qhead < 0:
            victim = (h + k) & (TAP_NBR_SIZE - 1)
    if not create:
        return NULL
    if victim < 0:
        victim = h & (TAP_NBR_SIZE - 1)
        nbr_drop_queue(e, &e.nbr[victim])
    x = &e.nbr[victim]
    memset(x, 0, sizeof(tap_nbr))
    x.used = 1
    x.af = af
    x.ifidx = ifidx
    memcpy(x.addr, a, n)
    x.qhead = -1
    return x

cdef void nbr_drop_queue(tap_engine *e, tap_nbr *x) noexcept nogil:
    cdef int s = x.qhead, nxt
    while s >= 0:
        nxt = e.pend[s].next
        e.pend[s].next = e.pfree
        e.pfree = s
        e.ifs[x.ifidx].stats[ST_DROP_NONBR] += 1
        s = nxt
    x.qhead = -1
    x.qlen = 0

cdef void nbr_solicit(tap_engine *e, tap_nbr *x, bint unicast) noexcept nogil:
    """Send an ARP request / neighbour solicitation for x (broadcast / solicited-node multicast,
    or to the cached MAC when unicast)."""
    cdef tap_if *ifp = &e.ifs[x.ifidx]
    cdef uint8_t f[96]
    cdef const uint8_t *src
    cdef uint8_t *ip
    cdef uint8_t *icmp
    cdef tap_pkt p
    if x.af == AF_INET:
        src = src4_for(e, ifp, x.addr)
        if src == NULL:
            return
        eth_fill(f, <uint8_t *>x.mac if unicast else <uint8_t *>BCAST, ifp.mac, ET_ARP)
        put16(f + 14, 1)
        put16(f + 16, ET_IP4)
        f[18] = 6
        f[19] = 4
        put16(f + 20, 1)
        memcpy(f + 22, ifp.mac, 6)
        memcpy(f + 28, src, 4)
        memset(f + 32, 0, 6)
        memcpy(f + 38, x.addr, 4)
        frame_xmit(e, ifp, f, 42, NULL)
        ifp.stats[ST_ARP_TX] += 1
        return
    src = src6_for(e, ifp, x.addr)
    ip = f + ETH_HLEN
    if unicast:
        eth_fill(f, x.mac, ifp.mac, ET_IP6)
    else:
        f[0] = 0x33
        f[1] = 0x33
        f[2] = 0xff
        memcpy(f + 3, x.addr + 13, 3)
        memcpy(f + 6, ifp.mac, 6)
        put16(f + 12, ET_IP6)
    memset(ip, 0, 40)
    ip[0] = 0x60
    put16(ip + 4, 32)
    ip[6] = 58
    ip[7] = 255
    memcpy(ip + 8, src, 16)
    if unicast:
        memcpy(ip + 24, x.addr, 16)
    else:
        ip[24] = 0xff
        ip[25] = 0x02
        ip[35] = 0x01
        ip[36] = 0xff
        memcpy(ip + 37, x.addr + 13, 3)
    icmp = ip + 40
    memset(icmp, 0, 32)
    icmp[0] = 135
    memcpy(icmp + 8, x.addr, 16)
    icmp[24] = 1
    icmp[25] = 1
    memcpy(icmp + 26, ifp.mac, 6)
    put16(icmp + 2, csum_fold(csum_add(pseudo6(ip + 8, ip + 24, 32, 58), icmp, 32)))
    if parse_ip6(&p, ip, 72, NULL) == 0 and tap_pf_hook(e, PF_OUT, ifp, &p) == PF_PASS:
        frame_xmit(e, ifp, f, ETH_HLEN + 72, NULL)
        ifp.stats[ST_ND_TX] += 1

cdef void nbr_resolved(tap_engine *e, tap_nbr *x, const uint8_t *mac) noexcept nogil:
    """x's MAC is known (again): mark reachable and send what waited for it."""
    cdef int s, nxt
    cdef tap_if *ifp = &e.ifs[x.ifidx]
    memcpy(x.mac, mac, 6)
    x.state = NBR_REACHABLE
    x.probes = 0
    x.expire_ms = e.now_ms + e.nbr_reachable_ms
    s = x.qhead
    x.qhead = -1
    x.qlen = 0
    while s >= 0:
        nxt = e.pend[s].next
        memcpy(e.pend[s].data, mac, 6)
        frame_xmit(e, ifp, e.pend[s].data, e.pend[s].len, &e.pend_vh[s])
        if e.pend[s].rcvif >= 0:
            ifp.stats[ST_FORWARDED] += 1
        e.pend[s].next = e.pfree
        e.pfree = s
        s = nxt

cdef void eth_output(tap_engine *e, tap_if *ifp, uint8_t *f, uint32_t n, uint8_t af,
                     const uint8_t *nexthop, tap_pkt *p) noexcept nogil:
    """Send IP packet p (Ethernet header room at f) to nexthop on ifp, resolving it first."""
    cdef tap_nbr *x = nbr_find(e, af, ifp.index, nexthop, True)
    cdef tap_if *rcvif = p.rcvif
    cdef tap_vnet_hdr vh
    cdef int s, nxt
    vnet_hdr_of(&vh, p)
    eth_fill(f, x.mac, ifp.mac, ET_IP4 if af == AF_INET else ET_IP6)
    if x.state == NBR_REACHABLE or x.state == NBR_STALE or x.state == NBR_PROBE:
        if x.state == NBR_REACHABLE and e.now_ms >= x.expire_ms:
            x.state = NBR_STALE
        if x.state == NBR_STALE:
            # still usable; confirm it with unicast probes (FreeBSD/Linux refresh similarly)
            x.state = NBR_PROBE
            x.probes = 1
            x.next_probe_ms = e.now_ms + e.nbr_probe_ms
            nbr_solicit(e, x, True)
        frame_xmit(e, ifp, f, n, &vh)
        if rcvif != NULL:
            ifp.stats[ST_FORWARDED] += 1
        return
    # unresolved: queue a copy and ask
    if x.qlen >= TAP_PEND_PER_NBR or e.pfree < 0 or n > TAP_PEND_FRAME:
        ifp.stats[ST_DROP_NONBR] += 1
    else:
        s = e.pfree
        e.pfree = e.pend[s].next
        e.pend[s].next = -1
        e.pend[s].len = n
        e.pend[s].af = af
        e.pend[s].rcvif = rcvif.index if rcvif != NULL else -1
        memcpy(e.pend[s].data, f, n)
        e.pend_vh[s] = vh
        if x.qhead < 0:
            x.qhead = s
        else:
            nxt = x.qhead
            while e.pend[nxt].next >= 0:
                nxt = e.pend[nxt].next
            e.pend[nxt].next = s
        x.qlen += 1
    if x.state == NBR_NONE:
        x.state = NBR_INCOMPLETE
        x.probes = 1
        x.next_probe_ms = e.now_ms + e.nbr_probe_ms
        nbr_solicit(e, x, False)

cdef void nbr_timer(tap_engine *e) noexcept nogil:
    """Retransmit solicitations; give up after nbr_max_probes (queued packets get host
    unreachable, as FreeBSD's arptimer/nd6_llinfo_timer do)."""
    cdef int i, s, nxt
    cdef tap_nbr *x
    for i in range(TAP_NBR_SIZE):
        x = &e.nbr[i]
        if not x.used or (x.state != NBR_INCOMPLETE and x.state != NBR_PROBE):
            continue
        if e.now_ms < x.next_probe_ms:
            continue
        if x.probes >= e.nbr_max_probes:
            x.state = NBR_NONE
            s = x.qhead
            x.qhead = -1
            x.qlen = 0
            while s >= 0:
                nxt = e.pend[s].next
                e.ifs[x.ifidx].stats[ST_DROP_NONBR] += 1
                if e.pend[s].rcvif >= 0:
                    unreach_from_frame(e, &e.pend[s])
                e.pend[s].next = e.pfree
                e.pfree = s
                s = nxt
            continue
        x.probes += 1
        x.next_probe_ms = e.now_ms + e.nbr_probe_ms
        nbr_solicit(e, x, x.state == NBR_PROBE)

cdef void unreach_from_frame(tap_engine *e, tap_pend *q) noexcept nogil:
    cdef tap_pkt p
    cdef tap_if *rcvif = &e.ifs[q.rcvif]
    if q.af == AF_INET:
        if parse_ip4(&p, q.data + ETH_HLEN, q.len - ETH_HLEN, rcvif) == 0:
            icmp4_error(e, &p, 3, 1, 0)
    else:
        if parse_ip6(&p, q.data + ETH_HLEN, q.len - ETH_HLEN, rcvif) == 0:
            icmp6_error(e, &p, 1, 3, 0)


# ---- IPv4 -----------------------------------------------------------------------------------------
cdef inline uint32_t seg_len(tap_pkt *p) noexcept nogil:
    """The size the MTU applies to: the packet, or a super-frame's largest segment."""
    cdef uint32_t n
    if p.gso_size == 0:
        return p.len
    n = p.l4off + (p.l4[12] >> 4) * 4 + p.gso_size
    return n if n < p.len else p.len

cdef void keep_original(tap_pkt *q, tap_pkt *p, uint8_t *buf, uint32_t size) noexcept nogil:
    """q: p as it is now, its first `size` bytes copied to buf, for an error about it after pf_test
    out may have translated p (FreeBSD's ip_forward quotes its copy made before ip_output)."""
    cdef uint32_t n = p.len if p.len < size else size
    q[0] = p[0]
    memcpy(buf, p.l3, n)
    q.l3 = buf
    q.src = buf + (p.src - p.l3)
    q.dst = buf + (p.dst - p.l3)
    if p.l4 != NULL:
        q.l4 = buf + p.l4off
    q.len = n

cdef inline const uint8_t *rt_nexthop(tap_pkt *p) noexcept nogil:
    return &p.rt_addr[0] if memcmp(p.rt_addr, ZERO16, 16) != 0 else <const uint8_t *>p.dst

cdef int pf_route(tap_engine *e, tap_pkt *p, tap_if *cur) noexcept nogil:
    """pf_route: pf asked to route (or copy) the packet by rt_ifidx towards rt_addr. cur is the
    interface of the output pass that asked (NULL on input). 1: the packet is gone (routed, or
    dropped after too many reroutes); 0: it goes on as the router would send it; 2: it goes on
    out of cur, towards rt_nexthop(p) (route-to the interface it leaves by anyway)."""
    cdef tap_if *oif
    cdef const uint8_t *nh
    cdef tap_pkt d
    cdef uint8_t kind = p.rt_kind
    p.rt_kind = 0
    if p.rt_ifidx < 0 or p.rt_ifidx >= e.nif or p.rt_hops >= 3:
        if kind == TAP_RT_DUP:
            return False
        if cur != NULL:
            cur.stats[ST_DROP_PF] += 1
        elif p.rcvif != NULL:
            p.rcvif.stats[ST_DROP_PF] += 1
        return True
    oif = &e.ifs[p.rt_ifidx]
    if kind == TAP_RT_DUP:
        if p.l3 >= e.dupbuf and p.l3 < e.dupbuf + sizeof(e.dupbuf):
            return False                    # a copy is not copied again
        d = p[0]
        memcpy(e.dupbuf + 64, p.l3, p.len)
        d.l3 = e.dupbuf + 64
        d.src = d.l3 + (p.src - p.l3)
        d.dst = d.l3 + (p.dst - p.l3)
        if p.l4 != NULL:
            d.l4 = d.l3 + p.l4off
        d.rt_hops = p.rt_hops + 1
        nh = &d.rt_addr[0] if memcmp(d.rt_addr, ZERO16, 16) != 0 else <const uint8_t *>d.dst
        if d.af == AF_INET:
            ip4_output(e, oif, &d, nh)
        else:
            ip6_output(e, oif, &d, nh)
        return False
    p.rt_hops += 1
    nh = &p.rt_addr[0] if memcmp(p.rt_addr, ZERO16, 16) != 0 else <const uint8_t *>p.dst
    if cur == oif:                          # the same way out: only the next hop changes
        return 2
    elif p.af == AF_INET:
        ip4_output(e, oif, p, nh)           # pf_test out on the new interface first
    else:
        ip6_output(e, oif, p, nh)
    return True


cdef void ip4_output(tap_engine *e, tap_if *oif, tap_pkt *p, const uint8_t *nexthop) noexcept nogil:
    """pf_test out, then MTU, then the neighbour (ip_output's order: pfil before the size check).
    Too big: fragmented without DF (ip_fragment), else dropped with ICMP fragmentation needed
    (super-frames whose segments exceed the MTU are dropped)."""
    cdef tap_pkt q
    cdef uint8_t orig[68]                   # what icmp_error quotes: IP header + 8
    cdef bint kept = False
    cdef int rc
    if seg_len(p) > oif.mtu and p.rcvif != NULL:
        keep_original(&q, p, orig, p.l4off + 8)     # before pf_test out may translate it
        kept = True
    if tap_pf_hook(e, PF_OUT, oif, p) != PF_PASS:
        oif.stats[ST_DROP_PF] += 1
        return
    if p.rt_kind:
        rc = pf_route(e, p, oif)
        if rc == 1:
            return
        if rc == 2:
            nexthop = rt_nexthop(p)
    if seg_len(p) > oif.mtu:                # again: scrub out may have reassembled the packet
        if p.gso_size == 0 and not (be16(p.l3 + 6) & 0x4000):
            ip4_fragment(e, oif, p, nexthop)
            return
        oif.stats[ST_DROP_MTU] += 1
        if p.rcvif != NULL and (be16(p.l3 + 6) & 0x4000):
            if not kept:
                keep_original(&q, p, orig, p.l4off + 8)
            icmp4_error(e, &q, 3, 4, oif.mtu)
        return
    eth_output(e, oif, p.l3 - ETH_HLEN, p.len + ETH_HLEN, AF_INET, nexthop, p)

cdef uint32_t ip4_optcopy(const uint8_t *ip, uint32_t hl, uint8_t *dst) noexcept nogil:
    """ip_optcopy: the options of ip (header length hl) that go into every fragment (those with
    the copied flag; NOPs kept for alignment; the list ends at EOL), padded with EOL to a multiple
    of 4; returns their length."""
    cdef uint32_t i = 20, n = 0, olen
    cdef uint8_t opt
    while i < hl:
        opt = ip[i]
        if opt == 0:                        # EOL
            break
        if opt == 1:                        # NOP
            dst[n] = 1
            n += 1
            i += 1
            continue
        if i + 1 >= hl:
            break
        olen = ip[i + 1]
        if olen < 2 or i + olen > hl:
            break
        if opt & 0x80:
            memcpy(dst + n, ip + i, olen)
            n += olen
        i += olen
    while n & 3:
        dst[n] = 0
        n += 1
    return n

cdef void ip4_fragment(tap_engine *e, tap_if *oif, tap_pkt *p, const uint8_t *nexthop) noexcept nogil:
    """ip_fragment: send p (no DF, larger than the MTU) as fragments of at most oif.mtu bytes,
    their data a multiple of 8 bytes (the last excepted); the first keeps every option, the
    others the copied ones; a packet that already is a fragment keeps its offset and, on its last
    piece, its MF. A partial checksum is completed first (in_delayed_cksum). Fragments are not
    shown to pf again (pfil ran on the whole packet)."""
    cdef uint8_t *ip = e.fragbuf + 64
    cdef uint8_t opts[40]
    cdef uint32_t hl = p.l4off, ohl, total = p.len - hl, pos = 0, chunk, room, h
    cdef uint16_t off0 = be16(p.l3 + 6)
    cdef uint16_t base = off0 & 0x1fff, offw
    cdef bint last
    cdef tap_pkt f
    if hl < 20 or hl > p.len:
        oif.stats[ST_DROP_MTU] += 1
        return
    ohl = 20 + ip4_optcopy(p.l3, hl, opts)
    if oif.mtu < hl + 8 or oif.mtu < ohl + 8:
        e.fstats[oif.index][FS_FRAG_FAIL] += 1
        oif.stats[ST_DROP_MTU] += 1
        return
    sw_csum(e, oif, p)
    f = p[0]
    pkt_no_offload(&f)
    e.fstats[oif.index][FS_FRAG_OK] += 1
    while pos < total:
        if pos == 0:
            h = hl
            memcpy(ip, p.l3, hl)
        else:
            h = ohl
            memcpy(ip, p.l3, 20)
            memcpy(ip + 20, opts, ohl - 20)
            ip[0] = 0x40 | (ohl >> 2)
        room = (oif.mtu - h) & ~7u
        last = total - pos <= room
        chunk = total - pos if last else room
        memcpy(ip + h, p.l3 + hl + pos, chunk)
        put16(ip + 2, h + chunk)
        offw = base + (pos >> 3)
        if not last or (off0 & 0x2000):
            offw |= 0x2000
        put16(ip + 6, offw)
        put16(ip + 10, 0)
        put16(ip + 10, csum_fold(csum_add(0, ip, h)))
        f.l3 = ip
        f.len = h + chunk
        f.l4off = h
        f.src = ip + 12
        f.dst = ip + 16
        f.l4 = ip + h if pos == 0 else NULL
        e.fstats[oif.index][FS_FRAG_CREATED] += 1
        eth_output(e, oif, ip - ETH_HLEN, h + chunk + ETH_HLEN, AF_INET, nexthop, &f)
        pos += chunk

cdef void ip4_send_local(tap_engine *e, uint8_t *l3, uint32_t len) noexcept nogil:
    """Route and send a packet the router built (l3 with Ethernet room before it)."""
    cdef tap_pkt p
    cdef tap_route *r
    if parse_ip4(&p, l3, len, NULL) != 0:
        return
    r = route_lookup(e, AF_INET, p.dst)
    if r == NULL:
        return
    e.ifs[r.ifidx].stats[ST_ICMP_OUT] += 1
    ip4_output(e, &e.ifs[r.ifidx], &p, nexthop_of(r, p.dst))

cdef void ip4_header(tap_engine *e, uint8_t *ip, uint32_t len, uint8_t proto, const uint8_t *src,
                     const uint8_t *dst) noexcept nogil:
    ip[0] = 0x45
    ip[1] = 0
    put16(ip + 2, len)
    e.ip_id += 1
    put16(ip + 4, e.ip_id)
    put16(ip + 6, 0)
    ip[8] = 64
    ip[9] = proto
    put16(ip + 10, 0)
    memcpy(ip + 12, src, 4)
    memcpy(ip + 16, dst, 4)
    put16(ip + 10, csum_fold(csum_add(0, ip, 20)))

cdef void icmp4_error(tap_engine *e, tap_pkt *p, uint8_t type, uint8_t code, uint32_t mtu) noexcept nogil:
    """icmp_error: quote the header and 8 bytes of p back to its source, except about ICMP
    errors, later fragments, and packets from/to broadcast, multicast or unspecified addresses."""
    cdef const uint8_t *src
    cdef uint8_t *ip = e.txbuf + ETH_HLEN
    cdef uint8_t *icmp = ip + 20
    cdef uint32_t quote
    if p.frag == 2 or v4_is_mcast_or_bcast(p.dst) or v4_is_mcast_or_bcast(p.src):
        return
    if (p.src[0] | p.src[1] | p.src[2] | p.src[3]) == 0:
        return
    if p.proto == 1 and (not p.l4ok or not (p.icmp_type == 0 or p.icmp_type == 8 or
                                             (p.icmp_type >= 13 and p.icmp_type <= 18))):
        return
    # icmp_reflect: about a packet to one of our addresses, speak from that address
    if ours4(e, p.dst):
        src = p.dst
    else:
        src = src4_for(e, p.rcvif, p.src)
    if src == NULL:
        return
    quote = p.l4off + 8
    if quote > p.len:
        quote = p.len
    memmove(icmp + 8, p.l3, quote)
    icmp[0] = type
    icmp[1] = code
    put16(icmp + 2, 0)
    put16(icmp + 4, 0)
    put16(icmp + 6, mtu if type == 3 and code == 4 else 0)
    put16(icmp + 2, csum_fold(csum_add(0, icmp, 8 + quote)))
    ip4_header(e, ip, 20 + 8 + quote, 1, src, p.src)
    ip4_send_local(e, ip, 20 + 8 + quote)

cdef inline void sw_csum(tap_engine *e, tap_if *ifp, tap_pkt *p) noexcept nogil:
    """Complete a partial (offloaded) checksum in software, counted on ifp."""
    if p.csum_partial:
        csum_complete(p.l3 + p.csum_start, p.len - p.csum_start, p.csum_offset)
        p.csum_partial = 0
        e.vstats[ifp.index][VS_SW_CSUM] += 1

cdef bint local_csum(tap_engine *e, tap_if *ifp, tap_pkt *p) noexcept nogil:
    """A packet for us with a partial checksum gets it completed (our checks then hold); a
    super-frame is refused."""
    if p.csum_partial and p.gso_size:
        return False
    sw_csum(e, ifp, p)
    return True

cdef void local4(tap_engine *e, tap_if *ifp, tap_pkt *p) noexcept nogil:
    """A packet to one of our addresses: echo reply, port/protocol unreachable, else drop."""
    cdef uint8_t *ip
    cdef uint8_t *icmp
    cdef uint32_t n
    ifp.stats[ST_LOCAL_IN] += 1
    if p.frag != 0 or not local_csum(e, ifp, p):
        ifp.stats[ST_DROP_LOCAL] += 1        # no reassembly; no TCP here to take a super-frame
        return
    if p.proto == 1 and p.l4ok and p.icmp_type == 8:
        n = p.len - p.l4off
        if csum_fold(csum_add(0, p.l4, n)) != 0:
            ifp.stats[ST_DROP_BADSUM] += 1
            return
        ip = e.txbuf + ETH_HLEN
        icmp = ip + 20
        memcpy(icmp, p.l4, n)
        icmp[0] = 0
        put16(icmp + 2, csum_upd16(be16(icmp + 2), 0x0800, 0x0000))
        ip4_header(e, ip, 20 + n, 1, p.dst, p.src)
        ip4_send_local(e, ip, 20 + n)
    elif p.proto == 17:
        icmp4_error(e, p, 3, 3, 0)
    elif p.proto == 6:
        ifp.stats[ST_DROP_LOCAL] += 1        # no RST yet
    elif p.proto != 1:
        icmp4_error(e, p, 3, 2, 0)
    else:
        ifp.stats[ST_DROP_LOCAL] += 1

cdef void ip4_input(tap_engine *e, tap_if *ifp, uint8_t *f, uint32_t n, const tap_vnet_hdr *vh) noexcept nogil:
    cdef tap_pkt p
    cdef int rc = parse_ip4(&p, f + ETH_HLEN, n - ETH_HLEN, ifp)
    cdef tap_route *r
    cdef uint16_t old
    if rc != 0:
        ifp.stats[-rc] += 1
        return
    if vh != NULL and (vh.flags or vh.gso_type) and vnet_apply(e, ifp, &p, vh) != 0:
        return
    if tap_pf_hook(e, PF_IN, ifp, &p) != PF_PASS:
        ifp.stats[ST_DROP_PF] += 1
        return
    if p.rt_kind and pf_route(e, &p, NULL) == 1:
        return
    if ours4(e, p.dst):
        local4(e, ifp, &p)
        return
    if v4_is_mcast_or_bcast(p.dst) or is_bcast4(ifp, p.dst):
        ifp.stats[ST_DROP_LOCAL] += 1
        return
    # ip_forward
    if p.ttl <= 1:
        ifp.stats[ST_DROP_TTL] += 1
        icmp4_error(e, &p, 11, 0, 0)
        return
    r = route_lookup(e, AF_INET, p.dst)
    if r == NULL:
        ifp.stats[ST_DROP_NOROUTE] += 1
        icmp4_error(e, &p, 3, 0, 0)
        return
    old = be16(p.l3 + 8)
    p.l3[8] -= 1
    put16(p.l3 + 10, csum_upd16(be16(p.l3 + 10), old, be16(p.l3 + 8)))
    ip4_output(e, &e.ifs[r.ifidx], &p, nexthop_of(r, p.dst))

cdef bint is_bcast4(tap_if *ifp, const uint8_t *a) noexcept nogil:
    """a is the directed broadcast address of one of ifp's subnets."""
    cdef int j, k, plen
    cdef uint8_t m
    for j in range(ifp.n4):
        plen = ifp.p4[j]
        if plen >= 31 or not prefix_match(a, ifp.a4[j], plen):
            continue
        for k in range(4):
            m = 0xff if plen >= 8 * (k + 1) else (0 if plen <= 8 * k else (0xff << (8 - (plen - 8 * k))) & 0xff)
            if (a[k] | m) != 0xff:
                break
        else:
            return True
    return False

cdef void arp_input(tap_engine *e, tap_if *ifp, uint8_t *f, uint32_t n) noexcept nogil:
    cdef uint8_t *a = f + ETH_HLEN
    cdef tap_nbr *x
    cdef bint for_us = False
    cdef int j
    cdef uint8_t r[42]
    ifp.stats[ST_ARP_RX] += 1
    if n < ETH_HLEN + 28:
        ifp.stats[ST_DROP_SHORT] += 1
        return
    if be16(a) != 1 or be16(a + 2) != ET_IP4 or a[4] != 6 or a[5] != 4:
        ifp.stats[ST_DROP_BADHDR] += 1
        return
    for j in range(ifp.n4):
        if memcmp(ifp.a4[j], a + 24, 4) == 0:
            for_us = True
    if memcmp(a + 8, ifp.mac, 6) == 0 or (a[8] & 1):
        return                                  # our own or a bogus multicast sender
    if (a[14] | a[15] | a[16] | a[17]) != 0:    # not a probe from 0.0.0.0: learn (RFC 826 merge)
        x = nbr_find(e, AF_INET, ifp.index, a + 14, for_us)
        if x != NULL:
            nbr_resolved(e, x, a + 8)
    if for_us and be16(a + 6) == 1:
        eth_fill(r, a + 8, ifp.mac, ET_ARP)
        memcpy(r + 14, a, 6)
        put16(r + 20, 2)
        memcpy(r + 22, ifp.mac, 6)
        memcpy(r + 28, a + 24, 4)
        memcpy(r + 32, a + 8, 6)
        memcpy(r + 38, a + 14, 4)
        frame_xmit(e, ifp, r, 42, NULL)
        ifp.stats[ST_ARP_TX] += 1


# ---- IPv6 -----------------------------------------------------------------------------------------
cdef void ip6_output(tap_engine *e, tap_if *oif, tap_pkt *p, const uint8_t *nexthop) noexcept nogil:
    """pf_test out, then (a forwarded packet pf reassembled) pf_refragment6, else the MTU check
    (packet too big: routers do not fragment IPv6), then the neighbour."""
    cdef tap_pkt q
    cdef uint8_t orig[1280 - 48]            # what icmp6_error quotes
    cdef bint kept = False
    cdef int rc
    if seg_len(p) > oif.mtu and p.rcvif != NULL:
        keep_original(&q, p, orig, sizeof(orig))
        kept = True
    if tap_pf_hook(e, PF_OUT, oif, p) != PF_PASS:
        oif.stats[ST_DROP_PF] += 1
        return
    if p.rt_kind:
        rc = pf_route(e, p, oif)
        if rc == 1:
            return
        if rc == 2:
            nexthop = rt_nexthop(p)
    if p.frag_max and p.rcvif != NULL:
        ip6_refragment(e, oif, p, nexthop)
        return
    if seg_len(p) > oif.mtu:
        oif.stats[ST_DROP_MTU] += 1
        if p.rcvif != NULL:
            if not kept:
                keep_original(&q, p, orig, sizeof(orig))
            icmp6_error(e, &q, 2, 0, oif.mtu)
        return
    eth_output(e, oif, p.l3 - ETH_HLEN, p.len + ETH_HLEN, AF_INET6, nexthop, p)

cdef void ip6_refragment(tap_engine *e, tap_if *oif, tap_pkt *p, const uint8_t *nexthop) noexcept nogil:
    """pf_refragment6 + ip6_fragment: cut a reassembled packet into fragments carrying
    frag_max & ~7 bytes of data each (the last: the rest), behind its unfragmentable part and a
    fragment header with the original identification; a fragment larger than the MTU is what
    ip6_forward refuses: the packet is dropped with packet too big. Not shown to pf again
    (M_SKIP_FIREWALL)."""
    cdef uint8_t *ip = e.fragbuf + 64
    cdef uint32_t hl = p.frag_hdrlen, fraglen = p.frag_max & ~7u, pos, chunk, nxtoff = 6, off, elen
    cdef uint8_t proto
    cdef bint last
    cdef tap_pkt f
    cdef tap_pkt q
    cdef uint8_t orig[1280 - 48]
    if hl < 40 or hl >= p.len:
        e.fstats[oif.index][FS_REFRAG6_FAIL] += 1
        oif.stats[ST_DROP_MTU] += 1
        return
    # the next-header field that named the fragment header: the last extension header of the
    # unfragmentable part, or the IPv6 header's
    off = 40
    proto = p.l3[6]
    while off < hl and off + 2 <= p.len and (proto == 0 or proto == 43 or proto == 60 or proto == 51):
        nxtoff = off
        elen = (p.l3[off + 1] + 2) * 4 if proto == 51 else (p.l3[off + 1] + 1) * 8
        proto = p.l3[off]
        off += elen
    if off != hl:
        e.fstats[oif.index][FS_REFRAG6_FAIL] += 1
        oif.stats[ST_DROP_MTU] += 1
        return
    if fraglen < 8 or hl + 8 + (fraglen if fraglen < p.len - hl else p.len - hl) > oif.mtu:
        e.fstats[oif.index][FS_REFRAG6_FAIL] += 1
        oif.stats[ST_DROP_MTU] += 1
        if fraglen >= 8:
            keep_original(&q, p, orig, sizeof(orig))
            icmp6_error(e, &q, 2, 0, oif.mtu)
        return
    sw_csum(e, oif, p)
    f = p[0]
    pkt_no_offload(&f)
    f.frag_max = 0
    e.fstats[oif.index][FS_REFRAG6] += 1
    pos = hl
    while pos < p.len:
        last = p.len - pos <= fraglen
        chunk = p.len - pos if last else fraglen
        memcpy(ip, p.l3, hl)
        ip[nxtoff] = 44
        ip[hl] = proto
        ip[hl + 1] = 0
        put16(ip + hl + 2, (pos - hl) | (0 if last else 1))
        memcpy(ip + hl + 4, &p.frag_id, 4)
        memcpy(ip + hl + 8, p.l3 + pos, chunk)
        put16(ip + 4, hl + 8 + chunk - 40)
        f.l3 = ip
        f.len = hl + 8 + chunk
        f.src = ip + 8
        f.dst = ip + 24
        f.frag = 1 if pos == hl else 2
        f.l4off = hl + 8
        f.l4 = ip + hl + 8 if pos == hl else NULL
        e.fstats[oif.index][FS_REFRAG6_CREATED] += 1
        eth_output(e, oif, ip - ETH_HLEN, f.len + ETH_HLEN, AF_INET6, nexthop, &f)
        pos += chunk

cdef void ip6_send_local(tap_engine *e, uint8_t *l3, uint32_t len, tap_if *via) noexcept nogil:
    """Route and send a packet the router built; link-local destinations leave through `via`."""
    cdef tap_pkt p
    cdef tap_route *r
    if parse_ip6(&p, l3, len, NULL) != 0:
        return
    if v6_is_linklocal(p.dst):
        if via == NULL:
            return
        via.stats[ST_ICMP_OUT] += 1
        ip6_output(e, via, &p, p.dst)
        return
    r = route_lookup(e, AF_INET6, p.dst)
    if r == NULL:
        return
    e.ifs[r.ifidx].stats[ST_ICMP_OUT] += 1
    ip6_output(e, &e.ifs[r.ifidx], &p, nexthop_of(r, p.dst))

cdef void ip6_header(uint8_t *ip, uint32_t plen, uint8_t nxt, uint8_t hlim, const uint8_t *src,
                     const uint8_t *dst) noexcept nogil:
    ip[0] = 0x60
    ip[1] = ip[2] = ip[3] = 0
    put16(ip + 4, plen)
    ip[6] = nxt
    ip[7] = hlim
    memcpy(ip + 8, src, 16)
    memcpy(ip + 24, dst, 16)

cdef void icmp6_error(tap_engine *e, tap_pkt *p, uint8_t type, uint8_t code, uint32_t param) noexcept nogil:
    """icmp6_error: as much of p as fits in 1280 bytes, not about ICMPv6 errors, not to or from
    multicast (packet too big excepted for multicast destinations) or unspecified sources."""
    cdef const uint8_t *src
    cdef uint8_t *ip = e.txbuf + ETH_HLEN
    cdef uint8_t *icmp = ip + 40
    cdef uint32_t quote
    if p.src[0] == 0xff or memcmp(p.src, ZERO16, 16) == 0:
        return
    if p.dst[0] == 0xff and type != 2:
        return
    if p.proto == 58 and (p.l4 == NULL or not p.l4ok or p.icmp_type < 128):
        return
    if p.rcvif != NULL and ours6(e, p.rcvif, p.dst) == 1:
        src = p.dst
    else:
        src = src6_for(e, p.rcvif, p.src)
    if src == NULL:
        return
    quote = p.len
    if quote > 1280 - 48:
        quote = 1280 - 48
    memmove(icmp + 8, p.l3, quote)
    icmp[0] = type
    icmp[1] = code
    put16(icmp + 2, 0)
    put16(icmp + 4, param >> 16)
    put16(icmp + 6, param & 0xffff)
    ip6_header(ip, 8 + quote, 58, 64, src, p.src)
    put16(icmp + 2, csum_fold(csum_add(pseudo6(ip + 8, ip + 24, 8 + quote, 58), icmp, 8 + quote)))
    ip6_send_local(e, ip, 48 + quote, p.rcvif)

# ---- what pf_test sends back (block return) ---------------------------------------------------------
cdef void tap_send_icmp_error(tap_engine *e, tap_pkt *p, uint8_t type, uint8_t code) noexcept nogil:
    """pf_send_icmp: an ICMP/ICMPv6 error about p (not a packet the router built) to its source."""
    if p.l3 >= e.txbuf and p.l3 < e.txbuf + sizeof(e.txbuf):
        return
    if p.af == AF_INET:
        icmp4_error(e, p, type, code, 0)
    else:
        icmp6_error(e, p, type, code, 0)

cdef void tap_send_rst(tap_engine *e, tap_pkt *p, uint8_t ttl) noexcept nogil:
    """pf_send_tcp(RST|ACK) for a TCP packet p: from its destination to its source, seq = its
    ack, ack = its seq + segment length (SYN and FIN count one)."""
    cdef uint8_t *th = p.l4
    cdef uint8_t *ip = e.txbuf + ETH_HLEN
    cdef uint8_t *tcp
    cdef uint32_t hl, plen, seq, ack
    cdef uint8_t ph[4]
    if th == NULL or not p.l4ok or p.proto != 6 or (th[13] & 0x04):
        return
    if p.l3 >= e.txbuf and p.l3 < e.txbuf + sizeof(e.txbuf):
        return
    hl = (th[12] >> 4) * 4
    plen = p.len - p.l4off - hl if p.len >= p.l4off + hl else 0
    ack = ((<uint32_t>th[4] << 24) | (<uint32_t>th[5] << 16) | (<uint32_t>th[6] << 8) | th[7]) + plen
    if th[13] & 0x02:
        ack += 1
    if th[13] & 0x01:
        ack += 1
    seq = (<uint32_t>th[8] << 24) | (<uint32_t>th[9] << 16) | (<uint32_t>th[10] << 8) | th[11]
    tcp = ip + (20 if p.af == AF_INET else 40)
    memcpy(tcp, th + 2, 2)              # source port: the packet's destination port
    memcpy(tcp + 2, th, 2)
    put16(tcp + 4, seq >> 16)
    put16(tcp + 6, seq & 0xffff)
    put16(tcp + 8, ack >> 16)
    put16(tcp + 10, ack & 0xffff)
    tcp[12] = 5 << 4
    tcp[13] = 0x04 | 0x10               # RST|ACK
    put16(tcp + 14, 0)
    put16(tcp + 16, 0)
    put16(tcp + 18, 0)
    if p.af == AF_INET:
        ip4_header(e, ip, 40, 6, p.dst, p.src)
        if ttl:
            ip[8] = ttl
            put16(ip + 10, 0)
            put16(ip + 10, csum_fold(csum_add(0, ip, 20)))
        ph[0] = 0
        ph[1] = 6
        ph[2] = 0
        ph[3] = 20
        put16(tcp + 16, csum_fold(csum_add(csum_add(csum_add(0, ip + 12, 8), ph, 4), tcp, 20)))
        ip4_send_local(e, ip, 40)
    else:
        ip6_header(ip, 20, 6, ttl if ttl else 64, p.dst, p.src)
        put16(tcp + 16, csum_fold(csum_add(pseudo6(ip + 8, ip + 24, 20, 6), tcp, 20)))
        ip6_send_local(e, ip, 60, p.rcvif)


cdef const uint8_t *nd_option(uint8_t *opt, uint32_t n, uint8_t want) noexcept nogil:
    """The 6-byte link-layer address of the first option of type `want`, or NULL."""
    cdef uint32_t i = 0, olen
    while i + 2 <= n:
        olen = opt[i + 1] * 8
        if olen == 0 or i + olen > n:
            return NULL
        if opt[i] == want and olen >= 8:
            return opt + i + 2
        i += olen
    return NULL

cdef void nd_input(tap_engine *e, tap_if *ifp, tap_pkt *p, const uint8_t *eth_src) noexcept nogil:
    cdef uint32_t n = p.len - p.l4off
    cdef uint8_t *h = p.l4
    cdef const uint8_t *ll
    cdef tap_nbr *x
    cdef uint8_t *ip
    cdef uint8_t *na
    cdef bint dad
    cdef int j
    ifp.stats[ST_ND_RX] += 1
    if p.ttl != 255 or n < 24 or h[1] != 0:
        ifp.stats[ST_DROP_BADHDR] += 1
        return
    if h[0] == 136:                     # neighbour advertisement
        x = nbr_find(e, AF_INET6, ifp.index, h + 8, False)
        ll = nd_option(h + 24, n - 24, 2)
        if x != NULL and ll != NULL:
            nbr_resolved(e, x, ll)
        return
    # neighbour solicitation
    if h[8] == 0xff or ours6(e, ifp, h + 8) != 1:
        return
    if not v6_is_linklocal(h + 8):
        # a global target must be one of *this* interface's addresses
        for j in range(1, ifp.n6):
            if memcmp(ifp.a6[j], h + 8, 16) == 0:
                break
        else:
            return
    dad = memcmp(p.src, ZERO16, 16) == 0
    ll = nd_option(h + 24, n - 24, 1)
    if not dad and ll != NULL:
        x = nbr_find(e, AF_INET6, ifp.index, p.src, True)
        if x.state != NBR_REACHABLE or memcmp(x.mac, ll, 6) != 0:
            nbr_resolved(e, x, ll)
    ip = e.txbuf + ETH_HLEN
    na = ip + 40
    memset(na, 0, 32)
    na[0] = 136
    na[4] = 0xa0 if dad else 0xe0       # router, (solicited), override
    memcpy(na + 8, h + 8, 16)
    na[24] = 2
    na[25] = 1
    memcpy(na + 26, ifp.mac, 6)
    if dad:
        memset(ip + 24, 0, 16)
        ip6_header(ip, 32, 58, 255, h + 8, ip + 24)
        ip[24] = 0xff
        ip[25] = 0x02
        ip[39] = 0x01
    else:
        ip6_header(ip, 32, 58, 255, h + 8, p.src)
    put16(na + 2, csum_fold(csum_add(pseudo6(ip + 8, ip + 24, 32, 58), na, 32)))
    cdef tap_pkt q
    if parse_ip6(&q, ip, 72, NULL) != 0 or tap_pf_hook(e, PF_OUT, ifp, &q) != PF_PASS:
        return
    if dad:
        e.txbuf[0] = 0x33
        e.txbuf[1] = 0x33
        memcpy(e.txbuf + 2, ip + 36, 4)
        memcpy(e.txbuf + 6, ifp.mac, 6)
        put16(e.txbuf + 12, ET_IP6)
    else:
        eth_fill(e.txbuf, ll if ll != NULL else eth_src, ifp.mac, ET_IP6)
    frame_xmit(e, ifp, e.txbuf, ETH_HLEN + 72, NULL)
    ifp.stats[ST_ND_TX] += 1

cdef void local6(tap_engine *e, tap_if *ifp, tap_pkt *p, const uint8_t *eth_src, int kind) noexcept nogil:
    cdef uint8_t *ip
    cdef uint8_t *icmp
    cdef uint32_t n
    ifp.stats[ST_LOCAL_IN] += 1
    if p.frag != 0 or p.l4 == NULL or not local_csum(e, ifp, p):
        ifp.stats[ST_DROP_LOCAL] += 1
        return
    n = p.len - p.l4off
    if p.proto == 58 and p.l4ok:
        if csum_fold(csum_add(pseudo6(p.src, p.dst, n, 58), p.l4, n)) != 0:
            ifp.stats[ST_DROP_BADSUM] += 1
            return
        if p.icmp_type == 135 or p.icmp_type == 136:
            nd_input(e, ifp, p, eth_src)
        elif p.icmp_type == 128 and kind == 1:
            ip = e.txbuf + ETH_HLEN
            icmp = ip + 40
            memcpy(icmp, p.l4, n)
            icmp[0] = 129
            ip6_header(ip, n, 58, 64, p.dst, p.src)
            put16(icmp + 2, 0)
            put16(icmp + 2, csum_fold(csum_add(pseudo6(ip + 8, ip + 24, n, 58), icmp, n)))
            ip6_send_local(e, ip, 40 + n, ifp)
        else:
            ifp.stats[ST_DROP_LOCAL] += 1
    elif p.proto == 17 and kind == 1:
        icmp6_error(e, p, 1, 4, 0)
    else:
        ifp.stats[ST_DROP_LOCAL] += 1

cdef void ip6_input(tap_engine *e, tap_if *ifp, uint8_t *f, uint32_t n, const tap_vnet_hdr *vh) noexcept nogil:
    cdef tap_pkt p
    cdef int rc = parse_ip6(&p, f + ETH_HLEN, n - ETH_HLEN, ifp)
    cdef int kind
    cdef tap_route *r
    if rc != 0:
        ifp.stats[-rc] += 1
        return
    if vh != NULL and (vh.flags or vh.gso_type) and vnet_apply(e, ifp, &p, vh) != 0:
        return
    if tap_pf_hook(e, PF_IN, ifp, &p) != PF_PASS:
        ifp.stats[ST_DROP_PF] += 1
        return
    if p.rt_kind and pf_route(e, &p, NULL) == 1:
        return
    kind = ours6(e, ifp, p.dst)
    if kind:
        local6(e, ifp, &p, f + 6, kind)
        return
    if p.dst[0] == 0xff or v6_is_linklocal(p.dst) or v6_is_linklocal(p.src) \
            or memcmp(p.src, ZERO16, 16) == 0:
        ifp.stats[ST_DROP_LOCAL] += 1       # not forwarded beyond the link
        return
    if p.ttl <= 1:
        ifp.stats[ST_DROP_TTL] += 1
        icmp6_error(e, &p, 3, 0, 0)
        return
    r = route_lookup(e, AF_INET6, p.dst)
    if r == NULL:
        ifp.stats[ST_DROP_NOROUTE] += 1
        icmp6_error(e, &p, 1, 0, 0)
        return
    p.l3[7] -= 1
    ip6_output(e, &e.ifs[r.ifidx], &p, nexthop_of(r, p.dst))


# ---- the loop -------------------------------------------------------------------------------------
cdef void eth_input(tap_engine *e, tap_if *ifp, uint8_t *f, uint32_t n, const tap_vnet_hdr *vh) noexcept nogil:
    cdef uint16_t et
    ifp.stats[ST_RX_FRAMES] += 1
    ifp.stats[ST_RX_BYTES] += n
    if n < ETH_HLEN:
        ifp.stats[ST_DROP_SHORT] += 1
        return
    if not (f[0] & 1) and memcmp(f, ifp.mac, 6) != 0:
        ifp.stats[ST_DROP_NOTUS] += 1
        return
    et = be16(f + 12)
    if et == ET_IP4:
        ip4_input(e, ifp, f, n, vh)
    elif et == ET_IP6:
        ip6_input(e, ifp, f, n, vh)
    elif et == ET_ARP:
        arp_input(e, ifp, f, n)
    else:
        ifp.stats[ST_DROP_ETHERTYPE] += 1

cdef void tap_run(tap_engine *e) noexcept nogil:
    cdef pollfd fds[TAP_MAXIF + 1]
    cdef int i, k, nf = e.nif + 1
    cdef ssize_t n
    cdef uint64_t junk
    cdef uint32_t hl
    for i in range(e.nif):
        fds[i].fd = e.ifs[i].fd
        fds[i].events = POLLIN
    fds[e.nif].fd = e.wakefd
    fds[e.nif].events = POLLIN
    e.now_ms = now_ms()
    e.next_timer_ms = e.now_ms + TIMER_MS
    while not e.stop:
        k = poll(fds, nf, TIMER_MS)
        e.now_ms = now_ms()
        if k > 0:
            for i in range(e.nif):
                if not fds[i].revents:
                    continue
                hl = TAP_VNET_HDR_LEN if e.vnet[i] else 0
                for k in range(TAP_BATCH):
                    n = read(fds[i].fd, e.rxbuf, TAP_FRAME_MAX + hl)
                    if n < 0:
                        if errno != EAGAIN and errno != EINTR:
                            fds[i].fd = -1          # the device went away: stop polling it
                        break
                    if n < hl:
                        e.ifs[i].stats[ST_DROP_SHORT] += 1
                        continue
                    eth_input(e, &e.ifs[i], e.rxbuf + hl, <uint32_t>(n - hl),
                              <tap_vnet_hdr *>e.rxbuf if hl else NULL)
            if fds[e.nif].revents:
                read(e.wakefd, &junk, 8)
        if e.now_ms >= e.next_timer_ms:
            nbr_timer(e)
            e.next_timer_ms = e.now_ms + TIMER_MS


# ---- control plane --------------------------------------------------------------------------------
def _parse_mac(text):
    parts = [int(x, 16) for x in text.split(":")]
    if len(parts) != 6 or any(not 0 <= x <= 255 for x in parts):
        raise ValueError(f"bad MAC address {text!r}")
    return bytes(parts)


cdef class CounterView:
    """pf's counters of one datapath interface as a read-only sequence of 8 ints
    ([af][dir][pass/block] flattened), read straight from the engine; `clear()` restarts them
    from zero by keeping a baseline (the datapath thread is never written to)."""
    cdef Datapath dp
    cdef int ifidx
    cdef bint is_bytes
    cdef uint64_t base[8]

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if not isinstance(i, int):
            return [self[k] for k in range(8)[i]]
        if i < 0:
            i += 8
        if not 0 <= i < 8:
            raise IndexError(i)
        cdef tap_counters *c = &self.dp.e.ifs[self.ifidx].pf
        return (c.bytes[i] if self.is_bytes else c.packets[i]) - self.base[i]

    def __iter__(self):
        return iter([self[i] for i in range(8)])

    def __repr__(self):
        return repr(list(self))

    def clear(self):
        cdef tap_counters *c = &self.dp.e.ifs[self.ifidx].pf
        for i in range(8):
            self.base[i] = c.bytes[i] if self.is_bytes else c.packets[i]


cdef class Datapath:
    """The engine: interfaces and routes are configured before start()."""

    def __cinit__(self):
        self.e = <tap_engine *>calloc(1, sizeof(tap_engine))
        if self.e == NULL:
            raise MemoryError()
        cdef int i
        self.e.wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.e.nbr_reachable_ms = 300000
        self.e.nbr_probe_ms = 1000
        self.e.nbr_max_probes = 3
        self.e.pfree = 0
        for i in range(TAP_PEND_SLOTS):
            self.e.pend[i].next = i + 1 if i + 1 < TAP_PEND_SLOTS else -1
        for i in range(TAP_NBR_SIZE):
            self.e.nbr[i].qhead = -1
        self.running = False

    def __dealloc__(self):
        cdef int i
        if self.e != NULL:
            if not self.running:
                for i in range(self.e.nif):
                    close(self.e.ifs[i].fd)
                close(self.e.wakefd)
                free(self.e)
            # else: a thread still uses it; leak rather than crash
            self.e = NULL

    def set_timers(self, reachable_ms=None, probe_ms=None, max_probes=None):
        if reachable_ms is not None:
            self.e.nbr_reachable_ms = reachable_ms
        if probe_ms is not None:
            self.e.nbr_probe_ms = probe_ms
        if max_probes is not None:
            self.e.nbr_max_probes = max_probes

    def add_interface(self, name, addresses=(), mac=None, mtu=None, create=True, vnet=False):
        """Create (create=True) or attach to (False) the TAP `name`; give the router `mac`
        (random locally administered when None) and `addresses` ("a.b.c.d/len", "x::y/len").
        vnet=True opens it with IFF_VNET_HDR and offers the kernel checksum offload and TSO
        (VNET_OFFLOADS). Returns the interface's index. For a created TAP the host link is
        brought up."""
        import ipaddress
        if self.running:
            raise RuntimeError("datapath running: configure before start()")
        if self.e.nif >= TAP_MAXIF:
            raise ValueError("too many interfaces")
        bname = name.encode()
        if not 0 < len(bname) < 16:
            raise ValueError(f"bad interface name {name!r}")
        for i in range(self.e.nif):
            if self.e.ifs[i].name == bname:
                raise ValueError(f"interface {name} configured twice")
        exists = os.path.exists(f"/sys/class/net/{name}")
        if create and exists:
            raise OSError(17, f"interface {name} exists (use attach)")
        if not create and not exists:
            raise OSError(19, f"no interface {name} to attach to")
        if mac is None:
            mac = bytes([0x02]) + os.urandom(5)
        elif isinstance(mac, str):
            mac = _parse_mac(mac)
        if len(mac) != 6 or mac[0] & 1:
            raise ValueError("bad router MAC")
        v4, v6 = [], []
        for a in addresses:
            iface = ipaddress.ip_interface(a)
            (v4 if iface.version == 4 else v6).append(iface)
        if len(v4) > TAP_MAXADDR or len(v6) + 1 > TAP_MAXADDR:
            raise ValueError("too many addresses")
        cdef int fd = c_open(b"/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)
        if fd < 0:
            raise OSError(errno, f"/dev/net/tun: {os.strerror(errno)}")
        cdef ifreq ifr
        memset(&ifr, 0, sizeof(ifr))
        strncpy(ifr.ifr_name, bname, 15)
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet else 0)
        if ioctl(fd, TUNSETIFF, &ifr) < 0:
            err = errno
            close(fd)
            raise OSError(err, f"TUNSETIFF {name}: {os.strerror(err)}")
        cdef int hsz = TAP_VNET_HDR_LEN
        # also without vnet: an attached TAP may keep offloads a previous owner turned on
        if (vnet and ioctl(fd, TUNSETVNETHDRSZ, &hsz) < 0) or \
                ioctl(fd, TUNSETOFFLOAD, <unsigned long>(VNET_OFFLOADS if vnet else 0)) < 0:
            err = errno
            close(fd)
            raise OSError(err, f"{name}: setting offloads: {os.strerror(err)}")
        cdef tap_if *ifp = &self.e.ifs[self.e.nif]
        memset(ifp, 0, sizeof(tap_if))
        ifp.fd = fd
        ifp.index = self.e.nif
        ifp.ifindex = if_nametoindex(bname)
        memcpy(ifp.name, <char *>bname, len(bname))
        memcpy(ifp.mac, <char *>mac, 6)
        cdef int s = socket(AF_INET, SOCK_DGRAM, 0)
        cdef int hostmtu = 1500
        if s >= 0:
            if ioctl(s, SIOCGIFMTU, &ifr) == 0 and ifr.ifr_mtu > 0:
                hostmtu = ifr.ifr_mtu
            if create and ioctl(s, SIOCGIFFLAGS, &ifr) == 0:
                ifr.ifr_flags |= IFF_UP
                ioctl(s, SIOCSIFFLAGS, &ifr)
            close(s)
        ifp.mtu = mtu if mtu else hostmtu
        for j, iface in enumerate(v4):
            memcpy(ifp.a4[j], <char *>iface.ip.packed, 4)
            ifp.p4[j] = iface.network.prefixlen
        ifp.n4 = len(v4)
        # a6[0]: link-local from the MAC (modified EUI-64)
        ll = bytes([0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]])
        memcpy(ifp.a6[0], <char *>ll, 16)
        ifp.p6[0] = 64
        for j, iface in enumerate(v6):
            memcpy(ifp.a6[j + 1], <char *>iface.ip.packed, 16)
            ifp.p6[j + 1] = iface.network.prefixlen
        ifp.n6 = len(v6) + 1
        self.e.vnet[ifp.index] = 1 if vnet else 0
        memset(self.e.vstats[ifp.index], 0, sizeof(self.e.vstats[ifp.index]))
        self.e.nif += 1
        for iface in v4 + v6:
            self._add_route(iface.network, None, ifp.index)
        return ifp.index

    def add_route(self, prefix, gateway):
        """A static route: prefix ("net/len") via gateway, which must be on a connected network."""
        import ipaddress
        if self.running:
            raise RuntimeError("datapath running: configure before start()")
        net = ipaddress.ip_network(prefix, strict=False)
        gw = ipaddress.ip_address(gateway)
        if gw.version != net.version:
            raise ValueError(f"route {prefix} via {gateway}: address families differ")
        cdef tap_route *r
        cdef int i, n = self.e.nroute4 if net.version == 4 else self.e.nroute6
        for i in range(n):
            if net.version == 4:
                r = &self.e.routes4[i]
            else:
                r = &self.e.routes6[i]
            if not r.has_gw and gw in ipaddress.ip_network(
                    ((<char *>r.dst)[:4 if net.version == 4 else 16], r.plen)):
                self._add_route(net, gw, r.ifidx)
                return
        raise ValueError(f"route {prefix}: gateway {gateway} is not on a connected network")

    def _add_route(self, net, gw, int ifidx):
        cdef tap_route *tab
        cdef int n = self.e.nroute4 if net.version == 4 else self.e.nroute6
        cdef int i, pos
        if net.version == 4:
            tab = self.e.routes4
        else:
            tab = self.e.routes6
        for i in range(n):
            if tab[i].plen == net.prefixlen and (<char *>tab[i].dst)[:len(net.network_address.packed)] \
                    == net.network_address.packed:
                raise ValueError(f"route {net} exists")
        if n >= TAP_MAXROUTE:
            raise ValueError("route table full")
        pos = n
        while pos > 0 and tab[pos - 1].plen < net.prefixlen:
            tab[pos] = tab[pos - 1]
            pos -= 1
        memset(&tab[pos], 0, sizeof(tap_route))
        tab[pos].af = AF_INET if net.version == 4 else AF_INET6
        tab[pos].plen = net.prefixlen
        tab[pos].ifidx = ifidx
        packed = net.network_address.packed
        memcpy(tab[pos].dst, <char *>packed, len(packed))
        if gw is not None:
            tab[pos].has_gw = 1
            packed = gw.packed
            memcpy(tab[pos].gw, <char *>packed, len(packed))
        if net.version == 4:
            self.e.nroute4 += 1
        else:
            self.e.nroute6 += 1

    def routes(self):
        """[(prefix, gateway or None, interface name)] longest prefix first."""
        import ipaddress
        out = []
        cdef tap_route *tab
        cdef int i, n
        for v in (4, 6):
            tab = <tap_route *>self.e.routes4 if v == 4 else <tap_route *>self.e.routes6
            n = self.e.nroute4 if v == 4 else self.e.nroute6
            for i in range(n):
                size = 4 if v == 4 else 16
                net = ipaddress.ip_network(((<char *>tab[i].dst)[:size], tab[i].plen))
                gw = ipaddress.ip_address((<char *>tab[i].gw)[:size]) if tab[i].has_gw else None
                out.append((str(net), str(gw) if gw else None, self.e.ifs[tab[i].ifidx].name.decode()))
        return out

    def interfaces(self):
        """[(name, host ifindex, mac, mtu)] in configuration order."""
        return [(self.e.ifs[i].name.decode(), self.e.ifs[i].ifindex,
                 (<char *>self.e.ifs[i].mac)[:6].hex(":"), self.e.ifs[i].mtu)
                for i in range(self.e.nif)]

    def _index(self, name):
        bname = name.encode()
        for i in range(self.e.nif):
            if self.e.ifs[i].name == bname:
                return i
        raise KeyError(name)

    def counters(self, name):
        """(packets, bytes) CounterViews of interface `name` for pf_if's Kif."""
        cdef int i = self._index(name)
        p = CounterView.__new__(CounterView)
        b = CounterView.__new__(CounterView)
        for v, is_bytes in ((p, False), (b, True)):
            (<CounterView>v).dp = self
            (<CounterView>v).ifidx = i
            (<CounterView>v).is_bytes = is_bytes
        return p, b

    def stats(self, name):
        """The engine's statistics of interface `name` as a dict (STAT_NAMES, VSTAT_NAMES,
        FSTAT_NAMES)."""
        cdef int i = self._index(name)
        d = {STAT_NAMES[k]: self.e.ifs[i].stats[k] for k in range(ST_NSTATS)}
        d.update({VSTAT_NAMES[k]: self.e.vstats[i][k] for k in range(VS_NSTATS)})
        d.update({FSTAT_NAMES[k]: self.e.fstats[i][k] for k in range(FS_NSTATS)})
        return d

    def vnet(self, name):
        """True when interface `name` carries virtio_net_hdr offloads."""
        return bool(self.e.vnet[self._index(name)])

    def start(self):
        if self.running:
            return
        self.e.stop = 0
        self.running = True
        self.thread = threading.Thread(target=self._loop, name="pf-datapath", daemon=True)
        self.thread.start()

    def _loop(self):
        with nogil:
            tap_run(self.e)

    def stop(self):
        cdef uint64_t one = 1
        if not self.running:
            return
        self.e.stop = 1
        write(self.e.wakefd, &one, 8)
        self.thread.join()
        self.running = False

    def close(self):
        """Stop and close the TAP fds (created TAPs disappear)."""
        cdef int i
        self.stop()
        for i in range(self.e.nif):
            if self.e.ifs[i].fd >= 0:
                close(self.e.ifs[i].fd)
                self.e.ifs[i].fd = -1
