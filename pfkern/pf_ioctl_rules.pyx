# cython: language_level=3
"""ioctl handlers for rulesets, anchors, rules, pool addresses and transactions (the DIOC*RULE*,
*ADDR*, *RULESET* and DIOCX* cases of FreeBSD's pfioctl()): each decodes its argument through
net/pfvar.h, calls one pf_ruleset function (core.rulesets) and encodes the answer in place.
pf_ioctl binds them by command name (see its COMMANDS).
"""
from libc.string cimport memcpy, memset
from libc.stdint cimport uint32_t

from pfkern.pf_rule cimport (Rule, PoolAddr, pf_rule, pf_addr_wrap, pfioc_rule, pfioc_pooladdr,
                             pfioc_trans, pfioc_trans_e, pfioc_ruleset, PF_ADDR_TABLE,
                             PF_ADDR_DYNIFTL)
from pfkern.errors import Busy, Invalid, NoDevice
from pfkern.pf_util cimport REGION_IN, REGION_OUT, REQUEST_MAXCOUNT, cstr, put_cstr

cdef enum:
    PATH_SIZE = 1024        # PF_MAXPATHLEN
    NAME_SIZE = 64          # PF_ANCHOR_NAME_SIZE
    PF_GET_CLR_CNTR_ = 1


cdef inline str path_of(const char *p):
    """An anchor path field as the kernel reads it: up to the NUL, at most PATH_SIZE - 1 bytes
    (FreeBSD terminates or strlcpy()s these fields into MAXPATHLEN buffers)."""
    return cstr(p, PATH_SIZE - 1)


cdef object call_of(const char *p):
    """pfioc_rule.anchor_call, or None when it has no NUL (FreeBSD would read past it)."""
    cdef Py_ssize_t n = 0
    while n < PATH_SIZE and p[n] != 0:
        n += 1
    return None if n == PATH_SIZE else p[:n].decode("latin-1")


# -- who loaded a rule (pf_rule.cuid/cpid) -------------------------------------------------------

_creators = {}              # id(fd context) -> {caller tid: (uid, pid)}


def _creator(ctx, mem):
    """The real uid and the pid of the calling thread's process, read once per thread and fd
    from /proc; (0, 0) when the front cannot tell (caller in another pid namespace)."""
    tid = getattr(mem, "pid", 0)
    if not tid:
        return 0, 0
    key = id(ctx)
    known = _creators.get(key)
    if known is None:
        known = _creators[key] = {}
        ctx.on_release(("pf_ioctl_rules", "creators"), lambda: _creators.pop(key, None))
    cred = known.get(tid)
    if cred is None:
        uid = pid = 0
        try:
            with open(f"/proc/{tid}/status") as f:
                for line in f:
                    if line.startswith("Tgid:"):
                        pid = int(line.split()[1])
                    elif line.startswith("Uid:"):
                        uid = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        cred = known[tid] = (uid, pid)
    return cred


cdef Rule rule_from(pf_rule *src, ctx, mem):
    cdef Rule rule = Rule()
    memcpy(&rule.r, src, sizeof(pf_rule))
    rule.set_creator(*_creator(ctx, mem))
    return rule


cdef PoolAddr pooladdr_from(pfioc_pooladdr *pp):
    cdef PoolAddr pa = PoolAddr()
    memcpy(&pa.pa, &pp.addr, sizeof(pa.pa))
    pa.af = pp.af
    return pa


cdef addr_copyout(core, pf_addr_wrap *aw, handle, int af):
    """pf_addr_copyout: a table address reports its entry count (-1: table not active), a
    dynamic one its address count, in place of the kernel pointer."""
    if aw.type == PF_ADDR_TABLE:
        aw.p.tbl = NULL
        aw.p.tblcnt = core.tables.count(handle) if handle is not None else -1
    elif aw.type == PF_ADDR_DYNIFTL:
        aw.p.dyn = NULL
        aw.v.ifname[15] = 0
        aw.p.dyncnt = core.interfaces.dynaddr_count(aw.v.ifname.decode("latin-1"),
                                                   10 if af == 28 else af, aw.iflags)


# -- rules ---------------------------------------------------------------------------------------

def h_addrule(d, ctx, bytearray buf, mem):
    cdef pfioc_rule *pr = <pfioc_rule *><char *>buf
    pr.anchor[PATH_SIZE - 1] = 0
    rule = rule_from(&pr.rule, ctx, mem)
    d.core.rulesets.add_rule(path_of(pr.anchor), pr.ticket, pr.pool_ticket,
                             call_of(pr.anchor_call), rule)


