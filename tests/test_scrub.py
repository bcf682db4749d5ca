"""Scrub (pfkern/pf_norm.pyx; FreeBSD 12.1 pf_norm.c) and the router's fragmentation on output
(pfkern/pf_tap.pyx: ip_fragment for IPv4 without DF, pf_refragment6 for reassembled IPv6).

Two parts: pf_norm_packet driven directly with hand-built packets (`_NormForTests`: reassembly,
12.1's overlap rules, the checks that drop, the cache's limit and timeout, every scrub option,
the TCP checks and the MSS clamp with its checksum), then end to end through two namespaces and
pfd with captures taken inside them (fragmented UDP/ICMP reassembled, filtered and translated as
whole datagrams; IPv6 cut again to the sizes it came in; no-df, random-id, min-ttl, set-tos,
max-mss as the receiving side sees them). Packets are built here (no scapy)."""
import contextlib
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest

from pfkern.client.constants import (PF_SCRUB, PFRES_FRAG, PFRES_MEMORY, PFRES_NORM, PFRES_SHORT,
                                      PFRULE_NODF, PFRULE_RANDOMID, PFRULE_SET_TOS)

NORM_PASS, NORM_DROP, NORM_HELD = 0, 1, 2
SRC, DST = "10.0.0.1", "10.0.0.2"
SRC6, DST6 = "fd00::1", "fd00::2"


# ---- packets ------------------------------------------------------------------------------------
from datapath_probe import _csum as csum  # noqa: E402  (the Internet checksum)


def ip4(payload, proto=17, ident=1, off=0, mf=False, df=False, ttl=64, tos=0, opts=b"",
        src=SRC, dst=DST, rsv=False):
    hl = 20 + len(opts)
    flags = (0x8000 if rsv else 0) | (0x4000 if df else 0) | (0x2000 if mf else 0) | (off >> 3)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | hl // 4, tos, hl + len(payload), ident, flags, ttl,
                    proto, 0, socket.inet_aton(src), socket.inet_aton(dst)) + opts
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def pseudo4(src, dst, proto, n):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, n)


def pseudo6(src, dst, proto, n):
    return (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) +
            struct.pack("!IxxxB", n, proto))


def udp(data, sport=1000, dport=2000, v6=False, src=None, dst=None):
    src = src or (SRC6 if v6 else SRC)
    dst = dst or (DST6 if v6 else DST)
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    ph = (pseudo6 if v6 else pseudo4)(src, dst, 17, len(u))
    return u[:6] + struct.pack("!H", csum(ph + u) or 0xFFFF) + u[8:]


def tcp(flags=0x02, opts=b"", sport=1000, dport=80, urp=0, x2=0, data=b"", src=SRC, dst=DST,
        v6=False):
    off = (20 + len(opts)) // 4
    t = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, (off << 4) | x2, flags, 65535, 0, urp) + opts + data
    c = csum((pseudo6 if v6 else pseudo4)(src, dst, 6, len(t)) + t)
    return t[:16] + struct.pack("!H", c) + t[18:]


def tcp_ok(ip):
    """The TCP checksum of an IPv4 packet verifies."""
    hl = (ip[0] & 15) * 4
    t = ip[hl:]
    return csum(pseudo4(socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), 6, len(t)) + t) == 0


def frags4(l4, size, proto=17, **kw):
    out = []
    for off in range(0, len(l4), size):
        out.append(ip4(l4[off:off + size], proto=proto, off=off, mf=off + size < len(l4), **kw))
    return out


def ip6(payload, nxt, hlim=64, src=SRC6, dst=DST6, tc=0):
    return struct.pack("!IHBB16s16s", (6 << 28) | (tc << 20), len(payload), nxt, hlim,
                       socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst)) + payload


def frags6(l4, size, nxt=17, ident=0x01020304, ext=b"", ext_nxt=None, **kw):
    """Fragments of l4 (size data bytes each); ext: extension headers before the fragment header
    (their first's type is ext_nxt; the last names the fragment header)."""
    out = []
    for off in range(0, len(l4), size):
        fh = struct.pack("!BBHI", nxt, 0, off | (1 if off + size < len(l4) else 0), ident)
        if ext:
            out.append(ip6(ext + fh + l4[off:off + size], ext_nxt, **kw))
        else:
            out.append(ip6(fh + l4[off:off + size], 44, **kw))
    return out


def data(n, seed=0):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def ip4_fields(p):
    ver_ihl, tos, tot, ident, off, ttl, proto, sm = struct.unpack("!BBHHHBBH", p[:12])
    return dict(hl=(ver_ihl & 15) * 4, tos=tos, len=tot, id=ident, df=bool(off & 0x4000),
                mf=bool(off & 0x2000), off=(off & 0x1FFF) * 8, rsv=bool(off & 0x8000), ttl=ttl,
                proto=proto, sum_ok=csum(p[:(ver_ihl & 15) * 4]) == 0)


def mss_of(t):
    """The MSS option of a TCP header, or None."""
    hl = (t[12] >> 4) * 4
    i = 20
    while i < hl:
        if t[i] == 0:
            break
        if t[i] == 1:
            i += 1
            continue
        if t[i] == 2:
            return struct.unpack("!H", t[i + 2:i + 4])[0]
        i += t[i + 1]
    return None


