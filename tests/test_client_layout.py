"""The ctypes client library (pfkern/client) against the reference and against the header.

Part 1 (pure Python): sizes, offsets and command values against numbers copied by hand from
../shared/reference/pf-abi.md (§2, §2.17, §3.2, appendix A).
Part 2 (needs gcc): every struct size, every member offset/size the library declares and every
DIOC* value, against gcc's view of include/net/pfvar.h; a self-check shows the probe does catch
a planted mismatch.
Part 3: the PfDevice helpers' loops and conversions, with ioctl replaced by a fake kernel.
"""
import ctypes
import errno
import ipaddress
import os
import socket
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pfkern import client as pfc  # noqa: E402
from pfkern.client import commands as C, constants as K, structs as S, device as D  # noqa: E402
from client_layout import cgen, probe  # noqa: E402

HEADER_DIR = os.path.join(ROOT, "include")
HEADER = os.path.join(HEADER_DIR, "net", "pfvar.h")

# ------------------------------------------------------------------------------------------
# Part 1: reference numbers (pf-abi.md §2.17 sizes, §3.2 pfi_if, §2.x offsets, appendix A)
# ------------------------------------------------------------------------------------------

REF_SIZES = {
    "pf_addr": 16, "pf_addr_wrap": 48, "pf_rule_addr": 56,
    "pf_pooladdr": 88, "pf_pool": 72, "pf_poolhashkey": 16,
    "pf_rule": 976, "pfioc_rule": 3040, "pfioc_pooladdr": 1136, "pfioc_natlook": 76,
    "pfsync_state": 242, "pfioc_state": 242, "pf_state_cmp": 16,
    "pfsync_state_scrub": 8, "pfsync_state_peer": 32, "pfsync_state_key": 36,
    "pfioc_state_kill": 224, "pfioc_src_node_kill": 128,
    "pfioc_states": 16, "pfioc_src_nodes": 16, "pfioc_trans": 16, "pfioc_if": 16,
    "pf_src_node": 136, "pf_threshold": 16, "pfi_kif": 224, "pfioc_iface": 40, "pf_status": 416,
    "pfioc_tm": 8, "pfioc_limit": 8, "pfioc_ruleset": 1092, "pfioc_trans_e": 1032,
    "pfr_table": 1064, "pfr_addr": 20, "pfr_astats": 96, "pfr_tstats": 1200, "pfioc_table": 1104,
    "pf_osfp_entry": 112, "pf_osfp_ioctl": 136,
    "pfioc_altq_v0": 256, "pfioc_altq_v1": 304, "pf_altq_v0": 240, "pf_altq_v1": 288,
    "pfioc_qstats_v0": 24, "pfioc_qstats_v1": 32, "pf_ifspeed_v0": 20, "pf_ifspeed_v1": 32,
    "pf_rule_uid": 12, "pf_rule_gid": 12, "pf_rule_ptr": 8,
    "pfi_if": 184, "pf_status_obsd37": 400, "pf_status_nbsd": 424,
    # §3.2 (OpenBSD 3.7) and §3.3 (NetBSD) state structs
    "pf_state_host": 20, "pf_state_peer_obsd37": 32, "pf_state_obsd37_s": 120,
    "pf_state_obsd37_u": 120, "pf_state_obsd37": 368, "pfioc_state_obsd37": 376,
    "pfioc_state_kill_obsd37": 136, "pfsync_state_nbsd": 240, "pfioc_state_nbsd": 16,
}

