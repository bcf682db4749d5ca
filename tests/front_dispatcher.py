"""A Dispatcher for testing the device front: a few commands that echo, fail, raise, sleep and move
embedded buffers through `mem`, plus counters of opens and releases."""

import errno
import os
import struct
import threading
import time

IOC_WRITE, IOC_READ = 1, 2


def _ioc(direction, group, number, size):
    return (direction << 30) | (size << 16) | (ord(group) << 8) | number


def IOWR(group, number, size):
    return _ioc(IOC_READ | IOC_WRITE, group, number, size)


ECHO_SIZE = 416
ECHO = IOWR("T", 1, ECHO_SIZE)      # returns the struct with every byte inverted
FAIL = IOWR("T", 2, 8)              # {i32 errno, pad}: raises OSError(errno)
CRASH = IOWR("T", 3, 8)             # raises RuntimeError
SLOW = IOWR("T", 4, 8)              # {u32 ms, u32 count}: sleeps ms, returns count + 1
BUF = IOWR("T", 5, 24)              # {u64 addr, u64 len, u64 sum}: sum of the bytes, each += 1
HALF = IOWR("T", 6, 24)             # {u64 addr, u64 len, u64 0}: writes 0xAA over the first half
VEC = IOWR("T", 7, 32)              # {u64 base, u64 count, u64 stride, u64 sum}: count u64s summed
INFO = IOWR("T", 8, 32)             # -> {u32 accmode of this fd, u32 0, u64 opens, u64 releases, u64 starts}
BSD_START = 0x20004401              # FreeBSD _IO('D', 1), as a ctypes client with BSD numbers sends it

BUF_FMT = "<QQQ"
VEC_FMT = "<QQQQ"
INFO_FMT = "<IIQQQ"


class ProbeDispatcher:
    def __init__(self):
        self.opens = 0
        self.releases = 0
        self.starts = 0
        self.released = []                  # contexts given back, in order
        self.released_event = threading.Event()

    def open(self, flags):
        if flags & os.O_APPEND:
            raise OSError(errno.EPERM, "no appending to a device")
        self.opens += 1
        return {"flags": flags, "id": self.opens}

    def release(self, ctx):
        self.releases += 1
        self.released.append(ctx)
        self.released_event.set()

    def layout(self, cmd):
        if cmd >> 30 == 0:                  # _IO, and the BSD _IO form (Linux reads no direction)
            return (0, 0)
        size = (cmd >> 16) & 0x3FFF
        return (size if cmd >> 30 & IOC_WRITE else 0, size if cmd >> 30 & IOC_READ else 0)

    def regions(self, cmd, arg):
        if cmd in (BUF, HALF) and len(arg) == 24:
            addr, length, _ = struct.unpack(BUF_FMT, arg)
            return [(addr, length, 3 if cmd == BUF else 2)]
        if cmd == VEC and len(arg) == 32:
            base, count, stride, _ = struct.unpack(VEC_FMT, arg)
            return [(base + i * stride, 8, 1) for i in range(count)]
        return []

    def ioctl(self, ctx, cmd, arg, data, mem):
        if cmd == ECHO:
            return bytes(b ^ 0xFF for b in data)
        if cmd == FAIL:
            raise OSError(struct.unpack_from("<i", data)[0], "requested failure")
        if cmd == CRASH:
            raise RuntimeError("handler bug")
        if cmd == SLOW:
            ms, count = struct.unpack("<II", data)
            time.sleep(ms / 1000)
            return struct.pack("<II", ms, count + 1)
        if cmd == BUF:
            addr, length, _ = struct.unpack(BUF_FMT, data)
            content = mem.read(addr, length)
            mem.write(addr, bytes((b + 1) & 0xFF for b in content))
            return struct.pack(BUF_FMT, addr, length, sum(content))
        if cmd == HALF:
            addr, length, _ = struct.unpack(BUF_FMT, data)
            mem.write(addr, b"\xAA" * (length // 2))
            return data
        if cmd == VEC:
            base, count, stride, _ = struct.unpack(VEC_FMT, data)
            total = sum(struct.unpack("<Q", mem.read(base + i * stride, 8))[0] for i in range(count))
            return struct.pack(VEC_FMT, base, count, stride, total)
        if cmd == INFO:
            return struct.pack(INFO_FMT, ctx["flags"] & os.O_ACCMODE, 0, self.opens, self.releases,
                               self.starts)
        if cmd == BSD_START:
            assert data == b"", data
            self.starts += 1
            return b""
        raise OSError(errno.ENODEV, "unknown command")
