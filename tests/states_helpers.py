"""Helpers of the state tests: building pfsync_states and kill requests with the ctypes client,
an in-process dispatcher for what no ioctl can set up (counters, source nodes), and the C-API
module the datapath will use, compiled from Cython at run time."""
import ctypes
import errno
import ipaddress
import os
import socket
import subprocess
import sys
import sysconfig

from pfkern.client import (AF_INET, AF_INET6, DIOCADDSTATE, DIOCCLRSRCNODES, DIOCCLRSTATES,
                           DIOCGETSTATUS, DIOCKILLSTATES, PF_OUT, PFTM_TCP_ESTABLISHED, pf_rule_addr,
                           pf_status, pfioc_state, pfioc_state_kill, pfsync_state)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP = 6, 17, 1
AF_INET6_BSD = 28


def be64(n):
    """htobe64 as the raw 64-bit value a little-endian host stores."""
    return int.from_bytes(n.to_bytes(8, "big"), "little")


def af_of(addr):
    return AF_INET if ipaddress.ip_address(addr).version == 4 else AF_INET6


def make_state(wire, stack=None, *, proto=IPPROTO_TCP, direction=PF_OUT, ifname="all", id=1,
               creatorid=1, timeout=PFTM_TCP_ESTABLISHED, af=None, creation=0, expire=0,
               src_state=4, dst_state=4, **fields):
    """A pfsync_state as pfsync/pfctl send it. wire/stack = ((addr0, port0), (addr1, port1)) with
    host-order ports; stack defaults to wire (no translation). id is the counter (stored as
    htobe64), creatorid the host-order value (stored htonl), creation/expire seconds."""
    st = pfsync_state()
    st.id = be64(id)
    st.creatorid = socket.htonl(creatorid)
    st.ifname = ifname.encode()
    st.af = af if af is not None else af_of(wire[0][0])
    st.proto = proto
    st.direction = direction
    st.timeout = timeout
    st.creation = socket.htonl(creation)
    st.expire = socket.htonl(expire)
    st.src.state = src_state
    st.dst.state = dst_state
    for i, key in enumerate((wire, stack or wire)):
        for j, (addr, port) in enumerate(key):
            st.key[i].addr[j].set(addr)
            st.key[i].port[j] = socket.htons(port)
    for name, value in fields.items():
        setattr(st, name, value)
    return st


def add(dev, st):
    dev.ioctl(DIOCADDSTATE, pfioc_state(state=st))


def errno_of(fn, *args):
    """The errno fn fails with, or 0 when it succeeds (garbage inputs may be accepted)."""
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def rule_addr(addr=None, prefix=None, neg=0, op=0, ports=(0, 0)):
    """One side of a kill request: address/prefix (None = any), negation, port operator and
    host-order ports."""
    ra = pf_rule_addr()
    if addr is not None:
        ip = ipaddress.ip_address(addr)
        bits = ip.max_prefixlen if prefix is None else prefix
        ra.addr.v.a.addr.set(ip)
        mask = ipaddress.ip_network(f"{ip}/{bits}", strict=False).netmask
        ra.addr.v.a.mask.set(mask)
    ra.neg = neg
    ra.port_op = op
    ra.port[0] = socket.htons(ports[0])
    ra.port[1] = socket.htons(ports[1])
    return ra


def kill(dev, *, af=0, proto=0, src=None, dst=None, ifname="", label="", id=0, creatorid=0,
         killed=0, cmd=DIOCKILLSTATES):
    psk = pfioc_state_kill(psk_af=af, psk_proto=proto, psk_ifname=ifname.encode(),
                           psk_label=label.encode(), psk_killed=killed)
    psk.psk_pfcmp.id = id
    psk.psk_pfcmp.creatorid = creatorid
    if src is not None:
        psk.psk_src = src
    if dst is not None:
        psk.psk_dst = dst
    return dev.ioctl(cmd, psk)


def clear(dev, ifname=""):
    n = kill(dev, ifname=ifname, cmd=DIOCCLRSTATES).psk_killed
    dev.ioctl(DIOCCLRSRCNODES)
    return n


def ids(states):
    return sorted((s.id, s.creatorid) for s in states)


# --- in process ------------------------------------------------------------------------------

class FakeInterfaces:
    """pf_if.Interfaces' lookup, for a core without rtnetlink."""
    NAMES = ("all", "lo", "eth0", "eth")

    def get(self, name):
        return name if name in self.NAMES else None