# (struct, member path) -> offset, from the layout tables of §2 and §3.2
REF_OFFSETS = {
    ("pf_addr_wrap", "p"): 32, ("pf_addr_wrap", "type"): 40, ("pf_addr_wrap", "iflags"): 41,
    ("pf_addr_wrap", "v.a.mask"): 16,
    ("pf_rule_addr", "port"): 48, ("pf_rule_addr", "neg"): 52, ("pf_rule_addr", "port_op"): 53,
    ("pf_rule_uid", "op"): 8,
    ("pf_pooladdr", "entries"): 48, ("pf_pooladdr", "ifname"): 64, ("pf_pooladdr", "kif"): 80,
    ("pf_pool", "cur"): 16, ("pf_pool", "key"): 24, ("pf_pool", "counter"): 40,
    ("pf_pool", "tblidx"): 56, ("pf_pool", "proxy_port"): 60, ("pf_pool", "opts"): 64,
    ("pfioc_pooladdr", "r_num"): 12, ("pfioc_pooladdr", "r_action"): 16,
    ("pfioc_pooladdr", "r_last"): 17, ("pfioc_pooladdr", "af"): 18,
    ("pfioc_pooladdr", "anchor"): 19, ("pfioc_pooladdr", "addr"): 1048,
    ("pf_rule", "dst"): 56, ("pf_rule", "skip"): 112, ("pf_rule", "label"): 176,
    ("pf_rule", "ifname"): 240, ("pf_rule", "qname"): 256, ("pf_rule", "pqname"): 320,
    ("pf_rule", "tagname"): 384, ("pf_rule", "match_tagname"): 448,
    ("pf_rule", "overload_tblname"): 512, ("pf_rule", "entries"): 544, ("pf_rule", "rpool"): 560,
    ("pf_rule", "evaluations"): 632, ("pf_rule", "packets"): 640, ("pf_rule", "bytes"): 656,
    ("pf_rule", "kif"): 672, ("pf_rule", "anchor"): 680, ("pf_rule", "overload_tbl"): 688,
    ("pf_rule", "os_fingerprint"): 696, ("pf_rule", "rtableid"): 700, ("pf_rule", "timeout"): 704,
    ("pf_rule", "max_states"): 784, ("pf_rule", "max_src_nodes"): 788,
    ("pf_rule", "max_src_states"): 792, ("pf_rule", "max_src_conn"): 796,
    ("pf_rule", "max_src_conn_rate"): 800, ("pf_rule", "qid"): 808, ("pf_rule", "pqid"): 812,
    ("pf_rule", "rt_listid"): 816, ("pf_rule", "nr"): 820, ("pf_rule", "prob"): 824,
    ("pf_rule", "cuid"): 828, ("pf_rule", "cpid"): 832, ("pf_rule", "states_cur"): 840,
    ("pf_rule", "states_tot"): 848, ("pf_rule", "src_nodes"): 856,
    ("pf_rule", "return_icmp"): 864, ("pf_rule", "return_icmp6"): 866,
    ("pf_rule", "max_mss"): 868, ("pf_rule", "tag"): 870, ("pf_rule", "match_tag"): 872,
    ("pf_rule", "scrub_flags"): 874, ("pf_rule", "uid"): 876, ("pf_rule", "gid"): 888,
    ("pf_rule", "rule_flag"): 900, ("pf_rule", "action"): 904, ("pf_rule", "direction"): 905,
    ("pf_rule", "log"): 906, ("pf_rule", "logif"): 907, ("pf_rule", "quick"): 908,
    ("pf_rule", "ifnot"): 909, ("pf_rule", "match_tag_not"): 910, ("pf_rule", "natpass"): 911,
    ("pf_rule", "keep_state"): 912, ("pf_rule", "af"): 913, ("pf_rule", "proto"): 914,
    ("pf_rule", "type"): 915, ("pf_rule", "code"): 916, ("pf_rule", "flags"): 917,
    ("pf_rule", "flagset"): 918, ("pf_rule", "min_ttl"): 919, ("pf_rule", "allow_opts"): 920,
    ("pf_rule", "rt"): 921, ("pf_rule", "return_ttl"): 922, ("pf_rule", "tos"): 923,
    ("pf_rule", "set_tos"): 924, ("pf_rule", "anchor_relative"): 925,
    ("pf_rule", "anchor_wildcard"): 926, ("pf_rule", "flush"): 927, ("pf_rule", "prio"): 928,
    ("pf_rule", "set_prio"): 929, ("pf_rule", "divert"): 932, ("pf_rule", "divert.addr"): 932,
    ("pf_rule", "divert.port"): 948, ("pf_rule", "u_states_cur"): 952,
    ("pf_rule", "u_states_tot"): 960, ("pf_rule", "u_src_nodes"): 968,
    ("pfioc_rule", "ticket"): 4, ("pfioc_rule", "pool_ticket"): 8, ("pfioc_rule", "nr"): 12,
    ("pfioc_rule", "anchor"): 16, ("pfioc_rule", "anchor_call"): 1040, ("pfioc_rule", "rule"): 2064,
    ("pfioc_natlook", "daddr"): 16, ("pfioc_natlook", "rsaddr"): 32, ("pfioc_natlook", "rdaddr"): 48,
    ("pfioc_natlook", "sport"): 64, ("pfioc_natlook", "dport"): 66, ("pfioc_natlook", "rsport"): 68,
    ("pfioc_natlook", "rdport"): 70, ("pfioc_natlook", "af"): 72, ("pfioc_natlook", "proto"): 73,
    ("pfioc_natlook", "direction"): 74,
    ("pfsync_state_scrub", "pfss_ttl"): 2, ("pfsync_state_scrub", "scrub_flag"): 3,
    ("pfsync_state_scrub", "pfss_ts_mod"): 4,
    ("pfsync_state_peer", "seqlo"): 8, ("pfsync_state_peer", "seqhi"): 12,
    ("pfsync_state_peer", "seqdiff"): 16, ("pfsync_state_peer", "max_win"): 20,
    ("pfsync_state_peer", "mss"): 22, ("pfsync_state_peer", "state"): 24,
    ("pfsync_state_peer", "wscale"): 25, ("pfsync_state_peer", "pad"): 26,
    ("pfsync_state_key", "port"): 32,
    ("pfsync_state", "ifname"): 8, ("pfsync_state", "key"): 24, ("pfsync_state", "src"): 96,
    ("pfsync_state", "dst"): 128, ("pfsync_state", "rt_addr"): 160, ("pfsync_state", "rule"): 176,
    ("pfsync_state", "anchor"): 180, ("pfsync_state", "nat_rule"): 184,
    ("pfsync_state", "creation"): 188, ("pfsync_state", "expire"): 192,
    ("pfsync_state", "packets"): 196, ("pfsync_state", "bytes"): 212,
    ("pfsync_state", "creatorid"): 228, ("pfsync_state", "af"): 232, ("pfsync_state", "proto"): 233,
    ("pfsync_state", "direction"): 234, ("pfsync_state", "__spare"): 235, ("pfsync_state", "log"): 237,
    ("pfsync_state", "state_flags"): 238, ("pfsync_state", "timeout"): 239,
    ("pfsync_state", "sync_flags"): 240, ("pfsync_state", "updates"): 241,
    ("pf_state_cmp", "creatorid"): 8, ("pf_state_cmp", "direction"): 12, ("pf_state_cmp", "pad"): 13,
    ("pfioc_state_kill", "psk_af"): 16, ("pfioc_state_kill", "psk_proto"): 20,
    ("pfioc_state_kill", "psk_src"): 24, ("pfioc_state_kill", "psk_dst"): 80,
    ("pfioc_state_kill", "psk_ifname"): 136, ("pfioc_state_kill", "psk_label"): 152,
    ("pfioc_state_kill", "psk_killed"): 216,
    ("pfioc_src_node_kill", "psnk_src"): 8, ("pfioc_src_node_kill", "psnk_dst"): 64,
    ("pfioc_src_node_kill", "psnk_killed"): 120,
    ("pfioc_states", "ps_u"): 8, ("pfioc_src_nodes", "psn_u"): 8,
    ("pf_src_node", "addr"): 16, ("pf_src_node", "raddr"): 32, ("pf_src_node", "rule"): 48,
    ("pf_src_node", "kif"): 56, ("pf_src_node", "bytes"): 64, ("pf_src_node", "packets"): 80,
    ("pf_src_node", "states"): 96, ("pf_src_node", "conn"): 100, ("pf_src_node", "conn_rate"): 104,
    ("pf_src_node", "creation"): 120, ("pf_src_node", "expire"): 124, ("pf_src_node", "af"): 128,
    ("pf_src_node", "ruletype"): 129,
    ("pfioc_iface", "pfiio_buffer"): 16, ("pfioc_iface", "pfiio_esize"): 24,
    ("pfioc_iface", "pfiio_size"): 28, ("pfioc_iface", "pfiio_nzero"): 32,
    ("pfioc_iface", "pfiio_flags"): 36,
    ("pfi_kif", "_pfik_glue"): 16, ("pfi_kif", "pfik_packets"): 48, ("pfi_kif", "pfik_bytes"): 112,
    ("pfi_kif", "pfik_tzero"): 176, ("pfi_kif", "pfik_flags"): 180, ("pfi_kif", "pfik_ifp"): 184,
    ("pfi_kif", "pfik_group"): 192, ("pfi_kif", "pfik_rulerefs"): 200,
    ("pfi_kif", "pfik_dynaddrs"): 208,
    ("pfi_if", "pfif_packets"): 16, ("pfi_if", "pfif_bytes"): 80, ("pfi_if", "pfif_addcnt"): 144,
    ("pfi_if", "pfif_delcnt"): 152, ("pfi_if", "pfif_tzero"): 160, ("pfi_if", "pfif_states"): 168,
    ("pfi_if", "pfif_rules"): 172, ("pfi_if", "pfif_flags"): 176,
    ("pfr_table", "pfrt_name"): 1024, ("pfr_table", "pfrt_flags"): 1056,
    ("pfr_table", "pfrt_fback"): 1060,
    ("pfr_addr", "pfra_af"): 16, ("pfr_addr", "pfra_net"): 17, ("pfr_addr", "pfra_not"): 18,
    ("pfr_addr", "pfra_fback"): 19,
    ("pfr_astats", "pfras_packets"): 24, ("pfr_astats", "pfras_bytes"): 56,
    ("pfr_astats", "pfras_tzero"): 88,
    ("pfr_tstats", "pfrts_packets"): 1064, ("pfr_tstats", "pfrts_bytes"): 1112,
    ("pfr_tstats", "pfrts_match"): 1160, ("pfr_tstats", "pfrts_nomatch"): 1168,
    ("pfr_tstats", "pfrts_tzero"): 1176, ("pfr_tstats", "pfrts_cnt"): 1184,
    ("pfr_tstats", "pfrts_refcnt"): 1188,
    ("pfioc_table", "pfrio_buffer"): 1064, ("pfioc_table", "pfrio_esize"): 1072,
    ("pfioc_table", "pfrio_size"): 1076, ("pfioc_table", "pfrio_size2"): 1080,
    ("pfioc_table", "pfrio_nadd"): 1084, ("pfioc_table", "pfrio_ndel"): 1088,
    ("pfioc_table", "pfrio_nchange"): 1092, ("pfioc_table", "pfrio_flags"): 1096,
    ("pfioc_table", "pfrio_ticket"): 1100,
    ("pfioc_trans", "esize"): 4, ("pfioc_trans", "array"): 8,
    ("pfioc_trans_e", "anchor"): 4, ("pfioc_trans_e", "ticket"): 1028,
    ("pf_status", "lcounters"): 128, ("pf_status", "fcounters"): 184, ("pf_status", "scounters"): 208,
    ("pf_status", "pcounters"): 232, ("pf_status", "bcounters"): 328, ("pf_status", "running"): 360,
    ("pf_status", "states"): 364, ("pf_status", "src_nodes"): 368, ("pf_status", "since"): 372,
    ("pf_status", "debug"): 376, ("pf_status", "hostid"): 380, ("pf_status", "ifname"): 384,
    ("pf_status", "pf_chksum"): 400,
    ("pfioc_tm", "seconds"): 4, ("pfioc_limit", "limit"): 4,
    ("pfioc_ruleset", "path"): 4, ("pfioc_ruleset", "name"): 1028,
    ("pf_osfp_entry", "fp_os"): 8, ("pf_osfp_entry", "fp_enflags"): 12,
    ("pf_osfp_entry", "fp_class_nm"): 16, ("pf_osfp_entry", "fp_version_nm"): 48,
    ("pf_osfp_entry", "fp_subtype_nm"): 80,
    ("pf_osfp_ioctl", "fp_tcpopts"): 112, ("pf_osfp_ioctl", "fp_wsize"): 120,
    ("pf_osfp_ioctl", "fp_psize"): 122, ("pf_osfp_ioctl", "fp_mss"): 124,
    ("pf_osfp_ioctl", "fp_flags"): 126, ("pf_osfp_ioctl", "fp_optcnt"): 128,
    ("pf_osfp_ioctl", "fp_wscale"): 129, ("pf_osfp_ioctl", "fp_ttl"): 130,
    ("pf_osfp_ioctl", "fp_getnum"): 132,
    ("pf_ifspeed_v0", "baudrate"): 16, ("pf_ifspeed_v1", "baudrate32"): 16,
    ("pf_ifspeed_v1", "baudrate"): 24,
    ("pfioc_altq_v0", "altq"): 16, ("pfioc_altq_v1", "version"): 12, ("pfioc_altq_v1", "altq"): 16,
    ("pf_altq_v0", "unused1"): 16, ("pf_altq_v0", "entries"): 24, ("pf_altq_v0", "scheduler"): 40,
    ("pf_altq_v0", "tbrsize"): 42, ("pf_altq_v0", "ifbandwidth"): 44, ("pf_altq_v0", "qname"): 48,
    ("pf_altq_v0", "parent"): 112, ("pf_altq_v0", "parent_qid"): 176, ("pf_altq_v0", "bandwidth"): 180,
    ("pf_altq_v0", "priority"): 184, ("pf_altq_v0", "local_flags"): 185, ("pf_altq_v0", "qlimit"): 186,
    ("pf_altq_v0", "flags"): 188, ("pf_altq_v0", "pq_u"): 192, ("pf_altq_v0", "qid"): 232,
    ("pf_altq_v1", "entries"): 16, ("pf_altq_v1", "scheduler"): 32, ("pf_altq_v1", "tbrsize"): 36,
    ("pf_altq_v1", "ifbandwidth"): 40, ("pf_altq_v1", "qname"): 48, ("pf_altq_v1", "parent"): 112,
    ("pf_altq_v1", "parent_qid"): 176, ("pf_altq_v1", "bandwidth"): 184,
    ("pf_altq_v1", "priority"): 192, ("pf_altq_v1", "local_flags"): 193,
    ("pf_altq_v1", "qlimit"): 194, ("pf_altq_v1", "flags"): 196, ("pf_altq_v1", "pq_u"): 200,
    ("pf_altq_v1", "qid"): 280,
    ("pfioc_qstats_v0", "buf"): 8, ("pfioc_qstats_v0", "nbytes"): 16,
    ("pfioc_qstats_v0", "scheduler"): 20, ("pfioc_qstats_v1", "version"): 24,
    # §3.2: OpenBSD 3.7's pf_state, pfioc_state, pfioc_state_kill
    ("pf_state_obsd37", "u"): 8, ("pf_state_obsd37", "lan"): 128, ("pf_state_obsd37", "gwy"): 148,
    ("pf_state_obsd37", "ext"): 168, ("pf_state_obsd37", "src"): 192, ("pf_state_obsd37", "dst"): 224,
    ("pf_state_obsd37", "src.max_win"): 204, ("pf_state_obsd37", "src.state"): 206,
    ("pf_state_obsd37", "src.wscale"): 207, ("pf_state_obsd37", "src.mss"): 208,
    ("pf_state_obsd37", "src.scrub"): 216,
    ("pf_state_obsd37", "rule"): 256, ("pf_state_obsd37", "anchor"): 264,
    ("pf_state_obsd37", "nat_rule"): 272, ("pf_state_obsd37", "rt_addr"): 280,
    ("pf_state_obsd37", "rt_kif"): 296, ("pf_state_obsd37", "src_node"): 304,
    ("pf_state_obsd37", "nat_src_node"): 312, ("pf_state_obsd37", "creation"): 320,
    ("pf_state_obsd37", "expire"): 324, ("pf_state_obsd37", "pfsync_time"): 328,
    ("pf_state_obsd37", "packets"): 332, ("pf_state_obsd37", "bytes"): 340,
    ("pf_state_obsd37", "creatorid"): 348, ("pf_state_obsd37", "tag"): 352,
    ("pf_state_obsd37", "af"): 354, ("pf_state_obsd37", "proto"): 355,
    ("pf_state_obsd37", "direction"): 356, ("pf_state_obsd37", "log"): 357,
    ("pf_state_obsd37", "allow_opts"): 358, ("pf_state_obsd37", "timeout"): 359,
    ("pf_state_obsd37", "sync_flags"): 360, ("pf_state_obsd37", "pad"): 361,
    ("pfioc_state_obsd37", "state"): 8,
    ("pfioc_state_kill_obsd37", "psk_proto"): 4, ("pfioc_state_kill_obsd37", "psk_src"): 8,
    ("pfioc_state_kill_obsd37", "psk_dst"): 64, ("pfioc_state_kill_obsd37", "psk_ifname"): 120,
}

