# cython: language_level=3
"""ioctl handlers of the state table and source nodes (FreeBSD 12.1 pf_ioctl.c: DIOCGETSTATES,
DIOCGETSTATE, DIOCADDSTATE, DIOCKILLSTATES, DIOCCLRSTATES, DIOCGETSRCNODES, DIOCCLRSRCNODES,
DIOCKILLSRCNODES). Each decodes its struct and calls one StateTable entry point (pf_state.pyx);
DIOCNATLOOK stays in pf_ioctl and calls core.states.find_all.
"""
from libc.limits cimport INT_MAX
from libc.string cimport memset, memcpy
from pfkern.pfvar_priv cimport (pfioc_state, pfioc_states, pfioc_state_kill, pfioc_src_nodes,
                                pfioc_src_node_kill, pfsync_state, pf_src_node, pf_kstate_kill,
                                AF_INET6, AF_INET6_BSD)
from pfkern.pf_state cimport StateTable

from pfkern.errors import NotFound

REGION_OUT = 2          # the caller's buffer is written (docs/architecture.md)


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
}
