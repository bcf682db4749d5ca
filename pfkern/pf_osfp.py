"""Passive OS fingerprints (FreeBSD pf_osfp.c): the list pfctl loads from /etc/pf.os.

FreeBSD keeps a list of TCP SYN signatures in the order they were first added; each signature
holds the operating systems that share it, the newest first. DIOCOSFPGET numbers the entries by
walking that list, so the order here is FreeBSD's and pfctl's numbering matches.

Operations raise pfkern.errors exceptions; pf_ioctl_misc turns them into errnos.
"""
from pfkern.errors import Busy, Exists, NoMemory

PF_OSFP_LEN = 32

# pf_osfp_t: class, version, subtype packed 10/10/10 bits; 0 in a field means "any".
PF_OSFP_ANY = 0
PF_OSFP_UNKNOWN = 0xFFFFFFFF
_FP_FIELD_BITS = 10
_FP_FIELD_MASK = (1 << _FP_FIELD_BITS) - 1

# fp_flags
PF_OSFP_WSIZE_MOD = 0x0001
PF_OSFP_WSIZE_DC = 0x0002
PF_OSFP_WSIZE_MSS = 0x0004
PF_OSFP_WSIZE_MTU = 0x0008
PF_OSFP_PSIZE_MOD = 0x0010
PF_OSFP_PSIZE_DC = 0x0020
PF_OSFP_WSCALE_MOD = 0x0080
PF_OSFP_WSCALE_DC = 0x0100
PF_OSFP_MSS_MOD = 0x0400
PF_OSFP_MSS_DC = 0x0800
PF_OSFP_DF = 0x1000
PF_OSFP_TS0 = 0x2000
PF_OSFP_MAXTTL_OFFSET = 40

# Window sizes of "smart" NAT boxes that rewrite the MSS (pf_osfp_find).
_SMART_MSS = 1460
_MTUOFF = 40            # sizeof(struct ip) + sizeof(struct tcphdr)

# FreeBSD is bounded only by kernel memory (M_NOWAIT malloc -> ENOMEM); bound the daemon so a
# client cannot grow it without limit. /etc/pf.os expands to well under a thousand entries.
OSFP_MAX_ENTRIES = 65536

SIGNATURE_FIELDS = ("tcpopts", "wsize", "psize", "mss", "flags", "optcnt", "wscale", "ttl")


def unpack(os_id):
    """PF_OSFP_UNPACK: (class, version, subtype)."""
    return ((os_id >> (2 * _FP_FIELD_BITS)) & _FP_FIELD_MASK,
            (os_id >> _FP_FIELD_BITS) & _FP_FIELD_MASK,
            os_id & _FP_FIELD_MASK)


class OsEntry:
    """One operating system of a signature (struct pf_osfp_entry). Names are the raw 32-byte
    arrays, bytes after the NUL included: FreeBSD compares them with memcmp."""
    __slots__ = ("os", "enflags", "class_nm", "version_nm", "subtype_nm")

    def __init__(self, os, enflags, class_nm, version_nm, subtype_nm):
        self.os = os
        self.enflags = enflags
        self.class_nm = class_nm
        self.version_nm = version_nm
        self.subtype_nm = subtype_nm

    @property
    def key(self):
        """What PF_OSFP_ENTRY_EQ compares."""
        return (self.os, self.class_nm, self.version_nm, self.subtype_nm)


class Fingerprint:
    """One TCP SYN signature (struct pf_os_fingerprint) and its OSes, newest first."""
    __slots__ = SIGNATURE_FIELDS + ("oses", "_keys")

    def __init__(self, signature):
        for name, value in zip(SIGNATURE_FIELDS, signature):
            setattr(self, name, value)
        self.oses = []
        self._keys = set()

    @property
    def signature(self):
        return tuple(getattr(self, name) for name in SIGNATURE_FIELDS)


def _terminated(name):
    """The kernel NUL-terminates each stored name in its last byte."""
    name = bytes(name[:PF_OSFP_LEN]).ljust(PF_OSFP_LEN, b"\0")
    return name[:PF_OSFP_LEN - 1] + b"\0"


