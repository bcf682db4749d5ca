"""In the CUSE guest: pfd killed while callers are inside ioctls, callers killed while pfd holds
their request, and a restarted pfd serving again."""
import errno
import os
import signal
import time

import pytest

from guest_util import (DEVICE, Child, Daemon, in_guest, is_char_device, node, observe,
                        wait_until)
from pfkern.client import PfDevice

pytestmark = pytest.mark.skipif(not in_guest(), reason="runs only in the CUSE guest")

def _loop(out, device=DEVICE):
    """A caller looping DIOCIGETIFACES with a 1000-entry (224,000-byte) buffer, beyond CUSE's
    128 KiB: every call is a retry round plus process_vm_writev. Says "ready" after its first
    success; at its first failure "first=ERRNO next=ERRNO calls=N" (next: one more call)."""
    import ctypes
    from pfkern.client import DIOCIGETIFACES, pfi_kif, pfioc_iface
    pf = PfDevice(device, "r")
    buf = (pfi_kif * 1000)()

    def call():
        io = pfioc_iface(pfiio_buffer=ctypes.addressof(buf), pfiio_esize=224, pfiio_size=1000)
        pf.ioctl(DIOCIGETIFACES, io)

    calls = 0
    try:
        while True:
            call()
            calls += 1
            if calls == 1:
                out.write("ready\n")
    except OSError as exc:
        first = errno.errorcode[exc.errno]
    try:
        call()
        nxt = "ok"
    except OSError as exc:
        nxt = errno.errorcode[exc.errno]
    out.write(f"first={first} next={nxt} calls={calls}\n")


def start_looper():
    child = Child(_loop)
    line = child.readline(timeout=60)
    if line.strip() != "ready":
        child.kill()
        raise AssertionError(f"looper did not start: {line!r}")
    return child


def looper_result(child, timeout=60):
    fields = dict(item.split("=", 1) for item in child.output(timeout).split())
    fields["calls"] = int(fields["calls"])
    return fields


def in_syscall(pid, nr=16):
    """Whether thread `pid` is blocked in syscall `nr` (16: ioctl on x86_64)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] == str(nr)
    except (OSError, IndexError):
        return False


def restarted_daemon_serves():
    daemon = Daemon().wait_ready()
    assert is_char_device()
    with PfDevice(DEVICE, "r") as pf:
        assert pf.status().hostid != 0
    return daemon


def test_sigkill_during_an_ioctl_aborts_the_caller_and_removes_the_node():
    """pfd is stopped (SIGSTOP) under a looping caller, so the caller is certainly inside an
    ioctl (its request queued or read), then SIGKILLed: the caller gets ECONNABORTED, a further
    call on its fd ENOTCONN (or ECONNABORTED), the node vanishes, and a new pfd serves."""
    daemon = Daemon().wait_ready()
    looper = start_looper()
    try:
        os.kill(daemon.pid, signal.SIGSTOP)
        assert wait_until(lambda: in_syscall(looper.pid), timeout=20), "caller not in ioctl"
        time.sleep(0.3)
        assert looper.poll() is None and in_syscall(looper.pid)
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        result = looper_result(looper)
    finally:
        looper.kill()
    observe(f"pfd SIGKILLed with a caller inside an ioctl (pfd SIGSTOPped first): first error "
            f"{result['first']}, next call {result['next']}")
    assert result["first"] == "ECONNABORTED", result
    assert result["next"] in ("ENOTCONN", "ECONNABORTED"), result
    assert result["calls"] >= 1
    assert wait_until(lambda: node() is None, timeout=20), "the node outlived its daemon"
    assert not os.path.exists("/sys/class/cuse/pf")
    assert restarted_daemon_serves().stop() == 0


def test_sigkill_under_a_free_running_caller():
    """No SIGSTOP: the kill lands wherever the caller is; its first failure is ECONNABORTED
    (in flight) or ENOTCONN (between calls), never a hang or a wrong answer."""
    daemon = Daemon().wait_ready()
    looper = start_looper()
    try:
        time.sleep(1.0)
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        result = looper_result(looper)
    finally:
        looper.kill()
    assert result["first"] in ("ECONNABORTED", "ENOTCONN"), result
    assert result["next"] in ("ENOTCONN", "ECONNABORTED"), result
    observe(f"pfd SIGKILLed under a free-running caller (after {result['calls']} calls of "
            f"224,000 bytes): first error {result['first']}, next call {result['next']}")
    assert wait_until(lambda: node() is None, timeout=20)
    with pytest.raises(FileNotFoundError):
        os.open(DEVICE, os.O_RDONLY)


def test_caller_killed_while_pfd_holds_its_request():
    """The reverse: pfd stopped with a caller inside an ioctl, the caller SIGKILLed. Once pfd
    continues it answers (or finds the request withdrawn), the caller is gone, and pfd serves
    the next caller; its per-fd state was released."""
    daemon = Daemon().wait_ready()
    looper = start_looper()
    try:
        os.kill(daemon.pid, signal.SIGSTOP)
        assert wait_until(lambda: in_syscall(looper.pid), timeout=20)
        os.kill(looper.pid, signal.SIGKILL)
        # A request pfd has not read yet is withdrawn and the caller dies at once; one it has
        # read keeps the caller until the reply (fs/fuse/dev.c request_wait_answer).
        died_while_stopped = wait_until(lambda: looper.poll() is not None, timeout=3)
        os.kill(daemon.pid, signal.SIGCONT)
        assert looper.wait(30) == -signal.SIGKILL
        observe("caller SIGKILLed inside an ioctl while pfd was stopped: it died "
                + ("at once (request withdrawn)" if died_while_stopped
                   else "only after pfd continued and answered"))
        with PfDevice(DEVICE) as pf:
            pf.start()
            assert pf.status().running == 1
            pf.stop()
        assert daemon.alive()
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
        looper.kill()
        assert daemon.stop() == 0, daemon.output()
    assert "Traceback" not in daemon.output(), daemon.output()
    assert node() is None
