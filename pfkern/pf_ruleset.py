"""Anchors and rulesets (FreeBSD pf_ruleset.c): the main ruleset and a tree of named anchors, each
with five rulesets (scrub, filter, nat, binat, rdr) in an active and an inactive generation, plus
the table-transaction state of the anchor (topen/tticket) that pf_table uses.

Paths are anchor paths as pfctl sends them ("a/b/c", leading slashes ignored; "" is the main
ruleset). Anchors are created on demand and removed once nothing refers to them.
"""

PF_RULESET_MAX = 5                  # SCRUB, FILTER, NAT, BINAT, RDR
PF_ANCHOR_NAME_SIZE = 64
PF_MAXPATHLEN = 1024


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


class Rulesets:
    def __init__(self, core):
        self.core = core
        self.main = Ruleset()
        self.anchors = {}                                   # path -> Anchor (pf_anchors)

    def find(self, path):
        """pf_find_ruleset: the ruleset at path, or None."""
        path = path.lstrip("/")
        if not path:
            return self.main
        anchor = self.anchors.get(path)
        return anchor.ruleset if anchor is not None else None

    def find_or_create(self, path):
        """pf_find_or_create_ruleset: None when a component is empty or too long."""
        path = path.lstrip("/")
        found = self.find(path)
        if found is not None:
            return found
        parts = path.split("/")
        if any(not p or len(p) >= PF_ANCHOR_NAME_SIZE for p in parts) or len(path) >= PF_MAXPATHLEN:
            return None
        parent = None
        for i, name in enumerate(parts):
            sub = "/".join(parts[:i + 1])
            anchor = self.anchors.get(sub)
            if anchor is None:
                anchor = Anchor(name, parent)
                self.anchors[sub] = anchor
                if parent is not None:
                    parent.children[name] = anchor
            parent = anchor
        return parent.ruleset

    def remove_if_empty(self, ruleset):
        """pf_remove_if_empty_ruleset: drop the anchor, then its parents, while nothing uses them."""
        while ruleset is not None and ruleset.anchor is not None:
            anchor = ruleset.anchor
            if anchor.children or anchor.refcnt > 0 or not ruleset.is_empty():
                return
            del self.anchors[anchor.path]
            parent = anchor.parent
            if parent is None:
                return
            del parent.children[anchor.name]
            ruleset = parent.ruleset
