"""`pfd --demo`, run the way a user runs it: the report it prints (checked against the namespaces'
own socket tables), Ctrl-C removing everything it made, and a second demo refused."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import REPO, is_mounted
from pfkern.seeds import seeds_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")

LAN_HOST, WAN_HOST, ROUTER_WAN = "192.168.77.2", "198.51.100.2", "198.51.100.1"
END_OF_REPORT = "Ctrl-C stops it and removes the namespaces."


def demo_name(tag):
    return f"pfdt{os.getpid() % 10000}{tag}"


def netns_exists(ns):
    return os.path.exists(f"/run/netns/{ns}")


def link_exists(name):
    return os.path.exists(f"/sys/class/net/{name}")


def needs_seeds():
    if not os.path.isdir(seeds_dir()):     # where pfd --demo reads them (PF_SEEDS_DIR honoured)
        pytest.skip(f"seed documents absent: {seeds_dir()} does not exist "
                    "(../shared not beside the checkout, PF_SEEDS_DIR unset)")


class Demo:
    """`python3 -m pfkern.pfd --demo ...` in its own session (as a shell runs a foreground job),
    output collected in a file; `wrapper` runs it inside e.g. `unshare --mount`."""

    def __init__(self, name, device=None, wrapper=(), env=None):
        self.name = name
        self.lan, self.wan = f"{name}-lan", f"{name}-wan"
        self.dir = tempfile.mkdtemp(prefix="pfdemo-test-")
        self.device = device or os.path.join(self.dir, "pf")
        self.log_path = os.path.join(self.dir, "out")
        self.log = open(self.log_path, "w")
        argv = [*wrapper, sys.executable, "-m", "pfkern.pfd", "--demo", "--demo-name", name]
        if device != "/dev/pf":
            argv += ["--device", self.device]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO,
                                     start_new_session=True, env=dict(os.environ, **(env or {})))

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_for(self, text, timeout=60):
        deadline = time.time() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"pfd --demo exited ({self.proc.returncode}):\n{self.output()}")
            if time.time() > deadline:
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.output()}")
            time.sleep(0.1)
        return self.output()

    def ns(self, ns, *cmd):
        """Run cmd in namespace ns, from pfd's mount namespace (where `ip netns` sees it)."""
        argv = ["ip", "netns", "exec", ns, *cmd]
        if self.proc.poll() is None:
            argv = ["nsenter", "-t", str(self.proc.pid), "-m", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=20)

    def established(self, ns):
        """(local, peer) of the namespace's established TCP connections (its own view)."""
        out = self.ns(ns, "ss", "-Htn", "state", "established").stdout
        return [tuple(line.split()[-2:]) for line in out.splitlines()]

    def pids(self):
        out = []
        for ns in (self.lan, self.wan):
            argv = ["nsenter", "-t", str(self.proc.pid), "-m", "ip", "netns", "pids", ns]
            out += subprocess.run(argv, capture_output=True, text=True).stdout.split()
        return [int(p) for p in out]

    def interrupt(self, timeout=30):
        """Ctrl-C: SIGINT to the whole foreground job (pfd and anything in its session)."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("pfd --demo did not stop on SIGINT:\n" + self.output())

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        for ns in (self.lan, self.wan):       # only after a failure: the demo removes them
            if netns_exists(ns):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if is_mounted(self.device):
            subprocess.run(["umount", "-l", self.device], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def check_report(d, out):
    """The report against what the namespaces themselves say about the held connections."""
    # the LAN host's connection to the WAN server, and how the WAN server sees it
    (lan_local, _), = [c for c in d.established(d.lan) if c[1] == f"{WAN_HOST}:80"]
    (_, wan_peer), = [c for c in d.established(d.wan) if c[0] == f"{WAN_HOST}:80"]
    lan_addr, lan_port = lan_local.rsplit(":", 1)
    gwy_addr, gwy_port = wan_peer.rsplit(":", 1)
    assert lan_addr == LAN_HOST and gwy_addr == ROUTER_WAN, (lan_local, wan_peer)
    assert 50001 <= int(gwy_port) <= 65535

    # pfctl -s states: the translated state with its wire key and, in parentheses, its stack key
    assert f"all tcp {ROUTER_WAN}:{gwy_port} ({LAN_HOST}:{lan_port}) -> {WAN_HOST}:80" in out, out
    # the rdr connection: WAN -> 198.51.100.1:8080, delivered to the LAN server
    (_, rdr_peer), = [c for c in d.established(d.lan) if c[0] == f"{LAN_HOST}:80"]
    assert rdr_peer.startswith(WAN_HOST + ":")
    assert f"all tcp {LAN_HOST}:80 ({ROUTER_WAN}:8080) <- {rdr_peer}" in out, out
    assert "nat on %s inet from <lan> to any -> %s" % (d.wan, ROUTER_WAN) in out
    assert re.search(r"^lan\n   192\.168\.77\.0/24$", out, re.M), out
    return lan_port, gwy_port


def stats_rows(out):
    return {(name, d): (int(p), int(b)) for name, d, p, b in
            re.findall(r"^(\S+) IPv4 (In|Out): Pass (\d+) Block (\d+)$", out, re.M)}


def check_stats(d, out):
    rows = stats_rows(out)
    for name in (d.lan, d.wan):
        for direction in ("In", "Out"):
            assert rows.get((name, direction), (0, 0))[0] > 0, (name, direction, out)


def check_gone(d, pids):
    assert not netns_exists(d.lan) and not netns_exists(d.wan)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert d.lan not in listed and d.wan not in listed
    assert not link_exists(d.lan) and not link_exists(d.wan)
    assert pids, "the demo's servers and clients were not found"
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")], "demo processes left running"
    with open(f"/run/pfd/demo-{d.name}.lock") as f:
        assert f.read() == "", "the lock still lists namespaces to clean"


def test_demo_report_and_ctrl_c(tmp_path):
    """On a private device path: the report, what the seed programs print about the real
    connection, then Ctrl-C removes the namespaces, the TAPs and the processes; exit status 0."""
    needs_seeds()
    d = Demo(demo_name("a"))
    try:
        out = d.wait_for(END_OF_REPORT)
        lan_port, gwy_port = check_report(d, out)
        # pf(4)'s example (it opens /dev/pf itself: the demo binds its device there)
        assert (f"$ natlook {ROUTER_WAN} {gwy_port} {WAN_HOST} 80\n"
                f"internal host {LAN_HOST}:{lan_port}\n") in out, out
        check_stats(d, out)
        assert link_exists(d.lan) is False          # the TAPs' kernel sides live in the namespaces
        assert d.ns(d.lan, "ip", "link", "show", d.lan).returncode == 0
        pids = d.pids()
        assert d.interrupt() == 0, d.output()
        assert "Traceback" not in d.output(), d.output()
        check_gone(d, pids)
        assert not is_mounted(d.device)
    finally:
        d.close()


def test_second_demo_is_refused_and_the_first_keeps_running():
    """The first demo serves /dev/pf itself (in a private mount namespace, as on a user's
    machine); a second `pfd --demo` fails with a clear message and leaves the first alone."""
    needs_seeds()
    name = demo_name("b")
    first = Demo(name, device="/dev/pf", wrapper=["unshare", "--mount", "--propagation", "private"])
    try:
        out = first.wait_for(END_OF_REPORT)
        lan_port, gwy_port = check_report(first, out)
        assert f"internal host {LAN_HOST}:{lan_port}" in out
        before = first.established(first.lan)
        second = subprocess.run([sys.executable, "-m", "pfkern.pfd", "--demo", "--demo-name", name,
                                 "--device", os.path.join(first.dir, "pf2")],
                                capture_output=True, text=True, cwd=REPO, timeout=60)
        assert second.returncode == 1, second
        assert (f"pfd: --demo: another pfd --demo is running (pid {first.proc.pid})"
                in second.stderr), second.stderr
        assert "serving" not in second.stderr
        # the first is undisturbed: alive, its namespaces, TAPs and connections in place
        assert first.proc.poll() is None, first.output()
        assert netns_exists(first.lan) and netns_exists(first.wan)
        assert first.established(first.lan) == before
        res = first.ns(first.lan, sys.executable, "-c",
                       f"import socket; socket.create_connection(('{WAN_HOST}', 80), 5)")
        assert res.returncode == 0, res.stderr          # a new connection through nat
        pids = first.pids()
        assert first.interrupt() == 0, first.output()
        check_gone(first, pids)
    finally:
        first.close()


def test_demo_without_the_seeds_shows_the_same_through_the_client():
    d = Demo(demo_name("c"), env={"PF_SEEDS_DIR": "/nonexistent/seeds"})
    try:
        out = d.wait_for(END_OF_REPORT)
        lan_port, gwy_port = check_report(d, out)
        assert "the seed programs cannot run here:" in out
        assert "seed documents absent: /nonexistent/seeds does not exist" in out
        assert (f"DIOCNATLOOK {ROUTER_WAN}:{gwy_port} {WAN_HOST}:80 (PF_IN): "
                f"internal host {LAN_HOST}:{lan_port}") in out, out
        check_stats(d, out)
        assert d.interrupt() == 0, d.output()
    finally:
        d.close()


def test_demo_refuses_names_in_use():
    """A namespace of the demo's name that pfd --demo did not make: a clear error, nothing
    served, the namespace left as it was."""
    name = demo_name("d")
    subprocess.run(["ip", "netns", "add", f"{name}-wan"], check=True)
    try:
        res = subprocess.run([sys.executable, "-m", "pfkern.pfd", "--demo", "--demo-name", name,
                              "--device", f"/tmp/{name}-pf"], capture_output=True, text=True,
                             cwd=REPO, timeout=60)
        assert res.returncode == 1, res
        assert (f"pfd: --demo: network namespace {name}-wan already exists and was not made by "
                "pfd --demo") in res.stderr, res.stderr
        assert netns_exists(f"{name}-wan") and not netns_exists(f"{name}-lan")
        assert not link_exists(f"{name}-lan") and not os.path.exists(f"/tmp/{name}-pf")
        res = subprocess.run([sys.executable, "-m", "pfkern.pfd", "--demo", "--demo-name",
                              "much_too_long_a_name"], capture_output=True, text=True, cwd=REPO)
        assert res.returncode == 1 and "--demo-name 'much_too_long_a_name'" in res.stderr
    finally:
        subprocess.run(["ip", "netns", "del", f"{name}-wan"], capture_output=True)


def processes_with_env(text):
    """pids of processes whose environment contains `text`."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


