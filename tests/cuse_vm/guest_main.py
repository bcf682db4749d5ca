"""Guest side of scripts/cuse-vm-test: run the CUSE tests under pytest and report.

Runs in the qemu guest as root (started by tests/cuse_vm/init), with the checkout, the host's
Python and ../shared mounted read-only at their host paths and /out shared writable. Prints the
one line the host waits for:

    CUSE-VM-RESULT passed=N failed=N skipped=N errors=N rc=N

and leaves junit.xml, results.txt ("outcome nodeid" per test) and the pfd logs in /out.
"""
import faulthandler
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
OUT = "/out" if os.access("/out", os.W_OK) else "/tmp"

# In run order: the first file loads cuse itself (pfd --mode auto), the last kills pfd.
GUEST_FILES = ("guest_device.py", "guest_spine.py", "guest_failure.py")


class Outcomes:
    """One outcome per test: error (setup/teardown failed), failed, skipped or passed."""

    def __init__(self):
        self.by_test = {}

    def pytest_runtest_logreport(self, report):
        old = self.by_test.get(report.nodeid)
        if report.failed:
            new = "failed" if report.when == "call" else "error"
        elif report.skipped:
            new = "skipped"
        elif report.when == "call":
            new = "passed"
        else:
            return
        if old in (None, "passed") or (old == "skipped" and new in ("failed", "error")):
            self.by_test[report.nodeid] = new

    def count(self, outcome):
        return sum(1 for v in self.by_test.values() if v == outcome)


def main():
    started = time.monotonic()
    deadline = int(os.environ.get("GUEST_TIMEOUT", "400"))
    # Stuck somewhere: show where before init's timeout kills us.
    faulthandler.dump_traceback_later(max(30, deadline - 20), exit=False)
    sys.path[:0] = [HERE, TESTS, REPO]
    import pytest
    outcomes = Outcomes()
    args = [os.path.join(HERE, f) for f in GUEST_FILES]
    args += ["--rootdir", TESTS, "-p", "no:cacheprovider", "-v", "-rs", "--tb=short",
             "--color=no", "--durations=8",
             "--junitxml", os.path.join(OUT, "junit.xml"), "-o", "junit_family=xunit2"]
    select = os.environ.get("PYTEST_SELECT", "")
    if select:
        args += ["-k", select]
    print(f"guest: python {sys.version.split()[0]} ready after "
          f"{float(open('/proc/uptime').read().split()[0]):.1f}s of uptime", flush=True)
    rc = int(pytest.main(args, plugins=[outcomes]))
    with open(os.path.join(OUT, "results.txt"), "w") as f:
        for nodeid, outcome in outcomes.by_test.items():
            f.write(f"{outcome} {nodeid}\n")
    print(f"guest: tests took {time.monotonic() - started:.1f}s", flush=True)
    notes = os.path.join(OUT, "observations.txt")
    if os.path.exists(notes):
        with open(notes) as f:
            for line in f:
                print(f"CUSE-VM-OBSERVED {line.strip()}", flush=True)
    open("/tmp/result-printed", "w").close()
    print(f"CUSE-VM-RESULT passed={outcomes.count('passed')} failed={outcomes.count('failed')} "
          f"skipped={outcomes.count('skipped')} errors={outcomes.count('error')} rc={rc}",
          flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
