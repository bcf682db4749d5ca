# The state table's C API (FreeBSD pf.c "state table stuff"), for the ioctl handlers and the
# datapath: `from pfkern.pf_state cimport *`. Every function below runs without the GIL, on C
# structs only, and expects `t.lock` held by the caller (see pfvar_priv.pxd, pf_state_table).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pfkern.pfvar_priv cimport (pf_state_table, pf_state_key_cmp, pf_kstate, pf_ksrc_node,
                                pf_kstate_kill, pfsync_state, pf_src_node, pf_rule_addr,
                                pfsync_state_peer, pf_rule_ptr)
from pfkern.pf cimport PfCore


# The older generations' state structs of net/pfvar.h (pf-abi.md §3.2, §3.3): only the members
# the state code touches.
from pfkern.pfvar cimport *   # the header's types, declared once in pfvar.pxd

# Uptime in seconds (FreeBSD time_uptime): creation/expire stamps are of this clock.
cdef uint32_t pf_uptime() noexcept nogil

# A key from its parts: addresses of family af (4 bytes copied for AF_INET, the rest zeroed),
# ports in network order. Index 0/1 as in the state key (pd->sidx/didx decide which is which).
cdef void pf_state_key_fill(pf_state_key_cmp *k, uint8_t af, uint8_t proto, const pf_addr *a0,
                            const pf_addr *a1, uint16_t p0, uint16_t p1) noexcept nogil

# A zeroed state from the pool; NULL at the states limit (PF_LIMIT_STATES) or out of memory.
cdef pf_kstate *pf_state_alloc(pf_state_table *t) noexcept nogil
# Give back a state that pf_state_insert refused (never one that is linked).
cdef void pf_state_release(pf_state_table *t, pf_kstate *st) noexcept nogil
# Link a filled state under its wire and stack keys (equal keys share one key) and its id; an id
# and creatorid of 0 get the next local id and the hostid. `ifname` is the 16-byte zero-padded
# interface name, "" for a floating state. 0, EEXIST (same key, interface and direction as a
# live state, or same id+creatorid) or ENOMEM; on error the state is not linked.
cdef int pf_state_insert(pf_state_table *t, const char *ifname, const pf_state_key_cmp *wire,
                         const pf_state_key_cmp *stack, pf_kstate *st) noexcept nogil
# Unlink a state and free it (pf_unlink_state + pf_free_state).
cdef void pf_unlink_state(pf_state_table *t, pf_kstate *st) noexcept nogil
# The datapath's lookup: the state on `key` for a packet of direction `dir` (PF_IN searches wire
# keys, PF_OUT stack keys) on interface `ifname` (16 bytes, zero-padded); if-bound states win
# over floating ones. NULL if none or the first match is being purged.
cdef pf_kstate *pf_find_state(pf_state_table *t, const char *ifname, const pf_state_key_cmp *key,
                              int dir) noexcept nogil
cdef pf_kstate *pf_find_state_byid(pf_state_table *t, uint64_t id, uint32_t creatorid) noexcept nogil
# Every state on `key` (PF_IN: wire list, PF_OUT: stack list, PF_INOUT: both); returns how many,
# storing the first `room` in out[] (DIOCNATLOOK wants exactly one).
cdef int pf_find_state_all(pf_state_table *t, const pf_state_key_cmp *key, int dir,
                           pf_kstate **out, int room) noexcept nogil
# When the state expires (uptime seconds), adaptive timeouts applied.
cdef uint32_t pf_state_expires(const pf_state_table *t, const pf_kstate *st, uint32_t now) noexcept nogil
# Count a packet of `length` bytes; dirndx 0 = the state's own direction, 1 = the reverse.
cdef void pf_state_account(pf_kstate *st, int dirndx, uint32_t length, uint32_t now) noexcept nogil
# The 242-byte pfsync form (DIOCGETSTATE(S), pfsync), byte orders per pf-abi.md H8.
cdef void pfsync_state_export(const pf_state_table *t, pfsync_state *sp, const pf_kstate *st,
                              uint32_t now) noexcept nogil
cdef bint pf_state_kill_match(const pf_kstate *st, const pf_kstate_kill *k) noexcept nogil

