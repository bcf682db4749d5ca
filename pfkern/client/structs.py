"""ctypes mirror of the structs of `include/net/pfvar.h` (FreeBSD 12.1 amd64 layouts).

Class names are the C struct tags and field names the C member names, so C code translates line by
line (`struct pf_status st;` -> `st = pf_status()`).  Members that C reaches through a `#define`
alias of a named union (`pf_addr.v4` for `pf_addr.pfa.v4`, `pfioc_states.ps_buf`,
`pfr_addr.pfra_ip4addr`, ...) are reachable in Python under the same alias.

Kernel pointers and list links are `c_void_p` (they are meaningless to userland; pfctl only tests
`pfi_kif.pfik_ifp` / `pfik_group` for non-NULL).  User buffer pointers (`pfioc_table.pfrio_buffer`,
`pfioc_states.ps_buf`, ...) are `c_void_p`: assign `ctypes.addressof(buf)` and keep `buf` alive.

A test (tests/test_client_layout.py) compares every size and offset here with what gcc makes of
the header, so layouts are written twice only under a check.
"""
import ctypes
import ipaddress
from ctypes import (Structure, Union, c_char, c_int, c_long, c_uint, c_uint8, c_uint16,
                    c_uint32, c_uint64, c_void_p)

from .constants import (IFNAMSIZ, PF_MAXPATHLEN, PF_TABLE_NAME_SIZE, PF_QNAME_SIZE,
                        PF_RULE_LABEL_SIZE, PF_TAG_NAME_SIZE, PF_ANCHOR_NAME_SIZE, PF_OSFP_LEN,
                        PF_MD5_DIGEST_LENGTH, PF_SKIP_COUNT, PFTM_MAX, PFRES_MAX, LCNT_MAX,
                        FCNT_MAX, SCNT_MAX, AF_INET, AF_INET6, AF_INET6_BSD)

sa_family_t = c_uint8           # BSD: 1 byte (Linux's is 2 — not the pf ABI)
uid_t = c_uint32
pid_t = c_int
pf_osfp_t = c_uint32
pf_tcpopts_t = c_uint64
counter_u64_t = c_void_p        # uint64_t * in the kernel
caddr_t = c_void_p
kptr = c_void_p                 # any kernel pointer


