from libc.stdint cimport uint32_t
from pfkern.pfvar cimport pf_status, PFTM_MAX, PF_LIMIT_MAX


cdef class PfCore:
    # The kernel's V_pf_status: counters the datapath bumps in place, plus run state.
    cdef pf_status status
    # Default timeouts (V_pf_default_rule.timeout) and pool limits (V_pf_limits[].limit).
    cdef uint32_t timeout[PFTM_MAX]
    cdef unsigned int limit[PF_LIMIT_MAX]
    cdef public object interfaces     # pf_if.Interfaces
    cdef public object states         # the state table (keyed lookups for DIOCNATLOOK)

    cdef void fill_status(self, pf_status *out)
    cdef void update_if_status(self, pf_status *out)
