"""The kernel's end of a CUSE connection, for testing the front where the kernel has no CUSE.

A SOCK_SEQPACKET socketpair stands in for /dev/cuse: each message is one request or one reply, as
reads and writes on the device are. Requests are built from include/uapi/linux/fuse.h (protocol
7.x); `ioctl_call` also plays fs/fuse/ioctl.c's unrestricted-ioctl loop against this process's own
memory (fuse_in_header.pid is our pid and iovec bases are real addresses), enforcing its limits.
"""

import ctypes
import errno
import os
import select
import socket
import struct
from dataclasses import dataclass, field

# opcodes
FUSE_OPEN, FUSE_READ, FUSE_WRITE, FUSE_RELEASE = 14, 15, 16, 18
FUSE_INTERRUPT, FUSE_IOCTL, CUSE_INIT = 36, 39, 4096

# fuse_ioctl_in/out flags
FUSE_IOCTL_COMPAT, FUSE_IOCTL_UNRESTRICTED, FUSE_IOCTL_RETRY, FUSE_IOCTL_32BIT = 1, 2, 4, 8
FUSE_IOCTL_MAX_IOV = 256
CUSE_UNRESTRICTED_IOCTL = 1
FUSE_INT_REQ_BIT = 1

PAGE_SIZE = os.sysconf("SC_PAGESIZE")
MAX_PAGES = 32                      # fc->max_pages of a CUSE connection

IN_HEADER = struct.Struct("<IIQQIIIHH")     # len opcode unique nodeid uid gid pid total_extlen pad
OUT_HEADER = struct.Struct("<IiQ")          # len error unique
CUSE_INIT_IN = struct.Struct("<IIII")       # major minor unused flags
CUSE_INIT_OUT = struct.Struct("<8I40x")     # major minor unused flags max_read max_write dev_major dev_minor spare[10]
OPEN_IN = struct.Struct("<II")              # flags open_flags
OPEN_OUT = struct.Struct("<QIi")            # fh open_flags backing_id
RELEASE_IN = struct.Struct("<QIIQ")         # fh flags release_flags lock_owner
READ_IN = struct.Struct("<QQIIQII")         # fh offset size read_flags lock_owner flags padding
IOCTL_IN = struct.Struct("<QIIQII")         # fh flags cmd arg in_size out_size
IOCTL_OUT = struct.Struct("<iIII")          # result flags in_iovs out_iovs
IOVEC = struct.Struct("<QQ")                # base len
INTERRUPT_IN = struct.Struct("<Q")          # unique


@dataclass
class Reply:
    unique: int
    error: int                      # negative errno, 0 on success
    payload: bytes


@dataclass
class IoctlResult:
    result: int = 0                 # the ioctl's return value
    error: int = 0                  # errno the caller would see (0 = success)
    rounds: list = field(default_factory=list)      # (in iovecs, out iovecs) sent each round