@pytest.fixture
def norm():
    from pfkern.pf_norm import _NormForTests
    n = _NormForTests()
    n.rule()
    return n


def feed_all(n, pkts, now=1):
    res = None
    for p in pkts:
        res = n.feed(p, now=now)
    return res


# ---- reassembly -------------------------------------------------------------------------------------
def test_ipv4_fragments_held_then_one_packet(norm):
    u = udp(data(3000))
    fr = frags4(u, 1480, ident=77)
    for p in fr[:-1]:
        rc, reason, out, info = norm.feed(p)
        assert (rc, out) == (NORM_HELD, None)
    assert norm.count() == len(fr) - 1 and norm.queues() == 1
    rc, reason, out, info = norm.feed(fr[-1])
    assert rc == NORM_PASS
    assert out == ip4(u, ident=77)                 # length, offset and checksum as if never cut
    assert info["frag"] == 0 and info["l4ok"] and info["sport"] == socket.htons(1000)
    assert info["reassembled"] and info["headroom"] >= 64
    assert norm.count() == 0 and norm.queues() == 0


def test_out_of_order_and_interleaved_datagrams(norm):
    a, b = udp(data(2000, 1)), udp(data(2500, 2), sport=3000)
    fa, fb = frags4(a, 800, ident=1), frags4(b, 800, ident=2)
    seq = [fa[2], fb[3], fb[0], fa[0], fb[2]]
    for p in seq:
        assert norm.feed(p)[0] == NORM_HELD
    assert norm.queues() == 2
    rc, _, out, _ = norm.feed(fa[1])
    assert rc == NORM_PASS and out == ip4(a, ident=1)
    rc, _, out, _ = norm.feed(fb[1])
    assert rc == NORM_PASS and out == ip4(b, ident=2)


def test_key_is_src_dst_id_proto(norm):
    u = udp(data(1200))
    f1, f2 = frags4(u, 808, ident=5)
    assert norm.feed(f1)[0] == NORM_HELD
    # same id, other protocol / source: other datagrams
    assert norm.feed(frags4(u, 808, ident=5, proto=6)[1])[0] == NORM_HELD
    assert norm.feed(frags4(u, 808, ident=5, src="10.0.0.9")[1])[0] == NORM_HELD
    assert norm.queues() == 3
    rc, _, out, _ = norm.feed(f2)
    assert rc == NORM_PASS and out == ip4(u, ident=5)


def test_overlaps_as_12_1(norm):
    """The new fragment's front is cut where the previous reaches (earlier data wins); later
    fragments it reaches into are cut (its data wins); those it covers are lost."""
    old = b"A" * 64
    new = b"B" * 64
    # [0,32) held; new [16,48): its first 16 bytes cut -> A*32 + B*16
    assert norm.feed(ip4(old[:32], off=0, mf=True, ident=9))[0] == NORM_HELD
    assert norm.feed(ip4(new[:32], off=16, mf=True, ident=9))[0] == NORM_HELD
    rc, _, out, _ = norm.feed(ip4(b"C" * 16, off=48, ident=9))
    assert rc == NORM_PASS and out[20:] == b"A" * 32 + b"B" * 16 + b"C" * 16
    # later fragments: [32,40) wholly covered and [40,64) cut at its front by a new [24,48)
    assert norm.feed(ip4(b"D" * 8, off=32, mf=True, ident=10))[0] == NORM_HELD
    assert norm.feed(ip4(b"E" * 24, off=40, ident=10))[0] == NORM_HELD
    assert norm.count() == 2
    assert norm.feed(ip4(b"F" * 24, off=24, mf=True, ident=10))[0] == NORM_HELD
    assert norm.count() == 2                       # D went
    rc, _, out, _ = norm.feed(ip4(b"G" * 24, off=0, mf=True, ident=10))
    assert rc == NORM_PASS and out[20:] == b"G" * 24 + b"F" * 24 + b"E" * 16


def test_a_fragment_inside_another_is_bad(norm):
    assert norm.feed(ip4(b"A" * 64, off=0, mf=True, ident=3))[0] == NORM_HELD
    rc, reason, out, _ = norm.feed(ip4(b"B" * 16, off=16, mf=True, ident=3))
    assert (rc, reason) == (NORM_DROP, PFRES_FRAG)
    assert norm.counters()[PFRES_FRAG] == 1
    assert norm.count() == 1                       # the queue stays


@pytest.mark.parametrize("pkt,why", [
    (lambda: ip4(b"x" * 16, off=8, mf=True, df=True), "DF on a fragment"),
    (lambda: ip4(b"x" * 12, off=0, mf=True), "MF and not a multiple of 8"),
    (lambda: ip4(b"x" * 16, off=65528, mf=False), "beyond IP_MAXPACKET"),
    (lambda: ip4(b"", off=8, mf=True), "empty"),
])
def test_bad_fragments(norm, pkt, why):
    rc, reason, out, _ = norm.feed(pkt())
    assert (rc, reason) == (NORM_DROP, PFRES_FRAG), why
    assert norm.count() == 0


def test_no_df_lets_a_df_fragment_in(norm):
    norm.rule(rule_flag=PFRULE_NODF)
    u = udp(data(1000))
    fr = frags4(u, 512, df=True, ident=4)
    assert norm.feed(fr[0])[0] == NORM_HELD
    rc, _, out, _ = norm.feed(fr[1])
    assert rc == NORM_PASS and out == ip4(u, ident=4)           # DF gone


