"""In the CUSE guest: /dev/pf as a real character device — mode selection, the node, who may
open it. Runs first: its first test finds cuse not yet loaded and lets pfd load it."""
import os
import signal
import stat
import subprocess

import pytest

from guest_util import (ALICE, BOB, DEVICE, PFUSERS, Daemon, cuse_loaded, in_guest, node, observe,
                        probe_open)
from pfkern.client import PfDevice

pytestmark = pytest.mark.skipif(not in_guest(), reason="runs only in the CUSE guest")

FREEBSD_TIMEOUTS = [120, 30, 86400, 900, 45, 90, 60, 30, 60, 20, 10, 60, 30, 60, 30, 10, 60000,
                    120000, 0, 30]
FREEBSD_LIMITS = [100000, 10000, 5000, 200000]


def sysfs_dev(name="pf"):
    with open(f"/sys/class/cuse/{name}/dev") as f:
        major, minor = f.read().split(":")
    return os.makedev(int(major), int(minor))


def test_auto_mode_loads_cuse_and_serves_a_root_only_character_device():
    assert not cuse_loaded() and not os.path.exists("/dev/cuse"), \
        "cuse already loaded: this test must run first"
    daemon = Daemon(mode="auto").wait_ready()
    try:
        assert f"serving {DEVICE} as a CUSE character device" in daemon.output()
        assert cuse_loaded()                            # pfd ran `modprobe cuse` itself
        st = os.stat("/dev/cuse")
        assert stat.S_ISCHR(st.st_mode)
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (10, 203)     # misc, CUSE_MINOR
        res = subprocess.run(["modprobe", "cuse"], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr          # loading it again is harmless

        st = node()
        assert stat.S_ISCHR(st.st_mode), oct(st.st_mode)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)
        assert st.st_rdev == sysfs_dev()                # devtmpfs node of the CUSE device
        observe(f"--mode auto: pfd loaded cuse itself; /dev/pf is char {os.major(st.st_rdev)}:"
                f"{os.minor(st.st_rdev)} (dynamic major), root:root 0600")
        with open("/proc/mounts") as f:
            assert DEVICE not in f.read()               # no FUSE mount anywhere near it

        with PfDevice(DEVICE, "r") as pf:               # a fresh daemon: FreeBSD's defaults
            assert pf.status().hostid != 0
            assert [pf.get_timeout(i) for i in range(20)] == FREEBSD_TIMEOUTS
            assert [pf.get_limit(i) for i in range(4)] == FREEBSD_LIMITS
        # mode 0600 keeps everybody but root out, members of any group included
        assert probe_open(BOB, groups=[BOB]) == {"r": "EACCES", "rw": "EACCES"}
        assert probe_open(ALICE, groups=[ALICE, PFUSERS]) == {"r": "EACCES", "rw": "EACCES"}
    finally:
        assert daemon.stop(signal.SIGTERM) == 0, daemon.output()
    assert node() is None                               # the device goes with the daemon
    assert not os.path.exists("/sys/class/cuse/pf")
    assert "stopped" in daemon.output()


def test_group_and_perm_let_members_of_the_group_in():
    daemon = Daemon("--group", "pfusers", "--perm", "0660").wait_ready()
    try:
        st = node()
        assert stat.S_ISCHR(st.st_mode)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, PFUSERS, 0o660)
        # alice is in pfusers (/etc/group): she may open it; read-only fds still cannot start pf
        alice = probe_open(ALICE, groups=os.getgrouplist("alice", ALICE))
        assert alice == {"r": "ok", "ro-start": "EACCES", "rw": "ok", "status": "running=0"}
        # bob is not: refused by the node's mode before pfd hears of it
        assert probe_open(BOB, groups=os.getgrouplist("bob", BOB)) == \
            {"r": "EACCES", "rw": "EACCES"}
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert node() is None
