# pf_test on the datapath (FreeBSD 12.1 pf.c: pf_test/pf_test6, pf_test_rule, pf_test_state_*,
# pf_tcp_track_full): the compiled rulesets the packet path reads and the hook pf_tap calls.
# Everything below the Filter class runs without the GIL on C structs.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pfkern.pfvar cimport pf_addr, pf_status
from pfkern.pfvar_priv cimport pf_state_table, pthread_mutex_t
from pfkern.pf_tap cimport tap_if, tap_pkt, tap_engine
from pfkern.pf_table cimport pfr_dp
from pfkern.pf_nat cimport cf_pool
from pfkern.pf_norm cimport pf_norm_state


cdef enum:
    CF_STACKSIZE = 32           # FreeBSD's PF_ANCHOR_STACKSIZE
    CF_MAXDYN = 16              # interface addresses one "(ifname)" address stands for
    CF_MAXLABELS = 4096         # distinct labels kept for states (DIOCKILLSTATES by label)

# An interface address set "(ifname)" resolved at compile time (the datapath's interfaces do not
# change while it runs).
ctypedef struct cf_dyn:
    int n
    uint8_t af[CF_MAXDYN]
    pf_addr addr[CF_MAXDYN]
    pf_addr mask[CF_MAXDYN]

cdef struct cf_ruleset

# How a rule address matches (the compiled PF_ADDR_* kind), CK_NEG or'd in for "!addr".
cdef enum:
    CK_ANY = 0                  # address/mask with a zero mask: everything
    CK_MASK4 = 1                # IPv4 address/mask of an "inet" rule: cf_rule.*4 (hot line)
    CK_MASK = 2                 # address/mask: cf_cold.*_addr/_mask
    CK_RANGE = 3                # cf_cold addr = low, mask = high
    CK_DYN = 4                  # "(ifname)": cf_cold.*_dyn
    CK_TABLE = 5                # <table>: cf_cold.*_tbl (pf_table's nogil snapshot)
    CK_NEVER = 6                # no-route, urpf-failed, a table the rule holds no handle of
    CK_NEG = 0x80
    CF_SKIP_FAR = 0xffff        # cf_rule.skip: the target is cf_cold.skip_far[k]
    RUN_DST = 1                 # cf_rule.run: the run is keyed on the destination address
    RUN_SRC = 2                 # ... on the source address
    RUN_DPORT = 3               # ... on the destination port
    RUN_SPORT = 4               # ... on the source port
    RUN_MIN = 8                 # shorter runs are walked
    RUN_NONE = 0xffffffff

# One compiled filter rule: the match fields of the header's 976-byte struct pf_rule that the
# walk reads for a rule it rejects, in one 64-byte cache line (the rulesets' `rules` arrays are
# dense and aligned: 1,000 rules are 64 KiB). What only a matching rule, an IPv6 or exotic address
# or a far skip needs lives in the parallel `cold` array. The evaluation counters live in the
# ruleset's `evals` array (eight rules a cache line); packets/bytes/states are bumped on the
# committed Rule.r for the matched rule only (DIOCGETRULE shows them as is), and Rule.ext_evals
# points at the rule's evals entry (DIOCGETRULE adds it; folded into Rule.r.evaluations when the
# generation goes).
ctypedef struct cf_rule:
    uint16_t skip[8]            # PF_SKIP_* targets, relative (target - index); CF_SKIP_FAR: cold
    uint32_t ifmask             # tap_if.index bits the rule's interface or group stands for
    uint8_t ifchk               # bit 0: the rule names an interface, bit 1: ifnot ("! em0")
    uint8_t direction
    uint8_t af                  # Linux AF_INET / AF_INET6 (BSD 28 folded), 0 = any
    uint8_t proto
    uint8_t src_kind            # CK_*
    uint8_t dst_kind
    uint8_t src_op              # PF_OP_* of the ports
    uint8_t dst_op
    uint16_t src_port[2]        # network order, as in pf_rule
    uint16_t dst_port[2]
    uint8_t type                # ICMP type + 1, 0 = any
    uint8_t code
    uint8_t tos
    uint8_t flags
    uint8_t flagset
    uint8_t slow                # uid, gid, prio, prob, match_tag, os fingerprint or fragment
    uint8_t quick
    uint8_t is_anchor
    uint32_t src4               # CK_MASK4: address & mask, network order
    uint32_t src4mask
    uint32_t dst4
    uint32_t dst4mask
    uint16_t tag
    uint8_t wildcard
    uint8_t run                 # RUN_*: a member of an indexed run (cf_cold.run)

