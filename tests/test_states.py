"""The state table and its ioctls (DIOCADDSTATE, GETSTATE, GETSTATES, KILLSTATES, CLRSTATES,
NATLOOK on imported states, GETSRCNODES, CLRSRCNODES, KILLSRCNODES) against a live pfd, with
FreeBSD 12.1's semantics, errnos and byte orders (pf-abi.md §1, H8, §2.9-2.11); what no ioctl
can set up (counters, source nodes) in process; the C API the datapath cimports."""
import ctypes
import errno
import os
import random
import socket
import subprocess

import pytest

from conftest import Pfd, compile_c
from seeds import natlook_example
from states_helpers import (AF_INET6_BSD, BULK_IMPORT_C, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
                            Local, add, be64, build_capi, bulk_import, clear, errno_of, ids,
                            kill, make_state, rule_addr)
from pfkern.client import (AF_INET, AF_INET6, DIOCADDSTATE, DIOCCLRSRCNODES, DIOCGETSRCNODES,
                           DIOCGETSTATE, DIOCGETSTATES, DIOCKILLSRCNODES,
                           FCNT_STATE_INSERT, FCNT_STATE_REMOVALS, FCNT_STATE_SEARCH, PF_IN,
                           PF_INOUT, PF_LIMIT_SRC_NODES, PF_LIMIT_STATES, PF_OP_EQ, PF_OP_GE,
                           PF_OP_GT, PF_OP_IRG, PF_OP_LE, PF_OP_LT, PF_OP_NE, PF_OP_RRG,
                           PF_OP_XRG, PF_OUT, PFSTATE_ACK, PFSTATE_SLOPPY,
                           PFSYNC_SCRUB_FLAG_VALID, PFTM_MAX, PFTM_TCP_ESTABLISHED,
                           PFTM_UDP_SINGLE, SCNT_SRC_NODE_INSERT, SCNT_SRC_NODE_REMOVALS,
                           PfDevice, pf_src_node, pfioc_src_node_kill,
                           pfioc_src_nodes, pfioc_state, pfioc_states, pfsync_state)
from pfkern.pf_ioctl_state import regions_src_nodes, regions_states

PFSS_TIMESTAMP = 0x0001     # pfsync_state_scrub.pfss_flags (not in the client's constants)
WILD = 0xdead0000          # a user address nothing maps in the test process
NAT_WIRE = (("198.51.100.7", 4321), ("192.0.2.1", 8080))      # external peer -> gateway
NAT_STACK = (("198.51.100.7", 4321), ("10.0.0.5", 80))         # external peer -> internal host


@pytest.fixture
def dev(module_pfd):
    with PfDevice(module_pfd.path, "rw") as d:
        clear(d)
        yield d
        clear(d)


@pytest.fixture
def rodev(module_pfd):
    with PfDevice(module_pfd.path, "r") as d:
        yield d


def get_state(dev, id, creatorid):
    ps = pfioc_state()
    ps.state.id = id
    ps.state.creatorid = creatorid
    return dev.ioctl(DIOCGETSTATE, ps).state


def natlook(dev, saddr, sport, daddr, dport, direction, af=AF_INET, proto=IPPROTO_TCP):
    return dev.natlook(af, proto, saddr, sport, daddr, dport, direction)


def udp(i, **kw):
    kw.setdefault("timeout", PFTM_UDP_SINGLE)
    kw.setdefault("id", i)
    return make_state(((f"10.1.0.{i}", 1000 + i), ("10.2.0.1", 53)), proto=IPPROTO_UDP, **kw)


# --- DIOCADDSTATE / DIOCGETSTATE -------------------------------------------------------------