class Fingerprints:
    """The fingerprint list of one pf (V_pf_osfp_list). The control plane changes it from the
    single request loop; lookups for the datapath go through find() and match()."""

    def __init__(self, core, max_entries=OSFP_MAX_ENTRIES):
        self.core = core
        self.max_entries = max_entries
        self._list = []             # Fingerprint, in the order first added (pf_osfp_insert: tail)
        self._by_sig = {}           # signature -> Fingerprint (pf_osfp_find_exact)
        self._count = 0
        self._numbered = None       # DIOCOSFPGET numbering, rebuilt after a change

    def __len__(self):
        return self._count

    def flush(self):
        """DIOCOSFPFLUSH."""
        self._list = []
        self._by_sig = {}
        self._count = 0
        self._numbered = None

    def add(self, signature, os, enflags, class_nm, version_nm, subtype_nm):
        """DIOCOSFPADD: `signature` is the tuple of SIGNATURE_FIELDS. EEXIST when this signature
        already holds the same OS entry (as FreeBSD compares: the incoming raw names against the
        stored, terminated ones); ENOMEM past the bound. Nothing changes on failure."""
        signature = tuple(signature)
        entry = OsEntry(os, enflags, bytes(class_nm), bytes(version_nm), bytes(subtype_nm))
        fp = self._by_sig.get(signature)
        if fp is not None and entry.key in fp._keys:
            raise Exists("duplicate OS fingerprint")
        if self._count >= self.max_entries:
            raise NoMemory("OS fingerprint list full")
        entry.class_nm = _terminated(entry.class_nm)
        entry.version_nm = _terminated(entry.version_nm)
        entry.subtype_nm = _terminated(entry.subtype_nm)
        if fp is None:
            fp = Fingerprint(signature)
            self._by_sig[signature] = fp
            self._list.append(fp)
        fp.oses.insert(0, entry)            # SLIST_INSERT_HEAD
        fp._keys.add(entry.key)
        self._count += 1
        self._numbered = None

    def get(self, num):
        """DIOCOSFPGET: entry number `num` as (fingerprint, entry, whether another entry of the
        same signature follows); EBUSY past the end, which ends pfctl's loop."""
        if self._numbered is None:
            self._numbered = [(fp, entry, i + 1 < len(fp.oses))
                              for fp in self._list for i, entry in enumerate(fp.oses)]
        if not 0 <= num < len(self._numbered):
            raise Busy("no such fingerprint entry")
        return self._numbered[num]

    # -- for the datapath (pf_osfp_find / pf_osfp_match) ----------------------------------------
    def find(self, tcpopts, optcnt, ttl, flags, psize, mss, wscale, wsize,
             ttldiff=PF_OSFP_MAXTTL_OFFSET):
        """The first signature that a SYN with these properties matches, or None. `flags`
        carries only PF_OSFP_DF and PF_OSFP_TS0 for a packet."""
        for f in self._list:
            if (f.tcpopts != tcpopts or f.optcnt != optcnt or f.ttl < ttl or f.ttl - ttl > ttldiff
                    or (f.flags & (PF_OSFP_DF | PF_OSFP_TS0)) != (flags & (PF_OSFP_DF | PF_OSFP_TS0))):
                continue
            if not (_match_int(f, PF_OSFP_PSIZE_MOD, PF_OSFP_PSIZE_DC, f.psize, psize)
                    and _match_int(f, PF_OSFP_MSS_MOD, PF_OSFP_MSS_DC, f.mss, mss)
                    and _match_int(f, PF_OSFP_WSCALE_MOD, PF_OSFP_WSCALE_DC, f.wscale, wscale)
                    and _match_wsize(f, wsize, mss)):
                continue
            return f
        return None

    @staticmethod
    def match(fingerprint, os_id):
        """pf_osfp_match: does a rule's `os` (0 fields = any) name one of the OSes of the
        signature a packet matched (None: no signature matched, only "unknown" fits)?"""
        if os_id == PF_OSFP_ANY:
            return True
        if fingerprint is None:
            return os_id == PF_OSFP_UNKNOWN
        want = unpack(os_id)
        for entry in fingerprint.oses:
            have = unpack(entry.os)
            if all(w == PF_OSFP_ANY or w == h for w, h in zip(want, have)):
                return True
        return False


def _match_int(f, mod, dc, expected, value):
    """MATCH_INT: don't care, a multiple of the signature's value, or equal."""
    if f.flags & dc:
        return True
    if f.flags & mod:
        return expected != 0 and value % expected == 0
    return expected == value


def _match_wsize(f, wsize, mss):
    """The window size: don't care, a multiple of the MSS or MTU (also of the MSS a smart NAT
    box may have substituted), a multiple of a constant, or equal."""
    if f.flags & PF_OSFP_WSIZE_DC:
        return True
    if f.flags & (PF_OSFP_WSIZE_MSS | PF_OSFP_WSIZE_MTU):
        if mss == 0:
            return False
        unit = mss if f.flags & PF_OSFP_WSIZE_MSS else mss + _MTUOFF
        smart = _SMART_MSS if f.flags & PF_OSFP_WSIZE_MSS else _SMART_MSS + _MTUOFF
        return ((wsize % unit == 0 and wsize // unit == f.wsize)
                or (wsize % smart == 0 and wsize // smart == f.wsize))
    if f.flags & PF_OSFP_WSIZE_MOD:
        return f.wsize != 0 and wsize % f.wsize == 0
    return f.wsize == wsize
