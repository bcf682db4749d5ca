"""pflog (pfkern/pf_log.pyx, include/net/if_pflog.h): records written by the datapath's call,
read back by the real tcpdump and by a C program compiled against the header.

The packets are handed to the same nogil function pf_test calls (pflog_packet / pflog_rule)
through the module's test hooks, with a tap_pkt whose l3 points at bytes built here.
"""
import argparse
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import REPO

from pfkern import pf_log  # built by scripts/bootstrap: an import error is a failure, not a skip

TCPDUMP = shutil.which("tcpdump")
needs_tcpdump = pytest.mark.skipif(
    TCPDUMP is None, reason="tcpdump is not installed (apt-get install tcpdump): the pflog "
    "records cannot be checked against a real reader")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed (scripts/bootstrap installs it)")

INCLUDE = os.path.join(REPO, "include")
AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6      # Linux values, as tap_pkt carries
from pfkern.client.constants import (PF_DROP, PF_IN, PF_OUT, PF_PASS,  # noqa: E402
                                     PFRES_MATCH, PFRES_MAXSTATES)
QUEUED, NOUNIT, FULL = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Packets and pcap, built and parsed here (independently of the module)
# ---------------------------------------------------------------------------------------------

def cksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ip4_tcp(src="10.0.1.2", dst="10.0.2.2", sport=40000, dport=22, payload=b"",
            bad_cksum=False):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, 0x02, 65535, 0, 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 7, 0, 64, 6, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    c = cksum(hdr) ^ (0x1111 if bad_cksum else 0)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + tcp


def ip6_udp(src="fd00:1::2", dst="fd00:2::2", sport=5000, dport=6000, payload=b"abcd"):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64,
                       socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst)) + udp


def parse_pcap(data):
    """(snaplen, linktype, [(caplen, len, bytes)]); fails on a partial record."""
    magic, major, minor, _z, _s, snaplen, linktype = struct.unpack("=IHHiIII", data[:24])
    assert (magic, major, minor) == (0xa1b2c3d4, 2, 4)
    off, recs = 24, []
    while off < len(data):
        assert off + 16 <= len(data), "partial record header"
        _sec, _usec, caplen, length = struct.unpack("=IIII", data[off:off + 16])
        assert off + 16 + caplen <= len(data), "partial record"
        recs.append((caplen, length, data[off + 16:off + 16 + caplen]))
        off += 16 + caplen
    return snaplen, linktype, recs


def read_pcap(path):
    with open(path, "rb") as f:
        return parse_pcap(f.read())


def rulenrs(recs):
    return [struct.unpack("!I", r[2][36:40])[0] for r in recs]


