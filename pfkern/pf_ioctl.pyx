# cython: language_level=3
"""The /dev/pf ioctl edge (FreeBSD pf_ioctl.c pfioctl()): one table maps each command value to
its argument size, access class and handler. Handlers decode the argument struct through the
header's types (pfvar.pxd), call one core function, encode the answer in place. Core exceptions
become errnos here and nowhere else.

The device front calls a Dispatcher (docs/architecture.md) and knows nothing of pf.
"""
import errno
import logging
import time

from libc.string cimport memset, memcpy, strncpy
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pfkern.pfvar cimport *
from pfkern.pf cimport PfCore

from pfkern.errors import Access, Invalid, NoDevice, NotFound, PfError, TooBig, to_oserror
from pfkern.pf_if import PFI_FLAG_ALLMASK
from pfkern import pf_ioctl_misc, pf_ioctl_rules, pf_ioctl_state, pf_ioctl_table
from pfkern.pf_util cimport (PF_AF_INET, PF_AF_INET6, REGION_IN, REGION_OUT, REQUEST_MAXCOUNT,
                             af_in, cstr, put_cstr)

log = logging.getLogger("pfd.ioctl")

# BSD encodes _IO with IOC_VOID (bit 29); Linux with no direction bits.
BSD_IOC_VOID = 0x20000000
# Linux address families travel in structs (pf_util.af_in accepts FreeBSD's AF_INET6 too).
AF_INET = PF_AF_INET
AF_INET6 = PF_AF_INET6
IPPROTO_TCP = 6
IPPROTO_UDP = 17

# Non-zero stand-ins for kernel pointers that pfctl tests as booleans (pfik_ifp, pfik_group).
KIF_IFP_TOKEN = 0xfffff80000000000
KIF_GROUP_TOKEN = 0xfffff80100000000


# Access classes: what a fd opened without write permission may do (FreeBSD's FWRITE check).
cdef enum:
    ACC_RW = 0            # needs a writable fd, else EACCES
    ACC_RO = 1            # allowed read-only
    ACC_RO_NO_CLEAR = 2   # read-only unless it clears counters (DIOCGETRULE)
    ACC_RO_IF_DUMMY = 3   # read-only only as a dry run (table ops with PFR_FLAG_DUMMY)


cdef bint addr_zero(pf_addr *a, int af):
    """PF_AZERO: only an address of a known family can be zero."""
    if af == AF_INET:
        return a.addr32[0] == 0
    if af == AF_INET6:
        return a.addr32[0] == 0 and a.addr32[1] == 0 and a.addr32[2] == 0 and a.addr32[3] == 0
    return False


# --- handlers: (dispatcher, fd context, argument buffer, caller memory) -----------------------

def h_start(d, ctx, bytearray buf, mem):
    d.core.start()


def h_stop(d, ctx, bytearray buf, mem):
    d.core.stop()


def h_getstatus(d, ctx, bytearray buf, mem):
    cdef PfCore core = d.core
    core.fill_status(<pf_status *><char *>buf)


def h_clrstatus(d, ctx, bytearray buf, mem):
    d.core.clear_status()


def h_setstatusif(d, ctx, bytearray buf, mem):
    cdef pfioc_if *pi = <pfioc_if *><char *>buf
    d.core.set_status_interface(cstr(pi.ifname, 16).encode("latin-1"))


def h_setdebug(d, ctx, bytearray buf, mem):
    d.core.set_debug((<uint32_t *><char *>buf)[0])


def h_sethostid(d, ctx, bytearray buf, mem):
    d.core.set_hostid((<uint32_t *><char *>buf)[0])


def h_gettimeout(d, ctx, bytearray buf, mem):
    cdef pfioc_tm *pt = <pfioc_tm *><char *>buf
    pt.seconds = d.core.get_timeout(pt.timeout)


def h_settimeout(d, ctx, bytearray buf, mem):
    cdef pfioc_tm *pt = <pfioc_tm *><char *>buf
    pt.seconds = d.core.set_timeout(pt.timeout, pt.seconds)


def h_getlimit(d, ctx, bytearray buf, mem):
    cdef pfioc_limit *pl = <pfioc_limit *><char *>buf
    pl.limit = d.core.get_limit(pl.index)


def h_setlimit(d, ctx, bytearray buf, mem):
    cdef pfioc_limit *pl = <pfioc_limit *><char *>buf
    pl.limit = d.core.set_limit(pl.index, pl.limit)


