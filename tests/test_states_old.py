"""The older generations' state commands, served beside FreeBSD 12's where their command values
differ (pf-abi.md §3.2, §3.3, §3.5): DIOCGETSTATE / DIOCADDSTATE of OpenBSD 3.7 (376 B, the
kernel's pf_state inline, state chosen by index) and of NetBSD (16 B, a pointer to a 240-byte
pfsync_state), DIOCKILLSTATES / DIOCCLRSTATES in the 136-byte form (count in psk_af). Semantics,
errnos and byte orders are those kernels' (OpenBSD 3.7 / FreeBSD 6 sys/contrib/pf/net/pf_ioctl.c,
NetBSD sys/dist/pf/net/pf_ioctl.c).

Every behaviour test runs twice: in process, on a Dispatcher from pfd.build_dispatcher() with the
caller's memory being this process's, and through a live pfd's device.
"""
import contextlib
import ctypes
import errno
import ipaddress
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import shutil
import time

import pytest

from conftest import REPO
from states_helpers import (AF_INET6_BSD, IPPROTO_TCP, IPPROTO_UDP, be64, errno_of, ids,
                            make_state, rule_addr)
from pfkern.client import (AF_INET, AF_INET6, DIOCADDSTATE, DIOCADDSTATE_NBSD,
                           DIOCADDSTATE_OBSD37, DIOCCLRSTATES, DIOCCLRSTATES_NBSD,
                           DIOCCLRSTATES_OBSD37, DIOCGETSTATE, DIOCGETSTATE_NBSD,
                           DIOCGETSTATE_OBSD37, DIOCGETSTATES, DIOCKILLSTATES_NBSD,
                           DIOCKILLSTATES_OBSD37, PF_IN, PF_LIMIT_STATES, PF_OP_EQ, PF_OUT,
                           PFSTATE_ALLOWOPTS, PFSTATE_NOSYNC, PFSYNC_SCRUB_FLAG_VALID, PFTM_MAX,
                           PFTM_TCP_ESTABLISHED, PFTM_UDP_SINGLE, PfDevice, pf_state_obsd37,
                           pfioc_state, pfioc_state_kill, pfioc_state_kill_obsd37,
                           pfioc_state_nbsd, pfioc_state_obsd37, pfioc_states, pfsync_state,
                           pfsync_state_nbsd)
from pfkern import pf_ioctl, pf_ioctl_state as M

WILD = 0xdead0000                  # a user address nothing maps in the test process
AF_INET6_OBSD = 24                 # OpenBSD's / NetBSD's AF_INET6
NO_RULE = 0xffffffff
TCP_EST = PFTM_TCP_ESTABLISHED
TIMEOUT_TCP_EST = 86400            # tcp.established by default (FreeBSD 12 = OpenBSD 3.7)

# Two translated connections (pf-abi.md §1 DIOCNATLOOK's cases) and what the old generations
# call their hosts: lan = the inside host, gwy = its translation, ext = the peer.
NAT_OUT = dict(wire=(("198.51.100.7", 80), ("192.0.2.1", 50000)),
               stack=(("198.51.100.7", 80), ("10.0.0.5", 1234)), direction=PF_OUT,
               lan=("10.0.0.5", 1234), gwy=("192.0.2.1", 50000), ext=("198.51.100.7", 80))
RDR_IN = dict(wire=(("198.51.100.9", 4321), ("192.0.2.1", 8080)),
              stack=(("198.51.100.9", 4321), ("10.0.0.6", 80)), direction=PF_IN,
              lan=("10.0.0.6", 80), gwy=("192.0.2.1", 8080), ext=("198.51.100.9", 4321))


# --- the two ways in ----------------------------------------------------------------------

class _iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
for _fn in (_libc.process_vm_readv, _libc.process_vm_writev):
    _fn.restype = ctypes.c_ssize_t
    _fn.argtypes = [ctypes.c_int, ctypes.POINTER(_iovec), ctypes.c_ulong, ctypes.POINTER(_iovec),
                    ctypes.c_ulong, ctypes.c_ulong]


class SelfMemory:
    """CallerMemory over this process, through process_vm_readv/writev as the FUSE front does:
    an unmapped address is EFAULT, not a crash."""

    def _io(self, fn, addr, buf, length):
        local, remote = _iovec(ctypes.addressof(buf), length), _iovec(addr, length)
        if fn(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) != length:
            raise OSError(errno.EFAULT, "bad address")

    def read(self, addr, length):
        buf = ctypes.create_string_buffer(length)
        if length:
            self._io(_libc.process_vm_readv, addr, buf, length)
        return buf.raw

    def write(self, addr, data):
        data = bytes(data)
        if data:
            self._io(_libc.process_vm_writev, addr, ctypes.create_string_buffer(data, len(data)),
                     len(data))


class InProcess(PfDevice):
    """PfDevice's helpers on a Dispatcher in this process (fd context read-write or read-only);
    embedded pointers are addresses in this process (unmapped ones EFAULT)."""

    def __init__(self, dispatcher, ctx, mode):
        self.fd = -1
        self.path = "(in process)"
        self.mode = mode
        self.bsd_io = False
        self.d = dispatcher
        self.ctx = ctx
        self.mem = SelfMemory()

    def ioctl(self, cmd, arg=None):
        data = arg.to_bytes() if arg is not None else b""
        out = self.d.ioctl(self.ctx, cmd, ctypes.addressof(arg) if arg is not None else 0, data,
                           self.mem)
        if arg is not None:
            ctypes.memmove(ctypes.addressof(arg), out, len(out))
        return arg

    def close(self):
        pass


