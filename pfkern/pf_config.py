"""pfd's datapath configuration: TAP interfaces and static routes from a config file and flags,
and the start of the router (pfkern.pf_tap) beside the /dev/pf server.

Config file (TOML, read with the standard library's tomllib):

    [datapath]
    neighbour_timeout = 300          # seconds an ARP/NDP entry stays reachable (optional)

    [[interface]]
    name = "tap0"
    mode = "tap"                     # "tap": create the TAP (default); "attach": it exists
    mac = "02:00:5e:00:00:01"        # the router's MAC on it (default: random, locally administered)
    mtu = 1500                       # default: the host link's MTU
    addresses = ["10.0.1.1/24", "fd00:1::1/64"]
    vnet = true                      # IFF_VNET_HDR with checksum offload and TSO (default false)

    [[route]]
    prefix = "10.9.0.0/16"
    gateway = "10.0.1.2"             # must be on a connected network

Flags (repeatable, added to what the file says):
    --interface NAME,ADDR/LEN[,ADDR6/LEN...][,mtu=N][,mac=MAC][,attach][,vnet]
    --route PREFIX,GATEWAY

`vnet`: the TAP is opened with IFF_VNET_HDR and the kernel may hand the router partial checksums
and TCP super-frames up to 64 KiB (TSO/GSO), which it forwards as they are to other vnet
interfaces and completes / segments in software for the rest: many times the TCP throughput of
MTU-sized frames (docs/benchmarks.md). Mixed configurations are fine.

The datapath's interfaces are pf interfaces: their kifs count what pf_test counts (pf_tap's C
counters), also while the kernel side of a TAP lives in another network namespace (where pf_if's
rtnetlink view of this namespace cannot see it).
"""
import argparse
import ipaddress
import logging
import tomllib

log = logging.getLogger("pfd.datapath")


def add_arguments(parser):
    g = parser.add_argument_group("datapath")
    g.add_argument("--config", metavar="FILE", help="datapath configuration (TOML: [[interface]], [[route]])")
    g.add_argument("--interface", action="append", default=[], metavar="NAME,ADDR/LEN[,...]",
                   help="a TAP interface of the router: NAME,ADDR/LEN[,ADDR6/LEN...][,mtu=N][,mac=MAC]"
                        "[,attach][,vnet] (repeatable; created unless 'attach'; 'vnet': IFF_VNET_HDR "
                        "with checksum offload and TSO/GSO)")
    g.add_argument("--route", action="append", default=[], metavar="PREFIX,GATEWAY",
                   help="a static route (repeatable)")


class ConfigError(ValueError):
    pass


def parse_interface_flag(text):
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"--interface {text!r}: no name")
    spec = {"name": parts[0], "mode": "tap", "addresses": []}
    for p in parts[1:]:
        if p == "attach":
            spec["mode"] = "attach"
        elif p == "tap":
            spec["mode"] = "tap"
        elif p.startswith("mtu="):
            spec["mtu"] = int(p[4:])
        elif p.startswith("mac="):
            spec["mac"] = p[4:]
        elif p == "vnet":
            spec["vnet"] = True
        else:
            spec["addresses"].append(p)
    return spec


def parse_route_flag(text):
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ConfigError(f"--route {text!r}: expected PREFIX,GATEWAY")
    return {"prefix": parts[0], "gateway": parts[1]}