def test_import_and_get_state_round_trip(dev, rodev):
    st = make_state(NAT_WIRE, NAT_STACK, direction=PF_IN, id=0x1122334455, creatorid=0xabcdef01,
                    creation=100, expire=3600, log=1, state_flags=PFSTATE_SLOPPY | PFSTATE_ACK)
    st.src.seqlo, st.src.seqhi, st.src.seqdiff = (socket.htonl(v) for v in (1000, 2000, 77))
    st.src.max_win, st.src.mss, st.src.wscale = socket.htons(65535), socket.htons(1460), 7
    st.dst.seqlo, st.dst.seqhi = socket.htonl(0xfffffff0), socket.htonl(5)
    st.src.scrub.scrub_flag = PFSYNC_SCRUB_FLAG_VALID
    st.src.scrub.pfss_flags = socket.htons(PFSS_TIMESTAMP | 0x80)     # only TIMESTAMP survives
    st.src.scrub.pfss_ttl, st.src.scrub.pfss_ts_mod = 64, socket.htonl(0x12345678)
    st.rt_addr.set("192.0.2.254")
    add(dev, st)
    got = get_state(rodev, st.id, st.creatorid)        # GETSTATE is allowed read-only
    assert got.id == st.id and got.creatorid == st.creatorid
    assert bytes(got.key[0].addr[0].addr8) == bytes(st.key[0].addr[0].addr8)
    assert [socket.ntohs(p) for p in got.key[0].port] == [4321, 8080]
    assert got.key[1].addr[1].ip(AF_INET).compressed == "10.0.0.5"
    assert [socket.ntohs(p) for p in got.key[1].port] == [4321, 80]
    assert got.ifname == b"all" and got.af == AF_INET and got.proto == IPPROTO_TCP
    assert got.direction == PF_IN and got.log == 1 and got.timeout == PFTM_TCP_ESTABLISHED
    assert got.state_flags == PFSTATE_SLOPPY                   # ACK is cleared on import
    assert socket.ntohl(got.src.seqlo) == 1000 and socket.ntohl(got.src.seqhi) == 2000
    assert socket.ntohl(got.src.seqdiff) == 77 and socket.ntohl(got.dst.seqlo) == 0xfffffff0
    assert socket.ntohs(got.src.max_win) == 65535 and socket.ntohs(got.src.mss) == 1460
    assert got.src.wscale == 7 and got.src.state == 4
    assert got.src.scrub.scrub_flag == PFSYNC_SCRUB_FLAG_VALID
    assert socket.ntohs(got.src.scrub.pfss_flags) == PFSS_TIMESTAMP
    assert got.src.scrub.pfss_ttl == 64 and socket.ntohl(got.src.scrub.pfss_ts_mod) == 0x12345678
    assert got.dst.scrub.scrub_flag == 0
    assert got.rt_addr.ip(AF_INET).compressed == "192.0.2.254"
    # rule numbers: no rules own states yet, so the default rule (-1), no anchor, no nat rule
    assert got.rule == got.anchor == got.nat_rule == 0xffffffff
    assert 100 <= socket.ntohl(got.creation) <= 102             # age, network order
    assert 3597 <= socket.ntohl(got.expire) <= 3600             # seconds left, network order
    assert got.sync_flags == 0 and got.updates == 0
    assert [list(p) for p in got.packets] == [[0, 0], [0, 0]]   # pfsync does not carry counters


def test_expire_zero_means_a_full_timeout(dev):
    st = udp(1, expire=0)
    add(dev, st)
    assert 29 <= socket.ntohl(get_state(dev, st.id, st.creatorid).expire) <= 30


def test_id_byte_order_is_htobe64(dev):
    st = make_state(NAT_WIRE, id=0x0102030405060708, creatorid=0x01020304)
    add(dev, st)
    raw = get_state(dev, st.id, st.creatorid).to_bytes()
    assert raw[0:8] == bytes.fromhex("0102030405060708")       # big-endian in memory
    assert raw[228:232] == bytes.fromhex("01020304")           # creatorid as pfctl HTONLs it


def test_get_state_enoent(dev):
    add(dev, udp(1, creatorid=5))
    assert errno_of(get_state, dev, be64(2), socket.htonl(5)) == errno.ENOENT
    assert errno_of(get_state, dev, be64(1), socket.htonl(6)) == errno.ENOENT
    assert errno_of(get_state, dev, 1, socket.htonl(5)) == errno.ENOENT    # not byte-swapped


def test_addstate_needs_a_writable_fd(dev, rodev):
    assert errno_of(add, rodev, udp(1)) == errno.EACCES
    assert dev.get_states() == []


@pytest.mark.parametrize("change", [
    dict(timeout=PFTM_MAX), dict(timeout=255), dict(creatorid=0), dict(ifname="nosuchif0"),
    dict(ifname=""), dict(af=99), dict(af=0), dict(direction=3), dict(src_state=13),
    dict(dst_state=200)])
def test_addstate_einval(dev, change):
    add(dev, udp(50))
    before = dev.get_states()
    assert errno_of(add, dev, udp(1, **change)) == errno.EINVAL
    assert ids(dev.get_states()) == ids(before)


def test_addstate_bsd_inet6_family_is_accepted(dev):
    st = make_state((("2001:db8::1", 5000), ("2001:db8::2", 443)), af=AF_INET6_BSD)
    add(dev, st)
    assert get_state(dev, st.id, st.creatorid).af == AF_INET6


def test_addstate_known_interface_binds_the_state(dev):
    st = udp(1, ifname="lo")
    add(dev, st)
    assert get_state(dev, st.id, st.creatorid).ifname == b"lo"


def test_addstate_eexist_same_key_interface_direction(dev):
    add(dev, udp(1))
    # same key, interface and direction: a collision, whatever the id
    assert errno_of(add, dev, udp(1, id=2)) == errno.EEXIST
    # the same key is fine on another interface or in the other direction
    add(dev, udp(1, id=3, ifname="lo"))
    add(dev, udp(1, id=4, direction=PF_IN))
    # same id and creatorid on another key: an id collision
    assert errno_of(add, dev, udp(9, id=1)) == errno.EEXIST
    assert sorted(s.id for s in dev.get_states()) == sorted(be64(i) for i in (1, 3, 4))