class _Layout:
    """Mixin: byte access and readable repr for every pf struct."""

    def to_bytes(self):
        return ctypes.string_at(ctypes.addressof(self), ctypes.sizeof(self))

    @classmethod
    def from_bytes(cls, data):
        if len(data) < ctypes.sizeof(cls):
            raise ValueError(f"{cls.__name__}: need {ctypes.sizeof(cls)} bytes, got {len(data)}")
        return cls.from_buffer_copy(bytes(data[:ctypes.sizeof(cls)]))

    def copy(self):
        return type(self).from_buffer_copy(self)

    def __repr__(self):
        parts = []
        for f in self._fields_:
            v = getattr(self, f[0])
            if isinstance(v, bytes):
                v = v.decode("latin-1")
            elif isinstance(v, ctypes.Array):
                v = list(v)
            parts.append(f"{f[0]}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class _Struct(_Layout, Structure):
    pass


class _Union(_Layout, Union):
    pass


# Structures whose inner layout is not part of the ABI (list links, libc unions with private
# member names) set `_leaf_ = True`: the layout test checks their offset and size only.


class _tailq_entry(_Struct):
    """TAILQ_ENTRY(): two kernel pointers."""
    _leaf_ = True
    _fields_ = [("tqe_next", kptr), ("tqe_prev", kptr)]


class _tailq_head(_Struct):
    """TAILQ_HEAD(): two kernel pointers."""
    _leaf_ = True
    _fields_ = [("tqh_first", kptr), ("tqh_last", kptr)]


class _list_entry(_Struct):
    """LIST_ENTRY(): two kernel pointers."""
    _leaf_ = True
    _fields_ = [("le_next", kptr), ("le_prev", kptr)]


class _slist_entry(_Struct):
    """SLIST_ENTRY(): one kernel pointer."""
    _leaf_ = True
    _fields_ = [("sle_next", kptr)]


class _rb_entry(_Struct):
    """RB_ENTRY() of FreeBSD 12: three pointers and a colour (32 B)."""
    _leaf_ = True
    _fields_ = [("rbe_left", kptr), ("rbe_right", kptr), ("rbe_parent", kptr), ("rbe_color", c_int)]


class in_addr(_Struct):
    _fields_ = [("s_addr", c_uint32)]       # network order


class _in6_u(_Union):
    _fields_ = [("s6_addr", c_uint8 * 16), ("s6_addr16", c_uint16 * 8), ("s6_addr32", c_uint32 * 4)]


class in6_addr(_Struct):
    """`a.s6_addr`, `a.s6_addr16`, `a.s6_addr32` as with libc's macros."""
    _leaf_ = True                           # libc's member names are private (__in6_u...)
    _fields_ = [("_in6_u", _in6_u)]
    _anonymous_ = ("_in6_u",)


def _af_is_inet6(af):
    return af in (AF_INET6, AF_INET6_BSD)


def _ip_of(raw16, af):
    if af == AF_INET:
        return ipaddress.IPv4Address(bytes(raw16[:4]))
    if _af_is_inet6(af):
        return ipaddress.IPv6Address(bytes(raw16))
    raise ValueError(f"unknown address family {af}")


def _ip_bytes16(ip):
    ip = ipaddress.ip_address(ip) if not isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else ip
    return ip.packed.ljust(16, b"\0")


# --- 2.1 pf_addr ---------------------------------------------------------------------------

class _pfa(_Union):
    _fields_ = [("v4", in_addr), ("v6", in6_addr), ("addr8", c_uint8 * 16),
                ("addr16", c_uint16 * 8), ("addr32", c_uint32 * 4)]


class pf_addr(_Struct):
    """128-bit address, network order; IPv4 in the first 4 bytes.

    `a.v4`, `a.v6`, `a.addr8`, `a.addr16`, `a.addr32` as in C; `a.ip(af)` / `a.set(ip)` /
    `pf_addr.of(ip)` convert from and to `ipaddress` objects (or strings).
    """
    _fields_ = [("pfa", _pfa)]
    _anonymous_ = ("pfa",)

    @classmethod
    def of(cls, ip):
        a = cls()
        a.set(ip)
        return a

    def set(self, ip):
        ctypes.memmove(ctypes.addressof(self), _ip_bytes16(ip), 16)
        return self

    def ip(self, af):
        return _ip_of(bytes(self.addr8), af)

    def __repr__(self):
        return f"pf_addr({bytes(self.addr8).hex()})"


# --- 2.2 pf_addr_wrap ---------------------------------------------------------------------

class _pf_addr_wrap_a(_Struct):
    _fields_ = [("addr", pf_addr), ("mask", pf_addr)]


class _pf_addr_wrap_v(_Union):
    _fields_ = [("a", _pf_addr_wrap_a), ("ifname", c_char * IFNAMSIZ),
                ("tblname", c_char * PF_TABLE_NAME_SIZE)]


class _pf_addr_wrap_p(_Union):
    _fields_ = [("dyn", kptr), ("tbl", kptr), ("dyncnt", c_int), ("tblcnt", c_int)]


class pf_addr_wrap(_Struct):
    _fields_ = [("v", _pf_addr_wrap_v), ("p", _pf_addr_wrap_p), ("type", c_uint8),
                ("iflags", c_uint8)]


# --- 2.3 pf_rule_addr, uid/gid ------------------------------------------------------------

class pf_rule_addr(_Struct):
    _fields_ = [("addr", pf_addr_wrap), ("port", c_uint16 * 2), ("neg", c_uint8),
                ("port_op", c_uint8)]


class pf_rule_uid(_Struct):
    _fields_ = [("uid", uid_t * 2), ("op", c_uint8)]


class pf_rule_gid(_Struct):
    _fields_ = [("gid", uid_t * 2), ("op", c_uint8)]


# --- 2.4 pools ----------------------------------------------------------------------------

class pf_pooladdr(_Struct):
    _fields_ = [("addr", pf_addr_wrap), ("entries", _tailq_entry), ("ifname", c_char * IFNAMSIZ),
                ("kif", kptr)]


class _pfk(_Union):
    _fields_ = [("key8", c_uint8 * 16), ("key16", c_uint16 * 8), ("key32", c_uint32 * 4)]


class pf_poolhashkey(_Struct):
    _fields_ = [("pfk", _pfk)]
    _anonymous_ = ("pfk",)


class pf_pool(_Struct):
    _fields_ = [("list", _tailq_head), ("cur", kptr), ("key", pf_poolhashkey),
                ("counter", pf_addr), ("tblidx", c_int), ("proxy_port", c_uint16 * 2),
                ("opts", c_uint8)]


# --- 2.5 pfioc_pooladdr -------------------------------------------------------------------

class pfioc_pooladdr(_Struct):
    _fields_ = [("action", c_uint32), ("ticket", c_uint32), ("nr", c_uint32), ("r_num", c_uint32),
                ("r_action", c_uint8), ("r_last", c_uint8), ("af", c_uint8),
                ("anchor", c_char * PF_MAXPATHLEN), ("addr", pf_pooladdr)]


# --- 2.6 pf_rule --------------------------------------------------------------------------

class pf_rule_ptr(_Union):
    _fields_ = [("ptr", kptr), ("nr", c_uint32)]


class _max_src_conn_rate(_Struct):
    _fields_ = [("limit", c_uint32), ("seconds", c_uint32)]


class _divert(_Struct):
    _fields_ = [("addr", pf_addr), ("port", c_uint16)]


class pf_rule(_Struct):
    _fields_ = [
        ("src", pf_rule_addr),
        ("dst", pf_rule_addr),
        ("skip", pf_rule_ptr * PF_SKIP_COUNT),
        ("label", c_char * PF_RULE_LABEL_SIZE),
        ("ifname", c_char * IFNAMSIZ),
        ("qname", c_char * PF_QNAME_SIZE),
        ("pqname", c_char * PF_QNAME_SIZE),
        ("tagname", c_char * PF_TAG_NAME_SIZE),
        ("match_tagname", c_char * PF_TAG_NAME_SIZE),
        ("overload_tblname", c_char * PF_TABLE_NAME_SIZE),
        ("entries", _tailq_entry),
        ("rpool", pf_pool),
        ("evaluations", c_uint64),
        ("packets", c_uint64 * 2),
        ("bytes", c_uint64 * 2),
        ("kif", kptr),
        ("anchor", kptr),
        ("overload_tbl", kptr),
        ("os_fingerprint", pf_osfp_t),
        ("rtableid", c_int),
        ("timeout", c_uint32 * PFTM_MAX),
        ("max_states", c_uint32),
        ("max_src_nodes", c_uint32),
        ("max_src_states", c_uint32),
        ("max_src_conn", c_uint32),
        ("max_src_conn_rate", _max_src_conn_rate),
        ("qid", c_uint32),
        ("pqid", c_uint32),
        ("rt_listid", c_uint32),
        ("nr", c_uint32),
        ("prob", c_uint32),
        ("cuid", uid_t),
        ("cpid", pid_t),
        ("states_cur", counter_u64_t),
        ("states_tot", counter_u64_t),
        ("src_nodes", counter_u64_t),
        ("return_icmp", c_uint16),
        ("return_icmp6", c_uint16),
        ("max_mss", c_uint16),
        ("tag", c_uint16),
        ("match_tag", c_uint16),
        ("scrub_flags", c_uint16),
        ("uid", pf_rule_uid),
        ("gid", pf_rule_gid),
        ("rule_flag", c_uint32),
        ("action", c_uint8),
        ("direction", c_uint8),
        ("log", c_uint8),
        ("logif", c_uint8),
        ("quick", c_uint8),
        ("ifnot", c_uint8),
        ("match_tag_not", c_uint8),
        ("natpass", c_uint8),
        ("keep_state", c_uint8),
        ("af", sa_family_t),
        ("proto", c_uint8),
        ("type", c_uint8),
        ("code", c_uint8),
        ("flags", c_uint8),
        ("flagset", c_uint8),
        ("min_ttl", c_uint8),
        ("allow_opts", c_uint8),
        ("rt", c_uint8),
        ("return_ttl", c_uint8),
        ("tos", c_uint8),
        ("set_tos", c_uint8),
        ("anchor_relative", c_uint8),
        ("anchor_wildcard", c_uint8),
        ("flush", c_uint8),
        ("prio", c_uint8),
        ("set_prio", c_uint8 * 2),
        ("divert", _divert),
        ("u_states_cur", c_uint64),
        ("u_states_tot", c_uint64),
        ("u_src_nodes", c_uint64),
    ]


# --- 2.7 pfioc_rule -----------------------------------------------------------------------

class pfioc_rule(_Struct):
    _fields_ = [("action", c_uint32), ("ticket", c_uint32), ("pool_ticket", c_uint32),
                ("nr", c_uint32), ("anchor", c_char * PF_MAXPATHLEN),
                ("anchor_call", c_char * PF_MAXPATHLEN), ("rule", pf_rule)]


# --- 2.8 pfioc_natlook --------------------------------------------------------------------

class pfioc_natlook(_Struct):
    _fields_ = [("saddr", pf_addr), ("daddr", pf_addr), ("rsaddr", pf_addr), ("rdaddr", pf_addr),
                ("sport", c_uint16), ("dport", c_uint16), ("rsport", c_uint16),
                ("rdport", c_uint16), ("af", sa_family_t), ("proto", c_uint8),
                ("direction", c_uint8)]


# --- 2.9 state export ---------------------------------------------------------------------

class pfsync_state_scrub(_Struct):
    _pack_ = 1
    _fields_ = [("pfss_flags", c_uint16), ("pfss_ttl", c_uint8), ("scrub_flag", c_uint8),
                ("pfss_ts_mod", c_uint32)]


class pfsync_state_peer(_Struct):
    _pack_ = 1
    _fields_ = [("scrub", pfsync_state_scrub), ("seqlo", c_uint32), ("seqhi", c_uint32),
                ("seqdiff", c_uint32), ("max_win", c_uint16), ("mss", c_uint16),
                ("state", c_uint8), ("wscale", c_uint8), ("pad", c_uint8 * 6)]


class pfsync_state_key(_Struct):
    _fields_ = [("addr", pf_addr * 2), ("port", c_uint16 * 2)]


class pfsync_state(_Struct):
    """Exported state (242 B, packed).  Most numbers are network order (pf-abi.md H8)."""
    _pack_ = 1
    _fields_ = [
        ("id", c_uint64),
        ("ifname", c_char * IFNAMSIZ),
        ("key", pfsync_state_key * 2),
        ("src", pfsync_state_peer),
        ("dst", pfsync_state_peer),
        ("rt_addr", pf_addr),
        ("rule", c_uint32),
        ("anchor", c_uint32),
        ("nat_rule", c_uint32),
        ("creation", c_uint32),
        ("expire", c_uint32),
        ("packets", c_uint32 * 2 * 2),
        ("bytes", c_uint32 * 2 * 2),
        ("creatorid", c_uint32),
        ("af", sa_family_t),
        ("proto", c_uint8),
        ("direction", c_uint8),
        ("__spare", c_uint8 * 2),
        ("log", c_uint8),
        ("state_flags", c_uint8),
        ("timeout", c_uint8),
        ("sync_flags", c_uint8),
        ("updates", c_uint8),
    ]


class pfioc_state(_Struct):
    _fields_ = [("state", pfsync_state)]


class pf_state_cmp(_Struct):
    _fields_ = [("id", c_uint64), ("creatorid", c_uint32), ("direction", c_uint8),
                ("pad", c_uint8 * 3)]


# --- 2.10 kill ----------------------------------------------------------------------------

class pfioc_state_kill(_Struct):
    _fields_ = [("psk_pfcmp", pf_state_cmp), ("psk_af", sa_family_t), ("psk_proto", c_int),
                ("psk_src", pf_rule_addr), ("psk_dst", pf_rule_addr),
                ("psk_ifname", c_char * IFNAMSIZ), ("psk_label", c_char * PF_RULE_LABEL_SIZE),
                ("psk_killed", c_uint)]


class pfioc_src_node_kill(_Struct):
    _fields_ = [("psnk_af", sa_family_t), ("psnk_src", pf_rule_addr), ("psnk_dst", pf_rule_addr),
                ("psnk_killed", c_uint)]


# --- 2.11 state / source-node buffers -----------------------------------------------------

class _ps_u(_Union):
    _fields_ = [("psu_buf", caddr_t), ("psu_states", c_void_p)]


class pfioc_states(_Struct):
    """`ps_buf` / `ps_states` alias `ps_u.psu_buf` / `ps_u.psu_states` as in C."""
    _fields_ = [("ps_len", c_int), ("ps_u", _ps_u)]
    ps_buf = property(lambda s: s.ps_u.psu_buf, lambda s, v: setattr(s.ps_u, "psu_buf", v))
    ps_states = property(lambda s: s.ps_u.psu_states, lambda s, v: setattr(s.ps_u, "psu_states", v))


class _psn_u(_Union):
    _fields_ = [("psu_buf", caddr_t), ("psu_src_nodes", c_void_p)]


class pfioc_src_nodes(_Struct):
    _fields_ = [("psn_len", c_int), ("psn_u", _psn_u)]
    psn_buf = property(lambda s: s.psn_u.psu_buf, lambda s, v: setattr(s.psn_u, "psu_buf", v))
    psn_src_nodes = property(lambda s: s.psn_u.psu_src_nodes,
                             lambda s, v: setattr(s.psn_u, "psu_src_nodes", v))


class pf_threshold(_Struct):
    _fields_ = [("limit", c_uint32), ("seconds", c_uint32), ("count", c_uint32), ("last", c_uint32)]


class pf_src_node(_Struct):
    _fields_ = [("entry", _list_entry), ("addr", pf_addr), ("raddr", pf_addr), ("rule", pf_rule_ptr),
                ("kif", kptr), ("bytes", c_uint64 * 2), ("packets", c_uint64 * 2),
                ("states", c_uint32), ("conn", c_uint32), ("conn_rate", pf_threshold),
                ("creation", c_uint32), ("expire", c_uint32), ("af", sa_family_t),
                ("ruletype", c_uint8)]


# --- 2.12 interfaces ----------------------------------------------------------------------

class pfioc_iface(_Struct):
    _fields_ = [("pfiio_name", c_char * IFNAMSIZ), ("pfiio_buffer", c_void_p),
                ("pfiio_esize", c_int), ("pfiio_size", c_int), ("pfiio_nzero", c_int),
                ("pfiio_flags", c_int)]


class _pfik_glue(_Union):
    _fields_ = [("_pfik_tree", _rb_entry), ("_pfik_list", _list_entry)]


class pfi_kif(_Struct):
    """FreeBSD 12 interface entry of DIOCIGETIFACES (pfiio_esize 224).

    Counters are [af: 0 inet, 1 inet6][dir: 0 in, 1 out][0 pass, 1 block]."""
    _fields_ = [("pfik_name", c_char * IFNAMSIZ), ("_pfik_glue", _pfik_glue),
                ("pfik_packets", c_uint64 * 2 * 2 * 2), ("pfik_bytes", c_uint64 * 2 * 2 * 2),
                ("pfik_tzero", c_uint32), ("pfik_flags", c_uint), ("pfik_ifp", kptr),
                ("pfik_group", kptr), ("pfik_rulerefs", c_uint), ("pfik_dynaddrs", _tailq_head)]

    @property
    def name(self):
        return self.pfik_name.decode()


class pfi_if(_Struct):
    """OpenBSD 3.x (FreeBSD 6) interface entry of DIOCIGETIFACES (pfiio_esize 184)."""
    _fields_ = [("pfif_name", c_char * IFNAMSIZ), ("pfif_packets", c_uint64 * 2 * 2 * 2),
                ("pfif_bytes", c_uint64 * 2 * 2 * 2), ("pfif_addcnt", c_uint64),
                ("pfif_delcnt", c_uint64), ("pfif_tzero", c_long), ("pfif_states", c_int),
                ("pfif_rules", c_int), ("pfif_flags", c_int)]

    @property
    def name(self):
        return self.pfif_name.decode()


# --- 2.13 tables --------------------------------------------------------------------------

class pfr_table(_Struct):
    _fields_ = [("pfrt_anchor", c_char * PF_MAXPATHLEN), ("pfrt_name", c_char * PF_TABLE_NAME_SIZE),
                ("pfrt_flags", c_uint32), ("pfrt_fback", c_uint8)]


class _pfra_u(_Union):
    _fields_ = [("_pfra_ip4addr", in_addr), ("_pfra_ip6addr", in6_addr)]


class pfr_addr(_Struct):
    """Table entry; `pfra_ip4addr` / `pfra_ip6addr` alias the union members as in C;
    `pfr_addr.of("10.0.0.0/8")` and `.network()` convert from/to ipaddress networks."""
    _fields_ = [("pfra_u", _pfra_u), ("pfra_af", c_uint8), ("pfra_net", c_uint8),
                ("pfra_not", c_uint8), ("pfra_fback", c_uint8)]
    pfra_ip4addr = property(lambda s: s.pfra_u._pfra_ip4addr,
                            lambda s, v: setattr(s.pfra_u, "_pfra_ip4addr", v))
    pfra_ip6addr = property(lambda s: s.pfra_u._pfra_ip6addr,
                            lambda s, v: setattr(s.pfra_u, "_pfra_ip6addr", v))

    @classmethod
    def of(cls, net, neg=False):
        net = ipaddress.ip_network(net, strict=True)
        a = cls()
        ctypes.memmove(ctypes.addressof(a), net.network_address.packed, len(net.network_address.packed))
        a.pfra_af = AF_INET if net.version == 4 else AF_INET6
        a.pfra_net = net.prefixlen
        a.pfra_not = 1 if neg else 0
        return a

    def network(self):
        raw = ctypes.string_at(ctypes.addressof(self), 16)
        return ipaddress.ip_network((_ip_of(raw, self.pfra_af), self.pfra_net))


class pfr_astats(_Struct):
    _fields_ = [("pfras_a", pfr_addr), ("pfras_packets", c_uint64 * 2 * 2),
                ("pfras_bytes", c_uint64 * 2 * 2), ("pfras_tzero", c_long)]


class pfr_tstats(_Struct):
    _fields_ = [("pfrts_t", pfr_table), ("pfrts_packets", c_uint64 * 3 * 2),
                ("pfrts_bytes", c_uint64 * 3 * 2), ("pfrts_match", c_uint64),
                ("pfrts_nomatch", c_uint64), ("pfrts_tzero", c_long), ("pfrts_cnt", c_int),
                ("pfrts_refcnt", c_int * 2)]


class pfioc_table(_Struct):
    """Aliases as in C: pfrio_naddr/pfrio_setflag = pfrio_size2; pfrio_exists/pfrio_nzero/
    pfrio_nmatch/pfrio_clrflag = pfrio_nadd."""
    _fields_ = [("pfrio_table", pfr_table), ("pfrio_buffer", c_void_p), ("pfrio_esize", c_int),
                ("pfrio_size", c_int), ("pfrio_size2", c_int), ("pfrio_nadd", c_int),
                ("pfrio_ndel", c_int), ("pfrio_nchange", c_int), ("pfrio_flags", c_int),
                ("pfrio_ticket", c_uint32)]


def _alias(target):
    return property(lambda s: getattr(s, target), lambda s, v: setattr(s, target, v))


for _n in ("pfrio_naddr", "pfrio_setflag"):
    setattr(pfioc_table, _n, _alias("pfrio_size2"))
for _n in ("pfrio_exists", "pfrio_nzero", "pfrio_nmatch", "pfrio_clrflag"):
    setattr(pfioc_table, _n, _alias("pfrio_nadd"))


# --- 2.14 transactions --------------------------------------------------------------------

class pfioc_trans_e(_Struct):
    _fields_ = [("rs_num", c_int), ("anchor", c_char * PF_MAXPATHLEN), ("ticket", c_uint32)]


class pfioc_trans(_Struct):
    _fields_ = [("size", c_int), ("esize", c_int), ("array", c_void_p)]


# --- 2.15 status, timeouts, limits, rulesets, osfp, ifspeed -------------------------------

class pf_status(_Struct):
    _fields_ = [("counters", c_uint64 * PFRES_MAX), ("lcounters", c_uint64 * LCNT_MAX),
                ("fcounters", c_uint64 * FCNT_MAX), ("scounters", c_uint64 * SCNT_MAX),
                ("pcounters", c_uint64 * 3 * 2 * 2), ("bcounters", c_uint64 * 2 * 2),
                ("running", c_uint32), ("states", c_uint32), ("src_nodes", c_uint32),
                ("since", c_uint32), ("debug", c_uint32), ("hostid", c_uint32),
                ("ifname", c_char * IFNAMSIZ), ("pf_chksum", c_uint8 * PF_MD5_DIGEST_LENGTH)]


class pfioc_tm(_Struct):
    _fields_ = [("timeout", c_int), ("seconds", c_int)]


class pfioc_limit(_Struct):
    _fields_ = [("index", c_int), ("limit", c_uint)]


class pfioc_if(_Struct):
    _fields_ = [("ifname", c_char * IFNAMSIZ)]


class pfioc_ruleset(_Struct):
    _fields_ = [("nr", c_uint32), ("path", c_char * PF_MAXPATHLEN),
                ("name", c_char * PF_ANCHOR_NAME_SIZE)]


class pf_osfp_entry(_Struct):
    _fields_ = [("fp_entry", _slist_entry), ("fp_os", pf_osfp_t), ("fp_enflags", c_int),
                ("fp_class_nm", c_char * PF_OSFP_LEN), ("fp_version_nm", c_char * PF_OSFP_LEN),
                ("fp_subtype_nm", c_char * PF_OSFP_LEN)]


class pf_osfp_ioctl(_Struct):
    _fields_ = [("fp_os", pf_osfp_entry), ("fp_tcpopts", pf_tcpopts_t), ("fp_wsize", c_uint16),
                ("fp_psize", c_uint16), ("fp_mss", c_uint16), ("fp_flags", c_uint16),
                ("fp_optcnt", c_uint8), ("fp_wscale", c_uint8), ("fp_ttl", c_uint8),
                ("fp_getnum", c_int)]


# Older generations' DIOCGETSTATUS argument (pf-abi.md §3.2, §3.3), served beside FreeBSD 12's.
PFRES_MAX_OBSD37 = 15


class pf_status_obsd37(_Struct):
    """OpenBSD 3.7 / FreeBSD 6: 15 reason counters, `stateid`, no pf_chksum (400 bytes)."""
    _fields_ = [("counters", c_uint64 * PFRES_MAX_OBSD37), ("lcounters", c_uint64 * LCNT_MAX),
                ("fcounters", c_uint64 * FCNT_MAX), ("scounters", c_uint64 * SCNT_MAX),
                ("pcounters", c_uint64 * 3 * 2 * 2), ("bcounters", c_uint64 * 2 * 2),
                ("stateid", c_uint64),
                ("running", c_uint32), ("states", c_uint32), ("src_nodes", c_uint32),
                ("since", c_uint32), ("debug", c_uint32), ("hostid", c_uint32),
                ("ifname", c_char * IFNAMSIZ)]


class pf_status_nbsd(_Struct):
    """NetBSD (OpenBSD 4.2 base): both `stateid` and pf_chksum (424 bytes)."""
    _fields_ = [("counters", c_uint64 * PFRES_MAX), ("lcounters", c_uint64 * LCNT_MAX),
                ("fcounters", c_uint64 * FCNT_MAX), ("scounters", c_uint64 * SCNT_MAX),
                ("pcounters", c_uint64 * 3 * 2 * 2), ("bcounters", c_uint64 * 2 * 2),
                ("stateid", c_uint64),
                ("running", c_uint32), ("states", c_uint32), ("src_nodes", c_uint32),
                ("since", c_uint32), ("debug", c_uint32), ("hostid", c_uint32),
                ("ifname", c_char * IFNAMSIZ), ("pf_chksum", c_uint8 * PF_MD5_DIGEST_LENGTH)]


# Older generations' state structs (pf-abi.md §3.2, §3.3), served beside FreeBSD 12's.

class pf_state_host(_Struct):
    _fields_ = [("addr", pf_addr), ("port", c_uint16), ("pad", c_uint16)]


class pf_state_peer_obsd37(_Struct):
    """OpenBSD 3.7's kernel peer: host order; `scrub` a kernel pointer."""
    _fields_ = [("seqlo", c_uint32), ("seqhi", c_uint32), ("seqdiff", c_uint32),
                ("max_win", c_uint16), ("state", c_uint8), ("wscale", c_uint8), ("mss", c_uint16),
                ("scrub", kptr)]


class pf_state_obsd37_s(_Struct):
    """The kernel's links and kif pointer of an OpenBSD 3.7 state."""
    _fields_ = [("entry_lan_ext", _rb_entry), ("entry_ext_gwy", _rb_entry), ("entry_id", _rb_entry),
                ("entry_updates", _tailq_entry), ("kif", kptr)]


class pf_state_obsd37_u(_Union):
    _fields_ = [("s", pf_state_obsd37_s), ("ifname", c_char * IFNAMSIZ)]


class pf_state_obsd37(_Struct):
    """OpenBSD 3.7's kernel pf_state (368 B): lan = inside host, gwy = its translation, ext = the
    peer; addresses/ports network order, every other number host order; `id` as stored
    (htobe64), `creatorid` the creator's hostid."""
    _fields_ = [
        ("id", c_uint64),
        ("u", pf_state_obsd37_u),
        ("lan", pf_state_host),
        ("gwy", pf_state_host),
        ("ext", pf_state_host),
        ("src", pf_state_peer_obsd37),
        ("dst", pf_state_peer_obsd37),
        ("rule", pf_rule_ptr),
        ("anchor", pf_rule_ptr),
        ("nat_rule", pf_rule_ptr),
        ("rt_addr", pf_addr),
        ("rt_kif", kptr),
        ("src_node", kptr),
        ("nat_src_node", kptr),
        ("creation", c_uint32),
        ("expire", c_uint32),
        ("pfsync_time", c_uint32),
        ("packets", c_uint32 * 2),
        ("bytes", c_uint32 * 2),
        ("creatorid", c_uint32),
        ("tag", c_uint16),
        ("af", sa_family_t),
        ("proto", c_uint8),
        ("direction", c_uint8),
        ("log", c_uint8),
        ("allow_opts", c_uint8),
        ("timeout", c_uint8),
        ("sync_flags", c_uint8),
        ("pad", c_uint8),
    ]


class pfioc_state_obsd37(_Struct):
    """OpenBSD 3.7 DIOCGETSTATE (state number `nr`) / DIOCADDSTATE (376 B)."""
    _fields_ = [("nr", c_uint32), ("state", pf_state_obsd37)]


class pfioc_state_kill_obsd37(_Struct):
    """DIOCKILLSTATES / DIOCCLRSTATES of OpenBSD 3.7 and NetBSD (136 B): the number of states
    killed comes back in `psk_af`."""
    _fields_ = [("psk_af", sa_family_t), ("psk_proto", c_int), ("psk_src", pf_rule_addr),
                ("psk_dst", pf_rule_addr), ("psk_ifname", c_char * IFNAMSIZ)]


class pfsync_state_host_nbsd(_Struct):
    _fields_ = [("addr", pf_addr), ("port", c_uint16), ("pad", c_uint16 * 3)]


class pfsync_state_nbsd(_Struct):
    """NetBSD's exported state (240 B, packed); as its ioctls use it, numbers are host order."""
    _pack_ = 1
    _fields_ = [
        ("id", c_uint32 * 2),
        ("ifname", c_char * IFNAMSIZ),
        ("lan", pfsync_state_host_nbsd),
        ("gwy", pfsync_state_host_nbsd),
        ("ext", pfsync_state_host_nbsd),
        ("src", pfsync_state_peer),
        ("dst", pfsync_state_peer),
        ("rt_addr", pf_addr),
        ("rule", c_uint32),
        ("anchor", c_uint32),
        ("nat_rule", c_uint32),
        ("creation", c_uint32),
        ("expire", c_uint32),
        ("packets", c_uint32 * 2 * 2),
        ("bytes", c_uint32 * 2 * 2),
        ("creatorid", c_uint32),
        ("af", sa_family_t),
        ("proto", c_uint8),
        ("direction", c_uint8),
        ("log", c_uint8),
        ("allow_opts", c_uint8),
        ("timeout", c_uint8),
        ("sync_flags", c_uint8),
        ("updates", c_uint8),
    ]


class pfioc_state_nbsd(_Struct):
    """NetBSD DIOCGETSTATE / DIOCADDSTATE (16 B): `state` points at the caller's
    pfsync_state_nbsd (assign `ctypes.addressof(st)`)."""
    _fields_ = [("nr", c_uint32), ("state", c_void_p)]


class pf_ifspeed_v0(_Struct):
    _fields_ = [("ifname", c_char * IFNAMSIZ), ("baudrate", c_uint32)]


class pf_ifspeed_v1(_Struct):
    _fields_ = [("ifname", c_char * IFNAMSIZ), ("baudrate32", c_uint32), ("baudrate", c_uint64)]


# --- 2.16 ALTQ ----------------------------------------------------------------------------
# The scheduler-option union is opaque bytes of the right size and alignment.

class _pq_u_v0(_Union):
    _leaf_ = True
    _fields_ = [("_raw", c_uint8 * 40), ("_align", c_uint32)]


class _pq_u_v1(_Union):
    _leaf_ = True
    _fields_ = [("_raw", c_uint8 * 80), ("_align", c_uint64)]


class pf_altq_v0(_Struct):
    _fields_ = [("ifname", c_char * IFNAMSIZ), ("unused1", c_void_p), ("entries", _tailq_entry),
                ("scheduler", c_uint8), ("tbrsize", c_uint16), ("ifbandwidth", c_uint32),
                ("qname", c_char * PF_QNAME_SIZE), ("parent", c_char * PF_QNAME_SIZE),
                ("parent_qid", c_uint32), ("bandwidth", c_uint32), ("priority", c_uint8),
                ("local_flags", c_uint8), ("qlimit", c_uint16), ("flags", c_uint16),
                ("pq_u", _pq_u_v0), ("qid", c_uint32)]


class pf_altq_v1(_Struct):
    _fields_ = [("ifname", c_char * IFNAMSIZ), ("entries", _tailq_entry), ("scheduler", c_uint8),
                ("tbrsize", c_uint32), ("ifbandwidth", c_uint64),
                ("qname", c_char * PF_QNAME_SIZE), ("parent", c_char * PF_QNAME_SIZE),
                ("parent_qid", c_uint32), ("bandwidth", c_uint64), ("priority", c_uint8),
                ("local_flags", c_uint8), ("qlimit", c_uint16), ("flags", c_uint16),
                ("pq_u", _pq_u_v1), ("qid", c_uint32)]


class pfioc_altq_v0(_Struct):
    _fields_ = [("action", c_uint32), ("ticket", c_uint32), ("nr", c_uint32),
                ("altq", pf_altq_v0)]


class pfioc_altq_v1(_Struct):
    _fields_ = [("action", c_uint32), ("ticket", c_uint32), ("nr", c_uint32),
                ("version", c_uint32), ("altq", pf_altq_v1)]


class pfioc_qstats_v0(_Struct):
    _fields_ = [("ticket", c_uint32), ("nr", c_uint32), ("buf", c_void_p), ("nbytes", c_int),
                ("scheduler", c_uint8)]


class pfioc_qstats_v1(_Struct):
    _fields_ = [("ticket", c_uint32), ("nr", c_uint32), ("buf", c_void_p), ("nbytes", c_int),
                ("scheduler", c_uint8), ("version", c_uint32)]


# Unversioned names as C gets them without PFIOC_USE_LATEST (the V0 forms).
pf_altq = pf_altq_v0
pfioc_altq = pfioc_altq_v0
pfioc_qstats = pfioc_qstats_v0
pf_ifspeed = pf_ifspeed_v0


def all_structs():
    """Every public struct/union of this module, in declaration order (used by the layout test)."""
    return [v for k, v in globals().items()
            if isinstance(v, type) and issubclass(v, (Structure, Union)) and not k.startswith("_")
            and v.__module__ == __name__ and k == v.__name__]


__all__ = [c.__name__ for c in all_structs()] + [
    "sa_family_t", "uid_t", "pid_t", "pf_osfp_t", "pf_tcpopts_t", "counter_u64_t", "caddr_t",
    "pf_altq", "pfioc_altq", "pfioc_qstats", "pf_ifspeed", "all_structs"]
