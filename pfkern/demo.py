"""`pfd --demo`: a small NAT router built on built-in defaults, shown through /dev/pf.

    LAN namespace pfdemo-lan            pfd (pf engine, router)            WAN namespace pfdemo-wan
    192.168.77.2/24  ── TAP pfdemo-lan ── 192.168.77.1 | 198.51.100.1 ── TAP pfdemo-wan ── 198.51.100.2/24

Before pfd starts its datapath, `Demo(args)` takes the demo's lock, checks that its interface and
namespace names are free and adds the two TAPs to `args.interface`. Once the device is served,
`start(device)` runs the rest from a thread, in child processes (`python3 -m pfkern.demo ...`:
pfd itself never opens the device it serves): the namespaces (the TAPs' kernel sides moved in,
addresses, default routes via pfd), a ruleset loaded through the device exactly as pfctl loads it

    table <lan> { 192.168.77.0/24 }
    nat on pfdemo-wan inet from <lan> to any -> 198.51.100.1
    rdr on pfdemo-wan inet proto tcp to 198.51.100.1 port 8080 -> 192.168.77.2 port 80
    pass all flags S/SA keep state

a TCP server in each namespace and two connections held open through the engine (LAN -> WAN
server, translated by nat; WAN -> 198.51.100.1:8080, redirected to the LAN server), then a report:
pfctl-like status, tables, rules and states; pf(4)'s DIOCNATLOOK example (seed 001) compiled
unchanged and asked about the translated connection; the interface-statistics program (seed 004)
on the demo's TAPs. The seeds are read from ../shared/seeds at run time (pfkern/seeds.py); without
them, or without a compiler, the same answers come through the Python client, and the report says
why. `stop()` and `close()` remove what the demo made (processes, then namespaces, after pfd has
closed the TAPs); a failure anywhere in the demo stops pfd the same way (exit status 1). A pfd
killed outright takes the demo's processes with it (their stdin is a pipe from pfd) and leaves
its namespaces listed in the lock file; the next `pfd --demo` of that name removes them.

With --interface or --config, the demo builds nothing and shows pf's state only.

`python3 -m pfkern.demo show [--device PATH]` prints the pfctl-like summary of any running pfd;
`load` and `report` are the demo's steps that talk to the device, `serve` and `hold` its TCP
server and client inside the namespaces.
"""
import argparse
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from pfkern.client.constants import (PF_BINAT, PF_DEBUG_MISC, PF_DEBUG_NOISY, PF_DEBUG_NONE,
                                     PF_DEBUG_URGENT, PF_DROP, PF_IN, PF_NAT, PF_NOBINAT, PF_NONAT,
                                     PF_NORDR, PF_NOSCRUB, PF_OP_EQ, PF_OP_GE, PF_OP_GT, PF_OP_IRG,
                                     PF_OP_LE, PF_OP_LT, PF_OP_NE, PF_OP_RRG, PF_OP_XRG, PF_OUT,
                                     PF_PASS, PF_RDR, PF_SCRUB, PF_STATE_MODULATE, PF_STATE_NORMAL,
                                     PF_STATE_SYNPROXY)

log = logging.getLogger("pfd.demo")

DEFAULT_NAME = "pfdemo"
LAN_ROUTER, LAN_HOST, LAN_NET = "192.168.77.1", "192.168.77.2", "192.168.77.0/24"
WAN_ROUTER, WAN_HOST, WAN_NET = "198.51.100.1", "198.51.100.2", "198.51.100.0/24"
SERVICE_PORT = 80           # the servers in both namespaces
RDR_PORT = 8080             # on the router's WAN address, redirected to LAN_HOST:SERVICE_PORT
NAT_PORTS = (50001, 65535)  # pfctl's default nat source port range
LOCK_DIR = "/run/pfd"
NETNS_DIR = "/run/netns"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IPPROTO_TCP = socket.IPPROTO_TCP


class DemoError(Exception):
    pass


def add_arguments(parser):
    parser.add_argument("--demo-name", default=DEFAULT_NAME, metavar="NAME",
                        help="with --demo: name its TAPs and network namespaces NAME-lan and "
                             f"NAME-wan (default {DEFAULT_NAME})")


