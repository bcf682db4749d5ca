"""Helpers for the table tests: DIOCR* requests built the way pfctl's pfctl_radix.c builds them,
through the ctypes client against a live pfd."""
import ctypes
import ipaddress

from pfkern.client import (AF_INET, AF_INET6, DIOCRADDADDRS, DIOCRADDTABLES, DIOCRCLRADDRS,
                           DIOCRCLRASTATS, DIOCRCLRTABLES, DIOCRCLRTSTATS, DIOCRDELADDRS,
                           DIOCRDELTABLES, DIOCRGETADDRS, DIOCRGETASTATS, DIOCRGETTABLES,
                           DIOCRGETTSTATS, DIOCRINADEFINE, DIOCRSETADDRS, DIOCRSETTFLAGS,
                           DIOCRTSTADDRS, pfioc_table, pfr_addr, pfr_astats, pfr_table,
                           pfr_tstats)

ESIZE_TABLE = ctypes.sizeof(pfr_table)      # 1064
ESIZE_TSTATS = ctypes.sizeof(pfr_tstats)    # 1200
ESIZE_ADDR = ctypes.sizeof(pfr_addr)        # 20
ESIZE_ASTATS = ctypes.sizeof(pfr_astats)    # 96


def table(name, anchor="", flags=0):
    t = pfr_table()
    t.pfrt_anchor = anchor.encode() if isinstance(anchor, str) else anchor
    t.pfrt_name = name.encode() if isinstance(name, str) else name
    t.pfrt_flags = flags
    return t


def addr(text, neg=False):
    """pfr_addr of "10.0.0.0/8", "2001:db8::1", or "!10.1.0.0/16" (negated)."""
    if text.startswith("!"):
        text, neg = text[1:], True
    return pfr_addr.of(text, neg)


def addr_text(a):
    """The address a pfr_addr holds, as "!10.1.0.0/16" or "10.0.0.1"."""
    raw = ctypes.string_at(ctypes.addressof(a), 16)
    ip = ipaddress.ip_address(raw[:4] if a.pfra_af == AF_INET else raw)
    full = 32 if a.pfra_af == AF_INET else 128
    return ("!" if a.pfra_not else "") + (str(ip) if a.pfra_net == full else f"{ip}/{a.pfra_net}")


def addr_array(addrs, room=0):
    """A pfr_addr array of the given addresses plus `room` empty slots."""
    items = [a if isinstance(a, pfr_addr) else addr(a) for a in addrs]
    return (pfr_addr * max(len(items) + room, 1))(*items)


