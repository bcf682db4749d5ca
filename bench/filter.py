"""pf_test benchmark (the packet-engine issue's figures): small-UDP packets/s (and iperf3 TCP)
through pfd's router with pf enabled, beside the minimal C TAP router (bench/c_router.c) in the
same run, and the Linux kernel forwarding between namespaces for reference:

  c_router      the baseline; run first and last in every round, the round's ratios are to
                the mean of the two
  pf_off        pfd, pf_test installed, pf disabled
  one_rule      (a) pfd, one "pass all no state" rule: every packet evaluated (in and out)
  rules_1000    (b) indexed: 999 "block proto udp to <host>" rules, distinct /32 hosts none of
                which the traffic goes to, then "pass all no state". The 999 form one indexed
                run (pf_test.pxd, cf_run): one binary search instead of 999 rules per pass
  rules_1000_nets
                (b) indexed: the same with distinct /31 networks instead of hosts
  rules_1000_walked
                (b) walked: 999 rules alternating "block proto udp from <net>" and "block
                proto udp to <net>" (distinct /31 networks): neither address is the only
                field that differs between neighbours, so no run forms, and no skip step
                jumps them: every pass walks all 1,000 rules
  states        (c) 999 non-matching rules (the rules_1000_nets set), then "pass all keep
                state": the flood's first packet walks them and creates the state; every
                later packet is found in the state table (on input and on output) and never
                reaches the rules. The row reports state searches and rule evaluations per
                forwarded packet to show it
  kernel_fwd    reference: ns A <-veth-> router namespace <-veth-> ns B, Linux IP forwarding,
                no netfilter
  kernel_nft_states
                reference: the same with nftables and conntrack in the router namespace,
                "ct status confirmed accept" first (a known flow: the counterpart of pf's state
                hit for a one-way UDP flow), then 999 non-matching drop rules, then accept
                (skipped when nft is not installed: apt-get install -y nftables)
and TCP only, both TAPs with IFF_VNET_HDR offloads (TSO/GSO super-frames, partial checksums):
  c_router_vnet the baseline, its TAPs in vnet mode
  vnet_states   pfd, pf enabled, "pass all keep state": each super-frame is one TCP segment to pf
  vnet_rules_1000_states  pfd, 1,000 non-matching rules then "pass all keep state"

Topology as bench/datapath.py (tests/datapath_net.py): ns A <-> router <-> ns B, IPv4, one flow.
Pinned (measured.md's method): the router process, all its threads, on one CPU; the traffic
tools on the other; for the kernel rows the router namespace's receive processing is steered to
the router CPU with RPS. Small UDP (--udp-mode drop, the default) is measured.md's "receiver
drops" variant: the flood goes to an address routed to B that B does not own; B drops it at its
interface's ingress (an nftables netdev rule; without nft, at IP input, which costs the router's
write() a route lookup more per packet and brings every ratio closer to 100%); "delivered" is
what the router wrote into B's interface (its rx_packets counter). The traffic CPU then runs the
flooder alone (with a UDP sink on it as well, the sink starves: --udp-mode sink). Router and
traffic run at --nice (default -10; the benchmark's session autogroup too, restored at the end:
CFS divides a CPU between sessions before it looks at a task's nice); a flood during which other work took more than 20% of the
router CPU (or the router CPU was under 90% busy) is repeated, up to --retries times, and
flagged "disturbed" if it never ran clean.
    python3 bench/filter.py [--seconds 5] [--size 18] [--rounds 1] [--no-tcp] [--no-vnet] [--no-pin]
                            [--udp-mode drop|sink] [--nice -10] [--retries 3] [--cases c_router,states]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, os.path.dirname(HERE))

import datapath as dpbench  # noqa: E402
from datapath_net import Side, sh  # noqa: E402
from filter_net import PF_DROP, PF_PASS, UDP, AF_INET, rule  # noqa: E402
from pfkern.client import PfDevice  # noqa: E402
from pfkern.client.constants import FCNT_STATE_INSERT, FCNT_STATE_SEARCH  # noqa: E402
from rules_util import load, read_ruleset  # noqa: E402


def hosts(n):
    """n block rules to distinct /32 hosts (10.200/16): one indexed run."""
    return [rule(PF_DROP, af=AF_INET, proto=UDP, dst="10.200.%d.%d" % (i // 250, i % 250 + 1))
            for i in range(n)]


def nets31(n):
    """n block rules to distinct /31 networks (10.201/16): one indexed run."""
    return [rule(PF_DROP, af=AF_INET, proto=UDP, dst="10.201.%d.%d/31" % (2 * i // 256, 2 * i % 256))
            for i in range(n)]


def alternating31(n):
    """n block rules, "from <net>" and "to <net>" in turn (distinct /31 networks of 10.202/16
    and 10.201/16): no run, no skip step over them."""
    return [rule(PF_DROP, af=AF_INET, proto=UDP,
                 **{"src" if i % 2 else "dst": "10.%d.%d.%d/31" % (201 + i % 2, 2 * i // 256, 2 * i % 256)})
            for i in range(n)]


CASES = {
    "pf_off": None,
    "one_rule": lambda: [rule(PF_PASS, keep_state=0)],
    "rules_1000": lambda: hosts(999) + [rule(PF_PASS, keep_state=0)],
    "rules_1000_nets": lambda: nets31(999) + [rule(PF_PASS, keep_state=0)],
    "rules_1000_walked": lambda: alternating31(999) + [rule(PF_PASS, keep_state=0)],
    "states": lambda: nets31(999) + [rule(PF_PASS)],
}
VNET_CASES = {
    "vnet_states": lambda: [rule(PF_PASS)],
    "vnet_rules_1000_states": lambda: hosts(999) + [rule(PF_PASS)],
}
KERNEL_CASES = {
    "kernel_fwd": None,
    "kernel_nft_states": "states",
}
BASELINES = {"c_router": False, "c_router_vnet": True}
ALL = [*BASELINES, *CASES, *KERNEL_CASES, *VNET_CASES]


def rules_of(name):
    return CASES.get(name) or VNET_CASES.get(name)


def nft_ruleset(n=999):
    lines = ["table ip pfbench {", "  chain pfbench_fwd {",
             "    type filter hook forward priority 0; policy drop;",
             "    ct status confirmed accept"]
    lines += ["    ip protocol udp ip daddr 10.201.%d.%d/31 drop" % (2 * i // 256, 2 * i % 256)
              for i in range(n)]
    lines += ["    accept", "  }", "}"]
    return "\n".join(lines) + "\n"


class KernelRouter:
    """ns A <-veth-> ns R (Linux forwarding, optionally an nft ruleset) <-veth-> ns B, addressed
    as datapath_net.Topology; R's receive processing steered to the router CPU by RPS (else the
    flooder's CPU would forward too). IPv6 off."""

    def __init__(self, tag, net, pin=None, nice=0, nft=None):
        uid = f"{os.getpid() % 100000}{tag}"
        self.a = Side(f"kA{uid}", f"ka{uid}", f"10.{net}.1.2/24", f"10.{net}.1.1", "", "", "02:00:5e:30:00:01", 1500)
        self.b = Side(f"kB{uid}", f"kb{uid}", f"10.{net}.2.2/24", f"10.{net}.2.1", "", "", "02:00:5e:30:00:02", 1500)
        self.r, self.ra, self.rb = f"kR{uid}", f"ra{uid}", f"rb{uid}"
        self.far4 = f"10.{net + 1}.0.1"
        self.pin, self.nice, self.nft, self.proc = pin, nice, nft, None

    def rns(self, *cmd):
        return sh("ip", "netns", "exec", self.r, *cmd)

    def ns(self, side, *cmd, check=True, timeout=30):
        return sh("ip", "netns", "exec", side.ns, *cmd, check=check, timeout=timeout)

    def link_stats(self, side):
        base = f"/sys/class/net/{side.tap}/statistics"
        res = self.ns(side, "sh", "-c", f"cd {base} && grep . rx_bytes rx_packets tx_bytes tx_packets")
        return {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", res.stdout)}

    def __enter__(self):
        try:
            for ns in (self.a.ns, self.r, self.b.ns):
                sh("ip", "netns", "add", ns)
                sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            for s, rif in ((self.a, self.ra), (self.b, self.rb)):
                sh("ip", "link", "add", s.tap, "netns", s.ns, "type", "veth", "peer", "name", rif, "netns", self.r)
                self.rns("ip", "link", "set", rif, "address", s.router_mac)
                self.rns("ip", "addr", "add", s.gw4 + "/24", "dev", rif)
                self.rns("ip", "link", "set", rif, "up")
                self.ns(s, "ip", "addr", "add", s.addr4, "dev", s.tap)
                self.ns(s, "ip", "link", "set", s.tap, "up")
                self.ns(s, "ip", "route", "add", "default", "via", s.gw4)
            self.ns(self.b, "ip", "addr", "add", self.far4 + "/32", "dev", "lo")
            self.rns("sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.rns("ip", "route", "add", self.far4.rsplit(".", 2)[0] + ".0.0/16", "via", self.b.ip4)
            if self.pin:
                self.rns("sh", "-c", f"echo {1 << self.pin[0]:x} > /sys/class/net/{self.ra}/queues/rx-0/rps_cpus")
            if self.nft:
                path = os.path.join(tempfile.mkdtemp(prefix="pfdp-nft-"), "rules.nft")
                with open(path, "w") as f:
                    f.write(self.nft)
                self.rns("nft", "-f", path)
                shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for ns in (self.a.ns, self.r, self.b.ns):
            sh("ip", "netns", "del", ns, check=False)


def autogroup_nice(value):
    """Set this session's autogroup niceness and return the previous one (None if unavailable).
    With autogroups CFS shares a CPU between sessions first: a task's own nice orders it only
    within its session, so without this another session's build takes half the router CPU."""
    try:
        with open("/proc/self/autogroup") as f:
            old = int(f.read().split("nice")[1])
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(value))
        return old
    except (OSError, ValueError, IndexError):
        return None


def pf_counters(dev):
    st = dev.status()
    return st.fcounters[FCNT_STATE_SEARCH], st.fcounters[FCNT_STATE_INSERT]


def run_case(name, binary, args, r, pin):
    is_c = name in BASELINES
    vnet = BASELINES[name] if is_c else name in VNET_CASES
    # vnet cases: TCP only (offloads change nothing for 60-byte UDP)
    udp, tcp = not vnet, vnet or args.tcp
    mode = args.udp_mode
    if name in KERNEL_CASES:
        nft = nft_ruleset() if KERNEL_CASES[name] else None
        with KernelRouter(f"k{r}{ALL.index(name)}", 73, pin, args.nice, nft) as t:
            res = dpbench.measure(t, binary, args.seconds, args.size, udp=True, tcp=False, udp_mode=mode,
                                   retries=args.retries)
            if nft:
                res["rules"] = 1001
        res.update(case=name)
        return res
    t = dpbench.topology(f"y{r}{ALL.index(name)}", 77, binary if is_c else None, vnet, pin,
                         device=not is_c, nice=args.nice)
    with t:
        dpbench.prepare(t)
        extra = {}
        if not is_c:
            with PfDevice(t.device) as dev:
                rules = rules_of(name)() if rules_of(name) is not None else None
                if rules is not None:
                    load(dev, rules)
                    dev.start()
                    extra["rules"] = len(rules)
                    m = re.findall(r"indexed runs: (\d+) \((\d+) rules\)", t.output())
                    if m:
                        extra["indexed_runs"] = "%s (%s rules)" % m[-1]
                c0 = pf_counters(dev)
                res = dpbench.measure(t, binary, args.seconds, args.size, udp=udp, tcp=tcp, udp_mode=mode,
                                   retries=args.retries)
                if rules is not None:
                    c1 = pf_counters(dev)
                    extra["states"] = len(dev.get_states())
                    evals = sum(pr.rule.evaluations for pr, _pool in read_ruleset(dev, "", PF_PASS))
                    fwd = res.get("udp_delivered_all_attempts", 0)
                    if udp and fwd:
                        # both passes of each forwarded packet (in on A, out on B)
                        extra["rule_evals_per_pkt"] = round(evals / fwd, 2)
                        extra["state_searches_per_pkt"] = round((c1[0] - c0[0]) / fwd, 3)
                        extra["state_inserts"] = c1[1] - c0[1]
        else:
            res = dpbench.measure(t, binary, args.seconds, args.size, udp=udp, tcp=tcp, udp_mode=mode,
                                   retries=args.retries)
    res.update(extra, case=name)
    return res


def rng(values, fmt="%.1f"):
    return (fmt % values[0]) if len(values) == 1 else f"{fmt % min(values)}–{fmt % max(values)}"


def summary(rows, names, args):
    rounds = sorted({x["round"] for x in rows})
    base, vbase, cbase = {}, {}, {}
    for r in rounds:
        c = [x["udp_delivered_pps"] for x in rows if x["round"] == r and x["case"] == "c_router"]
        v = [x.get("tcp_gbit_s") or 0 for x in rows if x["round"] == r and x["case"] == "c_router_vnet"]
        base[r] = sum(c) / len(c) if c else 0
        cu = [1e6 * x["router_cpu"] / x["udp_delivered_pps"] for x in rows
              if x["round"] == r and x["case"] == "c_router" and x.get("router_cpu") and x["udp_delivered_pps"]]
        cbase[r] = sum(cu) / len(cu) if cu else 0
        vbase[r] = sum(v) / len(v) if v else 0
    print("per-round ratios to the same round's C router (mean of its runs in that round):")
    for name in dict.fromkeys(names):
        sel = [x for x in rows if x["case"] == name]
        if not sel:
            continue
        if "udp_delivered_pps" in sel[0]:
            kp = [x["udp_delivered_pps"] / 1e3 for x in sel]
            sent = [x["udp_sent_pps"] / 1e3 for x in sel]
            pct = [100 * x["udp_delivered_pps"] / base[x["round"]] for x in sel if base[x["round"]]]
            cpu = [x["router_cpu_busy"] for x in sel if "router_cpu_busy" in x]
            # the router process's CPU per forwarded packet, and its ratio to the round's C router
            # (less sensitive than the rate to what else runs on the router CPU)
            us = [1e6 * x["router_cpu"] / x["udp_delivered_pps"] for x in sel
                  if x.get("router_cpu") and x["udp_delivered_pps"]]
            usr = [100 * cbase[x["round"]] / (1e6 * x["router_cpu"] / x["udp_delivered_pps"]) for x in sel
                   if x.get("router_cpu") and x["udp_delivered_pps"] and cbase[x["round"]]]
            line = f"{name:22s} udp {rng(kp)} kpps"
            if pct:
                line += f" = {rng(pct, '%.0f')}% of C (median {statistics.median(pct):.0f}%)"
            line += f"  sent {rng(sent)} kpps"
            if cpu:
                line += f"  router CPU busy {rng(cpu, '%.2f')}"
            if us:
                line += f"  router {rng(us, '%.2f')} µs/pkt"
            if usr:
                line += f" (C's µs/pkt = {rng(usr, '%.0f')}% of it, median {statistics.median(usr):.0f}%)"
            dist = sum(1 for x in sel if x.get("disturbed"))
            if dist:
                line += f"  [{dist} disturbed]"
            for k in ("rule_evals_per_pkt", "state_searches_per_pkt"):
                if k in sel[0]:
                    line += f"  {k} {rng([x[k] for x in sel], '%.2f')}"
            if args.tcp and any(x.get("tcp_gbit_s") for x in sel):
                line += "  tcp " + ", ".join("%.2f" % (x.get("tcp_gbit_s") or 0) for x in sel) + " Gbit/s"
            print(line)
        else:
            g = [x.get("tcp_gbit_s") or 0 for x in sel]
            pct = [100 * (x.get("tcp_gbit_s") or 0) / vbase[x["round"]] for x in sel if vbase[x["round"]]]
            line = f"{name:22s} tcp with vnet_hdr {', '.join('%.2f' % v for v in g)} Gbit/s"
            if pct:
                line += f" = {rng(pct, '%.0f')}% of C vnet (median {statistics.median(pct):.0f}%)"
            print(line)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--size", type=int, default=18, help="UDP payload (18 -> 60-byte frames)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--no-tcp", dest="tcp", action="store_false", help="no iperf3 in the non-vnet cases")
    p.add_argument("--no-vnet", dest="vnet", action="store_false", help="skip the vnet_hdr cases")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin router and traffic")
    p.add_argument("--udp-mode", choices=("drop", "sink"), default="drop",
                   help="drop: B drops at IP input, count at B's interface; sink: a UDP socket in B counts")
    p.add_argument("--nice", type=int, default=-10, help="niceness of router and traffic tools")
    p.add_argument("--retries", type=int, default=3,
                   help="repeat a flood during which other work took the router CPU (datapath.measure)")
    p.add_argument("--cases", help="comma-separated subset of the cases (baselines included)")
    args = p.parse_args()
    args.seconds = min(args.seconds, 10)
    pin = dpbench.default_pin() if args.pin else None
    mid = [*CASES, *KERNEL_CASES]
    if args.cases:
        chosen = [n for n in args.cases.split(",") if n]
        if set(chosen) - set(ALL):
            p.error(f"unknown cases {sorted(set(chosen) - set(ALL))}")
        mid = [n for n in chosen if n not in BASELINES and n not in VNET_CASES]
        vmid = [n for n in chosen if n in VNET_CASES]
        want_c, want_v = "c_router" in chosen or bool(mid), "c_router_vnet" in chosen or bool(vmid)
    else:
        vmid = list(VNET_CASES) if args.vnet else []
        want_c, want_v = True, args.vnet
    if not shutil.which("nft") and args.udp_mode == "drop":
        print("nft not installed (apt-get install -y nftables): B drops at IP input", flush=True)
    if "kernel_nft_states" in mid and not shutil.which("nft"):
        print("kernel_nft_states skipped: nft not installed (apt-get install -y nftables)", flush=True)
        mid.remove("kernel_nft_states")
    order = (["c_router", *mid, "c_router"] if want_c else []) + \
            (["c_router_vnet", *vmid, "c_router_vnet"] if want_v else [])
    tmp = tempfile.mkdtemp(prefix="pfdp-fbench-")
    old_nice = autogroup_nice(args.nice) if args.nice else None
    try:
        binary = dpbench.build_c(tmp)
        rows = []
        for r in range(args.rounds):
            for name in order:
                res = run_case(name, binary, args, r, pin)
                res.update(pinned=pin, round=r, nice=args.nice)
                rows.append(res)
                print(json.dumps(res), flush=True)
        subprocess.run(["uptime"])
        summary(rows, order, args)
    finally:
        if old_nice is not None:
            autogroup_nice(old_nice)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
