# cython: language_level=3
"""The DIOCR* ioctls (FreeBSD 12.1 pf_ioctl.c): check the embedded buffer's element size (ENODEV)
and count, copy it in through the caller's memory (EFAULT), call one pf_table operation, copy
the answer out. pf_ioctl binds these handlers by command name (see its COMMANDS)."""
from libc.string cimport memcpy

from pfkern.pf_table cimport (Tables, pfioc_table, pfr_addr, pfr_astats, pfr_table, pfr_tstats,
                              PFR_FLAG_FEEDBACK)
from pfkern.pf_table import PFR_FLAG_USERIOCTL
from pfkern.pf_util cimport REGION_IN, REGION_OUT, REQUEST_MAXCOUNT
from pfkern.errors import Invalid, NoDevice, NoMemory

# Region directions for the CUSE front's prefetch (docs/architecture.md).


cdef inline pfioc_table *table_io(bytearray buf):
    return <pfioc_table *><char *>buf


cdef inline Tables tables_of(d):
    return d.core.tables


cdef inline int user_flags(pfioc_table *io):
    return io.pfrio_flags | PFR_FLAG_USERIOCTL


cdef int check_esize(pfioc_table *io, size_t esize) except -1:
    if io.pfrio_esize != <int>esize:
        raise NoDevice("pfrio_esize is not this command's element size")
    return 0


cdef int check_count(int count, bint enomem) except -1:
    """The element count FreeBSD accepts: 0..request_maxcount. Table-list commands answer ENOMEM
    (their allocation fails), address commands EINVAL."""
    if count < 0 or count > REQUEST_MAXCOUNT:
        raise (NoMemory if enomem else Invalid)("pfrio_size out of range")
    return 0


cdef inline int clip_count(int size, int count):
    """FreeBSD's min(u_int, u_int) of the caller's size and the anchor's table count: a negative
    size, or the count -1 of an unknown anchor, compares as huge."""
    return <int>min(<unsigned int>size, <unsigned int>count)


cdef bytearray copyin(mem, pfioc_table *io, int count, size_t esize):
    return bytearray(mem.read(<size_t>io.pfrio_buffer, count * esize))


cdef void clip_to_table_count(Tables t, pfioc_table *io):
    """GETTABLES, GETTSTATS, CLRTSTATS and SETTFLAGS first bound pfrio_size by the number of
    tables of pfrio_table's anchor (an unknown anchor bounds nothing) and report the bounded
    size back. CLRTSTATS/SETTFLAGS callers such as pfctl leave pfrio_table zeroed, so the main
    ruleset's count bounds them — a FreeBSD 12.1 quirk kept as is."""
    io.pfrio_size = clip_count(io.pfrio_size, t.table_count(&io.pfrio_table, io.pfrio_flags))


# --- handlers: (dispatcher, fd context, argument buffer, caller memory) -----------------------

def h_rclrtables(d, ctx, bytearray buf, mem):
    cdef pfioc_table *io = table_io(buf)
    check_esize(io, 0)
    io.pfrio_ndel = tables_of(d).clr_tables(&io.pfrio_table, user_flags(io))


def h_raddtables(d, ctx, bytearray buf, mem):
    cdef pfioc_table *io = table_io(buf)
    check_esize(io, sizeof(pfr_table))
    check_count(io.pfrio_size, True)
    data = copyin(mem, io, io.pfrio_size, sizeof(pfr_table))
    io.pfrio_nadd = tables_of(d).add_tables(<pfr_table *><char *>data, io.pfrio_size, user_flags(io))


def h_rdeltables(d, ctx, bytearray buf, mem):
    cdef pfioc_table *io = table_io(buf)
    check_esize(io, sizeof(pfr_table))
    check_count(io.pfrio_size, True)
    data = copyin(mem, io, io.pfrio_size, sizeof(pfr_table))
    io.pfrio_ndel = tables_of(d).del_tables(<pfr_table *><char *>data, io.pfrio_size, user_flags(io))


def h_rgettables(d, ctx, bytearray buf, mem):
    _list_tables(d, buf, mem, False)


def h_rgettstats(d, ctx, bytearray buf, mem):
    _list_tables(d, buf, mem, True)


cdef _list_tables(d, bytearray buf, mem, bint stats):
    """Too small a buffer gets the table count in pfrio_size; FreeBSD still copies out the
    (bounded) buffer, here zeroed."""
    cdef pfioc_table *io = table_io(buf)
    cdef Tables t = tables_of(d)
    cdef size_t esize = sizeof(pfr_tstats) if stats else sizeof(pfr_table)
    check_esize(io, esize)
    clip_to_table_count(t, io)
    check_count(io.pfrio_size, True)
    out = bytearray(io.pfrio_size * esize)
    t.get_tables(&io.pfrio_table, out, &io.pfrio_size, user_flags(io), stats)
    mem.write(<size_t>io.pfrio_buffer, out)


