"""A router between network namespaces for the datapath tests and benchmarks.

    ns A (kernel side of TAP a) <-> pfd's router holding both TAP fds <-> ns B (TAP b)

pfd (started as `python3 -m pfkern.pfd --interface ...`) creates the TAPs in this namespace; the kernel side of each
is then moved into its own namespace and given addresses and default routes there. Closing stops
the launcher (its TAPs go with their fds) and deletes the namespaces, also after a failure.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PROBE = os.path.join(HERE, "datapath_probe.py")

MAC_A = "02:00:5e:10:00:01"
MAC_B = "02:00:5e:10:00:02"


def sh(*cmd, check=True, timeout=30):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


class Side:
    def __init__(self, ns, tap, addr4, gw4, addr6, gw6, router_mac, mtu):
        self.ns, self.tap, self.addr4, self.gw4, self.addr6, self.gw6 = ns, tap, addr4, gw4, addr6, gw6
        self.router_mac = router_mac
        self.mtu = mtu

    @property
    def ip4(self):
        return self.addr4.split("/")[0]

    @property
    def ip6(self):
        return self.addr6.split("/")[0]


class Topology:
    """Two namespaces around one router. `v6=False` disables IPv6 on the namespace side (an
    IPv4-only link, for exact counter comparisons). `vnet` (True, or a pair for A and B) opens the
    router's TAPs with IFF_VNET_HDR and offloads (pf_config's `,vnet`)."""

    def __init__(self, tag="", v6=True, mtu_b=1400, device=False, extra=(), net=71, command=None,
                 vnet=False):
        uid = f"{os.getpid() % 100000}{tag}"
        self.v6 = v6
        self.a = Side(f"dpA{uid}", f"dpa{uid}", f"10.{net}.1.2/24", f"10.{net}.1.1",
                      f"fd{net}:1::2/64", f"fd{net}:1::1", MAC_A, 1500)
        self.b = Side(f"dpB{uid}", f"dpb{uid}", f"10.{net}.2.2/24", f"10.{net}.2.1",
                      f"fd{net}:2::2/64", f"fd{net}:2::1", MAC_B, mtu_b)
        self.far4 = f"10.{net + 1}.0.1"         # behind B, reached through a static route
        self.a.vnet, self.b.vnet = tuple(vnet) if isinstance(vnet, (tuple, list)) else (vnet, vnet)
        self.tmp = tempfile.mkdtemp(prefix="pfdp-")
        self.device = os.path.join(self.tmp, "pf") if device else None
        self.log_path = os.path.join(self.tmp, "pfd.log")
        self.proc = None
        self.procs = []
        self.stats_path = os.path.join(self.tmp, "stats.json")
        # pfd as a user starts it; no pflog FIFO (tests run many pfds at once)
        args = [sys.executable, "-m", "pfkern.pfd", "--log-level", "debug", "--pflog-fifo", "none",
                "--stats-file", self.stats_path]
        args += ["--device", self.device, "--mode", "fuse"] if device else ["--no-device"]
        for s in (self.a, self.b):
            spec = f"{s.tap},{s.gw4}/24,{s.gw6}/64,mac={s.router_mac},mtu={s.mtu}" + (",vnet" if s.vnet else "")
            args += ["--interface", spec]
        args += ["--route", f"10.{net + 1}.0.0/16,{self.b.ip4}", *extra]
        # another router (the benchmark's C baseline): command(topology) -> argv; it must create
        # the two TAPs and print "serving datapath" when ready
        self.args = command(self) if command else args

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self):
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self):
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        want = f"serving {self.device}" if self.device else "serving datapath"
        deadline = time.time() + 20
        while not all(os.path.exists(f"/sys/class/net/{s.tap}") for s in (self.a, self.b)):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("router did not create its TAPs:\n" + self.output())
            time.sleep(0.02)
        deadline = time.time() + 20
        while want not in self.output():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("router did not start:\n" + self.output())
            time.sleep(0.05)
        for s in (self.a, self.b):
            sh("ip", "netns", "add", s.ns)
            self.ns(s, "ip", "link", "set", "lo", "up")
            if not self.v6:
                self.ns(s, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
                self.ns(s, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "link", "set", s.tap, "netns", s.ns)
            if not self.v6:
                self.ns(s, "sysctl", "-qw", f"net.ipv6.conf.{s.tap}.disable_ipv6=1")
            self.ns(s, "ip", "link", "set", s.tap, "mtu", str(s.mtu))
            self.ns(s, "ip", "addr", "add", s.addr4, "dev", s.tap)
            if self.v6:
                self.ns(s, "ip", "-6", "addr", "add", s.addr6, "dev", s.tap, "nodad")
            self.ns(s, "ip", "link", "set", s.tap, "up")
            self.ns(s, "ip", "route", "add", "default", "via", s.gw4)
            if self.v6:
                self.ns(s, "ip", "-6", "route", "add", "default", "via", s.gw6)
        self.ns(self.b, "ip", "addr", "add", self.far4 + "/32", "dev", "lo")

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for s in (self.a, self.b):
            sh("ip", "netns", "del", s.ns, check=False)
        if self.device and os.path.ismount(self.device):
            subprocess.run(["umount", "-l", self.device], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- helpers -----------------------------------------------------------------------------------
    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def ns(self, side, *cmd, check=True, timeout=30):
        return sh("ip", "netns", "exec", side.ns, *cmd, check=check, timeout=timeout)

    def probe(self, side, *args, timeout=30):
        res = self.ns(side, sys.executable, PROBE, *map(str, args), timeout=timeout)
        return json.loads(res.stdout.strip().splitlines()[-1])

    def spawn(self, side, *args):
        """A probe left running (a server); returns once it printed its first line."""
        p = subprocess.Popen(["ip", "netns", "exec", side.ns, sys.executable, PROBE, *map(str, args)],
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        line = p.stdout.readline()
        assert "listening" in line, line
        return p

    def stats(self):
        """{ifname: engine statistics + pf_packets/pf_bytes} read from the running router (pfd
        --stats-file: SIGUSR1 asks, a new 'seq' answers)."""
        seq = self._stats_seq()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.time() + 10
        while self._stats_seq() == seq:
            if time.time() > deadline or not self.alive():
                raise RuntimeError("router did not answer the statistics request:\n" + self.output())
            time.sleep(0.01)
        with open(self.stats_path) as f:
            return json.load(f)["interfaces"]

    def _stats_seq(self):
        try:
            with open(self.stats_path) as f:
                return json.load(f)["seq"]
        except (OSError, ValueError):
            return None

    def link_stats(self, side):
        base = f"/sys/class/net/{side.tap}/statistics"
        res = self.ns(side, "sh", "-c", f"cd {base} && grep . rx_bytes rx_packets tx_bytes tx_packets")
        return {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", res.stdout)}
