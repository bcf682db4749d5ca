"""Loading 100,000 addresses into a table through pfd with pfctl's `-t T -T add` sequence, beside
baselines answered in the same run by the same device front (these machines are shared and
noisy, so only figures from one run compare).

    python3 bench/tables.py [--addresses 100000] [--rounds 5] [--feedback]

The sequence (pf-abi.md §5), issued by a C client compiled here against net/pfvar.h:
DIOCGETALTQSV1 (pfctl's ALTQ probe), DIOCRADDTABLES {T, persist}, DIOCRGETTABLES with
PFR_FLAG_ALLRSETS (the collision check; size 64, regrown), then DIOCRADDADDRS in as few requests
as net.pf.request_maxcount (65535) allows. --feedback adds PFR_FLAG_FEEDBACK (`-v`): every
address comes back with its pfra_fback.

Servers:
  noop  cuse.front:NoopDispatcher - answers every command with its input; embedded buffers are
        never touched: the device round trips alone.
  copy  CopyDispatcher below - also reads each embedded buffer through caller memory (and
        writes it back when FEEDBACK asks): the transport cost of the addresses.
  pfd   the daemon's dispatcher: the addresses are validated and inserted.
Each round loads a fresh table (the client deletes it afterwards, outside the timing).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from front_noop import NOOP, REPO, compile_client, start_server, stop_server  # noqa: E402

CLIENT = r"""
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <net/pfvar.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXCOUNT 65535

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void check(int ok, const char *what)
{
	if (!ok) { perror(what); exit(2); }
}

int main(int argc, char **argv)
{
	int n = atoi(argv[2]), rounds = atoi(argv[3]), flags = atoi(argv[4]) ? PFR_FLAG_FEEDBACK : 0;
	struct pfr_addr *addrs = calloc(n, sizeof(*addrs));
	struct pfioc_altq_v1 altq;
	struct pfioc_table io;
	struct pfr_table tbl, *tbls;
	int dev, size;

	for (int i = 0; i < n; i++) {
		addrs[i].pfra_af = AF_INET;
		addrs[i].pfra_net = 32;
		addrs[i].pfra_ip4addr.s_addr = htonl(0x0a000000 + i);
	}
	memset(&tbl, 0, sizeof(tbl));
	strcpy(tbl.pfrt_name, "bench");
	for (int r = 0; r < rounds; r++) {
		double start = now();
		int added = 0;

		dev = open(argv[1], O_RDWR);
		check(dev != -1, "open");
		memset(&altq, 0, sizeof(altq));
		check(ioctl(dev, DIOCGETALTQSV1, &altq) == 0 || errno == ENODEV, "DIOCGETALTQSV1");
		tbl.pfrt_flags = PFR_TFLAG_PERSIST;
		memset(&io, 0, sizeof(io));
		io.pfrio_buffer = &tbl; io.pfrio_esize = sizeof(tbl); io.pfrio_size = 1;
		check(ioctl(dev, DIOCRADDTABLES, &io) == 0, "DIOCRADDTABLES");
		for (size = 64;;) {
			tbls = calloc(size, sizeof(*tbls));
			memset(&io, 0, sizeof(io));
			io.pfrio_buffer = tbls; io.pfrio_esize = sizeof(*tbls); io.pfrio_size = size;
			io.pfrio_flags = PFR_FLAG_ALLRSETS;
			check(ioctl(dev, DIOCRGETTABLES, &io) == 0, "DIOCRGETTABLES");
			free(tbls);
			if (io.pfrio_size <= size)
				break;
			size = io.pfrio_size;
		}
		tbl.pfrt_flags = 0;
		for (int off = 0; off < n; off += MAXCOUNT) {
			memset(&io, 0, sizeof(io));
			io.pfrio_table = tbl;
			io.pfrio_buffer = addrs + off; io.pfrio_esize = sizeof(*addrs);
			io.pfrio_size = n - off < MAXCOUNT ? n - off : MAXCOUNT;
			io.pfrio_flags = flags;
			check(ioctl(dev, DIOCRADDADDRS, &io) == 0, "DIOCRADDADDRS");
			added += io.pfrio_nadd;
			if (flags)
				for (int i = 0; i < n - off && i < MAXCOUNT; i++)
					addrs[off + i].pfra_fback = 0;	/* as pfctl prints and reuses */
		}
		printf("%.6f %d\n", now() - start, added);
		fflush(stdout);
		/* not timed: pfctl -t bench -T kill */
		memset(&io, 0, sizeof(io));
		io.pfrio_buffer = &tbl; io.pfrio_esize = sizeof(tbl); io.pfrio_size = 1;
		check(ioctl(dev, DIOCRDELTABLES, &io) == 0, "DIOCRDELTABLES");
		close(dev);
	}
	return 0;
}
"""


class CopyDispatcher:
    """The no-op front plus the embedded buffer: reads pfrio_buffer (esize x size bytes) through
    caller memory and, with PFR_FLAG_FEEDBACK, writes it back."""

    def __init__(self):
        import struct
        from cuse.front import NoopDispatcher
        self._noop = NoopDispatcher()
        # pfioc_table after the 1064-byte pfr_table: buffer, esize, size, size2, nadd, ndel,
        # nchange, flags, ticket
        self._tail = struct.Struct("=QiiiiiiiI")
        self.layout = self._noop.layout
        self.open = self._noop.open
        self.release = self._noop.release

    def regions(self, cmd, arg):
        return []

    def ioctl(self, ctx, cmd, arg, data, mem):
        if len(data) == 1104:                       # a pfioc_table
            buf, esize, size, _, _, _, _, flags, _ = self._tail.unpack_from(data, 1064)
            if buf and 0 < size and 0 < esize:
                raw = mem.read(buf, esize * size)
                if flags & 0x4:                     # PFR_FLAG_FEEDBACK
                    mem.write(buf, raw)
        return data


PFD_SERVER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from cuse.front import serve
from pfkern.pfd import build_dispatcher
serve(build_dispatcher(), device=sys.argv[2], mode="fuse", ready=lambda: print("ready", flush=True))
"""


