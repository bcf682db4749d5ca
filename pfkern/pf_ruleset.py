"""Anchors and rulesets (FreeBSD pf_ruleset.c, and the ruleset half of pf_ioctl.c): the main
ruleset and a tree of named anchors, each with five rulesets (scrub, filter, nat, binat, rdr) in
an active and an inactive generation, plus the table-transaction state of the anchor
(topen/tticket) that pf_table uses; the transactions over them, the global pool-address buffer,
rules (pf_rule.Rule) and the tag names they use.

Paths are anchor paths as pfctl sends them ("a/b/c", leading slashes ignored; "" is the main
ruleset). Anchors are created on demand and removed once nothing refers to them.

Operations raise pfkern.errors exceptions with FreeBSD 12.1's errno for each refusal. A commit
replaces a rule list object instead of editing it, so whoever compiled the previous list (the
packet engine, through on_commit) keeps a consistent view until it swaps.
"""
import heapq
import logging

from pfkern.errors import Busy, Invalid, NoMemory, NotFound, PfError
from pfkern.pf_rule import calc_skip_steps, renumber, ruleset_digest, store_chksum

log = logging.getLogger("pfd.ruleset")

PF_RULESET_SCRUB, PF_RULESET_FILTER, PF_RULESET_NAT, PF_RULESET_BINAT, PF_RULESET_RDR = range(5)
PF_RULESET_MAX = 5                  # SCRUB, FILTER, NAT, BINAT, RDR
PF_RULESET_ALTQ = 5                 # transaction element kinds beyond the rulesets
PF_RULESET_TABLE = 6
PF_ANCHOR_NAME_SIZE = 64
PF_MAXPATHLEN = 1024
TICKET_MASK = 0xffffffff            # tickets are u_int32_t and wrap

PF_PASS, PF_DROP, PF_SCRUB, PF_NOSCRUB, PF_NAT, PF_NONAT, PF_BINAT, PF_NOBINAT, PF_RDR, \
    PF_NORDR = range(10)
PF_CHANGE_ADD_HEAD, PF_CHANGE_ADD_TAIL, PF_CHANGE_ADD_BEFORE, PF_CHANGE_ADD_AFTER, \
    PF_CHANGE_REMOVE, PF_CHANGE_GET_TICKET = range(1, 7)
PF_ADDR_ADDRMASK, PF_ADDR_NOROUTE, PF_ADDR_DYNIFTL, PF_ADDR_TABLE = range(4)
PF_NOPFROUTE = 0

# pf_get_ruleset_number
_RULESET_OF_ACTION = {PF_SCRUB: PF_RULESET_SCRUB, PF_NOSCRUB: PF_RULESET_SCRUB,
                      PF_PASS: PF_RULESET_FILTER, PF_DROP: PF_RULESET_FILTER,
                      PF_NAT: PF_RULESET_NAT, PF_NONAT: PF_RULESET_NAT,
                      PF_BINAT: PF_RULESET_BINAT, PF_NOBINAT: PF_RULESET_BINAT,
                      PF_RDR: PF_RULESET_RDR, PF_NORDR: PF_RULESET_RDR}
_TRANSLATIONS = (PF_NAT, PF_RDR, PF_BINAT)
# Pool addresses DIOCADDADDR/DIOCCHANGEADDR accept.
_POOL_ADDR_TYPES = (PF_ADDR_ADDRMASK, PF_ADDR_DYNIFTL, PF_ADDR_TABLE)

ICMP_MAXTYPE = 40                   # return_icmp's type byte bound
PFLOGIFS_MAX = 16                   # logif bound
PFSTATE_SETPRIO = 0x0200            # in scrub_flags: set_prio[] is used
PF_PRIO_MAX = 7
RT_NUMFIBS = 1                      # FreeBSD's default net.fibs: rtableid 0 only
TAGID_MAX = 50000


def ruleset_number(action):
    """The ruleset a rule action belongs to, or None (pf_get_ruleset_number's PF_RULESET_MAX)."""
    return _RULESET_OF_ACTION.get(action)


class RuleQueue:
    """One generation (active or inactive) of one ruleset kind."""
    __slots__ = ("rules", "ticket", "open")

    def __init__(self):
        self.rules = []
        self.ticket = 0
        self.open = False