@pytest.fixture(scope="module")
def dispatcher():
    from pfkern.pfd import build_dispatcher
    d = build_dispatcher()
    yield d
    d.core.interfaces.close()


@pytest.fixture(params=["inproc", "device"])
def pf(request):
    """(read-write, read-only) handles, states cleared before and after."""
    if request.param == "inproc":
        d = request.getfixturevalue("dispatcher")
        rw = InProcess(d, d.open(os.O_RDWR), "rw")
        ro = InProcess(d, d.open(os.O_RDONLY), "r")
    else:
        path = request.getfixturevalue("module_pfd").path
        rw, ro = PfDevice(path, "rw"), PfDevice(path, "r")
    clear12(rw)
    yield rw, ro
    clear12(rw)
    rw.close()
    ro.close()


@pytest.fixture
def dev(pf):
    return pf[0]


@pytest.fixture
def rodev(pf):
    return pf[1]


# --- helpers ------------------------------------------------------------------------------

def clear12(dev):
    psk = pfioc_state_kill()
    return dev.ioctl(DIOCCLRSTATES, psk).psk_killed


def add12(dev, st):
    dev.ioctl(DIOCADDSTATE, pfioc_state(state=st))


def get12(dev, st):
    ps = pfioc_state()
    ps.state.id, ps.state.creatorid = st.id, st.creatorid
    return dev.ioctl(DIOCGETSTATE, ps).state


def conn(c, **kw):
    """A FreeBSD 12 pfsync_state for one of the connections above."""
    return make_state(c["wire"], c["stack"], direction=c["direction"], **kw)


def udp(i, **kw):
    """An untranslated outbound UDP state 10.1.x.y:1000+i -> 10.2.0.1:53 (id i)."""
    kw.setdefault("timeout", PFTM_UDP_SINGLE)
    kw.setdefault("id", i)
    return make_state((("10.2.0.1", 53), (f"10.1.{i // 250}.{i % 250 + 1}", 1000 + i)),
                      proto=IPPROTO_UDP, **kw)


def get37(dev, nr, raw_hole=None):
    ps = pfioc_state_obsd37(nr=nr)
    if raw_hole is not None:
        ctypes.memmove(ctypes.addressof(ps) + 4, raw_hole, 4)
    return dev.ioctl(DIOCGETSTATE_OBSD37, ps)


def getnb(dev, nr, target=None):
    """NetBSD DIOCGETSTATE; `target` a pfsync_state_nbsd or a raw address."""
    sp = pfsync_state_nbsd() if target is None else target
    ps = pfioc_state_nbsd(nr=nr)
    ps.state = sp if isinstance(sp, int) else ctypes.addressof(sp)
    dev.ioctl(DIOCGETSTATE_NBSD, ps)
    return sp, ps


def kill37(dev, af=0, proto=0, src=None, dst=None, ifname="", cmd=DIOCKILLSTATES_OBSD37):
    psk = pfioc_state_kill_obsd37(psk_af=af, psk_proto=proto, psk_ifname=ifname.encode())
    if src is not None:
        psk.psk_src = src
    if dst is not None:
        psk.psk_dst = dst
    return dev.ioctl(cmd, psk)


def host(h):
    """(address text, host-order port) of a pf_state_host / pfsync_state_host_nbsd."""
    return (h.addr.ip(AF_INET).compressed, socket.ntohs(h.port))


def counter(i):
    """The id counter of a state made by make_state(id=i) (stored htobe64)."""
    return int.from_bytes(i.to_bytes(8, "little"), "big")


def old_state(wire_like, af=AF_INET, proto=IPPROTO_TCP, direction=PF_OUT, ifname="all", id=0,
              creatorid=0, timeout=TCP_EST, expire=None, **fields):
    """An OpenBSD 3.7 pf_state from lan/gwy/ext (a dict like NAT_OUT); expire defaults to the
    wall clock now (the kernel's last-activity stamp)."""
    st = pf_state_obsd37()
    st.id, st.creatorid = id, creatorid
    st.u.ifname = ifname.encode()
    for name in ("lan", "gwy", "ext"):
        a, p = wire_like[name]
        getattr(st, name).addr.set(a)
        getattr(st, name).port = socket.htons(p)
    st.af, st.proto, st.direction, st.timeout = af, proto, direction, timeout
    st.src.state = st.dst.state = 4
    st.expire = int(time.time()) if expire is None else expire
    for k, v in fields.items():
        setattr(st, k, v)
    return st


def add37(dev, st):
    return dev.ioctl(DIOCADDSTATE_OBSD37, pfioc_state_obsd37(state=st))


def nb_state(wire_like, af=AF_INET, proto=IPPROTO_TCP, direction=PF_OUT, ifname="all", id=(0, 0),
             creatorid=0, timeout=TCP_EST, expire=0, **fields):
    st = pfsync_state_nbsd()
    st.id[0], st.id[1] = id
    st.creatorid = creatorid
    st.ifname = ifname.encode()
    for name in ("lan", "gwy", "ext"):
        a, p = wire_like[name]
        getattr(st, name).addr.set(a)
        getattr(st, name).port = socket.htons(p)
    st.af, st.proto, st.direction, st.timeout, st.expire = af, proto, direction, timeout, expire
    st.src.state = st.dst.state = 4
    for k, v in fields.items():
        setattr(st, k, v)
    return st


