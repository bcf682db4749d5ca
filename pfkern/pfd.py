"""pfd — the daemon: serves /dev/pf (CUSE device or FUSE file) in the foreground.

Service managers and tests supervise it; it logs to stderr. SIGTERM/SIGINT stop it cleanly
(device node or mount removed).
"""
import argparse
import logging
import os
import signal
import sys

log = logging.getLogger("pfd")

LOG_FORMAT = "pfd[%(process)d] %(levelname)s %(name)s: %(message)s"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="pfd", description="FreeBSD pf's /dev/pf on Linux, served from userspace.")
    p.add_argument("--device", default="/dev/pf", help="device path (default /dev/pf)")
    p.add_argument("--mode", choices=("auto", "cuse", "fuse"), default="auto",
                   help="cuse: character device through /dev/cuse; fuse: a FUSE file mounted on the "
                        "path; auto: cuse when the kernel has it (default)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="debug adds a trace of every ioctl")
    p.add_argument("--perm", default="0600", help="mode of the device node (octal, default 0600)")
    p.add_argument("--group", default=None, help="group owning the device node")
    p.add_argument("--demo", action="store_true",
                   help="build a demo NAT router on built-in defaults (two TAPs, two network "
                        "namespaces, a nat/rdr/table ruleset, connections through the engine), "
                        "print what pf and the seed programs report, keep serving")
    p.add_argument("--no-device", action="store_true",
                   help="run the router and the pf engine without serving the device (rules "
                        "then stay as loaded: none; for measuring the router alone)")
    p.add_argument("--stats-file", metavar="PATH",
                   help="on SIGUSR1, write the router's statistics and pf counters of every "
                        "datapath interface to PATH as JSON (with a 'seq' that counts the writes)")
    from pfkern import demo, pf_config, pf_log
    demo.add_arguments(p)
    pf_config.add_arguments(p)
    pf_log.add_arguments(p)
    args = p.parse_args(argv)
    try:
        args.perm = int(args.perm, 8)
    except ValueError:
        p.error(f"--perm: not an octal mode: {args.perm!r}")
    if not 0 <= args.perm <= 0o7777:
        p.error(f"--perm: mode out of range: {args.perm:o}")
    return args


def build_dispatcher():
    """The pf core with every concern wired in, behind the ioctl dispatcher."""
    from pfkern import pf_osfp, pf_ruleset, pf_state, pf_table
    from pfkern.pf import PfCore
    from pfkern.pf_if import Interfaces
    from pfkern.pf_ioctl import Dispatcher
    core = PfCore(Interfaces())
    core.states = pf_state.StateTable(core)
    core.tables = pf_table.Tables(core)
    core.rulesets = pf_ruleset.Rulesets(core)
    core.osfp = pf_osfp.Fingerprints(core)
    return Dispatcher(core)


def serve_datapath_only(datapath, pflogs):
    """--no-device: the router runs until SIGTERM/SIGINT."""
    import threading
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    log.info("serving datapath")
    try:
        while not done.wait(1):
            pass
    finally:
        if datapath is not None:
            datapath.stop()
        for unit in pflogs:
            unit.close()
    log.info("stopped")
    return 0


def start_pflog(args, default_fifo=None):
    """Open the pflog units the flags ask for (docs/pflog.md); [] when none."""
    from pfkern import pf_log
    units = pf_log.from_config(args, default_fifo=default_fifo)
    for unit in units:
        unit.open()
        log.info("pflog%d: %s", unit.unit, ", ".join(x for x in (unit.path, unit.fifo) if x))
    return units


def stats_on_signal(handle, path):
    """A thread answering SIGUSR1 with the datapath's statistics in `path` (SIGUSR1 is blocked
    in every other thread, so it waits here)."""
    import json
    import threading

    def run():
        seq = 0
        while True:
            signal.sigwait({signal.SIGUSR1})
            seq += 1
            doc = {"seq": seq, "interfaces": {}}
            for name in handle.names:
                packets, nbytes = handle.datapath.counters(name)
                doc["interfaces"][name] = dict(handle.stats(name), pf_packets=list(packets),
                                               pf_bytes=list(nbytes))
            with open(path + ".tmp", "w") as f:
                json.dump(doc, f)
            os.rename(path + ".tmp", path)

    threading.Thread(target=run, name="pfd-stats", daemon=True).start()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level.upper()), format=LOG_FORMAT)
    from cuse.front import DeviceBusy, serve

    from pfkern import pf_config
    from pfkern import pf_log
    demo = None
    if args.demo:
        # before the datapath: the demo adds its TAPs to args.interface (pfkern/demo.py)
        from pfkern.demo import Demo, DemoError
        try:
            demo = Demo(args)
        except (DemoError, OSError) as exc:
            print(f"pfd: --demo: {exc}", file=sys.stderr)
            return 1
    if args.stats_file:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})   # before any thread starts
    dispatcher = None if args.no_device else build_dispatcher()
    try:
        pflogs = start_pflog(args, None if args.no_device else pf_log.DEFAULT_FIFO)
    except (pf_log.PflogError, OSError) as exc:
        log.error("pflog: %s", exc)
        if demo is not None:
            demo.close()
        return 1
    try:
        datapath = pf_config.start_datapath(args, dispatcher.core if dispatcher else None)
    except (pf_config.ConfigError, OSError) as exc:
        log.error("datapath: %s", exc)
        for unit in pflogs:
            unit.close()
        if demo is not None:
            demo.close()
        return 1

    if args.stats_file and datapath is not None:
        stats_on_signal(datapath, args.stats_file)
    if args.no_device:
        return serve_datapath_only(datapath, pflogs)

    def ready():
        log.info("serving %s", args.device)
        if demo is not None:
            # a failed demo stops pfd as SIGTERM would (and pfd then exits with status 1)
            demo.start(args.device, on_failure=lambda: os.kill(os.getpid(), signal.SIGTERM))

    log.info("starting: device %s, mode %s", args.device, args.mode)
    try:
        serve(dispatcher, device=args.device, mode=args.mode, perm=args.perm, group=args.group, ready=ready)
    except DeviceBusy as exc:
        print(f"pfd: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        log.error("cannot serve %s: %s", args.device, exc)
        return 1
    finally:
        if demo is not None:
            demo.stop()         # its processes first, then the TAPs go with the datapath,
        if datapath is not None:
            datapath.stop()
        for unit in pflogs:
            unit.close()
        if demo is not None:
            demo.close()        # then its namespaces
    log.info("stopped")
    return 1 if demo is not None and demo.failed else 0


if __name__ == "__main__":
    sys.exit(main())
