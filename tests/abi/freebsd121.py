"""Expected pf ABI numbers: FreeBSD 12.1 amd64 (and older generations).

Written by hand from ../shared/reference/pf-abi.md (§2 layouts, §3.2/§3.3
older generations, §3.5 and appendix A command values) -- deliberately *not*
generated from include/net/pfvar.h, so that the probe in test_abi.py compares
the header against an independent source.

Layout blocks read like the reference's tables:

    struct <tag> <sizeof>
      <offset> <size> <member designator>

The size column may be "-" where the reference gives none.  Designators are
anything offsetof() accepts, including FreeBSD's alias macros (``v4``,
``ps_buf``, ``pfrio_naddr``...), nested members (``divert.port``) and array
elements (``key[1]``).  Lines marked "derived" are computed from a field list
in the reference rather than copied from an offset column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Struct:
    name: str
    size: int
    fields: list[tuple[str, int, int | None]] = field(default_factory=list)


def _parse(text: str) -> dict[str, Struct]:
    out: dict[str, Struct] = {}
    cur: Struct | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if parts[0] == "struct":
            cur = Struct(parts[1], int(parts[2]))
            assert cur.name not in out, f"duplicate struct {cur.name}"
            out[cur.name] = cur
            continue
        assert cur is not None, f"field outside a struct: {raw!r}"
        off, size, desig = parts
        cur.fields.append((desig, int(off), None if size == "-" else int(size)))
    return out


# ---------------------------------------------------------------------------
# FreeBSD 12.1 layouts (pf-abi.md §2)
# ---------------------------------------------------------------------------

FREEBSD_LAYOUTS = _parse("""
# §2.1
struct pf_addr 16
   0 16 pfa
   0  4 v4
   0 16 v6
   0 16 addr8
   0 16 addr16
   0 16 addr32
   4  4 addr32[1]          # derived: IPv4 lives in the first 4 bytes

# §2.2
struct pf_addr_wrap 48
   0 32 v
   0 16 v.a.addr
  16 16 v.a.mask
   0 16 v.ifname
   0 32 v.tblname
  32  8 p
  32  8 p.dyn
  32  8 p.tbl
  32  4 p.dyncnt
  32  4 p.tblcnt
  40  1 type
  41  1 iflags

# §2.3
struct pf_rule_addr 56
   0 48 addr
  48  4 port
  52  1 neg
  53  1 port_op

struct pf_rule_uid 12
   0  8 uid
   8  1 op

struct pf_rule_gid 12
   0  8 gid
   8  1 op

# §2.4
struct pf_pooladdr 88
   0 48 addr
  48 16 entries
  64 16 ifname
  80  8 kif

struct pf_pool 72
   0 16 list
  16  8 cur
  24 16 key
  40 16 counter
  56  4 tblidx
  60  4 proxy_port
  64  1 opts

struct pf_poolhashkey 16
   0 16 pfk
   0 16 key8
   0 16 key16
   0 16 key32

# §2.5
struct pfioc_pooladdr 1136
   0    4 action
   4    4 ticket
   8    4 nr
  12    4 r_num
  16    1 r_action
  17    1 r_last
  18    1 af
  19 1024 anchor
1048   88 addr

# §2.6
struct pf_rule 976
   0 56 src
  56 56 dst
 112 64 skip
 120  8 skip[1]            # derived: union pf_rule_ptr is 8 bytes
 168  8 skip[7]            # derived
 176 64 label
 240 16 ifname
 256 64 qname
 320 64 pqname
 384 64 tagname
 448 64 match_tagname
 512 32 overload_tblname
 544 16 entries
 560 72 rpool
 632  8 evaluations
 640 16 packets
 656 16 bytes
 672  8 kif
 680  8 anchor
 688  8 overload_tbl
 696  4 os_fingerprint
 700  4 rtableid
 704 80 timeout
 784  4 max_states
 788  4 max_src_nodes
 792  4 max_src_states
 796  4 max_src_conn
 800  8 max_src_conn_rate
 800  4 max_src_conn_rate.limit
 804  4 max_src_conn_rate.seconds
 808  4 qid
 812  4 pqid
 816  4 rt_listid
 820  4 nr
 824  4 prob
 828  4 cuid
 832  4 cpid
 840  8 states_cur
 848  8 states_tot
 856  8 src_nodes
 864  2 return_icmp
 866  2 return_icmp6
 868  2 max_mss
 870  2 tag
 872  2 match_tag
 874  2 scrub_flags
 876 12 uid
 888 12 gid
 900  4 rule_flag
 904  1 action
 905  1 direction
 906  1 log
 907  1 logif
 908  1 quick
 909  1 ifnot
 910  1 match_tag_not
 911  1 natpass
 912  1 keep_state
 913  1 af
 914  1 proto
 915  1 type
 916  1 code
 917  1 flags
 918  1 flagset
 919  1 min_ttl
 920  1 allow_opts
 921  1 rt
 922  1 return_ttl
 923  1 tos
 924  1 set_tos
 925  1 anchor_relative
 926  1 anchor_wildcard
 927  1 flush
 928  1 prio
 929  2 set_prio
 932 20 divert
 932 16 divert.addr
 948  2 divert.port
 952  8 u_states_cur
 960  8 u_states_tot
 968  8 u_src_nodes