def test_a_failing_demo_stops_pfd_and_removes_what_it_made(tmp_path):
    """The redirected connection fails (its client exits at once, as if the engine had dropped
    it): pfd reports it, stops with status 1 and removes the namespaces and processes."""
    (tmp_path / "sitecustomize.py").write_text(
        "import os\n"
        "argv = open('/proc/self/cmdline', 'rb').read().split(b'\\0')\n"
        "if b'pfkern.demo' in argv and b'hold' in argv and b'8080' in argv:\n"
        "    os._exit(3)\n")
    d = Demo(demo_name("e"), env={"PYTHONPATH": str(tmp_path)})
    try:
        assert d.proc.wait(60) == 1, d.output()
        out = d.output()
        assert (f"ERROR pfd.demo: demo failed: demo hold 198.51.100.1 8080 in {d.wan} exited "
                "with status 3") in out, out
        assert f"removed namespace {d.lan}" in out and "Ctrl-C stops" not in out
        assert not netns_exists(d.lan) and not netns_exists(d.wan)
        assert not link_exists(d.lan) and not link_exists(d.wan)
        assert not is_mounted(d.device)
        time.sleep(0.5)
        assert processes_with_env(str(tmp_path)) == [], "the demo's servers and clients survived"
    finally:
        d.close()