def addnb(dev, sp):
    ps = pfioc_state_nbsd()
    ps.state = sp if isinstance(sp, int) else ctypes.addressof(sp)
    return dev.ioctl(DIOCADDSTATE_NBSD, ps)


# --- the table rows and the client library --------------------------------------------------

def test_command_values_and_rows():
    """Values as pf-abi.md §3.5 gives them, in the header (through Cython), the client library
    and the rows handed to pf_ioctl; the NetBSD names of the kill forms are the same values."""
    ref = {"DIOCGETSTATE_OBSD37": 0xc1784413, "DIOCADDSTATE_OBSD37": 0xc1784425,
           "DIOCKILLSTATES_OBSD37": 0xc0884429, "DIOCCLRSTATES_OBSD37": 0xc0884412,
           "DIOCGETSTATE_NBSD": 0xc0104413, "DIOCADDSTATE_NBSD": 0xc0104425}
    table = {c.name: c for c in pf_ioctl.build_table().values()}
    assert {n: table[n].value for n in ref} == ref
    from pfkern import client
    assert {n: getattr(client, n) for n in ref} == ref
    assert (DIOCKILLSTATES_NBSD, DIOCCLRSTATES_NBSD) == (ref["DIOCKILLSTATES_OBSD37"],
                                                         ref["DIOCCLRSTATES_OBSD37"])
    ro, rw = table["DIOCGETSTATE"].access, table["DIOCKILLSTATES"].access
    assert {n: table[n].access for n in ref} == {
        "DIOCGETSTATE_OBSD37": ro, "DIOCGETSTATE_NBSD": ro,
        "DIOCADDSTATE_OBSD37": rw, "DIOCADDSTATE_NBSD": rw,
        "DIOCKILLSTATES_OBSD37": rw, "DIOCCLRSTATES_OBSD37": rw}
    # none collides with a FreeBSD 12 command
    freebsd = {row[1] & 0xffffffff for row in pf_ioctl.COMMANDS if row[0] not in ref}
    assert not freebsd & set(ref.values())


def test_table_binds_the_handlers():
    table = {c.name: c for c in pf_ioctl.build_table().values()}
    sizes = {"DIOCGETSTATE_OBSD37": 376, "DIOCADDSTATE_OBSD37": 376, "DIOCKILLSTATES_OBSD37": 136,
             "DIOCCLRSTATES_OBSD37": 136, "DIOCGETSTATE_NBSD": 16, "DIOCADDSTATE_NBSD": 16}
    for name, size in sizes.items():
        assert table[name].size == size
        assert table[name].handler is M.HANDLERS[name][0]
        assert table[name].regions is M.HANDLERS[name][1]
    # FreeBSD 12's keep their handlers and sizes
    assert table["DIOCGETSTATE"].handler is M.h_getstate and table["DIOCGETSTATE"].size == 242


def test_regions_of_the_netbsd_pointer():
    ps = pfioc_state_nbsd(nr=3)
    ps.state = 0x7000
    assert M.regions_getstate_nbsd(ps.to_bytes()) == [(0x7000, 240, 2)]
    assert M.regions_addstate_nbsd(ps.to_bytes()) == [(0x7000, 240, 1)]
    assert M.regions_getstate_nbsd(pfioc_state_nbsd().to_bytes()) == []
    assert M.regions_addstate_nbsd(b"\x01\x02") == []


# --- OpenBSD 3.7 DIOCGETSTATE ---------------------------------------------------------------

def test_getstate_obsd37_is_the_raw_kernel_state(dev, rodev):
    st = conn(NAT_OUT, id=0x0102030405060708, creatorid=0x0a0b0c0d, creation=100, expire=3600,
              log=1, state_flags=PFSTATE_ALLOWOPTS, ifname="lo")
    st.src.seqlo, st.src.seqhi, st.src.seqdiff = (socket.htonl(v) for v in (1000, 2000, 77))
    st.src.max_win, st.src.mss, st.src.wscale = socket.htons(65535), socket.htons(1460), 7
    st.dst.seqlo = socket.htonl(0xfffffff0)
    st.src.scrub.scrub_flag = PFSYNC_SCRUB_FLAG_VALID
    st.rt_addr.set("192.0.2.254")
    add12(dev, st)
    hole = b"\xaa\xbb\xcc\xdd"
    ps = get37(rodev, 0, raw_hole=hole)              # read-only fds may ask, as in 3.7
    raw = ps.to_bytes()
    assert ps.nr == 0 and raw[4:8] == hole           # the hole comes back as it went
    s = ps.state
    assert raw[8:16] == bytes.fromhex("0102030405060708")     # id as stored: htobe64
    assert raw[8 + 348:8 + 352] == bytes.fromhex("0a0b0c0d")  # creatorid as pfctl HTONLs it
    assert s.u.ifname == b"lo"
    assert (host(s.lan), host(s.gwy), host(s.ext)) == (NAT_OUT["lan"], NAT_OUT["gwy"], NAT_OUT["ext"])
    assert s.lan.pad == s.gwy.pad == s.ext.pad == 0
    # the kernel's own numbers: host order
    assert (s.src.seqlo, s.src.seqhi, s.src.seqdiff) == (1000, 2000, 77)
    assert (s.src.max_win, s.src.mss, s.src.wscale, s.src.state) == (65535, 1460, 7, 4)
    assert s.dst.seqlo == 0xfffffff0
    assert s.src.scrub is not None and s.dst.scrub is None      # a token for "scrubbed"
    assert s.rule.nr == s.anchor.nr == s.nat_rule.nr == NO_RULE  # the default rule: -1
    assert raw[8 + 256 + 4:8 + 256 + 8] == bytes(4)
    assert s.rt_addr.ip(AF_INET).compressed == "192.0.2.254"
    assert s.rt_kif is None and s.src_node is None and s.nat_src_node is None
    now = time.time()
    assert now - 103 <= s.creation <= now - 99       # absolute, wall clock (time_second)
    assert 3597 <= s.expire <= 3600                  # seconds left, host order
    assert s.pfsync_time == 0 and s.tag == 0 and list(s.packets) == [0, 0]
    assert (s.af, s.proto, s.direction, s.log, s.allow_opts, s.timeout) == \
        (AF_INET, IPPROTO_TCP, PF_OUT, 1, 1, TCP_EST)
    assert s.sync_flags == 0 and s.pad == 0


