"""The daemon's Cython view of the header, the ctypes library and the installed header agree."""
import ctypes
import filecmp
import os
import subprocess

from conftest import REPO
from pfkern import client
from pfkern.pf_ioctl import COMMANDS, build_table, struct_sizes

# pf-abi.md §2.17 / §3.2
REFERENCE_SIZES = {"pf_status": 416, "pfioc_natlook": 76, "pfioc_tm": 8, "pfioc_limit": 8, "pfioc_if": 16,
                   "pfioc_iface": 40, "pfi_kif": 224, "pfi_if": 184, "pfioc_rule": 3040,
                   "pfioc_table": 1104, "pfioc_altq_v1": 304}


def test_cython_view_matches_reference_and_ctypes():
    sizes = struct_sizes()
    assert sizes == REFERENCE_SIZES
    for name, size in sizes.items():
        assert ctypes.sizeof(getattr(client, name)) == size, name


def test_dispatch_table_commands_match_the_client_library():
    """Every command the daemon knows has the value the ctypes library computes, and the BSD
    _IO twins are served too."""
    table = build_table()
    for name, value, *_ in COMMANDS:
        assert getattr(client, name) == value & 0xffffffff, name
        if not value & 0xc0000000:
            assert table[value | 0x20000000].name == name
            assert getattr(client, name + "_BSD") == value | 0x20000000


def test_installed_header_is_this_checkouts():
    """`pkg-config pfvar` points at a private copy of include/ that matches the checkout (stale
    copies would test the wrong header), never at /usr/include."""
    cflags = subprocess.run(["pkg-config", "--cflags", "pfvar"], capture_output=True, text=True, check=True).stdout.split()
    incdirs = [f[2:] for f in cflags if f.startswith("-I")]
    private = [d for d in incdirs if os.path.exists(os.path.join(d, "net", "pfvar.h"))]
    assert len(private) == 1 and not private[0].startswith("/usr/include"), cflags
    ours = os.path.join(REPO, "include")
    for top, _, files in os.walk(ours):
        for name in files:
            rel = os.path.relpath(os.path.join(top, name), ours)
            assert filecmp.cmp(os.path.join(ours, rel), os.path.join(private[0], rel), shallow=False), \
                f"installed {rel} differs from the checkout's: run scripts/install-header"
    assert not os.path.exists("/usr/include/net/pfvar.h")
    assert "-DLIBBSD_OVERLAY" in cflags