def h_natlook(d, ctx, bytearray buf, mem):
    """Find the state a proxy's connection belongs to; answer its other-side key.
    The direction picks the key: PF_IN looks on wire keys, PF_OUT on stack keys."""
    cdef pfioc_natlook *nl = <pfioc_natlook *><char *>buf
    cdef int af = af_in(nl.af)
    cdef int direction = nl.direction
    if direction != PF_INOUT and direction != PF_IN and direction != PF_OUT:
        raise Invalid("direction must be PF_INOUT, PF_IN or PF_OUT")   # FreeBSD would panic
    if (not nl.proto or addr_zero(&nl.saddr, af) or addr_zero(&nl.daddr, af) or
            ((nl.proto == IPPROTO_TCP or nl.proto == IPPROTO_UDP) and (not nl.sport or not nl.dport))):
        raise Invalid("natlook needs protocol, both addresses and, for TCP/UDP, both ports")
    sidx = 1 if direction == PF_IN else 0
    didx = 1 - sidx
    addrs = [None, None]
    ports = [0, 0]
    addrs[sidx] = bytes((<uint8_t *>&nl.saddr)[:16])
    addrs[didx] = bytes((<uint8_t *>&nl.daddr)[:16])
    ports[sidx] = nl.sport
    ports[didx] = nl.dport
    found = d.core.states.find_all((af, nl.proto, tuple(addrs), tuple(ports)), direction)
    if len(found) > 1:
        raise TooBig("more than one state matches")
    if not found:
        raise NotFound("no such state")
    key = found[0].key[sidx]
    # PF_ACPY: 4 bytes for IPv4 (the rest of the caller's pf_addr stays), 16 for IPv6
    cdef size_t alen = 4 if af == AF_INET else 16
    memcpy(&nl.rsaddr, <char *>key.addr[sidx], alen)
    memcpy(&nl.rdaddr, <char *>key.addr[didx], alen)
    nl.rsport = key.port[sidx]
    nl.rdport = key.port[didx]


def h_igetifaces(d, ctx, bytearray buf, mem):
    """DIOCIGETIFACES in two generations, told apart by the element size."""
    cdef pfioc_iface *io = <pfioc_iface *><char *>buf
    if io.pfiio_esize == sizeof(pfi_kif):
        _igetifaces_kif(d, io, mem)
    elif io.pfiio_esize == sizeof(pfi_if):
        _igetifaces_obsd(d, io, mem)
    else:
        raise NoDevice("pfiio_esize is neither sizeof(struct pfi_kif) nor sizeof(struct pfi_if)")


cdef _igetifaces_kif(d, pfioc_iface *io, mem):
    """FreeBSD 12: fill at most pfiio_size entries; pfiio_size becomes the number written, or
    the input size + 1 when more exist (the count quirk pfctl loops on). The whole buffer of
    pfiio_size entries is copied out."""
    cdef int size = io.pfiio_size
    cdef pfi_kif *k
    if size < 0 or size > REQUEST_MAXCOUNT:
        raise Invalid("pfiio_size out of range")
    kifs = d.core.interfaces.match(cstr(io.pfiio_name, 16))
    cdef int n = 0
    out = bytearray(size * sizeof(pfi_kif))
    now = int(time.time())
    for kif in kifs:
        if size <= n:
            n += 1
            break
        if not kif.tzero:
            kif.tzero = now
        k = <pfi_kif *>(<char *>out + n * sizeof(pfi_kif))
        _encode_kif(kif, k)
        n += 1
    if size:
        mem.write(<size_t>io.pfiio_buffer, bytes(out))
    io.pfiio_size = n


cdef _encode_kif(kif, pfi_kif *k):
    cdef int i
    put_cstr(k.pfik_name, 16, kif.name)
    for i in range(8):
        (<uint64_t *>k.pfik_packets)[i] = kif.packets[i]
        (<uint64_t *>k.pfik_bytes)[i] = kif.bytes[i]
    k.pfik_tzero = kif.tzero
    k.pfik_flags = kif.flags
    if kif.is_group:
        k.pfik_group = <void *><uint64_t>(KIF_GROUP_TOKEN + (hash(kif.name) & 0xffff) * 64)
    else:
        k.pfik_ifp = <void *><uint64_t>(KIF_IFP_TOKEN + kif.ifindex * 0x1000)
    k.pfik_rulerefs = kif.rulerefs


