"""The older generations' DIOCGETSTATUS structs and commands, as test_misc names them."""
from pfkern.client import (DIOCGETSTATUS_NBSD, DIOCGETSTATUS_OBSD37, DIOCGIFSPEED_FBSD6,  # noqa: F401
                           pf_status_nbsd, pf_status_obsd37)

STRUCTS = [pf_status_obsd37, pf_status_nbsd]
COMMANDS = {"DIOCGETSTATUS_OBSD37": DIOCGETSTATUS_OBSD37, "DIOCGETSTATUS_NBSD": DIOCGETSTATUS_NBSD,
            "DIOCGIFSPEED_FBSD6": DIOCGIFSPEED_FBSD6}
