"""`PfDevice`: open `/dev/pf` and issue pf ioctls from Python.

    with PfDevice() as pf:                       # mode "rw"; "r" opens read-only
        st = pf.status()                         # struct pf_status
        pf.set_timeout(PFTM_TCP_ESTABLISHED, 3600)
        pf.ioctl(DIOCRGETTABLES, io)             # any command with its ctypes struct

`ioctl()` passes the caller's ctypes object itself as the (mutable) argument, so the kernel (the
daemon) writes its answer straight into it, and pointers embedded in it (`pfrio_buffer`,
`ps_buf`, `pfiio_buffer`, `array`, ...) may point at other ctypes objects of the caller — keep
those alive until the call returns.  Failures raise OSError carrying the errno.
"""
import ctypes
import errno
import fcntl
import ipaddress
import os
import socket

from . import commands as C
from . import structs as S
from .constants import AF_INET, AF_INET6, PF_OUT, PFI_FLAG_GROUP, PFI_FLAG_INSTANCE

ESIZE_KIF = ctypes.sizeof(S.pfi_kif)     # 224, FreeBSD 12
ESIZE_IF = ctypes.sizeof(S.pfi_if)       # 184, OpenBSD 3.x


class PfDevice:
    """An open pf device.  `mode` is "r" (read-only fd, like `pfctl -s`) or "rw".

    `bsd_io=True` sends the FreeBSD encoding (0x2000xxxx) for the argument-less commands instead of
    Linux's; the daemon accepts both."""

    def __init__(self, path="/dev/pf", mode="rw", bsd_io=False):
        if mode not in ("r", "rw"):
            raise ValueError(f"mode must be 'r' or 'rw', not {mode!r}")
        self.path = path
        self.mode = mode
        self.bsd_io = bsd_io
        flags = os.O_RDONLY if mode == "r" else os.O_RDWR
        self.fd = os.open(path, flags | os.O_CLOEXEC)

    # -- plumbing --------------------------------------------------------------------------

    def fileno(self):
        return self.fd

    def close(self):
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    @property
    def closed(self):
        return self.fd < 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def ioctl(self, cmd, arg=None):
        """Issue command `cmd` with ctypes object `arg` (None for the `_IO` commands).

        `arg` is updated in place and returned.  Raises OSError(errno) on failure (the struct is
        then left as it was), ValueError if `arg`'s size does not match the command's."""
        if self.fd < 0:
            raise ValueError("I/O on closed PfDevice")
        if arg is None:
            if self.bsd_io and C._IOC_DIR(cmd) == 0 and C._IOC_SIZE(cmd) == 0:
                cmd = C.IOC_VOID | cmd
            target = 0
        else:
            if C._IOC_DIR(cmd) and C._IOC_SIZE(cmd) != ctypes.sizeof(arg):
                raise ValueError(f"{C.name_of(cmd)} takes {C._IOC_SIZE(cmd)} bytes, "
                                 f"{type(arg).__name__} has {ctypes.sizeof(arg)}")
            target = memoryview(arg).cast("B")
        try:
            fcntl.ioctl(self.fd, cmd, target, True) if arg is not None else fcntl.ioctl(self.fd, cmd, 0)
        except OSError as e:
            raise OSError(e.errno, f"{C.name_of(cmd)}: {os.strerror(e.errno)}", self.path) from None
        return arg

    # -- control ---------------------------------------------------------------------------

    def start(self):
        """DIOCSTART (EEXIST if already running)."""
        self.ioctl(C.DIOCSTART)

    def stop(self):
        """DIOCSTOP (ENOENT if not running)."""
        self.ioctl(C.DIOCSTOP)

    def status(self):
        """DIOCGETSTATUS -> pf_status."""
        return self.ioctl(C.DIOCGETSTATUS, S.pf_status())

    def clear_status(self):
        """DIOCCLRSTATUS."""
        self.ioctl(C.DIOCCLRSTATUS)

    def set_debug(self, level):
        """DIOCSETDEBUG (PF_DEBUG_NONE .. PF_DEBUG_NOISY)."""
        self.ioctl(C.DIOCSETDEBUG, ctypes.c_uint32(level))

    def set_hostid(self, hostid):
        """DIOCSETHOSTID with `hostid` in host order; sent `htonl`'ed as pfctl does, so
        `socket.ntohl(status().hostid)` gives it back.  0 lets pf pick a random one."""
        self.ioctl(C.DIOCSETHOSTID, ctypes.c_uint32(socket.htonl(hostid & 0xFFFFFFFF)))

    def get_timeout(self, index):
        """DIOCGETTIMEOUT -> seconds of default timeout `index` (PFTM_*)."""
        return self.ioctl(C.DIOCGETTIMEOUT, S.pfioc_tm(timeout=index)).seconds

    def set_timeout(self, index, seconds):
        """DIOCSETTIMEOUT; returns the previous value."""
        return self.ioctl(C.DIOCSETTIMEOUT, S.pfioc_tm(timeout=index, seconds=seconds)).seconds

    def get_limit(self, index):
        """DIOCGETLIMIT -> hard limit of pool `index` (PF_LIMIT_*)."""
        return self.ioctl(C.DIOCGETLIMIT, S.pfioc_limit(index=index)).limit

    def set_limit(self, index, limit):
        """DIOCSETLIMIT; returns the previous limit."""
        return self.ioctl(C.DIOCSETLIMIT, S.pfioc_limit(index=index, limit=limit)).limit

    def set_status_interface(self, name):
        """DIOCSETSTATUSIF ("" clears the loginterface)."""
        self.ioctl(C.DIOCSETSTATUSIF, S.pfioc_if(ifname=_name16(name)))

    # -- lookups ---------------------------------------------------------------------------

    def natlook(self, af, proto, saddr, sport, daddr, dport, direction=PF_OUT):
        """DIOCNATLOOK.  Addresses as ipaddress objects or strings, ports in host order; `af`
        may be None (taken from `saddr`).  Returns (rsaddr, rsport, rdaddr, rdport)."""
        saddr, daddr = ipaddress.ip_address(saddr), ipaddress.ip_address(daddr)
        if saddr.version != daddr.version:
            raise ValueError("saddr and daddr are of different families")
        if af is None:
            af = AF_INET if saddr.version == 4 else AF_INET6
        nl = S.pfioc_natlook(af=af, proto=proto, direction=direction,
                             sport=socket.htons(sport), dport=socket.htons(dport))
        nl.saddr.set(saddr)
        nl.daddr.set(daddr)
        self.ioctl(C.DIOCNATLOOK, nl)
        return (nl.rsaddr.ip(af), socket.ntohs(nl.rsport), nl.rdaddr.ip(af), socket.ntohs(nl.rdport))

    def interfaces(self, name="", esize=ESIZE_KIF, flags=None, initial=64):
        """DIOCIGETIFACES -> list of pfi_kif (esize 224) or pfi_if (esize 184).

        Grows the buffer and retries until everything fits: FreeBSD 12 answers an overfull
        request with `pfiio_size` = request + 1 (not the total), OpenBSD 3.x with the total.
        `flags` defaults to 0 for 224 and PFI_FLAG_GROUP|PFI_FLAG_INSTANCE for 184 (OpenBSD
        selects entry kinds by these flags)."""
        etype = {ESIZE_KIF: S.pfi_kif, ESIZE_IF: S.pfi_if}.get(esize)
        if etype is None:
            raise ValueError(f"esize must be {ESIZE_KIF} or {ESIZE_IF}")
        if flags is None:
            flags = 0 if esize == ESIZE_KIF else PFI_FLAG_GROUP | PFI_FLAG_INSTANCE
        cap = max(1, initial)
        while True:
            buf = (etype * cap)()
            io = S.pfioc_iface(pfiio_name=_name16(name), pfiio_buffer=ctypes.addressof(buf),
                               pfiio_esize=esize, pfiio_size=cap, pfiio_flags=flags)
            self.ioctl(C.DIOCIGETIFACES, io)
            n = io.pfiio_size
            if 0 <= n <= cap:
                return [etype.from_buffer_copy(buf[i]) for i in range(n)]
            cap = max(n, 2 * cap)

    def get_states(self):
        """DIOCGETSTATES -> list of pfsync_state (size query, then grow until all fit)."""
        return self._sized_list(C.DIOCGETSTATES, S.pfioc_states, "ps_len", "ps_buf", S.pfsync_state)

    def get_src_nodes(self):
        """DIOCGETSRCNODES -> list of pf_src_node."""
        return self._sized_list(C.DIOCGETSRCNODES, S.pfioc_src_nodes, "psn_len", "psn_buf",
                                S.pf_src_node)

    def _sized_list(self, cmd, iotype, len_field, buf_field, etype):
        esize = ctypes.sizeof(etype)
        length = 0
        while True:
            io = iotype()
            setattr(io, len_field, length)
            buf = ctypes.create_string_buffer(length) if length else None
            if buf is not None:
                setattr(io, buf_field, ctypes.addressof(buf))
            self.ioctl(cmd, io)
            got = getattr(io, len_field)
            if buf is None:
                if got <= 0:
                    return []
                length = 2 * got
                continue
            if got + esize <= length:       # room for one more was left: we have them all
                n = got // esize
                return list((etype * n).from_buffer_copy(buf.raw[:n * esize]))
            if length > (1 << 30):
                raise OSError(errno.ENOMEM, "state list does not stop growing")
            length *= 2


def _name16(name):
    b = name.encode() if isinstance(name, str) else bytes(name)
    if len(b) >= 16:
        raise ValueError(f"interface name too long: {name!r}")
    return b


__all__ = ["PfDevice", "ESIZE_KIF", "ESIZE_IF"]
