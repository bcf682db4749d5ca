"""ABI test: include/net/pfvar.h against FreeBSD 12.1 amd64 numbers.

A C probe generated from tests/abi/freebsd121.py (written from
../shared/reference/pf-abi.md) is compiled against include/ and run; every
size, offset, member size, command value, constant and name string it prints
is compared with the table.  Further tests compile the header the way stock
pf programs include it, pedantically, as C++, and through Cython, and
cross-check the table against the reference document itself.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from abi import freebsd121 as ref  # noqa: E402
from abi import probe  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None,
                                reason="gcc is needed to compile the probe")

OVERLAY = probe.libbsd_overlay_cflags()
needs_overlay = pytest.mark.skipif(
    OVERLAY is None, reason="pkg-config libbsd-overlay not available")

FLAVOURS = {
    "plain": ([], False),
    "libbsd-overlay": (OVERLAY or [], False),
    "PFIOC_USE_LATEST": ([], True),
}


def _shared_dir() -> Path | None:
    for cand in (Path("/work/shared"), probe.REPO.parent / "shared"):
        if (cand / "reference" / "pf-abi.md").is_file():
            return cand
    return None


# ---------------------------------------------------------------------------
# The table itself
# ---------------------------------------------------------------------------

def test_table_is_consistent():
    """Catch typos in the expectation table before blaming the header."""
    problems = []
    for st in ref.LAYOUTS.values():
        for desig, off, size in st.fields:
            if not ref.designator_ok(desig):
                problems.append(f"{st.name}: bad designator {desig!r}")
            end = off + (size or 1)
            if end > st.size:
                problems.append(f"{st.name}.{desig}: {off}+{size} > {st.size}")
    for name, bsd, linux in ref.APPENDIX_A:
        if bsd & 0x20000000:                      # BSD IOC_VOID: an _IO
            if linux != bsd & ~0x20000000 or (bsd >> 16) & 0x1fff:
                problems.append(f"{name}: _IO values {bsd:#x}/{linux:#x}")
        elif bsd != linux or bsd >> 30 != 3:
            problems.append(f"{name}: _IOWR values {bsd:#x}/{linux:#x}")
        if (bsd >> 8) & 0xff != ord("D"):
            problems.append(f"{name}: group is not 'D'")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# The probe: every number the header produces
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_layouts_commands_constants(flavour, tmp_path):
    extra, latest = FLAVOURS[flavour]
    if flavour == "libbsd-overlay" and OVERLAY is None:
        pytest.skip("pkg-config libbsd-overlay not available")
    out = probe.run_probe(tmp_path, extra, latest=latest)
    bad, checks = probe.mismatches(out, latest=latest)
    assert not bad, (f"{len(bad)} of {checks} ABI checks failed "
                     f"({flavour}):\n  " + "\n  ".join(bad))
    assert checks > 900


def test_probe_reports_a_broken_offset(tmp_path, monkeypatch):
    """The comparison must be able to fail, naming the culprit."""
    out = probe.run_probe(tmp_path, [])
    broken = copy.deepcopy(ref.LAYOUTS["pf_rule"])
    broken.fields = [(d, o + 1 if d == "af" else o, s)
                     for d, o, s in broken.fields]
    monkeypatch.setitem(ref.LAYOUTS, "pf_rule", broken)
    monkeypatch.setitem(ref.COMMANDS, "DIOCNATLOOK", 0xc04d4417)
    bad, _ = probe.mismatches(out)
    assert any("offsetof(struct pf_rule, af) = 913, expected 914" in b
               for b in bad), bad
    assert any(b.startswith("DIOCNATLOOK = 0xc04c4417") for b in bad), bad
    assert len(bad) == 2, bad


# ---------------------------------------------------------------------------
# Compiling the header the way programs use it
# ---------------------------------------------------------------------------

# The include list of the pf(4) DIOCNATLOOK example (seed 001), then code that
# touches the names stock programs and pfctl rely on.
STOCK_PROGRAM = r"""
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/fcntl.h>
#include <sys/param.h>          /* Linux MAXPATHLEN 4096 must not leak in */
#include <net/if.h>
#include <netinet/in.h>
#include <net/pfvar.h>
#include <arpa/inet.h>
#include <err.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

