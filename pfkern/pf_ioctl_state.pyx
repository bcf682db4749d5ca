# cython: language_level=3
"""ioctl handlers for one pf concern; pf_ioctl binds them by command name (see its COMMANDS)."""

# {command name: (handler(dispatcher, fd context, argument bytearray, caller memory), regions or None)}
HANDLERS = {}
