"""In the CUSE guest: the spine's ioctl tests (tests/test_ioctl.py) and the seed programs
(tests/test_seeds.py), re-run unchanged against pfd serving the real character device /dev/pf,
plus what only CUSE has: the retry protocol's 128 KiB limit, bad pointers on either path,
interleaved callers, callers interrupted by signals, a second device beside /dev/pf.

The test functions are imported from the host modules; this module supplies the fixtures they
ask for (`module_pfd`, `pfd`: one CUSE daemon on /dev/pf) and the C programs the host compiled
(the guest has no compiler)."""
import ctypes
import errno
import fcntl
import os
import signal
import subprocess
import threading

import pytest

import guest_util
from guest_util import CUSE_IOCTL_MAX, DEVICE, Daemon, in_guest, is_char_device

import test_ioctl
import test_seeds
from pfkern.client import DIOCGETSTATUS, DIOCIGETIFACES, PfDevice, pf_status, pfi_kif, pfioc_iface

# The spine's tests, as they are (test_default_timeouts_and_limits starts its own FUSE-file
# daemon; guest_device.py checks the defaults of a fresh CUSE daemon instead).
from conftest import dev, rodev  # noqa: F401  (the spine's fixtures, on module_pfd below)
from test_ioctl import (  # noqa: F401  (collected by pytest from this module)
    test_start_stop_and_their_errnos, test_bsd_encoded_io_commands_work, test_status_fields,
    test_clear_status_resets_since, test_set_debug, test_set_hostid,
    test_set_timeout_returns_old_value, test_interval_zero_becomes_one,
    test_bad_timeouts_are_einval_and_change_nothing, test_limits, test_status_interface_counters,
    test_natlook_validation_einval, test_natlook_without_states_is_enoent,
    test_readonly_fd_gets_eacces_outside_the_list, test_unknown_command_is_enodev,
    test_altq_probe_is_enodev_even_read_only, test_igetifaces_freebsd12_lists_interfaces_and_groups,
    test_igetifaces_count_quirk, test_igetifaces_filter, test_igetifaces_large_buffer_over_128k,
    test_igetifaces_wrong_esize_is_enodev, test_igetifaces_bad_size_is_einval,
    test_igetifaces_openbsd37_generation, test_iclristats_openbsd37, test_c_client_round_trips,
)
from test_seeds import (  # noqa: F401
    test_natlook_example_usage, test_interface_statistics_program_lists_every_host_interface,
    test_interface_statistics_program_filters_by_name,
)

pytestmark = pytest.mark.skipif(not in_guest(), reason="runs only in the CUSE guest")

# No compiler in the guest: the host compiled the same source texts.
test_ioctl.compile_c = guest_util.prebuilt
test_seeds.compile_c = guest_util.prebuilt


@pytest.fixture(scope="module")
def module_pfd():
    daemon = Daemon().wait_ready()
    daemon.path = DEVICE
    assert is_char_device()
    yield daemon
    alive = daemon.alive()
    assert daemon.stop() == 0, daemon.output()
    assert alive, "pfd died during the module:\n" + daemon.output()


@pytest.fixture
def pfd(module_pfd):
    return module_pfd


# --- the seed example that opens /dev/pf itself ------------------------------------------------