class ProcessMemory:
    """CallerMemory over this process's own memory (ctypes addresses); 0 is a bad pointer."""

    def read(self, addr, length):
        if not addr and length:
            raise OSError(errno.EFAULT, "bad address")
        return ctypes.string_at(addr, length)

    def write(self, addr, data):
        if not addr and data:
            raise OSError(errno.EFAULT, "bad address")
        ctypes.memmove(addr, bytes(data), len(data))


class Local:
    """A core, its state table and the dispatcher in this process: ioctl(cmd, ctypes struct)
    works as against a device, and `states` is the StateTable itself."""

    def __init__(self):
        from pfkern.pf import PfCore
        from pfkern.pf_ioctl import Dispatcher
        from pfkern.pf_state import StateTable
        self.core = PfCore(FakeInterfaces())
        self.core.states = self.states = StateTable(self.core)
        self.dispatcher = Dispatcher(self.core)
        self.ctx = self.dispatcher.open(os.O_RDWR)
        self.mem = ProcessMemory()

    def ioctl(self, cmd, arg=None):
        data = arg.to_bytes() if arg is not None else b""
        out = self.dispatcher.ioctl(self.ctx, cmd, ctypes.addressof(arg) if arg is not None else 0,
                                    data, self.mem)
        if arg is not None:
            ctypes.memmove(ctypes.addressof(arg), out, len(out))
        return arg

    def status(self):
        return self.ioctl(DIOCGETSTATUS, pf_status())


# --- the C API, cimported by a module built here -----------------------------------------------

CAPI_SOURCE = r'''
# cython: language_level=3, boundscheck=False, wraparound=False
"""Uses pf_state's C API the way the datapath will: states built in C, found without the GIL."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset, memcpy, strncpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from pfkern.pfvar cimport pf_addr, PF_IN, PF_OUT
from pfkern.pfvar_priv cimport pf_state_key_cmp, pf_kstate, htonl, htons
from pfkern.pf_state cimport (StateTable, pf_state_key_fill, pf_state_alloc, pf_state_insert,
                              pf_state_release, pf_find_state, pf_uptime)


cdef void _ifname(char *out, bytes name):
    memset(out, 0, 16)
    strncpy(out, name, 15)


def insert(StateTable tbl, bytes ifname, uint8_t af, uint8_t proto, bytes a0, bytes a1,
           uint16_t p0, uint16_t p1, uint8_t direction, uint64_t id=0, uint32_t creatorid=0):
    """One untranslated state created as pf_create_state will; returns the errno (0 = linked)."""
    cdef pf_state_key_cmp k
    cdef pf_kstate *st
    cdef char name[16]
    cdef int err
    _ifname(name, ifname)
    pf_state_key_fill(&k, af, proto, <pf_addr *><char *>a0, <pf_addr *><char *>a1, p0, p1)
    tbl.lock()
    try:
        st = pf_state_alloc(tbl.t)
        if st == NULL:
            return 12
        st.direction = direction
        st.timeout = 2
        st.id = id
        st.creatorid = creatorid
        st.creation = st.expire = pf_uptime()
        err = pf_state_insert(tbl.t, name, &k, &k, st)
        if err:
            pf_state_release(tbl.t, st)
        return err
    finally:
        tbl.unlock()


def find(StateTable tbl, bytes ifname, uint8_t af, uint8_t proto, bytes a0, bytes a1,
         uint16_t p0, uint16_t p1, int direction):
    """(id, creatorid, ifname) of the state a packet would match, or None."""
    cdef pf_state_key_cmp k
    cdef pf_kstate *st
    cdef char name[16]
    _ifname(name, ifname)
    pf_state_key_fill(&k, af, proto, <pf_addr *><char *>a0, <pf_addr *><char *>a1, p0, p1)
    tbl.lock()
    try:
        st = pf_find_state(tbl.t, name, &k, direction)
        if st == NULL:
            return None
        return (st.id, st.creatorid, st.ifname.decode())
    finally:
        tbl.unlock()


cdef double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def bench_lookup(StateTable tbl, int nstates, int rounds, int direction=PF_OUT, uint16_t dport=80,
                 uint64_t stride=7919):
    """(ns per pf_find_state, hits) over keys 10.0.0.0+i:1024 -> 192.0.2.1:dport, i < nstates
    (the keys BULK_IMPORT_C imports with dport 80), each looked up `rounds` times, in the order
    i * stride % nstates (1: insertion order, which the prefetcher likes; 7919, prime to the sizes
    used: scattered), GIL released."""
    cdef pf_state_key_cmp *keys = NULL
    cdef pf_addr a0, a1
    cdef char name[16]
    cdef int i, r, hits = 0
    cdef double t0, t1
    keys = <pf_state_key_cmp *>malloc(nstates * sizeof(pf_state_key_cmp))
    memset(name, 0, 16)
    memset(&a1, 0, sizeof(a1))
    a1.addr32[0] = htonl(0xc0000201)
    for i in range(nstates):
        memset(&a0, 0, sizeof(a0))
        a0.addr32[0] = htonl(0x0a000000 + <uint32_t>((<uint64_t>i * stride) % nstates))
        pf_state_key_fill(&keys[i], 2, 6, &a0, &a1, htons(1024), htons(dport))
    tbl.lock()
    with nogil:
        t0 = _now()
        for r in range(rounds):
            for i in range(nstates):
                if pf_find_state(tbl.t, name, &keys[i], direction) != NULL:
                    hits += 1
        t1 = _now()
    tbl.unlock()
    free(keys)
    return (t1 - t0) * 1e9 / (<double>nstates * rounds), hits
'''


