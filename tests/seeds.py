"""Programs extracted at run time from the seed documents in ../shared/seeds (test data, never
copied into the repository). The extraction lives in pfkern/seeds.py (pfd --demo uses it too);
here a missing ../shared becomes a visible skip and a malformed seed a failure."""
import pytest

from pfkern import seeds as _seeds


def _extract(fn):
    try:
        return fn()
    except _seeds.SeedsAbsent as exc:
        pytest.skip(str(exc))
    except _seeds.SeedError as exc:
        pytest.fail(str(exc))


def natlook_example():
    """The DIOCNATLOOK example of pf(4) (seed 001), exactly as printed."""
    return _extract(_seeds.natlook_example)


def interface_stats_program():
    """The interface-statistics program of seed 004 after the prelude of what it leaves out."""
    return _extract(_seeds.interface_stats_program)
