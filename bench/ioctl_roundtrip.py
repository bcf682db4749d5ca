"""Device round trips per second: DIOCGETSTATUS and DIOCNATLOOK through pfd, beside a no-op reply
of the same device front in the same run (the baseline: these machines are shared and noisy).

    python3 bench/ioctl_roundtrip.py [--seconds 2] [--rounds 5] [--markdown]

A C client (compiled here with `pkg-config pfvar`) issues the ioctl in a tight loop for a fixed
time; each round runs baseline and pfd back to back; the figures are medians over the rounds.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from front_noop import NOOP, PFD, compile_client, start_server, stop_server  # noqa: E402

CLIENT = r"""
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <net/pfvar.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int dev = open(argv[1], O_RDWR);
	double seconds = atof(argv[3]), start, end;
	unsigned long n = 0, cmd;
	struct pf_status st;
	struct pfioc_natlook nl;
	void *arg;

	if (dev == -1) { perror("open"); return 2; }
	memset(&nl, 0, sizeof(nl));
	nl.af = AF_INET; nl.proto = IPPROTO_TCP; nl.direction = PF_OUT;
	nl.saddr.v4.s_addr = inet_addr("10.0.0.1"); nl.sport = htons(1234);
	nl.daddr.v4.s_addr = inet_addr("10.0.0.2"); nl.dport = htons(80);
	if (strcmp(argv[2], "status") == 0) { cmd = DIOCGETSTATUS; arg = &st; }
	else { cmd = DIOCNATLOOK; arg = &nl; }
	start = now();
	end = start + seconds;
	do {
		for (int i = 0; i < 256; i++, n++)
			ioctl(dev, cmd, arg);   /* NATLOOK answers ENOENT on pfd (no states): a full trip */
	} while (now() < end);
	printf("%.1f\n", n / (now() - start));
	return 0;
}
"""

def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="pfbench-")
    try:
        client = compile_client(CLIENT, work)

        noop_path, pfd_path = os.path.join(work, "noop"), os.path.join(work, "pf")
        noop = start_server(noop_path, NOOP)
        pfd = start_server(pfd_path, PFD)
        try:
            results = {}
            for _ in range(args.rounds):
                for op in ("status", "natlook"):
                    for name, path in (("noop", noop_path), ("pfd", pfd_path)):
                        out = subprocess.run([client, path, op, str(args.seconds)], check=True,
                                             capture_output=True, text=True).stdout
                        results.setdefault((op, name), []).append(float(out))
        finally:
            stop_server(noop)
            stop_server(pfd)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for op, label in (("status", "DIOCGETSTATUS"), ("natlook", "DIOCNATLOOK")):
        base = statistics.median(results[(op, "noop")])
        real = statistics.median(results[(op, "pfd")])
        rows.append((label, base, real, real / base))
    if args.markdown:
        print("| ioctl | no-op front (trips/s) | pfd (trips/s) | pfd / no-op |")
        print("|---|---|---|---|")
        for label, base, real, ratio in rows:
            print(f"| {label} | {base:,.0f} | {real:,.0f} | {ratio:.0%} |")
    else:
        for label, base, real, ratio in rows:
            print(f"{label:<14} noop {base:10,.0f}/s  pfd {real:10,.0f}/s  ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
