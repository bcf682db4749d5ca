"""The device front in FUSE-file mode, for real: a daemon subprocess serving tests/front_dispatcher.py
on a FUSE file in a temporary directory, driven by Python and by a compiled C client."""

import ctypes
import errno
import fcntl
import grp
import os
import pwd
import signal
import stat
import struct
import subprocess
import time

import pytest

from front_dispatcher import (BSD_START, BUF, BUF_FMT, CRASH, ECHO, ECHO_SIZE, FAIL, INFO,
                              INFO_FMT)
from front_util import (Daemon, build_client, fuse_mounted, ioctl, make_device_dir,
                        remove_device_dir, wait_for)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="needs root and /dev/fuse")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return build_client(str(tmp_path_factory.mktemp("front-client")))


@pytest.fixture
def device():
    directory = make_device_dir()
    yield os.path.join(directory, "pf")
    remove_device_dir(directory)


@pytest.fixture
def start_daemon(device):
    started = []

    def start(*args, path=device, ready=True):
        daemon = Daemon(path, *args)
        started.append(daemon)
        return daemon.wait_ready() if ready else daemon

    yield start
    for daemon in started:
        daemon.cleanup()


@pytest.fixture
def daemon(start_daemon):
    return start_daemon()


def info(device):
    fd = os.open(device, os.O_RDONLY)
    try:
        return struct.unpack(INFO_FMT, ioctl(fd, INFO, bytes(32)))
    finally:
        os.close(fd)


def releases(device):
    return info(device)[3]


def test_ioctl_round_trip_python(daemon, device):
    fd = os.open(device, os.O_RDWR)
    try:
        data = bytes(range(256)) + bytes(range(160))
        assert ioctl(fd, ECHO, data) == bytes(b ^ 0xFF for b in data)
    finally:
        os.close(fd)


def test_ioctl_round_trip_c_client(daemon, device, client):
    subprocess.run([client, "echo", device], check=True, timeout=10)


def test_bsd_io_number_arrives_without_data(daemon, device, client):
    subprocess.run([client, "start", device], check=True, timeout=10)
    fd = os.open(device, os.O_RDWR)
    try:
        assert fcntl.ioctl(fd, BSD_START, 0) == 0
    finally:
        os.close(fd)
    assert info(device)[4] == 2


def test_errno_propagates(daemon, device):
    fd = os.open(device, os.O_RDWR)
    try:
        with pytest.raises(OSError) as exc:
            ioctl(fd, FAIL, struct.pack("<ii", errno.EBUSY, 0))
        assert exc.value.errno == errno.EBUSY
        with pytest.raises(OSError) as exc:
            ioctl(fd, ECHO + 0x10, bytes(ECHO_SIZE))     # a command the dispatcher does not know
        assert exc.value.errno == errno.ENODEV
    finally:
        os.close(fd)


def test_exception_in_handler_gives_eio_and_daemon_goes_on(daemon, device):
    fd = os.open(device, os.O_RDWR)
    try:
        with pytest.raises(OSError) as exc:
            ioctl(fd, CRASH, bytes(8))
        assert exc.value.errno == errno.EIO
        assert ioctl(fd, ECHO, bytes(ECHO_SIZE)) == b"\xff" * ECHO_SIZE
    finally:
        os.close(fd)
    log = daemon.log()
    assert "RuntimeError: handler bug" in log and "Traceback" in log


def test_embedded_buffer_beyond_128k_through_process_vm(daemon, device):
    size = 300 * 1024
    cbuf = (ctypes.c_ubyte * size)(*[i % 251 for i in range(size)])
    fd = os.open(device, os.O_RDWR)
    try:
        out = ioctl(fd, BUF, struct.pack(BUF_FMT, ctypes.addressof(cbuf), size, 0))
    finally:
        os.close(fd)
    assert struct.unpack(BUF_FMT, out)[2] == sum(i % 251 for i in range(size))
    assert bytes(cbuf) == bytes((i % 251 + 1) & 0xFF for i in range(size))


@pytest.mark.parametrize("address", [0, 0xDEAD0000, 0x7FFFFFFFF000])
def test_bad_embedded_pointer_is_efault(daemon, device, address):
    fd = os.open(device, os.O_RDWR)
    try:
        with pytest.raises(OSError) as exc:
            ioctl(fd, BUF, struct.pack(BUF_FMT, address, 64, 0))
        assert exc.value.errno == errno.EFAULT
    finally:
        os.close(fd)


