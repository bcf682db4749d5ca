"""Exceptions of the pf core and the one place they become an errno (DESIGN.md §8)."""
import errno


class PfError(Exception):
    """A pf operation refused; subclasses name why, `errno` is what the device answers."""
    errno = errno.EINVAL


class Invalid(PfError):
    errno = errno.EINVAL


class Exists(PfError):
    errno = errno.EEXIST


class NotFound(PfError):
    errno = errno.ENOENT


class Busy(PfError):
    errno = errno.EBUSY


class NoDevice(PfError):
    """Unknown command, or an element size this pf does not speak."""
    errno = errno.ENODEV


class Access(PfError):
    errno = errno.EACCES


class TooBig(PfError):
    errno = errno.E2BIG


class NoMemory(PfError):
    errno = errno.ENOMEM


class NoSuchTable(PfError):
    """No active table of that name in that anchor."""
    errno = errno.ESRCH


class ConstTable(PfError):
    """The table is const: its addresses cannot change."""
    errno = errno.EPERM


def to_oserror(exc):
    """The OSError the device front answers for a core exception."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, PfError):
        return OSError(exc.errno, str(exc) or errno.errorcode.get(exc.errno, "pf error"))
    raise TypeError(f"not a pf error: {exc!r}")