def pf_conf(lan, wan):
    """The demo's ruleset as pf.conf would say it (what Demo.ruleset() builds)."""
    return (f"table <lan> {{ {LAN_NET} }}\n"
            f"nat on {wan} inet from <lan> to any -> {WAN_ROUTER}\n"
            f"rdr on {wan} inet proto tcp to {WAN_ROUTER} port {RDR_PORT} -> {LAN_HOST} port {SERVICE_PORT}\n"
            f"pass all flags S/SA keep state\n")


def _sh(*cmd, timeout=20, check=True):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise DemoError(f"{' '.join(cmd)}: {res.stderr.strip() or f'exit status {res.returncode}'}")
    return res


def netns_exists(name):
    return os.path.exists(os.path.join(NETNS_DIR, name))


def netns_remove(name):
    """Stop what still runs in namespace `name`, then delete it."""
    pids = _sh("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass
    _sh("ip", "netns", "del", name, check=False)


class Demo:
    def __init__(self, args):
        self.name = args.demo_name
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,10}", self.name):
            raise DemoError(f"--demo-name {self.name!r}: a letter, then up to 10 letters, digits "
                            "or '_' (interface names have at most 15 characters)")
        self.lan, self.wan = f"{self.name}-lan", f"{self.name}-wan"
        self.build = not args.interface and not args.config
        self.failed = False
        self.namespaces = []        # the namespaces this demo created
        self.procs = []             # its servers and clients
        self.tmp = None
        self.thread = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._lock_fd = None
        if not self.build:
            return
        try:
            self._take_lock()
            for name in (self.lan, self.wan):
                if netns_exists(name):
                    raise DemoError(f"network namespace {name} already exists and was not made by "
                                    f"pfd --demo; remove it (ip netns del {name}) or choose other "
                                    "names with --demo-name")
                if os.path.exists(f"/sys/class/net/{name}"):
                    raise DemoError(f"interface {name} already exists; remove it or choose other "
                                    "names with --demo-name")
        except BaseException:
            self.close()
            raise
        args.interface = [f"{self.lan},{LAN_ROUTER}/24", f"{self.wan},{WAN_ROUTER}/24"]

    # -- lock: one demo per name, and what a killed one left -------------------------------------
    def _take_lock(self):
        os.makedirs(LOCK_DIR, exist_ok=True)
        path = os.path.join(LOCK_DIR, f"demo-{self.name}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            note = os.pread(fd, 4096, 0).decode(errors="replace").split() or ["?"]
            os.close(fd)
            raise DemoError(f"another pfd --demo is running (pid {note[0]}) with the namespaces "
                            f"{self.lan} and {self.wan}; stop it first (Ctrl-C), or give this one "
                            "other names with --demo-name") from None
        self._lock_fd = fd
        note = os.pread(fd, 4096, 0).decode(errors="replace").split()
        for ns in note[1:]:
            if netns_exists(ns):
                log.warning("removing namespace %s left by a pfd --demo that was killed (pid %s)",
                            ns, note[0])
                netns_remove(ns)
        self._write_note()

    def _write_note(self):
        if self._lock_fd is not None:
            note = " ".join([str(os.getpid()), *self.namespaces]) + "\n"
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, note.encode(), 0)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, device, on_failure=None):
        """Called once `device` is served: the rest of the demo, in a thread (the request loop
        must keep running to answer it). on_failure(): how to stop pfd if the demo fails."""
        self.thread = threading.Thread(target=self._main, args=(device, on_failure),
                                       name="pfd-demo", daemon=True)
        self.thread.start()

    def _main(self, device, on_failure):
        try:
            if self.build:
                self.setup(device)
            report = self.report(device)
            with self._lock:
                if self._stopping.is_set():
                    return
                sys.stdout.write(report)
                sys.stdout.write(f"pfd keeps serving {device}; Ctrl-C stops it"
                                 f"{' and removes the namespaces' if self.build else ''}.\n")
                sys.stdout.flush()
        except Exception as exc:
            if self._stopping.is_set():
                return              # pfd is stopping: what failed was cut short on purpose
            log.error("demo failed: %s", exc, exc_info=not isinstance(exc, (DemoError, OSError)))
            self.failed = True
            if on_failure is not None:
                on_failure()

    def stop(self):
        """Stop the demo's processes and its thread (before pfd closes the TAPs)."""
        self._stopping.set()
        with self._lock:
            procs, self.procs = self.procs, []
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.thread is not None:
            self.thread.join(30)

    def close(self):
        """Remove the namespaces (after pfd closed the TAPs), the work files; free the lock."""
        self._stopping.set()
        with self._lock:
            namespaces, self.namespaces = self.namespaces, []
        for ns in namespaces:
            netns_remove(ns)
            log.info("removed namespace %s", ns)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check(self):
        if self._stopping.is_set():
            raise DemoError("stopping")

    # -- the set-up --------------------------------------------------------------------------------
    def _netns(self, ns, host, prefix, router):
        self._check()
        with self._lock:
            self._check()
            self.namespaces.append(ns)
            self._write_note()
        _sh("ip", "netns", "add", ns)
        run = lambda *cmd: _sh("ip", "netns", "exec", ns, *cmd)
        run("ip", "link", "set", "lo", "up")
        # an IPv4 demo: no router solicitations, no DAD (best effort: the kernel may have no IPv6)
        _sh("ip", "netns", "exec", ns, "sh", "-c", "for k in all default; do "
            "echo 1 > /proc/sys/net/ipv6/conf/$k/disable_ipv6; done", check=False)
        _sh("ip", "link", "set", ns, "netns", ns)      # the TAP of the same name
        run("ip", "addr", "add", f"{host}/{prefix}", "dev", ns)
        run("ip", "link", "set", ns, "up")
        run("ip", "route", "add", "default", "via", router)

    def _child(self, ns, *argv, first_line=True):
        """`python3 -m pfkern.demo ARGV` in namespace `ns` (None: pfd's own). pfd never calls its
        own device: an ioctl from the serving process would wait for the request loop, which
        waits for the GIL the caller holds (fcntl.ioctl keeps it for large structs). Returns
        the child's first line as JSON (agents that keep running) or, with first_line=False,
        its whole output once it ended."""
        self._check()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [REPO, *filter(None, [os.environ.get("PYTHONPATH")])]))
        cmd = [sys.executable, "-m", "pfkern.demo", *map(str, argv)]
        if ns is not None:
            cmd = ["ip", "netns", "exec", ns, *cmd]
        # own session: Ctrl-C is for pfd; stdin a pipe from pfd: they end when pfd ends, even
        # when it is killed outright
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
                             env=env, cwd=REPO, start_new_session=True)
        with self._lock:
            self.procs.append(p)
        if self._stopping.is_set():
            p.kill()
            raise DemoError("stopping")
        where = f" in {ns}" if ns else ""
        if not first_line:
            out = p.communicate()[0]
            if p.returncode != 0:
                raise DemoError(f"demo {argv[0]}{where} failed (exit status {p.returncode})")
            return out
        line = p.stdout.readline()
        if not line:
            p.wait()
            raise DemoError(f"demo {' '.join(map(str, argv))}{where} exited with status {p.returncode}")
        msg = json.loads(line)
        if "error" in msg:
            raise DemoError(f"demo {' '.join(map(str, argv))}{where}: {msg['error']}")
        return msg

    def setup(self, device):
        self._netns(self.lan, LAN_HOST, 24, LAN_ROUTER)
        self._netns(self.wan, WAN_HOST, 24, WAN_ROUTER)
        self._child(None, "load", "--device", device, "--wan", self.wan, first_line=False)
        self._child(self.lan, "serve", LAN_HOST, SERVICE_PORT)
        self._child(self.wan, "serve", WAN_HOST, SERVICE_PORT)
        # LAN -> WAN server through nat; WAN -> the router's port 8080 through rdr
        self.nat_conn = self._child(self.lan, "hold", WAN_HOST, SERVICE_PORT)
        self.rdr_conn = self._child(self.wan, "hold", WAN_ROUTER, RDR_PORT)

    def report(self, device):
        argv = ["report", "--device", device]
        if self.build:
            if self.tmp is None:
                self.tmp = tempfile.mkdtemp(prefix="pfd-demo-")
            argv += ["--lan", self.lan, "--wan", self.wan, "--workdir", self.tmp,
                     "--connections", json.dumps([self.nat_conn, self.rdr_conn])]
        return self._child(None, *argv, first_line=False)


