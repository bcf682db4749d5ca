"""Rules with `log` on live traffic: pfd --pflog FILE writes what pf_test logs, and tcpdump -r
reads it back with rule numbers, actions, directions and interfaces (docs/pflog.md)."""
import os
import re
import shutil
import subprocess
import time

import pytest

from pfkern.client.constants import PF_LOG, PF_LOG_ALL

from filter_net import AF_INET, ICMP, PF_DROP, PF_IN, PF_PASS, UDP, module_net, rule

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                       reason="needs root and /dev/net/tun"),
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed"),
]

UDP_PORT = 5331


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("pflog") / "pflog.pcap")
    for t in module_net("l", 89, lambda t: t.fspawn(t.b, "udp_echo", UDP_PORT, 0), v6=False,
                        extra=["--pflog", path]):
        t.pflog_path = path
        yield t


def records(path, want, timeout=8.0):
    """tcpdump's lines for the file once it holds at least `want` records."""
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        res = subprocess.run(["tcpdump", "-n", "-e", "-r", path], capture_output=True, text=True)
        lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
        if len(lines) >= want:
            return lines
        time.sleep(0.2)
    return lines


def test_logged_rules_show_in_tcpdump(net):
    t = net
    t.load([rule(PF_PASS, keep_state=0, no_flags=1),
            rule(PF_DROP, af=AF_INET, proto=UDP, dport=UDP_PORT, direction=PF_IN, log=PF_LOG),
            rule(PF_PASS, af=AF_INET, proto=ICMP, log=PF_LOG, keep_state=0, no_flags=1)])
    assert t.fprobe(t.a, "udp_send", t.b.ip4, UDP_PORT, 2, 0.5)["ok"] == 0
    assert t.pings(t.a, t.b.ip4, count=1) == 1
    # 2 blocked datagrams in on A's tap; the echo request in (A) and out (B), the reply in (B)
    # and out (A)
    lines = records(t.pflog_path, 6)
    blocked = [ln for ln in lines if re.search(rf"rule 1/\S+: block in on {t.a.tap}: {t.a.ip4}\.\d+ > "
                                               rf"{t.b.ip4}\.{UDP_PORT}: UDP", ln)]
    assert len(blocked) == 2, "\n".join(lines)
    passed = [ln for ln in lines if re.search(r"rule 2/\S+: pass (in|out) on \S+: .*ICMP echo", ln)]
    dirs = sorted(re.search(r"pass (in|out) on (\S+):", ln).groups() for ln in passed)
    assert dirs == sorted([("in", t.a.tap), ("out", t.b.tap), ("in", t.b.tap), ("out", t.a.tap)]), \
        "\n".join(lines)


def test_log_all_logs_every_packet_of_the_state(net):
    t = net
    before = len(records(t.pflog_path, 0, timeout=0.5))
    t.load([rule(PF_PASS, keep_state=0, no_flags=1),
            rule(PF_PASS, af=AF_INET, proto=UDP, dport=UDP_PORT, direction=PF_IN,
                 log=PF_LOG | PF_LOG_ALL, keep_state=1, no_flags=1)])
    assert t.fprobe(t.a, "udp_send", t.b.ip4, UDP_PORT, 3, 1.0)["ok"] == 3
    # the state lives on A's side (in on A, replies out on A; B's side passes by rule 0): the
    # first datagram is logged by the rule, the rest of A's side by the state
    lines = records(t.pflog_path, before + 6)[before:]
    ours = [ln for ln in lines if "rule 1/" in ln and "UDP" in ln]
    assert len(ours) == 6, "\n".join(lines)
    assert sum(f" in on {t.a.tap}:" in ln for ln in ours) == 3
    assert sum(f" out on {t.a.tap}:" in ln for ln in ours) == 3
