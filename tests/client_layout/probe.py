"""Compare the ctypes client library with gcc's view of include/net/pfvar.h.

`walk()` lists every (member path, offset, size) a ctypes class declares, recursing into nested
structs, unions and arrays.  `run_probe()` writes one C statement per item — `offsetof(struct X,
a.b[3].c)` / `sizeof` / a DIOC macro / a constant — compiles it against the header, runs it, and
returns what the compiler said.  A statement the compiler rejects (member or macro unknown to the
header) is reported as missing instead of aborting the whole probe.
"""
import ctypes
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field



def is_record(t):
    return isinstance(t, type) and issubclass(t, (ctypes.Structure, ctypes.Union))


def is_array(t):
    return isinstance(t, type) and issubclass(t, ctypes.Array)


def tag_of(t):
    return ("union " if issubclass(t, ctypes.Union) else "struct ") + t.__name__


def walk(t, path="", base=0):
    """Yield (path, offset, size) for every member of record type `t`, recursively.

    Arrays yield their first and last element (catching stride and dimension-order errors) and
    recurse into the first; byte arrays (names, paths) are checked as a whole; records marked
    `_leaf_` (kernel list links, libc's in6_addr, opaque option unions) only as a whole (as
    members; a leaf type checked at top level gets its sizeof only)."""
    if is_record(t):
        if getattr(t, "_leaf_", False):
            return
        for f in t._fields_:
            name, ft = f[0], f[1]
            off = base + getattr(t, name).offset
            p = f"{path}.{name}" if path else name
            yield p, off, ctypes.sizeof(ft)
            yield from walk(ft, p, off)
    elif is_array(t):
        et, n = t._type_, t._length_
        es = ctypes.sizeof(et)
        if es == 1 and not is_record(et):
            return
        yield f"{path}[0]", base, es
        if n > 1:
            yield f"{path}[{n - 1}]", base + (n - 1) * es, es
        yield from walk(et, f"{path}[0]", base)


def components(path):
    return set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", path))


@dataclass
class Item:
    kind: str           # "size", "member", "cmd", "const"
    key: str            # "pf_rule", "pf_rule:src.addr", "DIOCSTART", "PFTM_MAX"
    expr: str           # C expression(s) printed
    want: tuple


@dataclass
class Result:
    got: dict = field(default_factory=dict)      # key -> tuple of ints
    missing: dict = field(default_factory=dict)  # key -> first compiler message
    items: list = field(default_factory=list)


def build_items(structs, commands=None, constants=None):
    items = []
    for t in structs:
        tag = tag_of(t)
        items.append(Item("size", t.__name__, f"sizeof({tag})", (ctypes.sizeof(t),)))
        for p, off, size in walk(t):
            items.append(Item("member", f"{t.__name__}:{p}",
                              f"offsetof({tag}, {p}), sizeof(((({tag} *)0)->{p}))", (off, size)))
    for name, value in (commands or {}).items():
        items.append(Item("cmd", name, f"(unsigned long)({name})", (value,)))
    for name, value in (constants or {}).items():
        items.append(Item("const", name, f"(long long)({name})", (value,)))
    return items


def cflags():
    flags = []
    if shutil.which("pkg-config"):
        r = subprocess.run(["pkg-config", "--cflags", "libbsd-overlay"], capture_output=True, text=True)
        if r.returncode == 0:
            flags = r.stdout.split()
    return flags


def _source(items, include, undef):
    lines = ["#include <stddef.h>", "#include <stdio.h>", f"#include <{include}>"]
    for name in sorted(undef):
        lines += [f"#ifdef {name}", f"#undef {name}", "#endif"]
    lines += ["int main(void)", "{"]
    first = len(lines) + 1
    for i, it in enumerate(items):
        n = 2 if it.kind == "member" else 1
        fmt = " ".join(["%lld"] * n)
        args = ", ".join(f"(long long)({e.strip()})" for e in _split(it.expr, n))
        lines.append(f'\tprintf("{i} {fmt}\\n", {args});')
    lines += ["\treturn 0;", "}"]
    return "\n".join(lines) + "\n", first


def _split(expr, n):
    if n == 1:
        return [expr]
    # "offsetof(T, p), sizeof(...)" — split at the top-level comma between the two
    depth = 0
    for i, ch in enumerate(expr):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            return [expr[:i], expr[i + 1:]]
    raise ValueError(expr)


def run_probe(items, include_dir, include="net/pfvar.h", extra_flags=(), workdir=None):
    """Compile and run the probe; returns a Result.  Raises RuntimeError if the header itself
    does not compile."""
    undef = set()
    for it in items:
        if it.kind == "member":
            undef |= components(it.key.split(":", 1)[1])
    res = Result(items=items)
    live = list(range(len(items)))
    tmp = workdir or tempfile.mkdtemp(prefix="pf-client-probe-")
    flags = ["-I", str(include_dir), *cflags(), *extra_flags]
    try:
        for _round in range(6):
            src, first = _source([items[i] for i in live], include, undef)
            c = os.path.join(tmp, "probe.c")
            exe = os.path.join(tmp, "probe")
            with open(c, "w") as f:
                f.write(src)
            r = subprocess.run(["gcc", "-std=gnu11", "-w", "-fmax-errors=0", *flags, "-o", exe, c],
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            bad = {}
            for m in re.finditer(r"^(?:.*/)?probe\.c:(\d+):\d+: error: (.*)$", r.stderr, re.M):
                line = int(m.group(1))
                if line < first or line >= first + len(live):
                    raise RuntimeError(f"the header does not compile:\n{r.stderr[-4000:]}")
                bad.setdefault(line - first, m.group(2))
            if not bad:
                raise RuntimeError(f"probe failed to compile:\n{r.stderr[-4000:]}")
            for k, msg in bad.items():
                res.missing[items[live[k]].key] = msg
            live = [idx for k, idx in enumerate(live) if k not in bad]
        else:
            raise RuntimeError("probe did not converge")
        out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            idx, *vals = line.split()
            # the probe printed position in `live`
            res.got[items[live[int(idx)]].key] = tuple(int(v) for v in vals)
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def mismatches(res, kinds=("size", "member", "cmd"), missing_kinds=("size", "member", "cmd")):
    """Human-readable list of differences between the library and the compiler."""
    out = []
    for it in res.items:
        if it.kind not in kinds:
            continue
        if it.key in res.missing:
            if it.kind in missing_kinds:
                out.append(f"{it.kind} {it.key}: not in header ({res.missing[it.key]})")
            continue
        got = res.got.get(it.key)
        if got != it.want:
            if it.kind == "member":
                out.append(f"{it.key}: ctypes offset {it.want[0]} size {it.want[1]}, "
                           f"header offset {got[0]} size {got[1]}")
            elif it.kind == "size":
                out.append(f"sizeof {it.key}: ctypes {it.want[0]}, header {got[0]}")
            elif it.kind == "cmd":
                out.append(f"{it.key}: ctypes 0x{it.want[0]:08x}, header 0x{got[0] & 0xffffffff:08x}")
            else:
                out.append(f"{it.key}: ctypes {it.want[0]}, header {got[0]}")
    return out