# §2.7
struct pfioc_rule 3040
   0    4 action
   4    4 ticket
   8    4 pool_ticket
  12    4 nr
  16 1024 anchor
1040 1024 anchor_call
2064  976 rule
2977    1 rule.af              # derived: 2064 + 913

# §2.8
struct pfioc_natlook 76
   0 16 saddr
  16 16 daddr
  32 16 rsaddr
  48 16 rdaddr
  64  2 sport
  66  2 dport
  68  2 rsport
  70  2 rdport
  72  1 af
  73  1 proto
  74  1 direction

# §2.9
struct pfsync_state_scrub 8
   0  2 pfss_flags
   2  1 pfss_ttl
   3  1 scrub_flag
   4  4 pfss_ts_mod

struct pfsync_state_peer 32
   0  8 scrub
   8  4 seqlo
  12  4 seqhi
  16  4 seqdiff
  20  2 max_win
  22  2 mss
  24  1 state
  25  1 wscale
  26  6 pad

struct pfsync_state_key 36
   0 32 addr
  32  4 port

struct pfsync_state 242
   0  8 id
   8 16 ifname
  24 72 key
  24 36 key[0]             # derived: PF_SK_WIRE
  60 36 key[1]             # derived: PF_SK_STACK
  92  4 key[1].port        # derived
  96 32 src
 104  4 src.seqlo          # derived
 128 32 dst
 160 16 rt_addr
 176  4 rule
 180  4 anchor
 184  4 nat_rule
 188  4 creation
 192  4 expire
 196 16 packets
 212 16 bytes
 228  4 creatorid
 232  1 af
 233  1 proto
 234  1 direction
 235  2 __spare
 237  1 log
 238  1 state_flags
 239  1 timeout
 240  1 sync_flags
 241  1 updates

struct pfioc_state 242
   0 242 state

struct pf_state_cmp 16
   0  8 id
   8  4 creatorid
  12  1 direction
  13  3 pad

# §2.10
struct pfioc_state_kill 224
   0 16 psk_pfcmp
   8  4 psk_pfcmp.creatorid  # derived
  16  1 psk_af
  20  4 psk_proto
  24 56 psk_src
  80 56 psk_dst
 136 16 psk_ifname
 152 64 psk_label
 216  4 psk_killed

struct pfioc_src_node_kill 128
   0  1 psnk_af
   8 56 psnk_src
  64 56 psnk_dst
 120  4 psnk_killed

# §2.11
struct pfioc_states 16
   0  4 ps_len
   8  8 ps_u
   8  8 ps_buf
   8  8 ps_states

struct pfioc_src_nodes 16
   0  4 psn_len
   8  8 psn_u
   8  8 psn_buf
   8  8 psn_src_nodes

struct pf_src_node 136
   0 16 entry
  16 16 addr
  32 16 raddr
  48  8 rule
  48  4 rule.nr
  56  8 kif
  64 16 bytes
  80 16 packets
  96  4 states
 100  4 conn
 104 16 conn_rate
 104  4 conn_rate.limit
 108  4 conn_rate.seconds
 112  4 conn_rate.count
 116  4 conn_rate.last
 120  4 creation
 124  4 expire
 128  1 af
 129  1 ruletype

struct pf_threshold 16
   0  4 limit
   4  4 seconds
   8  4 count
  12  4 last

# §2.12
struct pfioc_iface 40
   0 16 pfiio_name
  16  8 pfiio_buffer
  24  4 pfiio_esize
  28  4 pfiio_size
  32  4 pfiio_nzero
  36  4 pfiio_flags

struct pfi_kif 224
   0 16 pfik_name
  16 32 _pfik_glue
  16 32 pfik_tree
  16 16 pfik_list
  48 64 pfik_packets
 112 64 pfik_bytes
 176  4 pfik_tzero
 180  4 pfik_flags
 184  8 pfik_ifp
 192  8 pfik_group
 200  4 pfik_rulerefs
 208 16 pfik_dynaddrs

# §2.13
struct pfr_table 1064
   0 1024 pfrt_anchor
1024   32 pfrt_name
1056    4 pfrt_flags
1060    1 pfrt_fback

struct pfr_addr 20
   0 16 pfra_u
   0  4 pfra_ip4addr
   0 16 pfra_ip6addr
  16  1 pfra_af
  17  1 pfra_net
  18  1 pfra_not
  19  1 pfra_fback

struct pfr_astats 96
   0 20 pfras_a
  24 32 pfras_packets
  56 32 pfras_bytes
  88  8 pfras_tzero

struct pfr_tstats 1200
   0 1064 pfrts_t
