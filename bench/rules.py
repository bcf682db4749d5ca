"""Loading a large ruleset with pfctl's ioctl sequence (pf-abi.md §5.1): DIOCXBEGIN, then per
rule DIOCBEGINADDRS + DIOCADDRULE, then DIOCXCOMMIT; and reading it back as `pfctl -s rules`
does (DIOCGETRULES, then per rule DIOCGETRULE + DIOCGETADDRS). Through pfd, beside the same
ioctls answered by the no-op front in the same run (these machines are shared and noisy).

    python3 bench/rules.py [--rules 10000] [--rounds 5] [--markdown]

A C client compiled here against `pkg-config pfvar` issues the sequence; figures are medians
over the rounds. Goal: 10,000 rules loaded in under 2 s.
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

static void die(const char *what) { perror(what); exit(2); }

/* A filter rule as pfctl's parser makes one; neighbours differ in a few fields, as in a real
 * ruleset, so the skip steps have work to do. */
static void make_rule(struct pf_rule *r, int i)
{
	memset(r, 0, sizeof(*r));
	r->action = (i % 7 == 0) ? PF_DROP : PF_PASS;
	r->direction = (i / 50) % 2 ? PF_IN : PF_OUT;
	r->af = AF_INET;
	r->proto = (i / 10) % 3 ? IPPROTO_TCP : IPPROTO_UDP;
	r->quick = 1;
	r->keep_state = PF_STATE_NORMAL;
	r->rtableid = -1;
	snprintf(r->ifname, sizeof(r->ifname), "eth%d", (i / 200) % 4);
	r->dst.addr.type = PF_ADDR_ADDRMASK;
	r->dst.addr.v.a.addr.addr32[0] = htonl(0x0a000000 | (i & 0xffff));
	r->dst.addr.v.a.mask.addr32[0] = 0xffffffff;
	r->dst.port_op = PF_OP_EQ;
	r->dst.port[0] = htons(1 + i % 60000);
	snprintf(r->label, sizeof(r->label), "rule-%d", i);
}

int main(int argc, char **argv)
{
	int dev = open(argv[1], O_RDWR), n = atoi(argv[2]), i;
	static struct pfioc_trans_e te[5];
	struct pfioc_trans tr;
	struct pfioc_pooladdr pp;
	struct pfioc_rule pr;
	int kinds[5] = { PF_RULESET_NAT, PF_RULESET_BINAT, PF_RULESET_RDR, PF_RULESET_SCRUB,
	    PF_RULESET_FILTER };
	double t0, t1, t2, t3;
	unsigned int nr, ticket;

	if (dev == -1)
		die("open");
	memset(te, 0, sizeof(te));
	for (i = 0; i < 5; i++)
		te[i].rs_num = kinds[i];
	memset(&tr, 0, sizeof(tr));
	tr.size = 5;
	tr.esize = sizeof(te[0]);
	tr.array = te;

	t0 = now();
	if (ioctl(dev, DIOCXBEGIN, &tr))
		die("DIOCXBEGIN");
	for (i = 0; i < n; i++) {
		memset(&pp, 0, sizeof(pp));
		if (ioctl(dev, DIOCBEGINADDRS, &pp))
			die("DIOCBEGINADDRS");
		memset(&pr, 0, sizeof(pr));
		pr.ticket = te[4].ticket;
		pr.pool_ticket = pp.ticket;
		make_rule(&pr.rule, i);
		if (ioctl(dev, DIOCADDRULE, &pr))
			die("DIOCADDRULE");
	}
	t1 = now();
	if (ioctl(dev, DIOCXCOMMIT, &tr))
		die("DIOCXCOMMIT");
	t2 = now();

	/* pfctl -s rules: the filter part */
	memset(&pr, 0, sizeof(pr));
	pr.rule.action = PF_PASS;
	if (ioctl(dev, DIOCGETRULES, &pr))
		die("DIOCGETRULES");
	nr = pr.nr ? pr.nr : (unsigned)n;	/* the no-op front echoes 0 */
	ticket = pr.ticket;
	for (i = 0; i < (int)nr; i++) {
		pr.nr = i;
		pr.ticket = ticket;
		pr.rule.action = PF_PASS;
		if (ioctl(dev, DIOCGETRULE, &pr))
			die("DIOCGETRULE");
		memset(&pp, 0, sizeof(pp));
		pp.r_action = PF_PASS;
		pp.r_num = i;
		pp.ticket = ticket;
		if (ioctl(dev, DIOCGETADDRS, &pp))
			die("DIOCGETADDRS");
	}
	t3 = now();
	printf("%f %f %f\n", t1 - t0, t2 - t1, t3 - t2);
	return 0;
}
"""

def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="pfbench-")
    try:
        client = compile_client(CLIENT, work)

        paths = {"noop": os.path.join(work, "noop"), "pfd": os.path.join(work, "pf")}
        servers = [start_server(paths["noop"], NOOP), start_server(paths["pfd"], PFD)]
        try:
            results = {}
            for _ in range(args.rounds):
                for name, path in paths.items():
                    out = subprocess.run([client, path, str(args.rules)], check=True,
                                         capture_output=True, text=True).stdout.split()
                    load, commit, show = map(float, out)
                    results.setdefault(name, []).append((load + commit, commit, show))
        finally:
            for server in servers:
                stop_server(server)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {name: [statistics.median(r[i] for r in rows) for i in range(3)]
           for name, rows in results.items()}
    rows = [("load (XBEGIN, BEGINADDRS+ADDRULE each, XCOMMIT)", 0),
            ("of which DIOCXCOMMIT", 1), ("pfctl -s rules (GETRULE+GETADDRS each)", 2)]
    n = args.rules
    if args.markdown:
        print(f"| {n:,} filter rules | no-op front (s) | pfd (s) | pfd − no-op per rule (µs) |")
        print("|---|---|---|---|")
        for label, i in rows:
            base, real = med["noop"][i], med["pfd"][i]
            print(f"| {label} | {base:.3f} | {real:.3f} | {(real - base) / n * 1e6:.1f} |")
    else:
        for label, i in rows:
            base, real = med["noop"][i], med["pfd"][i]
            print(f"{label:<52} noop {base:7.3f} s  pfd {real:7.3f} s  "
                  f"(+{(real - base) / n * 1e6:.1f} us/rule)")
        verdict = "met" if med["pfd"][0] < 2.0 else "NOT met"
        print(f"goal: {n:,} rules loaded in < 2 s: {verdict} ({med['pfd'][0]:.2f} s, "
              f"median of {args.rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