_Static_assert(sizeof(struct pfioc_rule) == 3040, "pfioc_rule");
_Static_assert(MAXPATHLEN == 4096 && PF_MAXPATHLEN == 1024, "paths");

static int
get_ifaces(int dev, struct pfi_if *buf, int *n)
{
	struct pfioc_iface io;

	memset(&io, 0, sizeof(io));
	io.pfiio_buffer = buf;
	io.pfiio_esize = sizeof(*buf);
	io.pfiio_size = *n;
	io.pfiio_flags = PFI_FLAG_INSTANCE;
	if (ioctl(dev, DIOCIGETIFACES, &io) == -1)
		return (-1);
	*n = io.pfiio_size;
	return (buf && buf[0].pfif_flags & PFI_IFLAG_INSTANCE);
}

int
main(int argc, char *argv[])
{
	struct pfioc_natlook nl;
	struct pfioc_states ps;
	struct pfioc_table io;
	struct pfi_kif kif;
	struct pfr_addr ad;
	struct pf_addr a, b;
	struct pfioc_trans_e te;
	struct pfioc_trans tr;
	struct pf_status st;
	struct pfioc_altq pa;
	static const char *reasons[] = PFRES_NAMES;
	static const char *lcnt[] = LCNT_NAMES;
	static const char *fcnt[] = FCNT_NAMES;
	unsigned int cls = 0, ver = 0, sub = 0;
	pf_osfp_t fp = 0;
	int dev, n = 0;

	(void)argv;
	memset(&nl, 0, sizeof(nl));
	nl.saddr.v4.s_addr = htonl(0x0a000001);
	nl.sport = htons(80);
	nl.daddr.v6.s6_addr[15] = 1;
	nl.af = AF_INET;
	nl.proto = IPPROTO_TCP;
	nl.direction = PF_IN;
	memset(&ps, 0, sizeof(ps));
	ps.ps_buf = NULL;
	ps.ps_states = NULL;
	memset(&io, 0, sizeof(io));
	io.pfrio_naddr = 1;		/* the aliases name two slots */
	io.pfrio_clrflag = io.pfrio_setflag;
	if (io.pfrio_nzero != 1 || io.pfrio_nmatch != 1 || io.pfrio_exists != 1)
		return (1);
	memset(&kif, 0, sizeof(kif));
	kif.pfik_tree.rbe_color = kif.pfik_list.le_next != NULL;
	memset(&ad, 0, sizeof(ad));
	ad.pfra_ip4addr.s_addr = 0;
	ad.pfra_ip6addr.s6_addr[0] = 0xfe;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	PF_ACPY(&a, &nl.saddr, AF_INET);
	memset(&te, 0, sizeof(te));
	tr.size = 1;
	tr.esize = sizeof(te);
	tr.array = &te;
	te.rs_num = PF_RULESET_TABLE;
	memset(&st, 0, sizeof(st));
	memset(&pa, 0, sizeof(pa));
	PF_OSFP_PACK(fp, 3u, 2u, 1u);
	PF_OSFP_UNPACK(fp, cls, ver, sub);
	if (PF_AZERO(&b, AF_INET6) && PF_AEQ(&a, &nl.saddr, AF_INET) &&
	    !PF_ANEQ(&a, &nl.saddr, AF_INET) && cls == 3 && ver == 2 &&
	    sub == 1 && argc > 99)
		printf("%s %s %s\n", reasons[0], lcnt[0], fcnt[0]);
	dev = open("/dev/pf", O_RDWR);
	if (dev == -1)
		return (0);
	if (ioctl(dev, DIOCNATLOOK, &nl) == -1 ||
	    ioctl(dev, DIOCGETSTATUS, &st) == -1 ||
	    ioctl(dev, DIOCSTART) == -1 || ioctl(dev, DIOCSTART_BSD) == -1 ||
	    ioctl(dev, DIOCXBEGIN, &tr) == -1 || get_ifaces(dev, NULL, &n) < 0)
		warn("ioctl");
	close(dev);
	return (0);
}
"""

# The header first, then headers a program might pull in afterwards: the
# FreeBSD-style alias macros (v4, addr32, ps_buf...) must not break them.
HEADER_FIRST = r"""
#include <net/pfvar.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/ip_icmp.h>
#include <netinet/icmp6.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <net/ethernet.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if __has_include(<linux/if_tun.h>)
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/fuse.h>
#endif

