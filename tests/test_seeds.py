"""The seed programs, compiled unchanged with `pkg-config pfvar` and run against a live pfd."""
import os
import re
import subprocess

import pytest

from conftest import Pfd, compile_c
from seeds import interface_stats_program, natlook_example


def host_interfaces():
    return sorted(os.listdir("/sys/class/net"))


def test_natlook_example_reports_no_state(tmp_path):
    """pf(4)'s example opens /dev/pf itself, so pfd serves /dev/pf inside a private mount
    namespace and the program runs in that namespace."""
    binary = compile_c(natlook_example(), str(tmp_path), "natlook")
    daemon = Pfd("/dev/pf", netns_wrapper=["unshare", "--mount", "--propagation", "private"])
    try:
        daemon.wait_ready()
        res = subprocess.run(["nsenter", "-t", str(daemon.proc.pid), "-m", binary,
                              "192.0.2.1", "8080", "198.51.100.7", "4321"],
                             capture_output=True, text=True, timeout=20)
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert res.returncode == 1, res
    assert res.stderr.strip().endswith("DIOCNATLOOK: No such file or directory"), res.stderr
    assert "internal host" not in res.stdout


def test_natlook_example_usage(tmp_path):
    binary = compile_c(natlook_example(), str(tmp_path), "natlook")
    res = subprocess.run([binary], capture_output=True, text=True)
    assert res.returncode == 1 and "<gwy addr> <gwy port> <ext addr> <ext port>" in res.stdout


def run_stats(pfd, tmp_path, *args):
    binary = compile_c(interface_stats_program(), str(tmp_path), "ifstats",
                       defines=[f'PF_DEVICE="{pfd.path}"'])
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=20)


def parse_stats(stdout):
    rows = re.findall(r"^(\S+) IPv4 (In|Out): Pass (\d+) Block (\d+)$", stdout, re.M)
    assert len(rows) == len(stdout.splitlines()), f"unexpected output lines:\n{stdout}"
    return rows


def test_interface_statistics_program_lists_every_host_interface(pfd, tmp_path):
    res = run_stats(pfd, tmp_path)
    assert res.returncode == 0, res.stderr
    rows = parse_stats(res.stdout)
    names = [r[0] for r in rows]
    # a pair of lines (In, Out) per interface, interfaces only (PFI_FLAG_INSTANCE), in name order
    assert names[0::2] == names[1::2]
    assert [r[1] for r in rows] == ["In", "Out"] * (len(rows) // 2)
    assert sorted(names[0::2]) == host_interfaces()
    assert "lo" in names
    assert "all" not in names       # a group, not an instance


def test_interface_statistics_program_filters_by_name(pfd, tmp_path):
    res = run_stats(pfd, tmp_path, "lo")
    assert res.returncode == 0, res.stderr
    assert [r[0] for r in parse_stats(res.stdout)] == ["lo", "lo"]
    res = run_stats(pfd, tmp_path, "nosuchif0")
    assert res.returncode == 0 and res.stdout == ""
