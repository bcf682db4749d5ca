# Cython's view of include/net/pfvar.h — the daemon learns every layout from the header the C
# programs compile against; nothing here restates an offset. Only the members the daemon touches
# are declared (Cython needs no more); sizes come from sizeof() on the real C types.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t


cdef extern from "net/pfvar.h" nogil:
    enum:
        PF_MAXPATHLEN
        PF_TABLE_NAME_SIZE
        PF_RULE_LABEL_SIZE
        PF_MD5_DIGEST_LENGTH
        PFRES_MAX
        LCNT_MAX
        FCNT_MAX
        SCNT_MAX
        PFTM_MAX
        PF_LIMIT_MAX
        PF_INOUT
        PF_IN
        PF_OUT
        PF_PASS
        PF_DROP
        PF_DEBUG_URGENT
        PFTM_INTERVAL
        PF_LIMIT_STATES
        PF_LIMIT_SRC_NODES
        PF_LIMIT_FRAGS
        PF_LIMIT_TABLE_ENTRIES
        PFI_IFLAG_SKIP
        PFI_FLAG_GROUP
        PFI_FLAG_INSTANCE
        PFI_IFLAG_GROUP
        PFI_IFLAG_INSTANCE
        PFI_IFLAG_ATTACHED
        PF_GET_CLR_CNTR
        PFR_FLAG_DUMMY

    # command values (Linux encoding; the BSD _IO forms are derived in pf_ioctl)
    enum:
        DIOCSTART
        DIOCSTOP
        DIOCADDRULE
        DIOCGETRULES
        DIOCGETRULE
        DIOCCLRSTATES
        DIOCGETSTATE
        DIOCSETSTATUSIF
        DIOCGETSTATUS
        DIOCCLRSTATUS
        DIOCNATLOOK
        DIOCSETDEBUG
        DIOCGETSTATES
        DIOCCHANGERULE
        DIOCSETTIMEOUT
        DIOCGETTIMEOUT
        DIOCADDSTATE
        DIOCCLRRULECTRS
        DIOCGETLIMIT
        DIOCSETLIMIT
        DIOCKILLSTATES
        DIOCSTARTALTQ
        DIOCSTOPALTQ
        DIOCADDALTQV0
        DIOCADDALTQV1
        DIOCGETALTQSV0
        DIOCGETALTQSV1
        DIOCGETALTQV0
        DIOCGETALTQV1
        DIOCCHANGEALTQV0
        DIOCCHANGEALTQV1
        DIOCGETQSTATSV0
        DIOCGETQSTATSV1
        DIOCBEGINADDRS
        DIOCADDADDR
        DIOCGETADDRS
        DIOCGETADDR
        DIOCCHANGEADDR
        DIOCGETRULESETS
        DIOCGETRULESET
        DIOCRCLRTABLES
        DIOCRADDTABLES
        DIOCRDELTABLES
        DIOCRGETTABLES
        DIOCRGETTSTATS
        DIOCRCLRTSTATS
        DIOCRCLRADDRS
        DIOCRADDADDRS
        DIOCRDELADDRS
        DIOCRSETADDRS
        DIOCRGETADDRS
        DIOCRGETASTATS
        DIOCRCLRASTATS
        DIOCRTSTADDRS
        DIOCRSETTFLAGS
        DIOCRINADEFINE
        DIOCOSFPFLUSH
        DIOCOSFPADD
        DIOCOSFPGET
        DIOCXBEGIN
        DIOCXCOMMIT
        DIOCXROLLBACK
        DIOCGETSRCNODES
        DIOCCLRSRCNODES
        DIOCSETHOSTID
        DIOCIGETIFACES
        DIOCSETIFFLAG
        DIOCCLRIFFLAG
        DIOCKILLSRCNODES
        DIOCGIFSPEEDV0
        DIOCGIFSPEEDV1
        DIOCICLRISTATS
        DIOCGETSTATUS_OBSD37
        DIOCGETSTATUS_NBSD
        DIOCGIFSPEED_FBSD6
        DIOCGETSTATE_OBSD37
        DIOCADDSTATE_OBSD37
        DIOCKILLSTATES_OBSD37
        DIOCCLRSTATES_OBSD37
        DIOCGETSTATE_NBSD
        DIOCADDSTATE_NBSD

    struct pf_addr:
        uint8_t addr8[16]
        uint16_t addr16[8]
        uint32_t addr32[4]

    struct pf_status:
        uint64_t counters[PFRES_MAX]
        uint64_t lcounters[LCNT_MAX]
        uint64_t fcounters[FCNT_MAX]
        uint64_t scounters[3]
        uint64_t pcounters[2][2][3]
        uint64_t bcounters[2][2]
        uint32_t running
        uint32_t states
        uint32_t src_nodes
        uint32_t since
        uint32_t debug
        uint32_t hostid
        char ifname[16]
        uint8_t pf_chksum[PF_MD5_DIGEST_LENGTH]

    struct pfioc_natlook:
        pf_addr saddr
        pf_addr daddr
        pf_addr rsaddr
        pf_addr rdaddr
        uint16_t sport
        uint16_t dport
        uint16_t rsport
        uint16_t rdport
        uint8_t af
        uint8_t proto
        uint8_t direction

    struct pfioc_tm:
        int timeout
        int seconds

    struct pfioc_limit:
        int index
        unsigned int limit

    struct pfioc_if:
        char ifname[16]

    struct pfioc_iface:
        char pfiio_name[16]
        void *pfiio_buffer
        int pfiio_esize
        int pfiio_size
        int pfiio_nzero
        int pfiio_flags

    struct pfi_kif:
        char pfik_name[16]
        uint64_t pfik_packets[2][2][2]
        uint64_t pfik_bytes[2][2][2]
        uint32_t pfik_tzero
        unsigned int pfik_flags
        void *pfik_ifp
        void *pfik_group
        unsigned int pfik_rulerefs

    # OpenBSD 3.x generation (seed 004)
    struct pfi_if:
        char pfif_name[16]
        uint64_t pfif_packets[2][2][2]
        uint64_t pfif_bytes[2][2][2]
        uint64_t pfif_addcnt
        uint64_t pfif_delcnt
        long pfif_tzero
        int pfif_states
        int pfif_rules
        int pfif_flags

    struct pfioc_rule:
        uint32_t action

    struct pfioc_table:
        int pfrio_flags

    struct pfioc_altq_v1:
        uint32_t action
