"""OS fingerprints, interface flags and speeds, ALTQ's absence, interfaces that come and go, and
the older generations' DIOCGETSTATUS, against a live pfd (FreeBSD 12.1 semantics and errnos,
pf-abi.md §1, §3, §5; sys/netpfil/pf/pf_osfp.c, pf_if.c, pf_ioctl.c)."""
import ctypes
import errno
import os
import random
import shutil
import tempfile

import pytest

from conftest import errno_of

from pfkern.client import (DIOCADDALTQV0, DIOCADDALTQV1, DIOCCHANGEALTQV0, DIOCCHANGEALTQV1,
                           DIOCCLRIFFLAG, DIOCGETALTQSV0, DIOCGETALTQSV1, DIOCGETALTQV0,
                           DIOCGETALTQV1, DIOCGETQSTATSV0, DIOCGETQSTATSV1, DIOCGETSTATUS,
                           DIOCGIFSPEEDV0, DIOCGIFSPEEDV1, DIOCOSFPADD, DIOCOSFPFLUSH,
                           DIOCOSFPGET, DIOCSETIFFLAG, DIOCSTARTALTQ, DIOCSTOPALTQ,
                           PFI_FLAG_GROUP, PFI_FLAG_INSTANCE, PFI_IFLAG_SKIP, PfDevice,
                           pf_ifspeed_v0, pf_ifspeed_v1, pf_osfp_entry, pf_osfp_ioctl, pf_status,
                           pfioc_altq_v0, pfioc_altq_v1, pfioc_iface, pfioc_qstats_v0,
                           pfioc_qstats_v1)
from pfkern.client.commands import IOC_VOID

import misc_structs as MS
from client_layout import probe
from misc_netns import NetnsPfd
from misc_pfctl import Pfctl, name_of

HEADER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "include")
PFI_IFLAG_INSTANCE, PFI_IFLAG_GROUP = 0x2, 0x1         # pfi_if.pfif_flags (OpenBSD 3.x)
VETH_BPS = 10 ** 10                                     # veth reports 10000 Mb/s when up
UINT32_MAX = 0xFFFFFFFF




@pytest.fixture(scope="module")
def netns_pfd():
    """A pfd alone in a network namespace: its interfaces are ours to make and destroy."""
    tmp = tempfile.mkdtemp(prefix="pftest-")
    daemon = NetnsPfd(tmp)
    yield daemon
    alive = daemon.alive()
    out = daemon.output()
    daemon.close()
    shutil.rmtree(tmp, ignore_errors=True)
    assert alive, "pfd died during the module:\n" + out


@pytest.fixture
def nsdev(netns_pfd):
    with PfDevice(netns_pfd.path, "rw") as d:
        yield d


def names(dev, filt=""):
    return [name_of(k) for k in dev.interfaces(filt)]


def flags_by_name(dev):
    return {name_of(k): k.pfik_flags for k in dev.interfaces()}


def skipped(dev):
    return sorted(n for n, f in flags_by_name(dev).items() if f & PFI_IFLAG_SKIP)


def clear_skip(dev):
    dev.ioctl(DIOCCLRIFFLAG, pfioc_iface(pfiio_flags=PFI_IFLAG_SKIP))


def iface(name, flags=PFI_IFLAG_SKIP, **kw):
    return pfioc_iface(pfiio_name=name if isinstance(name, bytes) else name.encode(),
                       pfiio_flags=flags, **kw)


# --- OS fingerprints -------------------------------------------------------------------------

def osfp(cls=b"", version=b"", subtype=b"", os_id=0, enflags=0, wsize=16384, psize=60, mss=1460,
         flags=0x1000, ttl=64, wscale=0, tcpopts=0o2413, optcnt=4, getnum=0):
    io = pf_osfp_ioctl(fp_tcpopts=tcpopts, fp_wsize=wsize, fp_psize=psize, fp_mss=mss,
                       fp_flags=flags, fp_optcnt=optcnt, fp_wscale=wscale, fp_ttl=ttl,
                       fp_getnum=getnum)
    io.fp_os.fp_os = os_id
    io.fp_os.fp_enflags = enflags
    ctypes.memmove(ctypes.addressof(io.fp_os) + pf_osfp_entry.fp_class_nm.offset, cls, len(cls))
    ctypes.memmove(ctypes.addressof(io.fp_os) + pf_osfp_entry.fp_version_nm.offset, version, len(version))
    ctypes.memmove(ctypes.addressof(io.fp_os) + pf_osfp_entry.fp_subtype_nm.offset, subtype, len(subtype))
    return io


def raw_name(io, field):
    """All 32 bytes of a name, past its NUL too."""
    return ctypes.string_at(ctypes.addressof(io.fp_os) + getattr(pf_osfp_entry, field).offset, 32)


def link_word(io):
    return ctypes.c_uint64.from_buffer_copy(io.to_bytes()[:8]).value


def pack_os(cls, version, subtype):
    return (cls << 20) | (version << 10) | subtype