def test_addstate_replaces_a_closed_tcp_state(dev):
    """pf_state_key_attach: a TCP state past FIN_WAIT_2 on both sides gives way."""
    add(dev, make_state(NAT_WIRE, id=1, src_state=10, dst_state=10))
    add(dev, make_state(NAT_WIRE, id=2))
    assert [s.id for s in dev.get_states()] == [be64(2)]
    assert errno_of(add, dev, make_state(NAT_WIRE, id=3, src_state=10, dst_state=3)) == errno.EEXIST


def test_addstate_states_limit_is_enomem(dev):
    old = dev.set_limit(PF_LIMIT_STATES, 3)
    try:
        for i in range(3):
            add(dev, udp(i + 1))
        assert errno_of(add, dev, udp(4)) == errno.ENOMEM
        assert len(dev.get_states()) == 3
    finally:
        dev.set_limit(PF_LIMIT_STATES, old)


def test_fcounters_and_status_states(dev):
    st0 = dev.status()
    add(dev, udp(1))
    add(dev, udp(2))
    get_state(dev, be64(1), socket.htonl(1))
    kill(dev, id=be64(2), creatorid=socket.htonl(1))
    st1 = dev.status()
    assert st1.states == 1
    assert st1.fcounters[FCNT_STATE_INSERT] - st0.fcounters[FCNT_STATE_INSERT] == 2
    assert st1.fcounters[FCNT_STATE_REMOVALS] - st0.fcounters[FCNT_STATE_REMOVALS] == 1
    assert st1.fcounters[FCNT_STATE_SEARCH] - st0.fcounters[FCNT_STATE_SEARCH] == 2


# --- DIOCGETSTATES ---------------------------------------------------------------------------

def getstates(dev, length, buf=None):
    io = pfioc_states(ps_len=length)
    io.ps_buf = buf if isinstance(buf, int) or buf is None else ctypes.addressof(buf)
    return dev.ioctl(DIOCGETSTATES, io)


def test_getstates_size_query_and_partial_reads(dev, rodev):
    for i in range(5):
        add(dev, udp(i + 1))
    assert getstates(rodev, 0).ps_len == 5 * 242
    assert getstates(rodev, -1).ps_len == 5 * 242        # negative: the size query too
    buf = ctypes.create_string_buffer(5 * 242)
    assert getstates(rodev, 2 * 242 + 241, buf).ps_len == 2 * 242      # whole states only
    assert getstates(rodev, 100, buf).ps_len == 0
    assert getstates(rodev, 0x7fffffff, buf).ps_len == 5 * 242        # huge: all there are
    got = [pfsync_state.from_bytes(buf.raw[i * 242:(i + 1) * 242]) for i in range(5)]
    assert [s.id for s in got] == [be64(i + 1) for i in range(5)]     # insertion order


def test_getstates_bad_buffer_is_efault_and_struct_unchanged(dev):
    add(dev, udp(1))
    io = pfioc_states(ps_len=242)
    io.ps_buf = 0
    assert errno_of(dev.ioctl, DIOCGETSTATES, io) == errno.EFAULT
    assert io.ps_len == 242
    io.ps_buf = WILD
    assert errno_of(dev.ioctl, DIOCGETSTATES, io) == errno.EFAULT
    # nothing to copy: no fault (FreeBSD copies out 0 bytes)
    clear(dev)
    assert getstates(dev, 242, 0).ps_len == 0


def test_getstates_regions():
    io = pfioc_states(ps_len=4840)
    io.ps_buf = 0x1000
    assert regions_states(io.to_bytes()) == [(0x1000, 4840, 2)]
    assert regions_states(pfioc_states(ps_len=0).to_bytes()) == []
    assert regions_states(pfioc_states(ps_len=-5).to_bytes()) == []
    assert regions_states(b"\x01") == []
    io = pfioc_src_nodes(psn_len=136)
    io.psn_buf = 0x2000
    assert regions_src_nodes(io.to_bytes()) == [(0x2000, 136, 2)]
    assert regions_src_nodes(pfioc_src_nodes(psn_len=-1).to_bytes()) == []


def test_hundred_thousand_states_read_back(module_pfd, dev, tmp_path):
    """The default limit's worth of states, read with pfctl's size-query-and-grow loop (24 MB,
    far past what one CUSE retry carries)."""
    binary = compile_c(BULK_IMPORT_C, str(tmp_path), "bulk")
    assert bulk_import(binary, module_pfd.path, 100000, creatorid=9) == (100000, 0)
    assert bulk_import(binary, module_pfd.path, 1, creatorid=9, base=200000) == (0, errno.ENOMEM)
    assert dev.status().states == 100000
    states = dev.get_states()
    assert len(states) == 100000
    assert sorted(socket.ntohl(s.key[0].addr[0].v4.s_addr) - 0x0a000000 for s in states) == \
        list(range(100000))
    assert {s.id for s in states} == {be64(i + 1) for i in range(100000)}
    assert all(s.creatorid == socket.htonl(9) for s in states[:1000])
    assert clear(dev) == 100000
    assert dev.get_states() == []


