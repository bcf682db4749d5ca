"""pf's view of interfaces (FreeBSD pf_if.c): one kif per host interface and per interface group.

The host's interfaces come from rtnetlink (pyroute2). The list is re-read only when the kernel
has announced a link change on a subscribed netlink socket, so a lookup normally costs one poll.
Groups follow FreeBSD: "all" holds every interface; a driver group is the name without its
trailing digits ("eth0" -> "eth"), as cloned interfaces get on FreeBSD.

When an interface goes, its kif goes with it (and a group's with its last member). FreeBSD 12
keeps such a kif detached (pfik_ifp NULL) and reattaches it, flags and counters included, when an
interface of that name returns; here only a kif seen again before the table is re-read does.
"""
import errno
import logging
import os
import select
import socket
import threading
import time

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

log = logging.getLogger("pfd.if")

IFG_ALL = "all"
IFNAMSIZ = 16
SYSFS_NET = "/sys/class/net"

# pfi_kif.pfik_flags (FreeBSD 12) and pfi_if.pfif_flags (OpenBSD 3.x)
PFI_IFLAG_REFS = 0x0001
PFI_IFLAG_SKIP = 0x0100
PFI_IFLAG_GROUP = 0x0001
PFI_IFLAG_INSTANCE = 0x0002
PFI_IFLAG_ATTACHED = 0x0040
# pf_addr_wrap.iflags of a dynamic address (`(ifname:network)` etc.)
PFI_AFLAG_NETWORK = 0x01
PFI_AFLAG_BROADCAST = 0x02
PFI_AFLAG_PEER = 0x04
PFI_AFLAG_NOALIAS = 0x08
AF_INET = 2
AF_INET6 = 10
# DIOCIGETIFACES selectors of the OpenBSD 3.x generation
PFI_FLAG_GROUP = 0x0001
PFI_FLAG_INSTANCE = 0x0002
PFI_FLAG_ALLMASK = PFI_FLAG_GROUP | PFI_FLAG_INSTANCE


class Kif:
    """One pf interface record: a real interface (ifindex > 0) or a group (members)."""

    __slots__ = ("name", "ifindex", "members", "groups", "flags", "tzero", "packets", "bytes", "rulerefs")

    def __init__(self, name, ifindex=0):
        self.name = name
        self.ifindex = ifindex          # 0 for a group
        self.members = []               # names of member interfaces (groups only)
        self.groups = []                # names of the groups an interface belongs to
        self.flags = 0
        self.tzero = int(time.time())   # pfi_kif_attach: counters start now
        # [af inet/inet6][dir in/out][pass/block], flattened in C order
        self.packets = [0] * 8
        self.bytes = [0] * 8
        self.rulerefs = 0

    @property
    def is_group(self):
        return self.ifindex == 0

    def clear_counters(self):
        self.packets = [0] * 8
        self.bytes = [0] * 8
        self.tzero = int(time.time())


def driver_group(ifname):
    """The driver group of an interface name, or None when the name has no trailing digits
    (the group would then shadow the interface itself, e.g. Linux's "lo")."""
    stem = ifname.rstrip("0123456789")
    if not stem or stem == ifname:
        return None
    return stem