# Appendix A: Linux _IOC value (== BSD value for every _IOWR) and, for _IO, the BSD value.
REF_COMMANDS = {
    "DIOCSTART": 0x00004401, "DIOCSTOP": 0x00004402,
    "DIOCADDRULE": 0xcbe04404, "DIOCGETRULES": 0xcbe04406, "DIOCGETRULE": 0xcbe04407,
    "DIOCCLRSTATES": 0xc0e04412, "DIOCGETSTATE": 0xc0f24413, "DIOCSETSTATUSIF": 0xc0104414,
    "DIOCGETSTATUS": 0xc1a04415, "DIOCCLRSTATUS": 0x00004416, "DIOCNATLOOK": 0xc04c4417,
    "DIOCSETDEBUG": 0xc0044418, "DIOCGETSTATES": 0xc0104419, "DIOCCHANGERULE": 0xcbe0441a,
    "DIOCSETTIMEOUT": 0xc008441d, "DIOCGETTIMEOUT": 0xc008441e, "DIOCADDSTATE": 0xc0f24425,
    "DIOCCLRRULECTRS": 0x00004426, "DIOCGETLIMIT": 0xc0084427, "DIOCSETLIMIT": 0xc0084428,
    "DIOCKILLSTATES": 0xc0e04429, "DIOCSTARTALTQ": 0x0000442a, "DIOCSTOPALTQ": 0x0000442b,
    "DIOCADDALTQV0": 0xc100442d, "DIOCADDALTQV1": 0xc130442d,
    "DIOCGETALTQSV0": 0xc100442f, "DIOCGETALTQSV1": 0xc130442f,
    "DIOCGETALTQV0": 0xc1004430, "DIOCGETALTQV1": 0xc1304430,
    "DIOCCHANGEALTQV0": 0xc1004431, "DIOCCHANGEALTQV1": 0xc1304431,
    "DIOCGETQSTATSV0": 0xc0184432, "DIOCGETQSTATSV1": 0xc0204432,
    "DIOCBEGINADDRS": 0xc4704433, "DIOCADDADDR": 0xc4704434, "DIOCGETADDRS": 0xc4704435,
    "DIOCGETADDR": 0xc4704436, "DIOCCHANGEADDR": 0xc4704437,
    "DIOCGETRULESETS": 0xc444443a, "DIOCGETRULESET": 0xc444443b,
    "DIOCRCLRTABLES": 0xc450443c, "DIOCRADDTABLES": 0xc450443d, "DIOCRDELTABLES": 0xc450443e,
    "DIOCRGETTABLES": 0xc450443f, "DIOCRGETTSTATS": 0xc4504440, "DIOCRCLRTSTATS": 0xc4504441,
    "DIOCRCLRADDRS": 0xc4504442, "DIOCRADDADDRS": 0xc4504443, "DIOCRDELADDRS": 0xc4504444,
    "DIOCRSETADDRS": 0xc4504445, "DIOCRGETADDRS": 0xc4504446, "DIOCRGETASTATS": 0xc4504447,
    "DIOCRCLRASTATS": 0xc4504448, "DIOCRTSTADDRS": 0xc4504449, "DIOCRSETTFLAGS": 0xc450444a,
    "DIOCRINADEFINE": 0xc450444d, "DIOCOSFPFLUSH": 0x0000444e, "DIOCOSFPADD": 0xc088444f,
    "DIOCOSFPGET": 0xc0884450, "DIOCXBEGIN": 0xc0104451, "DIOCXCOMMIT": 0xc0104452,
    "DIOCXROLLBACK": 0xc0104453, "DIOCGETSRCNODES": 0xc0104454, "DIOCCLRSRCNODES": 0x00004455,
    "DIOCSETHOSTID": 0xc0044456, "DIOCIGETIFACES": 0xc0284457, "DIOCSETIFFLAG": 0xc0284459,
    "DIOCCLRIFFLAG": 0xc028445a, "DIOCKILLSRCNODES": 0xc080445b,
    "DIOCGIFSPEEDV0": 0xc014445c, "DIOCGIFSPEEDV1": 0xc020445c,
    "DIOCICLRISTATS": 0xc0284458,       # §3.2 / §3.5 (OpenBSD 3.x)
    "DIOCGETSTATUS_OBSD37": 0xc1904415,  # §3.5 (OpenBSD 3.7 / FreeBSD 6, 400 B)
    "DIOCGETSTATUS_NBSD": 0xc1a84415,   # §3.5 (NetBSD, 424 B)
    "DIOCGIFSPEED_FBSD6": 0xc014445b,   # §3.5 (FreeBSD 6)
    "DIOCGETSTATE_OBSD37": 0xc1784413, "DIOCADDSTATE_OBSD37": 0xc1784425,     # §3.5 (376 B)
    "DIOCKILLSTATES_OBSD37": 0xc0884429, "DIOCCLRSTATES_OBSD37": 0xc0884412,  # §3.5 (136 B)
    "DIOCGETSTATE_NBSD": 0xc0104413, "DIOCADDSTATE_NBSD": 0xc0104425,         # §3.5 (16 B)
}
REF_BSD_IO = {
    "DIOCSTART_BSD": 0x20004401, "DIOCSTOP_BSD": 0x20004402, "DIOCCLRSTATUS_BSD": 0x20004416,
    "DIOCCLRRULECTRS_BSD": 0x20004426, "DIOCSTARTALTQ_BSD": 0x2000442a,
    "DIOCSTOPALTQ_BSD": 0x2000442b, "DIOCOSFPFLUSH_BSD": 0x2000444e,
    "DIOCCLRSRCNODES_BSD": 0x20004455,
}