# --- counters and adaptive expiry (in process: no ioctl counts packets) ----------------------

def test_exported_counters_are_high_low_network_order():
    local = Local()
    st = udp(1)
    local.ioctl(DIOCADDSTATE, pfioc_state(state=st))
    assert local.states.account(st.id, st.creatorid, 0, 3, 0x60000000)     # 3 packets
    assert local.states.account(st.id, st.creatorid, 1, 1, 40)
    got = local.ioctl(DIOCGETSTATE, pfioc_state(state=st)).state
    assert [socket.ntohl(v) for v in got.packets[0]] == [0, 3]
    assert [socket.ntohl(v) for v in got.packets[1]] == [0, 1]
    assert [socket.ntohl(v) for v in got.bytes[0]] == [1, 0x20000000]         # 0x1_2000_0000
    assert [socket.ntohl(v) for v in got.bytes[1]] == [0, 40]
    assert local.states.account(st.id, 12345, 0, 1, 1) is False


def test_adaptive_timeouts_scale_the_exported_expire():
    """pf_state_expires: between adaptive.start and .end states, timeouts shrink linearly."""
    local = Local()
    local.core.set_timeout(16, 2)       # PFTM_ADAPTIVE_START
    local.core.set_timeout(17, 6)       # PFTM_ADAPTIVE_END
    for i in range(4):
        local.ioctl(DIOCADDSTATE, pfioc_state(state=udp(i + 1, expire=0)))
    # 4 states: timeout * (6 - 4) / (6 - 2) = half of 30 s
    got = local.ioctl(DIOCGETSTATE, pfioc_state(state=udp(1))).state
    assert 14 <= socket.ntohl(got.expire) <= 15
    for i in range(2):
        local.ioctl(DIOCADDSTATE, pfioc_state(state=udp(i + 5)))
    got = local.ioctl(DIOCGETSTATE, pfioc_state(state=udp(1))).state
    assert got.expire == 0                                   # at the end: expired now


# --- DIOCKILLSTATES ---------------------------------------------------------------------------

def test_kill_by_id(dev):
    add(dev, udp(1, creatorid=7))
    add(dev, udp(2, creatorid=7))
    psk = kill(dev, id=be64(1), creatorid=socket.htonl(7), killed=55)
    assert psk.psk_killed == 1
    psk = kill(dev, id=be64(1), creatorid=socket.htonl(7), killed=55)
    assert psk.psk_killed == 55                      # not found: left as the caller set it
    assert [s.id for s in dev.get_states()] == [be64(2)]


def test_kill_by_id_creatorid_zero_is_our_hostid(dev):
    hostid = dev.status().hostid
    add(dev, udp(1, creatorid=socket.ntohl(hostid)))
    add(dev, udp(2, creatorid=socket.ntohl(hostid) ^ 1))
    psk = kill(dev, id=be64(1), creatorid=0)
    assert psk.psk_killed == 1 and psk.psk_pfcmp.creatorid == hostid     # written back
    assert kill(dev, id=be64(2), creatorid=0).psk_killed == 0
    assert len(dev.get_states()) == 1


def kill_count(dev, **kw):
    return kill(dev, **kw).psk_killed


def conn(src, dst, direction=PF_OUT, **kw):
    """A state for a connection src -> dst: its wire key holds the initiator at [1] for
    PF_OUT states and at [0] for PF_IN ones (pf_test's sidx/didx)."""
    wire = (dst, src) if direction == PF_OUT else (src, dst)
    return make_state(wire, direction=direction, **kw)


def populate(dev):
    """Six states: 4 IPv4 TCP/UDP (one PF_IN, one bound to lo) and 2 IPv6."""
    add(dev, conn(("10.0.0.1", 1000), ("192.0.2.10", 80), id=1))
    add(dev, conn(("10.0.0.2", 2000), ("192.0.2.10", 443), id=2, ifname="lo"))
    add(dev, conn(("10.0.1.3", 3000), ("192.0.2.20", 53), id=3, proto=IPPROTO_UDP,
                  timeout=PFTM_UDP_SINGLE))
    add(dev, conn(("203.0.113.9", 5555), ("10.0.0.1", 22), PF_IN, id=4))
    add(dev, conn(("2001:db8::1", 4000), ("2001:db8:1::2", 80), id=5))
    add(dev, conn(("2001:db8::2", 4001), ("2001:db8:1::2", 80), id=6, proto=IPPROTO_UDP,
                  timeout=PFTM_UDP_SINGLE))


