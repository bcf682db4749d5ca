"""Datapath benchmark: small-UDP packets/s and iperf3 TCP through pfd's router (pfkern.pf_tap,
no pf rules) beside the minimal C TAP router of bench/c_router.c, in the same run; then TCP with
IFF_VNET_HDR offloads (checksum offload + TSO/GSO super-frames) through both.

Topology (tests/datapath_net.py): ns A <-> router (two TAPs) <-> ns B, IPv4, static neighbours
in the namespaces. Bounded runs (--seconds, ≤ 10); all traffic stays inside the namespaces.
With two or more CPUs the router process is pinned on CPU 0 and the traffic tools (flooder,
sink, iperf3 client and server) on CPU 1, as in reference/measured.md (--no-pin: unpinned).
    python3 bench/datapath.py [--seconds 5] [--size 18] [--rounds 1] [--no-vnet] [--no-pin]
                              [--routers c_router_vnet,pfd_vnet] [--udp-mode sink|drop]
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

MAC_A, MAC_B = "02:00:5e:20:00:0a", "02:00:5e:20:00:0b"


def build_c(tmp):
    binary = os.path.join(tmp, "c_router")
    subprocess.run(["cc", "-O2", "-o", binary, os.path.join(HERE, "c_router.c"), "-lpthread"], check=True)
    return binary


def c_command(binary, vnet=False):
    def cmd(t):
        return [binary, "route", t.a.tap, t.b.tap, t.a.router_mac, t.b.router_mac, "@A", "@B"] + \
            (["vnet"] if vnet else [])
    return cmd


def default_pin():
    """(router CPU, traffic CPU) or None on a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def topology(tag, net, binary=None, vnet=False, pin=None, device=False, nice=0):
    """A Topology around the C router (binary) or pfd's router; the hosts' MACs fixed (the C router
    has them statically); the router pinned on pin[0]; router and traffic tools at `nice` (a
    negative value gives them the larger share of their CPUs against other work on the machine)."""
    command = c_command(binary, vnet) if binary else None
    t = Topology(tag=tag, mtu_b=1500, net=net, command=command, device=device, vnet=vnet)
    if command:
        t.args = [a.replace("@A", MAC_A).replace("@B", MAC_B) for a in t.args]
    if pin:
        t.args = ["taskset", "-c", str(pin[0])] + t.args
    if nice:
        t.args = ["nice", "-n", str(nice)] + t.args
    t.pin = pin
    t.nice = nice
    return t


def prepare(t):
    """Inside a started topology: the hosts' MACs, static neighbours for the router's address."""
    for s, m in ((t.a, MAC_A), (t.b, MAC_B)):
        t.ns(s, "ip", "link", "set", s.tap, "address", m)


def cpu_snapshot(pid=None, cpu=None):
    """(clock ticks used by a process, all its threads; busy ticks of one CPU, steal ticks of
    that CPU, monotonic time)."""
    proc = busy = steal = 0
    if pid is not None:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        proc = int(fields[11]) + int(fields[12])          # utime + stime
    if cpu is not None:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{cpu} "):
                    v = [int(x) for x in line.split()[1:]]
                    busy, steal = sum(v) - v[3] - v[4], v[7]    # all but idle and iowait
    return proc, busy, steal, time.monotonic()


def drop_address(t):
    """An address routed through the router to B that B does not own: B's stack (IP forwarding
    off in its namespace) drops each packet at IP input, without a socket and without an ICMP
    error back through the router."""
    return t.far4.rsplit(".", 1)[0] + ".99"


def ingress_drop(t, addr):
    """B drops packets to addr at its interface's ingress (nftables netdev hook: before IP input,
    so B's share of the router's write() is the smallest it can be). False when nft is missing:
    then B's IP input drops them (unroutable there), which costs a route lookup and a dst
    allocation per packet inside the router's write()."""
    if not shutil.which("nft"):
        return False
    rules = (f'table netdev pfbench_b {{\n chain b_in {{\n  type filter hook ingress device "{t.b.tap}" '
             f'priority 0; policy accept;\n  ip daddr {addr} drop\n }}\n}}\n')
    return subprocess.run(["ip", "netns", "exec", t.b.ns, "nft", "-f", "-"], input=rules, text=True,
                          capture_output=True).returncode == 0


