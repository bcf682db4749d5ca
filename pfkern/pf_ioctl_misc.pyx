# cython: language_level=3
"""ioctl handlers of OS fingerprints (pf_osfp), interface flags and speeds (pf_if), and the
DIOCGETSTATUS of older pf generations; pf_ioctl binds them by command name (see its COMMANDS).

ALTQ has no handler on purpose: like a FreeBSD kernel built without ALTQ, every ALTQ command
answers ENODEV (pfctl's probe relies on it).
"""
from libc.string cimport memset, memcpy
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pfkern.pfvar cimport pf_status, pfioc_iface
from pfkern.pf cimport PfCore

from pfkern.errors import Invalid
from pfkern.pf_util cimport cstr

cdef extern from "net/pfvar.h" nogil:
    enum:
        PF_OSFP_LEN
        PF_IFNAMSIZ
        PFRES_MAX_OBSD37
        LCNT_MAX
        FCNT_MAX
        SCNT_MAX
        PFRES_MAX
        PF_MD5_DIGEST_LENGTH
    enum:
        DIOCGETSTATUS_OBSD37
        DIOCGETSTATUS_NBSD
        DIOCGIFSPEED_FBSD6

    ctypedef uint32_t pf_osfp_t
    ctypedef uint64_t pf_tcpopts_t

    struct pf_osfp_entry:
        pf_osfp_t fp_os
        int fp_enflags
        char fp_class_nm[PF_OSFP_LEN]
        char fp_version_nm[PF_OSFP_LEN]
        char fp_subtype_nm[PF_OSFP_LEN]

    struct pf_osfp_ioctl:
        pf_osfp_entry fp_os
        pf_tcpopts_t fp_tcpopts
        uint16_t fp_wsize
        uint16_t fp_psize
        uint16_t fp_mss
        uint16_t fp_flags
        uint8_t fp_optcnt
        uint8_t fp_wscale
        uint8_t fp_ttl
        int fp_getnum

    struct pf_ifspeed_v0:
        char ifname[PF_IFNAMSIZ]
        uint32_t baudrate

    struct pf_ifspeed_v1:
        char ifname[PF_IFNAMSIZ]
        uint32_t baudrate32
        uint64_t baudrate

    struct pf_status_obsd37:
        uint64_t counters[PFRES_MAX_OBSD37]
        uint64_t lcounters[LCNT_MAX]
        uint64_t fcounters[FCNT_MAX]
        uint64_t scounters[SCNT_MAX]
        uint64_t pcounters[2][2][3]
        uint64_t bcounters[2][2]
        uint64_t stateid
        uint32_t running
        uint32_t states
        uint32_t src_nodes
        uint32_t since
        uint32_t debug
        uint32_t hostid
        char ifname[PF_IFNAMSIZ]

    struct pf_status_nbsd:
        uint64_t counters[PFRES_MAX]
        uint64_t lcounters[LCNT_MAX]
        uint64_t fcounters[FCNT_MAX]
        uint64_t scounters[SCNT_MAX]
        uint64_t pcounters[2][2][3]
        uint64_t bcounters[2][2]
        uint64_t stateid
        uint32_t running
        uint32_t states
        uint32_t src_nodes
        uint32_t since
        uint32_t debug
        uint32_t hostid
        char ifname[PF_IFNAMSIZ]
        uint8_t pf_chksum[PF_MD5_DIGEST_LENGTH]

# Non-zero stand-in for the kernel's fp_entry.sle_next, copied out raw by DIOCOSFPGET (H5).
OSFP_LINK_TOKEN = 0xfffff80200000000
UINT32_MAX = 0xffffffff


# --- OS fingerprints --------------------------------------------------------------------------

def h_osfpflush(d, ctx, bytearray buf, mem):
    d.core.osfp.flush()


