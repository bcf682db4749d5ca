"""The spine's ioctls through the ctypes client and through C, against a live pfd (FreeBSD 12.1
semantics and errnos, pf-abi.md §1)."""
import ctypes
import errno
import fcntl
import os
import socket
import subprocess
import time

import pytest

from conftest import compile_c, errno_of
from pfkern.client import (AF_INET, AF_INET6, DIOCGETALTQSV1, DIOCGETSTATUS, DIOCIGETIFACES,
                           DIOCICLRISTATS, DIOCNATLOOK, DIOCSETTIMEOUT, DIOCSTART, DIOCSTART_BSD,
                           DIOCSTOP_BSD, PF_IN, PF_OUT, PFI_FLAG_GROUP, PFI_FLAG_INSTANCE, PfDevice,
                           pf_status, pfi_if, pfi_kif, pfioc_iface, pfioc_natlook, pfioc_tm)

IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP = 6, 17, 1
FREEBSD_TIMEOUTS = [120, 30, 86400, 900, 45, 90, 60, 30, 60, 20, 10, 60, 30, 60, 30, 10, 60000, 120000, 0, 30]
FREEBSD_LIMITS = [100000, 10000, 5000, 200000]




def ensure_stopped(dev):
    if dev.status().running:
        dev.stop()


# --- start / stop / status -------------------------------------------------------------------

def test_start_stop_and_their_errnos(dev):
    ensure_stopped(dev)
    before = int(time.time())
    dev.start()
    st = dev.status()
    assert st.running == 1 and st.since >= before
    assert errno_of(dev.start) == errno.EEXIST
    dev.stop()
    assert dev.status().running == 0
    assert errno_of(dev.stop) == errno.ENOENT


def test_bsd_encoded_io_commands_work(module_pfd):
    ensure_stopped(PfDevice(module_pfd.path))
    fd = os.open(module_pfd.path, os.O_RDWR)
    try:
        assert DIOCSTART_BSD == 0x20004401
        fcntl.ioctl(fd, DIOCSTART_BSD, 0)
        with PfDevice(module_pfd.path, "r") as d:
            assert d.status().running == 1
        fcntl.ioctl(fd, DIOCSTOP_BSD, 0)
        with pytest.raises(OSError) as info:
            fcntl.ioctl(fd, DIOCSTOP_BSD, 0)
        assert info.value.errno == errno.ENOENT
    finally:
        os.close(fd)


def test_status_fields(dev):
    st = dev.status()
    assert st.debug in (0, 1, 2, 3)
    assert st.hostid != 0
    assert 0 < st.since <= time.time() + 1
    assert st.states == 0 and st.src_nodes == 0


def test_clear_status_resets_since(dev):
    time.sleep(1.1)
    before = int(time.time())
    dev.clear_status()
    assert dev.status().since >= before


def test_set_debug(dev):
    for level in (3, 0, 1):
        dev.set_debug(level)
        assert dev.status().debug == level


def test_set_hostid(dev):
    dev.set_hostid(0x12345678)
    assert socket.ntohl(dev.status().hostid) == 0x12345678
    dev.set_hostid(0)               # 0: pf picks a random, non-zero one
    assert dev.status().hostid not in (0, socket.htonl(0x12345678))


# --- timeouts and limits ---------------------------------------------------------------------

def test_default_timeouts_and_limits(tmpdir_pf):
    from conftest import Pfd
    daemon = Pfd(os.path.join(tmpdir_pf, "pf")).wait_ready()
    try:
        with PfDevice(daemon.path, "r") as d:
            assert [d.get_timeout(i) for i in range(20)] == FREEBSD_TIMEOUTS
            assert [d.get_limit(i) for i in range(4)] == FREEBSD_LIMITS
    finally:
        daemon.stop()


def test_set_timeout_returns_old_value(dev):
    old = dev.get_timeout(2)
    assert dev.set_timeout(2, 3600) == old
    assert dev.get_timeout(2) == 3600
    assert dev.set_timeout(2, old) == 3600


