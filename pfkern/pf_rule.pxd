# Rules and pool addresses as the pf core keeps them: the header's own C structs (so the packet
# engine can copy a committed ruleset into C arrays as is), plus the Python-side links (anchor
# called, pool, table handles).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


from pfkern.pfvar cimport *   # the header's types, declared once in pfvar.pxd

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
    # A rule in one of the engine's indexed runs or classified rulesets has more pending
    # evaluations: the prefix sum of the run's difference array up to its place (pf_test.pxd,
    # cf_run).
    cdef uint64_t *ext_diff
    cdef uint32_t ext_pos

    cdef uint64_t ext_pending(self) noexcept nogil
    cdef void ext_clear(self) noexcept nogil

    cdef void copyout(self, pf_rule *out)