cdef _igetifaces_obsd(d, pfioc_iface *io, mem):
    """OpenBSD 3.x: the flags select groups and/or instances; pfiio_size returns the total
    number of matches, entries are copied while they fit."""
    cdef pfi_if *p
    cdef int i
    if io.pfiio_flags & ~PFI_FLAG_ALLMASK:
        raise Invalid("pfiio_flags outside PFI_FLAG_GROUP|PFI_FLAG_INSTANCE")
    kifs = d.core.interfaces.match_obsd(cstr(io.pfiio_name, 16), io.pfiio_flags)
    cdef int room = max(io.pfiio_size, 0)
    cdef int fits = min(room, len(kifs))
    out = bytearray(fits * sizeof(pfi_if))
    now = int(time.time())
    for i in range(fits):
        kif = kifs[i]
        if not kif.tzero:
            kif.tzero = now
        p = <pfi_if *>(<char *>out + i * sizeof(pfi_if))
        put_cstr(p.pfif_name, 16, kif.name)
        for j in range(8):
            (<uint64_t *>p.pfif_packets)[j] = kif.packets[j]
            (<uint64_t *>p.pfif_bytes)[j] = kif.bytes[j]
        p.pfif_tzero = kif.tzero
        p.pfif_rules = kif.rulerefs
        p.pfif_flags = (PFI_IFLAG_GROUP if kif.is_group else PFI_IFLAG_INSTANCE | PFI_IFLAG_ATTACHED) \
            | (kif.flags & PFI_IFLAG_SKIP)
    if fits:
        mem.write(<size_t>io.pfiio_buffer, bytes(out))
    io.pfiio_size = len(kifs)


def h_iclristats(d, ctx, bytearray buf, mem):
    """OpenBSD 3.x DIOCICLRISTATS: zero the counters of the selected kifs."""
    cdef pfioc_iface *io = <pfioc_iface *><char *>buf
    if io.pfiio_flags & ~PFI_FLAG_ALLMASK:
        raise Invalid("pfiio_flags outside PFI_FLAG_GROUP|PFI_FLAG_INSTANCE")
    kifs = d.core.interfaces.match_obsd(cstr(io.pfiio_name, 16), io.pfiio_flags)
    for kif in kifs:
        kif.clear_counters()
    io.pfiio_nzero = len(kifs)


def regions_iface(bytes data):
    cdef pfioc_iface io
    if len(data) < sizeof(io):
        return []
    memcpy(&io, <char *>data, sizeof(io))
    if io.pfiio_esize not in (sizeof(pfi_kif), sizeof(pfi_if)) or not 0 < io.pfiio_size <= REQUEST_MAXCOUNT:
        return []
    return [(<size_t>io.pfiio_buffer, io.pfiio_size * io.pfiio_esize, REGION_OUT)]