def test_getstate_obsd37_inbound_and_inet6(dev):
    add12(dev, conn(RDR_IN, id=1, state_flags=PFSTATE_NOSYNC))
    s = get37(dev, 0).state
    assert (host(s.lan), host(s.gwy), host(s.ext)) == (RDR_IN["lan"], RDR_IN["gwy"], RDR_IN["ext"])
    assert s.direction == PF_IN and s.u.ifname == b"all"
    assert s.sync_flags == 0x01                      # 3.7's PFSTATE_NOSYNC
    clear12(dev)
    add12(dev, make_state((("2001:db8::7", 443), ("2001:db8:1::5", 5555)), id=2,
                          af=AF_INET6_BSD, timeout=PFTM_UDP_SINGLE, proto=IPPROTO_UDP))
    s = get37(dev, 0).state
    assert s.af == AF_INET6 and s.proto == IPPROTO_UDP
    assert s.lan.addr.ip(AF_INET6).compressed == "2001:db8:1::5" and socket.ntohs(s.lan.port) == 5555
    assert s.ext.addr.ip(AF_INET6).compressed == "2001:db8::7"


def test_getstate_selects_by_index_in_id_order(dev):
    """The id tree's order: the ids as stored (htobe64) compared as numbers, then creatorid --
    on a little-endian host not the counters' order."""
    for i, c in ((2, 1), (256, 1), (1, 9), (1, 2), (3, 1)):
        add12(dev, udp(i * 10 + c, id=i, creatorid=c))
    want = sorted((be64(i), socket.htonl(c)) for i, c in ((2, 1), (256, 1), (1, 9), (1, 2), (3, 1)))
    got37 = [(get37(dev, n).state.id, get37(dev, n).state.creatorid) for n in range(5)]
    gotnb = []
    for n in range(5):
        sp, _ = getnb(dev, n)
        gotnb.append((int.from_bytes(bytes(sp)[0:8], "little"), sp.creatorid))
    assert got37 == gotnb == want
    assert [counter(i) for i, _ in got37] == [256, 1, 1, 2, 3]
    assert [socket.ntohl(c) for _, c in got37][1:3] == [2, 9]


def test_getstate_past_the_end_is_ebusy(dev, rodev):
    assert errno_of(get37, rodev, 0) == errno.EBUSY
    assert errno_of(getnb, rodev, 0) == errno.EBUSY
    for i in range(3):
        add12(dev, udp(i + 1))
    get37(rodev, 2)
    for nr in (3, 4, 1000, 0x7fffffff, 0xffffffff):
        assert errno_of(get37, rodev, nr) == errno.EBUSY
        assert errno_of(getnb, rodev, nr) == errno.EBUSY


def test_getstate_obsd37_counters_are_32_bit_host_order(dispatcher):
    """No ioctl counts packets: in process only."""
    dev = InProcess(dispatcher, dispatcher.open(os.O_RDWR), "rw")
    clear12(dev)
    st = udp(1)
    add12(dev, st)
    assert dispatcher.core.states.account(st.id, st.creatorid, 0, 3, 0x60000000)
    assert dispatcher.core.states.account(st.id, st.creatorid, 1, 1, 40)
    s = get37(dev, 0).state
    assert list(s.packets) == [3, 1]
    assert list(s.bytes) == [0x20000000, 40]         # 0x1_2000_0000 wrapped to 32 bits
    sp, _ = getnb(dev, 0)
    assert [list(p) for p in sp.packets] == [[0, 3], [0, 1]]            # {high, low}, host order
    assert [list(b) for b in sp.bytes] == [[1, 0x20000000], [0, 40]]
    clear12(dev)


# --- NetBSD DIOCGETSTATE ------------------------------------------------------------------

