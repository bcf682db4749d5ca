"""Traffic for the translation tests, run inside a namespace (`ip netns exec NS python3
nat_probe.py CMD ARGS...`); one JSON line per result on stdout (servers: a first line once
listening)."""
import json
import os
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def out(obj):
    print(json.dumps(obj), flush=True)


def fmt(addr):
    return f"{addr[0]}:{addr[1]}"


def tcp_hold(host, port, trigger, hold=30.0):
    """Connect, exchange a line, report our end; keep the connection until `trigger` exists or
    `hold` seconds pass, then exchange again."""
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"one\n")
    ok = s.recv(100) == b"one\n"
    out({"result": "ok" if ok else "garbled", "local": fmt(s.getsockname())})
    deadline = time.time() + float(hold)
    while not os.path.exists(trigger) and time.time() < deadline:
        time.sleep(0.02)
    s.sendall(b"two\n")
    out({"second": "ok" if s.recv(100) == b"two\n" else "garbled"})


IP_RECVERR = 11
SO_EE_ORIGIN_ICMP = 2


def ttl_probe(host, port, ttl):
    """A UDP datagram with a small TTL; the ICMP error the kernel matched to this socket (it
    only does when the quoted packet is the one this socket sent)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(ttl))
    s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    s.connect((host, int(port)))
    s.send(b"probe")
    deadline = time.time() + 5
    while time.time() < deadline:
        r, _, x = select.select([s], [], [s], 0.2)
        try:
            _data, anc, _flags, _addr = s.recvmsg(512, 512, socket.MSG_ERRQUEUE)
        except BlockingIOError:
            continue
        except OSError:
            s.setblocking(False)
            continue
        for level, kind, data in anc:
            if level == socket.IPPROTO_IP and kind == IP_RECVERR:
                errno_, origin, typ, code, _pad, _info, _data2 = struct.unpack("=IBBBBII", data[:16])
                offender = socket.inet_ntoa(data[20:24])
                out({"origin": "icmp" if origin == SO_EE_ORIGIN_ICMP else origin, "type": typ,
                     "code": code, "offender": offender})
                return
    out({"origin": None})


def origin_server(addr, port):
    """The 'origin': one line back naming itself and the peer."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, int(port)))
    srv.listen(8)
    out({"listening": True})
    while True:
        c, peer = srv.accept()
        c.recv(1000)
        c.sendall(f"origin {addr}:{port} says hello to {peer[0]}\n".encode())
        c.close()


def natlook_proxy(addr, port, device):
    """A transparent proxy: for each redirected connection, DIOCNATLOOK tells where the client
    was going; connect there (from our own address), relay the answer, and say what we saw."""
    from pfkern.client import PfDevice
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, int(port)))
    srv.listen(8)
    out({"listening": True})
    with PfDevice(device) as pf:
        while True:
            c, peer = srv.accept()
            local = c.getsockname()
            try:
                _rs, _rsp, rd, rdport = pf.natlook(None, socket.IPPROTO_TCP, peer[0], peer[1],
                                                  local[0], local[1], 2)    # PF_OUT
                up = socket.socket()
                up.bind((addr, 0))
                up.connect((str(rd), rdport))
                up.sendall(c.recv(1000))
                reply = up.recv(1000)
                c.sendall(reply + f"proxy saw {peer[0]} -> {rd}:{rdport}\n".encode())
            except OSError as e:
                c.sendall(f"proxy error {e}\n".encode())
            c.close()


def http_get(host, port):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = b""
    while data.count(b"\n") < 2:
        d = s.recv(1000)
        if not d:
            break
        data += d
    lines = data.decode().splitlines() + ["", ""]
    out({"reply": lines[0], "via": lines[1]})


def port_echo(addr, lo, hi):
    """Listen on ports lo..hi; each connection is told the port it reached."""
    socks = []
    for p in range(int(lo), int(hi) + 1):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, p))
        s.listen(8)
        socks.append(s)
    out({"listening": True})
    while True:
        r, _, _ = select.select(socks, [], [])
        for s in r:
            c, _ = s.accept()
            c.sendall(f"port {s.getsockname()[1]}\n".encode())
            c.close()


def tcp_line(host, port):
    s = socket.create_connection((host, int(port)), timeout=5)
    out({"reply": s.recv(1000).decode().strip()})


def echo_threads(addr, port):
    """TCP echo, a thread per connection (for connection bursts)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, int(port)))
    srv.listen(64)
    out({"listening": True})

    def serve(c):
        c.settimeout(60)
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        c.close()

    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def tcp_burst(host, port, n, src="", timeout=1.0):
    """n connections, one after another, all kept open: for each, did it connect and did one
    line come back ("ok" / "timeout" / ...); then the first connection tries a second line."""
    socks, results = [], []
    for i in range(int(n)):
        s = socket.socket()
        s.settimeout(float(timeout))
        if src:
            s.bind((src, 0))
        try:
            s.connect((host, int(port)))
            s.sendall(b"hello\n")
            results.append("ok" if s.recv(100) == b"hello\n" else "garbled")
        except socket.timeout:
            results.append("timeout")
        except OSError as e:
            results.append(f"error {e.errno}")
        socks.append(s)
    again = "none"
    if socks:
        try:
            socks[0].sendall(b"again\n")
            again = "ok" if socks[0].recv(100) == b"again\n" else "garbled"
        except socket.timeout:
            again = "timeout"
        except OSError as e:
            again = f"error {e.errno}"
    out({"results": results, "first_again": again})


def udp_echo_on(addr, port):
    """UDP echo bound to one address (so replies leave from it), datagrams back reversed."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    out({"listening": True})
    while True:
        d, a = s.recvfrom(65536)
        s.sendto(d[::-1], a)


def udp_from(src, host, port, count, timeout=1.0):
    """Datagrams from a chosen local address to a UDP echo: how many came back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(float(timeout))
    s.connect((host, int(port)))
    ok = 0
    for i in range(int(count)):
        s.send(b"ping %d" % i)
        try:
            ok += s.recv(100) == (b"ping %d" % i)[::-1]
        except (socket.timeout, ConnectionRefusedError):
            pass
    out({"ok": ok})


if __name__ == "__main__":
    cmd, *argv = sys.argv[1:]
    globals()[cmd](*argv)
