from libc.stdint cimport uint32_t
from pfkern.pfvar cimport pf_status, PFTM_MAX, PF_LIMIT_MAX


cdef class PfCore:
    # The kernel's V_pf_status: counters the datapath bumps in place, plus run state.
    cdef pf_status status
    # Default timeouts (V_pf_default_rule.timeout) and pool limits (V_pf_limits[].limit).
    cdef uint32_t timeout[PFTM_MAX]
    cdef unsigned int limit[PF_LIMIT_MAX]
    # The concerns' own state, wired by pfd.build_dispatcher():
    cdef public object interfaces     # pf_if.Interfaces
    cdef public object states         # pf_state.StateTable (the table the datapath uses)
    cdef public object rulesets       # pf_ruleset.Rulesets (anchors, rulesets, transactions)
    cdef public object tables         # pf_table.Tables (radix tables)
    cdef public object osfp           # pf_osfp.Fingerprints
    cdef public object lock           # threading.RLock: one control-plane change at a time (ioctls,
                                      # the engine's overload inserts)

    cdef void fill_status(self, pf_status *out)
    cdef void update_if_status(self, pf_status *out)