def h_getrules(d, ctx, bytearray buf, mem):
    cdef pfioc_rule *pr = <pfioc_rule *><char *>buf
    pr.anchor[PATH_SIZE - 1] = 0
    pr.nr, pr.ticket = d.core.rulesets.get_rules(path_of(pr.anchor), pr.rule.action)


def h_getrule(d, ctx, bytearray buf, mem):
    cdef pfioc_rule *pr = <pfioc_rule *><char *>buf
    cdef Rule rule
    rulesets = d.core.rulesets
    pr.anchor[PATH_SIZE - 1] = 0
    rs, rule = rulesets.get_rule(path_of(pr.anchor), pr.rule.action, pr.ticket, pr.nr)
    call = rulesets.anchor_call(rs, rule)
    rule.copyout(&pr.rule)
    put_cstr(pr.anchor_call, PATH_SIZE, call)
    addr_copyout(d.core, &pr.rule.src.addr, rule.src_table, pr.rule.af)
    addr_copyout(d.core, &pr.rule.dst.addr, rule.dst_table, pr.rule.af)
    if pr.action == PF_GET_CLR_CNTR_:
        engine_locked(d, rule.clear_counters)


def h_changerule(d, ctx, bytearray buf, mem):
    cdef pfioc_rule *pr = <pfioc_rule *><char *>buf
    rule = rule_from(&pr.rule, ctx, mem)
    ticket = d.core.rulesets.change_rule(pr.action, path_of(pr.anchor), pr.ticket,
                                         pr.pool_ticket, pr.nr, call_of(pr.anchor_call), rule)
    if ticket is not None:
        pr.ticket = ticket


def h_clrrulectrs(d, ctx, bytearray buf, mem):
    engine_locked(d, d.core.rulesets.clear_rule_counters)


def engine_locked(d, fn):
    """fn() under the engine lock (the datapath bumps rule counters under it), if there is one."""
    states = d.core.states
    return fn() if states is None else states.run_locked(fn)


# -- pool addresses ------------------------------------------------------------------------------

def h_beginaddrs(d, ctx, bytearray buf, mem):
    cdef pfioc_pooladdr *pp = <pfioc_pooladdr *><char *>buf
    pp.ticket = d.core.rulesets.begin_addrs()


def h_addaddr(d, ctx, bytearray buf, mem):
    cdef pfioc_pooladdr *pp = <pfioc_pooladdr *><char *>buf
    d.core.rulesets.add_addr(pp.ticket, pooladdr_from(pp))


def h_getaddrs(d, ctx, bytearray buf, mem):
    cdef pfioc_pooladdr *pp = <pfioc_pooladdr *><char *>buf
    pp.nr = d.core.rulesets.get_addrs(path_of(pp.anchor), pp.r_action, pp.r_num)


def h_getaddr(d, ctx, bytearray buf, mem):
    cdef pfioc_pooladdr *pp = <pfioc_pooladdr *><char *>buf
    cdef PoolAddr pa = d.core.rulesets.get_addr(path_of(pp.anchor), pp.ticket, pp.r_action,
                                                pp.r_num, pp.nr)
    pa.copyout(&pp.addr)
    addr_copyout(d.core, &pp.addr.addr, pa.table, pa.af)


def h_changeaddr(d, ctx, bytearray buf, mem):
    cdef pfioc_pooladdr *pp = <pfioc_pooladdr *><char *>buf
    d.core.rulesets.change_addr(pp.action, path_of(pp.anchor), pp.ticket, pp.r_action, pp.r_num,
                                pp.r_last, pp.nr, pooladdr_from(pp))


# -- anchors -------------------------------------------------------------------------------------

def h_getrulesets(d, ctx, bytearray buf, mem):
    cdef pfioc_ruleset *pr = <pfioc_ruleset *><char *>buf
    pr.path[PATH_SIZE - 1] = 0
    pr.nr = len(d.core.rulesets.children(path_of(pr.path)))


def h_getruleset(d, ctx, bytearray buf, mem):
    cdef pfioc_ruleset *pr = <pfioc_ruleset *><char *>buf
    pr.path[PATH_SIZE - 1] = 0
    names = d.core.rulesets.children(path_of(pr.path))
    if pr.nr >= len(names):
        raise Busy("no anchor with that number")
    put_cstr(pr.name, NAME_SIZE, names[pr.nr])