def test_osfp_add_then_get_loop_as_pfctl_does(dev, rodev):
    """Entries come back grouped by TCP signature in the order signatures were first added,
    the newest OS of a signature first — FreeBSD's numbering; then EBUSY ends the loop."""
    dev.ioctl(DIOCOSFPFLUSH)
    sig_a = dict(wsize=16384, ttl=64, mss=1460)
    sig_b = dict(wsize=65535, ttl=64, mss=1460, flags=0x1001, wscale=3)
    sig_c = dict(wsize=8192, ttl=128, psize=48, mss=0, flags=0)
    adds = [osfp(b"Linux", b"2.6", b"", pack_os(1, 1, 0), 0, **sig_a),
            osfp(b"FreeBSD", b"12.1", b"", pack_os(2, 1, 0), 0, **sig_b),
            osfp(b"Linux", b"3.0", b"", pack_os(1, 2, 0), 0, **sig_a),
            osfp(b"Windows", b"XP", b"SP2", pack_os(3, 1, 1), 4, **sig_c)]
    for io in adds:
        dev.ioctl(DIOCOSFPADD, io)
    got = Pfctl(rodev).load_fingerprints()          # -s osfp runs on a read-only fd
    order = [2, 0, 1, 3]                            # Linux 3.0, Linux 2.6, FreeBSD, Windows
    assert len(got) == len(order)
    for i, (g, k) in enumerate(zip(got, order)):
        want = adds[k]
        assert g.fp_getnum == i
        assert (g.fp_wsize, g.fp_psize, g.fp_mss, g.fp_flags, g.fp_ttl, g.fp_wscale) == \
            (want.fp_wsize, want.fp_psize, want.fp_mss, want.fp_flags, want.fp_ttl, want.fp_wscale)
        assert g.fp_tcpopts == 0 and g.fp_optcnt == 0         # not filled in 12.1
        assert (g.fp_os.fp_os, g.fp_os.fp_enflags) == (want.fp_os.fp_os, want.fp_os.fp_enflags)
        for field in ("fp_class_nm", "fp_version_nm", "fp_subtype_nm"):
            assert raw_name(g, field) == raw_name(want, field)
    # the copied entry's list link: non-NULL only while another OS of its signature follows
    assert [bool(link_word(g)) for g in got] == [True, False, False, False]
    dev.ioctl(DIOCOSFPFLUSH)


def test_osfp_get_zeroes_the_struct_first(dev, rodev):
    dev.ioctl(DIOCOSFPFLUSH)
    dev.ioctl(DIOCOSFPADD, osfp(b"OpenBSD", b"3.7", b"", pack_os(4, 2, 0), 2, wsize=16384, psize=64,
                                mss=1440, flags=0x1200, ttl=64, wscale=0, tcpopts=0o12345, optcnt=7))
    g = pf_osfp_ioctl()
    ctypes.memset(ctypes.addressof(g), 0xAA, ctypes.sizeof(g))
    g.fp_getnum = 0
    rodev.ioctl(DIOCOSFPGET, g)
    want = osfp(b"OpenBSD", b"3.7", b"", pack_os(4, 2, 0), 2, wsize=16384, psize=64, mss=1440,
                flags=0x1200, ttl=64, wscale=0, tcpopts=0, optcnt=0)
    assert g.to_bytes() == want.to_bytes()          # holes and the unfilled fields included
    dev.ioctl(DIOCOSFPFLUSH)


@pytest.mark.parametrize("num", [1, 2, -1, 1 << 20, 2 ** 31 - 1, -(2 ** 31)])
def test_osfp_get_past_the_end_is_ebusy_and_changes_nothing(dev, rodev, num):
    dev.ioctl(DIOCOSFPFLUSH)
    assert errno_of(rodev.ioctl, DIOCOSFPGET, pf_osfp_ioctl(fp_getnum=0)) == errno.EBUSY
    dev.ioctl(DIOCOSFPADD, osfp(b"Linux"))
    g = pf_osfp_ioctl()
    ctypes.memset(ctypes.addressof(g), 0x5A, ctypes.sizeof(g))
    g.fp_getnum = num
    before = g.to_bytes()
    assert errno_of(rodev.ioctl, DIOCOSFPGET, g) == errno.EBUSY
    assert g.to_bytes() == before                   # output only on success
    assert len(Pfctl(rodev).load_fingerprints()) == 1
    dev.ioctl(DIOCOSFPFLUSH)