def load_ruleset(device, wan):
    """The demo's ruleset, loaded through `device` as pfctl loads pf_conf(), then DIOCSTART."""
    from pfkern.client import AF_INET, PF_NAT, PF_PASS, PF_RDR, PfDevice
    from pfkern.client.ruleset import Ruleset, pool_addr, rule
    rs = Ruleset().table("lan", [LAN_NET])
    rs.add(rule(PF_NAT, af=AF_INET, ifname=wan, src="<lan>", proxy=NAT_PORTS),
           [pool_addr(WAN_ROUTER)])
    rs.add(rule(PF_RDR, af=AF_INET, proto=IPPROTO_TCP, ifname=wan, dst=WAN_ROUTER,
                dport=RDR_PORT, proxy=(SERVICE_PORT, 0)), [pool_addr(LAN_HOST)])
    rs.add(rule(PF_PASS, keep_state=True))
    with PfDevice(device, "rw") as pf:
        rs.load(pf)
        try:
            pf.start()
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise


def build_report(device, lan=None, wan=None, connections=None, workdir=None):
    """The report's text: how the demo is built (when it is), pf's views, the seed programs."""
    from pfkern.client import PfDevice
    out = []
    with PfDevice(device, "r") as pf:
        if lan:
            nat_conn, rdr_conn = connections
            # both connections established: four states (LAN in + WAN out, WAN in + LAN out)
            deadline = time.time() + 5
            while len([s for s in pf.get_states() if s.proto == IPPROTO_TCP]) < 4:
                if time.time() > deadline:
                    break
                time.sleep(0.05)
            out += setup_lines(device, lan, wan, nat_conn, rdr_conn)
        out += ["", "--- pfctl -s info", *show_info(pf),
                "", "--- pfctl -s Tables; pfctl -t <name> -T show", *show_tables(pf),
                "", "--- pfctl -s nat", *show_rules(pf, nat=True),
                "", "--- pfctl -s rules", *show_rules(pf, nat=False),
                "", "--- pfctl -s states", *show_states(pf)]
        if lan:
            out += [""] + seed_lines(pf, device, lan, wan, nat_conn, workdir)
    return "\n".join(out) + "\n\n"


