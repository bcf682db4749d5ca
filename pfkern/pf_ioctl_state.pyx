# cython: language_level=3
"""ioctl handlers of the state table and source nodes (FreeBSD 12.1 pf_ioctl.c: DIOCGETSTATES,
DIOCGETSTATE, DIOCADDSTATE, DIOCKILLSTATES, DIOCCLRSTATES, DIOCGETSRCNODES, DIOCCLRSRCNODES,
DIOCKILLSRCNODES). Each decodes its struct and calls one StateTable entry point (pf_state.pyx);
DIOCNATLOOK stays in pf_ioctl and calls core.states.find_all.

Beside them, the older generations' forms whose command values differ (pf-abi.md §3.2, §3.3,
§3.5; OpenBSD 3.7 / FreeBSD 6 sys/contrib/pf/net/pf_ioctl.c, NetBSD sys/dist/pf/net/pf_ioctl.c):
DIOCGETSTATE and DIOCADDSTATE of OpenBSD 3.7 (376 bytes, the kernel's pf_state inline) and of
NetBSD (16 bytes, a pointer to a pfsync_state), DIOCKILLSTATES and DIOCCLRSTATES in the 136-byte
form the two share (the count comes back in psk_af). DIOCGETSTATES cannot be told apart by its
command value (the element size is not in the request) and stays FreeBSD 12's.
"""
from libc.limits cimport INT_MAX
from libc.stdint cimport uint8_t
from libc.string cimport memset, memcpy
from pfkern.pfvar_priv cimport (pfioc_state, pfioc_states, pfioc_state_kill, pfioc_src_nodes,
                                pfioc_src_node_kill, pfsync_state, pf_src_node, pf_kstate_kill,
                                AF_INET6, AF_INET6_BSD)
from pfkern.pf_state cimport (StateTable, pfioc_state_obsd37, pfioc_state_nbsd, pfsync_state_nbsd,
                              pfioc_state_kill_obsd37)

from pfkern.errors import Busy, NotFound
from pfkern.pf_util cimport REGION_IN, REGION_OUT


cdef extern from "net/pfvar.h":
    # the older generations' command values (pf_ioctl's COMMANDS rows name them)
    enum:
        DIOCGETSTATE_OBSD37
        DIOCADDSTATE_OBSD37
        DIOCKILLSTATES_OBSD37
        DIOCCLRSTATES_OBSD37
        DIOCGETSTATE_NBSD
        DIOCADDSTATE_NBSD
        DIOCKILLSTATES_NBSD
        DIOCCLRSTATES_NBSD


