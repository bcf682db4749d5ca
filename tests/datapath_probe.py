"""Traffic helpers run inside a test namespace (`ip netns exec NS python3 datapath_probe.py ...`);
each prints one JSON line."""
import hashlib
import json
import os
import socket
import struct
import sys
import time

IP_RECVERR = 11
IPV6_RECVERR = 25
IP_MTU_DISCOVER = 10
IP_PMTUDISC_PROBE = 3
IPV6_MTU_DISCOVER = 23
IPV6_PMTUDISC_PROBE = 3
IPV6_UNICAST_HOPS = 16
MSG_ERRQUEUE = 0x2000


def out(obj):
    print(json.dumps(obj), flush=True)


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def udp_err(host, port, ttl, size, timeout=5.0):
    """Send one UDP datagram (DF, probe PMTU, given TTL/hop limit), report the ICMP error the
    kernel queued for it: type, code, info (MTU), offender (who sent the error)."""
    af = family(host)
    s = socket.socket(af, socket.SOCK_DGRAM)
    if af == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        level, kind = socket.IPPROTO_IP, IP_RECVERR
    else:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl)
        level, kind = socket.IPPROTO_IPV6, IPV6_RECVERR
    try:
        s.sendto(b"x" * size, (host, port))
    except OSError as exc:
        return out({"send_error": exc.errno})
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            _data, anc, _flags, _addr = s.recvmsg(2048, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        for lvl, typ, data in anc:
            if lvl == level and typ == kind:
                ee_errno, origin, etype, code, _pad, info, _d = struct.unpack_from("=IBBBBII", data)
                off = data[16:]
                if af == socket.AF_INET:
                    offender = socket.inet_ntop(af, off[4:8])
                else:
                    offender = socket.inet_ntop(af, off[8:24])
                return out({"errno": ee_errno, "origin": origin, "type": etype, "code": code,
                            "info": info, "offender": offender})
    out({"timeout": True})


def tcp_server(port, v6="0"):
    af = socket.AF_INET6 if v6 == "1" else socket.AF_INET
    s = socket.socket(af, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if v6 == "1" else "0.0.0.0", int(port)))
    s.listen(4)
    s.settimeout(30)
    out({"listening": True})
    c, _ = s.accept()
    c.settimeout(30)
    h = hashlib.sha256()
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        h.update(d)
        n += len(d)
    c.sendall(h.hexdigest().encode())
    c.close()


def tcp_client(host, port, nbytes):
    data = os.urandom(int(nbytes))
    s = socket.create_connection((host, int(port)), timeout=20)
    t = time.time()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
    out({"ok": got.decode() == hashlib.sha256(data).hexdigest(), "seconds": time.time() - t})


def udp_server(port, v6="0"):
    af = socket.AF_INET6 if v6 == "1" else socket.AF_INET
    s = socket.socket(af, socket.SOCK_DGRAM)
    s.bind(("::" if v6 == "1" else "0.0.0.0", int(port)))
    s.settimeout(20)
    out({"listening": True})
    try:
        while True:
            d, a = s.recvfrom(65536)
            s.sendto(d[::-1], a)
    except socket.timeout:
        pass


def udp_client(host, port, count):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.settimeout(2)
    ok = 0
    for i in range(int(count)):
        msg = f"datagram {i} ".encode() * 10
        s.sendto(msg, (host, int(port)))
        try:
            d, _ = s.recvfrom(65536)
            ok += d == msg[::-1]
        except socket.timeout:
            pass
    out({"ok": ok})


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ping(host, count=3, ttl=64, size=56, timeout=2.0):
    """ICMP/ICMPv6 echo over a raw socket: replies received, and the (type, code, from) of every
    other ICMP message about our echoes (time exceeded, unreachable)."""
    af = family(host)
    v6 = af == socket.AF_INET6
    s = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, int(ttl))
    else:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(ttl))
    ident = os.getpid() & 0xffff
    req, rep = (128, 129) if v6 else (8, 0)
    other = []
    payloads, replied = {}, set()   # a reply later than its own wait still counts, in a later one
    for seq in range(int(count)):
        payload = payloads[seq] = os.urandom(int(size))
        hdr = struct.pack("!BBHHH", req, 0, 0, ident, seq)
        pkt = hdr if v6 else struct.pack("!BBHHH", req, 0, _csum(hdr + payload), ident, seq)
        s.sendto(pkt + payload, (host, 0))     # the kernel fills the ICMPv6 checksum
        deadline = time.time() + float(timeout)
        while time.time() < deadline:
            s.settimeout(max(0.01, deadline - time.time()))
            try:
                d, a = s.recvfrom(65536)
            except socket.timeout:
                break
            if not v6:
                d = d[(d[0] & 15) * 4:]
            if len(d) < 8:
                continue
            t, c = d[0], d[1]
            rid, rseq = struct.unpack("!HH", d[4:8])
            if t == rep and rid == ident and payloads.get(rseq) == d[8:] and rseq not in replied:
                replied.add(rseq)
                if rseq == seq:
                    break
                continue
            if t != req and t != rep:
                # an error quoting our echo: inner header, then our ICMP header
                inner = d[8:]
                off = 40 if v6 else (inner[0] & 15) * 4 if inner else 0
                if len(inner) >= off + 8 and struct.unpack("!HH", inner[off + 4:off + 8]) == (ident, seq):
                    other.append([t, c, a[0]])
                    break
    out({"sent": int(count), "received": len(replied), "errors": other})


def raw(ifname, dstmac, frames_hex):
    """Send raw Ethernet frames (hex, comma separated) out of ifname; the destination MAC and
    our source MAC are prepended to each."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    src = open(f"/sys/class/net/{ifname}/address").read().strip()
    hdr = bytes.fromhex(dstmac.replace(":", "")) + bytes.fromhex(src.replace(":", ""))
    sent = 0
    for fx in frames_hex.split(","):
        s.send(hdr + bytes.fromhex(fx))
        sent += 1
    out({"sent": sent})


if __name__ == "__main__":
    cmd, *argv = sys.argv[1:]
    if cmd == "udp_err":
        udp_err(argv[0], int(argv[1]), int(argv[2]), int(argv[3]))
    else:
        globals()[cmd](*argv)