def test_osfp_duplicates_as_freebsd_compares_them(dev):
    """EEXIST when the signature already holds an entry with the same fp_os and the same three
    32-byte names (memcmp, bytes after the NUL too; fp_enflags and fp_getnum not compared)."""
    dev.ioctl(DIOCOSFPFLUSH)
    base = dict(cls=b"Linux", version=b"2.6", os_id=pack_os(1, 1, 0))
    dev.ioctl(DIOCOSFPADD, osfp(**base))
    for dup in (osfp(**base), osfp(**base, enflags=7), osfp(**base, getnum=99)):
        assert errno_of(dev.ioctl, DIOCOSFPADD, dup) == errno.EEXIST
    assert len(Pfctl(dev).load_fingerprints()) == 1
    dev.ioctl(DIOCOSFPADD, osfp(**dict(base, os_id=pack_os(1, 2, 0))))        # other fp_os
    dev.ioctl(DIOCOSFPADD, osfp(**base, wsize=32768))                        # other signature
    dev.ioctl(DIOCOSFPADD, osfp(**dict(base, cls=b"Linux\0junk")))            # differs after the NUL
    got = Pfctl(dev).load_fingerprints()
    assert len(got) == 4
    assert raw_name(got[0], "fp_class_nm") == b"Linux\0junk".ljust(32, b"\0")
    # a name filling all 32 bytes is stored NUL-terminated, so it never equals what comes in
    full = dict(cls=b"C" * 32, os_id=pack_os(9, 9, 9))
    dev.ioctl(DIOCOSFPADD, osfp(**full))
    dev.ioctl(DIOCOSFPADD, osfp(**full))
    got = Pfctl(dev).load_fingerprints()
    assert len(got) == 6
    assert [raw_name(g, "fp_class_nm") for g in got[:2]] == [b"C" * 31 + b"\0"] * 2
    dev.ioctl(DIOCOSFPFLUSH)


def test_osfp_flush_in_both_encodings(module_pfd, dev):
    for bsd_io in (False, True):
        dev.ioctl(DIOCOSFPADD, osfp(b"Linux"))
        with PfDevice(module_pfd.path, "rw", bsd_io=bsd_io) as d:
            d.ioctl(DIOCOSFPFLUSH)
        assert errno_of(dev.ioctl, DIOCOSFPGET, pf_osfp_ioctl()) == errno.EBUSY


def test_osfp_read_only_fd(module_pfd, dev, rodev):
    dev.ioctl(DIOCOSFPFLUSH)
    dev.ioctl(DIOCOSFPADD, osfp(b"Linux"))
    assert errno_of(rodev.ioctl, DIOCOSFPADD, osfp(b"FreeBSD")) == errno.EACCES
    assert errno_of(rodev.ioctl, DIOCOSFPFLUSH) == errno.EACCES
    with PfDevice(module_pfd.path, "r", bsd_io=True) as d:
        assert errno_of(d.ioctl, DIOCOSFPFLUSH) == errno.EACCES
    assert [name_of_fp(g) for g in Pfctl(rodev).load_fingerprints()] == [b"Linux"]
    dev.ioctl(DIOCOSFPFLUSH)


def name_of_fp(io):
    return raw_name(io, "fp_class_nm").split(b"\0", 1)[0]


def test_osfp_garbage_is_taken_as_freebsd_takes_it(dev):
    """FreeBSD validates nothing in a pf_osfp_ioctl: random bytes make a fingerprint whose names
    are cut at their last byte; a failing GET leaves the caller's garbage alone."""
    dev.ioctl(DIOCOSFPFLUSH)
    rnd = random.Random(4415)
    junk = bytes(rnd.randrange(256) for _ in range(ctypes.sizeof(pf_osfp_ioctl)))
    io = pf_osfp_ioctl.from_bytes(junk)
    dev.ioctl(DIOCOSFPADD, io)
    assert io.to_bytes() == junk                    # ADD writes nothing back
    (g,) = Pfctl(dev).load_fingerprints()
    assert (g.fp_wsize, g.fp_psize, g.fp_mss, g.fp_flags, g.fp_ttl, g.fp_wscale) == \
        (io.fp_wsize, io.fp_psize, io.fp_mss, io.fp_flags, io.fp_ttl, io.fp_wscale)
    assert (g.fp_os.fp_os, g.fp_os.fp_enflags) == (io.fp_os.fp_os, io.fp_os.fp_enflags)
    for field in ("fp_class_nm", "fp_version_nm", "fp_subtype_nm"):
        assert raw_name(g, field) == raw_name(io, field)[:31] + b"\0"
    junk2 = bytearray(rnd.randrange(256) for _ in range(ctypes.sizeof(pf_osfp_ioctl)))
    junk2[132:136] = (-7 & 0xFFFFFFFF).to_bytes(4, "little")          # fp_getnum -7
    bad = pf_osfp_ioctl.from_bytes(bytes(junk2))
    assert errno_of(dev.ioctl, DIOCOSFPGET, bad) == errno.EBUSY
    assert bad.to_bytes() == bytes(junk2)
    dev.ioctl(DIOCOSFPFLUSH)


def test_osfp_list_is_bounded_enomem(dev):
    """FreeBSD answers ENOMEM when it cannot allocate; pfd bounds the list. A duplicate is still
    EEXIST (checked first), and a failed ADD changes nothing."""
    from pfkern.pf_osfp import OSFP_MAX_ENTRIES
    dev.ioctl(DIOCOSFPFLUSH)
    io = osfp(b"Many")
    for i in range(OSFP_MAX_ENTRIES):
        io.fp_os.fp_os = i
        dev.ioctl(DIOCOSFPADD, io)
    io.fp_os.fp_os = OSFP_MAX_ENTRIES
    assert errno_of(dev.ioctl, DIOCOSFPADD, io) == errno.ENOMEM
    assert errno_of(dev.ioctl, DIOCOSFPADD, osfp(b"Other", wsize=1)) == errno.ENOMEM
    io.fp_os.fp_os = 5
    assert errno_of(dev.ioctl, DIOCOSFPADD, io) == errno.EEXIST
    last = dev.ioctl(DIOCOSFPGET, pf_osfp_ioctl(fp_getnum=OSFP_MAX_ENTRIES - 1))
    assert last.fp_os.fp_os == 0                     # the oldest entry of the signature is last
    assert errno_of(dev.ioctl, DIOCOSFPGET, pf_osfp_ioctl(fp_getnum=OSFP_MAX_ENTRIES)) == errno.EBUSY
    dev.ioctl(DIOCOSFPFLUSH)
    dev.ioctl(DIOCOSFPADD, osfp(b"Again"))
    dev.ioctl(DIOCOSFPFLUSH)


