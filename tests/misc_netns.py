"""A pfd in a network namespace of its own, so tests can make and destroy interfaces without
touching the host's (other test runs list those).

`ip netns exec` also gives the daemon a mount namespace with /sys remounted for its network
namespace (the link speeds it reads) — and with it the daemon's FUSE mount, which the tests
reach through /proc/<pid>/root.
"""
import os
import subprocess

from conftest import Pfd


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class NetnsPfd:
    def __init__(self, tmpdir, name=None):
        self.ns = name or f"pfm{os.getpid()}"
        ip("netns", "del", self.ns, check=False)        # left over by a killed run
        ip("netns", "add", self.ns)
        self.link("set", "lo", "up")
        try:
            self.daemon = Pfd(os.path.join(tmpdir, "pf"), netns_wrapper=["ip", "netns", "exec", self.ns])
            self.daemon.wait_ready()
        except Exception:
            ip("netns", "del", self.ns, check=False)
            raise
        # `ip netns exec` execs the daemon in place: the child's pid is pfd's
        self.path = f"/proc/{self.daemon.proc.pid}/root{self.daemon.path}"

    def link(self, *args, check=True):
        return ip("-n", self.ns, "link", *args, check=check)

    def add_veth(self, a, b):
        self.link("add", a, "type", "veth", "peer", "name", b)

    def alive(self):
        return self.daemon.alive()

    def output(self):
        return self.daemon.output()

    def close(self):
        self.daemon.stop()
        ip("netns", "del", self.ns, check=False)