def test_interval_zero_becomes_one(dev):
    old = dev.set_timeout(15, 0)
    assert dev.get_timeout(15) == 1
    dev.set_timeout(15, old)


@pytest.mark.parametrize("index,seconds", [(-1, 10), (20, 10), (1 << 20, 10), (2, -1)])
def test_bad_timeouts_are_einval_and_change_nothing(dev, index, seconds):
    before = [dev.get_timeout(i) for i in range(20)]
    tm = pfioc_tm(timeout=index, seconds=seconds)
    assert errno_of(dev.ioctl, DIOCSETTIMEOUT, tm) == errno.EINVAL
    assert (tm.timeout, tm.seconds) == (index, seconds)       # output only on success
    assert [dev.get_timeout(i) for i in range(20)] == before
    if index != 2:
        assert errno_of(dev.get_timeout, index) == errno.EINVAL


def test_limits(dev):
    old = dev.get_limit(0)
    assert dev.set_limit(0, 5000) == old
    assert dev.get_limit(0) == 5000
    assert dev.set_limit(0, 0xffffffff) == 5000             # "unlimited" is UINT_MAX
    assert dev.get_limit(0) == 0xffffffff
    dev.set_limit(0, old)
    for bad in (-1, 4, 100):
        assert errno_of(dev.get_limit, bad) == errno.EINVAL
        assert errno_of(dev.set_limit, bad, 1) == errno.EINVAL


# --- loginterface ----------------------------------------------------------------------------

def test_status_interface_counters(dev):
    """pcounters/bcounters are the loginterface's; with none set they keep the caller's bytes."""
    dev.set_status_interface("")
    st = pf_status()
    ctypes.memset(ctypes.addressof(st), 0xAB, ctypes.sizeof(st))
    dev.ioctl(DIOCGETSTATUS, st)
    assert bytes(st.ifname).rstrip(b"\0") == b""
    assert all(v == 0xABABABABABABABAB for v in st.pcounters[0][0])
    dev.set_status_interface("lo")
    ctypes.memset(ctypes.addressof(st), 0xAB, ctypes.sizeof(st))
    dev.ioctl(DIOCGETSTATUS, st)
    assert bytes(st.ifname).rstrip(b"\0") == b"lo"
    assert [st.pcounters[a][d][k] for a in range(2) for d in range(2) for k in range(2)] == [0] * 8
    assert [st.bcounters[a][d] for a in range(2) for d in range(2)] == [0] * 4
    dev.set_status_interface("nosuch0")                       # FreeBSD 12: no existence check
    assert bytes(dev.status().ifname).rstrip(b"\0") == b"nosuch0"
    dev.set_status_interface("")


# --- DIOCNATLOOK -----------------------------------------------------------------------------

def natlook_struct(af=AF_INET, proto=IPPROTO_TCP, s="10.0.0.1", sport=1234, d="10.0.0.2", dport=80,
                   direction=PF_OUT):
    import ipaddress
    nl = pfioc_natlook(af=af, proto=proto, direction=direction,
                       sport=socket.htons(sport), dport=socket.htons(dport))
    nl.saddr.set(ipaddress.ip_address(s))
    nl.daddr.set(ipaddress.ip_address(d))
    ctypes.memset(ctypes.addressof(nl.rsaddr), 0x5A, 32)
    return nl


@pytest.mark.parametrize("kw", [
    dict(proto=0),
    dict(s="0.0.0.0"),
    dict(d="0.0.0.0"),
    dict(sport=0),
    dict(dport=0, proto=IPPROTO_UDP),
    dict(af=AF_INET6, s="::", d="2001:db8::1"),
    dict(direction=3),
    dict(direction=255),
])
def test_natlook_validation_einval(rodev, kw):
    nl = natlook_struct(**kw)
    before = nl.to_bytes()
    assert errno_of(rodev.ioctl, DIOCNATLOOK, nl) == errno.EINVAL
    assert nl.to_bytes() == before