1024   32 pfrts_name          # alias macro
1056    4 pfrts_flags         # alias macro
1064   48 pfrts_packets
1112   48 pfrts_bytes
1160    8 pfrts_match
1168    8 pfrts_nomatch
1176    8 pfrts_tzero
1184    4 pfrts_cnt
1188    8 pfrts_refcnt

struct pfioc_table 1104
   0 1064 pfrio_table
1024   32 pfrio_table.pfrt_name   # derived
1064    8 pfrio_buffer
1072    4 pfrio_esize
1076    4 pfrio_size
1080    4 pfrio_size2
1080    4 pfrio_naddr
1080    4 pfrio_setflag
1084    4 pfrio_nadd
1084    4 pfrio_exists
1084    4 pfrio_nzero
1084    4 pfrio_nmatch
1084    4 pfrio_clrflag
1088    4 pfrio_ndel
1092    4 pfrio_nchange
1096    4 pfrio_flags
1100    4 pfrio_ticket

# §2.14
struct pfioc_trans 16
   0  4 size
   4  4 esize
   8  8 array

struct pfioc_trans_e 1032
   0    4 rs_num
   4 1024 anchor
1028    4 ticket

# §2.15
struct pf_status 416
   0 128 counters
 128  56 lcounters
 184  24 fcounters
 208  24 scounters
 232  96 pcounters
 328  32 bcounters
 360   4 running
 364   4 states
 368   4 src_nodes
 372   4 since
 376   4 debug
 380   4 hostid
 384  16 ifname
 400  16 pf_chksum

struct pfioc_tm 8
   0  4 timeout
   4  4 seconds

struct pfioc_limit 8
   0  4 index
   4  4 limit

struct pfioc_if 16
   0 16 ifname

struct pfioc_ruleset 1092
   0    4 nr
   4 1024 path
1028   64 name

struct pf_osfp_entry 112
   0  8 fp_entry
   8  4 fp_os
  12  4 fp_enflags
  16 32 fp_class_nm
  48 32 fp_version_nm
  80 32 fp_subtype_nm

struct pf_osfp_ioctl 136
   0 112 fp_os
 112   8 fp_tcpopts
 120   2 fp_wsize
 122   2 fp_psize
 124   2 fp_mss
 126   2 fp_flags
 128   1 fp_optcnt
 129   1 fp_wscale
 130   1 fp_ttl
 132   4 fp_getnum

struct pf_ifspeed_v0 20
   0 16 ifname
  16  4 baudrate

struct pf_ifspeed_v1 32
   0 16 ifname
  16  4 baudrate32
  24  8 baudrate

# §2.16
struct pfioc_altq_v0 256
   0   4 action
   4   4 ticket
   8   4 nr
  16 240 altq

struct pfioc_altq_v1 304
   0   4 action
   4   4 ticket
   8   4 nr
  12   4 version
  16 288 altq

struct pf_altq_v0 240
   0 16 ifname
  16  8 unused1
  24 16 entries
  40  1 scheduler
  42  2 tbrsize
  44  4 ifbandwidth
  48 64 qname
 112 64 parent
 176  4 parent_qid
 180  4 bandwidth
 184  1 priority
 185  1 local_flags
 186  2 qlimit
 188  2 flags
 192 40 pq_u
 232  4 qid

struct pf_altq_v1 288
   0 16 ifname
  16 16 entries
  32  1 scheduler
  36  4 tbrsize
  40  8 ifbandwidth
  48 64 qname
 112 64 parent
 176  4 parent_qid
 184  8 bandwidth
 192  1 priority
 193  1 local_flags
 194  2 qlimit
 196  2 flags
 200 80 pq_u
 280  4 qid

struct pfioc_qstats_v0 24
   0  4 ticket
   4  4 nr
   8  8 buf
  16  4 nbytes
  20  1 scheduler

struct pfioc_qstats_v1 32
   0  4 ticket
   4  4 nr
   8  8 buf
  16  4 nbytes
  20  1 scheduler
  24  4 version
""")


# ---------------------------------------------------------------------------
# Older generations (pf-abi.md §3.2 OpenBSD 3.7 / FreeBSD 6, §3.3 NetBSD)
# ---------------------------------------------------------------------------

OLD_LAYOUTS = _parse("""
# §3.2: the interface statistics element of seed 004
struct pfi_if 184
   0 16 pfif_name
  16 64 pfif_packets
  80 64 pfif_bytes
 144  8 pfif_addcnt
 152  8 pfif_delcnt
 160  8 pfif_tzero
 168  4 pfif_states
 172  4 pfif_rules
 176  4 pfif_flags

struct pfioc_state_obsd37 376
   0   4 nr
   8 368 state

struct pf_state_host 20
   0 16 addr
  16  2 port
  18  2 pad

struct pf_state_peer_obsd37 32
   0  4 seqlo
   4  4 seqhi
   8  4 seqdiff
  12  2 max_win
  14  1 state
  15  1 wscale
  16  2 mss
  24  8 scrub