def test_osfp_find_and_match_for_the_datapath():
    """pf_osfp_find / pf_osfp_match on the core's list, without a daemon."""
    from pfkern.pf_osfp import Fingerprints, PF_OSFP_UNKNOWN
    fps = Fingerprints(None)
    sig = lambda wsize, flags: (0o2413, wsize, 60, 1460, flags, 4, 0, 64)
    fps.add(sig(4, 0x1804), pack_os(1, 1, 0), 0, b"Linux", b"2.6", b"")    # W=S4, any MSS, DF
    fps.add(sig(8192, 0x1001), pack_os(2, 1, 0), 0, b"FreeBSD", b"", b"")  # W=%8192, DF
    fps.add(sig(0, 0x1002), pack_os(3, 0, 0), 0, b"Any", b"", b"")         # W=*, DF

    def find(**kw):
        syn = dict(tcpopts=0o2413, optcnt=4, ttl=60, flags=0x1000, psize=60, mss=1460, wscale=0,
                   wsize=5840)
        syn.update(kw)
        f = fps.find(**syn)
        return f.oses[0].class_nm.split(b"\0")[0] if f else None

    assert find() == b"Linux"
    assert find(mss=1400, wsize=5600) == b"Linux"           # 4 x the MSS
    assert find(mss=1400, wsize=5840) == b"Linux"           # 4 x 1460: a "smart" NAT box's MSS
    assert find(wsize=16384) == b"FreeBSD"
    assert find(wsize=1000) == b"Any"
    assert find(ttl=65) is None                              # above every signature's TTL
    assert find(ttl=20) is None                              # more than 40 hops away
    assert find(flags=0) is None                             # no DF
    assert find(tcpopts=0o2412) is None
    linux = fps.find(0o2413, 4, 60, 0x1000, 60, 1460, 0, 5840)
    assert Fingerprints.match(linux, 0) and Fingerprints.match(linux, pack_os(1, 0, 0))
    assert Fingerprints.match(linux, pack_os(1, 1, 0)) and not Fingerprints.match(linux, pack_os(1, 2, 0))
    assert not Fingerprints.match(linux, pack_os(2, 0, 0))
    assert Fingerprints.match(None, PF_OSFP_UNKNOWN) and not Fingerprints.match(None, pack_os(1, 0, 0))


# --- interface flags -------------------------------------------------------------------------

def test_set_skip_on_lo_as_pfctl_does(dev):
    """`set skip on lo` (pfctl -f): IGETIFACES snapshot, SETIFFLAG {lo, SKIP}, then the
    adjustment pass, which reads pfik_ifp / pfik_group as booleans."""
    clear_skip(dev)
    pfctl = Pfctl(dev)
    pfctl.load_skip(["lo"])
    assert skipped(dev) == ["lo"]
    lo = next(k for k in dev.interfaces("lo") if name_of(k) == "lo")
    assert lo.pfik_ifp and not lo.pfik_group and lo.pfik_flags & PFI_IFLAG_SKIP
    # `set skip on all` (a group), back to lo, then none
    ifaces = sorted(name_of(k) for k in dev.interfaces() if k.pfik_ifp)
    pfctl.load_skip(["all"])
    assert skipped(dev) == sorted(["all", *ifaces])
    pfctl.load_skip(["lo"])                 # the group's flag is cleared, lo's set again
    assert skipped(dev) == ["lo"]
    pfctl.load_skip(["none"])
    assert skipped(dev) == []


def test_setifflag_matches_as_pfi_skip_if(dev):
    clear_skip(dev)
    every = names(dev)
    ifaces = sorted(name_of(k) for k in dev.interfaces() if k.pfik_ifp)
    dev.ioctl(DIOCSETIFFLAG, iface("all"))          # the group kif and its members
    assert skipped(dev) == sorted(["all", *ifaces])
    clear_skip(dev)
    dev.ioctl(DIOCSETIFFLAG, iface(""))             # "" = every kif, groups included
    assert skipped(dev) == sorted(every)
    dev.ioctl(DIOCCLRIFFLAG, iface("all"))
    assert skipped(dev) == sorted(set(every) - {"all", *ifaces})
    clear_skip(dev)
    assert skipped(dev) == []


