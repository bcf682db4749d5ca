# pf_test on the datapath (FreeBSD 12.1 pf.c: pf_test/pf_test6, pf_test_rule, pf_test_state_*,
# pf_tcp_track_full): the compiled rulesets the packet path reads and the hook pf_tap calls.
# Everything below the Filter class runs without the GIL on C structs.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pfkern.pfvar cimport pf_addr, pf_status
from pfkern.pfvar_priv cimport pf_state_table, pthread_mutex_t
from pfkern.pf_tap cimport tap_if, tap_pkt, tap_engine


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

# One compiled filter rule. `r` points at the committed Rule's own struct pf_rule (pf_rule.Rule.r):
# the evaluation counters, packets/bytes and states_cur/tot are bumped there in place, so
# DIOCGETRULE (pfctl -v) shows them with no copying back.
ctypedef struct cf_rule:
    void *r                     # struct pf_rule * (declared in pf_test.pyx)
    uint32_t skip[8]            # PF_SKIP_* targets as indexes into the ruleset (n = off the end)
    uint32_t ifmask             # tap_if.index bits the rule's interface or group stands for
    uint8_t has_if              # the rule names an interface (else it matches every one)
    uint8_t af                  # Linux AF_INET / AF_INET6 (BSD 28 folded), 0 = any
    uint8_t is_anchor
    uint8_t wildcard
    cf_ruleset *anchor          # the called anchor's ruleset (non-wildcard)
    cf_ruleset **children       # wildcard: the children's rulesets in name order
    int nchildren
    cf_dyn *src_dyn             # "(ifname)" addresses
    cf_dyn *dst_dyn

cdef struct cf_ruleset:
    int n
    cf_rule *rules

# One generation of compiled rulesets: swapped whole under the engine's lock.
ctypedef struct cf_gen:
    cf_ruleset *main
    uint32_t commit_time        # pf_uptime() at compile: older states belong to older rules
    uint32_t nrules             # rules compiled, anchors included

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

# The hook pf_tap calls (tap_engine.pf_test, with pf_ctx = the pf_engine).
cdef int pf_test_hook(void *ctx, int dir, tap_if *ifp, tap_pkt *pkt) noexcept nogil


cdef class Filter:
    cdef pf_engine *e
    cdef readonly object core
    cdef object datapath
    cdef object gen                  # the Python owner of e.gen (keeps its Rule objects alive)
    cdef object purger
    cdef int wakefd
    cdef bint closing
    cdef dict ifindex                # datapath interface name -> tap_if.index