ctypedef struct cf_cold:
    void *r                     # struct pf_rule * (declared in pf_test.pyx)
    cf_ruleset *anchor          # the called anchor's ruleset (non-wildcard)
    cf_ruleset **children       # wildcard: the children's rulesets in name order
    cf_dyn *src_dyn             # "(ifname)" addresses
    cf_dyn *dst_dyn
    pfr_dp *src_tbl             # <table> addresses
    pfr_dp *dst_tbl
    int nchildren
    uint8_t wildcard
    uint32_t skip_far[8]        # absolute skip targets
    pf_addr src_addr
    pf_addr src_mask
    pf_addr dst_addr
    pf_addr dst_mask
    cf_run *run                 # the run (or classified ruleset's range array) and this rule's place
    uint32_t run_pos
    cf_pool *pool               # translation rules: the compiled rpool
    uint32_t overload1          # overload <table>: index + 1 into the generation's tables
    cf_dyn *map_dyn             # inbound binat: the rule's own source "(if)" addresses

# An indexed run: consecutive rules of one ruleset that differ (as far as the walk up to the key
# field sees) only in one address or port, each member's set of keys an interval (a network, an
# address range, a port, a port range or comparison) and no two members' sets overlapping —
# "block from 10.1.0.0/16", "block from 10.2.0.0/16", ..., or "pass to port 22", "pass to port
# 80", ... A packet reaching a member whose earlier fields match looks its key up (a binary search
# over the members' intervals) instead of walking: the next member it can match, or the end of
# the run. The members it passes would each have been looked at (FreeBSD's walk visits them one
# by one: the key fields differ, so no skip step jumps them), so their evaluations are counted as
# a range: +1 at diff[first], -1 at diff[end]; a member's pending count is the prefix sum up to its
# place (Rule.ext_diff / ext_pos).
# Disjoint intervals of keys (addresses or ports), sorted, each naming an entry: a run member,
# a classifier row.
ctypedef struct cf_itab:
    uint32_t nint
    uint8_t wide                # IPv6 keys: 128 bits (lo/hi hold two words an interval)
    uint64_t *lo                # lower bounds, host order (IPv6: high word, low word)
    uint64_t *hi                # upper bounds, inclusive
    uint32_t *pos               # the entry of each interval

ctypedef struct cf_run:
    uint32_t start              # rules[start .. start + n) of the ruleset
    uint32_t n
    uint8_t key                 # RUN_*; 0: a classified ruleset's whole-ruleset range array (no keys)
    cf_itab keys                # the members' intervals
    uint64_t *diff              # n + 1 entries
    void **r                    # struct pf_rule * of each member (the fold)

# The walk's classifier: for a packet, which rules the walk must stop at. For each field the walk
# checks with a skip step (interface, direction, family, protocol, source address and port,
# destination address and port) a bit set, a bit per rule, of the rules that field lets through,
# looked up by the packet's value (an address or port by its elementary interval: every key in
# one interval meets the same rules). Going through the fields in the walk's order, a rule the
# walk would reject at a field whose skip step jumps (target > next rule), or whose field it cannot
# know without looking (a table, "(if)", a non-contiguous mask), or that passes every one of them
# (it matches, or fails a later field: TOS, flags, ...) is a stop; every other rule the walk would
# reject and go on to the next. Between stops the walk only counts evaluations.
cdef enum:
    CLS_MAXRULES = 4096         # larger rulesets are walked rule by rule
    CLS_MAXWORDS = CLS_MAXRULES // 64
    CLS_MAXBYTES = 16 << 20     # bit sets of one ruleset's classifier, at most
    CLS_MINWALK = 32            # rulesets whose walk visits fewer rules (runs count one) have none

ctypedef struct cf_cls:
    uint32_t words              # uint64 words a bit set
    uint64_t *ifp[32]           # by tap_if.index
    uint64_t *dir[3]            # by PF_IN / PF_OUT
    uint64_t *af[2]             # IPv4, IPv6 packets
    uint64_t *proto[256]
    cf_itab addr[2][2]          # [source, destination][IPv4, IPv6]: elementary intervals
    uint64_t *addr_bits[2][2]   # a bit set an interval
    cf_itab port[2]             # [source, destination]
    uint64_t *port_bits[2]
    uint64_t *unknown[8]        # by PF_SKIP_*: rules whose field the walk must read (addresses)
    uint8_t unknown_any[8]      # unknown[k] has a bit set
    uint64_t *jump[8]           # by PF_SKIP_*: rules whose skip step jumps
    uint64_t *present           # bits of the rules that exist (the last word is partial)

