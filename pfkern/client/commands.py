"""ioctl command values of pf (reference/pf-abi.md appendix A), computed from the ctypes sizes.

Linux encoding (what a C program built against include/net/pfvar.h sends).  It equals the BSD value
for every `_IOWR` command; the 8 argument-less `_IO` commands differ, so each also has a `*_BSD`
twin (`DIOCSTART` = 0x00004401, `DIOCSTART_BSD` = 0x20004401).  The daemon accepts both.
"""
import ctypes

from . import structs as S

# Linux asm-generic layout: nr 0-7, type 8-15, size 16-29, dir 30-31.
_IOC_NRSHIFT, _IOC_TYPESHIFT, _IOC_SIZESHIFT, _IOC_DIRSHIFT = 0, 8, 16, 30
_IOC_SIZEMASK = (1 << 14) - 1
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2

# FreeBSD sys/ioccom.h
IOCPARM_SHIFT = 13
IOCPARM_MASK = (1 << IOCPARM_SHIFT) - 1
IOC_VOID = 0x20000000
IOC_OUT = 0x40000000
IOC_IN = 0x80000000
IOC_INOUT = IOC_IN | IOC_OUT


def _size_of(t):
    return t if isinstance(t, int) else ctypes.sizeof(t)


def _IOC(direction, group, nr, size):
    if not 0 <= size <= _IOC_SIZEMASK:
        raise ValueError(f"ioctl size {size} does not fit")
    return (direction << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT) | (group << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT)


def _grp(g):
    return ord(g) if isinstance(g, str) else g


def _IO(g, nr):
    """Linux `_IO`."""
    return _IOC(_IOC_NONE, _grp(g), nr, 0)


def _IOR(g, nr, t):
    """Linux `_IOR` (kernel writes)."""
    return _IOC(_IOC_READ, _grp(g), nr, _size_of(t))


def _IOW(g, nr, t):
    """Linux `_IOW` (kernel reads)."""
    return _IOC(_IOC_WRITE, _grp(g), nr, _size_of(t))


def _IOWR(g, nr, t):
    """Linux `_IOWR`; equals BSD `_IOWR` for sizes below 8192."""
    return _IOC(_IOC_READ | _IOC_WRITE, _grp(g), nr, _size_of(t))


def _IO_BSD(g, nr):
    """FreeBSD `_IO` (IOC_VOID set)."""
    return IOC_VOID | (_grp(g) << 8) | nr


def _IOWR_BSD(g, nr, t):
    size = _size_of(t)
    if size > IOCPARM_MASK:
        raise ValueError(f"ioctl size {size} cannot be BSD-encoded")
    return IOC_INOUT | ((size & IOCPARM_MASK) << 16) | (_grp(g) << 8) | nr


def _IOC_SIZE(cmd):
    return (cmd >> _IOC_SIZESHIFT) & _IOC_SIZEMASK


def _IOC_NR(cmd):
    return cmd & 0xFF


def _IOC_TYPE(cmd):
    return (cmd >> _IOC_TYPESHIFT) & 0xFF


def _IOC_DIR(cmd):
    return (cmd >> _IOC_DIRSHIFT) & 3


def is_bsd_io(cmd):
    """True for a BSD-encoded argument-less command (IOC_VOID, size 0)."""
    return (cmd & 0xE0000000) == IOC_VOID and (cmd >> 16) & IOCPARM_MASK == 0


def to_linux(cmd):
    """Map a BSD `_IO` value to its Linux twin; other values are returned unchanged."""
    return cmd & 0xFFFF if is_bsd_io(cmd) else cmd


u_int32_t = ctypes.c_uint32