@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_WRONLY, os.O_RDWR])
def test_open_mode_reaches_dispatcher_and_close_releases(daemon, device, flags):
    before = releases(device)
    fd = os.open(device, flags)
    accmode = struct.unpack(INFO_FMT, ioctl(fd, INFO, bytes(32)))[0]
    os.close(fd)
    assert accmode == flags
    assert wait_for(lambda: releases(device) == before + 2)   # ours and the one info() opened


def test_open_refused_by_the_dispatcher(daemon, device):
    with pytest.raises(OSError) as exc:
        os.open(device, os.O_RDWR | os.O_APPEND)
    assert exc.value.errno == errno.EPERM


def test_open_with_o_trunc_and_read_write_enodev(daemon, device):
    fd = os.open(device, os.O_RDWR | os.O_TRUNC)
    try:
        for call in (lambda: os.read(fd, 16), lambda: os.write(fd, b"x")):
            with pytest.raises(OSError) as exc:
                call()
            assert exc.value.errno == errno.ENODEV
    finally:
        os.close(fd)


def test_killed_client_releases_its_fd(daemon, device, client):
    holder = subprocess.Popen([client, "hold", device], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "open"
    before = releases(device)
    holder.kill()
    holder.wait(5)
    holder.stdout.close()
    assert wait_for(lambda: releases(device) >= before + 2)


def test_client_killed_while_handler_blocked(daemon, device, client):
    slow = subprocess.Popen([client, "slow", device, "1500"], stdout=subprocess.PIPE, text=True)
    assert slow.stdout.readline().strip() == "calling"
    time.sleep(0.3)                         # the daemon is now sleeping in the handler
    slow.send_signal(signal.SIGKILL)
    slow.wait(10)                           # the kernel holds it until the daemon replies
    slow.stdout.close()
    assert slow.returncode == -signal.SIGKILL
    subprocess.run([client, "echo", device], check=True, timeout=10)
    assert daemon.proc.poll() is None


def test_32_concurrent_clients(daemon, device, client):
    clients = [subprocess.Popen([client, "hammer", device, "300"]) for _ in range(32)]
    assert [c.wait(120) for c in clients] == [0] * 32


def test_sigterm_removes_mount_and_created_node(daemon, device):
    assert fuse_mounted(device)
    assert daemon.terminate() == 0
    assert not fuse_mounted(device)
    assert not os.path.exists(device)


def test_sigterm_keeps_a_node_it_did_not_create(start_daemon, device):
    open(device, "w").close()
    daemon = start_daemon()
    assert daemon.terminate() == 0
    assert not fuse_mounted(device)
    assert os.path.exists(device)


def test_sigterm_while_clients_hold_the_device_open(daemon, device, client):
    holder = subprocess.Popen([client, "hold", device], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert daemon.terminate() == 0
        assert not fuse_mounted(device)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_restart_after_kill9_cleans_stale_mount(start_daemon, device, client):
    first = start_daemon()
    first.kill()
    with pytest.raises(OSError) as exc:
        os.stat(device)
    assert exc.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    second = start_daemon()
    assert "stale FUSE mount" in second.log()
    subprocess.run([client, "echo", device], check=True, timeout=10)
    assert second.terminate() == 0
    assert not fuse_mounted(device) and not os.path.exists(device)


def test_second_daemon_on_a_live_path_refuses(daemon, device, start_daemon, client):
    second = start_daemon(ready=False)
    assert second.proc.wait(15) == 1
    assert f"{device} is already served by another pfd (pid {daemon.proc.pid})" in second.log()
    subprocess.run([client, "echo", device], check=True, timeout=10)   # the first one is unharmed


def test_perm_group_and_chmod(start_daemon, device):
    start_daemon("--perm", "640", "--group", "daemon")
    st = os.stat(device)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_gid == grp.getgrnam("daemon").gr_gid
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = pwd.getpwnam("nobody").pw_gid

    def open_as_nobody():
        # /bin/sh opens the node read-write; "Permission denied" if the kernel refused
        res = subprocess.run(["/bin/sh", "-c", 'exec 3<>"$1" && echo ok', "sh", device],
                             capture_output=True, text=True, user=nobody, group=nogroup,
                             timeout=10)
        return "ok" if res.stdout.strip() == "ok" else res.stderr

    assert "Permission denied" in open_as_nobody()
    os.chmod(device, 0o666)
    assert stat.S_IMODE(os.stat(device).st_mode) == 0o666
    assert open_as_nobody() == "ok"
