"""Reading 100,000 states with DIOCGETSTATES through pfd, beside a baseline in the same run; and
the C state lookup the datapath will use, in ns per lookup.

    python3 bench/states.py [--states 100000] [--rounds 5] [--lookup-rounds 20]

Read: a C client runs pfctl's loop (size query, buffer of twice that, DIOCGETSTATES) and times it;
the figure is the median of the rounds. The baseline is the same client against the same device
front (FUSE-file mode) served by CopyDispatcher below, which answers the same two ioctls by
writing the same number of bytes (a prebuilt buffer) into the caller with the front's
CallerMemory.write (process_vm_writev) — the no-op front would copy only the 16-byte struct,
so it would not be a fair floor. pfd minus baseline is what the state export itself costs.

Lookup: a Cython module cimporting pfkern.pf_state (tests/states_helpers.py's CAPI_SOURCE) fills a
table with the same states and calls pf_find_state on every key, GIL released; beside it a miss
(keys not in the table) and a Python dict lookup of the same keys as tuples.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), os.path.join(REPO, "bench")]

from front_noop import compile_client, start_server  # noqa: E402
from states_helpers import BULK_IMPORT_C, Local, build_capi, bulk_import  # noqa: E402

PFSYNC_STATE_SIZE = 242

READER = r"""
#include <sys/types.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <net/pfvar.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* pfctl_show_states' loop: size query, then grow until the answer leaves room */
int main(int argc, char **argv)
{
	int dev = open(argv[1], O_RDONLY);
	int rounds = atoi(argv[2]);
	struct pfioc_states ps;
	char *buf = NULL;
	int len = 0;

	if (dev == -1) { perror("open"); return 2; }
	for (int r = 0; r < rounds; r++) {
		double t0 = now();
		memset(&ps, 0, sizeof(ps));
		if (ioctl(dev, DIOCGETSTATES, &ps) == -1) { perror("size"); return 2; }
		len = ps.ps_len * 2;
		for (;;) {
			buf = realloc(buf, len);
			ps.ps_len = len;
			ps.ps_buf = buf;
			if (ioctl(dev, DIOCGETSTATES, &ps) == -1) { perror("read"); return 2; }
			if (ps.ps_len + (int)sizeof(ps) < len)
				break;
			len *= 2;
		}
		printf("%.6f %d\n", now() - t0, ps.ps_len);
		fflush(stdout);
	}
	return 0;
}
"""


class CopyDispatcher:
    """The baseline: DIOCGETSTATES answered with prebuilt bytes of the size pfd would write."""

    def __init__(self):
        from pfkern.client import DIOCGETSTATES, pfioc_states
        self.cmd = DIOCGETSTATES
        self.iotype = pfioc_states
        self.data = bytes(int(os.environ.get("BENCH_STATES", "100000")) * PFSYNC_STATE_SIZE)

    def open(self, flags):
        return None

    def release(self, ctx):
        pass

    def layout(self, cmd):
        return (16, 16) if cmd == self.cmd else (0, 0)

    def regions(self, cmd, data):
        return []

    def ioctl(self, ctx, cmd, arg, data, mem):
        if cmd != self.cmd:
            raise OSError(19, "no such command")
        ps = self.iotype.from_bytes(data)
        if ps.ps_len <= 0:
            ps.ps_len = len(self.data)
        else:
            out = self.data[:ps.ps_len // PFSYNC_STATE_SIZE * PFSYNC_STATE_SIZE]
            mem.write(ps.ps_buf, out)
            ps.ps_len = len(out)
        return ps.to_bytes()


def read_times(reader, path, rounds):
    out = subprocess.run([reader, path, str(rounds + 1)], capture_output=True, text=True, check=True)
    rows = [line.split() for line in out.stdout.split("\n") if line]
    return [float(t) for t, _ in rows[1:]], int(rows[-1][1])      # first round warms up


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_read(args, workdir):
    reader = compile_client(READER, workdir, "reader")
    importer = compile_client(BULK_IMPORT_C, workdir, "bulk")
    results = {}
    os.environ["BENCH_STATES"] = str(args.states)
    for label, factory in (("baseline (front + same bytes)", "bench.states:CopyDispatcher"),
                           ("pfd", "pfkern.pfd:build_dispatcher")):
        path = os.path.join(workdir, "pf-" + label.split()[0])
        server = start_server(path, factory)
        try:
            if label == "pfd":
                old = None
                if args.states > 100000:
                    from pfkern.client import PF_LIMIT_STATES, PfDevice
                    with PfDevice(path) as d:
                        old = d.set_limit(PF_LIMIT_STATES, args.states)
                t0 = time.monotonic()
                done, err = bulk_import(importer, path, args.states, creatorid=1)
                imported = time.monotonic() - t0
                assert (done, err) == (args.states, 0), (done, err)
                print(f"imported {done} states with DIOCADDSTATE in {imported:.2f} s "
                      f"({imported / done * 1e6:.1f} us each)")
            times, length = read_times(reader, path, args.rounds)
            assert length == args.states * PFSYNC_STATE_SIZE, length
            results[label] = statistics.median(times)
        finally:
            stop(server)
    base, pfd = results["baseline (front + same bytes)"], results["pfd"]
    mb = args.states * PFSYNC_STATE_SIZE / 1e6
    print(f"DIOCGETSTATES, {args.states} states ({mb:.1f} MB), pfctl loop, median of {args.rounds}:")
    print(f"  baseline: {base * 1e3:8.1f} ms   (front + process_vm_writev of the same bytes)")
    print(f"  pfd:      {pfd * 1e3:8.1f} ms   ({pfd / base:.2f}x baseline; export "
          f"{(pfd - base) / args.states * 1e9:.0f} ns/state)   goal < 500 ms: "
          f"{'met' if pfd < 0.5 else 'NOT met'}")


def bench_lookup(args, workdir):
    capi = build_capi(workdir)
    local = Local()
    local.core.set_limit(0, max(args.states, 100000))
    b = socket.inet_aton("192.0.2.1").ljust(16, b"\0")
    for i in range(args.states):
        a = (0x0a000000 + i).to_bytes(4, "big").ljust(16, b"\0")
        assert capi.insert(local.states, b"", 2, 6, a, b, socket.htons(1024), socket.htons(80), 2) == 0
    hit, hits = capi.bench_lookup(local.states, args.states, args.lookup_rounds)
    assert hits == args.states * args.lookup_rounds
    seq, _ = capi.bench_lookup(local.states, args.states, args.lookup_rounds, 2, 80, 1)
    miss, misses = capi.bench_lookup(local.states, args.states, args.lookup_rounds, 2, 81)
    assert misses == 0
    keys = {(2, 6, (0x0a000000 + i).to_bytes(4, "big"), b, 1024, 80): i for i in range(args.states)}
    probe = [(2, 6, (0x0a000000 + i * 7919 % args.states).to_bytes(4, "big"), b, 1024, 80)
             for i in range(args.states)]
    t0 = time.perf_counter()
    for _ in range(args.lookup_rounds):
        for k in probe:
            keys[k]
    py = (time.perf_counter() - t0) * 1e9 / (len(probe) * args.lookup_rounds)
    print(f"pf_find_state, {args.states} states, {args.lookup_rounds} rounds over every key:")
    print(f"  hit, scattered order:            {hit:6.1f} ns/lookup")
    print(f"  hit, insertion order:            {seq:6.1f} ns/lookup")
    print(f"  miss (port 81), scattered:       {miss:6.1f} ns/lookup")
    print(f"  baseline, Python dict of tuples, scattered: {py:6.1f} ns/lookup")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--states", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--lookup-rounds", type=int, default=20)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="pfbench-states-")
    try:
        bench_read(args, workdir)
        bench_lookup(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
