"""pf_test benchmark: small-UDP packets/s (and iperf3 TCP) through pfd's router with pf enabled,
beside the minimal C TAP router (bench/c_router.c) in the same run:

  c_router      the baseline
  pf_off        pfd, pf_test installed, pf disabled (DIOCSTOP)
  one_rule      pfd, one "pass all no state" rule: every packet evaluated
  rules_1000    pfd, 1,000 rules none of which match (different destinations: no skip step
                jumps over them), then "pass all no state": every packet walks 1,001 rules
  states        pfd, 1,000 non-matching rules then "pass all keep state": every packet after
                the first of a flow is found in the state table and never reaches the rules

Topology as bench/datapath.py (tests/datapath_net.py): ns A <-> router <-> ns B, IPv4, one flow.
    python3 bench/filter.py [--seconds 5] [--size 18] [--rounds 1] [--no-tcp]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, os.path.dirname(HERE))

import datapath as dpbench  # noqa: E402
from datapath_net import Topology  # noqa: E402
from filter_net import PF_DROP, PF_PASS, UDP, AF_INET, rule  # noqa: E402
from pfkern.client import PfDevice  # noqa: E402
from rules_util import load  # noqa: E402

MAC_A, MAC_B = "02:00:5e:20:00:0a", "02:00:5e:20:00:0b"


def filler(n):
    return [rule(PF_DROP, af=AF_INET, proto=UDP, dst="10.200.%d.%d" % (i // 250, i % 250 + 1))
            for i in range(n)]


CASES = {
    "pf_off": None,
    "one_rule": lambda: [rule(PF_PASS, keep_state=0)],
    "rules_1000": lambda: filler(999) + [rule(PF_PASS, keep_state=0)],
    "states": lambda: filler(999) + [rule(PF_PASS)],
}


def run_case(name, binary, args, r):
    command = dpbench.c_command(binary) if name == "c_router" else None
    t = Topology(tag=f"y{r}{list(CASES).index(name) if name in CASES else 9}", mtu_b=1500, net=77,
                 command=command, device=command is None)
    if command:
        t.args = [a.replace("@A", MAC_A).replace("@B", MAC_B) for a in t.args]
    with t:
        for s, m in ((t.a, MAC_A), (t.b, MAC_B)):
            t.ns(s, "ip", "link", "set", s.tap, "address", m)
        extra = {}
        if command is None:
            with PfDevice(t.device) as dev:
                if CASES[name] is not None:
                    rules = CASES[name]()
                    load(dev, rules)
                    dev.start()
                    extra["rules"] = len(rules)
                res = dpbench.measure(t, binary, args.seconds, args.size) if args.tcp else \
                    measure_udp(t, binary, args.seconds, args.size)
                if CASES[name] is not None:
                    extra["states"] = len(dev.get_states())
        else:
            res = dpbench.measure(t, binary, args.seconds, args.size) if args.tcp else \
                measure_udp(t, binary, args.seconds, args.size)
    res.update(extra, case=name)
    return res


def measure_udp(t, binary, seconds, size):
    import shutil as _sh
    real = _sh.which
    dpbench.shutil.which = lambda name: None if name == "iperf3" else real(name)
    try:
        return dpbench.measure(t, binary, seconds, size)
    finally:
        dpbench.shutil.which = real


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--size", type=int, default=18, help="UDP payload (18 -> 60-byte frames)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--no-tcp", dest="tcp", action="store_false")
    args = p.parse_args()
    args.seconds = min(args.seconds, 10)
    tmp = tempfile.mkdtemp(prefix="pfdp-fbench-")
    try:
        binary = dpbench.build_c(tmp)
        rows = []
        for r in range(args.rounds):
            for name in ("c_router", *CASES):
                res = run_case(name, binary, args, r)
                rows.append(res)
                print(json.dumps(res), flush=True)
        base = [x["udp_delivered_pps"] for x in rows if x["case"] == "c_router"]
        base = sum(base) / len(base)
        for name in ("c_router", *CASES):
            sel = [x for x in rows if x["case"] == name]
            d = sum(x["udp_delivered_pps"] for x in sel) / len(sel)
            s = sum(x["udp_sent_pps"] for x in sel) / len(sel)
            tcp = ", ".join("%.2f" % (x.get("tcp_gbit_s") or 0) for x in sel) if args.tcp else "-"
            print(f"{name:10s} udp delivered {d / 1e3:7.1f} kpps ({100 * d / base:5.1f}% of C)"
                  f"  sent {s / 1e3:7.1f} kpps  tcp {tcp} Gbit/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
