"""The filter tests' world: the datapath topology (tests/datapath_net.py) with pfd's /dev/pf,
rules built as pfctl builds them (tests/rules_util.py) and loaded with its ioctl sequence, and
the traffic probes (tests/filter_probe.py)."""
import json
import os
import socket
import subprocess
import sys
import time

from datapath_net import Topology
from pfkern.client import PfDevice
from pfkern.client import structs as S
from rules_util import flush, load, make_rule, read_ruleset

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "filter_probe.py")

# pf's values from the client's constants (tests/test_client_layout.py checks them against the
# header); the protocol numbers and TCP flags are the IP ones
from pfkern.client.constants import (AF_INET, AF_INET6, PF_DROP, PF_IN, PF_OP_EQ, PF_OP_GE,  # noqa: E402,F401
                                     PF_OP_GT, PF_OP_IRG, PF_OP_LE, PF_OP_LT, PF_OP_NE, PF_OP_RRG,
                                     PF_OP_XRG, PF_OUT, PF_PASS, PFRES_BADSTATE, PFRES_MATCH,
                                     PFRULE_RETURN, PFRULE_RETURNRST)

TCP, UDP, ICMP, ICMP6 = socket.IPPROTO_TCP, socket.IPPROTO_UDP, socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6
TH_SYN, TH_ACK = 0x02, 0x10


def rule(action=PF_PASS, *, af=0, proto=0, src=None, dst=None, sport=None, dport=None, ifname="",
         direction=0, quick=0, keep_state=None, label="", **fields):
    """A rule as pfctl's parser leaves it: pass rules keep state with flags S/SA unless told;
    ports as (op, p1[, p2]) or a bare number (=)."""
    if keep_state is None:
        keep_state = 1 if action == PF_PASS else 0
    if keep_state and "flags" not in fields:
        fields.update(flags=TH_SYN, flagset=TH_SYN | TH_ACK)
    if "no_flags" in fields:
        fields.pop("no_flags")
        fields.pop("flags", None)
        fields.pop("flagset", None)
    r = make_rule(action=action, af=af, proto=proto, src=src, dst=dst, ifname=ifname,
                  direction=direction, quick=quick, keep_state=keep_state, label=label, **fields)
    for side, spec in (("src", sport), ("dst", dport)):
        if spec is None:
            continue
        if isinstance(spec, int):
            spec = (PF_OP_EQ, spec)
        wrap = getattr(r, side)
        wrap.port_op = spec[0]
        wrap.port[0] = socket.htons(spec[1])
        wrap.port[1] = socket.htons(spec[2] if len(spec) > 2 else 0)
    return r


def block_return(**kw):
    return rule(PF_DROP, rule_flag=PFRULE_RETURN, return_icmp=(3 << 8) | 3,
                return_icmp6=(1 << 8) | 4, **kw)


class FilterNet(Topology):
    def __init__(self, tag="f", net=81, **kw):
        super().__init__(tag=tag, device=True, net=net, **kw)
        self.dev = None
        self.test_procs = []            # one test's processes (reset() stops them)

    def _start(self):
        super()._start()
        self.dev = PfDevice(self.device)

    def close(self):
        if self.dev is not None:
            self.dev.close()
            self.dev = None
        super().close()

    # -- rules ---------------------------------------------------------------------------------
    def load(self, rules, anchor=""):
        load(self.dev, rules, anchor)

    def flush(self, anchor=""):
        flush(self.dev, anchor)

    def rules(self, anchor="", action=PF_PASS):
        return [pr.rule for pr, _pool in read_ruleset(self.dev, anchor, action)]

    def states(self):
        return self.dev.get_states()

    def status(self):
        return self.dev.status()

    def kill(self, **fields):
        io = S.pfioc_state_kill(**fields)
        from pfkern.client import DIOCKILLSTATES
        self.dev.ioctl(DIOCKILLSTATES, io)
        return io.psk_killed

    # -- traffic -------------------------------------------------------------------------------
    def fprobe(self, side, *args, timeout=40):
        res = self.ns(side, sys.executable, PROBE, *map(str, args), timeout=timeout)
        return json.loads(res.stdout.strip().splitlines()[-1])

    def fspawn(self, side, *args):
        p = subprocess.Popen(["ip", "netns", "exec", side.ns, sys.executable, PROBE, *map(str, args)],
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        line = p.stdout.readline()
        assert "listening" in line or "connected" in line, line
        return p, json.loads(line)

    def pings(self, side, dst, count=2):
        res = self.probe(side, "ping", dst, count)
        return res["received"]

    def addr(self, side, v6):
        return side.ip6 if v6 else side.ip4


def wait_for(pred, timeout=5.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def module_net(tag, net, setup=None, **kw):
    """A test module's FilterNet (a generator for a module-scoped fixture): pfd started with pf
    enabled, setup(t) run (servers, addresses); after the module, pfd must still be alive."""
    t = FilterNet(tag=tag, net=net, **kw).start()
    try:
        t.dev.start()
        if setup is not None:
            setup(t)
        yield t
        assert t.alive(), "pfd died:\n" + t.output()
    finally:
        t.close()


def reset(t):
    """Between tests: the test's own processes stopped, no rules, no states, no source nodes."""
    from pfkern.client import DIOCCLRSRCNODES, DIOCCLRSTATES, pfioc_state_kill
    while t.test_procs:
        p = t.test_procs.pop()
        p.kill()
        p.wait()
    t.flush()
    t.dev.ioctl(DIOCCLRSTATES, pfioc_state_kill())
    t.dev.ioctl(DIOCCLRSRCNODES)
    assert t.alive(), t.output()


class Capture:
    """tcpdump inside a namespace for the length of a with-block; .lines() reads it back
    (immediate mode: without it, packets reach the file a second or more late)."""

    def __init__(self, t, side, path, *bpf):
        self.path = path
        self.proc = subprocess.Popen(["ip", "netns", "exec", side.ns, "tcpdump", "-U", "--immediate-mode",
                                      "-Z", "root", "-n", "-i", side.tap, "-w", path, *bpf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def __enter__(self):
        line = self.proc.stderr.readline()
        assert "listening on" in line, line
        return self

    def __exit__(self, *exc):
        time.sleep(0.2)
        self.proc.terminate()
        self.proc.wait()

    def lines(self):
        res = subprocess.run(["tcpdump", "-n", "-r", self.path], capture_output=True, text=True)
        return [ln for ln in res.stdout.splitlines() if ln.strip()]