@pytest.mark.parametrize("name", [b"nosuch0", b"nosuch", b"lo0", b"l", b"lo" + b"x" * 14])
def test_setifflag_without_a_kif_is_a_no_op(dev, name):
    """FreeBSD 12 creates no kif here; an unterminated 16-byte name names nothing."""
    clear_skip(dev)
    before = names(dev)
    io = iface(name)
    dev.ioctl(DIOCSETIFFLAG, io)
    assert io.pfiio_name == name[:16]
    assert names(dev) == before and skipped(dev) == []
    dev.ioctl(DIOCCLRIFFLAG, iface(name))


def test_setifflag_only_skip_is_user_settable(dev):
    clear_skip(dev)
    dev.ioctl(DIOCSETIFFLAG, iface("all", flags=0x1))              # PFI_IFLAG_REFS: kernel's
    assert not any(flags_by_name(dev).values())
    dev.ioctl(DIOCSETIFFLAG, iface("lo", flags=-1))
    assert {n: f for n, f in flags_by_name(dev).items() if f} == {"lo": PFI_IFLAG_SKIP}
    dev.ioctl(DIOCCLRIFFLAG, iface("lo", flags=0x1))
    assert flags_by_name(dev)["lo"] == PFI_IFLAG_SKIP
    dev.ioctl(DIOCCLRIFFLAG, iface("lo", flags=-1))
    assert flags_by_name(dev)["lo"] == 0


def test_setifflag_hostile_fields(dev):
    """A name is a C string (bytes after its NUL do not count); the buffer, sizes and counts of
    pfioc_iface are not used, whatever they hold."""
    clear_skip(dev)
    io = iface(b"lo\0garbage!!", pfiio_buffer=0xdeadbeef, pfiio_esize=-5, pfiio_size=1 << 30,
               pfiio_nzero=-1)
    before = io.to_bytes()
    dev.ioctl(DIOCSETIFFLAG, io)
    assert io.to_bytes() == before
    assert skipped(dev) == ["lo"]
    clear_skip(dev)


def test_ifflags_need_a_writable_fd(dev, rodev):
    clear_skip(dev)
    dev.ioctl(DIOCSETIFFLAG, iface("lo"))
    assert errno_of(rodev.ioctl, DIOCSETIFFLAG, iface("all")) == errno.EACCES
    assert errno_of(rodev.ioctl, DIOCCLRIFFLAG, iface("")) == errno.EACCES
    assert skipped(rodev) == ["lo"]
    clear_skip(dev)


def test_flush_all_tail_as_pfctl_does(dev):
    """pfctl -F all ends with DIOCOSFPFLUSH and DIOCCLRIFFLAG {"", PFI_IFLAG_SKIP}."""
    dev.ioctl(DIOCSETIFFLAG, iface(""))
    dev.ioctl(DIOCOSFPADD, osfp(b"Linux"))
    Pfctl(dev).flush_all_tail()
    assert skipped(dev) == []
    assert Pfctl(dev).load_fingerprints() == []


# --- interface speeds ------------------------------------------------------------------------

@pytest.mark.parametrize("name", [b"", b"nosuch0", b"all", b"lo" + b"x" * 14, b"\0lo"])
def test_gifspeed_einval(rodev, name):
    """Empty name, no such interface, a group (not an ifnet): EINVAL, struct unchanged."""
    for cmd, st in ((DIOCGIFSPEEDV0, pf_ifspeed_v0(ifname=name, baudrate=7)),
                    (DIOCGIFSPEEDV1, pf_ifspeed_v1(ifname=name, baudrate32=7, baudrate=9))):
        before = st.to_bytes()
        assert errno_of(rodev.ioctl, cmd, st) == errno.EINVAL
        assert st.to_bytes() == before


def test_gifspeed_without_a_link_speed_is_zero(rodev):
    """lo reports no speed; read-only fds may ask."""
    v0 = rodev.ioctl(DIOCGIFSPEEDV0, pf_ifspeed_v0(ifname=b"lo", baudrate=7))
    v1 = rodev.ioctl(DIOCGIFSPEEDV1, pf_ifspeed_v1(ifname=b"lo", baudrate32=7, baudrate=9))
    assert v0.baudrate == 0 and (v1.baudrate32, v1.baudrate) == (0, 0)
    assert v0.ifname == b"lo" and v1.ifname == b"lo"


def test_gifspeed_of_a_veth(netns_pfd, nsdev):
    """A veth up is 10 Gb/s: v1 gives it whole and clamps baudrate32; v0 clamps; down it has
    no speed. The name is strlcpy'd to IFNAMSIZ: a 16th byte without NUL is cut off."""
    long0, long1 = "pfspaaaaaaaaaa0", "pfspaaaaaaaaaa1"             # 15 characters
    netns_pfd.add_veth("pfsp0", "pfsp1")
    netns_pfd.add_veth(long0, long1)
    try:
        assert nsdev.ioctl(DIOCGIFSPEEDV1, pf_ifspeed_v1(ifname=b"pfsp0")).baudrate == 0
        for n in ("pfsp0", "pfsp1", long0, long1):
            netns_pfd.link("set", n, "up")
        v1 = nsdev.ioctl(DIOCGIFSPEEDV1, pf_ifspeed_v1(ifname=b"pfsp0"))
        assert (v1.baudrate32, v1.baudrate) == (UINT32_MAX, VETH_BPS)
        assert nsdev.ioctl(DIOCGIFSPEEDV0, pf_ifspeed_v0(ifname=b"pfsp1")).baudrate == UINT32_MAX
        v1 = nsdev.ioctl(DIOCGIFSPEEDV1, pf_ifspeed_v1(ifname=long0.encode() + b"Z"))
        assert v1.baudrate == VETH_BPS
        assert errno_of(nsdev.ioctl, DIOCGIFSPEEDV1, pf_ifspeed_v1(ifname=b"pfsp")) == errno.EINVAL
    finally:
        netns_pfd.link("del", "pfsp0", check=False)
        netns_pfd.link("del", long0, check=False)