def test_last_fragment_consistency(norm):
    assert norm.feed(ip4(b"x" * 16, off=16, ident=6))[0] == NORM_HELD        # the end: 32
    for bad in (ip4(b"x" * 16, off=24, ident=6),                            # past the end
                ip4(b"x" * 8, off=24, mf=True, ident=6),                    # MF reaching the end
                ip4(b"x" * 8, off=8, ident=6)):                             # a second, other end
        assert norm.feed(bad)[:2] == (NORM_DROP, PFRES_FRAG)
    rc, _, out, _ = norm.feed(ip4(b"y" * 16, off=0, mf=True, ident=6))
    assert rc == NORM_PASS and out[20:] == b"y" * 16 + b"x" * 16
    # before the end is known: a non-final fragment without MF short of what was seen is bad
    assert norm.feed(ip4(b"x" * 16, off=32, mf=True, ident=8))[0] == NORM_HELD
    assert norm.feed(ip4(b"x" * 8, off=8, ident=8))[:2] == (NORM_DROP, PFRES_FRAG)
    assert norm.feed(ip4(b"x" * 8, off=48, mf=True, ident=8))[0] == NORM_HELD  # beyond: fine


def test_too_big_once_joined_is_short(norm):
    """Offsets within IP_MAXPACKET, but with its 20-byte header the joined datagram is not."""
    assert norm.feed(ip4(b"a" * 32760, off=0, mf=True, ident=2))[0] == NORM_HELD
    assert norm.feed(ip4(b"b" * 32760, off=32760, mf=True, ident=2))[0] == NORM_HELD
    rc, reason, _, _ = norm.feed(ip4(b"c" * 15, off=65520, ident=2))
    assert (rc, reason) == (NORM_DROP, PFRES_SHORT)
    assert norm.count() == 0 and norm.queues() == 0
    assert norm.counters()[PFRES_SHORT] == 1


def test_sixty_four_fragments_added_at_most(norm):
    for i in range(65):                            # the first and 64 more
        assert norm.feed(ip4(b"q" * 8, off=8 * i, mf=True, ident=11))[0] == NORM_HELD, i
    assert norm.feed(ip4(b"q" * 8, off=8 * 65, mf=True, ident=11))[:2] == (NORM_DROP, PFRES_FRAG)


def test_frags_limit_flushes_the_oldest(norm):
    norm.set_limit(10)
    for ident in range(10):
        assert norm.feed(ip4(b"p" * 8, off=0, mf=True, ident=ident), now=ident)[0] == NORM_HELD
    assert norm.count() == 10
    # full: the oldest datagram goes (a tenth of the fragments freed), the new one is held
    assert norm.feed(ip4(b"p" * 8, off=0, mf=True, ident=99), now=20)[0] == NORM_HELD
    assert norm.count() == 10 and norm.queues() == 10
    norm.set_limit(100)
    rc, _, _, _ = norm.feed(ip4(b"p" * 8, off=8, ident=0), now=21)      # ident 0 was flushed
    assert rc == NORM_HELD
    rc, _, out, _ = norm.feed(ip4(b"p" * 8, off=8, ident=1), now=21)    # ident 1 was kept
    assert rc == NORM_PASS and out[20:] == b"p" * 16
    # a limit below what is held: each new fragment flushes a tenth and is refused while full
    norm.set_limit(1)
    n0 = norm.count()
    assert n0 > 1
    rc, reason, _, _ = norm.feed(ip4(b"p" * 8, off=0, mf=True, ident=200), now=30)
    assert (rc, reason) == (NORM_DROP, PFRES_MEMORY) and 0 < norm.count() < n0
    assert norm.counters()[PFRES_MEMORY] == 1


def test_timeout_purges_untouched_queues(norm):
    norm.set_timeout(30)
    assert norm.feed(ip4(b"a" * 8, off=0, mf=True, ident=1), now=100)[0] == NORM_HELD
    assert norm.feed(ip4(b"b" * 8, off=0, mf=True, ident=2), now=110)[0] == NORM_HELD
    assert norm.feed(ip4(b"a" * 8, off=16, mf=True, ident=1), now=120)[0] == NORM_HELD  # renewed
    assert norm.purge(139) == 0
    assert norm.purge(140) == 1 and norm.queues() == 1                  # ident 2 (last: 110)
    assert norm.purge(150) == 1 and norm.count() == 0


def test_ipv6_reassembly_and_refragment_facts(norm):
    u = udp(data(3000), v6=True)
    fr = frags6(u, 1448)
    for p in fr[:-1]:
        assert norm.feed(p)[0] == NORM_HELD
    rc, _, out, info = norm.feed(fr[-1])
    assert rc == NORM_PASS and out == ip6(u, 17)   # no fragment header, UDP named by the IPv6 header
    assert info["frag_max"] == 1448 and info["frag_hdrlen"] == 40
    assert info["frag_id"] == struct.pack("!I", 0x01020304)
    assert info["proto"] == 17 and info["l4ok"] and info["frag"] == 0