def h_osfpadd(d, ctx, bytearray buf, mem):
    """The struct is taken as it comes (FreeBSD validates nothing); fp_getnum is ignored."""
    cdef pf_osfp_ioctl *io = <pf_osfp_ioctl *><char *>buf
    d.core.osfp.add((io.fp_tcpopts, io.fp_wsize, io.fp_psize, io.fp_mss, io.fp_flags,
                     io.fp_optcnt, io.fp_wscale, io.fp_ttl),
                    io.fp_os.fp_os, io.fp_os.fp_enflags, io.fp_os.fp_class_nm[:PF_OSFP_LEN],
                    io.fp_os.fp_version_nm[:PF_OSFP_LEN], io.fp_os.fp_subtype_nm[:PF_OSFP_LEN])


def h_osfpget(d, ctx, bytearray buf, mem):
    """Entry fp_getnum into a zeroed struct; like 12.1, fp_tcpopts and fp_optcnt stay 0."""
    cdef pf_osfp_ioctl *io = <pf_osfp_ioctl *><char *>buf
    cdef int num = io.fp_getnum
    fp, entry, linked = d.core.osfp.get(num)
    memset(io, 0, sizeof(pf_osfp_ioctl))
    io.fp_mss = fp.mss
    io.fp_wsize = fp.wsize
    io.fp_flags = fp.flags
    io.fp_psize = fp.psize
    io.fp_ttl = fp.ttl
    io.fp_wscale = fp.wscale
    io.fp_getnum = num
    # the entry is copied whole, its list link (the first word) included
    (<uint64_t *>&io.fp_os)[0] = OSFP_LINK_TOKEN + (num + 1) * 0x80 if linked else 0
    io.fp_os.fp_os = entry.os
    io.fp_os.fp_enflags = entry.enflags
    _put_name(io.fp_os.fp_class_nm, entry.class_nm)
    _put_name(io.fp_os.fp_version_nm, entry.version_nm)
    _put_name(io.fp_os.fp_subtype_nm, entry.subtype_nm)


cdef void _put_name(char *dst, bytes name):
    memcpy(dst, <const char *>name, min(len(name), PF_OSFP_LEN))


# --- interface flags and speeds ---------------------------------------------------------------

def h_setifflag(d, ctx, bytearray buf, mem):
    """Never fails; pfiio_buffer, esize, size are not used."""
    cdef pfioc_iface *io = <pfioc_iface *><char *>buf
    d.core.interfaces.set_flags(cstr(io.pfiio_name, PF_IFNAMSIZ), io.pfiio_flags)


def h_clrifflag(d, ctx, bytearray buf, mem):
    cdef pfioc_iface *io = <pfioc_iface *><char *>buf
    d.core.interfaces.clear_flags(cstr(io.pfiio_name, PF_IFNAMSIZ), io.pfiio_flags)


cdef object _baudrate(d, const char *ifname):
    """if_baudrate of the interface named (strlcpy'd to IFNAMSIZ); EINVAL for an empty name or
    one no interface has."""
    if ifname[0] == 0:
        raise Invalid("empty interface name")
    rate = d.core.interfaces.baudrate(cstr(ifname, PF_IFNAMSIZ - 1))
    if rate is None:
        raise Invalid("no such interface")
    return rate


def h_gifspeed_v0(d, ctx, bytearray buf, mem):
    cdef pf_ifspeed_v0 *ps = <pf_ifspeed_v0 *><char *>buf
    ps.baudrate = min(_baudrate(d, ps.ifname), UINT32_MAX)


def h_gifspeed_v1(d, ctx, bytearray buf, mem):
    cdef pf_ifspeed_v1 *ps = <pf_ifspeed_v1 *><char *>buf
    rate = _baudrate(d, ps.ifname)
    ps.baudrate32 = min(rate, UINT32_MAX)
    ps.baudrate = rate


def h_gifspeed_fbsd6(d, ctx, bytearray buf, mem):
    """FreeBSD 6 stored the u_long if_baudrate into a u_int32_t: truncated, not clamped."""
    cdef pf_ifspeed_v0 *ps = <pf_ifspeed_v0 *><char *>buf
    ps.baudrate = _baudrate(d, ps.ifname) & UINT32_MAX


