"""Build and run a C probe that reports what include/net/pfvar.h really says.

The probe is generated from the expectation tables (tests/abi/freebsd121.py):
for every struct it prints sizeof, for every listed member offsetof and the
member's size, for every command macro its value, and so on.  The test then
compares those numbers with the tables and reports each mismatch by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from . import freebsd121 as ref

REPO = Path(__file__).resolve().parents[2]
INCLUDE = REPO / "include"


def libbsd_overlay_cflags() -> list[str] | None:
    """`pkg-config --cflags libbsd-overlay`, or None when unavailable."""
    if shutil.which("pkg-config") is None:
        return None
    r = subprocess.run(["pkg-config", "--cflags", "libbsd-overlay"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return r.stdout.split()


def compile_c(src: str, workdir: Path, name: str, extra: list[str],
              compiler: str = "gcc", std: str = "-std=gnu11",
              link: bool = True) -> Path:
    """Compile `src`; raise AssertionError with the diagnostics on failure."""
    suffix = ".cc" if compiler in ("g++", "c++") else ".c"
    cfile = workdir / (name + suffix)
    cfile.write_text(src)
    out = workdir / name
    cmd = [compiler, std, "-Wall", "-Wextra", "-Werror",
           "-I", str(INCLUDE), *extra, str(cfile)]
    cmd += ["-o", str(out)] if link else ["-c", "-o", str(out) + ".o"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}\n{r.stderr}")
    return out


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def probe_source(aliases: dict[str, int], alias_structs: dict[str, int]) -> str:
    """C source printing one `kind name value...` line per checked number."""
    out = [
        "#include <net/pfvar.h>",
        "#include <stdio.h>",
        "",
        "#define SIZE(s) printf(\"size %s %zu\\n\", #s, sizeof(struct s))",
        "#define OFF(s, m) printf(\"off %s %s %zu %zu\\n\", #s, #m, \\",
        "\toffsetof(struct s, m), sizeof(((struct s *)0)->m))",
        "#define CMD(c) printf(\"cmd %s %#lx\\n\", #c, (unsigned long)(c))",
        "#define CONST(c) printf(\"const %s %lld\\n\", #c, (long long)(c))",
        "",
        "int main(void)",
        "{",
    ]
    for st in ref.LAYOUTS.values():
        out.append(f"\tSIZE({st.name});")
        for desig, _off, _size in st.fields:
            out.append(f"\tOFF({st.name}, {desig});")
    for name in ref.COMMANDS:
        out.append(f"\tCMD({name});")
    for name in aliases:
        out.append(f"\tCMD({name});")
    for name in alias_structs:
        out.append(f"\tprintf(\"alias %s %zu\\n\", {_c_string(name)}, "
                   f"sizeof(struct {name}));")
    for name in ref.CONSTANTS:
        # (pf_osfp_t)-1 and friends are unsigned 32-bit: print as such.
        out.append(f"\tCONST({name});")
    for macro in ref.NAME_LISTS:
        out += [
            "\t{",
            f"\t\tstatic const char *l[] = {macro};",
            "\t\tsize_t i;",
            "\t\tfor (i = 0; i < sizeof(l) / sizeof(l[0]); i++)",
            f"\t\t\tprintf(\"name {macro} %zu %s\\n\", i, "
            "l[i] ? l[i] : \"(null)\");",
            "\t}",
        ]
    out += ["\treturn 0;", "}", ""]
    return "\n".join(out)


def run_probe(workdir: Path, extra: list[str], latest: bool = False) -> str:
    aliases = ref.ALIASES_LATEST if latest else ref.ALIASES_DEFAULT
    astructs = ref.ALIAS_STRUCTS_LATEST if latest else ref.ALIAS_STRUCTS_DEFAULT
    flags = list(extra) + (["-DPFIOC_USE_LATEST"] if latest else [])
    exe = compile_c(probe_source(aliases, astructs), workdir, "abi_probe",
                    flags)
    r = subprocess.run([str(exe)], capture_output=True, text=True,
                       env=dict(os.environ, LC_ALL="C"))
    assert r.returncode == 0, r.stderr
    return r.stdout


def mismatches(output: str, latest: bool = False) -> tuple[list[str], int]:
    """Compare probe output with the tables: (list of problems, #checks)."""
    sizes: dict[str, int] = {}
    offs: dict[tuple[str, str], tuple[int, int]] = {}
    cmds: dict[str, int] = {}
    consts: dict[str, int] = {}
    alias_sizes: dict[str, int] = {}
    names: dict[str, dict[int, str]] = {}
    for line in output.splitlines():
        kind, rest = line.split(" ", 1)
        if kind == "size":
            n, v = rest.split()
            sizes[n] = int(v)
        elif kind == "off":
            s, m, o, z = rest.split()
            offs[(s, m)] = (int(o), int(z))
        elif kind == "cmd":
            n, v = rest.split()
            cmds[n] = int(v, 16)
        elif kind == "const":
            n, v = rest.split()
            consts[n] = int(v)
        elif kind == "alias":
            n, v = rest.split()
            alias_sizes[n] = int(v)
        elif kind == "name":
            macro, idx, text = rest.split(" ", 2)
            names.setdefault(macro, {})[int(idx)] = text

    bad: list[str] = []
    checks = 0
    for st in ref.LAYOUTS.values():
        checks += 1
        if sizes.get(st.name) != st.size:
            bad.append(f"sizeof(struct {st.name}) = {sizes.get(st.name)}, "
                       f"expected {st.size}")
        for desig, off, size in st.fields:
            got = offs.get((st.name, desig))
            checks += 1
            if got is None or got[0] != off:
                bad.append(f"offsetof(struct {st.name}, {desig}) = "
                           f"{got and got[0]}, expected {off}")
            if size is not None:
                checks += 1
                if got is None or got[1] != size:
                    bad.append(f"sizeof(struct {st.name}.{desig}) = "
                               f"{got and got[1]}, expected {size}")
    aliases = ref.ALIASES_LATEST if latest else ref.ALIASES_DEFAULT
    for name, want in {**ref.COMMANDS, **aliases}.items():
        checks += 1
        if cmds.get(name) != want:
            got = cmds.get(name)
            bad.append(f"{name} = {got and hex(got)}, expected {want:#010x}")
    astructs = ref.ALIAS_STRUCTS_LATEST if latest else ref.ALIAS_STRUCTS_DEFAULT
    for name, want in astructs.items():
        checks += 1
        if alias_sizes.get(name) != want:
            bad.append(f"sizeof(struct {name}) = {alias_sizes.get(name)}, "
                       f"expected {want} (PFIOC_USE_LATEST={latest})")
    for name, want in ref.CONSTANTS.items():
        checks += 1
        got = consts.get(name)
        if got != want:
            bad.append(f"{name} = {got}, expected {want}")
    for macro, want_list in ref.NAME_LISTS.items():
        checks += 1
        got_map = names.get(macro, {})
        got_list = [got_map[i] for i in sorted(got_map)]
        if got_list != want_list + ["(null)"]:
            bad.append(f"{macro} = {got_list}, expected {want_list} + NULL")
    return bad, checks