def test_getstate_netbsd_writes_through_the_pointer(dev, rodev):
    st = conn(RDR_IN, id=0x1122334455667788, creatorid=0x01020304, creation=50, expire=100,
              log=2, timeout=TCP_EST)
    st.src.seqlo, st.src.mss, st.src.max_win = socket.htonl(123456), socket.htons(1460), socket.htons(512)
    st.dst.scrub.scrub_flag = PFSYNC_SCRUB_FLAG_VALID
    st.dst.scrub.pfss_flags = socket.htons(0x0001 | 0x0040)     # only PFSS_TIMESTAMP survives
    st.dst.scrub.pfss_ttl, st.dst.scrub.pfss_ts_mod = 61, socket.htonl(0xabcdef)
    st.rt_addr.set("192.0.2.77")
    add12(dev, st)
    sp = pfsync_state_nbsd()
    ctypes.memset(ctypes.addressof(sp), 0x5a, 240)
    _, ps = getnb(rodev, 0, sp)
    assert ps.nr == 0 and ps.state == ctypes.addressof(sp)      # the struct itself unchanged
    raw = bytes(sp)
    assert raw[0:8] == bytes.fromhex("1122334455667788")        # id as stored
    assert raw[228:232] == bytes.fromhex("01020304")
    assert sp.ifname == b"all"
    assert (host(sp.lan), host(sp.gwy), host(sp.ext)) == (RDR_IN["lan"], RDR_IN["gwy"], RDR_IN["ext"])
    assert list(sp.lan.pad) == [0, 0, 0]
    # host order throughout (pf_state_peer_to_pfsync, pf_state_counter_to_pfsync, rule numbers)
    assert (sp.src.seqlo, sp.src.mss, sp.src.max_win, sp.src.state) == (123456, 1460, 512, 4)
    assert sp.src.scrub.scrub_flag == 0
    assert sp.dst.scrub.scrub_flag == PFSYNC_SCRUB_FLAG_VALID
    assert (sp.dst.scrub.pfss_flags, sp.dst.scrub.pfss_ttl, sp.dst.scrub.pfss_ts_mod) == (1, 61, 0xabcdef)
    assert sp.rt_addr.ip(AF_INET).compressed == "192.0.2.77"
    assert sp.rule == sp.anchor == sp.nat_rule == NO_RULE
    assert 50 <= sp.creation <= 52 and 97 <= sp.expire <= 100    # age and seconds left
    assert (sp.af, sp.proto, sp.direction, sp.log, sp.allow_opts, sp.timeout) == \
        (AF_INET, IPPROTO_TCP, PF_IN, 2, 0, TCP_EST)
    assert sp.sync_flags == 0 and sp.updates == 0


def test_getstate_netbsd_bad_pointer_is_efault(dev, rodev):
    add12(dev, udp(1))
    for bad in (0, WILD):
        ps = pfioc_state_nbsd(nr=0)
        ps.state = bad
        before = ps.to_bytes()
        assert errno_of(rodev.ioctl, DIOCGETSTATE_NBSD, ps) == errno.EFAULT
        assert ps.to_bytes() == before
        ps.nr = 1                                     # past the end: EBUSY comes first
        assert errno_of(rodev.ioctl, DIOCGETSTATE_NBSD, ps) == errno.EBUSY
    assert len(dev.get_states()) == 1


# --- DIOCKILLSTATES / DIOCCLRSTATES, 136 bytes -------------------------------------------

def populate(dev):
    """1 NAT outbound, 2 rdr inbound, 3 UDP outbound bound to lo, 4 IPv6 outbound."""
    add12(dev, conn(NAT_OUT, id=1))
    add12(dev, conn(RDR_IN, id=2))
    add12(dev, make_state((("192.0.2.20", 53), ("10.0.1.3", 3000)), id=3, proto=IPPROTO_UDP,
                          timeout=PFTM_UDP_SINGLE, ifname="lo"))
    add12(dev, make_state((("2001:db8:1::2", 80), ("2001:db8::1", 4000)), id=4))


def left(dev):
    return {counter(s.id) for s in dev.get_states()}


@pytest.mark.parametrize("criteria, killed", [
    (dict(), [1, 2, 3, 4]),
    (dict(af=AF_INET), [1, 2, 3]),
    (dict(af=AF_INET6), [4]),
    (dict(af=AF_INET6_BSD), [4]),
    (dict(af=AF_INET6_OBSD), [4]),
    (dict(proto=IPPROTO_UDP), [3]),
    (dict(proto=1), []),
    # psk_src is matched on lan, psk_dst on ext, whatever the direction (3.7)
    (dict(src=rule_addr("10.0.0.5")), [1]),
    (dict(src=rule_addr("192.0.2.1")), []),            # gwy is never matched
    (dict(src=rule_addr("10.0.0.6")), [2]),            # the inside host of an inbound state
    (dict(src=rule_addr("198.51.100.9")), []),         # its peer is ext, matched by psk_dst
    (dict(dst=rule_addr("198.51.100.9")), [2]),
    (dict(dst=rule_addr("198.51.100.0", 24)), [1, 2]),
    (dict(src=rule_addr("10.0.0.0", 16)), [1, 2, 3]),
    (dict(af=AF_INET, src=rule_addr("10.0.0.0", 24, neg=1)), [3]),
    (dict(src=rule_addr("2001:db8::", 64)), [4]),
    (dict(src=rule_addr(op=PF_OP_EQ, ports=(80, 0))), [2]),          # lan port
    (dict(dst=rule_addr(op=PF_OP_EQ, ports=(80, 0))), [1, 4]),       # ext port
    (dict(ifname="lo"), [3]),
    (dict(ifname="all"), [1, 2, 4]),
    (dict(ifname="eth9"), []),
])
def test_killstates_136(dev, criteria, killed):
    populate(dev)
    psk = kill37(dev, **criteria)
    assert psk.psk_af == len(killed)                     # the count, in psk_af
    assert left(dev) == {1, 2, 3, 4} - set(killed)