@pytest.mark.parametrize("kw", [
    dict(),
    dict(direction=PF_IN),
    dict(direction=0),
    dict(proto=IPPROTO_ICMP, sport=0, dport=0),       # ports matter only for TCP/UDP
    dict(af=AF_INET6, s="2001:db8::1", d="2001:db8::2"),
    dict(af=28, s="2001:db8::1", d="2001:db8::2"),   # FreeBSD's AF_INET6 accepted
])
def test_natlook_without_states_is_enoent(rodev, kw):
    nl = natlook_struct(**kw)
    assert errno_of(rodev.ioctl, DIOCNATLOOK, nl) == errno.ENOENT
    assert errno_of(rodev.natlook, None, IPPROTO_TCP, "10.1.1.1", 1, "10.1.1.2", 2) == errno.ENOENT


# --- access, unknown commands, ALTQ ----------------------------------------------------------

def test_readonly_fd_gets_eacces_outside_the_list(rodev):
    assert errno_of(rodev.start) == errno.EACCES
    assert errno_of(rodev.set_debug, 1) == errno.EACCES
    assert errno_of(rodev.set_timeout, 2, 10) == errno.EACCES
    assert errno_of(rodev.ioctl, 0xc0044499, ctypes.c_uint32(0)) == errno.EACCES  # unknown, too
    rodev.status()
    rodev.get_timeout(0)
    rodev.get_limit(0)


def test_unknown_command_is_enodev(dev):
    assert errno_of(dev.ioctl, 0xc0044499, ctypes.c_uint32(0)) == errno.ENODEV
    assert errno_of(dev.ioctl, 0xc0084415, ctypes.c_uint64(0)) == errno.ENODEV   # known nr, wrong size
    fd = os.open(dev.path, os.O_RDWR)
    try:
        with pytest.raises(OSError) as info:
            fcntl.ioctl(fd, 0x000044ee, 0)
        assert info.value.errno == errno.ENODEV
    finally:
        os.close(fd)


def test_altq_probe_is_enodev_even_read_only(rodev, dev):
    from pfkern.client import pfioc_altq_v1
    for d in (rodev, dev):
        assert errno_of(d.ioctl, DIOCGETALTQSV1, pfioc_altq_v1()) == errno.ENODEV


# --- DIOCIGETIFACES --------------------------------------------------------------------------

def host_interfaces():
    return sorted(os.listdir("/sys/class/net"))


def getifaces(dev, esize, size, name=b"", flags=0, fill=0xAA):
    etype = pfi_kif if esize == 224 else pfi_if
    buf = (etype * max(size, 1))()
    ctypes.memset(buf, fill, ctypes.sizeof(buf))
    io = pfioc_iface(pfiio_name=name, pfiio_buffer=ctypes.addressof(buf), pfiio_esize=esize,
                     pfiio_size=size, pfiio_flags=flags)
    dev.ioctl(DIOCIGETIFACES, io)
    return io, buf


def test_igetifaces_freebsd12_lists_interfaces_and_groups(rodev):
    kifs = rodev.interfaces()
    names = [bytes(k.pfik_name).rstrip(b"\0").decode() for k in kifs]
    assert names == sorted(names, key=str.encode)
    for name in host_interfaces():
        assert name in names
    assert "all" in names
    by = dict(zip(names, kifs))
    for name in host_interfaces():
        assert by[name].pfik_ifp and not by[name].pfik_group     # pfctl's booleans
    assert by["all"].pfik_group and not by["all"].pfik_ifp
    assert all(k.pfik_tzero > 0 for k in kifs)


def test_igetifaces_count_quirk(rodev):
    total = len(rodev.interfaces())
    assert total > 2
    io, _ = getifaces(rodev, 224, 0)
    assert io.pfiio_size == 1                   # not the total: FreeBSD 12's quirk
    io, _ = getifaces(rodev, 224, 2)
    assert io.pfiio_size == 3
    io, _ = getifaces(rodev, 224, total)
    assert io.pfiio_size == total
    io, _ = getifaces(rodev, 224, total + 5)
    assert io.pfiio_size == total