class TableClient:
    """The DIOCR* calls on one PfDevice. Every method returns the pfioc_table as the daemon
    answered it (and raises OSError with the errno on failure)."""

    def __init__(self, dev):
        self.dev = dev

    def io(self, tbl=None, buf=None, esize=0, size=None, flags=0, **fields):
        io = pfioc_table(pfrio_esize=esize, pfrio_flags=flags, **fields)
        if tbl is not None:
            io.pfrio_table = tbl
        if buf is not None:
            io.pfrio_buffer = ctypes.addressof(buf)
            io.pfrio_size = len(buf) if size is None else size
        elif size is not None:
            io.pfrio_size = size
        return io

    def call(self, cmd, io):
        return self.dev.ioctl(cmd, io)

    # -- tables ------------------------------------------------------------------------------
    def add_tables(self, *tbls, flags=0):
        buf = (pfr_table * len(tbls))(*tbls)
        return self.call(DIOCRADDTABLES, self.io(buf=buf, esize=ESIZE_TABLE, flags=flags))

    def del_tables(self, *tbls, flags=0):
        buf = (pfr_table * len(tbls))(*tbls)
        return self.call(DIOCRDELTABLES, self.io(buf=buf, esize=ESIZE_TABLE, flags=flags))

    def clr_tables(self, anchor="", flags=0):
        return self.call(DIOCRCLRTABLES, self.io(tbl=table("", anchor), flags=flags))

    def clr_tstats(self, *tbls, flags=0, filter_anchor=""):
        buf = (pfr_table * len(tbls))(*tbls)
        return self.call(DIOCRCLRTSTATS, self.io(tbl=table("", filter_anchor), buf=buf,
                                                 esize=ESIZE_TABLE, flags=flags))

    def set_tflags(self, *tbls, setflag=0, clrflag=0, flags=0, filter_anchor=""):
        buf = (pfr_table * len(tbls))(*tbls)
        return self.call(DIOCRSETTFLAGS, self.io(tbl=table("", filter_anchor), buf=buf,
                                                 esize=ESIZE_TABLE, flags=flags,
                                                 pfrio_size2=setflag, pfrio_nadd=clrflag))

    def tables(self, anchor="", flags=0, stats=False, initial=64):
        """pfctl -s Tables: a buffer of `initial`, regrown to the size the daemon reports."""
        etype, esize, cmd = ((pfr_tstats, ESIZE_TSTATS, DIOCRGETTSTATS) if stats else
                             (pfr_table, ESIZE_TABLE, DIOCRGETTABLES))
        size = initial
        while True:
            buf = (etype * max(size, 1))()
            io = self.call(cmd, self.io(tbl=table("", anchor), buf=buf, size=size, esize=esize,
                                        flags=flags))
            if io.pfrio_size <= size:
                return [etype.from_buffer_copy(buf[i]) for i in range(io.pfrio_size)]
            size = io.pfrio_size

    def names(self, anchor="", flags=0):
        """{(anchor, name): flags} of the tables listed."""
        return {(t.pfrt_anchor.decode(), t.pfrt_name.decode()): t.pfrt_flags
                for t in self.tables(anchor, flags)}

    # -- addresses ---------------------------------------------------------------------------
    def _addrs(self, cmd, tbl, addrs, flags=0, room=0, **fields):
        buf = addr_array(addrs, room)
        io = self.call(cmd, self.io(tbl=tbl, buf=buf, size=len(addrs), esize=ESIZE_ADDR,
                                    flags=flags, **fields))
        return io, buf

    def add_addrs(self, tbl, addrs, flags=0):
        return self._addrs(DIOCRADDADDRS, tbl, addrs, flags)

    def del_addrs(self, tbl, addrs, flags=0):
        return self._addrs(DIOCRDELADDRS, tbl, addrs, flags)

    def set_addrs(self, tbl, addrs, flags=0, room=0):
        """pfctl -T replace: size2 = the buffer's capacity."""
        return self._addrs(DIOCRSETADDRS, tbl, addrs, flags, room,
                           pfrio_size2=len(addrs) + room if room else 0)

    def tst_addrs(self, tbl, addrs, flags=0):
        return self._addrs(DIOCRTSTADDRS, tbl, addrs, flags)

    def clr_astats(self, tbl, addrs, flags=0):
        return self._addrs(DIOCRCLRASTATS, tbl, addrs, flags)

    def ina_define(self, tbl, addrs, ticket, flags=0):
        return self._addrs(DIOCRINADEFINE, tbl, addrs, flags, pfrio_ticket=ticket)

    def clr_addrs(self, tbl, flags=0):
        return self.call(DIOCRCLRADDRS, self.io(tbl=tbl, flags=flags))

    def addrs(self, tbl, stats=False, initial=64):
        """pfctl -T show (-v: astats): size 64 first, then exactly the size reported."""
        etype, esize, cmd = ((pfr_astats, ESIZE_ASTATS, DIOCRGETASTATS) if stats else
                             (pfr_addr, ESIZE_ADDR, DIOCRGETADDRS))
        size = initial
        while True:
            buf = (etype * max(size, 1))()
            io = self.call(cmd, self.io(tbl=tbl, buf=buf, size=size, esize=esize))
            if io.pfrio_size <= size:
                return [etype.from_buffer_copy(buf[i]) for i in range(io.pfrio_size)]
            size = io.pfrio_size

    def show(self, tbl):
        return [addr_text(a) for a in self.addrs(tbl)]


def snapshot(client):
    """Everything a table test can observe: every table (all anchors) with its flags, count and
    addresses."""
    state = {}
    for ts in client.tables(flags=0x40, stats=True):           # PFR_FLAG_ALLRSETS
        t = ts.pfrts_t
        key = (t.pfrt_anchor.decode(), t.pfrt_name.decode())
        addrs = client.show(table(key[1], key[0])) if t.pfrt_flags & 0x4 else None
        state[key] = (t.pfrt_flags, ts.pfrts_cnt, tuple(ts.pfrts_refcnt), addrs)
    return state


__all__ = ["ESIZE_TABLE", "ESIZE_TSTATS", "ESIZE_ADDR", "ESIZE_ASTATS", "table", "addr",
           "addr_text", "addr_array", "TableClient", "snapshot", "AF_INET", "AF_INET6"]