def test_killstates_136_leaves_the_rest_of_the_struct(dev):
    populate(dev)
    psk = pfioc_state_kill_obsd37(psk_af=AF_INET, psk_proto=IPPROTO_UDP, psk_ifname=b"lo")
    ctypes.memmove(ctypes.addressof(psk) + 1, b"\x11\x22\x33", 3)       # the hole
    psk.psk_dst = rule_addr("192.0.2.20")
    before = psk.to_bytes()
    dev.ioctl(DIOCKILLSTATES_NBSD, psk)
    after = psk.to_bytes()
    assert after[0] == 1 and after[1:] == before[1:]


def test_clrstates_136(dev):
    populate(dev)
    # everything but psk_ifname is ignored
    assert kill37(dev, af=AF_INET6, proto=1, src=rule_addr("1.2.3.4"), ifname="lo",
                  cmd=DIOCCLRSTATES_OBSD37).psk_af == 1
    assert kill37(dev, ifname="eth9", cmd=DIOCCLRSTATES_OBSD37).psk_af == 0
    assert kill37(dev, ifname="all", cmd=DIOCCLRSTATES_NBSD).psk_af == 3
    assert dev.get_states() == []


@pytest.mark.parametrize("cmd", [DIOCKILLSTATES_OBSD37, DIOCCLRSTATES_OBSD37])
def test_kill_count_is_truncated_to_psk_af(dev, cmd):
    for i in range(300):
        add12(dev, udp(i + 1))
    assert kill37(dev, cmd=cmd).psk_af == 300 - 256
    assert dev.get_states() == []
    for i in range(256):
        add12(dev, udp(i + 1))
    assert kill37(dev, cmd=cmd).psk_af == 0
    assert dev.get_states() == []


# --- OpenBSD 3.7 DIOCADDSTATE ---------------------------------------------------------------

def test_addstate_obsd37_round_trip(dev):
    st = old_state(NAT_OUT, id=be64(7), creatorid=socket.htonl(0x99), log=1, allow_opts=1,
                   creation=12345, packets=(5, 6), bytes=(7, 8), pfsync_time=9, tag=3, ifname="lo")
    st.src.seqlo, st.src.seqhi, st.src.max_win, st.src.mss, st.src.wscale = 1000, 2000, 65535, 1460, 3
    st.src.scrub = 0xfffff80012345678                # a kernel pointer from userland: ignored
    st.rt_addr.set("192.0.2.254")
    add37(dev, st)
    got = get37(dev, 0).state
    assert (got.id, got.creatorid) == (st.id, st.creatorid)
    assert (host(got.lan), host(got.gwy), host(got.ext)) == (NAT_OUT["lan"], NAT_OUT["gwy"], NAT_OUT["ext"])
    assert (got.src.seqlo, got.src.seqhi, got.src.max_win, got.src.mss, got.src.wscale) == \
        (1000, 2000, 65535, 1460, 3)
    assert got.src.scrub is None
    assert (got.log, got.allow_opts, got.direction, got.timeout, got.u.ifname) == (1, 1, PF_OUT, TCP_EST, b"lo")
    assert got.rt_addr.ip(AF_INET).compressed == "192.0.2.254"
    # replaced by the kernel: rule pointers, creation, counters, pfsync_time; tag not kept
    assert got.rule.nr == got.anchor.nr == got.nat_rule.nr == NO_RULE
    assert abs(got.creation - time.time()) <= 2
    assert list(got.packets) == [0, 0] and list(got.bytes) == [0, 0] and got.pfsync_time == 0
    assert TIMEOUT_TCP_EST - 2 <= got.expire <= TIMEOUT_TCP_EST
    # the same state in FreeBSD 12's form: keys, network-order peers, ALLOWOPTS
    s12 = get12(dev, pfsync_state(id=st.id, creatorid=st.creatorid))
    assert [s12.key[1].addr[1].ip(AF_INET).compressed, socket.ntohs(s12.key[1].port[1])] == ["10.0.0.5", 1234]
    assert [s12.key[0].addr[1].ip(AF_INET).compressed, socket.ntohs(s12.key[0].port[1])] == ["192.0.2.1", 50000]
    assert s12.key[0].addr[0].ip(AF_INET).compressed == s12.key[1].addr[0].ip(AF_INET).compressed == "198.51.100.7"
    assert socket.ntohl(s12.src.seqlo) == 1000 and socket.ntohs(s12.src.mss) == 1460
    assert s12.state_flags == PFSTATE_ALLOWOPTS and s12.ifname == b"lo"


def test_addstate_obsd37_inbound_translation(dev):
    add37(dev, old_state(RDR_IN, direction=PF_IN, id=be64(1), creatorid=1))
    s12 = dev.get_states()[0]
    assert s12.direction == PF_IN
    wire = [(s12.key[0].addr[i].ip(AF_INET).compressed, socket.ntohs(s12.key[0].port[i])) for i in (0, 1)]
    stack = [(s12.key[1].addr[i].ip(AF_INET).compressed, socket.ntohs(s12.key[1].port[i])) for i in (0, 1)]
    assert wire == [RDR_IN["ext"], RDR_IN["gwy"]] and stack == [RDR_IN["ext"], RDR_IN["lan"]]
    # a proxy's DIOCNATLOOK finds the inside host of the rdr
    assert dev.natlook(AF_INET, IPPROTO_TCP, "192.0.2.1", 8080, "198.51.100.9", 4321, PF_IN)[:2] == \
        (ipaddress.ip_address("10.0.0.6"), 80)