# --- the table --------------------------------------------------------------------------------
# Every command FreeBSD 12.1 knows (plus the OpenBSD 3.x ones served beside it): name, Linux
# command value, access class. Handlers are bound by name below; a known command without a
# handler answers ENODEV, as FreeBSD does for commands its kernel was built without (ALTQ).
COMMANDS = (
    ("DIOCSTART", DIOCSTART, ACC_RW),
    ("DIOCSTOP", DIOCSTOP, ACC_RW),
    ("DIOCADDRULE", DIOCADDRULE, ACC_RW),
    ("DIOCGETRULES", DIOCGETRULES, ACC_RO),
    ("DIOCGETRULE", DIOCGETRULE, ACC_RO_NO_CLEAR),
    ("DIOCCLRSTATES", DIOCCLRSTATES, ACC_RW),
    ("DIOCGETSTATE", DIOCGETSTATE, ACC_RO),
    ("DIOCSETSTATUSIF", DIOCSETSTATUSIF, ACC_RW),
    ("DIOCGETSTATUS", DIOCGETSTATUS, ACC_RO),
    ("DIOCCLRSTATUS", DIOCCLRSTATUS, ACC_RW),
    ("DIOCNATLOOK", DIOCNATLOOK, ACC_RO),
    ("DIOCSETDEBUG", DIOCSETDEBUG, ACC_RW),
    ("DIOCGETSTATES", DIOCGETSTATES, ACC_RO),
    ("DIOCCHANGERULE", DIOCCHANGERULE, ACC_RW),
    ("DIOCSETTIMEOUT", DIOCSETTIMEOUT, ACC_RW),
    ("DIOCGETTIMEOUT", DIOCGETTIMEOUT, ACC_RO),
    ("DIOCADDSTATE", DIOCADDSTATE, ACC_RW),
    ("DIOCCLRRULECTRS", DIOCCLRRULECTRS, ACC_RW),
    ("DIOCGETLIMIT", DIOCGETLIMIT, ACC_RO),
    ("DIOCSETLIMIT", DIOCSETLIMIT, ACC_RW),
    ("DIOCKILLSTATES", DIOCKILLSTATES, ACC_RW),
    ("DIOCSTARTALTQ", DIOCSTARTALTQ, ACC_RW),
    ("DIOCSTOPALTQ", DIOCSTOPALTQ, ACC_RW),
    ("DIOCADDALTQV0", DIOCADDALTQV0, ACC_RW),
    ("DIOCADDALTQV1", DIOCADDALTQV1, ACC_RW),
    ("DIOCGETALTQSV0", DIOCGETALTQSV0, ACC_RO),
    ("DIOCGETALTQSV1", DIOCGETALTQSV1, ACC_RO),
    ("DIOCGETALTQV0", DIOCGETALTQV0, ACC_RO),
    ("DIOCGETALTQV1", DIOCGETALTQV1, ACC_RO),
    ("DIOCCHANGEALTQV0", DIOCCHANGEALTQV0, ACC_RW),
    ("DIOCCHANGEALTQV1", DIOCCHANGEALTQV1, ACC_RW),
    ("DIOCGETQSTATSV0", DIOCGETQSTATSV0, ACC_RO),
    ("DIOCGETQSTATSV1", DIOCGETQSTATSV1, ACC_RO),
    ("DIOCBEGINADDRS", DIOCBEGINADDRS, ACC_RW),
    ("DIOCADDADDR", DIOCADDADDR, ACC_RW),
    ("DIOCGETADDRS", DIOCGETADDRS, ACC_RO),
    ("DIOCGETADDR", DIOCGETADDR, ACC_RO),
    ("DIOCCHANGEADDR", DIOCCHANGEADDR, ACC_RW),
    ("DIOCGETRULESETS", DIOCGETRULESETS, ACC_RO),
    ("DIOCGETRULESET", DIOCGETRULESET, ACC_RO),
    ("DIOCRCLRTABLES", DIOCRCLRTABLES, ACC_RO_IF_DUMMY),
    ("DIOCRADDTABLES", DIOCRADDTABLES, ACC_RO_IF_DUMMY),
    ("DIOCRDELTABLES", DIOCRDELTABLES, ACC_RO_IF_DUMMY),
    ("DIOCRGETTABLES", DIOCRGETTABLES, ACC_RO),
    ("DIOCRGETTSTATS", DIOCRGETTSTATS, ACC_RO),
    ("DIOCRCLRTSTATS", DIOCRCLRTSTATS, ACC_RO_IF_DUMMY),
    ("DIOCRCLRADDRS", DIOCRCLRADDRS, ACC_RO_IF_DUMMY),
    ("DIOCRADDADDRS", DIOCRADDADDRS, ACC_RO_IF_DUMMY),
    ("DIOCRDELADDRS", DIOCRDELADDRS, ACC_RO_IF_DUMMY),
    ("DIOCRSETADDRS", DIOCRSETADDRS, ACC_RO_IF_DUMMY),
    ("DIOCRGETADDRS", DIOCRGETADDRS, ACC_RO),
    ("DIOCRGETASTATS", DIOCRGETASTATS, ACC_RO),
    ("DIOCRCLRASTATS", DIOCRCLRASTATS, ACC_RW),
    ("DIOCRTSTADDRS", DIOCRTSTADDRS, ACC_RO),
    ("DIOCRSETTFLAGS", DIOCRSETTFLAGS, ACC_RO_IF_DUMMY),
    ("DIOCRINADEFINE", DIOCRINADEFINE, ACC_RW),
    ("DIOCOSFPFLUSH", DIOCOSFPFLUSH, ACC_RW),
    ("DIOCOSFPADD", DIOCOSFPADD, ACC_RW),
    ("DIOCOSFPGET", DIOCOSFPGET, ACC_RO),
    ("DIOCXBEGIN", DIOCXBEGIN, ACC_RW),
    ("DIOCXCOMMIT", DIOCXCOMMIT, ACC_RW),
    ("DIOCXROLLBACK", DIOCXROLLBACK, ACC_RW),
    ("DIOCGETSRCNODES", DIOCGETSRCNODES, ACC_RO),
    ("DIOCCLRSRCNODES", DIOCCLRSRCNODES, ACC_RW),
    ("DIOCSETHOSTID", DIOCSETHOSTID, ACC_RW),
    ("DIOCIGETIFACES", DIOCIGETIFACES, ACC_RO),
    ("DIOCSETIFFLAG", DIOCSETIFFLAG, ACC_RW),
    ("DIOCCLRIFFLAG", DIOCCLRIFFLAG, ACC_RW),
    ("DIOCKILLSRCNODES", DIOCKILLSRCNODES, ACC_RW),
    ("DIOCGIFSPEEDV0", DIOCGIFSPEEDV0, ACC_RO),
    ("DIOCGIFSPEEDV1", DIOCGIFSPEEDV1, ACC_RO),
    # older generations, served beside FreeBSD 12's where their command values differ
    ("DIOCICLRISTATS", DIOCICLRISTATS, ACC_RW),                 # OpenBSD 3.x
    ("DIOCGETSTATUS_OBSD37", DIOCGETSTATUS_OBSD37, ACC_RO),     # OpenBSD 3.7 / FreeBSD 6, 400 B
    ("DIOCGETSTATUS_NBSD", DIOCGETSTATUS_NBSD, ACC_RO),         # NetBSD (OpenBSD 4.2 base), 424 B
    ("DIOCGIFSPEED_FBSD6", DIOCGIFSPEED_FBSD6, ACC_RO),         # FreeBSD 6
    # OpenBSD 3.7 (376 B, by index) and NetBSD (16 B, a pointer) state commands; the 136-byte
    # kill/clear forms have the same values in both
    ("DIOCGETSTATE_OBSD37", DIOCGETSTATE_OBSD37, ACC_RO),
    ("DIOCADDSTATE_OBSD37", DIOCADDSTATE_OBSD37, ACC_RW),
    ("DIOCKILLSTATES_OBSD37", DIOCKILLSTATES_OBSD37, ACC_RW),
    ("DIOCCLRSTATES_OBSD37", DIOCCLRSTATES_OBSD37, ACC_RW),
    ("DIOCGETSTATE_NBSD", DIOCGETSTATE_NBSD, ACC_RO),
    ("DIOCADDSTATE_NBSD", DIOCADDSTATE_NBSD, ACC_RW),
)

