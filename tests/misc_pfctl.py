"""What FreeBSD 12.1's pfctl does with interface flags and fingerprints, issuing the same ioctls in
the same order (sbin/pfctl/pfctl.c: pfctl_get_skip_ifaces, pfctl_set_interface_flags,
pfctl_check_skip_ifaces, pfctl_adjust_skip_ifaces, pfctl_clear_interface_flags; pfctl_osfp.c:
pfctl_load_fingerprints). Test code: it drives the daemon the way pfctl would."""
import errno

from pfkern.client import (DIOCCLRIFFLAG, DIOCOSFPFLUSH, DIOCOSFPGET, DIOCSETIFFLAG,
                           PFI_IFLAG_SKIP, pf_osfp_ioctl, pfioc_iface)


def name_of(kif):
    return bytes(kif.pfik_name).split(b"\0", 1)[0].decode()


class Pfctl:
    def __init__(self, dev):
        self.dev = dev
        self.skip_b = []        # the kifs as they were before the load (pfctl's skip_b buffer)

    # -- set skip ------------------------------------------------------------------------------
    def get_skip_ifaces(self):
        """DIOCIGETIFACES "" with a growing buffer."""
        self.skip_b = self.dev.interfaces("")

    def grouplookup(self, name):
        """ifa_grouplookup: the member interfaces of group `name`, None when it is no group
        (SIOCGIFGMEMB on FreeBSD; here what pf itself says about the group)."""
        kifs = self.dev.interfaces(name)
        if not any(name_of(k) == name and k.pfik_group for k in kifs):
            return None
        members = [name_of(k) for k in kifs if k.pfik_ifp]
        return members or None

    def set_interface_flags(self, ifname, flags, how):
        for member in self.grouplookup(ifname) or ():
            self.set_interface_flags(member, flags, how)
        pi = pfioc_iface(pfiio_name=ifname.encode(), pfiio_flags=flags)
        if how == 0:
            self.dev.ioctl(DIOCCLRIFFLAG, pi)
        else:
            self.dev.ioctl(DIOCSETIFFLAG, pi)
            self.check_skip_ifaces(ifname)

    def check_skip_ifaces(self, ifname):
        for p in self.skip_b:
            if ifname == name_of(p) and p.pfik_flags & PFI_IFLAG_SKIP:
                p.pfik_flags &= ~PFI_IFLAG_SKIP
            if ifname == name_of(p) and p.pfik_group:
                members = self.grouplookup(name_of(p))
                if members is None:
                    continue
                for _ in members:
                    if not p.pfik_ifp:
                        continue
                    if name_of(p) != ifname:
                        continue
                    p.pfik_flags &= ~PFI_IFLAG_SKIP

    def adjust_skip_ifaces(self):
        for p in self.skip_b:
            if not p.pfik_group or not p.pfik_flags & PFI_IFLAG_SKIP:
                continue
            self.set_interface_flags(name_of(p), PFI_IFLAG_SKIP, 0)
            members = self.grouplookup(name_of(p))
            if members is None:
                continue
            for n in members:
                for pp in self.skip_b:
                    if not pp.pfik_ifp or name_of(pp) != n:
                        continue
                    if not pp.pfik_flags & PFI_IFLAG_SKIP:
                        self.set_interface_flags(name_of(pp), PFI_IFLAG_SKIP, 1)
                    if pp.pfik_flags & PFI_IFLAG_SKIP:
                        pp.pfik_flags &= ~PFI_IFLAG_SKIP
        for p in self.skip_b:
            if not p.pfik_ifp or not p.pfik_flags & PFI_IFLAG_SKIP:
                continue
            self.set_interface_flags(name_of(p), PFI_IFLAG_SKIP, 0)

    def load_skip(self, interfaces):
        """The skip part of `pfctl -f` for a pf.conf with `set skip on {interfaces}` ("none"
        or nothing: `set skip on none`)."""
        self.get_skip_ifaces()
        if not interfaces or list(interfaces) == ["none"]:
            self.set_interface_flags("", PFI_IFLAG_SKIP, 0)
        else:
            for name in interfaces:
                self.set_interface_flags(name, PFI_IFLAG_SKIP, 1)
        self.adjust_skip_ifaces()

    # -- pfctl -F all, after rules, nat, tables, states, source nodes, status -------------------
    def flush_all_tail(self):
        self.dev.ioctl(DIOCOSFPFLUSH)
        self.dev.ioctl(DIOCCLRIFFLAG, pfioc_iface(pfiio_flags=PFI_IFLAG_SKIP))

    # -- fingerprints --------------------------------------------------------------------------
    def load_fingerprints(self):
        """pfctl_load_fingerprints (-s osfp, -s rules): DIOCOSFPGET 0, 1, ... until EBUSY."""
        out = []
        i = 0
        while True:
            io = pf_osfp_ioctl(fp_getnum=i)
            try:
                self.dev.ioctl(DIOCOSFPGET, io)
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    return out
                raise
            out.append(io)
            i += 1