# A selection of §2.0 / §3.2 constants
REF_CONSTANTS = {
    "PF_MAXPATHLEN": 1024, "IFNAMSIZ": 16, "PF_TABLE_NAME_SIZE": 32, "PF_QNAME_SIZE": 64,
    "PF_RULE_LABEL_SIZE": 64, "PF_TAG_NAME_SIZE": 64, "PF_ANCHOR_NAME_SIZE": 64, "PF_OSFP_LEN": 32,
    "PF_MD5_DIGEST_LENGTH": 16, "PF_SKIP_COUNT": 8, "PFRES_MAX": 16, "LCNT_MAX": 7, "FCNT_MAX": 3,
    "SCNT_MAX": 3, "PFTM_MAX": 20, "PF_LIMIT_MAX": 4, "PF_RULESET_MAX": 5, "PF_RULESET_ALTQ": 5,
    "PF_RULESET_TABLE": 6, "PFR_DIR_MAX": 2, "PFR_OP_ADDR_MAX": 2, "PFR_OP_TABLE_MAX": 3,
    "PFR_REFCNT_MAX": 2, "PFLOGIFS_MAX": 16, "ICMP_MAXTYPE": 40,
    "PF_INOUT": 0, "PF_IN": 1, "PF_OUT": 2, "PF_PASS": 0, "PF_DROP": 1, "PF_SCRUB": 2,
    "PF_NOSCRUB": 3, "PF_NAT": 4, "PF_NONAT": 5, "PF_BINAT": 6, "PF_NOBINAT": 7, "PF_RDR": 8,
    "PF_NORDR": 9, "PF_SYNPROXY_DROP": 10, "PF_DEFER": 11, "PF_OP_RRG": 9, "PF_OP_XRG": 8,
    "PF_CHANGE_GET_TICKET": 6, "PF_GET_CLR_CNTR": 1, "PF_SK_STACK": 1, "PF_REPLYTO": 4,
    "PF_POOL_ROUNDROBIN": 4, "PF_POOL_TYPEMASK": 0x0f, "PF_POOL_STICKYADDR": 0x20,
    "PF_ADDR_RANGE": 5, "PF_ADDR_TABLE": 3, "PFI_AFLAG_NOALIAS": 8, "PFI_AFLAG_MODEMASK": 7,
    "PF_LOG_SOCKET_LOOKUP": 4, "PF_DEBUG_NOISY": 3,
    "PFTM_TCP_ESTABLISHED": 2, "PFTM_INTERVAL": 15, "PFTM_TS_DIFF": 19, "PFTM_SRC_NODE": 18,
    "PFTM_ADAPTIVE_START": 16, "PFTM_PURGE": 21, "PFTM_UNLINKED": 22,
    "PFRULE_RETURNRST": 0x1, "PFRULE_STATESLOPPY": 0x20000, "PFRULE_IFBOUND": 0x10000,
    "PFRULE_SET_TOS": 0x2000, "PF_STATE_SYNPROXY": 3, "PF_FLUSH_GLOBAL": 2, "PF_PRIO_ZERO": 0xff,
    "PFSTATE_SETPRIO": 0x200, "PFSTATE_ACK": 0x10, "PFSYNC_FLAG_NATSRCNODE": 8,
    "PFR_TFLAG_COUNTERS": 0x40, "PFR_TFLAG_USRMASK": 0x43, "PFR_FLAG_ALLRSETS": 0x40,
    "PFR_FLAG_ALLMASK": 0x7f, "PFR_FB_NOCOUNT": 9, "PFR_OP_XPASS": 2,
    "PFI_IFLAG_REFS": 1, "PFI_IFLAG_SKIP": 0x100,
    "PFI_FLAG_GROUP": 1, "PFI_FLAG_INSTANCE": 2, "PFI_FLAG_ALLMASK": 3,
    "PFI_IFLAG_GROUP": 1, "PFI_IFLAG_INSTANCE": 2, "PFI_IFLAG_CLONABLE": 0x10,
    "PFI_IFLAG_DYNAMIC": 0x20, "PFI_IFLAG_ATTACHED": 0x40, "PFI_IFLAG_PLACEHOLDER": 0x8000,
    "PFI_IFLAG_SETABLE_MASK": 0x100,
    "PF_OSFP_UNKNOWN": 0xffffffff, "PF_OSFP_NOMATCH": 0xfffffffe, "PF_OSFP_NODETAIL": 4,
    "PF_OSFP_INET6": 0x4000, "ALTQT_CODEL": 14, "ALTQT_FAIRQ": 13, "ALTQT_HFSC": 8,
    "PFRES_MAPFAILED": 15, "LCNT_OVERLOAD_FLUSH": 6,
}


