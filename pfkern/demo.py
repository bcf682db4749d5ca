"""What `pfd --demo` shows once the device is up: a client talking to /dev/pf exactly as a pf
program would (ioctls through the ctypes library), printing what pf answers."""
import argparse
import errno
import socket
import sys
import time

from pfkern.client import PF_OUT, PfDevice

IPPROTO_TCP = 6


def name_of(raw):
    return bytes(raw).rstrip(b"\0").decode("latin-1")


def show(device, out=sys.stdout):
    with PfDevice(device, "rw") as pf:
        try:
            pf.start()
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        st = pf.status()
        print(f"pf on {device}: {'Enabled' if st.running else 'Disabled'} since "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.since))}, "
              f"debug {st.debug}, hostid 0x{socket.ntohl(st.hostid):08x}, states {st.states}", file=out)
        print("timeouts: tcp.established %ds, udp.multiple %ds; limit states %d" % (
            pf.get_timeout(2), pf.get_timeout(8), pf.get_limit(0)), file=out)
        print("interfaces (DIOCIGETIFACES, FreeBSD 12 pfi_kif):", file=out)
        for kif in pf.interfaces():
            kind = "group" if kif.pfik_group else "interface"
            b = kif.pfik_bytes
            print(f"  {name_of(kif.pfik_name):<16} {kind:<9} IPv4 in {b[0][0][0]} B, out {b[0][1][0]} B", file=out)
        try:
            pf.natlook(None, IPPROTO_TCP, "192.0.2.1", 8080, "198.51.100.7", 4321, PF_OUT)
        except OSError as exc:
            print(f"DIOCNATLOOK 192.0.2.1:8080 -> 198.51.100.7:4321: {exc.strerror} "
                  f"(no connection has made a state: the NAT demo comes with the translation issue)", file=out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="pfkern.demo")
    p.add_argument("--device", default="/dev/pf")
    args = p.parse_args(argv)
    show(args.device)
    print(f"pfd keeps serving {args.device}; try the seed programs against it. Ctrl-C stops it.")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