def h_rclrtstats(d, ctx, bytearray buf, mem):
    cdef pfioc_table *io = table_io(buf)
    cdef Tables t = tables_of(d)
    check_esize(io, sizeof(pfr_table))
    clip_to_table_count(t, io)
    check_count(io.pfrio_size, True)
    data = copyin(mem, io, io.pfrio_size, sizeof(pfr_table))
    io.pfrio_nadd = t.clr_tstats(<pfr_table *><char *>data, io.pfrio_size, user_flags(io))   # nzero


def h_rsettflags(d, ctx, bytearray buf, mem):
    cdef pfioc_table *io = table_io(buf)
    cdef Tables t = tables_of(d)
    check_esize(io, sizeof(pfr_table))
    clip_to_table_count(t, io)
    check_count(io.pfrio_size, True)
    data = copyin(mem, io, io.pfrio_size, sizeof(pfr_table))
    # pfrio_setflag is pfrio_size2, pfrio_clrflag is pfrio_nadd
    t.set_tflags(<pfr_table *><char *>data, io.pfrio_size, io.pfrio_size2, io.pfrio_nadd,
                 &io.pfrio_nchange, &io.pfrio_ndel, user_flags(io))


def h_rclraddrs(d, ctx, bytearray buf, mem):
    cdef pfioc_table *io = table_io(buf)
    check_esize(io, 0)
    io.pfrio_ndel = tables_of(d).clr_addrs(&io.pfrio_table, user_flags(io))


def h_raddaddrs(d, ctx, bytearray buf, mem):
    cdef pfioc_table *io = table_io(buf)
    data = _addrs_in(io, mem)
    io.pfrio_nadd = tables_of(d).add_addrs(&io.pfrio_table, <pfr_addr *><char *>data,
                                          io.pfrio_size, user_flags(io))
    _feedback_out(io, mem, data)


def h_rdeladdrs(d, ctx, bytearray buf, mem):
    cdef pfioc_table *io = table_io(buf)
    data = _addrs_in(io, mem)
    io.pfrio_ndel = tables_of(d).del_addrs(&io.pfrio_table, <pfr_addr *><char *>data,
                                          io.pfrio_size, user_flags(io))
    _feedback_out(io, mem, data)


def h_rclrastats(d, ctx, bytearray buf, mem):
    cdef pfioc_table *io = table_io(buf)
    data = _addrs_in(io, mem)
    io.pfrio_nadd = tables_of(d).clr_astats(&io.pfrio_table, <pfr_addr *><char *>data,  # nzero
                                           io.pfrio_size, user_flags(io))
    _feedback_out(io, mem, data)


def h_rtstaddrs(d, ctx, bytearray buf, mem):
    """The buffer always comes back: fback (and with REPLACE the matching entry) per address."""
    cdef pfioc_table *io = table_io(buf)
    data = _addrs_in(io, mem)
    io.pfrio_nadd = tables_of(d).tst_addrs(&io.pfrio_table, <pfr_addr *><char *>data,  # nmatch
                                          io.pfrio_size, user_flags(io))
    mem.write(<size_t>io.pfrio_buffer, data)


def h_rsetaddrs(d, ctx, bytearray buf, mem):
    """The buffer holds max(pfrio_size, pfrio_size2) addresses: the new contents, then room
    for the deleted ones that FEEDBACK reports."""
    cdef pfioc_table *io = table_io(buf)
    check_esize(io, sizeof(pfr_addr))
    if io.pfrio_size < 0 or io.pfrio_size2 < 0:
        raise Invalid("pfrio_size or pfrio_size2 negative")
    count = max(io.pfrio_size, io.pfrio_size2)
    check_count(count, False)
    data = copyin(mem, io, count, sizeof(pfr_addr))
    tables_of(d).set_addrs(&io.pfrio_table, <pfr_addr *><char *>data, io.pfrio_size,
                           &io.pfrio_size2, &io.pfrio_nadd, &io.pfrio_ndel, &io.pfrio_nchange,
                           user_flags(io))
    _feedback_out(io, mem, data)


def h_rgetaddrs(d, ctx, bytearray buf, mem):
    _list_addrs(d, buf, mem, False)


def h_rgetastats(d, ctx, bytearray buf, mem):
    _list_addrs(d, buf, mem, True)


cdef _list_addrs(d, bytearray buf, mem, bint stats):
    """The whole buffer of pfrio_size elements is copied out, zeroed past the entries (FreeBSD
    copies out uninitialised memory there); too small a buffer gets the count in pfrio_size."""
    cdef pfioc_table *io = table_io(buf)
    cdef size_t esize = sizeof(pfr_astats) if stats else sizeof(pfr_addr)
    check_esize(io, esize)
    check_count(io.pfrio_size, False)
    out = bytearray(io.pfrio_size * esize)
    io.pfrio_size = tables_of(d).get_addrs(&io.pfrio_table, out, io.pfrio_size,
                                           user_flags(io), stats)
    mem.write(<size_t>io.pfrio_buffer, out)