def setup_lines(device, lan, wan, n, r):
    return [
        "== pfd --demo " + "=" * 66,
        f"LAN: namespace {lan}, {LAN_HOST}/24 via {LAN_ROUTER} (pfd, TAP {lan})",
        f"WAN: namespace {wan}, {WAN_HOST}/24 via {WAN_ROUTER} (pfd, TAP {wan})",
        f"ruleset loaded through {device} with pfctl's ioctl sequence (DIOCXBEGIN, DIOCRINADEFINE,",
        "DIOCBEGINADDRS/DIOCADDADDR/DIOCADDRULE per rule, DIOCXCOMMIT), then DIOCSTART:",
        *("    " + line for line in pf_conf(lan, wan).splitlines()),
        "connections held open through the engine:",
        f"    nat: LAN {n['local']} -> WAN server {n['peer']}; the server sees {n['seen_as']}",
        f"    rdr: WAN {r['local']} -> {r['peer']}; answered by the LAN server, which sees "
        f"{r['seen_as']}",
    ]


def seed_lines(pf, device, lan, wan, nat_conn, workdir):
    """pf(4)'s DIOCNATLOOK example asked about the nat connection (the gateway address and port
    the WAN server saw), and the interface-statistics program on the demo's TAPs; through the
    Python client, saying why, when the seed programs cannot be had."""
    gwy_addr, gwy_port = nat_conn["seen_as"].rsplit(":", 1)
    natlook_args = [gwy_addr, gwy_port, WAN_HOST, str(SERVICE_PORT)]
    out = []
    try:
        natlook, ifstats = compile_seeds(device, workdir)
    except Exception as exc:      # SeedError, OSError
        out += ["--- the seed programs cannot run here:",
                *("    " + line for line in str(exc).splitlines()[:6]),
                "--- the same through the Python client (pfkern.client):"]
        out += natlook_by_client(pf, natlook_args)
        out += ["", "--- interface statistics (DIOCIGETIFACES, OpenBSD 3.x struct pfi_if)"]
        for name in (lan, wan):
            out += interface_stats_by_client(pf, name)
        return out
    out += ["--- DIOCNATLOOK: the example of pf(4) (seed 001), compiled unchanged, "
            "asked about the nat connection",
            "$ natlook " + " ".join(natlook_args)]
    out += run_seed([natlook, *natlook_args], device, needs_dev_pf=True)
    out += ["", "--- interface statistics: the program of seed 004 "
                "(DIOCIGETIFACES, OpenBSD 3.x struct pfi_if)"]
    for name in (lan, wan):
        out += ["$ ifstats " + name] + run_seed([ifstats, name], device)
    return out