@pytest.mark.parametrize("criteria, killed", [
    (dict(), [1, 2, 3, 4, 5, 6]),
    (dict(af=AF_INET), [1, 2, 3, 4]),
    (dict(af=AF_INET6), [5, 6]),
    (dict(af=AF_INET6_BSD), [5, 6]),
    (dict(proto=IPPROTO_UDP), [3, 6]),
    (dict(af=AF_INET, proto=IPPROTO_TCP), [1, 2, 4]),
    (dict(proto=IPPROTO_ICMP), []),
    (dict(src=rule_addr("10.0.0.1")), [1]),
    (dict(src=rule_addr("10.0.0.0", 24)), [1, 2]),
    (dict(src=rule_addr("10.0.0.0", 16)), [1, 2, 3]),
    (dict(af=AF_INET, src=rule_addr("10.0.0.0", 24, neg=1)), [3, 4]),
    (dict(dst=rule_addr("192.0.2.10")), [1, 2]),
    (dict(dst=rule_addr("192.0.2.0", 24), src=rule_addr("10.0.1.3")), [3]),
    # PF_IN states: src is the remote initiator (wire addr[0]), dst us
    (dict(src=rule_addr("203.0.113.9")), [4]),
    (dict(dst=rule_addr("10.0.0.1"), af=AF_INET), [4]),
    (dict(src=rule_addr("2001:db8::", 64)), [5, 6]),
    (dict(src=rule_addr("2001:db8::2")), [6]),
    (dict(dst=rule_addr("2001:db8:1::", 48, neg=1), af=AF_INET6), []),
    (dict(dst=rule_addr(op=PF_OP_EQ, ports=(80, 0))), [1, 5, 6]),
    (dict(dst=rule_addr(op=PF_OP_NE, ports=(80, 0))), [2, 3, 4]),
    (dict(dst=rule_addr(op=PF_OP_LT, ports=(80, 0))), [3, 4]),
    (dict(dst=rule_addr(op=PF_OP_LE, ports=(80, 0))), [1, 3, 4, 5, 6]),
    (dict(dst=rule_addr(op=PF_OP_GT, ports=(80, 0))), [2]),
    (dict(dst=rule_addr(op=PF_OP_GE, ports=(443, 0))), [2]),
    (dict(src=rule_addr(op=PF_OP_IRG, ports=(1000, 3000))), [2]),
    (dict(src=rule_addr(op=PF_OP_RRG, ports=(1000, 3000))), [1, 2, 3]),
    (dict(src=rule_addr(op=PF_OP_XRG, ports=(1000, 4000))), [4, 6]),
    (dict(src=rule_addr(op=PF_OP_EQ, ports=(5555, 0))), [4]),
    (dict(ifname="lo"), [2]),
    (dict(ifname="all"), [1, 3, 4, 5, 6]),
    (dict(ifname="eth0"), []),
    (dict(label="web"), []),            # no state has a rule label yet
])
def test_kill_states_by_criteria(dev, criteria, killed):
    populate(dev)
    assert kill_count(dev, **criteria) == len(killed)
    left = {socket.ntohl(s.id >> 32) for s in dev.get_states()}      # be64(i) >> 32 == htonl(i)
    assert left == {1, 2, 3, 4, 5, 6} - set(killed)


def test_kill_needs_a_writable_fd(rodev):
    assert errno_of(kill, rodev) == errno.EACCES


# --- DIOCCLRSTATES ----------------------------------------------------------------------------

def test_clear_states_honours_only_the_interface(dev):
    from pfkern.client import DIOCCLRSTATES
    populate(dev)
    # everything but psk_ifname is ignored
    assert kill(dev, af=AF_INET6, proto=IPPROTO_ICMP, src=rule_addr("1.2.3.4"), ifname="lo",
                cmd=DIOCCLRSTATES).psk_killed == 1
    assert kill(dev, ifname="eth0", cmd=DIOCCLRSTATES).psk_killed == 0
    assert kill(dev, af=AF_INET6, cmd=DIOCCLRSTATES).psk_killed == 5
    assert dev.get_states() == []


def test_clear_states_all_names_the_floating_states(dev):
    populate(dev)
    assert clear(dev, "all") == 5
    assert [s.ifname for s in dev.get_states()] == [b"lo"]


# --- DIOCNATLOOK on imported states -----------------------------------------------------------

def test_natlook_rdr_state_inbound_finds_the_internal_host(dev, rodev):
    """pf(4)'s example: a proxy asks, with the gateway address it was connected to and the
    external peer, where pf sent the connection."""
    add(dev, make_state(NAT_WIRE, NAT_STACK, direction=PF_IN))
    assert natlook(rodev, "192.0.2.1", 8080, "198.51.100.7", 4321, PF_IN) == \
        (ipaddr("10.0.0.5"), 80, ipaddr("198.51.100.7"), 4321)
    # PF_IN searches wire keys only: the stack key's pair is not found that way
    assert errno_of(natlook, rodev, "10.0.0.5", 80, "198.51.100.7", 4321, PF_IN) == errno.ENOENT