def test_ipv6_extension_header_before_the_fragment_header(norm):
    dstopts = struct.pack("!BB6s", 44, 0, b"\x01\x04\0\0\0\0")        # PadN, names the frag hdr
    u = udp(data(600), v6=True)
    fr = frags6(u, 304, ext=dstopts, ext_nxt=60)
    assert norm.feed(fr[1])[0] == NORM_HELD
    rc, _, out, info = norm.feed(fr[0])
    assert rc == NORM_PASS
    assert out == ip6(struct.pack("!BB6s", 17, 0, b"\x01\x04\0\0\0\0") + u, 60)
    assert info["frag_hdrlen"] == 48 and info["frag_max"] == 304 and info["proto"] == 17


def test_ipv6_bad_hop_by_hop_options(norm):
    jumbo = struct.pack("!BBBBI", 17, 0, 0xC2, 4, 70000)
    rc, reason, _, _ = norm.feed(ip6(jumbo + udp(b"x", v6=True), 0))
    assert (rc, reason) == (NORM_DROP, PFRES_NORM)
    overrun = struct.pack("!BBBB4s", 17, 0, 0x1E, 9, b"\0" * 4)
    assert norm.feed(ip6(overrun + udp(b"x", v6=True), 0))[:2] == (NORM_DROP, PFRES_NORM)


# ---- pf_scrub_ip / pf_scrub_ip6 -----------------------------------------------------------------------
def test_no_df_min_ttl_set_tos(norm):
    norm.rule(rule_flag=PFRULE_NODF | PFRULE_SET_TOS, min_ttl=40, set_tos=0x10)
    rc, _, out, info = norm.feed(ip4(udp(b"hello"), df=True, ttl=3, tos=0x03, rsv=True))
    f = ip4_fields(out)
    assert rc == NORM_PASS and f["sum_ok"]
    assert not f["df"] and not f["rsv"] and f["ttl"] == 40 and info["ttl"] == 40
    assert f["tos"] == 0x13                        # the ECN bits kept
    rc, _, out, _ = norm.feed(ip4(udp(b"hello"), df=True, ttl=200))
    assert ip4_fields(out)["ttl"] == 200 and ip4_fields(out)["tos"] == 0x10
    norm.rule()
    rc, _, out, _ = norm.feed(ip4(udp(b"hello"), df=True, ttl=3, tos=3))
    assert out == ip4(udp(b"hello"), df=True, ttl=3, tos=3)       # nothing asked, nothing done


def test_random_id(norm):
    norm.rule(rule_flag=PFRULE_RANDOMID)
    ids = set()
    for i in range(20):
        rc, _, out, _ = norm.feed(ip4(udp(b"x"), ident=1000 + i))
        assert ip4_fields(out)["sum_ok"]
        ids.add(ip4_fields(out)["id"])
    assert len(ids) >= 18 and len(ids & set(range(1000, 1020))) <= 1
    norm.rule()
    assert ip4_fields(norm.feed(ip4(udp(b"x"), ident=1234))[2])["id"] == 1234


def test_ipv6_min_hop_limit_not_on_reassembled(norm):
    norm.rule(min_ttl=50)
    rc, _, out, info = norm.feed(ip6(udp(b"x", v6=True), 17, hlim=2))
    assert out[7] == 50 and info["ttl"] == 50
    u = udp(data(100), v6=True)
    fr = frags6(u, 48, hlim=2)
    for p in fr[:-1]:
        norm.feed(p)
    rc, _, out, _ = norm.feed(fr[-1])
    assert rc == NORM_PASS and out[7] == 2        # 12.1 returns right after reassembly


# ---- pf_normalize_tcp -----------------------------------------------------------------------------------
@pytest.mark.parametrize("opts", [
    struct.pack("!BBH", 2, 4, 1460) + b"\x01\x03\x03\x07",                 # aligned
    b"\x01" + struct.pack("!BBH", 2, 4, 1460) + b"\x01\x01\x00",           # at an odd offset
])
def test_max_mss_clamp(norm, opts):
    norm.rule(max_mss=1000)
    rc, _, out, _ = norm.feed(ip4(tcp(0x02, opts), proto=6))
    assert rc == NORM_PASS and mss_of(out[20:]) == 1000 and tcp_ok(out)
    rc, _, out, _ = norm.feed(ip4(tcp(0x02, struct.pack("!BBH", 2, 4, 900)), proto=6))
    assert mss_of(out[20:]) == 900 and tcp_ok(out)
    norm.rule()
    rc, _, out, _ = norm.feed(ip4(tcp(0x02, opts), proto=6))
    assert mss_of(out[20:]) == 1460


def test_partial_checksum_left_alone(norm):
    norm.rule(max_mss=1000)
    pkt = ip4(tcp(0x02, struct.pack("!BBH", 2, 4, 1460)), proto=6)
    rc, _, out, _ = norm.feed(pkt, csum_partial=True)
    assert mss_of(out[20:]) == 1000 and out[36:38] == pkt[36:38]


@pytest.mark.parametrize("flags,ok", [(0x02, True), (0x12, True), (0x10, True), (0x04, True),
                                      (0x03, False), (0x06, False), (0x00, False), (0x01, False),
                                      (0x08, False), (0x18, True), (0x11, True), (0x20, False)])