class Interfaces:
    """The kif table, kept in step with the host's links."""

    def __init__(self, ipr_factory=IPRoute):
        self._lock = threading.Lock()
        self._kifs = {}                 # name -> Kif, interfaces and groups
        self._adopted = {}              # name -> Kif the datapath owns (see adopt)
        self._ipr = ipr_factory()
        self._events = ipr_factory()
        self._events.bind(groups=RTMGRP_LINK)
        self._events_fd = self._events.fileno()
        self._refresh()

    def close(self):
        self._ipr.close()
        self._events.close()

    # -- keeping in step with the host -------------------------------------------------------
    def _pending_events(self):
        """Drain link notifications; True if any arrived since the last look."""
        got = False
        while select.select([self._events_fd], [], [], 0)[0]:
            try:
                if not os.read(self._events_fd, 1 << 16):
                    break
            except BlockingIOError:
                break
            except OSError as exc:
                # ENOBUFS: the kernel dropped notifications; re-reading the table covers them
                if exc.errno != errno.ENOBUFS:
                    raise
            got = True
        return got

    def _refresh(self):
        """Re-read the host's links. A kif is kept per name, as FreeBSD keys its kifs: flags,
        counters and tzero of an interface or group that is still there carry over (also when
        its ifindex changed in between); kifs whose interface or last member went are dropped."""
        links = {}
        for msg in self._ipr.get_links():
            name = msg.get_attr("IFLA_IFNAME")
            if name:
                links[name] = msg["index"]
        with self._lock:
            for name, kif in self._adopted.items():
                links.setdefault(name, kif.ifindex or 1)
            old = self._kifs
            kifs = {}

            def kif_named(name, ifindex):
                kif = self._adopted.get(name) or old.get(name) or Kif(name, ifindex)
                kif.ifindex = ifindex
                kifs[name] = kif
                return kif

            members = {IFG_ALL: []}         # "all" always exists (V_pfi_all)
            for name, index in links.items():
                kif = kif_named(name, index)
                kif.members = []
                kif.groups = [IFG_ALL]
                drv = driver_group(name)
                if drv is not None and drv not in links:
                    kif.groups.append(drv)
                for group in kif.groups:
                    members.setdefault(group, []).append(name)
            for group, names in members.items():
                g = kif_named(group, 0)
                g.groups = []
                g.members = sorted(names)
            gone = sorted(set(old) - set(kifs))
            new = sorted(set(kifs) - set(old))
            self._kifs = kifs
        if old and (gone or new):
            log.info("interfaces changed: +%s -%s", ",".join(new) or "none", ",".join(gone) or "none")

    def sync(self):
        if self._pending_events():
            self._refresh()

    def dynaddr_count(self, name, af, iflags):
        """How many addresses a dynamic address `(name)` stands for (pfi_dynaddr's
        pfid_acnt4 + pfid_acnt6): the addresses of the interface or of a group's members, of
        family `af` (0: both), IPv6 link-local ones left out as FreeBSD does; `:broadcast` and
        `:peer` count only interfaces that have one, `:0` (PFI_AFLAG_NOALIAS) only the first
        address per interface and family."""
        count = 0
        for kif in self.members(name):
            if kif.ifindex <= 0:
                continue
            seen = set()
            try:
                msgs = self._ipr.get_addr(index=kif.ifindex)
            except Exception:                       # the link went away meanwhile
                continue
            for msg in msgs:
                family = AF_INET6 if msg["family"] == socket.AF_INET6 else AF_INET if msg["family"] == socket.AF_INET else 0
                if not family or (af and family != af):
                    continue
                addr = msg.get_attr("IFA_ADDRESS") or ""
                if family == AF_INET6 and addr.lower().startswith("fe80:"):
                    continue
                if iflags & PFI_AFLAG_BROADCAST and (family != AF_INET or not msg.get_attr("IFA_BROADCAST")):
                    continue
                if iflags & PFI_AFLAG_PEER and (msg.get_attr("IFA_LOCAL") in (None, addr)):
                    continue
                if iflags & PFI_AFLAG_NOALIAS and family in seen:
                    continue
                seen.add(family)
                count += 1
        return count

    def adopt(self, kif):
        """Keep `kif` (e.g. one whose counters are the datapath's) in the table under its name,
        whether or not this namespace's rtnetlink lists the link: a TAP whose kernel side was
        moved into another namespace is still pf's interface. Flags and tzero of a kif already
        there carry over."""
        with self._lock:
            cur = self._kifs.get(kif.name)
            if cur is not None and not cur.is_group:
                kif.flags, kif.tzero = cur.flags, cur.tzero
            self._adopted[kif.name] = kif
        self._refresh()

    # -- lookups -------------------------------------------------------------------------------
    def get(self, name):
        self.sync()
        return self._kifs.get(name)

    def sorted_kifs(self):
        """All kifs in name order (FreeBSD walks its RB tree of kifs, keyed by name)."""
        self.sync()
        with self._lock:
            return [self._kifs[n] for n in sorted(self._kifs, key=lambda s: s.encode())]

    def match(self, filt):
        """FreeBSD 12 pfi_skip_if: "" = all; an exact name; or a group name (which may not end
        in a digit) selecting the interfaces in that group."""
        kifs = self.sorted_kifs()
        if not filt:
            return kifs
        out = []
        group_ok = 0 < len(filt) < IFNAMSIZ and not filt[-1].isdigit()
        for kif in kifs:
            if kif.name == filt or (group_ok and not kif.is_group and filt in kif.groups):
                out.append(kif)
        return out

    def match_obsd(self, filt, flags):
        """OpenBSD 3.x pfi_skip_if: flags select groups and/or instances; the filter is an exact
        name, or (not ending in a digit) a prefix followed by digits."""
        out = []
        for kif in self.sorted_kifs():
            if kif.is_group and not flags & PFI_FLAG_GROUP:
                continue
            if not kif.is_group and not flags & PFI_FLAG_INSTANCE:
                continue
            if filt and kif.name != filt:
                n = len(filt)
                if not (0 < n < IFNAMSIZ) or filt[-1].isdigit():
                    continue
                if not kif.name.startswith(filt) or not kif.name[n:n + 1].isdigit():
                    continue
            out.append(kif)
        return out

    def members(self, name):
        """The interface kifs a name stands for: itself, or a group's members."""
        kif = self.get(name)
        if kif is None:
            return []
        if not kif.is_group:
            return [kif]
        return [self._kifs[m] for m in kif.members if m in self._kifs]

    # -- DIOCSETIFFLAG / DIOCCLRIFFLAG --------------------------------------------------------------
    def set_flags(self, filt, flags):
        """pfi_set_flags: OR the user-settable flags into every kif `filt` selects (as
        match() does); a name without a kif is a no-op, FreeBSD 12 creates none here.
        Returns the number of kifs it applied to."""
        kifs = self.match(filt)
        for kif in kifs:
            kif.flags |= flags & PFI_IFLAG_SKIP
        return len(kifs)

    def clear_flags(self, filt, flags):
        """pfi_clear_flags: the reverse of set_flags()."""
        kifs = self.match(filt)
        for kif in kifs:
            kif.flags &= ~(flags & PFI_IFLAG_SKIP)
        return len(kifs)

    # -- DIOCGIFSPEED -------------------------------------------------------------------------------
    def baudrate(self, name):
        """if_baudrate of interface `name` in bit/s, or None when no interface has that name
        (ifunit: groups are not interfaces). The link speed comes from sysfs, 0 when the link
        reports none (down, virtual, unknown)."""
        kif = self.get(name)
        if kif is None or kif.is_group:
            return None
        return link_speed(name, kif.ifindex)


def link_speed(name, ifindex):
    """Speed of a link in bit/s from /sys/class/net/<name>/speed (Mb/s), or 0. sysfs shows the
    network namespace it was mounted in, so the entry counts only if its ifindex is ours."""
    base = os.path.join(SYSFS_NET, name)
    try:
        with open(os.path.join(base, "ifindex")) as f:
            if int(f.read()) != ifindex:
                return 0
        with open(os.path.join(base, "speed")) as f:
            mbits = int(f.read())
    except (OSError, ValueError):
        return 0                # EINVAL while down, or no speed for this kind of link
    return mbits * 1000000 if mbits > 0 else 0