# (name, nr, struct or None for _IO) — the order of appendix A.
TABLE = [
    ("DIOCSTART", 1, None),
    ("DIOCSTOP", 2, None),
    ("DIOCADDRULE", 4, S.pfioc_rule),
    ("DIOCGETRULES", 6, S.pfioc_rule),
    ("DIOCGETRULE", 7, S.pfioc_rule),
    ("DIOCCLRSTATES", 18, S.pfioc_state_kill),
    ("DIOCGETSTATE", 19, S.pfioc_state),
    ("DIOCSETSTATUSIF", 20, S.pfioc_if),
    ("DIOCGETSTATUS", 21, S.pf_status),
    ("DIOCCLRSTATUS", 22, None),
    ("DIOCNATLOOK", 23, S.pfioc_natlook),
    ("DIOCSETDEBUG", 24, u_int32_t),
    ("DIOCGETSTATES", 25, S.pfioc_states),
    ("DIOCCHANGERULE", 26, S.pfioc_rule),
    ("DIOCSETTIMEOUT", 29, S.pfioc_tm),
    ("DIOCGETTIMEOUT", 30, S.pfioc_tm),
    ("DIOCADDSTATE", 37, S.pfioc_state),
    ("DIOCCLRRULECTRS", 38, None),
    ("DIOCGETLIMIT", 39, S.pfioc_limit),
    ("DIOCSETLIMIT", 40, S.pfioc_limit),
    ("DIOCKILLSTATES", 41, S.pfioc_state_kill),
    ("DIOCSTARTALTQ", 42, None),
    ("DIOCSTOPALTQ", 43, None),
    ("DIOCADDALTQV0", 45, S.pfioc_altq_v0),
    ("DIOCADDALTQV1", 45, S.pfioc_altq_v1),
    ("DIOCGETALTQSV0", 47, S.pfioc_altq_v0),
    ("DIOCGETALTQSV1", 47, S.pfioc_altq_v1),
    ("DIOCGETALTQV0", 48, S.pfioc_altq_v0),
    ("DIOCGETALTQV1", 48, S.pfioc_altq_v1),
    ("DIOCCHANGEALTQV0", 49, S.pfioc_altq_v0),
    ("DIOCCHANGEALTQV1", 49, S.pfioc_altq_v1),
    ("DIOCGETQSTATSV0", 50, S.pfioc_qstats_v0),
    ("DIOCGETQSTATSV1", 50, S.pfioc_qstats_v1),
    ("DIOCBEGINADDRS", 51, S.pfioc_pooladdr),
    ("DIOCADDADDR", 52, S.pfioc_pooladdr),
    ("DIOCGETADDRS", 53, S.pfioc_pooladdr),
    ("DIOCGETADDR", 54, S.pfioc_pooladdr),
    ("DIOCCHANGEADDR", 55, S.pfioc_pooladdr),
    ("DIOCGETRULESETS", 58, S.pfioc_ruleset),
    ("DIOCGETRULESET", 59, S.pfioc_ruleset),
    ("DIOCRCLRTABLES", 60, S.pfioc_table),
    ("DIOCRADDTABLES", 61, S.pfioc_table),
    ("DIOCRDELTABLES", 62, S.pfioc_table),
    ("DIOCRGETTABLES", 63, S.pfioc_table),
    ("DIOCRGETTSTATS", 64, S.pfioc_table),
    ("DIOCRCLRTSTATS", 65, S.pfioc_table),
    ("DIOCRCLRADDRS", 66, S.pfioc_table),
    ("DIOCRADDADDRS", 67, S.pfioc_table),
    ("DIOCRDELADDRS", 68, S.pfioc_table),
    ("DIOCRSETADDRS", 69, S.pfioc_table),
    ("DIOCRGETADDRS", 70, S.pfioc_table),
    ("DIOCRGETASTATS", 71, S.pfioc_table),
    ("DIOCRCLRASTATS", 72, S.pfioc_table),
    ("DIOCRTSTADDRS", 73, S.pfioc_table),
    ("DIOCRSETTFLAGS", 74, S.pfioc_table),
    ("DIOCRINADEFINE", 77, S.pfioc_table),
    ("DIOCOSFPFLUSH", 78, None),
    ("DIOCOSFPADD", 79, S.pf_osfp_ioctl),
    ("DIOCOSFPGET", 80, S.pf_osfp_ioctl),
    ("DIOCXBEGIN", 81, S.pfioc_trans),
    ("DIOCXCOMMIT", 82, S.pfioc_trans),
    ("DIOCXROLLBACK", 83, S.pfioc_trans),
    ("DIOCGETSRCNODES", 84, S.pfioc_src_nodes),
    ("DIOCCLRSRCNODES", 85, None),
    ("DIOCSETHOSTID", 86, u_int32_t),
    ("DIOCIGETIFACES", 87, S.pfioc_iface),
    ("DIOCICLRISTATS", 88, S.pfioc_iface),      # OpenBSD 3.x / FreeBSD 6 only
    ("DIOCSETIFFLAG", 89, S.pfioc_iface),
    ("DIOCCLRIFFLAG", 90, S.pfioc_iface),
    ("DIOCKILLSRCNODES", 91, S.pfioc_src_node_kill),
    ("DIOCGIFSPEEDV0", 92, S.pf_ifspeed_v0),
    ("DIOCGIFSPEEDV1", 92, S.pf_ifspeed_v1),
    # older generations whose values differ from FreeBSD 12's (pf-abi.md §3.5)
    ("DIOCGETSTATUS_OBSD37", 21, S.pf_status_obsd37),
    ("DIOCGETSTATUS_NBSD", 21, S.pf_status_nbsd),
    ("DIOCGIFSPEED_FBSD6", 91, S.pf_ifspeed_v0),
    ("DIOCCLRSTATES_OBSD37", 18, S.pfioc_state_kill_obsd37),
    ("DIOCGETSTATE_OBSD37", 19, S.pfioc_state_obsd37),
    ("DIOCADDSTATE_OBSD37", 37, S.pfioc_state_obsd37),
    ("DIOCKILLSTATES_OBSD37", 41, S.pfioc_state_kill_obsd37),
    ("DIOCGETSTATE_NBSD", 19, S.pfioc_state_nbsd),
    ("DIOCADDSTATE_NBSD", 37, S.pfioc_state_nbsd),
]