def start_pfd(path):
    proc = subprocess.Popen([sys.executable, "-c", PFD_SERVER, REPO, path], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"pfd did not start on {path}")
    return proc


def run(client, server, path, addresses, rounds, feedback):
    try:
        out = subprocess.run([client, path, str(addresses), str(rounds), str(int(feedback))],
                             capture_output=True, text=True, check=True).stdout
    finally:
        stop_server(server)
    times, added = zip(*((float(t), int(a)) for t, a in (line.split() for line in out.splitlines())))
    return times, added


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addresses", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--feedback", action="store_true", help="PFR_FLAG_FEEDBACK, as pfctl -v")
    args = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="pfbench-")
    try:
        client = compile_client(CLIENT, work)
        results = {}
        servers = (("noop", lambda p: start_server(p, NOOP)),
                   ("copy", lambda p: start_server(p, "bench.tables:CopyDispatcher")),
                   ("pfd", start_pfd))
        for name, start in servers:
            path = os.path.join(work, name)
            times, added = run(client, start(path), path, args.addresses, args.rounds,
                               args.feedback)
            if name == "pfd" and set(added) != {args.addresses}:
                raise RuntimeError(f"pfd added {added}, expected {args.addresses} each round")
            results[name] = times
    finally:
        shutil.rmtree(work, ignore_errors=True)

    requests = -(-args.addresses // 65535)
    print(f"pfctl -T add of {args.addresses:,} addresses ({requests} DIOCRADDADDRS"
          f"{', FEEDBACK' if args.feedback else ''}; + probe, ADDTABLES, GETTABLES), "
          f"median of {args.rounds} rounds:")
    base = statistics.median(results["noop"])
    for name, times in results.items():
        med = statistics.median(times)
        print(f"  {name:5s} {med * 1000:8.1f} ms  (min {min(times) * 1000:.1f}, max "
              f"{max(times) * 1000:.1f})  {med - base:+.3f} s over noop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