def test_natlook_example_reports_no_state(module_pfd, tmp_path):
    """pf(4)'s DIOCNATLOOK example, compiled unchanged, run against the CUSE /dev/pf."""
    from seeds import natlook_example
    binary = guest_util.prebuilt(natlook_example(), str(tmp_path), "natlook")
    res = subprocess.run([binary, "192.0.2.1", "8080", "198.51.100.7", "4321"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1, res
    assert res.stderr.strip().endswith("DIOCNATLOOK: No such file or directory"), res.stderr
    assert "internal host" not in res.stdout


# --- CUSE only: the retry protocol and its limit -----------------------------------------------

def kif_buffer(n, fill=0xAA):
    buf = (pfi_kif * n)()
    ctypes.memset(buf, fill, ctypes.sizeof(buf))
    io = pfioc_iface(pfiio_buffer=ctypes.addressof(buf), pfiio_esize=224, pfiio_size=n)
    return io, buf


def retry_limit_entries():
    """The most pfi_kif entries that still travel through CUSE's retry protocol: the top-level
    pfioc_iface and the buffer together within 32 pages per direction."""
    return (CUSE_IOCTL_MAX - ctypes.sizeof(pfioc_iface)) // ctypes.sizeof(pfi_kif)


@pytest.mark.parametrize("extra", [-1, 0, 1, 2])
def test_embedded_buffer_on_both_sides_of_the_128k_limit(rodev, extra):
    """Up to the limit the buffer comes and goes through FUSE_IOCTL_RETRY; one entry more and
    the kernel would refuse (ENOMEM), so the front must switch to process_vm_writev."""
    n = retry_limit_entries() + extra
    total = len(rodev.interfaces())
    io, buf = kif_buffer(n)
    rodev.ioctl(DIOCIGETIFACES, io)
    assert io.pfiio_size == total
    raw = ctypes.string_at(ctypes.addressof(buf), ctypes.sizeof(buf))
    assert raw[total * 224:] == bytes(len(raw) - total * 224)
    assert [bytes(buf[i].pfik_name).rstrip(b"\0") for i in range(total)] == \
        [bytes(k.pfik_name).rstrip(b"\0") for k in rodev.interfaces()]


@pytest.mark.parametrize("n", [4, 1000])
def test_bad_embedded_pointer_is_efault_and_the_struct_unchanged(rodev, n):
    """A buffer pointer into unmapped memory: through retry (4 entries) the kernel's copy fails,
    through process_vm (1000 entries, beyond 128 KiB) the daemon's; the caller sees EFAULT."""
    io = pfioc_iface(pfiio_buffer=0x10, pfiio_esize=224, pfiio_size=n)
    with pytest.raises(OSError) as info:
        rodev.ioctl(DIOCIGETIFACES, io)
    assert info.value.errno == errno.EFAULT
    assert io.pfiio_size == n
    rodev.status()                                      # and pfd is fine


def test_bad_top_level_pointer_is_efault(module_pfd):
    fd = os.open(DEVICE, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.ioctl(fd, ctypes.c_ulong(DIOCGETSTATUS), ctypes.c_void_p(0x10)) == -1
        assert ctypes.get_errno() == errno.EFAULT
        st = pf_status()
        fcntl.ioctl(fd, DIOCGETSTATUS, memoryview(st).cast("B"), True)
        assert st.hostid != 0
    finally:
        os.close(fd)


def test_concurrent_callers_each_get_their_own_answer(module_pfd):
    """Threads of one process (distinct tids) and several fds interleave retry rounds and
    process_vm transfers on the single request loop."""
    errors = []

    def worker(n):
        try:
            with PfDevice(DEVICE, "r") as pf:
                for _ in range(15):
                    io, buf = kif_buffer(n)
                    pf.ioctl(DIOCIGETIFACES, io)
                    assert bytes(buf[0].pfik_name).rstrip(b"\0") == b"all"
                    assert pf.status().hostid != 0
        except BaseException as exc:        # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in (8, 300, 700, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def _signalled_caller(out):
    """Loops ioctls (struct only; struct + retried buffer; struct + process_vm buffer) through
    libc directly (no EINTR retry as in fcntl.ioctl) under a 1 ms SIGALRM timer: every signal
    landing inside an ioctl makes the kernel send FUSE_INTERRUPT to pfd."""
    import signal as sig
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(DEVICE, os.O_RDONLY)
    alarms = [0]
    sig.signal(sig.SIGALRM, lambda *a: alarms.__setitem__(0, alarms[0] + 1))
    sig.setitimer(sig.ITIMER_REAL, 0.001, 0.001)
    errors = {}
    calls = 0
    for n in (8, 1000) * 60:
        st = pf_status()
        io, buf = kif_buffer(n)
        for cmd, arg in ((DIOCGETSTATUS, st), (DIOCIGETIFACES, io)):
            calls += 1
            if libc.ioctl(fd, ctypes.c_ulong(cmd), ctypes.byref(arg)) == -1:
                name = errno.errorcode[ctypes.get_errno()]
                errors[name] = errors.get(name, 0) + 1
        if bytes(buf[0].pfik_name).rstrip(b"\0") != b"all" or st.hostid == 0:
            errors["wrong-answer"] = errors.get("wrong-answer", 0) + 1
    sig.setitimer(sig.ITIMER_REAL, 0, 0)
    out.write(f"calls={calls} alarms={alarms[0]} errors={errors}\n")


def test_callers_interrupted_by_signals_get_complete_answers(module_pfd):
    """Signals do not cut CUSE ioctls short: pfd answers every request in full (it does not act
    on FUSE_INTERRUPT), so no EINTR and no half-written buffer reach the caller."""
    report = guest_util.Child(_signalled_caller).output(timeout=180).strip()
    guest_util.observe(f"1 ms SIGALRM timer in a caller looping ioctls: {report}")
    fields = dict(item.split("=", 1) for item in report.split(" ", 2))
    assert fields["errors"] == "{}", report
    assert int(fields["alarms"]) > 0, report
    with PfDevice(DEVICE, "r") as pf:
        assert pf.status().hostid != 0


def test_second_device_then_sigterm_with_an_open_fd(module_pfd):
    """A second daemon serves a second character device (/dev/pf-two) beside /dev/pf, with its
    own state. Stopped (SIGTERM) while a caller holds it open, it exits cleanly and its node
    goes; the caller's later ioctls fail, its close works; /dev/pf is unaffected."""
    two = "/dev/pf-two"
    daemon = Daemon(device=two).wait_ready()
    fd = os.open(two, os.O_RDWR)
    try:
        assert is_char_device(two) and os.stat(two).st_rdev != os.stat(DEVICE).st_rdev
        with PfDevice(DEVICE) as a, PfDevice(two) as b:
            if a.status().running:
                a.stop()
            b.start()
            assert b.status().running == 1 and a.status().running == 0
        st = pf_status()
        fcntl.ioctl(fd, DIOCGETSTATUS, memoryview(st).cast("B"), True)
        assert daemon.stop(signal.SIGTERM) == 0, daemon.output()
        assert not os.path.exists(two)
        with pytest.raises(OSError) as info:
            fcntl.ioctl(fd, DIOCGETSTATUS, memoryview(st).cast("B"), True)
        assert info.value.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.ENODEV), \
            info.value
        guest_util.observe("SIGTERM with an fd open: pfd exits 0, node removed; a later ioctl on "
                           f"that fd: {errno.errorcode[info.value.errno]}")
    finally:
        os.close(fd)
        if daemon.alive():
            daemon.stop(signal.SIGKILL)
    with PfDevice(DEVICE, "r") as a:
        assert a.status().hostid != 0
