"""Datapath benchmark: small-UDP packets/s and iperf3 TCP through pfd's router (pfkern.pf_tap,
no pf_test yet) beside the minimal C TAP router of bench/c_router.c, in the same run.

Topology (tests/datapath_net.py): ns A <-> router (two TAPs) <-> ns B, IPv4, static neighbours
in the namespaces. Bounded runs (--seconds, ≤ 10); all traffic stays inside the namespaces.
    python3 bench/datapath.py [--seconds 5] [--size 18] [--rounds 1]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from datapath_net import Topology  # noqa: E402


def build_c(tmp):
    binary = os.path.join(tmp, "c_router")
    subprocess.run(["cc", "-O2", "-o", binary, os.path.join(HERE, "c_router.c"), "-lpthread"], check=True)
    return binary


def c_command(binary):
    def cmd(t):
        return [binary, "route", t.a.tap, t.b.tap, t.a.router_mac, t.b.router_mac, "@A", "@B"]
    return cmd


def measure(t, binary, seconds, size):
    for s in (t.a, t.b):
        t.ns(s, "ip", "neigh", "replace", s.gw4, "lladdr", s.router_mac, "nud", "permanent", "dev", s.tap)
    # warm-up (pfd's router resolves the hosts by ARP; the C router has them statically)
    t.ns(t.a, sys.executable, os.path.join(os.path.dirname(HERE), "tests", "datapath_probe.py"),
         "ping", t.b.ip4, "2", check=False)
    sink = subprocess.Popen(["ip", "netns", "exec", t.b.ns, binary, "sink", "9000", str(seconds + 1.5)],
                            stdout=subprocess.PIPE, text=True)
    sink.stdout.readline()
    t0 = time.time()
    sent = int(t.ns(t.a, binary, "flood", t.b.ip4, "9000", str(seconds), str(size), timeout=seconds + 30).stdout)
    got = int(sink.communicate(timeout=seconds + 30)[0])
    res = {"udp_sent_pps": sent / seconds, "udp_delivered_pps": got / seconds}
    if shutil.which("iperf3"):
        srv = subprocess.Popen(["ip", "netns", "exec", t.b.ns, "iperf3", "-s", "-1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        out = t.ns(t.a, "iperf3", "-c", t.b.ip4, "-t", str(seconds), "-J", check=False, timeout=seconds + 30).stdout
        srv.wait(timeout=10)
        try:
            res["tcp_gbit_s"] = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
        except (ValueError, KeyError):
            res["tcp_gbit_s"] = None
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--size", type=int, default=18, help="UDP payload (18 -> 60-byte frames)")
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    args.seconds = min(args.seconds, 10)
    tmp = tempfile.mkdtemp(prefix="pfdp-bench-")
    try:
        binary = build_c(tmp)
        rows = []
        for r in range(args.rounds):
            for name, command in (("c_router", c_command(binary)), ("pfd", None)):
                t = Topology(tag=f"x{r}{name[0]}", mtu_b=1500, net=75, command=command)
                if command:
                    # the C router needs the hosts' MACs: fix them before it starts
                    t.args = [a.replace("@A", "02:00:5e:20:00:0a").replace("@B", "02:00:5e:20:00:0b")
                              for a in t.args]
                with t:
                    for s, m in ((t.a, "02:00:5e:20:00:0a"), (t.b, "02:00:5e:20:00:0b")):
                        t.ns(s, "ip", "link", "set", s.tap, "address", m)
                    res = measure(t, binary, args.seconds, args.size)
                res["router"] = name
                rows.append(res)
                print(json.dumps(res), flush=True)
        for name in ("c_router", "pfd"):
            sel = [r for r in rows if r["router"] == name]
            print(f"{name:9s} udp delivered {sum(r['udp_delivered_pps'] for r in sel) / len(sel) / 1e3:7.1f} kpps"
                  f"  (sent {sum(r['udp_sent_pps'] for r in sel) / len(sel) / 1e3:7.1f} kpps)"
                  f"  tcp {', '.join('%.2f' % (r.get('tcp_gbit_s') or 0) for r in sel)} Gbit/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