struct pf_state_obsd37 368
   0   8 id
   8 120 u
   8  16 u.ifname
 128  20 lan
 148  20 gwy
 168  20 ext
 192  32 src
 224  32 dst
 256   8 rule
 264   8 anchor
 272   8 nat_rule
 280  16 rt_addr
 296   8 rt_kif
 304   8 src_node
 312   8 nat_src_node
 320   4 creation
 324   4 expire
 328   4 pfsync_time
 332   8 packets
 340   8 bytes
 348   4 creatorid
 352   2 tag
 354   1 af
 355   1 proto
 356   1 direction
 357   1 log
 358   1 allow_opts
 359   1 timeout
 360   1 sync_flags
 361   1 pad

struct pfioc_state_kill_obsd37 136
   0  1 psk_af
   4  4 psk_proto
   8 56 psk_src
  64 56 psk_dst
 120 16 psk_ifname

struct pf_status_obsd37 400
   0 120 counters
 120  56 lcounters
 176  24 fcounters
 200  24 scounters
 224  96 pcounters
 320  32 bcounters
 352   8 stateid
 360   4 running
 364   4 states
 368   4 src_nodes
 372   4 since
 376   4 debug
 380   4 hostid
 384  16 ifname

# §3.3 NetBSD (OpenBSD 4.2 base)
struct pfi_kif_nbsd 232
   0 16 pfik_name
  16 32 pfik_tree
  48 64 pfik_packets
 112 64 pfik_bytes
 176  4 pfik_tzero
 180  4 pfik_flags
 184  8 pfik_ah_cookie
 192  8 pfik_ifp
 200  8 pfik_group
 208  4 pfik_states
 212  4 pfik_rules
 216 16 pfik_dynaddrs

struct pf_status_nbsd 424
 360  8 stateid
 408 16 pf_chksum

struct pfsync_state_nbsd 240          # offsets derived from the field list
   0  8 id
   8 16 ifname
  24 24 lan
  48 24 gwy
  72 24 ext
  96 32 src
 128 32 dst
 160 16 rt_addr
 228  4 creatorid
 232  1 af
 239  1 updates

struct pfioc_state_nbsd 16
   0  4 nr
   8  8 state

struct pfioc_src_node_kill_nbsd 120
   0  1 psnk_af
   8 56 psnk_src
  64 56 psnk_dst
