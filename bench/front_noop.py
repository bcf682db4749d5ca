"""Round trips per second of one 416-byte _IOWR ioctl through the device front (FUSE-file mode)
answered by cuse.front.NoopDispatcher: the cost of the front alone, the baseline other device
benchmarks are measured against.

    python3 bench/front_noop.py [--seconds 2] [--rounds 5] [--clients 1]
                                [--dispatcher module:factory]

A C client compiled here issues the ioctl in a tight loop for a fixed time; the figure is the
median over the rounds (per client count, summed over the clients). --dispatcher serves another
Dispatcher (a zero-argument callable returning one) on the same path for comparison.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLIENT = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

struct arg416 { unsigned char bytes[416]; };
#define NOOP_IOWR _IOWR('D', 0x7f, struct arg416)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int dev = open(argv[1], O_RDWR);
	double seconds = atof(argv[2]), start, end;
	unsigned long n = 0;
	struct arg416 arg;

	if (dev == -1) { perror("open"); return 2; }
	memset(&arg, 0x5a, sizeof(arg));
	if (ioctl(dev, NOOP_IOWR, &arg) != 0) { perror("ioctl"); return 2; }
	start = now();
	end = start + seconds;
	do {
		for (int i = 0; i < 256; i++, n++)
			ioctl(dev, NOOP_IOWR, &arg);
	} while (now() < end);
	printf("%.1f\n", n / (now() - start));
	return 0;
}
"""

SERVER = r"""
import importlib, sys
sys.path.insert(0, sys.argv[1])
from cuse.front import serve
module, _, name = sys.argv[3].partition(":")
serve(getattr(importlib.import_module(module), name)(), device=sys.argv[2], mode="fuse",
      ready=lambda: print("ready", flush=True))
"""


# The dispatchers benchmarks put side by side in one harness (start_server).
NOOP = "cuse.front:NoopDispatcher"
PFD = "pfkern.pfd:build_dispatcher"


def compile_client(source, workdir, name="client", pfvar=True):
    """Compile a benchmark's C client (with `pkg-config pfvar` unless pfvar=False); its path."""
    src = os.path.join(workdir, name + ".c")
    binary = os.path.join(workdir, name)
    with open(src, "w") as f:
        f.write(source)
    flags = []
    if pfvar:
        out = subprocess.run(["pkg-config", "--cflags", "--libs", "pfvar"], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("pkg-config pfvar failed (run scripts/bootstrap): " + out.stderr)
        flags = out.stdout.split()
    subprocess.run(["cc", "-O2", "-o", binary, src, *flags], check=True)
    return binary


def start_server(path, dispatcher):
    proc = subprocess.Popen([sys.executable, "-c", SERVER, REPO, path, dispatcher], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the front did not start on {path}")
    return proc


def stop_server(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_clients(client, path, seconds, count):
    procs = [subprocess.Popen([client, path, str(seconds)], stdout=subprocess.PIPE, text=True)
             for _ in range(count)]
    rates = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"client failed with status {proc.returncode}")
        rates.append(float(out))
    return sum(rates)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--dispatcher", default=NOOP)
    args = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="pfbench-")
    try:
        client = compile_client(CLIENT, work, pfvar=False)
        path = os.path.join(work, "pf")
        server = start_server(path, args.dispatcher)
        try:
            rates = [run_clients(client, path, args.seconds, args.clients)
                     for _ in range(args.rounds)]
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rate = statistics.median(rates)
    print(f"{args.dispatcher}: {rate:,.0f} round trips/s ({1e6 / rate:.1f} us each), "
          f"{args.clients} client(s), median of {args.rounds} x {args.seconds:g} s "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