def load(args):
    """(interfaces, routes, options) from --config and the flags, checked."""
    interfaces, routes, options = [], [], {}
    if getattr(args, "config", None):
        with open(args.config, "rb") as f:
            try:
                doc = tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{args.config}: {exc}") from None
        unknown = set(doc) - {"datapath", "interface", "route"}
        if unknown:
            raise ConfigError(f"{args.config}: unknown sections {sorted(unknown)}")
        options = dict(doc.get("datapath", {}))
        interfaces += [dict(i) for i in doc.get("interface", [])]
        routes += [dict(r) for r in doc.get("route", [])]
    interfaces += [parse_interface_flag(t) for t in getattr(args, "interface", [])]
    routes += [parse_route_flag(t) for t in getattr(args, "route", [])]
    for spec in interfaces:
        if "name" not in spec:
            raise ConfigError("interface without a name")
        if spec.setdefault("mode", "tap") not in ("tap", "attach"):
            raise ConfigError(f"interface {spec['name']}: mode must be 'tap' or 'attach'")
        if not isinstance(spec.get("vnet", False), bool):
            raise ConfigError(f"interface {spec['name']}: vnet must be true or false")
        for a in spec.setdefault("addresses", []):
            try:
                ipaddress.ip_interface(a)
            except ValueError as exc:
                raise ConfigError(f"interface {spec['name']}: {exc}") from None
    for r in routes:
        try:
            ipaddress.ip_network(r["prefix"], strict=False)
            ipaddress.ip_address(r["gateway"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"route {r}: {exc}") from None
    return interfaces, routes, options


# ---- pf's kifs for the datapath's interfaces --------------------------------------------------------
def _kif_class():
    from pfkern.pf_if import Kif

    class DatapathKif(Kif):
        """A kif whose counters are the datapath's (pf_tap CounterViews); clear_counters()
        assigning fresh lists restarts the views from zero instead."""
        __slots__ = ("_views",)

        @property
        def packets(self):
            return self._views[0]

        @packets.setter
        def packets(self, value):
            if hasattr(self, "_views"):
                self._views[0].clear()

        @property
        def bytes(self):
            return self._views[1]

        @bytes.setter
        def bytes(self, value):
            if hasattr(self, "_views"):
                self._views[1].clear()

    return DatapathKif


def attach_kifs(interfaces, datapath, names):
    """Make the kifs of `names` in pf_if's table count the datapath's packets, and keep them
    there while the interface is out of this namespace's sight (pf_if's `adopt`)."""
    DatapathKif = _kif_class()
    index = {name: ifindex for name, ifindex, _mac, _mtu in datapath.interfaces()}
    for name in names:
        k = DatapathKif(name, index.get(name) or 1)
        k._views = datapath.counters(name)
        interfaces.adopt(k)


# ---- start / stop -----------------------------------------------------------------------------------
class DatapathHandle:
    def __init__(self, datapath, names, pf_filter=None):
        self.datapath = datapath
        self.names = names
        self.filter = pf_filter         # pf_test.Filter: pf_test on the datapath, or None

    def stats(self, name):
        return self.datapath.stats(name)

    def stop(self):
        if self.datapath is not None:
            self.datapath.close()
            log.info("datapath stopped")
            self.datapath = None
        if self.filter is not None:
            self.filter.close()
            self.filter = None


def build(interfaces, routes, options):
    from pfkern.pf_tap import Datapath
    dp = Datapath()
    if "neighbour_timeout" in options:
        dp.set_timers(reachable_ms=int(float(options["neighbour_timeout"]) * 1000))
    try:
        for spec in interfaces:
            dp.add_interface(spec["name"], spec["addresses"], mac=spec.get("mac"), mtu=spec.get("mtu"),
                             create=spec["mode"] == "tap", vnet=spec.get("vnet", False))
        for r in routes:
            dp.add_route(r["prefix"], r["gateway"])
    except BaseException:
        dp.close()
        raise
    return dp


def start_datapath(args, core):
    """Create/attach the configured TAPs, start the router, wire the kifs; None when no interface
    is configured. Raises ConfigError / OSError on a bad configuration."""
    interfaces, routes, options = load(args)
    if not interfaces:
        if routes:
            raise ConfigError("routes given but no datapath interface")
        return None
    dp = build(interfaces, routes, options)
    names = [spec["name"] for spec in interfaces]
    if core is not None and getattr(core, "interfaces", None) is not None:
        attach_kifs(core.interfaces, dp, names)
    pf_filter = None
    if core is not None and getattr(core, "states", None) is not None:
        from pfkern.pf_test import Filter
        pf_filter = Filter(core, dp)
        pf_filter.attach()
    dp.start()
    for name, ifindex, mac, mtu in dp.interfaces():
        log.info("datapath interface %s (ifindex %d) mac %s mtu %d%s", name, ifindex, mac, mtu,
                 " vnet" if dp.vnet(name) else "")
    for prefix, gw, dev in dp.routes():
        log.info("route %s %s %s", prefix, f"via {gw}" if gw else "dev", dev)
    return DatapathHandle(dp, names, pf_filter)