""")

LAYOUTS: dict[str, Struct] = {**FREEBSD_LAYOUTS, **OLD_LAYOUTS}


# ---------------------------------------------------------------------------
# Command values
# ---------------------------------------------------------------------------

# Appendix A: (name, BSD value, Linux value).  The Linux value is what the
# header's DIOC* macro must produce.
APPENDIX_A: list[tuple[str, int, int]] = [
    ("DIOCSTART",        0x20004401, 0x00004401),
    ("DIOCSTOP",         0x20004402, 0x00004402),
    ("DIOCADDRULE",      0xcbe04404, 0xcbe04404),
    ("DIOCGETRULES",     0xcbe04406, 0xcbe04406),
    ("DIOCGETRULE",      0xcbe04407, 0xcbe04407),
    ("DIOCCLRSTATES",    0xc0e04412, 0xc0e04412),
    ("DIOCGETSTATE",     0xc0f24413, 0xc0f24413),
    ("DIOCSETSTATUSIF",  0xc0104414, 0xc0104414),
    ("DIOCGETSTATUS",    0xc1a04415, 0xc1a04415),
    ("DIOCCLRSTATUS",    0x20004416, 0x00004416),
    ("DIOCNATLOOK",      0xc04c4417, 0xc04c4417),
    ("DIOCSETDEBUG",     0xc0044418, 0xc0044418),
    ("DIOCGETSTATES",    0xc0104419, 0xc0104419),
    ("DIOCCHANGERULE",   0xcbe0441a, 0xcbe0441a),
    ("DIOCSETTIMEOUT",   0xc008441d, 0xc008441d),
    ("DIOCGETTIMEOUT",   0xc008441e, 0xc008441e),
    ("DIOCADDSTATE",     0xc0f24425, 0xc0f24425),
    ("DIOCCLRRULECTRS",  0x20004426, 0x00004426),
    ("DIOCGETLIMIT",     0xc0084427, 0xc0084427),
    ("DIOCSETLIMIT",     0xc0084428, 0xc0084428),
    ("DIOCKILLSTATES",   0xc0e04429, 0xc0e04429),
    ("DIOCSTARTALTQ",    0x2000442a, 0x0000442a),
    ("DIOCSTOPALTQ",     0x2000442b, 0x0000442b),
    ("DIOCADDALTQV0",    0xc100442d, 0xc100442d),
    ("DIOCADDALTQV1",    0xc130442d, 0xc130442d),
    ("DIOCGETALTQSV0",   0xc100442f, 0xc100442f),
    ("DIOCGETALTQSV1",   0xc130442f, 0xc130442f),
    ("DIOCGETALTQV0",    0xc1004430, 0xc1004430),
    ("DIOCGETALTQV1",    0xc1304430, 0xc1304430),
    ("DIOCCHANGEALTQV0", 0xc1004431, 0xc1004431),
    ("DIOCCHANGEALTQV1", 0xc1304431, 0xc1304431),
    ("DIOCGETQSTATSV0",  0xc0184432, 0xc0184432),
    ("DIOCGETQSTATSV1",  0xc0204432, 0xc0204432),
    ("DIOCBEGINADDRS",   0xc4704433, 0xc4704433),
    ("DIOCADDADDR",      0xc4704434, 0xc4704434),
    ("DIOCGETADDRS",     0xc4704435, 0xc4704435),
    ("DIOCGETADDR",      0xc4704436, 0xc4704436),
    ("DIOCCHANGEADDR",   0xc4704437, 0xc4704437),
    ("DIOCGETRULESETS",  0xc444443a, 0xc444443a),
    ("DIOCGETRULESET",   0xc444443b, 0xc444443b),
    ("DIOCRCLRTABLES",   0xc450443c, 0xc450443c),
    ("DIOCRADDTABLES",   0xc450443d, 0xc450443d),
    ("DIOCRDELTABLES",   0xc450443e, 0xc450443e),
    ("DIOCRGETTABLES",   0xc450443f, 0xc450443f),
    ("DIOCRGETTSTATS",   0xc4504440, 0xc4504440),
    ("DIOCRCLRTSTATS",   0xc4504441, 0xc4504441),
    ("DIOCRCLRADDRS",    0xc4504442, 0xc4504442),
    ("DIOCRADDADDRS",    0xc4504443, 0xc4504443),
    ("DIOCRDELADDRS",    0xc4504444, 0xc4504444),
    ("DIOCRSETADDRS",    0xc4504445, 0xc4504445),
    ("DIOCRGETADDRS",    0xc4504446, 0xc4504446),
    ("DIOCRGETASTATS",   0xc4504447, 0xc4504447),
    ("DIOCRCLRASTATS",   0xc4504448, 0xc4504448),
    ("DIOCRTSTADDRS",    0xc4504449, 0xc4504449),
    ("DIOCRSETTFLAGS",   0xc450444a, 0xc450444a),
    ("DIOCRINADEFINE",   0xc450444d, 0xc450444d),
    ("DIOCOSFPFLUSH",    0x2000444e, 0x0000444e),
    ("DIOCOSFPADD",      0xc088444f, 0xc088444f),
    ("DIOCOSFPGET",      0xc0884450, 0xc0884450),
    ("DIOCXBEGIN",       0xc0104451, 0xc0104451),
    ("DIOCXCOMMIT",      0xc0104452, 0xc0104452),
    ("DIOCXROLLBACK",    0xc0104453, 0xc0104453),
    ("DIOCGETSRCNODES",  0xc0104454, 0xc0104454),
    ("DIOCCLRSRCNODES",  0x20004455, 0x00004455),
    ("DIOCSETHOSTID",    0xc0044456, 0xc0044456),
    ("DIOCIGETIFACES",   0xc0284457, 0xc0284457),
    ("DIOCSETIFFLAG",    0xc0284459, 0xc0284459),
    ("DIOCCLRIFFLAG",    0xc028445a, 0xc028445a),
    ("DIOCKILLSRCNODES", 0xc080445b, 0xc080445b),
    ("DIOCGIFSPEEDV0",   0xc014445c, 0xc014445c),
    ("DIOCGIFSPEEDV1",   0xc020445c, 0xc020445c),
]

# Every command macro the header must define, with its value.
COMMANDS: dict[str, int] = {name: linux for name, _bsd, linux in APPENDIX_A}

# BSD encodings of the argument-less commands: <NAME>_BSD.
for _name, _bsd, _linux in APPENDIX_A:
    if _bsd != _linux:
        COMMANDS[_name + "_BSD"] = _bsd

# Older generations (§3.2, §3.3, §3.5).
COMMANDS.update({
    "DIOCICLRISTATS":        0xc0284458,   # OpenBSD 3.x, _IOWR('D',88,pfioc_iface)
    "DIOCGETSTATUS_OBSD37":  0xc1904415,
    "DIOCGETSTATE_OBSD37":   0xc1784413,
    "DIOCADDSTATE_OBSD37":   0xc1784425,
    "DIOCKILLSTATES_OBSD37": 0xc0884429,
    "DIOCCLRSTATES_OBSD37":  0xc0884412,
    "DIOCGIFSPEED_FBSD6":    0xc014445b,
    "DIOCGETSTATUS_NBSD":    0xc1a84415,
    "DIOCGETSTATE_NBSD":     0xc0104413,
    "DIOCADDSTATE_NBSD":     0xc0104425,
    "DIOCKILLSTATES_NBSD":   0xc0884429,
    "DIOCCLRSTATES_NBSD":    0xc0884412,
    "DIOCKILLSRCNODES_NBSD": 0xc078445b,
    "DIOCSETLCK_NBSD":       0xc0044408,   # _IOWR('D', 8, uint32_t)
    "DIOCADDSTATES_NBSD":    0xc0104438,   # _IOWR('D', 56, struct pfioc_states)
})

# Unversioned ALTQ names: V0 by default, V1 with PFIOC_USE_LATEST (§1).
ALIASES_DEFAULT: dict[str, int] = {
    "DIOCADDALTQ": 0xc100442d, "DIOCGETALTQS": 0xc100442f,
    "DIOCGETALTQ": 0xc1004430, "DIOCCHANGEALTQ": 0xc1004431,
    "DIOCGETQSTATS": 0xc0184432, "DIOCGIFSPEED": 0xc014445c,
}
ALIASES_LATEST: dict[str, int] = {
    "DIOCADDALTQ": 0xc130442d, "DIOCGETALTQS": 0xc130442f,
    "DIOCGETALTQ": 0xc1304430, "DIOCCHANGEALTQ": 0xc1304431,
    "DIOCGETQSTATS": 0xc0204432, "DIOCGIFSPEED": 0xc020445c,
}
ALIAS_STRUCTS_DEFAULT = {"pfioc_altq": 256, "pfioc_qstats": 24,
                         "pf_ifspeed": 20, "pf_altq": 240}
ALIAS_STRUCTS_LATEST = {"pfioc_altq": 304, "pfioc_qstats": 32,
                        "pf_ifspeed": 32, "pf_altq": 288}


# ---------------------------------------------------------------------------
# Constants (§2.0, §3.2)
# ---------------------------------------------------------------------------

CONSTANTS: dict[str, int] = {
    "PF_MAXPATHLEN": 1024, "PF_TABLE_NAME_SIZE": 32, "PF_QNAME_SIZE": 64,
    "PF_RULE_LABEL_SIZE": 64, "PF_TAG_NAME_SIZE": 64,
    "PF_ANCHOR_NAME_SIZE": 64, "PF_OSFP_LEN": 32, "PF_MD5_DIGEST_LENGTH": 16,
    "PF_SKIP_COUNT": 8, "PFRES_MAX": 16, "LCNT_MAX": 7, "FCNT_MAX": 3,
    "SCNT_MAX": 3, "PFTM_MAX": 20, "PF_LIMIT_MAX": 4, "PF_RULESET_MAX": 5,
    "PF_RULESET_ALTQ": 5, "PF_RULESET_TABLE": 6, "PFR_DIR_MAX": 2,
    "PFR_OP_ADDR_MAX": 2, "PFR_OP_TABLE_MAX": 3, "PFR_REFCNT_MAX": 2,
    # enums
    "PF_INOUT": 0, "PF_IN": 1, "PF_OUT": 2,
    "PF_PASS": 0, "PF_DROP": 1, "PF_SCRUB": 2, "PF_NOSCRUB": 3, "PF_NAT": 4,
    "PF_NONAT": 5, "PF_BINAT": 6, "PF_NOBINAT": 7, "PF_RDR": 8,
    "PF_NORDR": 9, "PF_SYNPROXY_DROP": 10, "PF_DEFER": 11,
    "PF_OP_NONE": 0, "PF_OP_IRG": 1, "PF_OP_EQ": 2, "PF_OP_NE": 3,
    "PF_OP_LT": 4, "PF_OP_LE": 5, "PF_OP_GT": 6, "PF_OP_GE": 7,
    "PF_OP_XRG": 8, "PF_OP_RRG": 9,
    "PF_CHANGE_NONE": 0, "PF_CHANGE_ADD_HEAD": 1, "PF_CHANGE_ADD_TAIL": 2,
    "PF_CHANGE_ADD_BEFORE": 3, "PF_CHANGE_ADD_AFTER": 4,
    "PF_CHANGE_REMOVE": 5, "PF_CHANGE_GET_TICKET": 6,
    "PF_GET_NONE": 0, "PF_GET_CLR_CNTR": 1, "PF_SK_WIRE": 0, "PF_SK_STACK": 1,
    "PF_NOPFROUTE": 0, "PF_FASTROUTE": 1, "PF_ROUTETO": 2, "PF_DUPTO": 3,
    "PF_REPLYTO": 4,
    "PF_POOL_NONE": 0, "PF_POOL_BITMASK": 1, "PF_POOL_RANDOM": 2,
    "PF_POOL_SRCHASH": 3, "PF_POOL_ROUNDROBIN": 4,
    "PF_POOL_TYPEMASK": 0x0f, "PF_POOL_STICKYADDR": 0x20,
    "PF_ADDR_ADDRMASK": 0, "PF_ADDR_NOROUTE": 1, "PF_ADDR_DYNIFTL": 2,
    "PF_ADDR_TABLE": 3, "PF_ADDR_URPFFAILED": 4, "PF_ADDR_RANGE": 5,
    "PFI_AFLAG_NETWORK": 1, "PFI_AFLAG_BROADCAST": 2, "PFI_AFLAG_PEER": 4,
    "PFI_AFLAG_MODEMASK": 7, "PFI_AFLAG_NOALIAS": 8,
    "PF_LOG": 1, "PF_LOG_ALL": 2, "PF_LOG_SOCKET_LOOKUP": 4,
    "PF_DEBUG_NONE": 0, "PF_DEBUG_URGENT": 1, "PF_DEBUG_MISC": 2,
    "PF_DEBUG_NOISY": 3,
    "PF_LIMIT_STATES": 0, "PF_LIMIT_SRC_NODES": 1, "PF_LIMIT_FRAGS": 2,
    "PF_LIMIT_TABLE_ENTRIES": 3,
    "PF_RULESET_SCRUB": 0, "PF_RULESET_FILTER": 1, "PF_RULESET_NAT": 2,
    "PF_RULESET_BINAT": 3, "PF_RULESET_RDR": 4,
    # timeouts
    "PFTM_TCP_FIRST_PACKET": 0, "PFTM_TCP_OPENING": 1,
    "PFTM_TCP_ESTABLISHED": 2, "PFTM_TCP_CLOSING": 3, "PFTM_TCP_FIN_WAIT": 4,
    "PFTM_TCP_CLOSED": 5, "PFTM_UDP_FIRST_PACKET": 6, "PFTM_UDP_SINGLE": 7,
    "PFTM_UDP_MULTIPLE": 8, "PFTM_ICMP_FIRST_PACKET": 9,
    "PFTM_ICMP_ERROR_REPLY": 10, "PFTM_OTHER_FIRST_PACKET": 11,
    "PFTM_OTHER_SINGLE": 12, "PFTM_OTHER_MULTIPLE": 13, "PFTM_FRAG": 14,
    "PFTM_INTERVAL": 15, "PFTM_ADAPTIVE_START": 16, "PFTM_ADAPTIVE_END": 17,
    "PFTM_SRC_NODE": 18, "PFTM_TS_DIFF": 19, "PFTM_PURGE": 21,
    "PFTM_UNLINKED": 22,
    "PFTM_TCP_FIRST_PACKET_VAL": 120, "PFTM_TCP_OPENING_VAL": 30,
    "PFTM_TCP_ESTABLISHED_VAL": 86400, "PFTM_TCP_CLOSING_VAL": 900,
    "PFTM_TCP_FIN_WAIT_VAL": 45, "PFTM_TCP_CLOSED_VAL": 90,
    "PFTM_UDP_FIRST_PACKET_VAL": 60, "PFTM_UDP_SINGLE_VAL": 30,
    "PFTM_UDP_MULTIPLE_VAL": 60, "PFTM_ICMP_FIRST_PACKET_VAL": 20,
    "PFTM_ICMP_ERROR_REPLY_VAL": 10, "PFTM_OTHER_FIRST_PACKET_VAL": 60,
    "PFTM_OTHER_SINGLE_VAL": 30, "PFTM_OTHER_MULTIPLE_VAL": 60,
    "PFTM_FRAG_VAL": 30, "PFTM_INTERVAL_VAL": 10, "PFTM_SRC_NODE_VAL": 0,
    "PFTM_TS_DIFF_VAL": 30,
    "PFSTATE_ADAPT_START": 60000, "PFSTATE_ADAPT_END": 120000,
    "PFSTATE_HIWAT": 100000, "PFSNODE_HIWAT": 10000,
    "PFFRAG_FRENT_HIWAT": 5000, "PFR_KENTRY_HIWAT": 200000,
    # rule flags and friends
    "PFRULE_DROP": 0, "PFRULE_RETURNRST": 0x1, "PFRULE_FRAGMENT": 0x2,
    "PFRULE_RETURNICMP": 0x4, "PFRULE_RETURN": 0x8, "PFRULE_NOSYNC": 0x10,
    "PFRULE_SRCTRACK": 0x20, "PFRULE_RULESRCTRACK": 0x40,
    "PFRULE_REFS": 0x80, "PFRULE_NODF": 0x100, "PFRULE_RANDOMID": 0x800,
    "PFRULE_REASSEMBLE_TCP": 0x1000, "PFRULE_SET_TOS": 0x2000,
    "PFRULE_IFBOUND": 0x10000, "PFRULE_STATESLOPPY": 0x20000,
    "PF_STATE_NORMAL": 1, "PF_STATE_MODULATE": 2, "PF_STATE_SYNPROXY": 3,
    "PF_FLUSH": 1, "PF_FLUSH_GLOBAL": 2, "PF_PRIO_ZERO": 0xff,
    "PF_PRIO_MAX": 7,
    "PFSTATE_ALLOWOPTS": 0x01, "PFSTATE_SLOPPY": 0x02, "PFSTATE_NOSYNC": 0x08,
    "PFSTATE_ACK": 0x10, "PFSTATE_SETPRIO": 0x0200,
    "PFSYNC_FLAG_SRCNODE": 0x04, "PFSYNC_FLAG_NATSRCNODE": 0x08,
    "PF_SKIP_IFP": 0, "PF_SKIP_DIR": 1, "PF_SKIP_AF": 2, "PF_SKIP_PROTO": 3,
    "PF_SKIP_SRC_ADDR": 4, "PF_SKIP_SRC_PORT": 5, "PF_SKIP_DST_ADDR": 6,
    "PF_SKIP_DST_PORT": 7,
    # tables
    "PFR_TFLAG_PERSIST": 0x1, "PFR_TFLAG_CONST": 0x2, "PFR_TFLAG_ACTIVE": 0x4,
    "PFR_TFLAG_INACTIVE": 0x8, "PFR_TFLAG_REFERENCED": 0x10,
    "PFR_TFLAG_REFDANCHOR": 0x20, "PFR_TFLAG_COUNTERS": 0x40,
    "PFR_TFLAG_USRMASK": 0x43,
    "PFR_FLAG_ATOMIC": 0x1, "PFR_FLAG_DUMMY": 0x2, "PFR_FLAG_FEEDBACK": 0x4,
    "PFR_FLAG_CLSTATS": 0x8, "PFR_FLAG_ADDRSTOO": 0x10,
    "PFR_FLAG_REPLACE": 0x20, "PFR_FLAG_ALLRSETS": 0x40,
    "PFR_FLAG_ALLMASK": 0x7f,
    "PFR_FB_NONE": 0, "PFR_FB_MATCH": 1, "PFR_FB_ADDED": 2,
    "PFR_FB_DELETED": 3, "PFR_FB_CHANGED": 4, "PFR_FB_CLEARED": 5,
    "PFR_FB_DUPLICATE": 6, "PFR_FB_NOTMATCH": 7, "PFR_FB_CONFLICT": 8,
    "PFR_FB_NOCOUNT": 9,
    "PFR_DIR_IN": 0, "PFR_DIR_OUT": 1, "PFR_OP_BLOCK": 0, "PFR_OP_PASS": 1,
    "PFR_OP_XPASS": 2, "PFR_REFCNT_RULE": 0, "PFR_REFCNT_ANCHOR": 1,
    # interfaces, FreeBSD 12 and OpenBSD 3.x
    "PFI_IFLAG_REFS": 0x0001, "PFI_IFLAG_SKIP": 0x0100,
    "PFI_FLAG_GROUP": 0x0001, "PFI_FLAG_INSTANCE": 0x0002,
    "PFI_FLAG_ALLMASK": 0x0003,
    "PFI_IFLAG_GROUP": 0x1, "PFI_IFLAG_INSTANCE": 0x2,
    "PFI_IFLAG_CLONABLE": 0x10, "PFI_IFLAG_DYNAMIC": 0x20,
    "PFI_IFLAG_ATTACHED": 0x40, "PFI_IFLAG_SETABLE_MASK": 0x100,
    "PFI_IFLAG_PLACEHOLDER": 0x8000,
    # fingerprints
    "PF_OSFP_ANY": 0, "PF_OSFP_UNKNOWN": 0xffffffff,
    "PF_OSFP_NOMATCH": 0xfffffffe, "PF_OSFP_EXPANDED": 1,
    "PF_OSFP_GENERIC": 2, "PF_OSFP_NODETAIL": 4,
    "PF_OSFP_WSIZE_MOD": 0x1, "PF_OSFP_INET6": 0x4000,
    # ALTQ
    "PFALTQ_FLAG_IF_REMOVED": 1, "PF_ALTQ_VERSION": 1,
    "PFIOC_ALTQ_VERSION": 1, "PFIOC_QSTATS_VERSION": 1,
    "PF_IFSPEED_VERSION": 1,
    # SYN proxy state levels: FreeBSD TCP_NSTATES (11) + 0/1
    "PF_TCPS_PROXY_SRC": 11, "PF_TCPS_PROXY_DST": 12,
    "PFUDPS_NSTATES": 3, "PFOTHERS_NSTATES": 3,
}

# Name-string macros, in index order (FreeBSD 12.1 pf.h / pfctl output).
NAME_LISTS: dict[str, list[str]] = {
    "PFRES_NAMES": ["match", "bad-offset", "fragment", "short", "normalize",
                    "memory", "bad-timestamp", "congestion", "ip-option",
                    "proto-cksum", "state-mismatch", "state-insert",
                    "state-limit", "src-limit", "synproxy", "map-failed"],
    "LCNT_NAMES": ["max states per rule", "max-src-states", "max-src-nodes",
                   "max-src-conn", "max-src-conn-rate",
                   "overload table insertion", "overload flush states"],
    "FCNT_NAMES": ["searches", "inserts", "removals"],
    "PFUDPS_NAMES": ["NO_TRAFFIC", "SINGLE", "MULTIPLE"],
    "PFOTHERS_NAMES": ["NO_TRAFFIC", "SINGLE", "MULTIPLE"],
}


def designator_ok(desig: str) -> bool:
    """True for a plausible offsetof() member designator."""
    return re.fullmatch(r"[A-Za-z_]\w*(\[\d+\])?(\.[A-Za-z_]\w*(\[\d+\])?)*",
                        desig) is not None