def test_igetifaces_filter(rodev):
    assert [bytes(k.pfik_name).rstrip(b"\0") for k in rodev.interfaces("lo")] == [b"lo"]
    members = [bytes(k.pfik_name).rstrip(b"\0").decode() for k in rodev.interfaces("all")]
    assert members == sorted(["all", *host_interfaces()], key=str.encode)
    assert rodev.interfaces("nosuch0") == []


def test_igetifaces_large_buffer_over_128k(rodev):
    """An embedded buffer far beyond CUSE's 128 KiB: the whole pfiio_size × 224 bytes are copied
    out (entries, then a zeroed tail), as FreeBSD copies its whole kernel buffer."""
    size = 1000
    io, buf = getifaces(rodev, 224, size)
    n = io.pfiio_size
    assert n == len(rodev.interfaces())
    raw = ctypes.string_at(ctypes.addressof(buf), ctypes.sizeof(buf))
    assert len(raw) == 224000
    assert raw[n * 224:] == bytes(len(raw) - n * 224)
    assert bytes(buf[0].pfik_name).rstrip(b"\0") == b"all"


@pytest.mark.parametrize("esize", [0, 183, 185, 216, 223, 225, 232, -1])
def test_igetifaces_wrong_esize_is_enodev(rodev, esize):
    io = pfioc_iface(pfiio_esize=esize, pfiio_size=0)
    assert errno_of(rodev.ioctl, DIOCIGETIFACES, io) == errno.ENODEV


@pytest.mark.parametrize("size", [-1, 65536, 1 << 24, 1 << 30, -(1 << 31)])
def test_igetifaces_bad_size_is_einval(rodev, size):
    buf = ctypes.create_string_buffer(224)
    io = pfioc_iface(pfiio_buffer=ctypes.addressof(buf), pfiio_esize=224, pfiio_size=size)
    assert errno_of(rodev.ioctl, DIOCIGETIFACES, io) == errno.EINVAL
    assert io.pfiio_size == size


def test_igetifaces_openbsd37_generation(rodev):
    """esize 184: flags select instances/groups and the total count comes back."""
    io, _ = getifaces(rodev, 184, 0, flags=PFI_FLAG_INSTANCE)
    assert io.pfiio_size == len(host_interfaces())
    entries = rodev.interfaces(esize=184, flags=PFI_FLAG_INSTANCE)
    assert sorted(bytes(e.pfif_name).rstrip(b"\0").decode() for e in entries) == host_interfaces()
    assert all(e.pfif_flags & 0x2 for e in entries)            # PFI_IFLAG_INSTANCE
    groups = rodev.interfaces(esize=184, flags=PFI_FLAG_GROUP)
    assert "all" in [bytes(e.pfif_name).rstrip(b"\0").decode() for e in groups]
    assert all(e.pfif_flags & 0x1 for e in groups)             # PFI_IFLAG_GROUP
    io, _ = getifaces(rodev, 184, 10, flags=0)
    assert io.pfiio_size == 0
    assert errno_of(getifaces, rodev, 184, 1, b"", 4) == errno.EINVAL


def test_iclristats_openbsd37(dev):
    io = pfioc_iface(pfiio_name=b"lo", pfiio_esize=184, pfiio_flags=PFI_FLAG_INSTANCE)
    dev.ioctl(DIOCICLRISTATS, io)
    assert io.pfiio_nzero == 1


# --- the same through C ----------------------------------------------------------------------

