"""The device front: /dev/pf served from userspace (CUSE, or a FUSE file where there is no CUSE)."""

from cuse.front import DeviceBusy, Front, FrontError, NoopDispatcher, serve

__all__ = ["serve", "Front", "DeviceBusy", "FrontError", "NoopDispatcher"]
