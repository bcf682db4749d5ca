"""pfd with the datapath, for the tests until pfd.py carries pf_config's lines: the same
dispatcher and device front as `python -m pfkern.pfd`, plus --config/--interface/--route.
With --no-device it runs the router alone (benchmarks)."""
import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pfkern import pf_config, pfd  # noqa: E402


def stats_server(handle, path):
    while True:
        if os.path.exists(path + ".req"):
            doc = {}
            for name in handle.names:
                packets, nbytes = handle.datapath.counters(name)
                doc[name] = dict(handle.stats(name), pf_packets=list(packets), pf_bytes=list(nbytes))
            with open(path + ".tmp", "w") as f:
                json.dump(doc, f)
            os.rename(path + ".tmp", path)
            os.unlink(path + ".req")
        time.sleep(0.02)


def main(argv=None):
    p = argparse.ArgumentParser(prog="datapath_pfd")
    p.add_argument("--device", default="/dev/pf")
    p.add_argument("--mode", default="fuse")
    p.add_argument("--no-device", action="store_true", help="router only, no /dev/pf")
    p.add_argument("--log-level", default="info")
    p.add_argument("--stats-file", help="on request (PATH.req created) write the engine's statistics "
                                        "and pf counters of every interface there as JSON")
    pf_config.add_arguments(p)
    __import__("pfkern.pf_log", fromlist=["x"]).add_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level.upper()),
                        format=pfd.LOG_FORMAT)
    dispatcher = None if args.no_device else pfd.build_dispatcher()
    pflogs = pfd.start_pflog(args)          # no FIFO unless asked: tests run many pfds at once
    handle = pf_config.start_datapath(args, dispatcher.core if dispatcher else None)
    if args.stats_file and handle:
        threading.Thread(target=stats_server, args=(handle, args.stats_file), daemon=True).start()
    try:
        if args.no_device:
            done = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: done.set())
            signal.signal(signal.SIGINT, lambda *_: done.set())
            print("serving datapath", file=sys.stderr, flush=True)
            while not done.wait(1):
                pass
        else:
            from cuse.front import serve
            serve(dispatcher, device=args.device, mode=args.mode, perm=0o600, group=None,
                  ready=lambda: print(f"serving {args.device}", file=sys.stderr, flush=True))
    finally:
        if handle:
            handle.stop()
        for unit in pflogs:
            unit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