# --- ALTQ: not compiled in, as in FreeBSD's GENERIC kernel -----------------------------------

ALTQ = [  # (command, argument type, allowed on a read-only fd)
    (DIOCSTARTALTQ, None, False), (DIOCSTOPALTQ, None, False),
    (DIOCADDALTQV0, pfioc_altq_v0, False), (DIOCADDALTQV1, pfioc_altq_v1, False),
    (DIOCGETALTQSV0, pfioc_altq_v0, True), (DIOCGETALTQSV1, pfioc_altq_v1, True),
    (DIOCGETALTQV0, pfioc_altq_v0, True), (DIOCGETALTQV1, pfioc_altq_v1, True),
    (DIOCCHANGEALTQV0, pfioc_altq_v0, False), (DIOCCHANGEALTQV1, pfioc_altq_v1, False),
    (DIOCGETQSTATSV0, pfioc_qstats_v0, True), (DIOCGETQSTATSV1, pfioc_qstats_v1, True),
]


@pytest.mark.parametrize("cmd,argtype,ro_ok", ALTQ)
def test_altq_commands_are_enodev(module_pfd, cmd, argtype, ro_ok):
    """Every ALTQ command is ENODEV; on a read-only fd those outside FreeBSD's read-only list are
    EACCES first (the FWRITE check precedes dispatch). pfctl's probe, DIOCGETALTQSV1, is ENODEV
    on an O_RDONLY fd too. The caller's struct is left as it was."""
    for mode in ("rw", "r"):
        want = errno.ENODEV if mode == "rw" or ro_ok else errno.EACCES
        for bsd_io in ((False, True) if argtype is None else (False,)):
            with PfDevice(module_pfd.path, mode, bsd_io=bsd_io) as d:
                if argtype is None:
                    assert errno_of(d.ioctl, cmd) == want
                    continue
                arg = argtype()
                ctypes.memset(ctypes.addressof(arg), 0x3C, ctypes.sizeof(arg))
                before = arg.to_bytes()
                assert errno_of(d.ioctl, cmd, arg) == want
                assert arg.to_bytes() == before


def test_altq_start_stop_values(module_pfd):
    assert DIOCSTARTALTQ == 0x442A and (DIOCSTARTALTQ | IOC_VOID) == 0x2000442A
    assert DIOCGETALTQSV1 == 0xC130442F


# --- interfaces that come and go -------------------------------------------------------------

def test_interfaces_appear_and_disappear_with_the_host(netns_pfd, nsdev):
    """A veth pair shows up with its driver group in both DIOCIGETIFACES generations as soon as
    rtnetlink announces it, and is gone once deleted."""
    assert names(nsdev) == ["all", "lo"]
    netns_pfd.add_veth("pfev0", "pfev1")
    try:
        kifs = {name_of(k): k for k in nsdev.interfaces()}
        assert sorted(kifs) == ["all", "lo", "pfev", "pfev0", "pfev1"]
        assert kifs["pfev0"].pfik_ifp and not kifs["pfev0"].pfik_group
        assert kifs["pfev"].pfik_group and not kifs["pfev"].pfik_ifp
        assert names(nsdev, "pfev") == ["pfev", "pfev0", "pfev1"]
        assert names(nsdev, "all") == ["all", "lo", "pfev0", "pfev1"]
        old = {bytes(e.pfif_name).rstrip(b"\0").decode(): e.pfif_flags
               for e in nsdev.interfaces(esize=184, flags=PFI_FLAG_GROUP | PFI_FLAG_INSTANCE)}
        assert sorted(old) == ["all", "lo", "pfev", "pfev0", "pfev1"]
        assert old["pfev0"] & PFI_IFLAG_INSTANCE and old["pfev"] & PFI_IFLAG_GROUP
    finally:
        netns_pfd.link("del", "pfev0")
    assert names(nsdev) == ["all", "lo"]
    old = nsdev.interfaces(esize=184, flags=PFI_FLAG_GROUP | PFI_FLAG_INSTANCE)
    assert sorted(bytes(e.pfif_name).rstrip(b"\0").decode() for e in old) == ["all", "lo"]