def test_addstate_obsd37_expire_is_the_last_activity_stamp(dev):
    now = int(time.time())
    add37(dev, old_state(NAT_OUT, id=be64(1), creatorid=1, expire=now - 100))
    add37(dev, old_state(RDR_IN, id=be64(2), creatorid=1, direction=PF_IN, expire=now + 5000))
    add37(dev, old_state(udp_like(3), id=be64(3), creatorid=1, proto=IPPROTO_UDP,
                         timeout=PFTM_UDP_SINGLE, expire=0))
    exp = {counter(s.id): socket.ntohl(s.expire) for s in dev.get_states()}
    assert TIMEOUT_TCP_EST - 102 <= exp[1] <= TIMEOUT_TCP_EST - 99
    assert TIMEOUT_TCP_EST - 2 <= exp[2] <= TIMEOUT_TCP_EST      # a future stamp counts as now
    assert exp[3] == 0                                           # long expired


def udp_like(i):
    return dict(lan=(f"10.3.0.{i}", 1000 + i), gwy=(f"10.3.0.{i}", 1000 + i), ext=("10.4.0.1", 53))


def test_addstate_obsd37_id_zero_gets_ours(dev):
    hostid = dev.status().hostid
    add37(dev, old_state(NAT_OUT))
    add37(dev, old_state(RDR_IN, direction=PF_IN))
    got = dev.get_states()
    assert [s.creatorid for s in got] == [hostid, hostid]
    assert got[0].id != got[1].id and got[0].id and got[1].id
    # a non-zero id with creatorid 0 is taken as it is (FreeBSD 12's form refuses creatorid 0)
    add37(dev, old_state(udp_like(1), id=be64(77), proto=IPPROTO_UDP, timeout=PFTM_UDP_SINGLE))
    assert (be64(77), 0) in ids(dev.get_states())


@pytest.mark.parametrize("change, err", [
    (dict(timeout=PFTM_MAX), errno.EINVAL), (dict(timeout=22), errno.EINVAL),   # PFTM_UNTIL_PACKET
    (dict(timeout=255), errno.EINVAL),
    (dict(ifname="nosuch0"), errno.ENOENT), (dict(ifname=""), errno.ENOENT),
    (dict(af=0), errno.EINVAL), (dict(af=99), errno.EINVAL), (dict(direction=0), errno.EINVAL),
    (dict(direction=3), errno.EINVAL),
])
def test_addstate_obsd37_errors(dev, change, err):
    add37(dev, old_state(NAT_OUT, id=be64(50), creatorid=1))
    before = ids(dev.get_states())
    kw = dict(id=be64(1), creatorid=1, direction=PF_IN)
    kw.update(change)
    assert errno_of(add37, dev, old_state(RDR_IN, **kw)) == err
    assert ids(dev.get_states()) == before


def test_addstate_obsd37_peer_state_checked(dev):
    st = old_state(NAT_OUT, id=be64(1), creatorid=1)
    st.src.state = 13
    assert errno_of(add37, dev, st) == errno.EINVAL
    assert dev.get_states() == []


def test_addstate_obsd37_collisions_and_limit_are_enomem(dev):
    add37(dev, old_state(NAT_OUT, id=be64(1), creatorid=1))
    assert errno_of(add37, dev, old_state(NAT_OUT, id=be64(2), creatorid=1)) == errno.ENOMEM  # key
    assert errno_of(add37, dev, old_state(RDR_IN, direction=PF_IN, id=be64(1), creatorid=1)) == errno.ENOMEM  # id
    old = dev.set_limit(PF_LIMIT_STATES, 1)
    try:
        assert errno_of(add37, dev, old_state(RDR_IN, direction=PF_IN, id=be64(3), creatorid=1)) == errno.ENOMEM
    finally:
        dev.set_limit(PF_LIMIT_STATES, old)
    assert [counter(s.id) for s in dev.get_states()] == [1]


def test_addstate_inet6_families(dev):
    v6 = dict(lan=("2001:db8::5", 1000), gwy=("2001:db8::5", 1000), ext=("2001:db8:1::1", 80))
    for i, af in enumerate((AF_INET6, AF_INET6_BSD, AF_INET6_OBSD)):
        add37(dev, old_state({k: (a, p + i) for k, (a, p) in v6.items()}, af=af, id=be64(i + 1),
                             creatorid=1))
    assert [s.af for s in dev.get_states()] == [AF_INET6] * 3


# --- NetBSD DIOCADDSTATE --------------------------------------------------------------------

def test_addstate_netbsd_round_trip(dev):
    sp = nb_state(RDR_IN, direction=PF_IN, id=(0x11223344, 0x55667788), creatorid=0x0a0b0c0d,
                  expire=200, log=1, allow_opts=1, creation=999)
    sp.src.seqlo, sp.src.seqhi, sp.src.max_win, sp.src.wscale = 1000, 2000, 512, 2
    sp.src.mss = socket.htons(1460)        # NetBSD took mss through ntohs() (only mss)
    sp.src.scrub.scrub_flag = PFSYNC_SCRUB_FLAG_VALID
    sp.rt_addr.set("192.0.2.9")
    sp.packets[0][1] = 5
    before = bytes(sp)
    addnb(dev, sp)
    assert bytes(sp) == before
    got, _ = getnb(dev, 0)
    assert (bytes(got)[0:8], got.creatorid) == (bytes(sp)[0:8], 0x0a0b0c0d)
    assert (host(got.lan), host(got.gwy), host(got.ext)) == (RDR_IN["lan"], RDR_IN["gwy"], RDR_IN["ext"])
    assert (got.src.seqlo, got.src.seqhi, got.src.max_win, got.src.wscale, got.src.mss) == \
        (1000, 2000, 512, 2, 1460)
    assert got.src.scrub.scrub_flag == 0             # never imported from an ioctl
    # not imported by NetBSD: log, allow_opts, rt_addr, counters; creation is now
    assert (got.log, got.allow_opts) == (0, 0) and got.rt_addr.ip(AF_INET).compressed == "0.0.0.0"
    assert [list(p) for p in got.packets] == [[0, 0], [0, 0]]
    assert got.creation <= 2 and 197 <= got.expire <= 200
    assert got.rule == NO_RULE and got.direction == PF_IN and got.timeout == TCP_EST


