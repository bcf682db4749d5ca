# Small helpers every ioctl and core module needs, written once: fixed-size C strings, the
# address family as the daemon stores it, and the constants of the ioctl edge.
from libc.string cimport memcpy, memset

cdef enum:
    REQUEST_MAXCOUNT = 65535    # net.pf.request_maxcount: the most elements one ioctl carries
    REGION_IN = 1               # an embedded buffer the command reads (docs/architecture.md)
    REGION_OUT = 2              # ... and one it writes
    PF_AF_INET = 2
    PF_AF_INET6 = 10            # Linux's value: what the daemon stores and answers
    PF_AF_INET6_BSD = 28        # FreeBSD's, accepted on input


cdef inline str cstr(const char *p, Py_ssize_t size):
    """A fixed-size char array up to its first NUL (all of it when unterminated). For what a
    kernel strlcpy() keeps of a field, pass size - 1."""
    cdef Py_ssize_t n = 0
    while n < size and p[n] != 0:
        n += 1
    return p[:n].decode("latin-1")


cdef inline void put_cstr(char *dst, Py_ssize_t size, str value):
    """Store value NUL-padded into a char array of `size` bytes (strlcpy: truncated, always
    terminated)."""
    cdef bytes raw = value.encode("latin-1")[:size - 1]
    memset(dst, 0, size)
    memcpy(dst, <const char *>raw, len(raw))


cdef inline int af_in(int af) noexcept nogil:
    """An address family from a caller: FreeBSD's AF_INET6 (28) is Linux's (10) here."""
    return PF_AF_INET6 if af == PF_AF_INET6_BSD else af