def test_group_flags_survive_refreshes(netns_pfd, nsdev):
    netns_pfd.add_veth("pfgr0", "pfgr1")
    try:
        nsdev.ioctl(DIOCSETIFFLAG, iface("pfgr"))
        assert skipped(nsdev) == ["pfgr", "pfgr0", "pfgr1"]
        netns_pfd.add_veth("pfgx0", "pfgx1")                # another link: the table is re-read
        assert "pfgx0" in names(nsdev)
        assert skipped(nsdev) == ["pfgr", "pfgr0", "pfgr1"]
        netns_pfd.add_veth("pfgr2", "pfgr3")                # new members start without flags
        assert names(nsdev, "pfgr") == ["pfgr", "pfgr0", "pfgr1", "pfgr2", "pfgr3"]
        assert skipped(nsdev) == ["pfgr", "pfgr0", "pfgr1"]
        nsdev.ioctl(DIOCCLRIFFLAG, iface("pfgr"))
        assert skipped(nsdev) == []
    finally:
        for n in ("pfgr0", "pfgx0", "pfgr2"):
            netns_pfd.link("del", n, check=False)


def test_skip_survives_changes_of_the_same_interface(netns_pfd, nsdev):
    netns_pfd.add_veth("pfsk0", "pfsk1")
    try:
        nsdev.ioctl(DIOCSETIFFLAG, iface("pfsk0"))
        before = {name_of(k): k for k in nsdev.interfaces()}["pfsk0"]
        netns_pfd.link("set", "pfsk0", "up")
        netns_pfd.link("set", "pfsk0", "mtu", "1400")
        netns_pfd.add_veth("pfsx0", "pfsx1")
        after = {name_of(k): k for k in nsdev.interfaces()}["pfsk0"]
        assert after.pfik_flags == PFI_IFLAG_SKIP
        assert after.pfik_tzero == before.pfik_tzero and after.pfik_ifp == before.pfik_ifp
        assert skipped(nsdev) == ["pfsk0"]
    finally:
        netns_pfd.link("del", "pfsk0", check=False)
        netns_pfd.link("del", "pfsx0", check=False)
    assert skipped(nsdev) == []


def test_pfctl_reload_clears_interfaces_no_longer_skipped(netns_pfd, nsdev):
    """pfctl_adjust_skip_ifaces: interfaces (pfik_ifp) and groups (pfik_group) that had SKIP
    before a load but are not in the new config get DIOCCLRIFFLAG."""
    netns_pfd.add_veth("pfrl0", "pfrl1")
    pfctl = Pfctl(nsdev)
    try:
        clear_skip(nsdev)
        pfctl.load_skip(["pfrl0"])
        assert skipped(nsdev) == ["pfrl0"]
        pfctl.load_skip(["pfrl1"])
        assert skipped(nsdev) == ["pfrl1"]
        pfctl.load_skip(["pfrl"])
        assert skipped(nsdev) == ["pfrl", "pfrl0", "pfrl1"]
        pfctl.load_skip(["pfrl0"])
        assert skipped(nsdev) == ["pfrl0"]
        pfctl.load_skip(["lo", "pfrl"])
        assert skipped(nsdev) == ["lo", "pfrl", "pfrl0", "pfrl1"]
        pfctl.load_skip(["none"])
        assert skipped(nsdev) == []
    finally:
        netns_pfd.link("del", "pfrl0", check=False)


# --- older generations: DIOCGETSTATUS of OpenBSD 3.7 and NetBSD, FreeBSD 6's DIOCGIFSPEED ----

def test_older_status_layouts_match_the_header():
    res = probe.run_probe(probe.build_items(MS.STRUCTS, MS.COMMANDS), HEADER_DIR)
    assert not probe.mismatches(res)
    assert (MS.DIOCGETSTATUS_OBSD37, MS.DIOCGETSTATUS_NBSD, MS.DIOCGIFSPEED_FBSD6) == \
        (0xC1904415, 0xC1A84415, 0xC014445B)


class FakeMem:
    def read(self, addr, length):
        raise OSError(errno.EFAULT, "no caller memory here")

    def write(self, addr, data):
        raise OSError(errno.EFAULT, "no caller memory here")


@pytest.fixture(scope="module")
def dispatcher():
    from pfkern.pfd import build_dispatcher
    d = build_dispatcher()
    yield d
    d.core.interfaces.close()


def freebsd_status(d, ctx):
    return pf_status.from_bytes(d.ioctl(ctx, DIOCGETSTATUS, 0, bytes(ctypes.sizeof(pf_status)), FakeMem()))