# -- transactions --------------------------------------------------------------------------------

cdef bytearray trans_array(pfioc_trans *io, mem):
    """The caller's pfioc_trans_e array, after FreeBSD's size checks."""
    if io.esize != sizeof(pfioc_trans_e):
        raise NoDevice("esize is not sizeof(struct pfioc_trans_e)")
    if io.size < 0 or io.size > REQUEST_MAXCOUNT:
        raise Invalid("transaction size out of range")
    if io.size == 0:
        return bytearray()
    return bytearray(mem.read(<size_t>io.array, io.size * sizeof(pfioc_trans_e)))


cdef list trans_elements(bytearray array):
    """(rs_num, anchor path, ticket) of each element."""
    cdef pfioc_trans_e *e = <pfioc_trans_e *><char *>array
    cdef Py_ssize_t i, n = len(array) // <Py_ssize_t>sizeof(pfioc_trans_e)
    return [(e[i].rs_num, path_of(e[i].anchor), e[i].ticket) for i in range(n)]


def _release_key(rs_num, path):
    return ("pf_ioctl_rules", "transaction", rs_num, path.lstrip("/"))


def h_xbegin(d, ctx, bytearray buf, mem):
    """Tickets are written back into the caller's array. What the fd begins is rolled back
    when it closes, unless committed or rolled back first."""
    cdef pfioc_trans *io = <pfioc_trans *><char *>buf
    cdef bytearray array = trans_array(io, mem)
    cdef pfioc_trans_e *e = <pfioc_trans_e *><char *>array
    rulesets = d.core.rulesets
    elements = trans_elements(array)
    tickets = rulesets.xbegin([(rs_num, path) for rs_num, path, _ in elements])
    begun = [(rs_num, path, ticket) for (rs_num, path, _), ticket in zip(elements, tickets)]
    for i, ticket in enumerate(tickets):
        e[i].ticket = ticket
    try:
        if array:
            mem.write(<size_t>io.array, bytes(array))
    except BaseException:
        rulesets.xrollback(begun)
        raise
    for element in begun:
        ctx.on_release(_release_key(element[0], element[1]),
                       lambda element=element: rulesets.xrollback([element]))


def h_xcommit(d, ctx, bytearray buf, mem):
    elements = trans_elements(trans_array(<pfioc_trans *><char *>buf, mem))
    d.core.rulesets.xcommit(elements)
    for rs_num, path, _ in elements:
        ctx.forget(_release_key(rs_num, path))


def h_xrollback(d, ctx, bytearray buf, mem):
    elements = trans_elements(trans_array(<pfioc_trans *><char *>buf, mem))
    d.core.rulesets.xrollback(elements)
    for rs_num, path, _ in elements:
        ctx.forget(_release_key(rs_num, path))


cdef list trans_regions(bytes data, int direction):
    cdef pfioc_trans io
    if len(data) < <Py_ssize_t>sizeof(io):
        return []
    memcpy(&io, <const char *>data, sizeof(io))
    if io.esize != sizeof(pfioc_trans_e) or not 0 < io.size <= REQUEST_MAXCOUNT:
        return []
    return [(<size_t>io.array, io.size * sizeof(pfioc_trans_e), direction)]


def regions_xbegin(bytes data):
    return trans_regions(data, REGION_IN | REGION_OUT)      # tickets are written back


def regions_xend(bytes data):
    return trans_regions(data, REGION_IN)


# {command name: (handler(dispatcher, fd context, argument bytearray, caller memory),
#                 regions or None)}
HANDLERS = {
    "DIOCADDRULE": (h_addrule, None),
    "DIOCGETRULES": (h_getrules, None),
    "DIOCGETRULE": (h_getrule, None),
    "DIOCCHANGERULE": (h_changerule, None),
    "DIOCCLRRULECTRS": (h_clrrulectrs, None),
    "DIOCBEGINADDRS": (h_beginaddrs, None),
    "DIOCADDADDR": (h_addaddr, None),
    "DIOCGETADDRS": (h_getaddrs, None),
    "DIOCGETADDR": (h_getaddr, None),
    "DIOCCHANGEADDR": (h_changeaddr, None),
    "DIOCGETRULESETS": (h_getrulesets, None),
    "DIOCGETRULESET": (h_getruleset, None),
    "DIOCXBEGIN": (h_xbegin, regions_xbegin),
    "DIOCXCOMMIT": (h_xcommit, regions_xend),
    "DIOCXROLLBACK": (h_xrollback, regions_xend),
}