def _member_offset(cls, path):
    t, off = cls, 0
    for part in path.split("."):
        off += getattr(t, part).offset
        t = dict((f[0], f[1]) for f in t._fields_)[part]
    return off


def test_sizes_match_reference():
    structs = {c.__name__: c for c in S.all_structs()}
    bad = [f"{n}: ctypes {ctypes.sizeof(structs[n])}, reference {s}"
           for n, s in REF_SIZES.items() if n in structs and ctypes.sizeof(structs[n]) != s]
    absent = [n for n in REF_SIZES if n not in structs]
    assert not absent, f"structs missing from the library: {absent}"
    assert not bad, "\n".join(bad)


def test_offsets_match_reference():
    structs = {c.__name__: c for c in S.all_structs()}
    bad = []
    for (name, path), want in REF_OFFSETS.items():
        got = _member_offset(structs[name], path)
        if got != want:
            bad.append(f"{name}.{path}: ctypes {got}, reference {want}")
    assert not bad, "\n".join(bad)


def test_commands_match_appendix_a():
    bad = [f"{n}: library 0x{C.COMMANDS.get(n, -1) & 0xffffffff:08x}, appendix A 0x{v:08x}"
           for n, v in REF_COMMANDS.items() if C.COMMANDS.get(n) != v]
    bad += [f"{n}: library {getattr(C, n, None)!r}, appendix A 0x{v:08x}"
            for n, v in REF_BSD_IO.items() if getattr(C, n, None) != v]
    extra = set(C.COMMANDS) - set(REF_COMMANDS)
    assert not bad, "\n".join(bad)
    assert not extra, f"commands not in the reference: {extra}"
    # exported at package level too, and BSD and Linux encodings agree for every _IOWR
    for n, v in REF_COMMANDS.items():
        assert getattr(pfc, n) == v
        if v & 0xc0000000:
            assert v == C._IOWR_BSD("D", v & 0xff, C._IOC_SIZE(v))
    for n, v in REF_BSD_IO.items():
        assert getattr(pfc, n) == v
        assert C.to_linux(v) == REF_COMMANDS[n[:-4]]
        assert C.name_of(v) == n