def h_rinadefine(d, ctx, bytearray buf, mem):
    cdef pfioc_table *io = table_io(buf)
    data = _addrs_in(io, mem)
    tables_of(d).ina_define(&io.pfrio_table, <pfr_addr *><char *>data, io.pfrio_size,
                            &io.pfrio_nadd, &io.pfrio_size2, io.pfrio_ticket,   # naddr
                            user_flags(io))


cdef bytearray _addrs_in(pfioc_table *io, mem):
    check_esize(io, sizeof(pfr_addr))
    check_count(io.pfrio_size, False)
    return copyin(mem, io, io.pfrio_size, sizeof(pfr_addr))


cdef _feedback_out(pfioc_table *io, mem, bytearray data):
    if io.pfrio_flags & PFR_FLAG_FEEDBACK:
        mem.write(<size_t>io.pfrio_buffer, data)


# --- embedded buffers, for the CUSE front's prefetch ------------------------------------------

cdef list _region(bytes data, size_t esize, int direction, bint feedback_out=False,
                  bint with_size2=False):
    """(buffer, bytes, direction) of a well-formed request, else [] (the handler reports).
    `feedback_out`: written back only with PFR_FLAG_FEEDBACK; `with_size2`: SETADDRS's buffer
    of max(pfrio_size, pfrio_size2) elements."""
    cdef pfioc_table io
    cdef int count
    if <size_t>len(data) < sizeof(io):
        return []
    memcpy(&io, <char *>data, sizeof(io))
    count = max(io.pfrio_size, io.pfrio_size2) if with_size2 else io.pfrio_size
    if io.pfrio_esize != <int>esize or not 0 < count <= REQUEST_MAXCOUNT:
        return []
    if feedback_out and io.pfrio_flags & PFR_FLAG_FEEDBACK:
        direction |= REGION_OUT
    return [(<size_t>io.pfrio_buffer, count * esize, direction)]


def regions_tables_in(bytes data):
    return _region(data, sizeof(pfr_table), REGION_IN)


def regions_tables_out(bytes data):
    return _region(data, sizeof(pfr_table), REGION_OUT)


def regions_tstats_out(bytes data):
    return _region(data, sizeof(pfr_tstats), REGION_OUT)


def regions_addrs_in(bytes data):
    return _region(data, sizeof(pfr_addr), REGION_IN)


def regions_addrs_feedback(bytes data):
    return _region(data, sizeof(pfr_addr), REGION_IN, feedback_out=True)


def regions_addrs_inout(bytes data):
    return _region(data, sizeof(pfr_addr), REGION_IN | REGION_OUT)


def regions_addrs_out(bytes data):
    return _region(data, sizeof(pfr_addr), REGION_OUT)


def regions_astats_out(bytes data):
    return _region(data, sizeof(pfr_astats), REGION_OUT)


def regions_setaddrs(bytes data):
    return _region(data, sizeof(pfr_addr), REGION_IN, feedback_out=True, with_size2=True)


def _synced(handler):
    """A handler that may change a table's entries or flags, followed by Tables.sync(): the
    datapath sees the change from the next packet on (also when the handler failed midway)."""
    def run(d, ctx, bytearray buf, mem):
        try:
            handler(d, ctx, buf, mem)
        finally:
            tables_of(d).sync()
    run.__name__ = handler.__name__
    return run


# {command name: (handler(dispatcher, fd context, argument bytearray, caller memory), regions or None)}
HANDLERS = {
    "DIOCRCLRTABLES": (_synced(h_rclrtables), None),
    "DIOCRADDTABLES": (_synced(h_raddtables), regions_tables_in),
    "DIOCRDELTABLES": (_synced(h_rdeltables), regions_tables_in),
    "DIOCRGETTABLES": (h_rgettables, regions_tables_out),
    "DIOCRGETTSTATS": (h_rgettstats, regions_tstats_out),
    "DIOCRCLRTSTATS": (h_rclrtstats, regions_tables_in),
    "DIOCRSETTFLAGS": (_synced(h_rsettflags), regions_tables_in),
    "DIOCRCLRADDRS": (_synced(h_rclraddrs), None),
    "DIOCRADDADDRS": (_synced(h_raddaddrs), regions_addrs_feedback),
    "DIOCRDELADDRS": (_synced(h_rdeladdrs), regions_addrs_feedback),
    "DIOCRSETADDRS": (_synced(h_rsetaddrs), regions_setaddrs),
    "DIOCRGETADDRS": (h_rgetaddrs, regions_addrs_out),
    "DIOCRGETASTATS": (h_rgetastats, regions_astats_out),
    "DIOCRCLRASTATS": (h_rclrastats, regions_addrs_feedback),
    "DIOCRTSTADDRS": (h_rtstaddrs, regions_addrs_inout),
    "DIOCRINADEFINE": (_synced(h_rinadefine), regions_addrs_in),
}