def test_natlook_nat_state_outbound(dev, rodev):
    """Outbound NAT 10.0.0.5:1234 -> 198.51.100.7:80 leaving as 192.0.2.1:50000: PF_OUT
    states key [1] = source side; PF_OUT natlook walks stack keys and answers the wire key."""
    wire = (("198.51.100.7", 80), ("192.0.2.1", 50000))
    stack = (("198.51.100.7", 80), ("10.0.0.5", 1234))
    add(dev, make_state(wire, stack, direction=PF_OUT))
    assert natlook(rodev, "198.51.100.7", 80, "10.0.0.5", 1234, PF_OUT) == \
        (ipaddr("198.51.100.7"), 80, ipaddr("192.0.2.1"), 50000)
    assert errno_of(natlook, rodev, "198.51.100.7", 80, "192.0.2.1", 50000, PF_OUT) == errno.ENOENT


def test_natlook_ipv4_answer_writes_four_bytes(dev, rodev):
    """PF_ACPY copies an IPv4 address's 4 bytes: the rest of the caller's pf_addr stays."""
    import ipaddress as _ip
    from pfkern.client import DIOCNATLOOK, pfioc_natlook
    add(dev, make_state(NAT_WIRE, NAT_STACK, direction=PF_IN))
    nl = pfioc_natlook(af=AF_INET, proto=IPPROTO_TCP, direction=PF_IN,
                       sport=socket.htons(8080), dport=socket.htons(4321))
    nl.saddr.set(_ip.ip_address("192.0.2.1"))
    nl.daddr.set(_ip.ip_address("198.51.100.7"))
    ctypes.memset(ctypes.addressof(nl.rsaddr), 0x5A, 32)
    rodev.ioctl(DIOCNATLOOK, nl)
    raw = ctypes.string_at(ctypes.addressof(nl.rsaddr), 32)
    assert raw[:4] == _ip.ip_address("10.0.0.5").packed and raw[4:16] == b"\x5a" * 12
    assert raw[16:20] == _ip.ip_address("198.51.100.7").packed and raw[20:] == b"\x5a" * 12


def test_natlook_two_matching_states_is_e2big(dev, rodev):
    add(dev, make_state(NAT_WIRE, NAT_STACK, direction=PF_IN, id=1))
    add(dev, make_state(NAT_WIRE, NAT_STACK, direction=PF_IN, id=2, ifname="lo"))
    assert errno_of(natlook, rodev, "192.0.2.1", 8080, "198.51.100.7", 4321, PF_IN) == errno.E2BIG
    kill(dev, id=be64(2), creatorid=socket.htonl(1))
    assert natlook(rodev, "192.0.2.1", 8080, "198.51.100.7", 4321, PF_IN)[1] == 80


def test_natlook_inout_walks_both_lists(dev, rodev):
    """PF_INOUT walks wire then stack lists: an untranslated state sits on both, so FreeBSD
    counts it twice (E2BIG); a translated one is found once."""
    add(dev, make_state((("10.9.9.9", 1), ("10.8.8.8", 2)), id=1))
    assert errno_of(natlook, rodev, "10.9.9.9", 1, "10.8.8.8", 2, PF_INOUT) == errno.E2BIG
    add(dev, make_state(NAT_WIRE, NAT_STACK, direction=PF_IN, id=2))
    assert natlook(rodev, "198.51.100.7", 4321, "192.0.2.1", 8080, PF_INOUT)[0] == \
        ipaddr("198.51.100.7")


def test_natlook_ipv6(dev, rodev):
    wire = (("2001:db8::7", 4321), ("2001:db8:ffff::1", 8080))
    stack = (("2001:db8::7", 4321), ("fd00::5", 80))
    add(dev, make_state(wire, stack, direction=PF_IN))
    assert natlook(rodev, "2001:db8:ffff::1", 8080, "2001:db8::7", 4321, PF_IN, af=AF_INET6)[:2] \
        == (ipaddr("fd00::5"), 80)
    assert natlook(rodev, "2001:db8:ffff::1", 8080, "2001:db8::7", 4321, PF_IN,
                   af=AF_INET6_BSD)[1] == 80


def ipaddr(s):
    import ipaddress
    return ipaddress.ip_address(s)


