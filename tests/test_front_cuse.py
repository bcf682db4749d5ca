"""The device front in CUSE mode, against a fake kernel end (tests/fake_kernel.py): this machine's
kernel has no CUSE. The front runs in a thread on one end of a socketpair."""

import ctypes
import errno
import os
import struct
import threading
import uuid

import pytest

from cuse import _fuse
from cuse.front import Front, serve
from fake_kernel import (CUSE_UNRESTRICTED_IOCTL, FUSE_IOCTL_COMPAT, FUSE_IOCTL_32BIT,
                         FUSE_IOCTL_RETRY, FUSE_IOCTL_UNRESTRICTED, IOVEC, FakeKernel)
from front_dispatcher import (BSD_START, BUF, BUF_FMT, CRASH, ECHO, ECHO_SIZE, FAIL, HALF, VEC,
                              VEC_FMT, ProbeDispatcher)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the front's lock lives in /run/pfd")

LIMIT = _fuse.CUSE_IOCTL_MAX_BYTES


class Running:
    """A Front in CUSE mode on a fake kernel, its loop in a thread, CUSE_INIT done."""

    def __init__(self):
        self.kernel = FakeKernel()
        self.dispatcher = ProbeDispatcher()
        self.name = f"pf-fake-{uuid.uuid4().hex[:8]}"
        self.ready = threading.Event()
        self.front = Front(self.dispatcher, device=f"/dev/{self.name}",
                           cuse_fd=self.kernel.front_fd)
        self.front.start(self.ready.set)
        self.thread = threading.Thread(target=self.front.run, daemon=True)
        self.thread.start()
        self.init_out, self.dev_info = self.kernel.init()
        assert self.ready.wait(5)

    def close(self):
        self.front.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.front.close()
        self.kernel.close()


@pytest.fixture
def cuse():
    running = Running()
    yield running
    running.close()


@pytest.fixture
def fh(cuse):
    return cuse.kernel.open(os.O_RDWR)


def buf_struct(cbuf, length=None):
    return (ctypes.c_ubyte * 24).from_buffer_copy(
        struct.pack(BUF_FMT, ctypes.addressof(cbuf) if cbuf is not None else 0,
                    len(cbuf) if length is None else length, 0))


def pattern(size):
    return (ctypes.c_ubyte * size)(*[i % 253 for i in range(size)])


def test_cuse_init_reply(cuse):
    assert cuse.init_out["major"] == 7 and cuse.init_out["minor"] >= 11
    assert cuse.init_out["flags"] & CUSE_UNRESTRICTED_IOCTL
    assert cuse.init_out["max_read"] > 0 and cuse.init_out["max_write"] > 0
    assert cuse.init_out["dev_major"] == 0 and cuse.init_out["dev_minor"] == 0
    assert cuse.dev_info == f"DEVNAME={cuse.name}\0".encode()


def test_open_mode_and_release(cuse):
    fh = cuse.kernel.open(os.O_WRONLY)
    assert cuse.dispatcher.opens == 1
    assert cuse.kernel.release(fh, os.O_WRONLY) == 0
    assert cuse.dispatcher.released == [{"flags": os.O_WRONLY, "id": 1}]


def test_open_refused_by_the_dispatcher(cuse):
    with pytest.raises(OSError) as exc:
        cuse.kernel.open(os.O_RDWR | os.O_APPEND)
    assert exc.value.errno == errno.EPERM


def test_retry_protocol_round_by_round(cuse, fh):
    data = bytes(range(256)) + bytes(ECHO_SIZE - 256)
    cbuf = (ctypes.c_ubyte * ECHO_SIZE).from_buffer_copy(data)
    arg = ctypes.addressof(cbuf)
    reply, (result, flags, n_in, n_out), iovs = cuse.kernel.ioctl(fh, ECHO, arg)
    assert flags & FUSE_IOCTL_RETRY and (n_in, n_out) == (1, 1)
    assert [IOVEC.unpack_from(iovs, i * IOVEC.size) for i in range(2)] == [(arg, ECHO_SIZE)] * 2
    reply, (result, flags, n_in, n_out), out = cuse.kernel.ioctl(fh, ECHO, arg, in_data=data,
                                                               out_size=ECHO_SIZE)
    assert (result, flags) == (0, 0)
    assert out == bytes(b ^ 0xFF for b in data)     # ECHO > 2**31: the signed CUSE cmd converted


def test_io_command_needs_no_retry(cuse, fh):
    call = cuse.kernel.ioctl_call(fh, BSD_START, 0)
    assert (call.error, call.result, len(call.rounds)) == (0, 0, 1)
    assert cuse.dispatcher.starts == 1


def test_errno_and_exception(cuse, fh):
    failing = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("<ii", errno.EBUSY, 0))
    assert cuse.kernel.ioctl_call(fh, FAIL, ctypes.addressof(failing)).error == errno.EBUSY
    crashing = (ctypes.c_ubyte * 8)()
    assert cuse.kernel.ioctl_call(fh, CRASH, ctypes.addressof(crashing)).error == errno.EIO
    assert bytes(failing)[:4] == struct.pack("<i", errno.EBUSY)       # untouched on error
    echo = (ctypes.c_ubyte * ECHO_SIZE)()
    assert cuse.kernel.ioctl_call(fh, ECHO, ctypes.addressof(echo)).error == 0


