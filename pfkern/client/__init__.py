"""Python client library for pf on Linux: ctypes mirror of `net/pfvar.h` and a `/dev/pf` helper.

    from pfkern.client import *
    with PfDevice() as pf:
        print(pf.status().running)

Modules: `constants` (PF_*, PFR_*, PFTM_*, ...), `structs` (one ctypes class per C struct, named
after it), `commands` (DIOC* values computed from the struct sizes, plus *_BSD twins of the `_IO`
commands), `device` (`PfDevice`).
"""
from .constants import *  # noqa: F401,F403
from .structs import *  # noqa: F401,F403
from .commands import *  # noqa: F401,F403
from .device import *  # noqa: F401,F403
from . import constants as _k, structs as _s, commands as _c, device as _d

__all__ = [*_k.__all__, *_s.__all__, *_c.__all__, *_d.__all__]
