"""pfd's lifecycle as a service manager sees it: clean stop, restart after a crash, one daemon
per path."""
import os
import signal
import subprocess
import sys

from conftest import REPO, Pfd, is_mounted
from pfkern.client import PfDevice


def test_sigterm_leaves_no_mount_and_no_node(tmpdir_pf):
    path = os.path.join(tmpdir_pf, "pf")
    daemon = Pfd(path).wait_ready()
    assert is_mounted(path)
    assert daemon.stop(signal.SIGTERM) == 0
    assert not is_mounted(path)
    assert not os.path.exists(path)
    assert "stopped" in daemon.output()


def test_sigint_stops_cleanly(tmpdir_pf):
    path = os.path.join(tmpdir_pf, "pf")
    daemon = Pfd(path).wait_ready()
    assert daemon.stop(signal.SIGINT) == 0
    assert not is_mounted(path) and not os.path.exists(path)


def test_restart_after_kill_9(tmpdir_pf):
    path = os.path.join(tmpdir_pf, "pf")
    first = Pfd(path).wait_ready()
    first.stop(signal.SIGKILL)
    second = Pfd(path).wait_ready()
    try:
        with PfDevice(path, "r") as d:
            assert d.status().hostid != 0
    finally:
        assert second.stop() == 0
    assert not is_mounted(path)


def test_second_daemon_on_a_served_path_refuses(tmpdir_pf):
    path = os.path.join(tmpdir_pf, "pf")
    first = Pfd(path).wait_ready()
    try:
        res = subprocess.run([sys.executable, "-m", "pfkern.pfd", "--device", path, "--mode", "fuse"],
                             capture_output=True, text=True, timeout=30, cwd=REPO)
        assert res.returncode == 1
        assert path in res.stderr and "already" in res.stderr.lower(), res.stderr
        with PfDevice(path, "r") as d:               # the first one is unharmed
            d.status()
    finally:
        assert first.stop() == 0


def test_bad_command_line_is_refused():
    res = subprocess.run([sys.executable, "-m", "pfkern.pfd", "--perm", "9z"], capture_output=True,
                         text=True, cwd=REPO)
    assert res.returncode == 2 and "--perm" in res.stderr