def test_embedded_buffer_through_a_third_round(cuse, fh):
    cbuf = pattern(1000)
    top = buf_struct(cbuf)
    arg, addr = ctypes.addressof(top), ctypes.addressof(cbuf)
    # pid 0: the caller is invisible to process_vm, so this only works if retry fetched it all
    call = cuse.kernel.ioctl_call(fh, BUF, arg, pid=0)
    assert call.error == 0
    assert call.rounds[2] == ([(arg, 24), (addr, 1000)], [(arg, 24), (addr, 1000)])
    assert struct.unpack(BUF_FMT, bytes(top))[2] == sum(i % 253 for i in range(1000))
    assert bytes(cbuf) == bytes(i % 253 + 1 for i in range(1000))


def test_out_region_bytes_not_written_come_back_unchanged(cuse, fh):
    cbuf = pattern(64)
    top = buf_struct(cbuf)
    call = cuse.kernel.ioctl_call(fh, HALF, ctypes.addressof(top), pid=0)
    assert call.error == 0 and len(call.rounds) == 3
    assert bytes(cbuf) == b"\xAA" * 32 + bytes(i % 253 for i in range(32, 64))


def test_region_filling_the_limit_exactly_is_fetched(cuse, fh):
    cbuf = pattern(LIMIT - 24)
    top = buf_struct(cbuf)
    call = cuse.kernel.ioctl_call(fh, BUF, ctypes.addressof(top), pid=0)
    assert call.error == 0 and len(call.rounds) == 3
    assert bytes(cbuf[:4]) == bytes([1, 2, 3, 4])


def test_embedded_buffer_over_128k_goes_through_process_vm(cuse, fh):
    size = 200 * 1024
    cbuf = pattern(size)
    top = buf_struct(cbuf)
    call = cuse.kernel.ioctl_call(fh, BUF, ctypes.addressof(top))
    assert call.error == 0
    assert len(call.rounds) == 2                            # no round asking for the buffer
    assert all(base != ctypes.addressof(cbuf) for rnd in call.rounds for iovs in rnd
               for base, _ in iovs)
    assert struct.unpack(BUF_FMT, bytes(top))[2] == sum(i % 253 for i in range(size))
    assert bytes(cbuf[size - 3:]) == bytes((i % 253 + 1) & 0xFF for i in range(size - 3, size))


def test_more_regions_than_iovecs_are_split_between_retry_and_process_vm(cuse, fh):
    count = 300
    values = (ctypes.c_uint64 * (2 * count))(*[v for i in range(count) for v in (i * 3, 0)])
    top = (ctypes.c_ubyte * 32).from_buffer_copy(
        struct.pack(VEC_FMT, ctypes.addressof(values), count, 16, 0))
    call = cuse.kernel.ioctl_call(fh, VEC, ctypes.addressof(top))
    assert call.error == 0 and len(call.rounds) == 3
    in_iov, out_iov = call.rounds[2]
    assert len(in_iov) + len(out_iov) <= 256
    assert struct.unpack(VEC_FMT, bytes(top))[3] == sum(i * 3 for i in range(count))


def test_null_embedded_pointer_is_efault(cuse, fh):
    top = buf_struct(None, length=16)
    call = cuse.kernel.ioctl_call(fh, BUF, ctypes.addressof(top))
    assert call.error == errno.EFAULT
    assert len(call.rounds) == 2                            # NULL never asked of the kernel


def test_32bit_callers_are_refused(cuse, fh):
    echo = (ctypes.c_ubyte * ECHO_SIZE)()
    flags = FUSE_IOCTL_UNRESTRICTED | FUSE_IOCTL_COMPAT | FUSE_IOCTL_32BIT
    reply, _, _ = cuse.kernel.ioctl(fh, ECHO, ctypes.addressof(echo), flags=flags)
    assert reply.error == -errno.ENODEV


def test_read_is_enodev(cuse, fh):
    assert cuse.kernel.read(fh) == -errno.ENODEV


def test_interrupt_is_harmless(cuse, fh):
    echo = (ctypes.c_ubyte * ECHO_SIZE)()
    first = cuse.kernel.next_unique
    assert cuse.kernel.ioctl_call(fh, ECHO, ctypes.addressof(echo)).error == 0
    cuse.kernel.interrupt(first)                    # already answered
    cuse.kernel.interrupt(10 ** 9)                  # never existed
    call = cuse.kernel.ioctl_call(fh, ECHO, ctypes.addressof(echo))
    assert call.error == 0 and bytes(echo) == bytes(ECHO_SIZE)   # inverted twice


def test_front_returns_when_the_kernel_end_closes():
    running = Running()
    running.kernel.close()
    running.thread.join(10)
    assert not running.thread.is_alive()
    running.front.close()


def test_serve_in_a_thread_with_an_injected_fd():
    kernel = FakeKernel()
    ready = threading.Event()
    name = f"pf-fake-{uuid.uuid4().hex[:8]}"
    thread = threading.Thread(target=serve, args=(ProbeDispatcher(),),
                              kwargs=dict(device=f"/dev/{name}", ready=ready.set,
                                          cuse_fd=kernel.front_fd), daemon=True)
    thread.start()
    init_out, dev_info = kernel.init()
    assert ready.wait(5) and dev_info == f"DEVNAME={name}\0".encode()
    fh = kernel.open()
    echo = (ctypes.c_ubyte * ECHO_SIZE)()
    assert kernel.ioctl_call(fh, ECHO, ctypes.addressof(echo)).error == 0
    kernel.close()
    thread.join(10)
    assert not thread.is_alive()