cdef struct cf_ruleset:
    int n
    cf_rule *rules              # 64-byte aligned
    cf_cold *cold
    uint64_t *evals             # evaluations of rules[i] not yet in their pf_rule
    cf_cls *cls                 # NULL: walked rule by rule
    uint64_t *cdiff             # with cls: the evaluations of the rules it passes over, as
                                # ranges (the diff of a cf_run of the whole ruleset, key 0)

# One generation of compiled rulesets: swapped whole under the engine's lock.
ctypedef struct cf_gen:
    cf_ruleset *main            # filter rules
    cf_ruleset *nat             # translation rules, compiled as first-match (quick) walks
    cf_ruleset *binat           # outbound binat
    cf_ruleset *binat_in        # inbound binat: source matched against the rule's destination,
                                # destination against the pool address (pf_match_translation)
    cf_ruleset *rdr
    cf_ruleset *scrub           # first match, as pf_normalize_ip walks it
    uint32_t serial             # generation number
    uint64_t refs               # states and source nodes pointing into this generation: a
                                # replaced generation is freed when none is left
    uint32_t nrules             # rules compiled, anchors included
    # every compiled rule once, for folding the evaluation counters (Rule.ext_evals)
    void **fold_r               # struct pf_rule *
    uint64_t ***fold_slot       # &Rule.ext_evals
    uint64_t **fold_ev          # the rule's evals entry
    uint64_t ***fold_dslot      # &Rule.ext_diff
    uint32_t **fold_pslot       # &Rule.ext_pos
    uint64_t **fold_diff        # its run's (or classified ruleset's) diff array, else NULL
    uint32_t *fold_pos
    cf_run **runs
    uint32_t nruns
    uint32_t ncls               # rulesets with a classifier

# A source that broke max-src-conn(-rate) on a rule with `overload <table>`: the engine queues
# it; the purge thread adds it to the table (a control-plane change) and flushes its states.
cdef enum:
    CF_OVERLOAD_Q = 64

ctypedef struct cf_overload:
    uint32_t serial             # cf_gen.serial of the rule
    uint32_t idx                # cf_cold.overload1 - 1
    void *rule_r                # the rule (flush without PF_FLUSH_GLOBAL: its states only)
    uint8_t af
    uint8_t dir                 # the overloading state's direction
    uint8_t flush               # PF_FLUSH / PF_FLUSH_GLOBAL
    pf_addr addr

# Everything pf_test needs, reachable from C.
ctypedef struct pf_engine:
    pf_state_table *t           # core.states' table; t.lock is the engine's lock too
    pf_status *status           # core.status: running, counters, lcounters
    uint32_t *timeouts          # core.timeout
    cf_gen *gen                 # the active rulesets (NULL: no rules)
    uint32_t skipmask           # tap_if.index bits of interfaces with PFI_IFLAG_SKIP
    uint64_t rng
    void *default_rule          # struct pf_rule *: pass, no state; counted privately
    tap_engine *tap             # for block return (RST / ICMP through the router's send path)
    int nlabels
    char *labels[CF_MAXLABELS]  # interned rule labels (states outlive their rulesets)
    # block return asked for by the packet being tested, sent after the lock is released
    int ret_kind                # 0 none, 1 TCP RST, 2 ICMP unreachable, 3 ICMPv6 unreachable
    uint8_t ret_type
    uint8_t ret_code
    uint8_t ret_ttl
    int wakefd                  # the purge thread's eventfd (overload work), -1 before attach
    pf_norm_state *norm         # scrub's fragment cache (pf_norm)
    int novl
    cf_overload ovl[CF_OVERLOAD_Q]

# The hook pf_tap calls (tap_engine.pf_test, with pf_ctx = the pf_engine).
cdef int pf_test_hook(void *ctx, int dir, tap_if *ifp, tap_pkt *pkt) noexcept nogil


cdef class Filter:
    cdef pf_engine *e
    cdef readonly object core
    cdef object datapath
    cdef object gen                  # the Python owner of e.gen (keeps its Rule objects alive)
    cdef list retired                # replaced generations states still point into
    cdef object genlock              # RLock over gen/retired (commits and the purge thread)
    cdef object purger
    cdef int wakefd
    cdef bint closing
    cdef dict ifindex                # datapath interface name -> tap_if.index