def test_older_status_handlers(dispatcher):
    """The handlers as pf_ioctl will call them: same values as FreeBSD 12's status in the older
    layouts; interface counters are the loginterface's, else 0 (never the caller's bytes)."""
    from pfkern import pf_ioctl, pf_ioctl_misc as M
    d = dispatcher
    core = d.core
    ctx = d.open(os.O_RDONLY)
    core.set_debug(3)
    core.set_hostid(0x0A0B0C0D)
    if not core.running:
        core.start()
    lo = core.interfaces.get("lo")
    lo.packets = [11, 12, 13, 14, 15, 16, 17, 18]
    lo.bytes = [101, 102, 103, 104, 105, 106, 107, 108]
    table = {c.name: c for c in pf_ioctl.build_table().values()}
    for name, struct in (("DIOCGETSTATUS_OBSD37", MS.pf_status_obsd37),
                         ("DIOCGETSTATUS_NBSD", MS.pf_status_nbsd),
                         ("DIOCGIFSPEED_FBSD6", pf_ifspeed_v0)):
        assert table[name].value == MS.COMMANDS[name]
        assert table[name].size == ctypes.sizeof(struct)
        assert table[name].handler is M.HANDLERS[name][0]
    for loginterface in (b"lo", b""):
        core.set_status_interface(loginterface)
        fs = freebsd_status(d, ctx)
        for handler, struct, ncounters in ((M.h_getstatus_obsd37, MS.pf_status_obsd37, 15),
                                           (M.h_getstatus_nbsd, MS.pf_status_nbsd, 16)):
            buf = bytearray(b"\xab" * ctypes.sizeof(struct))
            handler(d, ctx, buf, FakeMem())
            o = struct.from_bytes(buf)
            assert list(o.counters) == list(fs.counters)[:15] + [0] * (ncounters - 15)
            for field in ("lcounters", "fcounters", "scounters"):
                assert list(getattr(o, field)) == list(getattr(fs, field))
            pc = [o.pcounters[a][dd][k] for a in range(2) for dd in range(2) for k in range(3)]
            bc = [o.bcounters[a][dd] for a in range(2) for dd in range(2)]
            if loginterface:
                assert pc == [fs.pcounters[a][dd][k] for a in range(2) for dd in range(2) for k in range(3)]
                assert pc == [11, 12, 0, 13, 14, 0, 15, 16, 0, 17, 18, 0]
                assert bc == [101 + 102, 103 + 104, 105 + 106, 107 + 108]
            else:
                assert pc == [0] * 12 and bc == [0] * 4
            assert (o.running, o.states, o.src_nodes, o.since, o.debug, o.hostid, o.ifname) == \
                (1, fs.states, fs.src_nodes, fs.since, 3, 0x0A0B0C0D, loginterface)
            assert o.stateid == 0
            if struct is MS.pf_status_nbsd:
                assert bytes(o.pf_chksum) == bytes(fs.pf_chksum)
    core.set_status_interface(b"")
    lo.clear_counters()


def test_older_ifspeed_handler(dispatcher, monkeypatch):
    """FreeBSD 6's DIOCGIFSPEED truncated the 64-bit rate into its u_int32_t; 12's clamp."""
    from pfkern import pf_ioctl_misc as M
    from pfkern.errors import Invalid
    d = dispatcher
    monkeypatch.setattr(d.core.interfaces, "baudrate", lambda n: VETH_BPS if n == "pfx0" else None)
    out = {}
    for handler, struct in ((M.h_gifspeed_fbsd6, pf_ifspeed_v0), (M.h_gifspeed_v0, pf_ifspeed_v0),
                            (M.h_gifspeed_v1, pf_ifspeed_v1)):
        buf = bytearray(struct(ifname=b"pfx0").to_bytes())
        handler(d, None, buf, FakeMem())
        out[handler.__name__] = struct.from_bytes(buf)
        for bad in (b"", b"nosuch0"):
            with pytest.raises(Invalid):
                handler(d, None, bytearray(struct(ifname=bad).to_bytes()), FakeMem())
    assert out["h_gifspeed_fbsd6"].baudrate == VETH_BPS & UINT32_MAX
    assert out["h_gifspeed_v0"].baudrate == UINT32_MAX
    assert (out["h_gifspeed_v1"].baudrate32, out["h_gifspeed_v1"].baudrate) == (UINT32_MAX, VETH_BPS)


def test_older_generations_through_the_device(dev, rodev):
    """Served beside FreeBSD 12's commands; read-only fds may ask, as in those kernels."""
    dev.set_status_interface("")
    fs = rodev.status()
    o = rodev.ioctl(MS.DIOCGETSTATUS_OBSD37, MS.pf_status_obsd37())
    n = rodev.ioctl(MS.DIOCGETSTATUS_NBSD, MS.pf_status_nbsd())
    for st in (o, n):
        assert (st.running, st.debug, st.hostid, st.ifname) == (fs.running, fs.debug, fs.hostid, b"")
        assert list(st.counters)[:15] == list(fs.counters)[:15]
        assert st.stateid == 0 and st.since == fs.since
        assert [st.pcounters[a][d][k] for a in range(2) for d in range(2) for k in range(3)] == [0] * 12
    assert list(n.pf_chksum) == list(fs.pf_chksum)
    assert rodev.ioctl(MS.DIOCGIFSPEED_FBSD6, pf_ifspeed_v0(ifname=b"lo", baudrate=7)).baudrate == 0
    assert errno_of(rodev.ioctl, MS.DIOCGIFSPEED_FBSD6, pf_ifspeed_v0(ifname=b"")) == errno.EINVAL


def test_link_speed_ignores_another_namespaces_sysfs_entry():
    from pfkern.pf_if import link_speed
    with open("/sys/class/net/lo/ifindex") as f:
        index = int(f.read())
    assert link_speed("lo", index + 1000) == 0