def test_addstate_netbsd_expire_zero_is_a_full_timeout(dev):
    addnb(dev, nb_state(NAT_OUT, id=(0, 1), creatorid=1, expire=0))
    got, _ = getnb(dev, 0)
    assert TIMEOUT_TCP_EST - 2 <= got.expire <= TIMEOUT_TCP_EST


def test_addstate_netbsd_errors(dev):
    addnb(dev, nb_state(NAT_OUT, id=(0, 1), creatorid=1))
    before = ids(dev.get_states())
    for change, err in ((dict(timeout=PFTM_MAX), errno.EINVAL), (dict(ifname="nosuch0"), errno.ENOENT),
                        (dict(af=7), errno.EINVAL), (dict(direction=9), errno.EINVAL),
                        (dict(), errno.ENOMEM)):                  # the same key
        kw = dict(id=(0, 2), creatorid=1)
        kw.update(change)
        assert errno_of(addnb, dev, nb_state(NAT_OUT, **kw)) == err
    assert errno_of(addnb, dev, nb_state(RDR_IN, direction=PF_IN, id=(0, 1), creatorid=1)) == errno.ENOMEM
    for bad in (0, WILD):
        assert errno_of(addnb, dev, bad) == errno.EFAULT
    assert ids(dev.get_states()) == before


# --- access, and what stays FreeBSD 12's ---------------------------------------------------

def test_read_only_fd(dev, rodev):
    add12(dev, udp(1))
    get37(rodev, 0)
    getnb(rodev, 0)
    for fn, args in ((kill37, ()), (add37, (old_state(NAT_OUT),)),
                     (addnb, (nb_state(NAT_OUT),))):
        assert errno_of(fn, rodev, *args) == errno.EACCES
    assert errno_of(kill37, rodev, 0, 0, None, None, "", DIOCCLRSTATES_OBSD37) == errno.EACCES
    assert len(dev.get_states()) == 1


def test_getstates_stays_freebsd12(dev):
    """DIOCGETSTATES' element size is not in its request: it answers pfsync_states (242 B)
    whoever asks."""
    add37(dev, old_state(NAT_OUT))
    addnb(dev, nb_state(RDR_IN, direction=PF_IN))
    io = dev.ioctl(DIOCGETSTATES, pfioc_states(ps_len=0))
    assert io.ps_len == 2 * 242


# --- hostile inputs -----------------------------------------------------------------------

def test_garbage_old_addstates_leave_the_table_unchanged(dev):
    populate(dev)
    before = ids(dev.get_states())
    rng = random.Random(737)
    refused = 0
    for i in range(200):
        if i % 2:
            st = pf_state_obsd37.from_bytes(bytes(rng.getrandbits(8) for _ in range(368)))
            if i % 4 == 1:                         # past the interface check
                st.u.ifname, st.timeout = b"all", rng.randrange(PFTM_MAX)
            e = errno_of(add37, dev, st)
        else:
            sp = pfsync_state_nbsd.from_bytes(bytes(rng.getrandbits(8) for _ in range(240)))
            if i % 4 == 0:
                sp.ifname, sp.timeout = b"all", rng.randrange(PFTM_MAX)
            e = errno_of(addnb, dev, sp)
        assert e in (0, errno.EINVAL, errno.ENOENT, errno.ENOMEM), e
        if e:
            refused += 1
            assert ids(dev.get_states()) == before
        else:                                       # well formed by chance: start over
            clear12(dev)
            populate(dev)
    assert refused > 150


def test_garbage_kills_count_what_they_kill(dev):
    rng = random.Random(41)
    populate(dev)
    for _ in range(100):
        psk = pfioc_state_kill_obsd37.from_bytes(bytes(rng.getrandbits(8) for _ in range(136)))
        n = len(dev.get_states())
        got = dev.ioctl(DIOCKILLSTATES_OBSD37, psk).psk_af
        assert n - len(dev.get_states()) == got
        if not dev.get_states():
            populate(dev)


def test_garbage_getstate_requests(dev, rodev):
    populate(dev)
    rng = random.Random(5)
    for _ in range(100):
        ps = pfioc_state_obsd37.from_bytes(bytes(rng.getrandbits(8) for _ in range(376)))
        ps.nr = rng.choice([rng.randrange(4), rng.getrandbits(32)])
        e = errno_of(rodev.ioctl, DIOCGETSTATE_OBSD37, ps)
        assert e == (0 if ps.nr < 4 else errno.EBUSY)
        pn = pfioc_state_nbsd(nr=rng.choice([rng.randrange(4), rng.getrandbits(32)]))
        pn.state = rng.getrandbits(62) | (1 << 63)          # never a canonical address
        e = errno_of(rodev.ioctl, DIOCGETSTATE_NBSD, pn)
        assert e == (errno.EFAULT if pn.nr < 4 else errno.EBUSY)
    assert len(dev.get_states()) == 4