C_CLIENT = r"""
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <net/pfvar.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dev;
#define TRY(name, cmd, arg) printf("%s %d\n", name, ioctl(dev, cmd, arg) == -1 ? errno : 0)

int main(int argc, char **argv)
{
	struct pf_status st;
	struct pfioc_tm tm;
	struct pfioc_limit lim;
	struct pfioc_natlook nl;
	struct pfioc_iface io;
	struct pfioc_if pi;
	struct pfi_kif kif[256];
	u_int32_t level = 2, hostid = htonl(0xfeedbeef);

	if ((dev = open(argv[1], O_RDWR)) == -1)
		return 2;
	ioctl(dev, DIOCSTOP);
	TRY("start", DIOCSTART, 0);
	TRY("start-again", DIOCSTART, 0);
	TRY("setdebug", DIOCSETDEBUG, &level);
	TRY("sethostid", DIOCSETHOSTID, &hostid);
	memset(&pi, 0, sizeof(pi));
	strlcpy(pi.ifname, "lo", sizeof(pi.ifname));
	TRY("setstatusif", DIOCSETSTATUSIF, &pi);
	memset(&st, 0, sizeof(st));
	TRY("getstatus", DIOCGETSTATUS, &st);
	printf("status running=%u debug=%u hostid=%08x ifname=%s\n", st.running, st.debug,
	    ntohl(st.hostid), st.ifname);
	TRY("clrstatus", DIOCCLRSTATUS, 0);
	tm.timeout = PFTM_TCP_ESTABLISHED; tm.seconds = 7200;
	TRY("settimeout", DIOCSETTIMEOUT, &tm);
	printf("old-timeout %d\n", tm.seconds);
	tm.timeout = PFTM_TCP_ESTABLISHED; tm.seconds = 0;
	TRY("gettimeout", DIOCGETTIMEOUT, &tm);
	printf("timeout %d\n", tm.seconds);
	tm.timeout = PFTM_TCP_ESTABLISHED; tm.seconds = 86400;
	ioctl(dev, DIOCSETTIMEOUT, &tm);
	tm.timeout = PFTM_MAX;
	TRY("gettimeout-bad", DIOCGETTIMEOUT, &tm);
	lim.index = PF_LIMIT_STATES; lim.limit = 0;
	TRY("getlimit", DIOCGETLIMIT, &lim);
	printf("limit %u\n", lim.limit);
	lim.index = PF_LIMIT_MAX;
	TRY("setlimit-bad", DIOCSETLIMIT, &lim);
	memset(&nl, 0, sizeof(nl));
	nl.af = AF_INET; nl.proto = IPPROTO_TCP; nl.direction = PF_OUT;
	nl.saddr.v4.s_addr = inet_addr("10.0.0.1"); nl.sport = htons(1234);
	nl.daddr.v4.s_addr = inet_addr("10.0.0.2"); nl.dport = htons(80);
	TRY("natlook", DIOCNATLOOK, &nl);
	nl.sport = 0;
	TRY("natlook-noport", DIOCNATLOOK, &nl);
	memset(&io, 0, sizeof(io));
	io.pfiio_buffer = kif; io.pfiio_esize = sizeof(struct pfi_kif); io.pfiio_size = 256;
	TRY("igetifaces", DIOCIGETIFACES, &io);
	printf("ifaces %d first=%s\n", io.pfiio_size, kif[0].pfik_name);
	io.pfiio_esize = 100;
	TRY("igetifaces-esize", DIOCIGETIFACES, &io);
	TRY("stop", DIOCSTOP, 0);
	TRY("stop-again", DIOCSTOP, 0);
	return 0;
}
"""


def test_c_client_round_trips(module_pfd, tmp_path):
    binary = compile_c(C_CLIENT, str(tmp_path), "client")
    res = subprocess.run([binary, module_pfd.path], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    out = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    E = errno
    expect = {"start": 0, "start-again": E.EEXIST, "setdebug": 0, "sethostid": 0, "setstatusif": 0,
              "getstatus": 0, "clrstatus": 0, "settimeout": 0, "gettimeout": 0,
              "gettimeout-bad": E.EINVAL, "getlimit": 0, "setlimit-bad": E.EINVAL,
              "natlook": E.ENOENT, "natlook-noport": E.EINVAL, "igetifaces": 0,
              "igetifaces-esize": E.ENODEV, "stop": 0, "stop-again": E.ENOENT}
    assert {k: int(out[k]) for k in expect} == expect
    assert out["status"] == "running=1 debug=2 hostid=feedbeef ifname=lo"
    assert out["old-timeout"] == "86400" and out["timeout"] == "7200"
    assert out["limit"] == "100000"
    n, first = out["ifaces"].split(" ")
    assert int(n) >= len(host_interfaces()) + 1 and first == "first=all"
    with PfDevice(module_pfd.path) as d:
        d.set_status_interface("")
        d.set_debug(1)