# Handlers of this module: (handler, embedded-region function or None).
SPINE_HANDLERS = {
    "DIOCSTART": (h_start, None),
    "DIOCSTOP": (h_stop, None),
    "DIOCSETSTATUSIF": (h_setstatusif, None),
    "DIOCGETSTATUS": (h_getstatus, None),
    "DIOCCLRSTATUS": (h_clrstatus, None),
    "DIOCNATLOOK": (h_natlook, None),
    "DIOCSETDEBUG": (h_setdebug, None),
    "DIOCSETTIMEOUT": (h_settimeout, None),
    "DIOCGETTIMEOUT": (h_gettimeout, None),
    "DIOCGETLIMIT": (h_getlimit, None),
    "DIOCSETLIMIT": (h_setlimit, None),
    "DIOCSETHOSTID": (h_sethostid, None),
    "DIOCIGETIFACES": (h_igetifaces, regions_iface),
    "DIOCICLRISTATS": (h_iclristats, regions_iface),
}

# Concern modules contributing handlers, each with HANDLERS = {name: (handler, regions)}.
HANDLER_MODULES = (pf_ioctl_rules, pf_ioctl_table, pf_ioctl_state, pf_ioctl_misc)


def all_handlers():
    handlers = dict(SPINE_HANDLERS)
    for module in HANDLER_MODULES:
        for name, entry in module.HANDLERS.items():
            if name in handlers:
                raise RuntimeError(f"{name} has handlers in two modules ({module.__name__})")
            handlers[name] = entry
    names = {row[0] for row in COMMANDS}
    unknown = set(handlers) - names
    if unknown:
        raise RuntimeError(f"handlers for commands not in the table: {sorted(unknown)}")
    return handlers


class Command:
    """One row of the table, with the argument size taken from the command value itself."""
    __slots__ = ("name", "value", "size", "access", "handler", "regions")

    def __init__(self, name, value, access, handler=None, regions=None):
        self.name = name
        value &= 0xffffffff           # the header's macros reach Cython as C ints
        self.value = value
        # _IOWR carries its argument size in bits 16..29; _IO carries none
        self.size = (value >> 16) & 0x3fff if value & 0xc0000000 else 0
        self.access = access
        self.handler = handler
        self.regions = regions