class Ruleset:
    __slots__ = ("anchor", "active", "inactive", "topen", "tticket", "tables")

    def __init__(self, anchor=None):
        self.anchor = anchor                                # None for the main ruleset
        self.active = [RuleQueue() for _ in range(PF_RULESET_MAX)]
        self.inactive = [RuleQueue() for _ in range(PF_RULESET_MAX)]
        self.topen = False                                  # a table transaction is open
        self.tticket = 0                                    # its ticket
        self.tables = 0                                     # tables living in this anchor

    @property
    def path(self):
        return self.anchor.path if self.anchor is not None else ""

    def is_empty(self):
        return (self.tables == 0 and not self.topen and
                all(not q.rules for q in self.active) and
                all(not q.rules and not q.open for q in self.inactive))


class Anchor:
    __slots__ = ("name", "path", "parent", "children", "ruleset", "refcnt")

    def __init__(self, name, parent):
        self.name = name
        self.path = f"{parent.path}/{name}" if parent is not None else name
        self.parent = parent
        self.children = {}                                  # name -> Anchor
        self.ruleset = Ruleset(self)
        self.refcnt = 0                                     # anchor rules calling it


class Tags:
    """Tag names to ids (pf_tagname2tag, tag_unref): the lowest free id in 1..TAGID_MAX,
    shared by every rule naming the tag, freed with its last rule."""

    def __init__(self):
        self._ids = {}              # name -> [id, references]
        self._names = {}            # id -> name
        self._free = []             # heap of released ids below _next
        self._next = 1

    def ref(self, name):
        """The tag's id, or 0 when the id space is exhausted."""
        entry = self._ids.get(name)
        if entry is not None:
            entry[1] += 1
            return entry[0]
        if self._free:
            tag = heapq.heappop(self._free)
        elif self._next <= TAGID_MAX:
            tag = self._next
            self._next += 1
        else:
            return 0
        self._ids[name] = [tag, 1]
        self._names[tag] = name
        return tag

    def unref(self, tag):
        name = self._names.get(tag)
        if name is None:
            return
        entry = self._ids[name]
        entry[1] -= 1
        if entry[1] == 0:
            del self._ids[name]
            del self._names[tag]
            heapq.heappush(self._free, tag)