def tcpdump(path, *args):
    out = subprocess.run([TCPDUMP, "-n", "-e", "-r", path, *args], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [l for l in out.stdout.splitlines() if l.strip()]


@pytest.fixture
def logger(tmp_path):
    opened = []

    def make(**kw):
        kw.setdefault("path", str(tmp_path / "pflog"))
        lg = pf_log.Pflog(**kw).open()
        opened.append(lg)
        return lg
    yield make
    for lg in opened:
        lg.close()
    assert not pf_log.units()


def log(unit, pkt, af, direction, action, rulenr, ifname="tap0", **kw):
    return pf_log._log_for_tests(unit, pkt, af, direction, action, kw.pop("reason", PFRES_MATCH),
                                 ifname, rulenr, **kw)


# ---------------------------------------------------------------------------------------------
# The header
# ---------------------------------------------------------------------------------------------

# FreeBSD 12.1 amd64 (sys/net/if_pflog.h at releng/12.1 r326272): field -> (offset, size)
FREEBSD121 = {"length": (0, 1), "af": (1, 1), "action": (2, 1), "reason": (3, 1),
              "ifname": (4, 16), "ruleset": (20, 16), "rulenr": (36, 4), "subrulenr": (40, 4),
              "uid": (44, 4), "pid": (48, 4), "rule_uid": (52, 4), "rule_pid": (56, 4),
              "dir": (60, 1), "pad": (61, 3)}

LAYOUT_C = r"""
#include <stdio.h>
#include <stddef.h>
%(first)s
%(second)s
#define F(f) printf(#f " %%zu %%zu\n", offsetof(struct pfloghdr, f), sizeof(((struct pfloghdr *)0)->f))
int main(void) {
    printf("sizeof %%zu\nPFLOG_HDRLEN %%zu\nPFLOG_REAL_HDRLEN %%zu\n", sizeof(struct pfloghdr),
           (size_t)PFLOG_HDRLEN, (size_t)PFLOG_REAL_HDRLEN);
    printf("PFLOGIFS_MAX %%d\nPFLOG_RULESET_NAME_SIZE %%d\nDLT_PFLOG %%d\n", PFLOGIFS_MAX,
           PFLOG_RULESET_NAME_SIZE, DLT_PFLOG);
    F(length); F(af); F(action); F(reason); F(ifname); F(ruleset); F(rulenr); F(subrulenr);
    F(uid); F(pid); F(rule_uid); F(rule_pid); F(dir); F(pad);
    return 0;
}
"""


def compile_and_run(tmp_path, source, name="prog", compiler="gcc", flags=(), args=()):
    src = tmp_path / (name + (".cc" if compiler == "g++" else ".c"))
    src.write_text(source)
    exe = tmp_path / name
    res = subprocess.run([compiler, "-Wall", "-Wextra", "-Werror", *flags, "-I", INCLUDE,
                          str(src), "-o", str(exe)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    run = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout


@needs_gcc
@pytest.mark.parametrize("order,compiler,flags", [
    ("alone", "gcc", ["-std=c11", "-pedantic"]),
    ("pfvar-first", "gcc", ["-std=c11", "-pedantic"]),
    ("pflog-first", "gcc", ["-std=gnu99"]),
    ("pfvar-first", "g++", ["-std=c++11"]),
])
def test_header_layout_is_freebsd_121(tmp_path, order, compiler, flags):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    first, second = {"alone": ("#include <net/if_pflog.h>", ""),
                     "pfvar-first": ("#include <net/pfvar.h>", "#include <net/if_pflog.h>"),
                     "pflog-first": ("#include <net/if_pflog.h>", "#include <net/pfvar.h>")}[order]
    out = compile_and_run(tmp_path, LAYOUT_C % {"first": first, "second": second},
                          compiler=compiler, flags=flags)
    got = {}
    for line in out.splitlines():
        k, *v = line.split()
        got[k] = tuple(int(x) for x in v)
    assert got.pop("sizeof") == (64,)
    assert got.pop("PFLOG_HDRLEN") == (64,)
    assert got.pop("PFLOG_REAL_HDRLEN") == (61,)
    assert got.pop("PFLOGIFS_MAX") == (16,)
    assert got.pop("PFLOG_RULESET_NAME_SIZE") == (16,)
    assert got.pop("DLT_PFLOG") == (117,)
    assert got == FREEBSD121


RECORDS_C = r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if_pflog.h>

int main(int argc, char **argv) {
    unsigned char buf[70000];
    uint32_t rh[4];
    FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (!f || fread(buf, 1, 24, f) != 24) return 2;
    while (fread(rh, 4, 4, f) == 4) {
        struct pfloghdr h;
        if (rh[2] > sizeof(buf) || fread(buf, 1, rh[2], f) != rh[2] || rh[2] < sizeof(h))
            return 3;
        memcpy(&h, buf, sizeof(h));
        printf("length=%u af=%u action=%u reason=%u ifname=%.16s ruleset=%.16s rulenr=%u "
               "subrulenr=%u uid=%u pid=%d rule_uid=%u rule_pid=%d dir=%u pad=%u,%u,%u "
               "caplen=%u len=%u ip=", h.length, h.af, h.action, h.reason, h.ifname, h.ruleset,
               ntohl(h.rulenr), ntohl(h.subrulenr), (unsigned)h.uid, (int)h.pid,
               (unsigned)h.rule_uid, (int)h.rule_pid, h.dir, h.pad[0], h.pad[1], h.pad[2],
               rh[2], rh[3]);
        for (uint32_t i = PFLOG_HDRLEN; i < rh[2]; i++) printf("%02x", buf[i]);
        printf("\n");
    }
    return 0;
}
"""


def c_records(tmp_path, pcap):
    out = compile_and_run(tmp_path, RECORDS_C, name="records", flags=["-std=gnu11"],
                          args=[pcap])
    recs = []
    for line in out.splitlines():
        recs.append(dict(kv.split("=", 1) for kv in line.split(" ")))
    return recs


@needs_gcc
def test_record_bytes_read_through_the_c_header(tmp_path, logger):
    lg = logger(snaplen=0)
    p4, p6 = ip4_tcp(payload=b"x" * 10), ip6_udp()
    assert log(0, p4, AF_INET, PF_IN, PF_PASS, 7, "tap0", subrulenr=0xffffffff,
               rule_uid=1001, rule_pid=4242) == QUEUED
    assert log(0, p6, AF_INET6, PF_OUT, PF_DROP, 9, "vlan.long.name1", reason=PFRES_MAXSTATES,
               subrulenr=4, ruleset="a-very-long-anchor-name", uid=33, rule_uid=0,
               rule_pid=1) == QUEUED
    assert pf_log._log_rule_for_tests(p4, AF_INET, PF_OUT, PFRES_MATCH, "tap1", PF_DROP, 2,
                                      cuid=5, cpid=6, anchor_nr=3, anchor="sub") == QUEUED
    assert lg.flush()
    r = c_records(tmp_path, lg.path)
    assert len(r) == 3
    assert r[0] == {"length": "61", "af": "2", "action": "0", "reason": "0", "ifname": "tap0",
                    "ruleset": "", "rulenr": "7", "subrulenr": str(0xffffffff),
                    "uid": str(0xffffffff), "pid": "100000", "rule_uid": "1001",
                    "rule_pid": "4242", "dir": "1", "pad": "0,0,0",
                    "caplen": str(64 + len(p4)), "len": str(64 + len(p4)), "ip": p4.hex()}
    # IPv6 carries FreeBSD's AF_INET6 (28); the anchor name is cut like strlcpy into 16 bytes
    assert r[1]["af"] == "28" and r[1]["action"] == "1" and r[1]["reason"] == "12"
    assert r[1]["ifname"] == "vlan.long.name1" and r[1]["ruleset"] == "a-very-long-anc"
    assert (r[1]["rulenr"], r[1]["subrulenr"], r[1]["uid"]) == ("9", "4", "33")
    assert (r[1]["dir"], r[1]["ip"]) == ("2", p6.hex())
    # pflog_rule: the rule's action, anchor-call rule number first, cuid/cpid as rule_uid/pid
    assert (r[2]["rulenr"], r[2]["subrulenr"], r[2]["ruleset"]) == ("3", "2", "sub")
    assert (r[2]["action"], r[2]["rule_uid"], r[2]["rule_pid"], r[2]["dir"]) == ("1", "5", "6", "2")


# ---------------------------------------------------------------------------------------------
# What tcpdump shows
# ---------------------------------------------------------------------------------------------

@needs_tcpdump
def test_tcpdump_shows_rule_action_direction_interface_and_packet(logger):
    lg = logger()
    log(0, ip4_tcp(), AF_INET, PF_IN, PF_PASS, 3, "tap0")
    log(0, ip6_udp(), AF_INET6, PF_OUT, PF_DROP, 5, "tap1")
    pf_log._log_rule_for_tests(ip4_tcp(sport=40001), AF_INET, PF_IN, PFRES_MATCH, "tap2",
                               PF_DROP, 2, anchor_nr=3, anchor="sub")
    log(0, ip4_tcp(dport=80), AF_INET, PF_OUT, PF_DROP, 12, "tap0", reason=PFRES_MAXSTATES)
    assert lg.flush()
    lines = tcpdump(lg.path)
    assert len(lines) == 4, lines
    assert ("rule 3/0(match): pass in on tap0: 10.0.1.2.40000 > 10.0.2.2.22: Flags [S]"
            in lines[0]), lines[0]
    assert ("rule 5/0(match): block out on tap1: fd00:1::2.5000 > fd00:2::2.6000: UDP, length 4"
            in lines[1]), lines[1]
    assert "rule 3.sub.2/0(match): block in on tap2: 10.0.1.2.40001 > 10.0.2.2.22" in lines[2]
    assert "rule 12/12(state-limit): block out on tap0: 10.0.1.2.40000 > 10.0.2.2.80" in lines[3]
    # pf's own filter primitives work on the records
    assert len(tcpdump(lg.path, "action", "block")) == 3
    assert len(tcpdump(lg.path, "inbound")) == 2
    assert len(tcpdump(lg.path, "on", "tap1")) == 1
    assert len(tcpdump(lg.path, "ruleset", "sub")) == 1
    assert len(tcpdump(lg.path, "ip")) == 3
    # libpcap on Linux compiles `ip6` for pflog as af == 10 (its own AF_INET6); BSD's 28 is
    # what its printer knows. docs/pflog.md: filter IPv6 records with link[1] = 28.
    assert len(tcpdump(lg.path, "link[1]", "=", "28")) == 1


@needs_tcpdump
def test_outbound_ipv4_header_checksum_is_recomputed_in_the_record(logger):
    lg = logger()
    bad = ip4_tcp(bad_cksum=True)
    log(0, bad, AF_INET, PF_IN, PF_DROP, 1)
    log(0, bad, AF_INET, PF_OUT, PF_DROP, 2)
    assert lg.flush()
    lines = tcpdump(lg.path, "-v")
    text = "\n".join(lines)
    assert text.count("bad cksum") == 1, text
    recs = read_pcap(lg.path)[2]
    assert cksum(recs[1][2][64:84]) == 0 and cksum(recs[0][2][64:84]) != 0
    assert bad == ip4_tcp(bad_cksum=True)        # the packet itself is left alone


@needs_tcpdump
def test_snaplen_default_is_pflogds_and_zero_keeps_whole_packets(tmp_path, logger):
    big = ip4_tcp(payload=bytes(range(256)) * 4)
    lg = logger()
    log(0, big, AF_INET, PF_IN, PF_DROP, 1)
    assert lg.flush()
    snaplen, linktype, recs = read_pcap(lg.path)
    assert (snaplen, linktype) == (116, 117)
    assert [(c, l) for c, l, _ in recs] == [(116, 64 + len(big))]
    assert recs[0][2][64:] == big[:116 - 64]
    assert "rule 1/0(match): block in on tap0: 10.0.1.2.40000 > 10.0.2.2.22" in tcpdump(lg.path)[0]
    whole = logger(unit=1, path=str(tmp_path / "whole"), snaplen=0)
    log(1, big, AF_INET, PF_IN, PF_DROP, 1)
    assert whole.flush()
    snaplen, _, recs = read_pcap(whole.path)
    assert snaplen == 262144 and recs[0][2][64:] == big
    assert f"length {len(big) - 40}" in tcpdump(whole.path)[0]


# ---------------------------------------------------------------------------------------------
# Never blocking the datapath
# ---------------------------------------------------------------------------------------------

def test_units_without_a_logger_are_ignored(logger):
    assert log(3, ip4_tcp(), AF_INET, PF_IN, PF_PASS, 1) == NOUNIT
    lg = logger(unit=3)
    assert log(3, ip4_tcp(), AF_INET, PF_IN, PF_PASS, 1) == QUEUED
    assert pf_log._log_rule_for_tests(ip4_tcp(), AF_INET, PF_IN, 0, "tap0", 0, 1,
                                      logif=4) == NOUNIT
    assert pf_log._log_rule_for_tests(ip4_tcp(), AF_INET, PF_IN, 0, "tap0", 0, 1,
                                      logif=3) == QUEUED
    lg.close()
    assert log(3, ip4_tcp(), AF_INET, PF_IN, PF_PASS, 1) == NOUNIT
    assert len(read_pcap(lg.path)[2]) == 2
    with pytest.raises(pf_log.PflogError):
        pf_log.Pflog(unit=16)


def test_full_ring_drops_and_counts_instead_of_waiting(logger):
    lg = logger(buffer=4096)
    lg._pause_for_tests(True)
    results = []
    t0 = time.monotonic()
    for i in range(200):
        results.append(log(0, ip4_tcp(), AF_INET, PF_IN, PF_DROP, i))
    elapsed = time.monotonic() - t0
    accepted = [i for i, r in enumerate(results) if r == QUEUED]
    assert set(results) == {QUEUED, FULL}
    assert 0 < len(accepted) < 200
    assert accepted == list(range(len(accepted)))        # the first ones fit, the rest dropped
    assert lg.stats()["dropped"] == 200 - len(accepted)
    assert elapsed < 2.0, f"200 calls took {elapsed:.2f}s with the writer stopped"
    lg._pause_for_tests(False)
    assert lg.flush()
    assert rulenrs(read_pcap(lg.path)[2]) == accepted
    # and the ring takes records again once written
    assert log(0, ip4_tcp(), AF_INET, PF_IN, PF_DROP, 999) == QUEUED


def test_records_stay_whole_and_ordered_through_ring_wraps(logger):
    lg = logger(snaplen=0, buffer=1)         # the smallest ring: four biggest records
    sizes = [0, 1, 700, 3000, 20000, 65000 - 40, 17, 1400]
    accepted = []
    for i in range(600):
        pkt = ip4_tcp(payload=bytes([i & 0xff]) * sizes[i % len(sizes)])
        if log(0, pkt, AF_INET, PF_IN, PF_PASS, i) == QUEUED:
            accepted.append(i)
        else:
            time.sleep(0.001)
    assert lg.flush()
    recs = read_pcap(lg.path)[2]
    assert rulenrs(recs) == accepted
    for (caplen, length, data), i in zip(recs, accepted):
        payload = sizes[i % len(sizes)]
        assert caplen == length == 64 + 40 + payload
        assert data[64 + 40:] == bytes([i & 0xff]) * payload
    st = lg.stats()
    assert st["file_records"] == st["logged"] == len(accepted)
    assert st["dropped"] == 600 - len(accepted)


def test_concurrent_loggers_share_a_unit(logger):
    lg = logger(buffer=1 << 20)
    n = 3000

    def worker(base):
        for i in range(n):
            while log(0, ip4_tcp(), AF_INET, PF_IN, PF_PASS, base + i) != QUEUED:
                time.sleep(0.0005)
    ts = [threading.Thread(target=worker, args=(k * 100000,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert lg.flush()
    nrs = rulenrs(read_pcap(lg.path)[2])
    assert len(nrs) == 3 * n
    for k in range(3):
        mine = [x for x in nrs if k * 100000 <= x < (k + 1) * 100000]
        assert mine == [k * 100000 + i for i in range(n)]


# ---------------------------------------------------------------------------------------------
# The FIFO
# ---------------------------------------------------------------------------------------------

def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@needs_tcpdump
def test_fifo_live_with_tcpdump(tmp_path, logger):
    fifo = str(tmp_path / "run" / "pflog0")
    lg = logger(path=None, fifo=fifo)
    assert os.path.exists(fifo)
    t0 = time.monotonic()
    for i in range(20000):                           # no reader: nothing waits, nothing kept
        log(0, ip4_tcp(), AF_INET, PF_IN, PF_PASS, i)
    assert time.monotonic() - t0 < 5
    assert lg.flush()
    st = lg.stats()
    assert st["fifo_records"] == 0 and st["logged"] + st["dropped"] == 20000
    for round_ in range(2):                          # a second reader gets its own header
        tcpd = subprocess.Popen([TCPDUMP, "-n", "-e", "-l", "-r", fifo], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(tcpd.stdout), daemon=True)
        reader.start()
        try:
            assert wait_for(lambda: lg.stats()["fifo_reader"]), "the reader was not connected"
            assert log(0, ip6_udp(), AF_INET6, PF_OUT, PF_DROP, 40 + round_, "tap1") == QUEUED
            assert log(0, ip4_tcp(), AF_INET, PF_IN, PF_PASS, 50 + round_, "tap0") == QUEUED
            wait_for(lambda: len(lines) >= 2, timeout=10)
        finally:
            tcpd.terminate()
            tcpd.wait(10)
            reader.join(10)
        assert len(lines) == 2, lines
        first, second = lines
        assert f"rule {40 + round_}/0(match): block out on tap1: fd00:1::2.5000 > " in first
        assert f"rule {50 + round_}/0(match): pass in on tap0: 10.0.1.2.40000 > " in second
        assert wait_for(lambda: not lg.stats()["fifo_reader"]), "the reader's exit went unseen"
    st = lg.stats()
    assert st["fifo_records"] == 4 and st["fifo_drops"] == 0 and st["fifo_closes"] == 2
    lg.close()
    assert not os.path.exists(fifo)                  # made by Pflog, removed by it


def test_fifo_reader_that_does_not_read_loses_whole_records_only(tmp_path, logger):
    fifo = str(tmp_path / "pflog0")
    lg = logger(path=None, fifo=fifo, snaplen=0)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert wait_for(lambda: lg.stats()["fifo_reader"])
        pkt = ip4_tcp(payload=b"z" * 1400)
        t0 = time.monotonic()
        for i in range(3000):
            assert log(0, pkt, AF_INET, PF_IN, PF_PASS, i) == QUEUED
            if i % 100 == 99:
                assert lg.flush()
        assert time.monotonic() - t0 < 10
        assert lg.flush()
        st = lg.stats()
        assert st["fifo_drops"] > 0, st               # the pipe filled up
        assert st["fifo_reader"], "a stalled reader must not be disconnected for whole records"
        lg.close()                                    # writer closes: EOF after the data
        data = b""
        while True:
            try:
                chunk = os.read(rfd, 1 << 16)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if not chunk:
                break
            data += chunk
    finally:
        os.close(rfd)
    _, linktype, recs = parse_pcap(data)              # whole records up to the end
    assert linktype == 117
    assert len(recs) == st["fifo_records"]
    nrs = rulenrs(recs)
    assert nrs == sorted(nrs) and nrs[0] == 0
    assert len(recs) + st["fifo_drops"] == st["logged"]


# ---------------------------------------------------------------------------------------------
# The file: append, foreign files, rotation, reopen
# ---------------------------------------------------------------------------------------------

def test_file_is_appended_to_and_foreign_files_moved_aside(tmp_path):
    path = str(tmp_path / "pflog")
    for k in range(2):
        with pf_log.Pflog(path=path):
            log(0, ip4_tcp(), AF_INET, PF_IN, PF_PASS, k)
    assert rulenrs(read_pcap(path)[2]) == [0, 1]
    with pf_log.Pflog(path=path, snaplen=200):        # a bigger snaplen would be cut: new file
        log(0, ip4_tcp(), AF_INET, PF_IN, PF_PASS, 2)
    assert rulenrs(read_pcap(path)[2]) == [2] and read_pcap(path)[0] == 200
    assert rulenrs(read_pcap(path + ".bad")[2]) == [0, 1]
    with open(path, "wb") as f:
        f.write(b"not a capture at all")
    with pf_log.Pflog(path=path, snaplen=200):
        log(0, ip4_tcp(), AF_INET, PF_IN, PF_PASS, 3)
    assert rulenrs(read_pcap(path)[2]) == [3]
    assert open(path + ".bad.1", "rb").read() == b"not a capture at all"
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_rotation_by_size(tmp_path, logger):
    path = str(tmp_path / "pflog")
    lg = logger(path=path, max_size=1500, keep=2)    # 24 + 12 records of 120 bytes per file
    for i in range(62):
        assert log(0, ip4_tcp(), AF_INET, PF_IN, PF_PASS, i) == QUEUED
        assert lg.flush()
    lg.close()
    assert not os.path.exists(path + ".2")
    newest, older, oldest = (rulenrs(read_pcap(p)[2]) for p in (path, path + ".0", path + ".1"))
    assert oldest and older and newest
    assert oldest + older + newest == list(range(oldest[0], 62))
    for p in (path + ".1", path + ".0"):
        assert 1500 <= os.path.getsize(p) < 1500 + 120


def test_reopen_after_external_rotation(tmp_path, logger):
    path = str(tmp_path / "pflog")
    lg = logger(path=path)
    log(0, ip4_tcp(), AF_INET, PF_IN, PF_PASS, 1)
    assert lg.flush()
    os.rename(path, path + ".old")
    lg.reopen()
    assert wait_for(lambda: os.path.exists(path))
    log(0, ip4_tcp(), AF_INET, PF_IN, PF_PASS, 2)
    assert lg.flush()
    assert rulenrs(read_pcap(path + ".old")[2]) == [1]
    assert rulenrs(read_pcap(path)[2]) == [2]


# ---------------------------------------------------------------------------------------------
# Configuration hook
# ---------------------------------------------------------------------------------------------

def test_configuration_from_flags_and_tables(tmp_path):
    p = argparse.ArgumentParser()
    pf_log.add_arguments(p)
    args = p.parse_args(["--pflog", "/var/log/pflog", "--pflog-snaplen", "0",
                         "--pflog-max-size", "1000000"])
    (u0,) = pf_log.from_config(args)
    assert (u0.unit, u0.path, u0.fifo, u0.snaplen, u0.max_size, u0.keep) == \
        (0, "/var/log/pflog", pf_log.DEFAULT_FIFO, 262144, 1000000, 3)
    args = p.parse_args(["--pflog-fifo", "none"])
    assert pf_log.from_config(args) == []            # nothing to write to: no unit
    units = pf_log.from_config(p.parse_args([]), tables=[
        {"unit": 1, "file": "/tmp/x", "keep": 5}, {"unit": 0, "fifo": "/run/x", "snaplen": 300}])
    assert [(u.unit, u.path, u.fifo, u.snaplen, u.keep) for u in units] == \
        [(0, None, "/run/x", 300, 3), (1, "/tmp/x", None, 116, 5)]
    assert pf_log.from_config(None, default_fifo=None) == []
    with pytest.raises(pf_log.PflogError):
        pf_log.from_config(None, tables=[{"unit": 0, "path": "/x"}])
    with pytest.raises(pf_log.PflogError):
        pf_log.from_config(None, tables=[{"unit": 0}, {"unit": 0}])
    with pytest.raises(pf_log.PflogError):
        pf_log.Pflog(snaplen=10)


def test_a_unit_opens_once(tmp_path, logger):
    logger(unit=2, path=str(tmp_path / "a"))
    with pytest.raises(pf_log.PflogError):
        pf_log.Pflog(unit=2, path=str(tmp_path / "b")).open()
    assert not os.path.exists(tmp_path / "b")


def test_one_writer_per_fifo(tmp_path, logger, caplog):
    fifo = str(tmp_path / "pflog0")
    first = logger(unit=0, path=None, fifo=fifo)
    assert open(fifo + ".lock").read().split() == [str(os.getpid())]
    second = logger(unit=1, path=str(tmp_path / "file1"), fifo=fifo)
    assert first.fifo == fifo and second.fifo is None        # the second runs without it
    assert "in use by another pfd" in caplog.text
    first.close()
    assert not os.path.exists(fifo) and not os.path.exists(fifo + ".lock")
    second.close()
    with open(tmp_path / "plain", "w"):
        pass
    with pytest.raises(pf_log.PflogError):
        pf_log.Pflog(unit=2, path=None, fifo=str(tmp_path / "plain")).open()
    assert not os.path.exists(str(tmp_path / "plain") + ".lock")