def test_command_sizes_follow_structs():
    for name, nr, t in C.TABLE:
        v = C.COMMANDS[name]
        assert C._IOC_NR(v) == nr and C._IOC_TYPE(v) == ord("D")
        assert C._IOC_SIZE(v) == (ctypes.sizeof(t) if t else 0), name
        assert C.ARGTYPE[v] is t


def test_constants_match_reference():
    bad = [f"{n}: library {getattr(K, n, None)!r}, reference {v}"
           for n, v in REF_CONSTANTS.items() if getattr(K, n, None) != v]
    assert not bad, "\n".join(bad)
    assert K.AF_INET6 == socket.AF_INET6 == 10
    assert len(K.PFRES_NAMES) == K.PFRES_MAX and len(K.LCNT_NAMES) == K.LCNT_MAX


def test_pf_addr_helpers():
    a = S.pf_addr.of("192.0.2.7")
    assert bytes(a.addr8[:4]) == bytes([192, 0, 2, 7]) and a.addr32[1] == 0
    assert a.v4.s_addr == int.from_bytes(bytes([192, 0, 2, 7]), "little")
    assert a.ip(K.AF_INET) == ipaddress.ip_address("192.0.2.7")
    b = S.pf_addr.of(ipaddress.ip_address("2001:db8::1"))
    assert b.ip(K.AF_INET6) == b.ip(K.AF_INET6_BSD) == ipaddress.ip_address("2001:db8::1")
    assert bytes(b.v6.s6_addr)[:2] == b"\x20\x01"
    w = S.pf_addr_wrap()
    w.v.a.addr.set("10.0.0.1")
    assert w.to_bytes()[:4] == bytes([10, 0, 0, 1])
    r = S.pfr_addr.of("10.1.0.0/16")
    assert (r.pfra_af, r.pfra_net, r.network()) == (K.AF_INET, 16, ipaddress.ip_network("10.1.0.0/16"))
    assert bytes(r.pfra_ip4addr)[:2] == bytes([10, 1])
    st = S.pfioc_states()
    st.ps_buf = 0x1234
    assert st.ps_u.psu_buf == 0x1234 == st.ps_states
    t = S.pfioc_table()
    t.pfrio_setflag, t.pfrio_clrflag = 3, 4
    assert (t.pfrio_size2, t.pfrio_nadd, t.pfrio_nzero) == (3, 4, 4)
    assert S.pf_status.from_bytes(bytes(416)).running == 0


# ------------------------------------------------------------------------------------------
# Part 2: against gcc's view of the header
# ------------------------------------------------------------------------------------------

def _int_constants():
    return {n: getattr(K, n) for n in K.__all__ if isinstance(getattr(K, n), int)}


def _header_commands():
    cmds = dict(C.COMMANDS)
    cmds.update(C.BSD_IO)
    cmds.update({a: C.COMMANDS[t] for a, t in C.ALIASES.items()})
    return cmds


@pytest.fixture(scope="module")
def header_probe():
    assert os.path.exists(HEADER), f"{HEADER} is missing"
    items = probe.build_items(S.all_structs(), _header_commands(), _int_constants())
    return probe.run_probe(items, HEADER_DIR)