def compile_seeds(device, workdir):
    from pfkern import seeds
    natlook_src = seeds.natlook_example()
    ifstats_src = seeds.interface_stats_program()
    natlook = seeds.compile_program(natlook_src, workdir, "natlook")
    ifstats = seeds.compile_program(ifstats_src, workdir, "ifstats",
                                    defines=[f'PF_DEVICE="{device}"'])
    return natlook, ifstats


def run_seed(argv, device, needs_dev_pf=False):
    """Run a seed program; the DIOCNATLOOK example opens /dev/pf itself, so when pfd serves
    another path it runs in a private mount namespace where that path is /dev/pf."""
    if needs_dev_pf and os.path.realpath(device) != "/dev/pf":
        script = ('mount -t tmpfs tmpfs /dev && touch /dev/pf && mount --bind "$0" /dev/pf '
                  '&& exec "$@"')
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                os.path.realpath(device), *argv]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    lines = (res.stdout + res.stderr).rstrip("\n").splitlines()
    if res.returncode != 0:
        lines.append(f"(exit status {res.returncode})")
    return lines


# -- pfctl-like views (formats of FreeBSD 12.1's pfctl) ------------------------------------------

DEBUG_NAMES = {PF_DEBUG_NONE: "None", PF_DEBUG_URGENT: "Urgent", PF_DEBUG_MISC: "Misc",
               PF_DEBUG_NOISY: "Loud"}
TCP_STATES = ("CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "CLOSE_WAIT",
              "FIN_WAIT_1", "CLOSING", "LAST_ACK", "FIN_WAIT_2", "TIME_WAIT")
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}


def _cstr(raw):
    return bytes(raw).split(b"\0", 1)[0].decode("latin-1")


def show_info(pf):
    """pfctl -s info."""
    from pfkern.client import FCNT_NAMES, PFRES_NAMES
    st = pf.status()
    runtime = int(time.time()) - st.since if st.since else 0
    running = "Enabled" if st.running else "Disabled"
    if st.since:
        d, rest = divmod(max(runtime, 0), 86400)
        line = (f"Status: {running} for {d} days "
                f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}")
    else:
        line = f"Status: {running}"
    debug = DEBUG_NAMES.get(st.debug, str(st.debug))
    out = [f"{line:<44}{'Debug: ' + debug:>15}", "",
           f"{'State Table':<27} {'Total':>14} {'Rate':>16}",
           f"  {'current entries':<25} {st.states:>14} {'':>14}"]

    def rate(v):
        return f"{v / runtime:14.1f}/s" if runtime > 0 else f"{'':>14}"
    for i, name in enumerate(FCNT_NAMES):
        out.append(f"  {name:<25} {st.fcounters[i]:>14} {rate(st.fcounters[i])}")
    out.append("Counters")
    for i, name in enumerate(PFRES_NAMES):
        out.append(f"  {name:<25} {st.counters[i]:>14} {rate(st.counters[i])}")
    return out


