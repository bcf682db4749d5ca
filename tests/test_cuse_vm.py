"""Real CUSE: scripts/cuse-vm-test boots Debian's stock kernel (CONFIG_CUSE=m) under qemu and runs
tests/cuse_vm/guest_*.py there against pfd serving /dev/pf as a character device. This machine's
kernel has no CUSE, so this is the only test of the CUSE front on a real kernel.

The summary line ("cuse-vm: N passed, M failed, ...") is printed to the terminal even under -q.
When qemu or the kernel package cannot be obtained the test is skipped with the reason
(`pytest -rs` shows it); PF_SKIP_CUSE_VM=1 skips it on purpose (a visible skip too)."""
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = os.path.join(REPO, "scripts", "cuse-vm-test")
EXIT_SKIP = 77
# The script's own deadlines: apt-get (qemu install, downloads) then qemu killed 540 s after boot.
TIMEOUT = 1200


def test_cuse_vm_guest_suite(capsys):
    if os.environ.get("PF_SKIP_CUSE_VM"):
        pytest.skip("PF_SKIP_CUSE_VM is set")
    if os.geteuid() != 0:
        pytest.skip("the CUSE VM tier needs root (apt-get, qemu 9p shares)")
    try:
        res = subprocess.run([sys.executable, SCRIPT, "--quiet"], capture_output=True, text=True,
                             timeout=TIMEOUT, stdin=subprocess.DEVNULL, cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/cuse-vm-test did not finish in {TIMEOUT} s:\n"
                    + (exc.stdout or b"").decode(errors="replace")[-4000:])
    report = [line for line in res.stdout.splitlines() if line.startswith("cuse-vm:")]
    with capsys.disabled():
        sys.stdout.write("\n" + "\n".join(report) + "\n")
        sys.stdout.flush()
    if res.returncode == EXIT_SKIP:
        reasons = [line.split("skipped:", 1)[1].strip() for line in report if "skipped:" in line]
        if not reasons:
            pytest.fail("scripts/cuse-vm-test exited 77 without a 'cuse-vm: skipped:' line\n"
                        + res.stdout[-4000:])
        pytest.skip("CUSE VM tier: " + reasons[-1])
    assert res.returncode == 0, (
        f"scripts/cuse-vm-test exited {res.returncode}\n" + res.stdout[-6000:] + res.stderr[-3000:])
