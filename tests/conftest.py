"""Shared fixtures: a live pfd on a private path, C compilation with the pkg-config flags, and
the seed documents read from ../shared at run time."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
SEEDS = os.path.join(SHARED, "seeds")

sys.path.insert(0, REPO)


def is_mounted(path):
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


class Pfd:
    """A pfd subprocess serving `path`; stderr is collected in a file."""

    def __init__(self, path, mode="fuse", extra=(), netns_wrapper=()):
        self.path = path
        self.log_path = path + ".log"
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            [*netns_wrapper, sys.executable, "-m", "pfkern.pfd", "--device", path, "--mode", mode, *extra],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pfd exited with {self.proc.returncode}:\n{self.output()}")
            if "serving " + self.path in self.output():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"pfd not ready after {timeout}s:\n{self.output()}")

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def tmpdir_pf():
    d = tempfile.mkdtemp(prefix="pftest-")
    yield d
    for name in os.listdir(d):
        p = os.path.join(d, name)
        if is_mounted(p):
            subprocess.run(["umount", "-l", p], check=False)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pfd(tmpdir_pf):
    """A fresh pfd serving a FUSE file at a private path for one test."""
    daemon = Pfd(os.path.join(tmpdir_pf, "pf")).wait_ready()
    yield daemon
    assert daemon.alive(), "pfd died during the test:\n" + daemon.output()
    daemon.stop()


@pytest.fixture(scope="module")
def module_pfd():
    """One pfd shared by the tests of a module (for tests that leave pf as they found it)."""
    d = tempfile.mkdtemp(prefix="pftest-")
    daemon = Pfd(os.path.join(d, "pf")).wait_ready()
    yield daemon
    alive = daemon.alive()
    daemon.stop()
    shutil.rmtree(d, ignore_errors=True)
    assert alive, "pfd died during the module:\n" + daemon.output()


def errno_of(fn, *args, **kw):
    """The errno fn(*args, **kw) fails with (the test fails if it does not fail)."""
    with pytest.raises(OSError) as info:
        fn(*args, **kw)
    return info.value.errno


@pytest.fixture
def dev(module_pfd):
    """A read-write fd on the module's pfd (through the ctypes client)."""
    from pfkern.client import PfDevice
    with PfDevice(module_pfd.path, "rw") as d:
        yield d


@pytest.fixture
def rodev(module_pfd):
    """A read-only fd on the module's pfd."""
    from pfkern.client import PfDevice
    with PfDevice(module_pfd.path, "r") as d:
        yield d


def pkg_config_pfvar():
    out = subprocess.run(["pkg-config", "--cflags", "--libs", "pfvar"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail("pkg-config pfvar failed (run scripts/bootstrap): " + out.stderr)
    return out.stdout.split()


def compile_c(source, out_dir, name="prog", defines=(), flags=None):
    """Compile C source text with the pfvar pkg-config flags; returns the binary's path."""
    src = os.path.join(out_dir, name + ".c")
    binary = os.path.join(out_dir, name)
    with open(src, "w") as f:
        f.write(source)
    cmd = ["cc", "-o", binary, src, *[f"-D{d}" for d in defines]]
    cmd += pkg_config_pfvar() if flags is None else flags
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"compiling {name} failed:\n{' '.join(cmd)}\n{res.stderr}")
    return binary
