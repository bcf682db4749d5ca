"""The programs of the seed documents, extracted at run time from ../shared/seeds (beside the
checkout) and compiled with `pkg-config pfvar`. The seeds are test data: they are never copied
into the repository; the tests (tests/seeds.py) and `pfd --demo` both read them from here.

    natlook_example()            the DIOCNATLOOK example of pf(4) (seed 001), exactly as printed
    interface_stats_program()    the interface-statistics program of seed 004, after a prelude of
                                 what the article leaves out (includes, device path, helpers)
    compile_program(src, dir, name, defines)

`PF_SEEDS_DIR` in the environment points elsewhere (e.g. at a directory that does not exist, to
see what the demo does without ../shared).
"""
import os
import re
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def seeds_dir():
    return os.environ.get("PF_SEEDS_DIR") or os.path.join(os.path.dirname(REPO), "shared", "seeds")


class SeedError(Exception):
    """A seed program cannot be had: the documents are absent (`SeedsAbsent`), a document does
    not hold what is expected, or it does not compile (`CompileError`)."""


class SeedsAbsent(SeedError):
    pass


class CompileError(SeedError):
    pass


def read_seed(prefix, directory=None):
    """The text of the seed document whose file name starts with `prefix` (e.g. "001_")."""
    directory = directory or seeds_dir()
    if not os.path.isdir(directory):
        raise SeedsAbsent(f"seed documents absent: {directory} does not exist "
                          "(../shared not beside the checkout)")
    for name in sorted(os.listdir(directory)):
        if name.startswith(prefix):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                return f.read()
    raise SeedError(f"no seed {prefix}* in {directory}")


# What the interface-statistics article leaves out ("it won't compile without the requisite
# #includes"): the includes, the device path, and the small allocation helpers it calls.
STATS_PRELUDE = r"""
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <net/pfvar.h>
#include <err.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *pf_device = PF_DEVICE;

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		err(1, "malloc");
	return p;
}

/* the article calls xrealloc(ptr, size) for its effect on ptr */
#define xrealloc(p, n) do { void *q_ = realloc((p), (n)); if (q_ == NULL) err(1, "realloc"); (p) = q_; } while (0)
#define print_iface_stats simple_print
"""


def natlook_example(directory=None):
    """The DIOCNATLOOK example of pf(4) (seed 001), exactly as printed."""
    text = read_seed("001_", directory)
    try:
        examples = text.index("\nEXAMPLES\n")
        start = text.index("#include <sys/types.h>", examples)
        end = text.index("\nSEE ALSO\n", start)
    except ValueError:
        raise SeedError("seed 001 has no EXAMPLES program before SEE ALSO") from None
    return text[start:end].strip() + "\n"


def _function(text, signature):
    """The function whose definition starts with `signature`, to its closing brace at column 0."""
    try:
        start = text.index(signature)
        end = text.index("\n}", start) + 2
    except ValueError:
        raise SeedError(f"seed 004 has no function {signature}...") from None
    return text[start:end]


def interface_stats_program(directory=None):
    """The interface-statistics program of seed 004: its enums and functions, in order, after
    the prelude of what it leaves out (compile with -DPF_DEVICE=\"path\")."""
    text = read_seed("004_", directory)
    enums = re.findall(r"^enum \{[^}]*\};$", text, re.M)
    if len(enums) != 3:
        raise SeedError(f"expected the article's three enums in seed 004, found {len(enums)}")
    parts = [STATS_PRELUDE, *enums,
             _function(text, "int get_pf_ifaces("),
             _function(text, "void simple_print("),
             _function(text, "int main(")]
    return "\n\n".join(parts) + "\n"


def pfvar_flags():
    """`pkg-config --cflags --libs pfvar`, split; CompileError when it cannot be had."""
    if shutil.which("pkg-config") is None:
        raise CompileError("pkg-config is not installed (run scripts/bootstrap)")
    res = subprocess.run(["pkg-config", "--cflags", "--libs", "pfvar"], capture_output=True, text=True)
    if res.returncode != 0:
        raise CompileError("pkg-config pfvar failed (run scripts/bootstrap): " + res.stderr.strip())
    return res.stdout.split()


def compile_program(source, out_dir, name="prog", defines=()):
    """Compile C source text with the pfvar flags into out_dir/name; returns the binary's path."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise CompileError("no C compiler (cc/gcc) is installed (run scripts/bootstrap)")
    flags = pfvar_flags()
    src = os.path.join(out_dir, name + ".c")
    binary = os.path.join(out_dir, name)
    with open(src, "w") as f:
        f.write(source)
    cmd = [cc, "-o", binary, src, *[f"-D{d}" for d in defines], *flags]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise CompileError(f"compiling {name} failed:\n{' '.join(cmd)}\n{res.stderr}")
    return binary
