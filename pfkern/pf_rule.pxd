# Rules and pool addresses as the pf core keeps them: the header's own C structs (so the packet
# engine can copy a committed ruleset into C arrays as is), plus the Python-side links (anchor
# called, pool, table handles). Declarations the lead's pfvar.pxd does not carry are read here
# from the same header; nothing restates an offset.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "net/pfvar.h" nogil:
    enum:
        PF_IFNAMSIZ
        PF_SKIP_COUNT
        PF_RULE_LABEL_SIZE
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

    struct pf_addr:
        uint8_t addr8[16]
        uint32_t addr32[4]

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

    struct pf_pool:
        pf_palist list
        void *cur
        pf_addr counter

    union pf_rule_ptr:
        void *ptr
        uint32_t nr

    struct pf_rule_uid:
        uint32_t uid[2]
        uint8_t op

    struct pf_rule_gid:
        uint32_t gid[2]
        uint8_t op

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


cdef class PoolAddr:
    cdef pf_pooladdr pa
    cdef public int af              # pfioc_pooladdr.af when added (dynamic address family)
    cdef public object table        # pf_table handle of a PF_ADDR_TABLE address, once attached

    cdef void copyout(self, pf_pooladdr *out)


cdef class Rule:
    cdef pf_rule r                  # the caller's rule with the kernel-set fields and counters
    cdef public object anchor       # pf_ruleset.Anchor this rule calls, or None
    cdef public list pool           # PoolAddr, in order (rpool)
    cdef public object src_table    # pf_table handles of PF_ADDR_TABLE addresses
    cdef public object dst_table
    cdef public object overload_table
    # The packet engine keeps a compiled rule's evaluation counter beside its match fields (one
    # write per rule looked at, off this 976-byte struct); while the rule is compiled into the
    # active generation this points at that counter, which r.evaluations does not include yet.
    # The engine folds it into r.evaluations (and clears the pointer) when the generation goes.
    cdef uint64_t *ext_evals

    cdef void copyout(self, pf_rule *out)