def test_tcp_flag_checks(norm, flags, ok):
    rc, reason, _, _ = norm.feed(ip4(tcp(flags), proto=6))
    assert (rc, reason) == ((NORM_PASS, 0) if ok else (NORM_DROP, PFRES_NORM))


def test_tcp_reserved_bits_and_urgent_pointer_cleared(norm):
    rc, _, out, _ = norm.feed(ip4(tcp(0x10, x2=0x0E, urp=77), proto=6))
    assert out[32] & 0x0F == 0 and out[38:40] == b"\0\0" and tcp_ok(out)
    rc, _, out, _ = norm.feed(ip4(tcp(0x30, urp=77), proto=6))                  # URG: kept
    assert struct.unpack("!H", out[38:40])[0] == 77


def test_reassembled_tcp_gets_the_tcp_checks(norm):
    norm.rule(max_mss=536)
    t = tcp(0x02, struct.pack("!BBH", 2, 4, 1460), data=data(100))
    fr = frags4(t, 64, proto=6, ident=3)
    for p in fr[:-1]:
        assert norm.feed(p)[0] == NORM_HELD
    rc, _, out, _ = norm.feed(fr[-1])
    assert rc == NORM_PASS and mss_of(out[20:]) == 536 and tcp_ok(out)


# ==== end to end ===========================================================================================
needs_root = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")
needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")

UDP_PORT = 5731
TCP_PORT = 5732
OTHER_PORT = 5733

# run inside a namespace: python3 -c NS_TOOL CMD JSON
NS_TOOL = r'''
import hashlib, json, socket, struct, sys, time
cmd, a = sys.argv[1], json.loads(sys.argv[2])
def out(o): print(json.dumps(o), flush=True)
def payload(n, seed): return bytes((i * 7 + seed) & 0xff for i in range(n))
af = socket.AF_INET6 if a.get("v6") else socket.AF_INET
if cmd == "recv":
    s = socket.socket(af, socket.SOCK_DGRAM)
    s.bind(("::" if a.get("v6") else "0.0.0.0", a["port"]))
    s.settimeout(a.get("timeout", 3))
    out({"ready": True})
    got = []
    try:
        while len(got) < a["count"]:
            d, peer = s.recvfrom(70000)
            got.append({"src": peer[0], "len": len(d), "sha": hashlib.sha256(d).hexdigest()})
    except socket.timeout:
        pass
    out(got)
elif cmd == "send":
    s = socket.socket(af, socket.SOCK_DGRAM)
    if a.get("ttl"):
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, a["ttl"])
    if a.get("tos") is not None:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, a["tos"])
    if a.get("pmtu") is not None:
        s.setsockopt(socket.IPPROTO_IPV6 if a.get("v6") else socket.IPPROTO_IP,
                     23 if a.get("v6") else 10, a["pmtu"])     # IPV6_/IP_MTU_DISCOVER
    for i, n in enumerate(a["sizes"]):
        s.sendto(payload(n, i), (a["dst"], a["port"]))
        time.sleep(a.get("gap", 0.02))
    out({"sent": len(a["sizes"])})
elif cmd == "raw4":
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for h in a["packets"]:
        s.sendto(bytes.fromhex(h), (a["dst"], 0))
        time.sleep(0.02)
    out({"sent": len(a["packets"])})
elif cmd == "ping":
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setsockopt(socket.IPPROTO_IP, 10, 0)             # IP_MTU_DISCOVER: IP_PMTUDISC_DONT
    s.settimeout(2)
    body = payload(a["size"], 3)
    replies = 0
    for seq in range(a["count"]):
        h = struct.pack("!BBHHH", 8, 0, 0, 0x5c5c, seq) + body
        c = sum(struct.unpack("!%dH" % (len(h) // 2), h + b"\0" * (len(h) % 2)))
        while c >> 16: c = (c & 0xffff) + (c >> 16)
        h = h[:2] + struct.pack("!H", ~c & 0xffff) + h[4:]
        s.sendto(h, (a["dst"], 0))
        deadline = time.time() + 2
        while time.time() < deadline:
            try:
                d = s.recv(70000)
            except socket.timeout:
                break
            hl = (d[0] & 15) * 4
            if d[hl] == 0 and d[hl + 4:hl + 8] == struct.pack("!HH", 0x5c5c, seq) and d[hl + 8:] == body:
                replies += 1
                break
    out({"replies": replies})
elif cmd == "tcp":
    c = socket.create_connection((a["dst"], a["port"]), timeout=5)
    c.sendall(b"line\n")
    got = b""
    while len(got) < 5:
        d = c.recv(100)
        if not d:
            break
        got += d
    out({"echo": got.decode()})
'''


def sha(b):
    return hashlib.sha256(b).hexdigest()