def show_tables(pf):
    """pfctl -s Tables, then -t NAME -T show for each."""
    from pfkern.client.ruleset import get_table_addrs, get_tables
    out = []
    for t in get_tables(pf):
        name = _cstr(t.pfrt_name)
        out.append(name)
        for a in get_table_addrs(pf, name):
            out.append(f"   {'!' if a.pfra_not else ''}{a.network()}")
    return out or ["(no tables)"]


def _addr(wrap, af):
    """pfctl's print_addr for the address kinds the demo uses."""
    from pfkern.client import PF_ADDR_ADDRMASK, PF_ADDR_DYNIFTL, PF_ADDR_TABLE
    import ipaddress
    if wrap.type == PF_ADDR_TABLE:
        return f"<{_cstr(wrap.v.tblname)}>"
    if wrap.type == PF_ADDR_DYNIFTL:
        return f"({_cstr(wrap.v.ifname)})"
    if wrap.type != PF_ADDR_ADDRMASK:
        return f"(address type {wrap.type})"
    raw_a, raw_m = bytes(wrap.v.a.addr.addr8), bytes(wrap.v.a.mask.addr8)
    if not any(raw_a) and not any(raw_m):
        return "any"
    v4 = af == socket.AF_INET or (af == 0 and not any(raw_a[4:]) and not any(raw_m[4:]))
    a = ipaddress.ip_address(raw_a[:4] if v4 else raw_a)
    bits = bin(int.from_bytes(raw_m[:4] if v4 else raw_m, "big")).count("1")
    return str(a) if bits == a.max_prefixlen else f"{a}/{bits}"


OPS = {PF_OP_IRG: "{a}><{b}", PF_OP_EQ: "= {a}", PF_OP_NE: "!= {a}", PF_OP_LT: "< {a}",
       PF_OP_LE: "<= {a}", PF_OP_GT: "> {a}", PF_OP_GE: ">= {a}", PF_OP_XRG: "{a}<>{b}",
       PF_OP_RRG: "{a}:{b}"}


def _port(raddr):
    if not raddr.port_op:
        return ""
    a, b = socket.ntohs(raddr.port[0]), socket.ntohs(raddr.port[1])
    return " port " + OPS.get(raddr.port_op, "?{a}").format(a=a, b=b)


def _flags(bits):
    return "".join(c for i, c in enumerate("FSRPAUEW") if bits & (1 << i))


def format_rule(r, pool):
    """pfctl's print_rule for the rule kinds the demo loads (filter, nat, rdr, binat)."""
    names = {PF_PASS: "pass", PF_DROP: "block", PF_SCRUB: "scrub", PF_NOSCRUB: "no scrub",
             PF_NAT: "nat", PF_NONAT: "no nat", PF_BINAT: "binat", PF_NOBINAT: "no binat",
             PF_RDR: "rdr", PF_NORDR: "no rdr"}
    words = [names.get(r.action, f"action {r.action}")]
    if r.action in (PF_PASS, PF_DROP):
        words += [{PF_IN: "in", PF_OUT: "out"}.get(r.direction, "")]
        words += ["quick"] if r.quick else []
    if r.ifname[:1]:
        words += ["on", ("!" if r.ifnot else "") + _cstr(r.ifname)]
    words += [{socket.AF_INET: "inet", socket.AF_INET6: "inet6"}.get(r.af, "")]
    if r.proto:
        words += ["proto", PROTO_NAMES.get(r.proto, str(r.proto))]
    src, dst = _addr(r.src.addr, r.af), _addr(r.dst.addr, r.af)
    if (src, dst) == ("any", "any") and not (r.src.port_op or r.dst.port_op or r.src.neg or r.dst.neg):
        words += ["all"]
    else:
        words += ["from", ("! " if r.src.neg else "") + src + _port(r.src),
                  "to", ("! " if r.dst.neg else "") + dst + _port(r.dst)]
    if r.action in (PF_PASS, PF_DROP):
        if r.flags or r.flagset:
            words += ["flags", f"{_flags(r.flags)}/{_flags(r.flagset)}"]
        if r.keep_state:
            words += [{PF_STATE_NORMAL: "keep state", PF_STATE_MODULATE: "modulate state",
                       PF_STATE_SYNPROXY: "synproxy state"}.get(r.keep_state, "")]
    if r.action in (PF_NAT, PF_RDR, PF_BINAT) and pool:
        targets = [_addr(pa.addr, r.af) for pa in pool]
        words += ["->", targets[0] if len(targets) == 1 else "{ " + ", ".join(targets) + " }"]
        p1, p2 = r.rpool.proxy_port[0], r.rpool.proxy_port[1]
        if r.action == PF_NAT and (p1, p2) != NAT_PORTS and (p1 or p2):
            words += ["port", f"{p1}" if p1 == p2 else f"{p1}:{p2}"]
        elif r.action == PF_RDR and p1:
            words += ["port", f"{p1}" + (f":{p2}" if p2 and p2 != p1 else "")]
    return " ".join(w for w in words if w)


