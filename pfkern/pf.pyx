# cython: language_level=3
"""The pf core's global state (FreeBSD pf.c / pf_ioctl.c globals): run state, status counters,
default timeouts and limits, and the state table the datapath fills.

Operations raise pfkern.errors exceptions; pf_ioctl turns them into errnos.
"""
import os
import struct
import threading
import time

from libc.string cimport memset, memcpy, strncpy
from libc.stdint cimport uint64_t
from pfkern.pfvar cimport *
from pfkern.errors import Exists, Invalid, NotFound

cdef enum:
    IFNAMSIZ_ = 16

# FreeBSD 12.1 defaults (pf-abi.md §2.0): seconds per PFTM index, then pool limits.
DEFAULT_TIMEOUTS = (120, 30, 86400, 900, 45, 90, 60, 30, 60, 20, 10, 60, 30, 60, 30, 10,
                    60000, 120000, 0, 30)
DEFAULT_LIMITS = (100000, 10000, 5000, 200000)


def random_hostid():
    """A non-zero random hostid, as arc4random() gives FreeBSD at attach and for hostid 0."""
    while True:
        value = struct.unpack("=I", os.urandom(4))[0]
        if value:
            return value


cdef class PfCore:
    def __init__(self, interfaces=None):
        self.lock = threading.RLock()
        memset(&self.status, 0, sizeof(self.status))
        self.status.debug = PF_DEBUG_URGENT
        self.status.hostid = random_hostid()
        self.status.since = <uint32_t>time.time()
        for i, seconds in enumerate(DEFAULT_TIMEOUTS):
            self.timeout[i] = seconds
        for i, value in enumerate(DEFAULT_LIMITS):
            self.limit[i] = value
        self.interfaces = interfaces

    # -- run state ---------------------------------------------------------------------------
    @property
    def running(self):
        return bool(self.status.running)

    def start(self):
        if self.status.running:
            raise Exists("pf already running")
        self.status.running = 1
        self.status.since = <uint32_t>time.time()

    def stop(self):
        if not self.status.running:
            raise NotFound("pf not running")
        self.status.running = 0
        self.status.since = <uint32_t>time.time()

    def set_debug(self, uint32_t level):
        self.status.debug = level

    def set_hostid(self, uint32_t hostid):
        self.status.hostid = hostid if hostid else random_hostid()

    @property
    def hostid(self):
        return self.status.hostid

    # -- status ------------------------------------------------------------------------------
    cdef void fill_status(self, pf_status *out):
        """DIOCGETSTATUS: everything but the loginterface counters, which are replaced only when
        the loginterface names an existing kif (otherwise the caller's bytes stay)."""
        memcpy(out.counters, self.status.counters, sizeof(self.status.counters))
        memcpy(out.lcounters, self.status.lcounters, sizeof(self.status.lcounters))
        memcpy(out.fcounters, self.status.fcounters, sizeof(self.status.fcounters))
        memcpy(out.scounters, self.status.scounters, sizeof(self.status.scounters))
        out.running = self.status.running
        out.since = self.status.since
        out.debug = self.status.debug
        out.hostid = self.status.hostid
        out.states = len(self.states) if self.states is not None else 0
        out.src_nodes = self.status.src_nodes
        memcpy(out.ifname, self.status.ifname, sizeof(self.status.ifname))
        memcpy(out.pf_chksum, self.status.pf_chksum, sizeof(self.status.pf_chksum))
        self.update_if_status(out)

    cdef void update_if_status(self, pf_status *out):
        """pfi_update_status: sum the loginterface's (or its group members') counters into
        out, or clear the kif counters when out is NULL (DIOCCLRSTATUS)."""
        cdef int af, d, a
        name = self.status.ifname[:IFNAMSIZ_].split(b"\0", 1)[0].decode("latin-1")
        if not name or self.interfaces is None:
            return
        kifs = self.interfaces.members(name)
        if not kifs:
            return
        if out == NULL:
            for kif in kifs:
                kif.clear_counters()
            return
        memset(out.pcounters, 0, sizeof(out.pcounters))
        memset(out.bcounters, 0, sizeof(out.bcounters))
        for kif in kifs:
            for af in range(2):
                for d in range(2):
                    for a in range(2):
                        out.pcounters[af][d][a] += kif.packets[af * 4 + d * 2 + a]
                        out.bcounters[af][d] += kif.bytes[af * 4 + d * 2 + a]

    def clear_status(self):
        memset(self.status.counters, 0, sizeof(self.status.counters))
        memset(self.status.lcounters, 0, sizeof(self.status.lcounters))
        memset(self.status.fcounters, 0, sizeof(self.status.fcounters))
        memset(self.status.scounters, 0, sizeof(self.status.scounters))
        self.status.since = <uint32_t>time.time()
        self.update_if_status(NULL)

    def set_status_interface(self, bytes name):
        """DIOCSETSTATUSIF: no existence check in FreeBSD 12."""
        memset(self.status.ifname, 0, sizeof(self.status.ifname))
        strncpy(self.status.ifname, name[:IFNAMSIZ_ - 1], IFNAMSIZ_ - 1)

    # -- what other concerns record in the status (Python-level accessors; the datapath will
    # reach `status` directly from C) ------------------------------------------------------
    def set_chksum(self, bytes digest):
        """pf_chksum of the main ruleset, computed by pf_ruleset at commit."""
        if len(digest) != PF_MD5_DIGEST_LENGTH:
            raise ValueError("pf_chksum is an MD5 digest (16 bytes)")
        memcpy(self.status.pf_chksum, <char *>digest, PF_MD5_DIGEST_LENGTH)

    def add_counter(self, int reason, uint64_t n=1):
        """counters[PFRES_*]"""
        if not 0 <= reason < PFRES_MAX:
            raise IndexError(reason)
        self.status.counters[reason] += n

    def add_lcounter(self, int index, uint64_t n=1):
        """lcounters[LCNT_*]"""
        if not 0 <= index < LCNT_MAX:
            raise IndexError(index)
        self.status.lcounters[index] += n

    def add_fcounter(self, int index, uint64_t n=1):
        """fcounters[FCNT_STATE_SEARCH/INSERT/REMOVALS]"""
        if not 0 <= index < FCNT_MAX:
            raise IndexError(index)
        self.status.fcounters[index] += n

    def add_scounter(self, int index, uint64_t n=1):
        """scounters[SCNT_SRC_NODE_SEARCH/INSERT/REMOVALS]"""
        if not 0 <= index < SCNT_MAX:
            raise IndexError(index)
        self.status.scounters[index] += n

    def set_src_nodes(self, uint32_t n):
        self.status.src_nodes = n

    # -- timeouts and limits -----------------------------------------------------------------
    def get_timeout(self, int index):
        if index < 0 or index >= PFTM_MAX:
            raise Invalid("timeout index out of range")
        return self.timeout[index]

    def set_timeout(self, int index, int seconds):
        """Returns the previous value; an interval of 0 becomes 1 (the purge must run)."""
        if index < 0 or index >= PFTM_MAX or seconds < 0:
            raise Invalid("bad timeout index or value")
        old = self.timeout[index]
        if index == PFTM_INTERVAL and seconds == 0:
            seconds = 1
        self.timeout[index] = seconds
        return old

    def get_limit(self, int index):
        if index < 0 or index >= PF_LIMIT_MAX:
            raise Invalid("limit index out of range")
        return self.limit[index]

    def set_limit(self, int index, unsigned int value):
        if index < 0 or index >= PF_LIMIT_MAX:
            raise Invalid("limit index out of range")
        old = self.limit[index]
        self.limit[index] = value
        return old