def measure(t, binary, seconds, size, udp=True, tcp=None, udp_mode="sink", retries=0, max_other=0.2):
    """{udp_sent_pps, udp_delivered_pps, tcp_gbit_s, tcp_retransmits} for what was asked (tcp
    by default when iperf3 exists).

    udp_mode "sink": a UDP socket in B counts what it receives (sink and flooder both on the
    traffic CPU when pinned: they compete for it). "drop": no receiver; the flood goes to
    drop_address(t), B drops it at ingress (ingress_drop; b_drop says where) and "delivered" is
    what the router wrote into B's interface (its rx_packets), so the traffic CPU runs the
    flooder alone; B's receive path up to the drop runs inside the router's write() for every
    router alike. Also router_cpu (the router process's CPU use over the flood, in CPUs) and,
    pinned, router_cpu_busy and router_cpu_steal (the router CPU's busy and stolen fractions).
    A flood during which the router CPU did other work for more than max_other of the time, or
    was less than 90% busy, is "disturbed" and repeated up to `retries` times (pinned only)."""
    pin = getattr(t, "pin", None)
    pre = ["taskset", "-c", str(pin[1])] if pin else []
    if getattr(t, "nice", 0):
        pre = ["nice", "-n", str(t.nice)] + pre
    if tcp is None:
        tcp = bool(shutil.which("iperf3"))
    for s in (t.a, t.b):
        t.ns(s, "ip", "neigh", "replace", s.gw4, "lladdr", s.router_mac, "nud", "permanent", "dev", s.tap)
    # warm-up (pfd's router resolves the hosts by ARP; the C router has them statically)
    t.ns(t.a, sys.executable, os.path.join(os.path.dirname(HERE), "tests", "datapath_probe.py"),
         "ping", t.b.ip4, "2", check=False)
    res = {}
    if udp:
        proc = getattr(t, "proc", None)
        pid = proc.pid if proc is not None else None
        cpu = pin[0] if pin else None
        hz = os.sysconf("SC_CLK_TCK")
        if udp_mode == "drop":
            res["b_drop"] = "nft-ingress" if ingress_drop(t, drop_address(t)) else "ip-input"
        total = 0
        for attempt in range(1 + retries):
            if udp_mode == "drop":
                before = t.link_stats(t.b)
                c0 = cpu_snapshot(pid, cpu)
                sent = int(t.ns(t.a, *pre, binary, "flood", drop_address(t), "9000", str(seconds), str(size),
                                timeout=seconds + 30).stdout)
                c1 = cpu_snapshot(pid, cpu)
                time.sleep(0.2)         # what the router still had queued
                after = t.link_stats(t.b)
                got = after["rx_packets"] - before["rx_packets"]
                res["b_tx_packets"] = after["tx_packets"] - before["tx_packets"]   # B sent back: ~0
            else:
                sink = subprocess.Popen(["ip", "netns", "exec", t.b.ns, *pre, binary, "sink", "9000",
                                         str(seconds + 1.5)], stdout=subprocess.PIPE, text=True)
                sink.stdout.readline()
                c0 = cpu_snapshot(pid, cpu)
                sent = int(t.ns(t.a, *pre, binary, "flood", t.b.ip4, "9000", str(seconds), str(size),
                                timeout=seconds + 30).stdout)
                c1 = cpu_snapshot(pid, cpu)
                got = int(sink.communicate(timeout=seconds + 30)[0])
            total += got
            res.update(udp_sent_pps=sent / seconds, udp_delivered_pps=got / seconds, udp_mode=udp_mode,
                       attempts=attempt + 1, udp_delivered_all_attempts=total)
            wall = c1[3] - c0[3]
            if pid:
                res["router_cpu"] = round((c1[0] - c0[0]) / hz / wall, 3)
            if pin:
                res["router_cpu_busy"] = round((c1[1] - c0[1]) / hz / wall, 3)
                res["router_cpu_steal"] = round((c1[2] - c0[2]) / hz / wall, 3)
            # disturbed: the router CPU was busy with other work (other processes, the
            # hypervisor's steal) for more than max_other of the time, or the router was not
            # kept busy (the flooder did not get its CPU)
            res["disturbed"] = bool(pid and pin and (res["router_cpu_busy"] - res["router_cpu"] > max_other
                                                     or res["router_cpu_busy"] < 0.9))
            if not res["disturbed"]:
                break
    if tcp:
        srv = subprocess.Popen(["ip", "netns", "exec", t.b.ns, *pre, "iperf3", "-s", "-1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        out = t.ns(t.a, *pre, "iperf3", "-c", t.b.ip4, "-t", str(seconds), "-J", check=False,
                   timeout=seconds + 30).stdout
        srv.wait(timeout=10)
        try:
            end = json.loads(out)["end"]
            res["tcp_gbit_s"] = end["sum_received"]["bits_per_second"] / 1e9
            res["tcp_retransmits"] = end["sum_sent"].get("retransmits")
        except (ValueError, KeyError):
            res["tcp_gbit_s"] = None
    return res


ROUTERS = {   # name: (C router?, vnet, measure UDP)
    "c_router": (True, False, True),
    "pfd": (False, False, True),
    "c_router_vnet": (True, True, False),
    "pfd_vnet": (False, True, False),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--size", type=int, default=18, help="UDP payload (18 -> 60-byte frames)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--no-vnet", dest="vnet", action="store_false", help="skip the vnet_hdr TCP cases")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin router and traffic")
    p.add_argument("--routers", help=f"comma-separated subset of {','.join(ROUTERS)}")
    p.add_argument("--udp-mode", choices=("sink", "drop"), default="sink",
                   help="small UDP counted by a socket in B (sink) or at B's TAP, B dropping (drop)")
    args = p.parse_args()
    args.seconds = min(args.seconds, 10)
    pin = default_pin() if args.pin else None
    names = [n for n in ROUTERS if args.vnet or not ROUTERS[n][1]]
    if args.routers:
        names = [n for n in args.routers.split(",") if n]
        if set(names) - set(ROUTERS):
            p.error(f"unknown routers {sorted(set(names) - set(ROUTERS))}")
    tmp = tempfile.mkdtemp(prefix="pfdp-bench-")
    try:
        binary = build_c(tmp)
        rows = []
        for r in range(args.rounds):
            for i, name in enumerate(names):
                is_c, vnet, udp = ROUTERS[name]
                t = topology(f"x{r}{i}", 75, binary if is_c else None, vnet, pin)
                with t:
                    prepare(t)
                    res = measure(t, binary, args.seconds, args.size, udp=udp, udp_mode=args.udp_mode)
                res.update(router=name, pinned=pin)
                rows.append(res)
                print(json.dumps(res), flush=True)
        for name in names:
            sel = [r for r in rows if r["router"] == name]
            udp = ""
            if ROUTERS[name][2]:
                udp = (f"udp delivered {sum(r['udp_delivered_pps'] for r in sel) / len(sel) / 1e3:7.1f} kpps"
                       f"  (sent {sum(r['udp_sent_pps'] for r in sel) / len(sel) / 1e3:7.1f} kpps)  ")
            print(f"{name:14s} {udp}tcp {', '.join('%.2f' % (r.get('tcp_gbit_s') or 0) for r in sel)} Gbit/s")
        if args.vnet:
            c = [r["tcp_gbit_s"] or 0 for r in rows if r["router"] == "c_router_vnet"]
            d = [r["tcp_gbit_s"] or 0 for r in rows if r["router"] == "pfd_vnet"]
            if c and sum(c):
                print(f"pfd_vnet / c_router_vnet: {100 * sum(d) / sum(c):.0f}%")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