def read_pcap(path):
    """The IPv4/IPv6 packets (from their IP header) of an Ethernet pcap."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 24:
        return []
    e = "<" if struct.unpack("<I", raw[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    assert struct.unpack(e + "I", raw[20:24])[0] == 1, "not Ethernet"
    off, out = 24, []
    while off + 16 <= len(raw):
        incl = struct.unpack(e + "IIII", raw[off:off + 16])[2]
        frame = raw[off + 16:off + 16 + incl]
        off += 16 + incl
        if frame[12:14] in (b"\x08\x00", b"\x86\xdd"):
            out.append(frame[14:])
    return out


def v4(pkts, proto=None):
    return [p for p in pkts if p[0] >> 4 == 4 and (proto is None or p[9] == proto)]


def v6frag(p):
    """(offset, more, ident, data length) when p is an IPv6 fragment (no extension headers)."""
    if p[0] >> 4 != 6 or p[6] != 44:
        return None
    nxt, _, offlg, ident = struct.unpack("!BBHI", p[40:48])
    return offlg & 0xFFF8, bool(offlg & 1), ident, len(p) - 48


@contextlib.contextmanager
def capture(t, side, path):
    cap = subprocess.Popen(["ip", "netns", "exec", side.ns, "tcpdump", "-U", "--immediate-mode",
                            "-Z", "root", "-n", "-s", "0", "-i", side.tap, "-w", path, "not arp"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in cap.stderr.readline()
        yield
        time.sleep(0.3)
    finally:
        cap.terminate()
        cap.wait()


def ns_tool(t, side, cmd, **a):
    res = t.ns(side, sys.executable, "-c", NS_TOOL, cmd, json.dumps(a), timeout=30)
    return json.loads(res.stdout.strip().splitlines()[-1])


def receiver(t, side, port, count, v6=False, timeout=3):
    p = subprocess.Popen(["ip", "netns", "exec", side.ns, sys.executable, "-c", NS_TOOL, "recv",
                          json.dumps(dict(port=port, count=count, v6=v6, timeout=timeout))],
                         stdout=subprocess.PIPE, text=True)
    t.test_procs.append(p)
    assert json.loads(p.stdout.readline())["ready"]
    return p


def received(p):
    line = p.stdout.readline()
    p.wait()
    return json.loads(line)


def udp_across(t, sizes, v6=False, src=None, dst=None, port=UDP_PORT, **send):
    """Send datagrams of `sizes` from side src (A) to dst (B); what B's socket received."""
    src, dst = src or t.a, dst or t.b
    r = receiver(t, dst, port, len(sizes), v6=v6)
    ns_tool(t, src, "send", dst=dst.ip6 if v6 else dst.ip4, port=port, sizes=sizes, v6=v6, **send)
    return received(r)


@pytest.fixture(scope="module")
def net():
    lacking = [what for what, ok in (("root", os.geteuid() == 0), ("/dev/net/tun", os.path.exists("/dev/net/tun")),
                                     ("tcpdump", shutil.which("tcpdump") is not None)) if not ok]
    if lacking:
        pytest.skip("needs " + " and ".join(lacking))
    from filter_net import module_net
    # B's link takes 9000-byte frames: what crosses the router whole is visible as such
    yield from module_net("z", 94, lambda t: t.fspawn(t.b, "echo_server", TCP_PORT, 0), mtu_b=9000)


@pytest.fixture
def f(net):
    from filter_net import reset
    yield net
    reset(net)


def scrub(**fields):
    from filter_net import rule
    return rule(PF_SCRUB, **fields)


def port_filter():
    """Only UDP to UDP_PORT (a port rule: never matches a fragment that carries no UDP
    header), ICMP/ICMPv6 and the TCP echo port pass."""
    from filter_net import ICMP, ICMP6, PF_DROP, PF_PASS, TCP, UDP, rule
    return [rule(PF_DROP),
            rule(PF_PASS, proto=UDP, dport=UDP_PORT, keep_state=0, no_flags=1),
            rule(PF_PASS, proto=ICMP, keep_state=0, no_flags=1),
            rule(PF_PASS, proto=ICMP6, keep_state=0, no_flags=1),
            rule(PF_PASS, proto=TCP, keep_state=0, no_flags=1)]


@needs_root
@needs_tcpdump
def test_fragmented_udp_is_reassembled_and_filtered_whole(f, tmp_path):
    want = {"len": 3000, "sha": sha(data(3000, 0))}
    f.load(port_filter())                          # no scrub: the later fragments are blocked
    got = udp_across(f, [3000])
    assert got == [], got
    f.load([scrub()] + port_filter())
    pcap = str(tmp_path / "b.pcap")
    with capture(f, f.b, pcap):
        got = udp_across(f, [3000])
    assert [{k: g[k] for k in ("len", "sha")} for g in got] == [want]
    assert got[0]["src"] == f.a.ip4
    seen = [ip4_fields(p) for p in v4(read_pcap(pcap), 17)]
    # A's kernel cut it for its 1500-byte link; B's 9000-byte link got one whole packet
    assert [(s["len"], s["mf"], s["off"]) for s in seen] == [(3028, False, 0)], seen
    assert all(s["sum_ok"] for s in seen)


@needs_root
@needs_tcpdump
def test_reassembled_packet_is_fragmented_for_a_smaller_mtu(f, tmp_path):
    """B (9000) sends 5000 bytes without DF towards A (1500): scrub reassembles nothing there,
    the router cuts the packet for A's link (ip_fragment); A's kernel puts it together."""
    f.load([scrub()] + port_filter())
    pcap = str(tmp_path / "a.pcap")
    before = f.stats()[f.a.tap]
    with capture(f, f.a, pcap):
        got = udp_across(f, [5000], src=f.b, dst=f.a, pmtu=0)      # IP_PMTUDISC_DONT
    assert [(g["len"], g["sha"]) for g in got] == [(5000, sha(data(5000, 0)))]
    frags = [ip4_fields(p) for p in v4(read_pcap(pcap), 17)]
    assert len(frags) == 4 and all(s["len"] <= 1500 and s["sum_ok"] and not s["df"] for s in frags)
    assert [s["off"] for s in frags] == [0, 1480, 2960, 4440] and [s["mf"] for s in frags] == [True] * 3 + [False]
    assert len({s["id"] for s in frags}) == 1
    after = f.stats()[f.a.tap]
    assert after["frag_ok"] - before["frag_ok"] == 1
    assert after["frag_created"] - before["frag_created"] == 4


