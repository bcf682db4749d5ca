"""A daemon for the device-front tests: cuse.serve with the test dispatcher, in its own process so
that tests can kill it for real. Prints READY once the device can be opened; like pfd, exits 1
with a one-line message when the device is busy or cannot be served."""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cuse.front import FrontError, NoopDispatcher, serve  # noqa: E402
from front_dispatcher import ProbeDispatcher  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("device")
    parser.add_argument("--mode", default="fuse")
    parser.add_argument("--perm", type=lambda s: int(s, 8), default=0o600)
    parser.add_argument("--group")
    parser.add_argument("--noop", action="store_true", help="NoopDispatcher instead of the test one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(name)s %(levelname)s %(message)s")
    dispatcher = NoopDispatcher() if args.noop else ProbeDispatcher()
    try:
        serve(dispatcher, device=args.device, mode=args.mode, perm=args.perm, group=args.group,
              ready=lambda: print("READY", flush=True))
    except FrontError as exc:
        print(f"front_daemon: {exc}", file=sys.stderr)
        return 1
    print("STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