def show_rules(pf, nat):
    """pfctl -s nat (nat, rdr, binat) or -s rules (filter), read back with pfctl's ioctls."""
    from pfkern.client import PF_BINAT, PF_NAT, PF_PASS, PF_RDR
    from pfkern.client.ruleset import read_rules
    actions = (PF_NAT, PF_RDR, PF_BINAT) if nat else (PF_PASS,)
    return [format_rule(r, pool) for action in actions for r, pool in read_rules(pf, action)]


def _host(addr, port, af):
    import ipaddress
    raw = bytes(addr.addr8)
    a = ipaddress.ip_address(raw[:4] if af == socket.AF_INET else raw)
    if not port:
        return str(a)
    return f"{a}:{socket.ntohs(port)}" if af == socket.AF_INET else f"{a}[{socket.ntohs(port)}]"


def format_state(s):
    """pfctl's print_state: the wire key's addresses, the stack key's in parentheses where the
    state translates them ("->" outbound, "<-" inbound)."""
    from pfkern.client import PF_OUT, PF_SK_STACK, PF_SK_WIRE
    if s.direction == PF_OUT:
        src, dst, sk, nk = s.src, s.dst, s.key[PF_SK_STACK], s.key[PF_SK_WIRE]
    else:
        src, dst, sk, nk = s.dst, s.src, s.key[PF_SK_WIRE], s.key[PF_SK_STACK]
    af = s.af
    parts = [_cstr(s.ifname), PROTO_NAMES.get(s.proto, str(s.proto))]
    for i, arrow in ((1, None), (0, "->" if s.direction == PF_OUT else "<-")):
        if arrow:
            parts.append(arrow)
        text = _host(nk.addr[i], nk.port[i], af)
        if bytes(nk.addr[i].addr8) != bytes(sk.addr[i].addr8) or nk.port[i] != sk.port[i]:
            text += f" ({_host(sk.addr[i], sk.port[i], af)})"
        parts.append(text)
    line = " ".join(parts)
    if s.proto == IPPROTO_TCP and src.state < len(TCP_STATES) and dst.state < len(TCP_STATES):
        line += f"       {TCP_STATES[src.state]}:{TCP_STATES[dst.state]}"
    return line


def show_states(pf):
    """pfctl -s states."""
    states = pf.get_states()
    return [format_state(s) for s in states] or ["(no states)"]


def natlook_by_client(pf, args):
    """What the DIOCNATLOOK example prints, asked through the Python client."""
    from pfkern.client import PF_IN
    gwy_addr, gwy_port, ext_addr, ext_port = args
    try:
        rs, rsport, _rd, _rdport = pf.natlook(None, IPPROTO_TCP, gwy_addr, int(gwy_port),
                                              ext_addr, int(ext_port), PF_IN)
    except OSError as exc:
        return [f"DIOCNATLOOK {gwy_addr}:{gwy_port} {ext_addr}:{ext_port}: {exc.strerror}"]
    return [f"DIOCNATLOOK {gwy_addr}:{gwy_port} {ext_addr}:{ext_port} (PF_IN): "
            f"internal host {rs}:{rsport}"]


