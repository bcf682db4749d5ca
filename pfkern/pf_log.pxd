# pflog (FreeBSD's if_pflog.c): packets of rules with `log` become pcap records (LINKTYPE_PFLOG,
# a 64-byte struct pfloghdr before the IP packet) that tcpdump reads. docs/pflog.md has the why.
#
# Datapath side: one nogil, allocation-free call per logged packet copies the record into the
# unit's ring buffer (a mutex held for one memcpy); a writer thread per unit moves it to a pcap
# file and/or a FIFO. A full ring, an absent unit or a FIFO with no reader never blocks a packet:
# the record is dropped and counted. `from pfkern.pf_log cimport pflog_rule, pflog_packet`.
from libc.stdint cimport uint8_t, uint32_t, int32_t

from pfkern.pfvar cimport pf_rule
from pfkern.pf_tap cimport tap_pkt


cdef extern from "net/if_pflog.h" nogil:
    enum:
        PFLOGIFS_MAX
        PFLOG_IFNAMSIZ
        PFLOG_RULESET_NAME_SIZE
        PFLOG_HDRLEN
        PFLOG_REAL_HDRLEN
        DLT_PFLOG

    struct pfloghdr:
        uint8_t length
        uint8_t af
        uint8_t action
        uint8_t reason
        char ifname[16]
        char ruleset[16]
        uint32_t rulenr
        uint32_t subrulenr
        uint32_t uid
        int32_t pid
        uint32_t rule_uid
        int32_t rule_pid
        uint8_t dir
        uint8_t pad[3]


# Return values of pflog_packet / pflog_rule.
cdef enum:
    PFLOG_QUEUED = 0            # the record is in the ring; the writer thread writes it
    PFLOG_NOUNIT = 1            # no Pflog open for that unit (FreeBSD: no pflogN) - not an error
    PFLOG_FULL = 2              # the ring had no room: dropped, counted in stats()["dropped"]


# The call for pf_test, FreeBSD's PFLOG_PACKET(kif, m, af, dir, reason, rm, am, ruleset, pd):
#   p       the packet as it is now (after translation, if any); af from p.af (Linux values)
#   dir     PF_IN / PF_OUT
#   reason  PFRES_*
#   ifname  the kif's name (char[16], NUL-padded), e.g. tap_if.name
#   rm      the rule whose `log` fired (its logif picks the unit, its action/nr/cuid/cpid are
#           recorded)
#   am      NULL when rm is in the main ruleset; else the main-ruleset anchor-call rule it was
#           reached through (FreeBSD's `a`: depth-0 anchor rule) -> "rule am.nr.anchor.rm.nr"
#   anchor  the name (not the path) of the anchor holding rm, or NULL; cut to 15 bytes
cdef int pflog_rule(const tap_pkt *p, uint8_t dir, uint8_t reason, const char *ifname,
                    const pf_rule *rm, const pf_rule *am, const char *anchor) noexcept nogil

# The same with every field explicit (pflog_rule calls this). rulenr/subrulenr in host order;
# subrulenr 0xffffffff = no anchor; uid 0xffffffff = unknown socket owner (UID_MAX).
cdef int pflog_packet(uint8_t unit, const tap_pkt *p, uint8_t dir, uint8_t action,
                      uint8_t reason, const char *ifname, uint32_t rulenr, uint32_t subrulenr,
                      const char *ruleset, uint32_t uid, uint32_t rule_uid,
                      int32_t rule_pid) noexcept nogil

# Is a Pflog open for this unit? (A racy hint; pflog_packet checks again under the lock.)
cdef bint pflog_active(uint8_t unit) noexcept nogil
