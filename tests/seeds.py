"""Programs extracted at run time from the seed documents in ../shared/seeds (test data, never
copied into the repository)."""
import re

from conftest import read_seed

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


def natlook_example():
    """The DIOCNATLOOK example of pf(4) (seed 001), exactly as printed."""
    text = read_seed("001_")
    examples = text.index("\nEXAMPLES\n")
    start = text.index("#include <sys/types.h>", examples)
    end = text.index("\nSEE ALSO\n", start)
    return text[start:end].strip() + "\n"


def _function(text, signature):
    """The function whose definition starts with `signature`, to its closing brace at column 0."""
    start = text.index(signature)
    end = text.index("\n}", start) + 2
    return text[start:end]


def interface_stats_program():
    """The interface-statistics program of seed 004: its enums and functions, in order, after
    the prelude of what it leaves out."""
    text = read_seed("004_")
    enums = re.findall(r"^enum \{[^}]*\};$", text, re.M)
    assert len(enums) == 3, f"expected the article's three enums, found {enums}"
    parts = [STATS_PRELUDE, *enums,
             _function(text, "int get_pf_ifaces("),
             _function(text, "void simple_print("),
             _function(text, "int main(")]
    return "\n\n".join(parts) + "\n"