class Rulesets:
    def __init__(self, core):
        self.core = core
        self.main = Ruleset()
        self.anchors = {}                                   # path -> Anchor (pf_anchors)
        self._anchor_changes = 0                            # bumped on every create/remove
        self._children_cache = {}                           # path -> (changes, sorted names)
        self.pabuf = []                                     # pool buffer (V_pf_pabuf)
        self.ticket_pabuf = 0
        self.tags = Tags()
        self._commit_hooks = []

    # -- anchors ---------------------------------------------------------------------------------
    def find(self, path):
        """pf_find_ruleset: the ruleset at path, or None."""
        path = path.lstrip("/")
        if not path:
            return self.main
        anchor = self.anchors.get(path)
        return anchor.ruleset if anchor is not None else None

    def find_or_create(self, path):
        """pf_find_or_create_ruleset: None when a component is empty or too long, or a new
        anchor's parent path leaves no room for another name. Nothing is created then."""
        path = path.lstrip("/")
        found = self.find(path)
        if found is not None:
            return found
        parts = path.split("/")
        if any(not p or len(p) >= PF_ANCHOR_NAME_SIZE for p in parts) or len(path) >= PF_MAXPATHLEN:
            return None
        for i in range(1, len(parts)):
            if ("/".join(parts[:i + 1]) not in self.anchors and
                    len("/".join(parts[:i])) >= PF_MAXPATHLEN - PF_ANCHOR_NAME_SIZE - 1):
                return None
        parent = None
        for i, name in enumerate(parts):
            sub = "/".join(parts[:i + 1])
            anchor = self.anchors.get(sub)
            if anchor is None:
                anchor = Anchor(name, parent)
                self.anchors[sub] = anchor
                self._anchor_changes += 1
                if parent is not None:
                    parent.children[name] = anchor
            parent = anchor
        return parent.ruleset

    def remove_if_empty(self, ruleset):
        """pf_remove_if_empty_ruleset: drop the anchor, then its parents, while nothing uses
        them."""
        while ruleset is not None and ruleset.anchor is not None:
            anchor = ruleset.anchor
            if (self.anchors.get(anchor.path) is not anchor or anchor.children or
                    anchor.refcnt > 0 or not ruleset.is_empty()):
                return          # already gone (freeing its rules dropped the last reference)
            del self.anchors[anchor.path]
            self._anchor_changes += 1
            self._children_cache.pop(anchor.path, None)
            parent = anchor.parent
            if parent is None:
                return
            del parent.children[anchor.name]
            ruleset = parent.ruleset

    def children(self, path):
        """DIOCGETRULESETS/DIOCGETRULESET: names of the anchors directly under path, in the
        order of FreeBSD's anchor trees (byte order of the path)."""
        rs = self.find(path)
        if rs is None:
            raise NotFound("no such anchor")
        # pfctl walks nr = 0..n-1, one ioctl each: sort once per change of the anchor tree
        cached = self._children_cache.get(rs.path)
        if cached is not None and cached[0] == self._anchor_changes:
            return cached[1]
        if rs.anchor is None:
            names = [a.name for a in self.anchors.values() if a.parent is None]
        else:
            names = list(rs.anchor.children)
        names.sort(key=lambda n: n.encode("latin-1"))
        self._children_cache[rs.path] = (self._anchor_changes, names)
        return names

    def _anchor_setup(self, rule, rs, name):
        """pf_anchor_setup: bind an anchor rule to the anchor its anchor_call names ("/abs",
        relative to rs with leading "../", a "/*" or "*" wildcard suffix). False when the call
        is bad (None: not NUL-terminated)."""
        rule.anchor = None
        rule.anchor_relative = 0
        rule.anchor_wildcard = 0
        if name is None:
            return False
        if not name:
            return True
        if name[0] == "/":
            path = name[1:]
        else:
            relative = 1
            path = rs.path
            while name.startswith("../"):
                if not path:
                    return False                # .. beyond the main ruleset
                path = path[:max(path.rfind("/"), 0)]
                relative += 1
                name = name[3:]
            rule.anchor_relative = relative & 0xff
            path = f"{path}/{name}" if path else name
        path = path[:PF_MAXPATHLEN - 1]
        slash = path.rfind("/")
        if slash >= 0 and path[slash:] == "/*":
            rule.anchor_wildcard = 1
            path = path[:slash]
        called = self.find_or_create(path)
        if called is None or called.anchor is None:
            return False
        rule.anchor = called.anchor
        called.anchor.refcnt += 1
        return True

    def _anchor_remove(self, rule):
        anchor = rule.anchor
        if anchor is None:
            return
        rule.anchor = None
        anchor.refcnt -= 1
        if anchor.refcnt <= 0:
            anchor.refcnt = 0
            self.remove_if_empty(anchor.ruleset)

    def anchor_call(self, rs, rule):
        """pf_anchor_copyout: the anchor_call DIOCGETRULE reports for a rule of rs, rebuilt from
        the anchor it calls and how it was named. Busy if the relative form no longer fits."""
        anchor = rule.anchor
        if anchor is None:
            return ""
        if not rule.anchor_relative:
            call = "/" + anchor.path
        else:
            base = rs.path
            call = ""
            for _ in range(1, rule.anchor_relative):
                base = base[:max(base.rfind("/"), 0)]
                call += "../"
            if not anchor.path.startswith(base):
                raise Busy("anchor call no longer relative to its ruleset")
            if len(anchor.path) > len(base):
                call += anchor.path[len(base) + 1 if base else 0:]
        if rule.anchor_wildcard:
            call += "/*" if call else "*"
        return call[:PF_MAXPATHLEN - 1]

    # -- transactions ----------------------------------------------------------------------------
    def on_commit(self, callback):
        """Call callback(ruleset, rs_num) whenever a rule queue of ruleset becomes active
        (transaction commit) or the active queue is edited (DIOCCHANGERULE/DIOCCHANGEADDR):
        the packet engine compiles `ruleset.active[rs_num].rules` then and swaps."""
        self._commit_hooks.append(callback)

    def _notify(self, changed):
        for rs, rs_num in changed:
            for hook in self._commit_hooks:
                try:
                    hook(rs, rs_num)
                except Exception:
                    log.exception("on_commit hook failed for %r ruleset %d", rs.path, rs_num)

    @staticmethod
    def _check_kinds(elements, kinds):
        for element in elements:
            if element[0] not in kinds:
                raise Invalid(f"transaction element of kind {element[0]}")

    def begin(self, rs_num, path):
        """pf_begin_rules: empty the inactive queue (creating the anchor), open it, new ticket."""
        if not 0 <= rs_num < PF_RULESET_MAX:
            raise Invalid("not a ruleset")
        rs = self.find_or_create(path)
        if rs is None:
            raise Invalid("bad anchor path")
        q = rs.inactive[rs_num]
        self._free_rules(q.rules)
        q.rules = []
        q.ticket = (q.ticket + 1) & TICKET_MASK
        q.open = True
        return q.ticket

    def rollback(self, rs_num, path, ticket):
        """pf_rollback_rules: a stale ticket or a closed queue is silently left alone. Unlike
        FreeBSD, an anchor the transaction created and left empty is removed."""
        if not 0 <= rs_num < PF_RULESET_MAX:
            raise Invalid("not a ruleset")
        rs = self.find(path)
        if rs is None:
            return
        q = rs.inactive[rs_num]
        if not q.open or q.ticket != ticket:
            return
        self._free_rules(q.rules)
        q.rules = []
        q.open = False
        self.remove_if_empty(rs)

    def _committable(self, rs_num, path, ticket):
        rs = self.find(path)
        if rs is None:
            return None
        q = rs.inactive[rs_num]
        return rs if q.open and q.ticket == ticket else None

    def _commit(self, rs, rs_num):
        """pf_commit_rules after its checks: checksum (main ruleset), swap, skip steps, free."""
        if rs is self.main:
            digest = ruleset_digest([rs.inactive[i].rules for i in range(PF_RULESET_MAX)
                                     if i != PF_RULESET_SCRUB])
            store_chksum(self.core, digest)
        active, inactive = rs.active[rs_num], rs.inactive[rs_num]
        old = active.rules
        calc_skip_steps(inactive.rules)
        active.rules, inactive.rules = inactive.rules, []
        active.ticket = inactive.ticket
        inactive.open = False
        self._free_rules(old)
        self.remove_if_empty(rs)

    def xbegin(self, elements):
        """DIOCXBEGIN: elements are (rs_num, path); returns their tickets. Kinds are checked
        first; if one element fails, those this call already began are rolled back."""
        self._check_kinds(elements, (*range(PF_RULESET_MAX), PF_RULESET_TABLE))
        done = []
        tables_begun = set()
        try:
            for rs_num, path in elements:
                if rs_num == PF_RULESET_TABLE:
                    # an anchor listed again has nothing inactive left to drop: skip the walk
                    anchor = path.lstrip("/")
                    ticket = self.core.tables.ina_begin(path, drop=anchor not in tables_begun)
                    tables_begun.add(anchor)
                else:
                    ticket = self.begin(rs_num, path)
                done.append((rs_num, path, ticket))
        except Exception:
            self.xrollback(done)
            raise
        return [ticket for _, _, ticket in done]

    def xcommit(self, elements):
        """DIOCXCOMMIT: elements are (rs_num, path, ticket). All are checked before any is
        committed, so the transaction applies entirely or not at all."""
        for rs_num, path, ticket in elements:
            if rs_num == PF_RULESET_TABLE:
                if not self.core.tables.ina_check(path, ticket):
                    raise Busy("table transaction not open or ticket stale")
            elif 0 <= rs_num < PF_RULESET_MAX:
                if self._committable(rs_num, path, ticket) is None:
                    raise Busy("ruleset not open or ticket stale")
            else:
                raise Invalid(f"transaction element of kind {rs_num}")
        changed = []
        tables_done = set()
        try:
            for rs_num, path, ticket in elements:
                if rs_num == PF_RULESET_TABLE:
                    # the same element twice: committed once, like a ruleset listed twice
                    if (path.lstrip("/"), ticket) not in tables_done:
                        tables_done.add((path.lstrip("/"), ticket))
                        self.core.tables.ina_commit(path, ticket)
                    continue
                rs = self._committable(rs_num, path, ticket)
                if rs is not None:              # None: the same element twice, already done
                    self._commit(rs, rs_num)
                    changed.append((rs, rs_num))
        finally:
            self._notify(changed)               # whatever was swapped in must reach the datapath

    def xrollback(self, elements):
        """DIOCXROLLBACK: elements are (rs_num, path, ticket); stale ones are skipped."""
        self._check_kinds(elements, (*range(PF_RULESET_MAX), PF_RULESET_TABLE))
        for rs_num, path, ticket in elements:
            if rs_num == PF_RULESET_TABLE:
                self.core.tables.ina_rollback(path, ticket)
            else:
                self.rollback(rs_num, path, ticket)

    # -- the pool buffer -------------------------------------------------------------------------
    def begin_addrs(self):
        """DIOCBEGINADDRS: empty the pool buffer; its new ticket."""
        self._free_pool(self.pabuf)
        self.pabuf = []
        self.ticket_pabuf = (self.ticket_pabuf + 1) & TICKET_MASK
        return self.ticket_pabuf

    def add_addr(self, ticket, pa):
        """DIOCADDADDR: append a PoolAddr to the buffer."""
        if pa.type not in _POOL_ADDR_TYPES:
            raise Invalid("pool address type")
        if ticket != self.ticket_pabuf:
            raise Busy("pool ticket stale")
        self.pabuf.append(pa)

    # -- rules -----------------------------------------------------------------------------------
    def _attach(self, rs, name):
        """pfr_attach_table: a handle, or None when pf_table refuses."""
        try:
            return self.core.tables.attach(rs.path, name)
        except PfError:
            return None

    def _detach(self, handle):
        if handle is not None:
            self.core.tables.detach(handle)

    def _free_pool(self, pool):
        for pa in pool:
            self._detach(pa.table)
            pa.table = None

    def _free_rule(self, rule):
        """pf_free_rule: release what the rule holds (tags, tables, anchor, pool)."""
        if rule.tagname and rule.tag:
            self.tags.unref(rule.tag)
        if rule.match_tagname and rule.match_tag:
            self.tags.unref(rule.match_tag)
        for attr in ("src_table", "dst_table", "overload_table"):
            self._detach(getattr(rule, attr))
            setattr(rule, attr, None)
        self._anchor_remove(rule)
        self._free_pool(rule.pool)
        rule.pool = []

    def _free_rules(self, rules):
        for rule in rules:
            self._free_rule(rule)

    def _setup_rule(self, rs, rule, anchor_call, change):
        """What DIOCADDRULE and DIOCCHANGERULE do to a new rule once the tickets are right:
        attach what it names and take the pool buffer. Every check runs and the last failure
        decides the errno, as in FreeBSD; returns that exception or None (the caller frees the
        rule on failure). DIOCCHANGERULE (change) skips the set_prio check and lets an anchor
        rule route without a pool, as 12.1 does."""
        error = None
        if 0 < rule.rtableid and rule.rtableid >= RT_NUMFIBS:
            error = Busy("rtableid beyond the routing tables")
        if rule.tagname:
            rule.tag = self.tags.ref(rule.tagname)
            if not rule.tag:
                error = Busy("no tag id left")
        if rule.match_tagname:
            rule.match_tag = self.tags.ref(rule.match_tagname)
            if not rule.match_tag:
                error = Busy("no tag id left")
        if rule.rt and not rule.direction:
            error = Invalid("route option without a direction")
        if not rule.log:
            rule.logif = 0
        if rule.logif >= PFLOGIFS_MAX:
            error = Invalid("log interface out of range")
        if rule.src_type == PF_ADDR_TABLE:
            rule.src_table = self._attach(rs, rule.src_tblname)
            if rule.src_table is None:
                error = NoMemory("source table")
        if rule.dst_type == PF_ADDR_TABLE:
            rule.dst_table = self._attach(rs, rule.dst_tblname)
            if rule.dst_table is None:
                error = NoMemory("destination table")
        if not self._anchor_setup(rule, rs, anchor_call):
            error = Invalid("bad anchor call")
        if not change and rule.scrub_flags & PFSTATE_SETPRIO and max(rule.set_prio) > PF_PRIO_MAX:
            error = Invalid("set prio out of range")
        for pa in self.pabuf:
            if pa.type == PF_ADDR_TABLE:
                pa.table = self._attach(rs, pa.tblname)
                if pa.table is None:
                    error = NoMemory("pool table")
        if rule.overload_tblname:
            rule.overload_table = self._attach(rs, rule.overload_tblname)
            if rule.overload_table is None:
                error = Invalid("overload table")
        rule.pool, self.pabuf = self.pabuf, []
        translation = rule.action in _TRANSLATIONS
        if change:
            needs_pool = (translation or rule.rt > PF_NOPFROUTE) and rule.anchor is None
        else:
            needs_pool = (translation and rule.anchor is None) or rule.rt > PF_NOPFROUTE
        if needs_pool and not rule.pool:
            error = Invalid("translation or route rule without addresses")
        return error

    def _inactive_for(self, path, rule):
        rs = self.find(path)
        if rs is None:
            raise Invalid("no such anchor")
        rs_num = ruleset_number(rule.action)
        if rs_num is None:
            raise Invalid("not a rule action")
        return rs, rs.inactive[rs_num]

    def add_rule(self, path, ticket, pool_ticket, anchor_call, rule):
        """DIOCADDRULE: append a Rule to the inactive ruleset its action selects; it takes the
        pool buffer. anchor_call None stands for an unterminated one."""
        if rule.return_icmp >> 8 > ICMP_MAXTYPE:
            raise Invalid("return-icmp type")
        rs, q = self._inactive_for(path, rule)
        if ticket != q.ticket:
            raise Busy("ruleset ticket stale")
        if pool_ticket != self.ticket_pabuf:
            raise Busy("pool ticket stale")
        rule.nr = q.rules[-1].nr + 1 if q.rules else 0
        error = self._setup_rule(rs, rule, anchor_call, change=False)
        if error is not None:
            self._free_rule(rule)
            raise error
        rule.reset_counters()
        q.rules.append(rule)

    def _active_for(self, path, action):
        rs = self.find(path)
        if rs is None:
            raise Invalid("no such anchor")
        rs_num = ruleset_number(action)
        if rs_num is None:
            raise Invalid("not a rule action")
        return rs, rs_num

    def get_rules(self, path, action):
        """DIOCGETRULES: (number of active rules, active ticket)."""
        rs, rs_num = self._active_for(path, action)
        q = rs.active[rs_num]
        return (q.rules[-1].nr + 1 if q.rules else 0), q.ticket

    def get_rule(self, path, action, ticket, nr):
        """DIOCGETRULE: (ruleset, rule) of active rule nr."""
        rs, rs_num = self._active_for(path, action)
        q = rs.active[rs_num]
        if ticket != q.ticket:
            raise Busy("ruleset ticket stale")
        if nr >= len(q.rules):
            raise Busy("no such rule")
        return rs, q.rules[nr]

    def change_rule(self, action, path, ticket, pool_ticket, nr, anchor_call, rule):
        """DIOCCHANGERULE on the active ruleset. Returns the new ticket for
        PF_CHANGE_GET_TICKET, else None. rule (a Rule) is unused for PF_CHANGE_REMOVE."""
        if not PF_CHANGE_ADD_HEAD <= action <= PF_CHANGE_GET_TICKET:
            raise Invalid("change action")
        if rule.return_icmp >> 8 > ICMP_MAXTYPE:
            raise Invalid("return-icmp type")
        if (action not in (PF_CHANGE_REMOVE, PF_CHANGE_GET_TICKET) and
                pool_ticket != self.ticket_pabuf):
            raise Busy("pool ticket stale")
        rs, rs_num = self._active_for(path, rule.action)
        q = rs.active[rs_num]
        if action == PF_CHANGE_GET_TICKET:
            q.ticket = (q.ticket + 1) & TICKET_MASK
            return q.ticket
        if ticket != q.ticket:
            raise Invalid("ruleset ticket stale")       # EINVAL here, not EBUSY (12.1)
        newrule = None
        if action != PF_CHANGE_REMOVE:
            newrule = rule
            error = self._setup_rule(rs, newrule, anchor_call, change=True)
            if error is not None:
                self._free_rule(newrule)
                raise error
            newrule.reset_counters()
        self._free_pool(self.pabuf)
        self.pabuf = []
        rules = list(q.rules)
        if action == PF_CHANGE_ADD_HEAD:
            at = 0
        elif action == PF_CHANGE_ADD_TAIL:
            at = len(rules)
        else:
            at = next((i for i, r in enumerate(rules) if r.nr == nr), None)
            if at is None:
                if newrule is not None:
                    self._free_rule(newrule)
                raise Invalid("no such rule")
        if action == PF_CHANGE_REMOVE:
            self._free_rule(rules.pop(at))
        else:
            rules.insert(at + 1 if action == PF_CHANGE_ADD_AFTER else at, newrule)
        renumber(rules)
        calc_skip_steps(rules)
        q.rules = rules
        q.ticket = (q.ticket + 1) & TICKET_MASK
        self.remove_if_empty(rs)
        self._notify([(rs, rs_num)])
        return None

    def clear_rule_counters(self):
        """DIOCCLRRULECTRS: evaluations, packets and bytes of the main filter rules."""
        for rule in self.main.active[PF_RULESET_FILTER].rules:
            rule.clear_counters(False)

    # -- pools of active rules -------------------------------------------------------------------
    def _pool_rule(self, path, ticket, r_action, r_num, r_last, check_ticket):
        """pf_get_pool on the active rulesets: the rule, or None on any miss."""
        rs = self.find(path)
        rs_num = ruleset_number(r_action)
        if rs is None or rs_num is None:
            return None
        q = rs.active[rs_num]
        if check_ticket and ticket != q.ticket:
            return None
        if r_last:
            return q.rules[-1] if q.rules else None
        return q.rules[r_num] if r_num < len(q.rules) else None

    def get_addrs(self, path, r_action, r_num):
        """DIOCGETADDRS: number of pool addresses of an active rule (ticket not checked)."""
        rule = self._pool_rule(path, 0, r_action, r_num, False, False)
        if rule is None:
            raise Busy("no such rule")
        return len(rule.pool)

    def get_addr(self, path, ticket, r_action, r_num, nr):
        """DIOCGETADDR: pool address nr of an active rule."""
        rule = self._pool_rule(path, ticket, r_action, r_num, False, True)
        if rule is None or nr >= len(rule.pool):
            raise Busy("no such rule or address")
        return rule.pool[nr]

    def change_addr(self, action, path, ticket, r_action, r_num, r_last, nr, pa):
        """DIOCCHANGEADDR: edit the pool of an active rule; pa (a PoolAddr) is unused for
        PF_CHANGE_REMOVE."""
        if not PF_CHANGE_ADD_HEAD <= action <= PF_CHANGE_REMOVE:
            raise Invalid("change action")
        if pa.type not in _POOL_ADDR_TYPES:
            raise Invalid("pool address type")
        rs = self.find(path)
        if rs is None:
            raise Busy("no such anchor")
        rule = self._pool_rule(path, ticket, r_action, r_num, r_last, True)
        if rule is None:
            raise Busy("no such rule")
        if action != PF_CHANGE_REMOVE and pa.type == PF_ADDR_TABLE:
            pa.table = self._attach(rs, pa.tblname)
            if pa.table is None:
                raise NoMemory("pool table")
        pool = list(rule.pool)
        if action == PF_CHANGE_ADD_HEAD:
            at = 0
        elif action == PF_CHANGE_ADD_TAIL:
            at = len(pool)
        else:
            at = nr
            if at >= len(pool):
                self._free_pool([pa])
                raise Invalid("no such pool address")
        if action == PF_CHANGE_REMOVE:
            self._free_pool([pool.pop(at)])
        else:
            pool.insert(at + 1 if action == PF_CHANGE_ADD_AFTER else at, pa)
        rule.pool = pool
        rule.pool_changed()
        rs_num = ruleset_number(r_action)
        self._notify([(rs, rs_num)])
