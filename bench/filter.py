"""pf_test benchmark: small-UDP packets/s (and iperf3 TCP) through pfd's router with pf enabled,
beside the minimal C TAP router (bench/c_router.c) in the same run:

  c_router      the baseline
  pf_off        pfd, pf_test installed, pf disabled (DIOCSTOP)
  one_rule      pfd, one "pass all no state" rule: every packet evaluated
  rules_1000    pfd, 1,000 rules none of which match (different destinations: no skip step
                jumps over them), then "pass all no state": every packet walks 1,001 rules
  states        pfd, 1,000 non-matching rules then "pass all keep state": every packet after
                the first of a flow is found in the state table and never reaches the rules
and TCP only, both TAPs with IFF_VNET_HDR offloads (TSO/GSO super-frames, partial checksums):
  c_router_vnet the baseline, its TAPs in vnet mode
  vnet_states   pfd, pf enabled, "pass all keep state": each super-frame is one TCP segment to pf
  vnet_rules_1000_states  pfd, 1,000 non-matching rules then "pass all keep state"

Topology as bench/datapath.py (tests/datapath_net.py): ns A <-> router <-> ns B, IPv4, one flow;
router pinned on one CPU, traffic on the other (--no-pin: unpinned).
    python3 bench/filter.py [--seconds 5] [--size 18] [--rounds 1] [--no-tcp] [--no-vnet] [--no-pin]
                            [--cases c_router_vnet,vnet_states]
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
VNET_CASES = {
    "vnet_states": lambda: [rule(PF_PASS)],
    "vnet_rules_1000_states": lambda: filler(999) + [rule(PF_PASS)],
}
BASELINES = {"c_router": False, "c_router_vnet": True}


def rules_of(name):
    return CASES.get(name) or VNET_CASES.get(name)


def run_case(name, binary, args, r, pin):
    is_c = name in BASELINES
    vnet = BASELINES[name] if is_c else name in VNET_CASES
    names = [*BASELINES, *CASES, *VNET_CASES]
    t = dpbench.topology(f"y{r}{names.index(name)}", 77, binary if is_c else None, vnet, pin, device=not is_c)
    # vnet cases: TCP only (offloads change nothing for 60-byte UDP)
    udp, tcp = not vnet, vnet or args.tcp
    with t:
        dpbench.prepare(t)
        extra = {}
        if not is_c:
            with PfDevice(t.device) as dev:
                if rules_of(name) is not None:
                    rules = rules_of(name)()
                    load(dev, rules)
                    dev.start()
                    extra["rules"] = len(rules)
                res = dpbench.measure(t, binary, args.seconds, args.size, udp=udp, tcp=tcp)
                if rules_of(name) is not None:
                    extra["states"] = len(dev.get_states())
        else:
            res = dpbench.measure(t, binary, args.seconds, args.size, udp=udp, tcp=tcp)
    res.update(extra, case=name)
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--size", type=int, default=18, help="UDP payload (18 -> 60-byte frames)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--no-tcp", dest="tcp", action="store_false", help="no iperf3 in the non-vnet cases")
    p.add_argument("--no-vnet", dest="vnet", action="store_false", help="skip the vnet_hdr cases")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin router and traffic")
    p.add_argument("--cases", help="comma-separated subset of the cases (baselines included)")
    args = p.parse_args()
    args.seconds = min(args.seconds, 10)
    pin = dpbench.default_pin() if args.pin else None
    names = ["c_router", *CASES] + (["c_router_vnet", *VNET_CASES] if args.vnet else [])
    if args.cases:
        known = [*BASELINES, *CASES, *VNET_CASES]
        names = [n for n in args.cases.split(",") if n]
        if set(names) - set(known):
            p.error(f"unknown cases {sorted(set(names) - set(known))}")
    tmp = tempfile.mkdtemp(prefix="pfdp-fbench-")
    try:
        binary = dpbench.build_c(tmp)
        rows = []
        for r in range(args.rounds):
            for name in names:
                res = run_case(name, binary, args, r, pin)
                res["pinned"] = pin
                rows.append(res)
                print(json.dumps(res), flush=True)
        base = [x["udp_delivered_pps"] for x in rows if x["case"] == "c_router"]
        base = sum(base) / len(base) if base else 0
        vbase = [x.get("tcp_gbit_s") or 0 for x in rows if x["case"] == "c_router_vnet"]
        vbase = sum(vbase) / len(vbase) if vbase else 0
        for name in names:
            sel = [x for x in rows if x["case"] == name]
            tcp = ", ".join("%.2f" % (x.get("tcp_gbit_s") or 0) for x in sel) if args.tcp or "vnet" in name else "-"
            if "udp_delivered_pps" in sel[0]:
                d = sum(x["udp_delivered_pps"] for x in sel) / len(sel)
                s = sum(x["udp_sent_pps"] for x in sel) / len(sel)
                pct = f" ({100 * d / base:5.1f}% of C)" if base else ""
                print(f"{name:22s} udp delivered {d / 1e3:7.1f} kpps{pct}"
                      f"  sent {s / 1e3:7.1f} kpps  tcp {tcp} Gbit/s")
            else:
                v = sum(x.get("tcp_gbit_s") or 0 for x in sel) / len(sel)
                pct = f" ({100 * v / vbase:5.1f}% of C vnet)" if vbase else ""
                print(f"{name:22s} tcp with vnet_hdr {tcp} Gbit/s{pct}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