def test_seed_natlook_example_prints_the_internal_host(tmp_path):
    """The pf(4) DIOCNATLOOK example, compiled as printed, run on /dev/pf in a private mount
    namespace after a rdr state was imported there."""
    binary = compile_c(natlook_example(), str(tmp_path), "natlook")
    daemon = Pfd("/dev/pf", netns_wrapper=["unshare", "--mount", "--propagation", "private"])
    here = os.path.dirname(os.path.abspath(__file__))
    importer = (f"import sys\n"
                f"sys.path[:0] = [{here!r}, {os.path.dirname(here)!r}]\n"
                f"from states_helpers import make_state, add\n"
                f"from pfkern.client import PfDevice, PF_IN\n"
                f"with PfDevice('/dev/pf') as d:\n"
                f"    add(d, make_state({NAT_WIRE!r}, {NAT_STACK!r}, direction=PF_IN))\n")
    try:
        daemon.wait_ready()
        ns = ["nsenter", "-t", str(daemon.proc.pid), "-m"]
        res = subprocess.run([*ns, "python3", "-c", importer], capture_output=True, text=True,
                             timeout=30)
        assert res.returncode == 0, res.stderr
        res = subprocess.run([*ns, binary, "192.0.2.1", "8080", "198.51.100.7", "4321"],
                             capture_output=True, text=True, timeout=20)
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert res.returncode == 0, res.stderr
    assert res.stdout == "internal host 10.0.0.5:80\n"


# --- hostile inputs ---------------------------------------------------------------------------

def test_garbage_imports_leave_the_table_unchanged(dev):
    populate(dev)
    before = ids(dev.get_states())
    rng = random.Random(4321)
    refused = 0
    for i in range(300):
        st = pfsync_state.from_bytes(bytes(rng.getrandbits(8) for _ in range(242)))
        if i % 2:
            st.ifname = b"all"          # past the interface check, into the value checks
            st.timeout = rng.randrange(PFTM_MAX)
            st.creatorid |= 1
        e = errno_of(add, dev, st)
        assert e in (0, errno.EINVAL, errno.EEXIST), e
        if e:
            refused += 1
            assert ids(dev.get_states()) == before
        else:
            kill(dev, id=st.id, creatorid=st.creatorid)     # a well-formed one by chance
    assert refused > 250


def test_getstates_hostile_lengths(dev):
    add(dev, udp(1))
    for length in (-1, -0x80000000):
        assert getstates(dev, length, WILD).ps_len == 242          # size query, no copy
    assert errno_of(getstates, dev, 0x7fffffff, 0) == errno.EFAULT
    assert errno_of(getstates, dev, 0x7fffffff, WILD) == errno.EFAULT
    assert len(dev.get_states()) == 1


def test_kill_garbage_never_kills_more_than_it_says(dev):
    populate(dev)
    rng = random.Random(99)
    from pfkern.client import DIOCKILLSTATES, pfioc_state_kill
    for _ in range(200):
        psk = pfioc_state_kill.from_bytes(bytes(rng.getrandbits(8) for _ in range(224)))
        if rng.random() < 0.5:
            psk.psk_pfcmp.id = 0
        before = len(dev.get_states())
        dev.ioctl(DIOCKILLSTATES, psk)
        after = len(dev.get_states())
        if psk.psk_pfcmp.id == 0:
            assert before - after == psk.psk_killed
        else:
            assert before == after          # a random id matches nothing


# --- source nodes -----------------------------------------------------------------------------

def getsrcnodes(dev, length, buf=None):
    io = pfioc_src_nodes(psn_len=length)
    io.psn_buf = buf if isinstance(buf, int) or buf is None else ctypes.addressof(buf)
    return dev.ioctl(DIOCGETSRCNODES, io)


def test_src_node_ioctls_on_an_empty_table(dev, rodev):
    assert getsrcnodes(rodev, 0).psn_len == 0
    assert getsrcnodes(rodev, -1).psn_len == 0
    assert rodev.get_src_nodes() == []
    dev.ioctl(DIOCCLRSRCNODES)
    psnk = dev.ioctl(DIOCKILLSRCNODES, pfioc_src_node_kill(psnk_killed=3))
    assert psnk.psnk_killed == 0
    assert errno_of(rodev.ioctl, DIOCCLRSRCNODES) == errno.EACCES
    assert errno_of(rodev.ioctl, DIOCKILLSRCNODES, pfioc_src_node_kill()) == errno.EACCES


def local_src_nodes():
    local = Local()
    v4 = socket.inet_aton
    local.states.add_src_node(AF_INET, v4("10.0.0.1"), v4("192.0.2.1"), rule=3, states=2,
                              ruletype=1, conn_rate=(100, 10, 50, 5), age=60, expire_in=0)
    local.states.add_src_node(AF_INET, v4("10.0.0.2"), v4("192.0.2.2"), rule=0xffffffff,
                              conn_rate=(10, 10, 40, 30), age=5, expire_in=120)
    local.states.add_src_node(AF_INET6, socket.inet_pton(socket.AF_INET6, "2001:db8::1"),
                              rule=1, age=1)
    return local