int
main(void)
{
	struct pf_addr a;

	memset(&a, 0, sizeof(a));
	a.addr32[0] = htonl(INADDR_LOOPBACK);
	return (a.v4.s_addr == 0);
}
"""


@pytest.mark.parametrize("overlay", [False, True], ids=["plain", "libbsd"])
@pytest.mark.parametrize("which", ["stock-includes", "header-first"])
def test_compiles_with_stock_includes(which, overlay, tmp_path):
    if overlay and OVERLAY is None:
        pytest.skip("pkg-config libbsd-overlay not available")
    src = STOCK_PROGRAM if which == "stock-includes" else HEADER_FIRST
    probe.compile_c(src, tmp_path, "stock", OVERLAY if overlay else [])


@pytest.mark.parametrize("std", ["-std=gnu11", "-std=c11", "-std=gnu99",
                                 "-std=gnu89"])
@pytest.mark.parametrize("overlay", [False, True], ids=["plain", "libbsd"])
def test_header_alone_pedantic(std, overlay, tmp_path):
    """Included alone: no diagnostics even under -pedantic."""
    if overlay and OVERLAY is None:
        pytest.skip("pkg-config libbsd-overlay not available")
    src = ("#include <net/pfvar.h>\n"
           "int main(void) { return (int)sizeof(struct pfioc_rule) != 3040; }\n")
    probe.compile_c(src, tmp_path, "alone",
                    ["-pedantic"] + (OVERLAY if overlay else []), std=std)


@pytest.mark.parametrize("path", ["netpfil/pf/pf.h", "netpfil/pf/pf_altq.h"])
def test_freebsd_subheaders_give_the_same_definitions(path, tmp_path):
    """Ports that include netpfil/pf/pf.h or pf_altq.h directly still build."""
    src = (f"#include <{path}>\n#include <net/pfvar.h>\n"
           "int main(void) { struct pf_status s; struct pf_altq_v1 q;\n"
           "  return (int)(sizeof(s) + sizeof(q)) != 416 + 288; }\n")
    probe.compile_c(src, tmp_path, "sub", ["-pedantic"])


# What pfctl and its userland build of pf_ruleset.c do with the non-ABI
# structures: TAILQ macros on rule queues and pools, RB trees of anchors.
PFCTL_LISTS = r"""
#define PFIOC_USE_LATEST        /* as pfctl's Makefile does */
#include <sys/queue.h>
#include <net/pfvar.h>
#include <stdio.h>

/* pfctl_parser.h repeats this macro; the two must not conflict. */
#define FCNT_NAMES { \
	"searches", \
	"inserts", \
	"removals", \
	NULL \
}
_Static_assert(DIOCGETALTQS == 0xc130442fUL, "pfctl's ALTQ probe");

#ifdef RB_GENERATE
static int
pf_anchor_compare(struct pf_anchor *a, struct pf_anchor *b)
{
	return (strcmp(a->path, b->path));
}
RB_GENERATE(pf_anchor_global, pf_anchor, entry_global, pf_anchor_compare)
RB_GENERATE(pf_anchor_node, pf_anchor, entry_node, pf_anchor_compare)
#endif