def interface_stats_by_client(pf, name):
    """What the interface-statistics program prints, through the Python client."""
    from pfkern.client import ESIZE_IF, PFI_FLAG_INSTANCE
    out = []
    for i in pf.interfaces(name, esize=ESIZE_IF, flags=PFI_FLAG_INSTANCE):
        b = i.pfif_bytes
        out.append(f"{i.name} IPv4 In: Pass {b[0][0][0]} Block {b[0][0][1]}")
        out.append(f"{i.name} IPv4 Out: Pass {b[0][1][0]} Block {b[0][1][1]}")
    return out


# -- the agents inside the namespaces -------------------------------------------------------------

def _exit_with_pfd():
    """pfd holds our stdin's other end: end when it closes."""
    def watch():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def _emit(obj):
    print(json.dumps(obj), flush=True)


def _fmt(addr):
    return f"{addr[0]}:{addr[1]}"


def agent_serve(addr, port):
    """A TCP server: each client gets one line naming the address it was seen from, and the
    connection stays open until the client closes it."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind((addr, int(port)))
    except OSError as exc:
        _emit({"error": f"bind {addr}:{port}: {exc.strerror}"})
        return 1
    srv.listen(16)
    _emit({"listening": _fmt(srv.getsockname())})

    def serve(c, peer):
        with c:
            c.recv(100)
            c.sendall(f"{_fmt(peer)}\n".encode())
            while c.recv(4096):
                pass
    while True:
        c, peer = srv.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()


def agent_hold(host, port):
    """A TCP client: connect (a few tries while the router learns its neighbours), learn how
    the server saw us, report, and hold the connection open until killed."""
    deadline = time.time() + 10
    while True:
        try:
            s = socket.create_connection((host, int(port)), timeout=3)
            break
        except OSError as exc:
            if time.time() > deadline:
                _emit({"error": f"connect {host}:{port}: {exc.strerror or exc}"})
                return 1
            time.sleep(0.2)
    s.sendall(b"hello\n")
    seen = b""
    while not seen.endswith(b"\n"):
        d = s.recv(100)
        if not d:
            break
        seen += d
    _emit({"local": _fmt(s.getsockname()), "peer": _fmt(s.getpeername()),
           "seen_as": seen.decode().strip()})
    s.settimeout(None)
    while s.recv(4096):
        pass
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="pfkern.demo")
    sub = p.add_subparsers(dest="cmd", required=True)
    show = sub.add_parser("show", help="pfctl-like summary of a running pfd")
    show.add_argument("--device", default="/dev/pf")
    load = sub.add_parser("load", help="(pfd --demo) load the demo's ruleset")
    load.add_argument("--device", default="/dev/pf")
    load.add_argument("--wan", required=True)
    rep = sub.add_parser("report", help="(pfd --demo) print the demo's report")
    rep.add_argument("--device", default="/dev/pf")
    rep.add_argument("--lan")
    rep.add_argument("--wan")
    rep.add_argument("--workdir")
    rep.add_argument("--connections", type=json.loads)
    for name in ("serve", "hold"):
        a = sub.add_parser(name, help=f"the demo's TCP {'server' if name == 'serve' else 'client'}")
        a.add_argument("addr")
        a.add_argument("port", type=int)
    args = p.parse_args(argv)
    if args.cmd in ("serve", "hold"):
        _exit_with_pfd()
    if args.cmd == "serve":
        return agent_serve(args.addr, args.port)
    if args.cmd == "hold":
        return agent_hold(args.addr, args.port)
    if args.cmd == "load":
        load_ruleset(args.device, args.wan)
        return 0
    if args.cmd == "report":
        sys.stdout.write(build_report(args.device, args.lan, args.wan, args.connections, args.workdir))
        return 0
    from pfkern.client import PfDevice
    with PfDevice(args.device, "r") as pf:
        for title, lines in (("pfctl -s info", show_info(pf)), ("pfctl -s Tables", show_tables(pf)),
                             ("pfctl -s nat", show_rules(pf, True)),
                             ("pfctl -s rules", show_rules(pf, False)),
                             ("pfctl -s states", show_states(pf))):
            print(f"--- {title}", *lines, "", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