@needs_root
@needs_tcpdump
def test_fragmented_ping_reassembled_and_the_reply_cut_again(f, tmp_path):
    f.load([scrub()] + port_filter())
    pcap, pcap_a = str(tmp_path / "b.pcap"), str(tmp_path / "a.pcap")
    with capture(f, f.b, pcap), capture(f, f.a, pcap_a):
        res = ns_tool(f, f.a, "ping", dst=f.b.ip4, size=4000, count=2)
    assert res["replies"] == 2
    requests = [ip4_fields(p) for p in v4(read_pcap(pcap), 1) if socket.inet_ntoa(p[12:16]) == f.a.ip4]
    assert [(s["len"], s["mf"]) for s in requests] == [(4028, False)] * 2, requests
    # B's 4028-byte replies reach A's 1500-byte link in pieces the router cut
    replies = [ip4_fields(p) for p in v4(read_pcap(pcap_a), 1) if socket.inet_ntoa(p[12:16]) == f.b.ip4]
    assert [(s["off"], s["mf"]) for s in replies] == [(0, True), (1480, True), (2960, False)] * 2, replies
    assert all(s["len"] <= 1500 and s["sum_ok"] for s in replies)


@needs_root
@needs_tcpdump
def test_nat_translates_the_whole_datagram(f):
    """Reassembled, the datagram gets a state and its translation; B's socket sees the
    router's address on all of it."""
    from filter_net import AF_INET, PF_PASS, rule
    from test_nat import nat_rule
    from pfkern.client.constants import PF_NAT
    nat = nat_rule(PF_NAT, [f.b.gw4], af=AF_INET, ifname=f.b.tap, src=f"{f.a.gw4}/24")
    sizes = [4000, 2000]
    want = [(n, sha(data(n, i))) for i, n in enumerate(sizes)]
    f.load([nat, rule(PF_PASS, keep_state=1, no_flags=1)])
    got = udp_across(f, sizes)        # no scrub: fragments pass pf_test_fragment, untranslated
    assert [(g["src"], g["len"], g["sha"]) for g in got] == [(f.a.ip4, *w) for w in want]
    f.load([scrub(), nat, rule(PF_PASS, keep_state=1, no_flags=1)])
    got = udp_across(f, sizes)
    assert [(g["src"], g["len"], g["sha"]) for g in got] == [(f.b.gw4, *w) for w in want]


@needs_root
@needs_tcpdump
def test_ipv6_fragments_reassembled_filtered_and_cut_as_they_came(f, tmp_path):
    f.load(port_filter())
    assert udp_across(f, [3000], v6=True) == []
    f.load([scrub()] + port_filter())
    pa, pb = str(tmp_path / "a.pcap"), str(tmp_path / "b.pcap")
    with capture(f, f.a, pa), capture(f, f.b, pb):
        got = udp_across(f, [3000], v6=True)
    assert [(g["len"], g["sha"]) for g in got] == [(3000, sha(data(3000, 0)))]
    sent = [v6frag(p) for p in read_pcap(pa) if v6frag(p)]
    came = [v6frag(p) for p in read_pcap(pb) if v6frag(p)]
    assert len(sent) == 3 and sent[0][3] == 1448
    # pf_refragment6: the largest size it arrived in (not B's 9000), the same identification
    assert [(o, m, n) for o, m, _i, n in came] == [(0, True, 1448), (1448, True, 1448), (2896, False, 112)]
    assert {i for *_x, i, _n in came} == {sent[0][2]}
    assert f.stats()[f.b.tap]["refrag6"] >= 1


@needs_root
@needs_tcpdump
def test_overlapping_fragments_crafted_reach_b_as_pf_joined_them(f, tmp_path):
    """Raw fragments from A whose second reaches 8 bytes back into the first: Linux would drop
    the datagram; pf keeps the first's bytes (12.1's precut) and B gets one datagram. A DF
    fragment is dropped and counted (PFRES_FRAG)."""
    from filter_net import PF_PASS, rule
    f.load([scrub(), rule(PF_PASS, keep_state=0, no_flags=1)])
    body = b"X" * 1472 + b"Y" * 520
    u = struct.pack("!HHHH", 40000, UDP_PORT, 8 + len(body), 0) + body    # no UDP checksum
    first = ip4(u[:1480], ident=0x4242, mf=True, src=f.a.ip4, dst=f.b.ip4)
    second = ip4(b"Z" * 8 + u[1480:], ident=0x4242, off=1472, src=f.a.ip4, dst=f.b.ip4)
    r = receiver(f, f.b, UDP_PORT, 1)
    ns_tool(f, f.a, "raw4", dst=f.b.ip4, packets=[first.hex(), second.hex()])
    got = received(r)
    assert [(g["len"], g["sha"]) for g in got] == [(len(body), sha(body))]
    before = f.status().counters[PFRES_FRAG]
    r = receiver(f, f.b, UDP_PORT, 1, timeout=1)
    dfrag = ip4(u[:1480], ident=0x4343, mf=True, df=True, src=f.a.ip4, dst=f.b.ip4)
    ns_tool(f, f.a, "raw4", dst=f.b.ip4, packets=[dfrag.hex(), second.hex()])
    assert received(r) == []
    assert f.status().counters[PFRES_FRAG] >= before + 1