COMMANDS = {}           # name -> Linux value
ARGTYPE = {}            # Linux value -> ctypes type (None for _IO); several names may share none
BSD_IO = {}             # name -> BSD value, for the _IO commands

for _name, _nr, _t in TABLE:
    if _t is None:
        COMMANDS[_name] = _IO("D", _nr)
        BSD_IO[_name + "_BSD"] = _IO_BSD("D", _nr)
    else:
        COMMANDS[_name] = _IOWR("D", _nr, _t)
    ARGTYPE[COMMANDS[_name]] = _t

# Unversioned ALTQ/ifspeed names as C gets them without PFIOC_USE_LATEST (V0); NetBSD's names of
# the 136-byte kill forms, which are OpenBSD 3.7's values.
ALIASES = {
    "DIOCCLRSTATES_NBSD": "DIOCCLRSTATES_OBSD37",
    "DIOCKILLSTATES_NBSD": "DIOCKILLSTATES_OBSD37",
    "DIOCADDALTQ": "DIOCADDALTQV0",
    "DIOCGETALTQS": "DIOCGETALTQSV0",
    "DIOCGETALTQ": "DIOCGETALTQV0",
    "DIOCCHANGEALTQ": "DIOCCHANGEALTQV0",
    "DIOCGETQSTATS": "DIOCGETQSTATSV0",
    "DIOCGIFSPEED": "DIOCGIFSPEEDV0",
}

globals().update(COMMANDS)
globals().update(BSD_IO)
globals().update({a: COMMANDS[t] for a, t in ALIASES.items()})

NAMES = {v: k for k, v in COMMANDS.items()}
NAMES.update({v: k for k, v in BSD_IO.items()})


def name_of(cmd):
    """Symbolic name of a command value (Linux or BSD form), or its hex value."""
    return NAMES.get(cmd, f"0x{cmd:08x}")


__all__ = (["COMMANDS", "ARGTYPE", "BSD_IO", "ALIASES", "NAMES", "TABLE", "name_of", "to_linux",
            "is_bsd_io", "IOC_VOID", "IOC_IN", "IOC_OUT", "IOC_INOUT", "IOCPARM_MASK",
            "IOCPARM_SHIFT", "_IO", "_IOR", "_IOW", "_IOWR", "_IO_BSD", "_IOWR_BSD", "_IOC",
            "_IOC_SIZE", "_IOC_NR", "_IOC_TYPE", "_IOC_DIR"]
           + list(COMMANDS) + list(BSD_IO) + list(ALIASES))