def test_struct_layout_matches_header(header_probe):
    bad = probe.mismatches(header_probe, kinds=("size", "member"))
    checked = sum(1 for it in header_probe.items if it.kind in ("size", "member"))
    assert not bad, f"{len(bad)} of {checked} layout checks differ:\n" + "\n".join(bad)


def test_commands_match_header(header_probe):
    # every command of the library must be in the header with the same value; the unversioned
    # ALTQ aliases only where the header defines them
    res = header_probe
    items = [it for it in res.items
             if it.kind == "cmd" and not (it.key in C.ALIASES and it.key in res.missing)]
    sub = probe.Result(got=res.got, missing=res.missing, items=items)
    bad = probe.mismatches(sub, kinds=("cmd",))
    assert not bad, "\n".join(bad)


def test_constants_match_header(header_probe):
    # constants the header also defines must agree; ones it lacks are only listed
    bad = probe.mismatches(header_probe, kinds=("const",), missing_kinds=())
    missing = sorted(k for k in header_probe.missing if k in _int_constants())
    if missing:
        print(f"constants not in the header ({len(missing)}): {' '.join(missing)}")
    assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def fake_header(tmp_path_factory):
    """A header generated from the library itself (+ Linux's own _IO/_IOWR macros)."""
    def make(overrides=None, structs=None):
        d = tmp_path_factory.mktemp("hdr")
        (d / "net").mkdir()
        macros = {name: (("_IOWR", nr, _c_arg(t)) if t else ("_IO", nr, None)) for name, nr, t in C.TABLE}
        text = cgen.header(structs or S.all_structs(), C.COMMANDS, {"PF_MAXPATHLEN": 1024},
                           overrides=overrides, command_macros=macros)
        (d / "net" / "pfvar.h").write_text(text)
        return d
    return make


def _c_arg(t):
    return "u_int32_t" if t is ctypes.c_uint32 else f"struct {t.__name__}"


def test_probe_self_check_clean(fake_header):
    """The probe agrees with a header made from the library, and Linux's own _IO/_IOWR macros
    give the library's command values."""
    d = fake_header()
    items = probe.build_items(S.all_structs(), C.COMMANDS, {"PF_MAXPATHLEN": 1024})
    res = probe.run_probe(items, d, extra_flags=["-include", "sys/types.h"])
    assert not res.missing, res.missing
    assert not probe.mismatches(res), probe.mismatches(res)
    assert sum(1 for it in items if it.kind == "member") > 900


def test_probe_catches_planted_errors(fake_header):
    """A wrong header member (2-byte sa_family_t in pf_rule, the classic trap) and a wrong
    ctypes field (pfioc_natlook.proto as u16) must both be reported."""
    d = fake_header(overrides={"pf_rule": {"af": "unsigned short af"}})
    items = probe.build_items(S.all_structs(), C.COMMANDS, {})
    res = probe.run_probe(items, d, extra_flags=["-include", "sys/types.h"])
    bad = probe.mismatches(res)
    assert any(b.startswith("pf_rule:af:") for b in bad), bad
    assert any(b.startswith("pf_rule:proto:") for b in bad), bad
    assert any(b.startswith("sizeof pfioc_rule: ctypes 3040, header 3048") for b in bad), bad
    assert any(b.startswith("DIOCADDRULE: ctypes 0xcbe04404, header 0xcbe84404") for b in bad), bad

    wrong_fields = [(n, ctypes.c_uint16 if n == "proto" else t) for n, t in S.pfioc_natlook._fields_]
    wrong = type("pfioc_natlook", (ctypes.Structure,), {"_fields_": wrong_fields})
    d2 = fake_header()
    res2 = probe.run_probe(probe.build_items([wrong], {}, {}), d2, extra_flags=["-include", "sys/types.h"])
    bad2 = probe.mismatches(res2)
    assert any(b.startswith("pfioc_natlook:proto: ctypes offset 74 size 2, header offset 73 size 1") for b in bad2), bad2
    assert any(b.startswith("pfioc_natlook:direction: ctypes offset 76") for b in bad2), bad2

    extra = type("pf_status", (ctypes.Structure,), {"_fields_": S.pf_status._fields_ + [("nosuch", ctypes.c_int)]})
    res3 = probe.run_probe(probe.build_items([extra], {"DIOCNOSUCH": 1}, {}), d2,
                           extra_flags=["-include", "sys/types.h"])
    bad3 = probe.mismatches(res3)
    assert any("pf_status:nosuch: not in header" in b for b in bad3), bad3
    assert any("DIOCNOSUCH: not in header" in b for b in bad3), bad3


# ------------------------------------------------------------------------------------------
# Part 3: PfDevice with a fake kernel behind fcntl.ioctl
# ------------------------------------------------------------------------------------------