int
main(void)
{
	static struct pf_ruleset rs;
	static struct pf_rule r1, r2;
	static struct pf_pool pool;
	static struct pf_pooladdr pa;
	struct pf_rule *r;
	int n = 0;

	TAILQ_INIT(&rs.rules[PF_RULESET_FILTER].queues[0]);
	rs.rules[PF_RULESET_FILTER].active.ptr =
	    &rs.rules[PF_RULESET_FILTER].queues[0];
	TAILQ_INSERT_TAIL(rs.rules[PF_RULESET_FILTER].active.ptr, &r1, entries);
	TAILQ_INSERT_TAIL(rs.rules[PF_RULESET_FILTER].active.ptr, &r2, entries);
	TAILQ_FOREACH(r, rs.rules[PF_RULESET_FILTER].active.ptr, entries)
		n++;
	TAILQ_INIT(&pool.list);
	TAILQ_INSERT_HEAD(&pool.list, &pa, entries);
	n += TAILQ_FIRST(&pool.list) == &pa;
#ifdef RB_GENERATE
	{
		static struct pf_anchor_global all;
		static struct pf_anchor a, b;

		strcpy(a.path, "a");
		strcpy(b.path, "a/b");
		RB_INIT(&all);
		RB_INIT(&a.children);
		RB_INSERT(pf_anchor_global, &all, &a);
		RB_INSERT(pf_anchor_global, &all, &b);
		RB_INSERT(pf_anchor_node, &a.children, &b);
		n += RB_FIND(pf_anchor_global, &all, &b) == &b;
		n += !RB_EMPTY(&a.children);
	}
#else
	n += 2;
#endif
	printf("%d\n", n);
	return (n != 5);
}
"""


@pytest.mark.parametrize("overlay", [False, True], ids=["plain", "libbsd"])
def test_pfctl_style_list_and_tree_code(overlay, tmp_path):
    if overlay and OVERLAY is None:
        pytest.skip("pkg-config libbsd-overlay not available")
    exe = probe.compile_c(PFCTL_LISTS, tmp_path, "lists",
                          OVERLAY if overlay else [])
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.parametrize("std", ["-std=c++11", "-std=gnu++17", "-std=c++98"])
@pytest.mark.parametrize("overlay", [False, True], ids=["plain", "libbsd"])
def test_header_compiles_as_cplusplus(std, overlay, tmp_path):
    if overlay and OVERLAY is None:
        pytest.skip("pkg-config libbsd-overlay not available")
    src = r"""
