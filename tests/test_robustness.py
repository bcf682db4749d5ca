"""The daemon never dies or hangs from userland: garbage, bad pointers, bad sizes, killed and
concurrent clients. After each, it still answers."""
import ctypes
import errno
import fcntl
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import compile_c
from pfkern.client import DIOCIGETIFACES, PfDevice, pfioc_iface
from pfkern.pf_ioctl import COMMANDS

WILD = 0xdead0000          # a user address nothing maps in the test process


def still_answers(daemon):
    assert daemon.alive(), daemon.output()
    with PfDevice(daemon.path, "r") as d:
        assert d.status().hostid != 0


def command_sizes():
    for name, value, *_ in COMMANDS:
        size = (value >> 16) & 0x3fff if value & 0xc0000000 else 0
        yield name, value, size


def test_garbage_structs_for_every_command(module_pfd):
    """Random bytes as the argument of every known command, on rw and ro fds: any errno, no
    crash. Pointers inside garbage are wild, so handlers must fault cleanly."""
    rng = random.Random(1234)
    fds = [os.open(module_pfd.path, os.O_RDWR), os.open(module_pfd.path, os.O_RDONLY)]
    answered = 0
    try:
        for round_ in range(30):
            for name, value, size in command_sizes():
                if name in ("DIOCSTART", "DIOCSTOP"):
                    continue
                arg = bytearray(rng.getrandbits(8) for _ in range(size)) if size else 0
                for fd in fds:
                    try:
                        fcntl.ioctl(fd, value, arg, True) if size else fcntl.ioctl(fd, value, 0)
                    except OSError as exc:
                        assert exc.errno in (errno.EINVAL, errno.ENODEV, errno.EACCES, errno.EFAULT,
                                             errno.ENOENT, errno.EBUSY, errno.ENOMEM, errno.E2BIG,
                                             errno.EEXIST), (name, exc)
                    answered += 1
    finally:
        for fd in fds:
            os.close(fd)
    assert answered > 1000
    still_answers(module_pfd)


@pytest.mark.parametrize("pointer", [0, WILD, 0xffff800000000000])
def test_bad_embedded_pointer_is_efault(module_pfd, pointer):
    with PfDevice(module_pfd.path, "r") as d:
        io = pfioc_iface(pfiio_buffer=pointer, pfiio_esize=224, pfiio_size=4)
        with pytest.raises(OSError) as info:
            d.ioctl(DIOCIGETIFACES, io)
        assert info.value.errno == errno.EFAULT
        assert io.pfiio_size == 4                      # output only on success
    still_answers(module_pfd)


C_BAD_ARGS = r"""
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <net/pfvar.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	int dev = open(argv[1], O_RDWR);
	if (dev == -1)
		return 2;
	/* the top-level struct itself at NULL or at a wild address */
	printf("%d\n", ioctl(dev, DIOCGETSTATUS, (void *)0) == -1 ? errno : 0);
	printf("%d\n", ioctl(dev, DIOCGETSTATUS, (void *)0xdead0000UL) == -1 ? errno : 0);
	printf("%d\n", ioctl(dev, DIOCNATLOOK, (void *)8) == -1 ? errno : 0);
	return 0;
}
"""


def test_null_and_wild_top_level_pointer_is_efault(module_pfd, tmp_path):
    binary = compile_c(C_BAD_ARGS, str(tmp_path), "badargs")
    res = subprocess.run([binary, module_pfd.path], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0
    assert [int(x) for x in res.stdout.split()] == [errno.EFAULT] * 3
    still_answers(module_pfd)


def _hammer_large_ioctls(path):
    buf = ctypes.create_string_buffer(65535 * 224)
    with PfDevice(path, "r") as d:
        while True:
            io = pfioc_iface(pfiio_buffer=ctypes.addressof(buf), pfiio_esize=224, pfiio_size=65535)
            d.ioctl(DIOCIGETIFACES, io)


def test_client_killed_in_the_middle_of_ioctls(module_pfd):
    """Clients SIGKILLed while their 14 MiB ioctls are in flight: the daemon finishes each
    request and goes on."""
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(7)
    for _ in range(12):
        proc = ctx.Process(target=_hammer_large_ioctls, args=(module_pfd.path,))
        proc.start()
        time.sleep(0.05 + rng.random() * 0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL
    still_answers(module_pfd)


def _many_status_calls(path, count, results):
    ok = 0
    with PfDevice(path, "r") as d:
        for _ in range(count):
            if d.status().hostid:
                ok += 1
    results.put(ok)


def test_many_concurrent_clients(module_pfd):
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_many_status_calls, args=(module_pfd.path, 300, results)) for _ in range(32)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert got == [300] * 32
    still_answers(module_pfd)


def test_many_open_fds_released(module_pfd):
    fds = [os.open(module_pfd.path, os.O_RDWR) for _ in range(500)]
    for fd in fds:
        os.close(fd)
    still_answers(module_pfd)