def build_capi(workdir):
    """Compile CAPI_SOURCE against pfkern's .pxd files and import it."""
    src = os.path.join(workdir, "states_capi.pyx")
    with open(src, "w") as f:
        f.write(CAPI_SOURCE)
    flags = subprocess.run(["pkg-config", "--cflags", "libbsd-overlay"], capture_output=True,
                           text=True).stdout.split()
    res = subprocess.run([sys.executable, "-m", "cython", "-3", "-I", REPO, src, "-o",
                          os.path.join(workdir, "states_capi.c")], capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError("cython failed:\n" + res.stderr)
    so = os.path.join(workdir, "states_capi" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = ["cc", "-O2", "-shared", "-fPIC", "-o", so, os.path.join(workdir, "states_capi.c"),
           "-I", sysconfig.get_paths()["include"], "-I", os.path.join(REPO, "include"), *flags]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError("cc failed:\n" + res.stderr)
    sys.path.insert(0, workdir)
    try:
        import states_capi
    finally:
        sys.path.remove(workdir)
    return states_capi


# --- many states at once -----------------------------------------------------------------------

# Imports states 10.0.0.0+i:1024 -> 192.0.2.1:80 (TCP, PF_OUT, floating), ids base+i, creatorid
# argv[3]; prints how many went in and the errno that stopped it (0 if none).
BULK_IMPORT_C = r"""
#include <sys/types.h>
#include <sys/ioctl.h>
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/pfvar.h>

int main(int argc, char **argv)
{
	int dev = open(argv[1], O_RDWR);
	long n = atol(argv[2]), i;
	unsigned creator = strtoul(argv[3], NULL, 0);
	unsigned long base = argc > 4 ? strtoul(argv[4], NULL, 0) : 1;
	struct pfioc_state ps;
	struct pfsync_state *sp = &ps.state;

	if (dev == -1) { perror("open"); return 2; }
	memset(&ps, 0, sizeof(ps));
	strcpy(sp->ifname, "all");
	sp->af = AF_INET;
	sp->proto = IPPROTO_TCP;
	sp->direction = PF_OUT;
	sp->timeout = PFTM_TCP_ESTABLISHED;
	sp->creatorid = htonl(creator);
	sp->src.state = sp->dst.state = 4;
	for (int k = 0; k < 2; k++) {
		sp->key[k].addr[1].v4.s_addr = htonl(0xc0000201);
		sp->key[k].port[0] = htons(1024);
		sp->key[k].port[1] = htons(80);
	}
	for (i = 0; i < n; i++) {
		sp->id = htobe64(base + i);
		sp->key[0].addr[0].v4.s_addr = sp->key[1].addr[0].v4.s_addr = htonl(0x0a000000 + i);
		if (ioctl(dev, DIOCADDSTATE, &ps) == -1)
			break;
	}
	printf("%ld %d\n", i, i < n ? errno : 0);
	return 0;
}
"""


def bulk_import(binary, path, n, creatorid=1, base=1):
    out = subprocess.run([binary, path, str(n), str(creatorid), str(base)], capture_output=True,
                         text=True, timeout=600)
    done, err = out.stdout.split()
    return int(done), int(err)