cdef int _bytes_for(size_t count, size_t size):
    """count elements of size bytes as an int length (ps_len, psn_len), never past INT_MAX."""
    if count > <size_t>(INT_MAX // size):
        count = INT_MAX // size
    return <int>(count * size)


def h_getstates(d, ctx, bytearray buf, mem):
    """ps_len <= 0 asks for the size (FreeBSD 12.1 answers only 0; a negative length made it
    allocate ps_len bytes; later FreeBSD treats both as the size query); otherwise as many
    states as fit, ps_len = bytes written."""
    cdef pfioc_states *ps = <pfioc_states *><char *>buf
    cdef StateTable tbl = d.core.states
    if ps.ps_len <= 0:
        ps.ps_len = _bytes_for(len(tbl), sizeof(pfsync_state))
        return
    out = tbl.export_states(<size_t>ps.ps_len // sizeof(pfsync_state))
    mem.write(<size_t>ps.ps_buf, out)        # EFAULT leaves the caller's struct as it was
    ps.ps_len = len(out)


def h_getstate(d, ctx, bytearray buf, mem):
    """By id and creatorid as exported (network order)."""
    cdef pfioc_state *ps = <pfioc_state *><char *>buf
    cdef StateTable tbl = d.core.states
    if not tbl.get_state(ps.state.id, ps.state.creatorid, &ps.state):
        raise NotFound("no state with that id and creatorid")


def h_addstate(d, ctx, bytearray buf, mem):
    cdef pfioc_state *ps = <pfioc_state *><char *>buf
    cdef StateTable tbl = d.core.states
    tbl.import_state(&ps.state)


def h_killstates(d, ctx, bytearray buf, mem):
    """By id (creatorid 0 = ours, written back; psk_killed set only when found, never ENOENT),
    else every state matching all criteria."""
    cdef pfioc_state_kill *psk = <pfioc_state_kill *><char *>buf
    cdef StateTable tbl = d.core.states
    cdef pf_kstate_kill k
    if psk.psk_pfcmp.id:
        if psk.psk_pfcmp.creatorid == 0:
            psk.psk_pfcmp.creatorid = d.core.hostid
        if tbl.kill_by_id(psk.psk_pfcmp.id, psk.psk_pfcmp.creatorid):
            psk.psk_killed = 1
        return
    memset(&k, 0, sizeof(k))
    k.af = AF_INET6 if psk.psk_af == AF_INET6_BSD else psk.psk_af
    k.proto = psk.psk_proto
    k.src = psk.psk_src
    k.dst = psk.psk_dst
    memcpy(k.ifname, psk.psk_ifname, sizeof(k.ifname))
    memcpy(k.label, psk.psk_label, sizeof(k.label))
    psk.psk_killed = tbl.kill_states(&k)


def h_clrstates(d, ctx, bytearray buf, mem):
    """Only psk_ifname is honoured ("all" names the floating states)."""
    cdef pfioc_state_kill *psk = <pfioc_state_kill *><char *>buf
    cdef StateTable tbl = d.core.states
    psk.psk_killed = tbl.clear_states(psk.psk_ifname)


def h_getsrcnodes(d, ctx, bytearray buf, mem):
    """psn_len is clipped (as unsigned, FreeBSD's min()) to what all nodes take; 0 then answers
    the size, otherwise the nodes that fit are written."""
    cdef pfioc_src_nodes *psn = <pfioc_src_nodes *><char *>buf
    cdef StateTable tbl = d.core.states
    cdef int total = _bytes_for(tbl.src_node_count(), sizeof(pf_src_node))
    cdef size_t length = min(<unsigned int>psn.psn_len, <unsigned int>total)
    if length == 0:
        psn.psn_len = total
        return
    out = tbl.export_src_nodes(length // sizeof(pf_src_node))
    mem.write(<size_t>psn.psn_buf, out)
    psn.psn_len = len(out)


def h_clrsrcnodes(d, ctx, bytearray buf, mem):
    cdef StateTable tbl = d.core.states
    tbl.clear_src_nodes()


def h_killsrcnodes(d, ctx, bytearray buf, mem):
    """psnk_af is not consulted: each node is matched in its own family."""
    cdef pfioc_src_node_kill *psnk = <pfioc_src_node_kill *><char *>buf
    cdef StateTable tbl = d.core.states
    psnk.psnk_killed = tbl.kill_src_nodes(&psnk.psnk_src, &psnk.psnk_dst)


# --- older generations ----------------------------------------------------------------------

cdef enum:
    AF_INET6_OBSD = 24          # OpenBSD's and NetBSD's AF_INET6


def h_getstate_obsd37(d, ctx, bytearray buf, mem):
    """OpenBSD 3.7: the nr-th state in id order (EBUSY past the end) as the kernel held it."""
    cdef pfioc_state_obsd37 *ps = <pfioc_state_obsd37 *><char *>buf
    cdef StateTable tbl = d.core.states
    if not tbl.get_state_nth_obsd37(ps.nr, &ps.state):
        raise Busy("no state at that index")


def h_getstate_nbsd(d, ctx, bytearray buf, mem):
    """NetBSD: the nr-th state in id order (EBUSY past the end), written to ps.state.
    (NetBSD's own code wrote it over &ps->state, inside its 16-byte ioctl buffer; the pointer
    is what the struct and DIOCADDSTATE mean.)"""
    cdef pfioc_state_nbsd *ps = <pfioc_state_nbsd *><char *>buf
    cdef StateTable tbl = d.core.states
    cdef pfsync_state_nbsd sp
    if not tbl.get_state_nth_nbsd(ps.nr, &sp):
        raise Busy("no state at that index")
    mem.write(<size_t>ps.state, (<char *>&sp)[:sizeof(sp)])


def h_addstate_obsd37(d, ctx, bytearray buf, mem):
    cdef pfioc_state_obsd37 *ps = <pfioc_state_obsd37 *><char *>buf
    cdef StateTable tbl = d.core.states
    tbl.import_state_obsd37(&ps.state)


def h_addstate_nbsd(d, ctx, bytearray buf, mem):
    """The state is read through ps.state (NetBSD dereferenced the user pointer)."""
    cdef pfioc_state_nbsd *ps = <pfioc_state_nbsd *><char *>buf
    cdef StateTable tbl = d.core.states
    cdef pfsync_state_nbsd sp
    data = mem.read(<size_t>ps.state, sizeof(sp))
    memcpy(&sp, <const char *>data, sizeof(sp))
    tbl.import_state_nbsd(&sp)


def h_killstates_obsd37(d, ctx, bytearray buf, mem):
    """OpenBSD 3.7's criteria: af, proto, psk_src against the state's lan host, psk_dst against
    its ext host (whatever the direction), interface. The number killed comes back in psk_af,
    truncated to its 8 bits."""
    cdef pfioc_state_kill_obsd37 *psk = <pfioc_state_kill_obsd37 *><char *>buf
    cdef StateTable tbl = d.core.states
    cdef pf_kstate_kill k
    memset(&k, 0, sizeof(k))
    k.af = AF_INET6 if psk.psk_af == AF_INET6_BSD or psk.psk_af == AF_INET6_OBSD else psk.psk_af
    k.proto = psk.psk_proto
    k.src = psk.psk_src
    k.dst = psk.psk_dst
    memcpy(k.ifname, psk.psk_ifname, sizeof(k.ifname))
    psk.psk_af = <uint8_t>tbl.kill_states_obsd37(&k)


def h_clrstates_obsd37(d, ctx, bytearray buf, mem):
    """Every state, or those on psk_ifname; the number in psk_af (8 bits)."""
    cdef pfioc_state_kill_obsd37 *psk = <pfioc_state_kill_obsd37 *><char *>buf
    cdef StateTable tbl = d.core.states
    psk.psk_af = <uint8_t>tbl.clear_states(psk.psk_ifname)


cdef list _state_nbsd_region(bytes data, int direction):
    cdef pfioc_state_nbsd ps
    if <size_t>len(data) < sizeof(ps):
        return []
    memcpy(&ps, <char *>data, sizeof(ps))
    if ps.state == NULL:
        return []
    return [(<size_t>ps.state, sizeof(pfsync_state_nbsd), direction)]


def regions_getstate_nbsd(bytes data):
    return _state_nbsd_region(data, REGION_OUT)


def regions_addstate_nbsd(bytes data):
    return _state_nbsd_region(data, REGION_IN)


def regions_states(bytes data):
    cdef pfioc_states ps
    if <size_t>len(data) < sizeof(ps):
        return []
    memcpy(&ps, <char *>data, sizeof(ps))
    if ps.ps_len <= 0:
        return []
    return [(<size_t>ps.ps_buf, ps.ps_len, REGION_OUT)]


def regions_src_nodes(bytes data):
    cdef pfioc_src_nodes psn
    if <size_t>len(data) < sizeof(psn):
        return []
    memcpy(&psn, <char *>data, sizeof(psn))
    if psn.psn_len <= 0:
        return []           # a negative length means "all": the size is not known here
    return [(<size_t>psn.psn_buf, psn.psn_len, REGION_OUT)]


# The older generations' commands (pf_ioctl's COMMANDS rows *_OBSD37, *_NBSD). The NetBSD names
# of the 136-byte kill forms are the same values as OpenBSD 3.7's, so one row serves both.
assert DIOCKILLSTATES_NBSD == DIOCKILLSTATES_OBSD37 and DIOCCLRSTATES_NBSD == DIOCCLRSTATES_OBSD37

OLDER_HANDLERS = {
    "DIOCGETSTATE_OBSD37": (h_getstate_obsd37, None),
    "DIOCADDSTATE_OBSD37": (h_addstate_obsd37, None),
    "DIOCKILLSTATES_OBSD37": (h_killstates_obsd37, None),
    "DIOCCLRSTATES_OBSD37": (h_clrstates_obsd37, None),
    "DIOCGETSTATE_NBSD": (h_getstate_nbsd, regions_getstate_nbsd),
    "DIOCADDSTATE_NBSD": (h_addstate_nbsd, regions_addstate_nbsd),
}


# {command name: (handler(dispatcher, fd context, argument bytearray, caller memory), regions or None)}
HANDLERS = {
    "DIOCGETSTATES": (h_getstates, regions_states),
    "DIOCGETSTATE": (h_getstate, None),
    "DIOCADDSTATE": (h_addstate, None),
    "DIOCKILLSTATES": (h_killstates, None),
    "DIOCCLRSTATES": (h_clrstates, None),
    "DIOCGETSRCNODES": (h_getsrcnodes, regions_src_nodes),
    "DIOCCLRSRCNODES": (h_clrsrcnodes, None),
    "DIOCKILLSRCNODES": (h_killsrcnodes, None),
    **OLDER_HANDLERS,
}