class FakeKernel:
    def __init__(self):
        self.sock, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (self.sock, peer):     # a 128 KiB ioctl reply is one message
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.front_fd = peer.detach()   # handed to the front, which closes it
        self.next_unique = 2            # the kernel's ids step by 2; bit 0 marks interrupts
        self.stray = []                 # replies to INTERRUPTs (unique with bit 0 set)

    def close(self):
        self.sock.close()

    # -- raw protocol --------------------------------------------------------------------------

    def send(self, opcode, payload=b"", nodeid=0, pid=None, unique=None):
        if unique is None:
            unique = self.next_unique
            self.next_unique += 2
        header = IN_HEADER.pack(IN_HEADER.size + len(payload), opcode, unique, nodeid, 0, 0,
                                os.getpid() if pid is None else pid, 0, 0)
        self.sock.send(header + payload)
        return unique

    def recv(self, timeout=10.0):
        """The next reply (replies to INTERRUPTs are set aside in `stray`)."""
        while True:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                raise TimeoutError("no reply from the front")
            message = self.sock.recv(1 << 21)
            if not message:
                raise EOFError("the front closed the connection")
            length, error, unique = OUT_HEADER.unpack_from(message)
            assert length == len(message), (length, len(message))
            reply = Reply(unique, error, message[OUT_HEADER.size:])
            if unique & FUSE_INT_REQ_BIT:
                self.stray.append(reply)
                continue
            return reply

    def request(self, opcode, payload=b"", **kw):
        unique = self.send(opcode, payload, **kw)
        reply = self.recv()
        assert reply.unique == unique, (reply.unique, unique)
        return reply

    # -- operations ----------------------------------------------------------------------------

    def init(self, major=7, minor=31):
        """CUSE_INIT; returns (fields of cuse_init_out as a dict, device info bytes)."""
        reply = self.request(CUSE_INIT, CUSE_INIT_IN.pack(major, minor, 0, 0))
        assert reply.error == 0, reply
        names = ("major", "minor", "unused", "flags", "max_read", "max_write", "dev_major",
                 "dev_minor")
        return (dict(zip(names, CUSE_INIT_OUT.unpack_from(reply.payload))),
                reply.payload[CUSE_INIT_OUT.size:])

    def open(self, flags=os.O_RDWR):
        reply = self.request(FUSE_OPEN, OPEN_IN.pack(flags, 0))
        if reply.error:
            raise OSError(-reply.error, os.strerror(-reply.error))
        return OPEN_OUT.unpack_from(reply.payload)[0]

    def release(self, fh, flags=os.O_RDWR):
        return self.request(FUSE_RELEASE, RELEASE_IN.pack(fh, flags, 0, 0)).error

    def read(self, fh, size=16):
        return self.request(FUSE_READ, READ_IN.pack(fh, 0, size, 0, 0, os.O_RDWR, 0)).error

    def interrupt(self, unique):
        """FUSE_INTERRUPT for request `unique`; the front may answer it (EAGAIN) or not."""
        self.send(FUSE_INTERRUPT, INTERRUPT_IN.pack(unique), unique=unique | FUSE_INT_REQ_BIT)

    def ioctl(self, fh, cmd, arg, flags=FUSE_IOCTL_UNRESTRICTED, in_data=b"", out_size=0,
              pid=None):
        """One FUSE_IOCTL request; returns (Reply, fuse_ioctl_out tuple or None, data after it)."""
        payload = IOCTL_IN.pack(fh, flags, cmd, arg, len(in_data), out_size) + in_data
        reply = self.request(FUSE_IOCTL, payload, pid=pid)
        if reply.error:
            return reply, None, b""
        return reply, IOCTL_OUT.unpack_from(reply.payload), reply.payload[IOCTL_OUT.size:]

    def ioctl_call(self, fh, cmd, arg, flags=FUSE_IOCTL_UNRESTRICTED, pid=None):
        """What fs/fuse/ioctl.c does for an unrestricted ioctl of this process: retry rounds
        copying the requested in-iovecs from our memory, then the reply scattered over the
        out-iovecs. `pid` 0 hides the caller from process_vm_*. Limits as in the kernel: ENOMEM beyond MAX_PAGES per direction or
        FUSE_IOCTL_MAX_IOV iovecs."""
        result = IoctlResult()
        in_iov, out_iov = [], []
        limit = MAX_PAGES * PAGE_SIZE
        while True:
            in_size = sum(length for _, length in in_iov)
            out_size = sum(length for _, length in out_iov)
            if max(in_size, out_size, PAGE_SIZE) > limit:
                result.error = errno.ENOMEM
                return result
            in_data = b"".join(ctypes.string_at(base, length) for base, length in in_iov)
            result.rounds.append((list(in_iov), list(out_iov)))
            reply, out, data = self.ioctl(fh, cmd, arg, flags, in_data, out_size, pid)
            if reply.error:
                result.error = -reply.error
                return result
            ret, out_flags, n_in, n_out = out
            if out_flags & FUSE_IOCTL_RETRY:
                if n_in > FUSE_IOCTL_MAX_IOV or n_out > FUSE_IOCTL_MAX_IOV or \
                        n_in + n_out > FUSE_IOCTL_MAX_IOV:
                    result.error = errno.ENOMEM
                    return result
                if len(data) != (n_in + n_out) * IOVEC.size:
                    result.error = errno.EIO
                    return result
                iovs = [IOVEC.unpack_from(data, i * IOVEC.size) for i in range(n_in + n_out)]
                in_iov, out_iov = iovs[:n_in], iovs[n_in:]
                for direction in (in_iov, out_iov):
                    if sum(length for _, length in direction) > limit:
                        result.error = errno.ENOMEM
                        return result
                continue
            if len(data) > out_size:
                result.error = errno.EIO
                return result
            offset = 0
            for base, length in out_iov:
                chunk = data[offset:offset + length]
                ctypes.memmove(base, chunk, len(chunk))
                offset += len(chunk)
            result.result = ret
            return result