@needs_root
@needs_tcpdump
@pytest.mark.parametrize("opt", ["no-df", "random-id", "min-ttl", "set-tos"])
def test_ip_options_take_effect_on_the_wire(f, tmp_path, opt):
    from filter_net import PF_PASS, rule
    fields = {"no-df": dict(rule_flag=PFRULE_NODF),
              "random-id": dict(rule_flag=PFRULE_RANDOMID),
              "min-ttl": dict(min_ttl=64),
              "set-tos": dict(rule_flag=PFRULE_SET_TOS, set_tos=0x10)}[opt]
    send = dict(ttl=3, tos=0x01)                 # DF is Linux's default for UDP (PMTU discovery)
    sizes = [100 + i for i in range(8)]
    seen = {}
    for scrubbing in (False, True):
        f.load(([scrub(**fields)] if scrubbing else []) + [rule(PF_PASS, keep_state=0, no_flags=1)])
        pa, pb = str(tmp_path / f"a{scrubbing}.pcap"), str(tmp_path / f"b{scrubbing}.pcap")
        with capture(f, f.a, pa), capture(f, f.b, pb):
            got = udp_across(f, sizes, **send)
        assert len(got) == len(sizes)
        sent = {p[28:]: ip4_fields(p) for p in v4(read_pcap(pa), 17)}
        came = {p[28:]: ip4_fields(p) for p in v4(read_pcap(pb), 17)}
        assert len(came) == len(sizes) and set(came) == set(sent)
        assert all(c["sum_ok"] for c in came.values())
        seen[scrubbing] = [(sent[k], came[k]) for k in sorted(sent, key=len)]
    for scrubbing, pairs in seen.items():
        ids_kept = sum(s["id"] == c["id"] for s, c in pairs)
        if opt == "no-df":
            assert all(s["df"] for s, _ in pairs)
            assert all(c["df"] != scrubbing for _, c in pairs)
        elif opt == "random-id":
            if not scrubbing:
                assert ids_kept == len(pairs)
            if scrubbing:
                assert ids_kept <= 1
        elif opt == "min-ttl":
            # raised to 64 on the way in, decremented, raised again on the way out
            assert all(c["ttl"] == (64 if scrubbing else 2) for _, c in pairs)
        else:
            assert all(c["tos"] == (0x11 if scrubbing else 0x01) for _, c in pairs)


@needs_root
@needs_tcpdump
def test_max_mss_clamps_the_syn_b_sees(f, tmp_path):
    from filter_net import PF_PASS, rule
    for mss in (0, 1000):
        f.load(([scrub(max_mss=mss)] if mss else []) + [rule(PF_PASS, keep_state=1)])
        pcap = str(tmp_path / f"b{mss}.pcap")
        with capture(f, f.b, pcap):
            res = ns_tool(f, f.a, "tcp", dst=f.b.ip4, port=TCP_PORT)
        assert res["echo"] == "line\n"
        syns = [p for p in v4(read_pcap(pcap), 6) if p[33] & 0x02 and not p[33] & 0x10]
        assert len(syns) == 1 and tcp_ok(syns[0])
        assert mss_of(syns[0][20:]) == (mss or 1460)


@needs_root
@needs_tcpdump
def test_ip_fragment_copies_only_copied_options(f, tmp_path):
    """ip_fragment's rules for options: the first fragment keeps all (router alert, copied;
    record route, not copied), the later ones only the copied one, padded to 4 bytes."""
    from filter_net import PF_PASS, rule
    f.load([rule(PF_PASS, keep_state=0, no_flags=1, allow_opts=1)])
    opts = bytes([0x94, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0, 0])
    body = data(3000, 9)
    u = struct.pack("!HHHH", 40001, UDP_PORT, 8 + len(body), 0) + body
    pkt = ip4(u, ident=0x5151, opts=opts, src=f.b.ip4, dst=f.a.ip4)
    pcap = str(tmp_path / "a.pcap")
    with capture(f, f.a, pcap):
        r = receiver(f, f.a, UDP_PORT, 1)
        ns_tool(f, f.b, "raw4", dst=f.a.ip4, packets=[pkt.hex()])
        got = received(r)
    assert [(g["len"], g["sha"]) for g in got] == [(len(body), sha(body))]
    frags = [p for p in v4(read_pcap(pcap), 17)]
    hls = [ip4_fields(p)["hl"] for p in frags]
    assert len(frags) == 3 and hls == [32, 24, 24], hls
    assert all(p[20:24] == opts[:4] for p in frags) and frags[0][20:32] == opts
    assert all(ip4_fields(p)["sum_ok"] and len(p) <= 1500 for p in frags)
    assert [ip4_fields(p)["off"] for p in frags] == [0, 1464, 2936]