# The older generations (pf-abi.md §3.2, §3.3). They describe a state by lan (the inside host:
# stack key [1]), gwy (its translated address: wire key [1]) and ext (the peer: wire key [0]).
# OpenBSD 3.7's raw kernel pf_state: host-order numbers, `creation` as wall-clock seconds
# (`wall`, the kernel's time_second), expire as seconds left, u.ifname the state's interface.
cdef void pf_state_export_obsd37(const pf_state_table *t, pf_state_obsd37 *sp, const pf_kstate *st,
                                 uint32_t now, uint32_t wall) noexcept nogil
# NetBSD's pfsync_state as its ioctls export it: host-order numbers, creation as age.
cdef void pfsync_state_export_nbsd(const pf_state_table *t, pfsync_state_nbsd *sp,
                                   const pf_kstate *st, uint32_t now) noexcept nogil
# OpenBSD 3.7's DIOCKILLSTATES criteria: src on lan, dst on ext, whatever the direction (no label).
cdef bint pf_state_kill_match_obsd37(const pf_kstate *st, const pf_kstate_kill *k) noexcept nogil
# The nr-th state (from 0) in the id tree's order (id, then creatorid, compared as the raw stored
# numbers); NULL past the end, or with *err = ENOMEM when no scratch memory could be had.
cdef pf_kstate *pf_state_nth(pf_state_table *t, size_t nr, int *err) noexcept nogil

# Source nodes (source tracking): find by (af, addr, rule); alloc (NULL at PF_LIMIT_SRC_NODES)
# then link; unlink frees a node no state points to any more (states == 0, or detached).
cdef pf_ksrc_node *pf_find_src_node(pf_state_table *t, uint8_t af, const pf_addr *addr,
                                    uint32_t rule) noexcept nogil
cdef pf_ksrc_node *pf_src_node_alloc(pf_state_table *t) noexcept nogil
cdef void pf_src_node_link(pf_state_table *t, pf_ksrc_node *sn) noexcept nogil
cdef void pf_unlink_src_node(pf_state_table *t, pf_ksrc_node *sn) noexcept nogil
cdef void pf_src_node_export(pf_src_node *out, const pf_ksrc_node *sn, uint32_t now) noexcept nogil


cdef class StateTable:
    """core.states: the C table plus the control plane's entry points (each takes t.lock)."""
    cdef pf_state_table *t
    cdef readonly PfCore core

    cdef void lock(self) noexcept
    cdef void unlock(self) noexcept
    # DIOCADDSTATE (pfsync_state_import from an ioctl); raises pfkern.errors exceptions.
    cdef int import_state(self, const pfsync_state *sp) except -1
    # DIOCGETSTATE: export the state with this id/creatorid into out; False if none.
    cdef bint get_state(self, uint64_t id, uint32_t creatorid, pfsync_state *out)
    # DIOCGETSTATES: as many pfsync_states as `room` allows, one bytes object.
    cdef bytes export_states(self, size_t room)
    cdef bint kill_by_id(self, uint64_t id, uint32_t creatorid)
    cdef unsigned int kill_states(self, const pf_kstate_kill *k)
    # DIOCCLRSTATES: every state, or those bound to `ifname` ("all" = floating ones).
    cdef unsigned int clear_states(self, const char *ifname)
    cdef bytes export_src_nodes(self, size_t room)
    cdef size_t src_node_count(self)
    cdef unsigned int clear_src_nodes(self)
    cdef unsigned int kill_src_nodes(self, const pf_rule_addr *src, const pf_rule_addr *dst)
    # The older generations (pf-abi.md §3.2, §3.3): DIOCGETSTATE by index nr (False past the end),
    # DIOCADDSTATE (raises pfkern.errors exceptions), DIOCKILLSTATES' 136-byte form.
    cdef bint get_state_nth_obsd37(self, uint32_t nr, pf_state_obsd37 *out) except -1
    cdef bint get_state_nth_nbsd(self, uint32_t nr, pfsync_state_nbsd *out) except -1
    cdef int import_state_obsd37(self, const pf_state_obsd37 *sp) except -1
    cdef int import_state_nbsd(self, const pfsync_state_nbsd *sp) except -1
    cdef unsigned int kill_states_obsd37(self, const pf_kstate_kill *k)