#include <net/pfvar.h>
#include <cstdio>
int main()
{
	struct pfioc_trans tr;
	struct pfioc_trans_e te;
	struct pfioc_natlook nl;
	tr.array = &te;
	nl.saddr.v4.s_addr = 0;
	std::printf("%lx %lx\n", (unsigned long)DIOCXBEGIN,
	    (unsigned long)DIOCSTART_BSD);
	return (int)(sizeof(te) + tr.array->rs_num + nl.saddr.addr32[0]) == 0;
}
"""
    probe.compile_c(src, tmp_path, "cxx", ["-pedantic"] +
                    (OVERLAY if overlay else []), compiler="g++", std=std)


def test_usable_from_cython(tmp_path):
    """`cdef extern from "net/pfvar.h"` can reach fields by FreeBSD names."""
    import sysconfig
    pyinc = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(pyinc, "Python.h")):
        pytest.skip("Python.h not available")
    pyx = tmp_path / "pfabi.pyx"
    pyx.write_text('''
cdef extern from "net/pfvar.h":
    enum: PF_MAXPATHLEN
    unsigned long DIOCNATLOOK
    unsigned long DIOCSTART_BSD
    cdef struct in_addr:
        unsigned int s_addr
    cdef struct pf_addr:
        in_addr v4
        unsigned int addr32[4]
    cdef struct pf_rule_divert:
        pf_addr addr
        unsigned short port
    cdef struct pf_rule:
        unsigned char af
        pf_rule_divert divert
    cdef struct pfioc_rule:
        char anchor[PF_MAXPATHLEN]
        pf_rule rule
    cdef struct pfioc_natlook:
        pf_addr saddr
        unsigned char af
    cdef struct pfioc_table:
        int pfrio_naddr
        void *pfrio_buffer
    cdef struct pfioc_states:
        int ps_len
        char *ps_buf

def check():
    cdef pfioc_natlook nl
    cdef pfioc_rule pr
    cdef pfioc_table io
    cdef pfioc_states ps
    nl.saddr.v4.s_addr = 7
    nl.af = 2
    pr.rule.divert.port = 80
    io.pfrio_naddr = 3
    ps.ps_buf = NULL
    return (nl.saddr.addr32[0], pr.rule.divert.port, io.pfrio_naddr,
            sizeof(pfioc_rule), DIOCNATLOOK, DIOCSTART_BSD)
''')
    r = subprocess.run([sys.executable, "-m", "cython", "-3", str(pyx), "-o", str(tmp_path / "m.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["gcc", "-std=gnu11", "-fsyntax-only", "-Wall",
                        "-Wno-unused-function", "-I", str(probe.INCLUDE),
                        "-I", pyinc, str(tmp_path / "m.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------
# The table against the reference document
# ---------------------------------------------------------------------------

def _md_section(text: str, heading_re: str) -> str:
    m = re.search(heading_re, text, re.M)
    assert m, f"heading {heading_re!r} not found in pf-abi.md"
    nxt = re.search(r"^#{2,3} ", text[m.end():], re.M)
    return text[m.end(): m.end() + nxt.start()] if nxt else text[m.end():]


def test_table_matches_reference_document():
    shared = _shared_dir()
    if shared is None:
        pytest.skip("../shared/reference/pf-abi.md is absent: cannot "
                    "cross-check the hand-written table against it")
    text = (shared / "reference" / "pf-abi.md").read_text()

    # Appendix A: name, macro, nr, arg, size, BSD cmd, Linux cmd, ...
    appendix = _md_section(text, r"^## Appendix A")
    rows = {}
    for line in appendix.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and re.fullmatch(r"DIOC[A-Z0-9_]+", cells[0]):
            rows[cells[0]] = cells
    problems = []
    mine = {name: (bsd, linux) for name, bsd, linux in ref.APPENDIX_A}
    if set(rows) != set(mine):
        problems.append(f"command sets differ: only in doc "
                        f"{sorted(set(rows) - set(mine))}, only in table "
                        f"{sorted(set(mine) - set(rows))}")
    for name, cells in rows.items():
        if name not in mine:
            continue
        bsd, linux = int(cells[5], 16), int(cells[6], 16)
        if (bsd, linux) != mine[name]:
            problems.append(f"{name}: doc {bsd:#x}/{linux:#x}, table "
                            f"{mine[name][0]:#x}/{mine[name][1]:#x}")
        arg, size = cells[3], int(cells[4])
        if arg in ref.LAYOUTS and ref.LAYOUTS[arg].size != size:
            problems.append(f"{name}: doc says {arg} is {size} bytes, table "
                            f"{ref.LAYOUTS[arg].size}")
        if (bsd >> 16) & 0x1fff != size:
            problems.append(f"{name}: value {bsd:#x} does not encode {size}")

    # §2.17 size summary, BSD-correct column.
    summary = _md_section(text, r"^### 2\.17 ")
    checked = 0
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.match(r"[a-z_]", cells[0]):
            continue
        name_groups = [g.split("/") for g in cells[0].split(",")]
        val_cell = cells[1]
        each = re.fullmatch(r"(\d+) each", val_cell)
        val_groups = [g.split("/") for g in val_cell.split(",")]
        for gi, names in enumerate(name_groups):
            prev = None
            for ni, raw in enumerate(names):
                nm = raw.strip()
                if re.fullmatch(r"v\d", nm) and prev:      # "pf_altq_v0 / v1"
                    nm = re.sub(r"v\d$", nm, prev)
                prev = nm
                try:
                    val = int(each.group(1)) if each else \
                        int(val_groups[gi][ni].strip())
                except (IndexError, ValueError):
                    continue
                if nm in ref.LAYOUTS:
                    checked += 1
                    if ref.LAYOUTS[nm].size != val:
                        problems.append(f"§2.17: {nm} is {val}, table "
                                        f"{ref.LAYOUTS[nm].size}")
    assert checked >= 40, f"only {checked} sizes recognised in §2.17"
    print(f"cross-checked {len(rows)} appendix-A commands, {checked} §2.17 sizes")
    assert not problems, "\n".join(problems)