def build_table():
    table = {}
    handlers = all_handlers()
    for row in COMMANDS:
        cmd = Command(*row, *handlers.get(row[0], ()))
        table[cmd.value] = cmd
        if cmd.size == 0:
            table[cmd.value | BSD_IOC_VOID] = cmd      # the BSD encoding of the same _IO
    return table


class FdContext:
    """What one open file description of /dev/pf holds. Core modules register what a fd opened
    (transactions, tickets) with `on_release`; closing the fd undoes it, so a client that
    never rolls back cannot wedge pf."""
    __slots__ = ("flags", "writable", "_release")

    def __init__(self, flags):
        self.flags = flags
        self.writable = (flags & 3) != 0        # O_WRONLY or O_RDWR: FreeBSD's FWRITE
        self._release = {}

    def on_release(self, key, callback):
        """Run callback() when the fd closes; the same key replaces an earlier callback,
        `forget(key)` drops it (e.g. once a transaction is committed)."""
        self._release[key] = callback

    def forget(self, key):
        self._release.pop(key, None)

    def release(self):
        callbacks, self._release = list(self._release.values()), {}
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("releasing what a closed fd held")


class Dispatcher:
    """The pf side of the device front's interface (docs/architecture.md)."""

    def __init__(self, core):
        self.core = core
        self.table = build_table()
        self._trace = log.isEnabledFor(logging.DEBUG)

    def open(self, flags):
        return FdContext(flags)

    def release(self, ctx):
        ctx.release()

    def layout(self, unsigned int cmd):
        entry = self.table.get(cmd)
        if entry is None:
            return (0, 0)
        return (entry.size, entry.size)

    def regions(self, unsigned int cmd, data):
        entry = self.table.get(cmd)
        if entry is None or entry.regions is None:
            return []
        return entry.regions(bytes(data))

    def ioctl(self, ctx, unsigned int cmd, arg, data, mem):
        entry = self.table.get(cmd)
        try:
            buf = self._argument(entry, arg, data, mem)
            if not ctx.writable:
                check_readonly(entry, buf)
            if entry is None or entry.handler is None:
                raise NoDevice("unknown command")
            with self.core.lock:
                entry.handler(self, ctx, buf, mem)
        except PfError as exc:
            if self._trace:
                log.debug("ioctl %s (0x%08x) -> %s", entry.name if entry else "?", cmd,
                          errno.errorcode.get(exc.errno, exc.errno))
            raise to_oserror(exc) from None
        if self._trace:
            log.debug("ioctl %s (0x%08x) -> ok", entry.name, cmd)
        return bytes(buf)

    @staticmethod
    def _argument(entry, arg, data, mem):
        """The top-level struct: what the kernel delivered, completed from caller memory."""
        size = entry.size if entry is not None else 0
        buf = bytearray(size)
        have = min(len(data), size)
        buf[:have] = data[:have]
        if have < size:
            buf[have:] = mem.read(arg + have, size - have)
        return buf


def check_readonly(entry, bytearray buf):
    """FreeBSD's list of commands a fd without FWRITE may issue; anything else is EACCES
    (unknown commands included: the check comes before dispatch)."""
    if entry is None or entry.access == ACC_RW:
        raise Access("fd not open for writing")
    if entry.access == ACC_RO_NO_CLEAR and (<pfioc_rule *><char *>buf).action == PF_GET_CLR_CNTR:
        raise Access("clearing counters needs a writable fd")
    if entry.access == ACC_RO_IF_DUMMY and not (<pfioc_table *><char *>buf).pfrio_flags & PFR_FLAG_DUMMY:
        raise Access("table change needs a writable fd")


def struct_sizes():
    """sizeof() of the argument structs as Cython compiled them from the header (the ABI test
    holds them against the reference and the ctypes library)."""
    return {
        "pf_status": sizeof(pf_status),
        "pfioc_natlook": sizeof(pfioc_natlook),
        "pfioc_tm": sizeof(pfioc_tm),
        "pfioc_limit": sizeof(pfioc_limit),
        "pfioc_if": sizeof(pfioc_if),
        "pfioc_iface": sizeof(pfioc_iface),
        "pfi_kif": sizeof(pfi_kif),
        "pfi_if": sizeof(pfi_if),
        "pfioc_rule": sizeof(pfioc_rule),
        "pfioc_table": sizeof(pfioc_table),
        "pfioc_altq_v1": sizeof(pfioc_altq_v1),
    }
