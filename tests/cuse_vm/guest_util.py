"""Helpers of the guest tests (tests/cuse_vm/guest_*.py): pfd on the real CUSE /dev/pf, programs
run as other users, the C programs compiled on the host.

Only meaningful inside the qemu guest that scripts/cuse-vm-test boots: a kernel with CUSE, root,
devtmpfs on /dev, and the users of the guest's /etc/passwd (alice: member of pfusers; bob: not).
"""
import errno
import os
import select
import signal
import stat
import subprocess
import sys
import time
import traceback

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
for _p in (TESTS, REPO):
    if _p not in sys.path:
        sys.path.insert(0, _p)

LOG_DIR = "/out" if os.access("/out", os.W_OK) else "/tmp"
BIN = os.environ.get("CUSE_VM_BIN", "")
DEVICE = "/dev/pf"
CUSE_IOCTL_MAX = 32 * 4096      # bytes per direction of one unrestricted CUSE ioctl

ALICE, BOB, PFUSERS = 1001, 1002, 1100     # the guest's /etc/passwd and /etc/group

# The guest runs Python without site (-S, site-packages on PYTHONPATH): the interpreter starts
# in a fraction of the time under TCG. pfd starts the same way.
PYTHON = [sys.executable, "-S"] if sys.flags.no_site else [sys.executable]

_count = 0


def in_guest():
    return os.path.exists("/etc/cuse-vm.env")


class Daemon:
    """`pfd` serving a CUSE device; its stderr goes to LOG_DIR/pfd-N-<name>.log."""

    def __init__(self, *extra, mode="cuse", device=DEVICE, log_level="info"):
        global _count
        _count += 1
        self.device = device
        self.log_path = os.path.join(LOG_DIR, f"pfd-{_count}-{os.path.basename(device)}.log")
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            [*PYTHON, "-m", "pfkern.pfd", "--device", device, "--mode", mode,
             "--log-level", log_level, *extra],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"pfd exited with {self.proc.returncode}:\n{self.output()}")
            if f"serving {self.device}\n" in self.output():
                return self
            time.sleep(0.05)
        raise AssertionError(f"pfd not ready after {timeout}s:\n{self.output()}")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send `sig`, wait for the exit, return the exit status (killed after `timeout`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"pfd ignored signal {sig} for {timeout}s:\n{self.output()}")
        self.log.close()
        return self.proc.returncode


def wait_until(predicate, timeout=20, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def node(path=DEVICE):
    """os.stat of the device node, or None when it does not exist."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def is_char_device(path=DEVICE):
    st = node(path)
    return st is not None and stat.S_ISCHR(st.st_mode)


def cuse_loaded():
    with open("/proc/modules") as f:
        return any(line.split()[0] == "cuse" for line in f)


class Child:
    """`fn(out)` in a forked child of the test process (optionally as another user: uid, gid and
    supplementary groups set before `fn` runs); `out` is a line-buffered pipe to the parent.
    Forking is what keeps these cheap: a fresh interpreter costs seconds under TCG."""

    def __init__(self, fn, uid=None, gid=None, groups=()):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                    # the child: never returns
            code = 0
            try:
                os.close(r)
                if uid is not None:
                    os.setgroups(list(groups))
                    os.setgid(uid if gid is None else gid)
                    os.setuid(uid)
                with os.fdopen(w, "w", buffering=1) as out:
                    fn(out)
            except BaseException:
                traceback.print_exc()
                code = 70
            finally:
                os._exit(code)
        os.close(w)
        self.pid = pid
        self.status = None
        self._out = os.fdopen(r)

    def readline(self, timeout=60):
        if not select.select([self._out], [], [], timeout)[0]:
            raise AssertionError(f"child {self.pid} said nothing for {timeout}s")
        return self._out.readline()

    def poll(self):
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def wait(self, timeout=60):
        """The exit code (negative: the signal that killed it); AssertionError after `timeout`."""
        if not wait_until(lambda: self.poll() is not None, timeout=timeout, interval=0.02):
            os.kill(self.pid, signal.SIGKILL)
            raise AssertionError(f"child {self.pid} still running after {timeout}s")
        return self.status

    def output(self, timeout=60):
        """Everything the child wrote, once it has exited successfully."""
        code = self.wait(timeout)
        text = self._out.read()
        self._out.close()
        assert code == 0, f"child exited {code} (traceback on the console)"
        return text

    def kill(self, timeout=30):
        """SIGKILL and reap (a caller inside a CUSE request pfd has read dies only once pfd
        answers or dies: AssertionError after `timeout`)."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            if not wait_until(lambda: self.poll() is not None, timeout=timeout, interval=0.02):
                raise AssertionError(f"child {self.pid} survives SIGKILL for {timeout}s")


def _open_probe(device, out):
    """What a non-root opener meets: open read-only and read-write; DIOCSTART on the read-only
    fd, DIOCGETSTATUS on the read-write one. Reports "key=value" words."""
    from pfkern.client import PfDevice
    res = {}
    for mode in ("r", "rw"):
        try:
            pf = PfDevice(device, mode)
        except OSError as exc:
            res[mode] = errno.errorcode[exc.errno]
            continue
        res[mode] = "ok"
        try:
            if mode == "r":
                key = "ro-start"
                pf.start()
                pf.stop()
                res[key] = "ok"
            else:
                key = "status"
                res[key] = f"running={pf.status().running}"
        except OSError as exc:
            res[key] = errno.errorcode[exc.errno]
        pf.close()
    out.write(" ".join(f"{k}={v}" for k, v in sorted(res.items())) + "\n")


def probe_open(uid, gid=None, groups=(), device=DEVICE):
    text = Child(lambda out: _open_probe(device, out), uid=uid, gid=gid, groups=groups).output()
    return dict(item.split("=", 1) for item in text.split())


def prebuilt(source, out_dir, name="prog", defines=(), flags=None):
    """Stands in for conftest.compile_c in the guest (no compiler there): the binary the host
    compiled from the same source text. The host compiles every program a guest test asks for
    (a compile failure fails there; absent seeds skip before this is reached), so a missing
    binary is the harness's fault: a failure."""
    binary = os.path.join(BIN, name)
    if not BIN or not os.path.exists(binary):
        pytest.fail(f"{binary} missing (CUSE_VM_BIN={BIN!r}): scripts/cuse-vm-test should have built it")
    with open(binary + ".c") as f:
        assert f.read() == source, f"{binary} was compiled from another source text"
    expected = {"ifstats": ['PF_DEVICE="/dev/pf"']}.get(name, [])
    assert list(defines) == expected, f"{name} was compiled with {expected}, not {list(defines)}"
    return binary


def observe(text):
    """Note a behaviour worth reporting; guest_main prints the notes after the tests and the host
    repeats them ("cuse-vm: observed: ...")."""
    with open(os.path.join(LOG_DIR, "observations.txt"), "a") as f:
        f.write(text.replace("\n", " ") + "\n")


def errno_name(code):
    return errno.errorcode.get(code, str(code))
