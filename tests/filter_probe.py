"""Traffic for the filter tests, run inside a namespace: `python3 filter_probe.py CMD ARGS...`;
prints one JSON line (servers print {"listening": true} first and keep running)."""
import json
import os
import socket
import sys
import time


def out(obj):
    print(json.dumps(obj), flush=True)


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def echo_server(port, v6="0"):
    """TCP: echo every line back, for any number of connections, one at a time."""
    af = socket.AF_INET6 if v6 == "1" else socket.AF_INET
    s = socket.socket(af, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if v6 == "1" else "0.0.0.0", int(port)))
    s.listen(8)
    out({"listening": True})
    while True:
        c, _ = s.accept()
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


def udp_echo(port, v6="0"):
    """UDP: every datagram back reversed, until killed."""
    af = socket.AF_INET6 if v6 == "1" else socket.AF_INET
    s = socket.socket(af, socket.SOCK_DGRAM)
    s.bind(("::" if v6 == "1" else "0.0.0.0", int(port)))
    out({"listening": True})
    while True:
        d, a = s.recvfrom(65536)
        s.sendto(d[::-1], a)


def _exchange(s, msg):
    try:
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            d = s.recv(4096)
            if not d:
                return "closed"
            got += d
        return "ok" if got == msg else "garbled"
    except socket.timeout:
        return "timeout"
    except ConnectionResetError:
        return "reset"
    except OSError as e:
        return f"error {e.errno}"


def tcp_session(host, port, trigger, wait=3.0):
    """Connect, exchange a line, wait until `trigger` exists (the test cut or left the
    connection), exchange again with a `wait` second timeout."""
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(5)
    first = _exchange(s, b"first line\n")
    out({"connected": True, "first": first})
    deadline = time.time() + 30
    while not os.path.exists(trigger) and time.time() < deadline:
        time.sleep(0.02)
    s.settimeout(float(wait))
    second = _exchange(s, b"second line\n")
    out({"first": first, "second": second})


def tcp_connect(host, port, timeout=3.0):
    """One connection attempt: ok, refused (a RST came back), timeout, or an errno."""
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(float(timeout))
    t = time.time()
    try:
        s.connect((host, int(port)))
        res = "ok"
    except ConnectionRefusedError:
        res = "refused"
    except socket.timeout:
        res = "timeout"
    except OSError as e:
        res = f"error {e.errno}"
    out({"result": res, "seconds": time.time() - t})


def udp_send(host, port, count, timeout=1.0, sport=0):
    """Datagrams to an echo (udp_server of datapath_probe): how many came back; an ICMP error
    reported on the connected socket shows as refused."""
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    if int(sport):
        s.bind(("::" if ":" in host else "0.0.0.0", int(sport)))
    s.settimeout(float(timeout))
    s.connect((host, int(port)))
    ok = refused = 0
    for i in range(int(count)):
        msg = f"datagram {i} ".encode() * 4
        try:
            s.send(msg)
            d = s.recv(65536)
            ok += d == msg[::-1]
        except socket.timeout:
            pass
        except ConnectionRefusedError:
            refused += 1
    out({"ok": ok, "refused": refused})


if __name__ == "__main__":
    cmd, *argv = sys.argv[1:]
    globals()[cmd](*argv)