class FakeKernel:
    """Answers a few commands the way FreeBSD 12.1 (or OpenBSD 3.x) pf does, writing through
    the caller's pointers like copyout() would."""

    def __init__(self, nifs=0, nstates=0, openbsd=False):
        self.nifs, self.nstates, self.openbsd = nifs, nstates, openbsd
        self.calls = []
        self.timeouts = [0] * K.PFTM_MAX
        self.limits = [0] * K.PF_LIMIT_MAX
        self.debug = self.hostid = None

    def __call__(self, fd, cmd, arg=0, mutate=True):
        self.calls.append(cmd)
        t = C.ARGTYPE.get(C.to_linux(cmd), "none")
        if t == "none":
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        if t is None:
            return 0
        s = t.from_buffer(arg)
        getattr(self, C.name_of(cmd), self._ok)(s)
        return 0

    def _ok(self, s):
        pass

    def DIOCGETSTATUS(self, s):
        s.running, s.states, s.hostid = 1, self.nstates, 0x01020304

    def DIOCSETDEBUG(self, s):
        self.debug = s.value

    def DIOCSETHOSTID(self, s):
        self.hostid = s.value

    def DIOCGETTIMEOUT(self, s):
        if not 0 <= s.timeout < K.PFTM_MAX:
            raise OSError(errno.EINVAL, "bad")
        s.seconds = self.timeouts[s.timeout]

    def DIOCSETTIMEOUT(self, s):
        old, self.timeouts[s.timeout] = self.timeouts[s.timeout], s.seconds
        s.seconds = old

    def DIOCGETLIMIT(self, s):
        s.limit = self.limits[s.index]

    def DIOCSETLIMIT(self, s):
        old, self.limits[s.index] = self.limits[s.index], s.limit
        s.limit = old

    def DIOCNATLOOK(self, s):
        assert s.af == K.AF_INET and s.proto == 6 and s.direction == K.PF_IN
        assert socket.ntohs(s.sport) == 2222 and socket.ntohs(s.dport) == 40000
        assert s.saddr.ip(s.af) == ipaddress.ip_address("198.51.100.1")
        s.rsaddr.set("10.0.0.5")
        s.rsport = socket.htons(22)
        s.rdaddr.set("203.0.113.9")
        s.rdport = socket.htons(40000)

    def DIOCIGETIFACES(self, s):
        etype = S.pfi_if if self.openbsd else S.pfi_kif
        assert s.pfiio_esize == ctypes.sizeof(etype)
        if self.openbsd:
            assert s.pfiio_flags == K.PFI_FLAG_GROUP | K.PFI_FLAG_INSTANCE
        n = min(s.pfiio_size, self.nifs)
        arr = (etype * max(n, 1)).from_address(s.pfiio_buffer)
        for i in range(n):
            name = f"if{i}".encode()
            if self.openbsd:
                arr[i].pfif_name = name
            else:
                arr[i].pfik_name = name
                arr[i].pfik_ifp = 1
        if self.openbsd:
            s.pfiio_size = self.nifs                 # the total
        else:
            s.pfiio_size = s.pfiio_size + 1 if self.nifs > s.pfiio_size else n   # 12.1 quirk

    def DIOCGETSTATES(self, s):
        es = ctypes.sizeof(S.pfsync_state)
        if s.ps_len == 0:
            s.ps_len = es * self.nstates
            return
        n = min(s.ps_len // es, self.nstates)
        arr = (S.pfsync_state * max(n, 1)).from_address(s.ps_buf)
        for i in range(n):
            arr[i].id = i + 1
        s.ps_len = n * es


@pytest.fixture
def fake_dev(monkeypatch):
    def make(**kw):
        k = FakeKernel(**kw)
        monkeypatch.setattr(D.fcntl, "ioctl", k)
        dev = D.PfDevice("/dev/null")
        return dev, k
    return make


def test_device_simple_commands(fake_dev):
    dev, k = fake_dev()
    with dev:
        dev.start()
        dev.stop()
        dev.clear_status()
        assert k.calls[:3] == [C.DIOCSTART, C.DIOCSTOP, C.DIOCCLRSTATUS]
        st = dev.status()
        assert isinstance(st, S.pf_status) and st.running == 1
        dev.set_debug(K.PF_DEBUG_MISC)
        assert k.debug == 2
        dev.set_hostid(0x0a0b0c0d)
        assert k.hostid == socket.htonl(0x0a0b0c0d)
        assert dev.set_timeout(K.PFTM_TCP_ESTABLISHED, 3600) == 0
        assert dev.set_timeout(K.PFTM_TCP_ESTABLISHED, 7200) == 3600
        assert dev.get_timeout(K.PFTM_TCP_ESTABLISHED) == 7200
        assert dev.set_limit(K.PF_LIMIT_STATES, 5000) == 0
        assert dev.get_limit(K.PF_LIMIT_STATES) == 5000
        dev.set_status_interface("eth0")
        with pytest.raises(OSError) as ei:
            dev.get_timeout(99)
        assert ei.value.errno == errno.EINVAL and "DIOCGETTIMEOUT" in str(ei.value)
        with pytest.raises(ValueError):
            dev.ioctl(C.DIOCGETSTATUS, S.pfioc_tm())
    assert dev.closed


def test_device_bsd_io(fake_dev):
    dev, k = fake_dev()
    dev.bsd_io = True
    dev.start()
    dev.ioctl(C.DIOCCLRSRCNODES)
    assert k.calls == [C.DIOCSTART_BSD, C.DIOCCLRSRCNODES_BSD]


def test_device_natlook(fake_dev):
    dev, _ = fake_dev()
    r = dev.natlook(K.AF_INET, socket.IPPROTO_TCP, "198.51.100.1", 2222, "203.0.113.9", 40000, K.PF_IN)
    assert r == (ipaddress.ip_address("10.0.0.5"), 22, ipaddress.ip_address("203.0.113.9"), 40000)


@pytest.mark.parametrize("nifs", [0, 1, 63, 64, 65, 200])
def test_device_interfaces_freebsd_quirk(fake_dev, nifs):
    dev, k = fake_dev(nifs=nifs)
    ifs = dev.interfaces()
    assert [i.name for i in ifs] == [f"if{i}" for i in range(nifs)]
    assert all(isinstance(i, S.pfi_kif) and i.pfik_ifp for i in ifs)


@pytest.mark.parametrize("nifs", [0, 5, 300])
def test_device_interfaces_openbsd(fake_dev, nifs):
    dev, k = fake_dev(nifs=nifs, openbsd=True)
    ifs = dev.interfaces(esize=184)
    assert [i.name for i in ifs] == [f"if{i}" for i in range(nifs)]
    assert all(isinstance(i, S.pfi_if) for i in ifs)


@pytest.mark.parametrize("nstates", [0, 1, 1000])
def test_device_get_states(fake_dev, nstates):
    dev, k = fake_dev(nstates=nstates)
    states = dev.get_states()
    assert [s.id for s in states] == list(range(1, nstates + 1))
    assert all(isinstance(s, S.pfsync_state) for s in states)


def test_device_get_states_growing(fake_dev):
    """States added between the size query and the copy: the loop grows until all fit."""
    dev, k = fake_dev(nstates=10)
    orig = k.DIOCGETSTATES

    def growing(s):
        q = s.ps_len == 0
        orig(s)
        if q:
            k.nstates = 100
    k.DIOCGETSTATES = growing
    assert len(dev.get_states()) == 100
