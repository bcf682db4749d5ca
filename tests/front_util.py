"""Helpers shared by the device-front tests: the daemon subprocess, the compiled C client, ioctls."""

import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DAEMON = os.path.join(HERE, "front_daemon.py")
CLIENT_SOURCE = os.path.join(HERE, "front_client.c")


def fuse_mounted(path):
    from cuse.front import _mount_types_at
    return bool(_mount_types_at(path))


def build_client(directory):
    """Compile tests/front_client.c; returns the binary's path."""
    binary = os.path.join(directory, "front_client")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", binary, CLIENT_SOURCE], check=True)
    return binary


def ioctl(fd, cmd, data):
    """ioctl with a mutable copy of `data`; returns the buffer as the kernel left it."""
    buf = bytearray(data)
    fcntl.ioctl(fd, cmd, buf, True)
    return bytes(buf)


class Daemon:
    """tests/front_daemon.py in a subprocess; stderr goes to a log file the test can read."""

    def __init__(self, device, *args):
        self.device = device
        self.log_path = tempfile.mktemp(prefix="front-daemon-", suffix=".log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, DAEMON, device, *args],
                                     stdout=subprocess.PIPE, stderr=self.log_file, text=True)

    def wait_ready(self, timeout=15):
        line = self.readline(timeout)
        if line != "READY":
            raise AssertionError(f"daemon not ready ({line!r}); log:\n{self.log()}")
        return self

    def readline(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if ready else None

    def log(self):
        self.log_file.flush()
        with open(self.log_path) as f:
            return f.read()

    def terminate(self, timeout=10):
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def cleanup(self):
        try:
            self.terminate(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc.stdout.close()
        self.log_file.close()
        os.unlink(self.log_path)


def wait_for(predicate, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def make_device_dir():
    directory = tempfile.mkdtemp(prefix="pftest-", dir="/tmp")
    os.chmod(directory, 0o755)          # other users must reach the node (permission tests)
    return directory


def remove_device_dir(directory):
    from cuse import _fuse
    device = os.path.join(directory, "pf")
    while fuse_mounted(device):             # a failed test may have left the mount
        _fuse.lazy_unmount(device)
    shutil.rmtree(directory, ignore_errors=True)