# --- DIOCGETSTATUS of older generations -------------------------------------------------------
# Both copied the whole kernel pf_status out and then the loginterface counters over it, so the
# interface counters are 0, not the caller's bytes, when no loginterface is set.

cdef void _status_now(PfCore core, pf_status *s):
    memset(s, 0, sizeof(pf_status))
    core.fill_status(s)


def h_getstatus_obsd37(d, ctx, bytearray buf, mem):
    """OpenBSD 3.7 / FreeBSD 6: 15 reason counters (12's 16th, map-failed, came later), a
    stateid, no pf_chksum."""
    cdef pf_status s
    cdef pf_status_obsd37 *o = <pf_status_obsd37 *><char *>buf
    _status_now(d.core, &s)
    memset(o, 0, sizeof(pf_status_obsd37))
    memcpy(o.counters, s.counters, sizeof(o.counters))
    memcpy(o.lcounters, s.lcounters, sizeof(o.lcounters))
    memcpy(o.fcounters, s.fcounters, sizeof(o.fcounters))
    memcpy(o.scounters, s.scounters, sizeof(o.scounters))
    memcpy(o.pcounters, s.pcounters, sizeof(o.pcounters))
    memcpy(o.bcounters, s.bcounters, sizeof(o.bcounters))
    o.stateid = 0           # the next state id: 0 until the state table numbers its states
    o.running = s.running
    o.states = s.states
    o.src_nodes = s.src_nodes
    o.since = s.since
    o.debug = s.debug
    o.hostid = s.hostid
    memcpy(o.ifname, s.ifname, sizeof(o.ifname))


def h_getstatus_nbsd(d, ctx, bytearray buf, mem):
    """NetBSD (OpenBSD 4.2 base): a stateid and pf_chksum; its 16th reason counter is
    "state-locked", not 12's map-failed, so it stays 0."""
    cdef pf_status s
    cdef pf_status_nbsd *o = <pf_status_nbsd *><char *>buf
    _status_now(d.core, &s)
    memset(o, 0, sizeof(pf_status_nbsd))
    memcpy(o.counters, s.counters, (PFRES_MAX - 1) * sizeof(uint64_t))
    memcpy(o.lcounters, s.lcounters, sizeof(o.lcounters))
    memcpy(o.fcounters, s.fcounters, sizeof(o.fcounters))
    memcpy(o.scounters, s.scounters, sizeof(o.scounters))
    memcpy(o.pcounters, s.pcounters, sizeof(o.pcounters))
    memcpy(o.bcounters, s.bcounters, sizeof(o.bcounters))
    o.stateid = 0           # as for OpenBSD 3.7
    o.running = s.running
    o.states = s.states
    o.src_nodes = s.src_nodes
    o.since = s.since
    o.debug = s.debug
    o.hostid = s.hostid
    memcpy(o.ifname, s.ifname, sizeof(o.ifname))
    memcpy(o.pf_chksum, s.pf_chksum, sizeof(o.pf_chksum))


# {command name: (handler(dispatcher, fd context, argument bytearray, caller memory), regions or None)}
HANDLERS = {
    "DIOCOSFPFLUSH": (h_osfpflush, None),
    "DIOCOSFPADD": (h_osfpadd, None),
    "DIOCOSFPGET": (h_osfpget, None),
    "DIOCSETIFFLAG": (h_setifflag, None),
    "DIOCCLRIFFLAG": (h_clrifflag, None),
    "DIOCGIFSPEEDV0": (h_gifspeed_v0, None),
    "DIOCGIFSPEEDV1": (h_gifspeed_v1, None),
    # older generations whose command values differ from FreeBSD 12's (pf-abi.md §3.5)
    "DIOCGETSTATUS_OBSD37": (h_getstatus_obsd37, None),
    "DIOCGETSTATUS_NBSD": (h_getstatus_nbsd, None),
    "DIOCGIFSPEED_FBSD6": (h_gifspeed_fbsd6, None),
}
