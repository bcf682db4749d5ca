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

    # reasons, timeouts, peer states and flags the packet path uses
    enum:
        PFRES_MATCH
        PFRES_FRAG
        PFRES_SHORT
        PFRES_MEMORY
        PFRES_IPOPTIONS
        PFRES_BADSTATE
        PFRES_STATEINS
        PFRES_MAXSTATES
        PFTM_TCP_FIRST_PACKET
        PFTM_TCP_OPENING
        PFTM_TCP_ESTABLISHED
        PFTM_TCP_CLOSING
        PFTM_TCP_FIN_WAIT
        PFTM_TCP_CLOSED
        PFTM_UDP_FIRST_PACKET
        PFTM_UDP_SINGLE
        PFTM_UDP_MULTIPLE
        PFTM_ICMP_FIRST_PACKET
        PFTM_ICMP_ERROR_REPLY
        PFTM_OTHER_FIRST_PACKET
        PFTM_OTHER_SINGLE
        PFTM_OTHER_MULTIPLE
        PFUDPS_NO_TRAFFIC
        PFUDPS_SINGLE
        PFUDPS_MULTIPLE
        PFOTHERS_NO_TRAFFIC
        PFOTHERS_SINGLE
        PFOTHERS_MULTIPLE
        PF_WSCALE_FLAG
        PF_WSCALE_MASK
        PF_LOG_ALL
        PFRULE_RETURNRST
        PFRULE_FRAGMENT
        PFRULE_SRCTRACK
        PF_FASTROUTE
        PF_ROUTETO
        PF_DUPTO
        PF_REPLYTO
        PFRES_MAPFAILED
        PFRULE_RULESRCTRACK
        PF_FLUSH
        PF_FLUSH_GLOBAL
        PF_THRESHOLD_MULT
        PFRES_SRCLIMIT
        LCNT_SRCSTATES
        LCNT_SRCNODES
        LCNT_SRCCONN
        LCNT_SRCCONNRATE
        LCNT_OVERLOAD_TABLE
        LCNT_OVERLOAD_FLUSH
        PFRULE_RETURNICMP
        PFRULE_RETURN
        PFRULE_IFBOUND
        PFRULE_STATESLOPPY
        PFSTATE_ALLOWOPTS
        PFSTATE_SLOPPY
        LCNT_STATES
        PFI_AFLAG_NETWORK

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

    struct pfioc_altq_v1:
        uint32_t action

    enum:
        PF_IFNAMSIZ
        PF_SKIP_COUNT
        PF_TAG_NAME_SIZE
        PF_SKIP_IFP
        PF_SKIP_DIR
        PF_SKIP_AF
        PF_SKIP_PROTO
        PF_SKIP_SRC_ADDR
        PF_SKIP_SRC_PORT
        PF_SKIP_DST_ADDR
        PF_SKIP_DST_PORT
        PF_ADDR_ADDRMASK
        PF_ADDR_NOROUTE
        PF_ADDR_DYNIFTL
        PF_ADDR_TABLE
        PF_ADDR_URPFFAILED
        PF_ADDR_RANGE

    struct pf_addr_wrap_a:
        pf_addr addr
        pf_addr mask

    union pf_addr_wrap_v:
        pf_addr_wrap_a a
        char ifname[16]
        char tblname[32]

    union pf_addr_wrap_p:
        void *dyn
        void *tbl
        int dyncnt
        int tblcnt

    struct pf_addr_wrap:
        pf_addr_wrap_v v
        pf_addr_wrap_p p
        uint8_t type
        uint8_t iflags

    struct pf_rule_addr:
        pf_addr_wrap addr
        uint16_t port[2]
        uint8_t neg
        uint8_t port_op

    # The kernel list links are anonymous structs in the header; only their members are named.
    struct pf_link_:
        void *tqe_next
        void *tqe_prev

    struct pf_pooladdr:
        pf_addr_wrap addr
        pf_link_ entries
        char ifname[16]
        void *kif

    struct pf_palist:
        void *tqh_first
        void *tqh_last

    # key8/key16/key32 are the header's macros for pfk.key8... (the anonymous-union idiom)
    struct pf_poolhashkey:
        uint8_t key8[16]
        uint16_t key16[8]
        uint32_t key32[4]

    struct pf_pool:
        pf_palist list
        void *cur
        pf_poolhashkey key
        pf_addr counter
        int tblidx
        uint16_t proxy_port[2]
        uint8_t opts

    # translation (nat / binat / rdr and their "no" forms) and address pools
    enum:
        PF_SCRUB
        PF_NOSCRUB
        PF_NAT
        PF_NONAT
        PF_BINAT
        PF_NOBINAT
        PF_RDR
        PF_NORDR
        PF_RULESET_SCRUB
        PF_RULESET_FILTER
        PF_RULESET_NAT
        PF_RULESET_BINAT
        PF_RULESET_RDR
        PF_POOL_NONE
        PF_POOL_BITMASK
        PF_POOL_RANDOM
        PF_POOL_SRCHASH
        PF_POOL_ROUNDROBIN
        PF_POOL_TYPEMASK
        PF_POOL_STICKYADDR

    union pf_rule_ptr:
        void *ptr
        uint32_t nr

    struct pf_rule_uid:
        uint32_t uid[2]
        uint8_t op

    struct pf_rule_gid:
        uint32_t gid[2]
        uint8_t op

    struct pf_rule_max_src_conn_rate:
        uint32_t limit
        uint32_t seconds

    struct pf_rule:
        pf_rule_addr src
        pf_rule_addr dst
        pf_rule_ptr skip[8]
        char label[64]
        char ifname[16]
        char qname[64]
        char pqname[64]
        char tagname[64]
        char match_tagname[64]
        char overload_tblname[32]
        pf_link_ entries
        pf_pool rpool
        uint64_t evaluations
        uint64_t packets[2]
        uint64_t bytes[2]
        void *kif
        void *anchor
        void *overload_tbl
        uint32_t os_fingerprint
        int rtableid
        uint32_t prob
        uint32_t nr
        uint32_t cuid
        int cpid
        void *states_cur
        void *states_tot
        void *src_nodes
        uint16_t return_icmp
        uint16_t tag
        uint16_t match_tag
        uint16_t scrub_flags
        pf_rule_uid uid
        pf_rule_gid gid
        uint32_t rule_flag
        uint8_t action
        uint8_t direction
        uint8_t log
        uint8_t logif
        uint8_t quick
        uint8_t ifnot
        uint8_t match_tag_not
        uint8_t natpass
        uint8_t keep_state
        uint8_t af
        uint8_t proto
        uint8_t type
        uint8_t code
        uint8_t flags
        uint8_t flagset
        uint8_t allow_opts
        uint8_t rt
        uint8_t tos
        uint8_t anchor_relative
        uint8_t anchor_wildcard
        uint8_t set_prio[2]
        uint64_t u_states_cur
        uint64_t u_states_tot
        uint64_t u_src_nodes
        uint32_t max_states
        uint32_t timeout[20]
        uint32_t max_src_nodes
        uint32_t max_src_states
        uint32_t max_src_conn
        pf_rule_max_src_conn_rate max_src_conn_rate
        uint8_t flush
        uint16_t return_icmp6
        uint8_t return_ttl
        uint8_t prio

    struct pfioc_rule:
        uint32_t action
        uint32_t ticket
        uint32_t pool_ticket
        uint32_t nr
        char anchor[1024]
        char anchor_call[1024]
        pf_rule rule

    struct pfioc_pooladdr:
        uint32_t action
        uint32_t ticket
        uint32_t nr
        uint32_t r_num
        uint8_t r_action
        uint8_t r_last
        uint8_t af
        char anchor[1024]
        pf_pooladdr addr

    struct pfioc_trans_e:
        int rs_num
        char anchor[1024]
        uint32_t ticket

    struct pfioc_trans:
        int size
        int esize
        pfioc_trans_e *array

    struct pfioc_ruleset:
        uint32_t nr
        char path[1024]
        char name[64]

    enum:
        PFR_TFLAG_PERSIST
        PFR_TFLAG_CONST
        PFR_TFLAG_ACTIVE
        PFR_TFLAG_INACTIVE
        PFR_TFLAG_REFERENCED
        PFR_TFLAG_REFDANCHOR
        PFR_TFLAG_COUNTERS
        PFR_TFLAG_USRMASK
        PFR_TFLAG_SETMASK
        PFR_FLAG_FEEDBACK
        PFR_FLAG_CLSTATS
        PFR_FLAG_ADDRSTOO
        PFR_FLAG_REPLACE
        PFR_FLAG_ALLRSETS
        PFR_FLAG_ALLMASK
        PFR_FB_NONE
        PFR_FB_MATCH
        PFR_FB_ADDED
        PFR_FB_DELETED
        PFR_FB_CHANGED
        PFR_FB_CLEARED
        PFR_FB_DUPLICATE
        PFR_FB_NOTMATCH
        PFR_FB_CONFLICT
        PFR_FB_NOCOUNT
        PFR_DIR_MAX
        PFR_OP_BLOCK
        PFR_OP_PASS
        PFR_OP_XPASS
        PFR_OP_ADDR_MAX
        PFR_OP_TABLE_MAX
        PFR_REFCNT_RULE
        PFR_REFCNT_ANCHOR
        PFR_REFCNT_MAX

    struct in6_addr:
        pass

    struct pfr_table:
        char pfrt_anchor[PF_MAXPATHLEN]
        char pfrt_name[PF_TABLE_NAME_SIZE]
        uint32_t pfrt_flags
        uint8_t pfrt_fback

    struct pfr_addr:
        in6_addr pfra_ip6addr           # the union's widest member: the address bytes
        uint8_t pfra_af
        uint8_t pfra_net
        uint8_t pfra_not
        uint8_t pfra_fback

    struct pfr_astats:
        pfr_addr pfras_a
        uint64_t pfras_packets[PFR_DIR_MAX][PFR_OP_ADDR_MAX]
        uint64_t pfras_bytes[PFR_DIR_MAX][PFR_OP_ADDR_MAX]
        long pfras_tzero

    struct pfr_tstats:
        pfr_table pfrts_t
        uint64_t pfrts_packets[PFR_DIR_MAX][PFR_OP_TABLE_MAX]
        uint64_t pfrts_bytes[PFR_DIR_MAX][PFR_OP_TABLE_MAX]
        uint64_t pfrts_match
        uint64_t pfrts_nomatch
        long pfrts_tzero
        int pfrts_cnt
        int pfrts_refcnt[PFR_REFCNT_MAX]

    struct pfioc_table:
        pfr_table pfrio_table
        void *pfrio_buffer
        int pfrio_esize
        int pfrio_size
        int pfrio_size2
        int pfrio_nadd
        int pfrio_ndel
        int pfrio_nchange
        int pfrio_flags
        uint32_t pfrio_ticket

    enum:
        PF_SK_WIRE
        PF_SK_STACK
        PF_RULE_LABEL_SIZE_ "PF_RULE_LABEL_SIZE"
        PF_OP_NONE
        PF_OP_IRG
        PF_OP_EQ
        PF_OP_NE
        PF_OP_LT
        PF_OP_LE
        PF_OP_GT
        PF_OP_GE
        PF_OP_XRG
        PF_OP_RRG
        PFTM_SRC_NODE
        PFTM_ADAPTIVE_START
        PFTM_ADAPTIVE_END
        PFTM_PURGE
        PFTM_UNLINKED
        FCNT_STATE_SEARCH
        FCNT_STATE_INSERT
        FCNT_STATE_REMOVALS
        SCNT_SRC_NODE_SEARCH
        SCNT_SRC_NODE_INSERT
        SCNT_SRC_NODE_REMOVALS
        PF_TCPS_PROXY_DST
        PFSTATE_ACK
        PFSTATE_NOSYNC
        PFSS_TIMESTAMP
        PFSYNC_SCRUB_FLAG_VALID
        PFSYNC_FLAG_SRCNODE
        PFSYNC_FLAG_NATSRCNODE

    struct pfsync_state_scrub:
        uint16_t pfss_flags
        uint8_t pfss_ttl
        uint8_t scrub_flag
        uint32_t pfss_ts_mod

    struct pfsync_state_peer:
        pfsync_state_scrub scrub
        uint32_t seqlo
        uint32_t seqhi
        uint32_t seqdiff
        uint16_t max_win
        uint16_t mss
        uint8_t state
        uint8_t wscale

    struct pfsync_state_key:
        pf_addr addr[2]
        uint16_t port[2]

    struct pfsync_state:
        uint64_t id
        char ifname[16]
        pfsync_state_key key[2]
        pfsync_state_peer src
        pfsync_state_peer dst
        pf_addr rt_addr
        uint32_t rule
        uint32_t anchor
        uint32_t nat_rule
        uint32_t creation
        uint32_t expire
        uint32_t packets[2][2]
        uint32_t bytes[2][2]
        uint32_t creatorid
        uint8_t af
        uint8_t proto
        uint8_t direction
        uint8_t log
        uint8_t state_flags
        uint8_t timeout
        uint8_t sync_flags
        uint8_t updates

    struct pfioc_state:
        pfsync_state state

    struct pf_state_cmp:
        uint64_t id
        uint32_t creatorid
        uint8_t direction

    struct pfioc_state_kill:
        pf_state_cmp psk_pfcmp
        uint8_t psk_af
        int psk_proto
        pf_rule_addr psk_src
        pf_rule_addr psk_dst
        char psk_ifname[16]
        char psk_label[64]
        unsigned int psk_killed

    struct pfioc_states:
        int ps_len
        char *ps_buf

    struct pf_threshold:
        uint32_t limit
        uint32_t seconds
        uint32_t count
        uint32_t last

    struct pf_src_node:
        pf_addr addr
        pf_addr raddr
        pf_rule_ptr rule
        uint64_t bytes[2]
        uint64_t packets[2]
        uint32_t states
        uint32_t conn
        pf_threshold conn_rate
        uint32_t creation
        uint32_t expire
        uint8_t af
        uint8_t ruletype

    struct pfioc_src_nodes:
        int psn_len
        char *psn_buf

    struct pfioc_src_node_kill:
        uint8_t psnk_af
        pf_rule_addr psnk_src
        pf_rule_addr psnk_dst
        unsigned int psnk_killed

    struct pf_state_host:
        pf_addr addr
        uint16_t port

    struct pf_state_peer_obsd37:
        uint32_t seqlo
        uint32_t seqhi
        uint32_t seqdiff
        uint16_t max_win
        uint8_t state
        uint8_t wscale
        uint16_t mss
        void *scrub

    union pf_state_obsd37_u:
        char ifname[16]

    # OpenBSD 3.7's kernel pf_state as DIOCGETSTATE/DIOCADDSTATE carry it (368 bytes)
    struct pf_state_obsd37:
        uint64_t id
        pf_state_obsd37_u u
        pf_state_host lan
        pf_state_host gwy
        pf_state_host ext
        pf_state_peer_obsd37 src
        pf_state_peer_obsd37 dst
        pf_rule_ptr rule
        pf_rule_ptr anchor
        pf_rule_ptr nat_rule
        pf_addr rt_addr
        void *rt_kif
        void *src_node
        void *nat_src_node
        uint32_t creation
        uint32_t expire
        uint32_t pfsync_time
        uint32_t packets[2]
        uint32_t bytes[2]
        uint32_t creatorid
        uint16_t tag
        uint8_t af
        uint8_t proto
        uint8_t direction
        uint8_t log
        uint8_t allow_opts
        uint8_t timeout
        uint8_t sync_flags

    struct pfioc_state_obsd37:
        uint32_t nr
        pf_state_obsd37 state

    struct pfioc_state_kill_obsd37:
        uint8_t psk_af
        int psk_proto
        pf_rule_addr psk_src
        pf_rule_addr psk_dst
        char psk_ifname[16]

    struct pfsync_state_host_nbsd:
        pf_addr addr
        uint16_t port

    # NetBSD's exported state (240 bytes, packed; OpenBSD 4.2's pfsync_state)
    struct pfsync_state_nbsd:
        uint32_t id[2]
        char ifname[16]
        pfsync_state_host_nbsd lan
        pfsync_state_host_nbsd gwy
        pfsync_state_host_nbsd ext
        pfsync_state_peer src
        pfsync_state_peer dst
        pf_addr rt_addr
        uint32_t rule
        uint32_t anchor
        uint32_t nat_rule
        uint32_t creation
        uint32_t expire
        uint32_t packets[2][2]
        uint32_t bytes[2][2]
        uint32_t creatorid
        uint8_t af
        uint8_t proto
        uint8_t direction
        uint8_t log
        uint8_t allow_opts
        uint8_t timeout
        uint8_t sync_flags
        uint8_t updates

    struct pfioc_state_nbsd:
        uint32_t nr
        pfsync_state_nbsd *state