def test_src_node_export():
    local = local_src_nodes()
    st = local.status()
    assert st.src_nodes == 3 and st.scounters[SCNT_SRC_NODE_INSERT] == 3
    assert getsrcnodes(local, 0).psn_len == 3 * 136
    buf = ctypes.create_string_buffer(3 * 136)
    assert getsrcnodes(local, -1, buf).psn_len == 3 * 136      # negative: clipped to all
    nodes = [pf_src_node.from_bytes(buf.raw[i * 136:(i + 1) * 136]) for i in range(3)]
    a, b, c = nodes
    assert a.addr.ip(AF_INET).compressed == "10.0.0.1" and a.raddr.ip(AF_INET).compressed == "192.0.2.1"
    assert a.rule.nr == 3 and a.states == 2 and a.ruletype == 1 and a.af == AF_INET
    assert 60 <= a.creation <= 61 and a.expire == 0                  # host order: age, left
    assert (a.conn_rate.limit, a.conn_rate.seconds) == (100, 10)
    assert a.conn_rate.count in (25, 20)                      # 50 decayed by 5 (or 6) of 10 s
    assert a.entry.le_next is None and a.kif is None          # kernel pointers are not exported
    assert b.rule.nr == 0xffffffff and 118 <= b.expire <= 120 and b.conn_rate.count == 0
    assert c.af == AF_INET6 and c.addr.ip(AF_INET6).compressed == "2001:db8::1"
    assert getsrcnodes(local, 136 + 135, buf).psn_len == 136
    assert getsrcnodes(local, 100, buf).psn_len == 0
    assert errno_of(getsrcnodes, local, 136, 0) == errno.EFAULT


def test_kill_src_nodes():
    local = local_src_nodes()
    psnk = pfioc_src_node_kill(psnk_src=rule_addr("10.0.0.0", 24), psnk_dst=rule_addr("192.0.2.2"))
    assert local.ioctl(DIOCKILLSRCNODES, psnk).psnk_killed == 1
    psnk = pfioc_src_node_kill(psnk_src=rule_addr("10.0.0.0", 24, neg=1))
    assert local.ioctl(DIOCKILLSRCNODES, psnk).psnk_killed == 1          # the IPv6 node
    assert local.states.src_nodes == 1
    st = local.status()
    assert st.src_nodes == 1 and st.scounters[SCNT_SRC_NODE_REMOVALS] == 2
    local.ioctl(DIOCCLRSRCNODES)
    assert local.states.src_nodes == 0 and local.status().src_nodes == 0


def test_src_nodes_limit():
    local = Local()
    local.core.set_limit(PF_LIMIT_SRC_NODES, 1)
    local.states.add_src_node(AF_INET, socket.inet_aton("10.0.0.1"))
    with pytest.raises(Exception) as info:
        local.states.add_src_node(AF_INET, socket.inet_aton("10.0.0.2"))
    assert getattr(info.value, "errno", None) == errno.ENOMEM


# --- the datapath's C API ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def capi(tmp_path_factory):
    return build_capi(str(tmp_path_factory.mktemp("capi")))


def test_c_api_find_state_prefers_if_bound_and_checks_direction(capi):
    local = Local()
    a0, a1 = socket.inet_aton("10.0.0.1").ljust(16, b"\0"), socket.inet_aton("192.0.2.1").ljust(16, b"\0")
    args = (AF_INET, IPPROTO_TCP, a0, a1, socket.htons(1024), socket.htons(80))
    assert capi.insert(local.states, b"", *args, PF_OUT) == 0
    assert capi.insert(local.states, b"", *args, PF_OUT) == errno.EEXIST
    assert capi.insert(local.states, b"lo", *args, PF_OUT) == 0
    found_lo = capi.find(local.states, b"lo", *args, PF_OUT)
    found_eth = capi.find(local.states, b"eth0", *args, PF_OUT)
    assert found_lo[2] == "lo" and found_eth[2] == ""          # if-bound first, else floating
    assert found_lo[1] == found_eth[1] == local.core.hostid    # local states: our hostid
    assert found_lo[0] != found_eth[0]
    assert capi.find(local.states, b"lo", AF_INET, IPPROTO_UDP, *args[2:], PF_OUT) is None
    # a locally created state exports an htobe64 id
    states = pfioc_states(ps_len=2 * 242)
    buf = ctypes.create_string_buffer(2 * 242)
    states.ps_buf = ctypes.addressof(buf)
    local.ioctl(DIOCGETSTATES, states)
    first = pfsync_state.from_bytes(buf.raw[:242])
    assert first.id == be64(1) and first.ifname == b"all"


def test_c_api_lookup_speed_is_sane(capi):
    local = Local()
    for i in range(1000):
        a0 = (0x0a000000 + i).to_bytes(4, "big").ljust(16, b"\0")
        assert capi.insert(local.states, b"", AF_INET, IPPROTO_TCP, a0,
                           socket.inet_aton("192.0.2.1").ljust(16, b"\0"), socket.htons(1024),
                           socket.htons(80), PF_OUT) == 0
    ns, hits = capi.bench_lookup(local.states, 1000, 10)
    assert hits == 10000 and ns < 5000
