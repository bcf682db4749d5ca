"""libfuse3 bound for the device front.

One request loop serves the device either as a CUSE character device (unrestricted ioctls, caller
memory through the retry protocol) or as a FUSE filesystem whose root is a regular file
(restricted ioctls, caller memory through process_vm_readv/writev). Both modes share one set of
operation handlers calling the Dispatcher of docs/architecture.md.

The loop is single-threaded: it releases the GIL only while waiting for a request, and handlers
run with the GIL held, inside fuse_session_process_buf. Every request is answered, whatever the
dispatcher does: a caller whose request we have read cannot even be killed until we reply.
"""

import logging
import os
import time

from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EFAULT, EINTR, EIO, ENODEV, ENOENT, ENOMEM, errno
from libc.stdint cimport uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from posix.stat cimport S_IFREG, struct_stat
from posix.types cimport gid_t, mode_t, off_t, pid_t, uid_t
from posix.unistd cimport _SC_PAGESIZE, read, sysconf
from posix.fcntl cimport F_GETFL, F_SETFL, O_NONBLOCK, fcntl

from cuse.fuse3 cimport *

cdef extern from "<poll.h>" nogil:
    cdef struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN
    short POLLERR
    short POLLHUP

cdef extern from "<sys/uio.h>" nogil:
    ssize_t process_vm_readv(pid_t pid, const iovec *local_iov, unsigned long liovcnt,
                             const iovec *remote_iov, unsigned long riovcnt, unsigned long flags)
    ssize_t process_vm_writev(pid_t pid, const iovec *local_iov, unsigned long liovcnt,
                              const iovec *remote_iov, unsigned long riovcnt, unsigned long flags)

cdef extern from "<sys/mount.h>" nogil:
    int umount2(const char *target, int flags)
    int MNT_DETACH

# libfuse reports through fuse_log (printf-style, va_list): format in C, hand the line to Python.
cdef extern from *:
    """
    #include <stdarg.h>
    #include <stdio.h>
    static void (*pf_front_log_sink)(int level, const char *line);
    static void pf_front_fuse_log(enum fuse_log_level level, const char *fmt, va_list ap)
    {
        char line[1024];
        vsnprintf(line, sizeof(line), fmt, ap);
        pf_front_log_sink((int)level, line);
    }
    static void pf_front_capture_fuse_log(void (*sink)(int, const char *))
    {
        pf_front_log_sink = sink;
        fuse_set_log_func(pf_front_fuse_log);
    }
    """
    void pf_front_capture_fuse_log(void (*sink)(int, const char *) noexcept with gil)

log = logging.getLogger("pfd.front")


cdef void fuse_log_line(int level, const char *line) noexcept with gil:
    # syslog-style levels: 0-3 emerg..err, 4 warning, 5-6 notice/info, 7 debug
    python_level = (logging.ERROR if level <= 3 else logging.WARNING if level == 4
                    else logging.INFO if level <= 6 else logging.DEBUG)
    log.log(python_level, "libfuse: %s", line.decode(errors="replace").rstrip())


pf_front_capture_fuse_log(fuse_log_line)

# CUSE connections keep the default fc->max_pages (cuse_init_out has no max_pages): an unrestricted
# ioctl moves at most this many bytes per direction, top-level struct included (fs/fuse/ioctl.c).
CUSE_IOCTL_MAX_BYTES = 32 * sysconf(_SC_PAGESIZE)
cdef size_t cuse_ioctl_max = CUSE_IOCTL_MAX_BYTES
# In and out iovecs of one retry reply together (FUSE_IOCTL_MAX_IOV).
CUSE_IOCTL_MAX_IOVS = FUSE_IOCTL_MAX_IOV

# How long the kernel may cache the FUSE node's attributes (permission checks use them).
cdef double ATTR_TIMEOUT = 10.0

cdef object _MISSING = object()


# ---------------------------------------------------------------------------------------------
# Caller memory

cdef bytes vm_read(pid_t pid, uintptr_t addr, size_t length):
    """`length` bytes at `addr` in thread `pid`; OSError(EFAULT) unless all of them were read."""
    cdef iovec local, remote
    cdef ssize_t done
    if length == 0:
        return b""
    try:
        out = PyBytes_FromStringAndSize(NULL, length)
    except (MemoryError, OverflowError):
        raise OSError(ENOMEM, "caller buffer too large")
    local.iov_base = PyBytes_AS_STRING(out)
    local.iov_len = length
    remote.iov_base = <void *>addr
    remote.iov_len = length
    with nogil:
        done = process_vm_readv(pid, &local, 1, &remote, 1, 0)
    if done != <ssize_t>length:
        # ESRCH/EPERM (caller gone or not visible) are the caller's bad address as far as it knows
        raise OSError(EFAULT, os.strerror(EFAULT))
    return out


cdef vm_write(pid_t pid, uintptr_t addr, const char *data, size_t length):
    cdef iovec local, remote
    cdef ssize_t done
    if length == 0:
        return
    local.iov_base = <void *>data
    local.iov_len = length
    remote.iov_base = <void *>addr
    remote.iov_len = length
    with nogil:
        done = process_vm_writev(pid, &local, 1, &remote, 1, 0)
    if done != <ssize_t>length:
        raise OSError(EFAULT, os.strerror(EFAULT))


cdef bytes as_bytes(object data):
    if type(data) is bytes:
        return <bytes>data
    if data is None:
        return b""
    return bytes(data)


cdef class _Region:
    """A caller buffer fetched by the CUSE retry protocol (always fetched in, so that the bytes of
    an out region the handler leaves alone travel back unchanged)."""
    cdef uintptr_t addr
    cdef size_t length
    cdef bint out           # also an out iovec: its bytes go back in the final reply
    cdef bint written
    cdef bytearray data

    def __cinit__(self, uintptr_t addr, size_t length, bint out):
        self.addr = addr
        self.length = length
        self.out = out

    cdef inline bint contains(self, uintptr_t addr, size_t length):
        return addr >= self.addr and length <= self.length and addr - self.addr <= self.length - length


cdef class CallerMemory:
    """The `mem` argument of Dispatcher.ioctl: the calling thread's memory, valid during the call.

    Reads come from the regions the CUSE retry protocol fetched when they cover the range, else
    from process_vm_readv. Writes update every fetched region they overlap (out regions then travel
    in the reply) and go through process_vm_writev unless one out region covers them."""
    cdef readonly pid_t pid         # the calling thread (0: not visible from our pid namespace)
    cdef list regions               # of _Region, None outside the final CUSE round

    cdef inline void begin(self, pid_t pid):
        self.pid = pid
        self.regions = None

    def read(self, uintptr_t addr, size_t length):
        cdef _Region r
        if self.regions is not None:
            for r in self.regions:
                if r.contains(addr, length):
                    return bytes(r.data[addr - r.addr:addr - r.addr + length])
        return vm_read(self.pid, addr, length)

    def write(self, uintptr_t addr, data):
        cdef _Region r
        cdef bytes raw = as_bytes(data)
        cdef size_t length = len(raw)
        cdef uintptr_t lo, hi
        cdef bint in_reply = False
        if self.regions is not None:
            for r in self.regions:
                lo = max(addr, r.addr)
                hi = min(addr + length, r.addr + r.length)
                if lo < hi:
                    r.data[lo - r.addr:hi - r.addr] = raw[lo - addr:hi - addr]
                    if r.out:
                        r.written = True
                        in_reply = in_reply or (lo == addr and hi == addr + length)
        if not in_reply:
            vm_write(self.pid, addr, raw, length)


# ---------------------------------------------------------------------------------------------
# The session

class FuseError(OSError):
    """libfuse refused to create or mount the session (details are on stderr)."""


cdef class Session:
    """One libfuse session (CUSE or FUSE file) and its request loop, serving one dispatcher."""
    cdef fuse_session *se
    cdef fuse_buf buf                   # receive buffer, allocated by libfuse once, reused
    cdef readonly object dispatcher
    cdef dict contexts                  # fi->fh -> the dispatcher's per-fd context
    cdef uint64_t next_fh
    cdef CallerMemory mem
    cdef iovec iov_in[FUSE_IOCTL_MAX_IOV]
    cdef iovec iov_out[FUSE_IOCTL_MAX_IOV + 1]
    cdef object on_cuse_ready           # called once the CUSE device is registered
    cdef mode_t node_mode               # FUSE-file node attributes
    cdef uid_t node_uid
    cdef gid_t node_gid
    cdef double node_time
    cdef int wake_read_fd
    cdef int wake_write_fd
    cdef bint stop_requested
    cdef object fatal                   # a BaseException (not Exception) raised in a handler

    def __cinit__(self):
        self.se = NULL
        self.buf.mem = NULL
        self.wake_read_fd = -1
        self.wake_write_fd = -1

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.contexts = {}
        self.next_fh = 1
        self.mem = CallerMemory()
        self.node_time = time.time()
        self.wake_read_fd, self.wake_write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def __dealloc__(self):
        self.close()

    @property
    def wakeup_fd(self):
        """Write end of the loop's wake-up pipe; suitable for signal.set_wakeup_fd."""
        return self.wake_write_fd

    # -- creation --------------------------------------------------------------------------

    def mount_fuse_file(self, path, mode_t mode, uid_t uid, gid_t gid):
        """Mount a FUSE filesystem whose root is a regular file on `path` (an existing file)."""
        self.node_mode = mode & 0o7777
        self.node_uid = uid
        self.node_gid = gid
        self._new_session([b"pfd", b"-o", b"allow_other,default_permissions,fsname=pf,subtype=pf"],
                          None)
        self._mount(os.fsencode(path))
        self._set_nonblocking()

    def attach_cuse(self, devname, int fd, bint owns_fd, on_ready=None):
        """Serve a CUSE device named /dev/`devname` on `fd`, an open /dev/cuse (or a test's
        socket speaking the kernel protocol). The session closes `fd` when it is destroyed."""
        self.on_cuse_ready = on_ready
        self._new_session([b"pfd"], b"DEVNAME=" + os.fsencode(devname))
        # libfuse (>= 3.3) takes an already-open channel given as /dev/fd/N instead of mounting
        self._mount(b"/dev/fd/%d" % fd)
        if owns_fd:
            self._set_nonblocking()

    cdef _new_session(self, list argv, bytes cuse_devinfo):
        cdef fuse_args args
        cdef cuse_info ci
        cdef const char *devinfo_argv[1]
        cdef Py_ssize_t i
        cdef char **own_argv
        if self.se != NULL:
            raise RuntimeError("session already created")
        own_argv = <char **>malloc((len(argv) + 1) * sizeof(char *))
        if own_argv == NULL:
            raise MemoryError()
        for i in range(len(argv)):
            own_argv[i] = PyBytes_AS_STRING(argv[i])
        own_argv[len(argv)] = NULL
        args.argc = len(argv)
        args.argv = own_argv
        args.allocated = 0
        try:
            if cuse_devinfo is None:
                self.se = fuse_session_new(&args, &fuse_file_ops, sizeof(fuse_file_ops),
                                           <void *>self)
            else:
                memset(&ci, 0, sizeof(ci))
                devinfo_argv[0] = PyBytes_AS_STRING(cuse_devinfo)
                ci.dev_info_argc = 1
                ci.dev_info_argv = devinfo_argv     # copied by cuse_lowlevel_new
                ci.flags = CUSE_UNRESTRICTED_IOCTL
                self.se = cuse_lowlevel_new(&args, &ci, &cuse_ops, <void *>self)
        finally:
            fuse_opt_free_args(&args)   # frees only a vector option parsing allocated
            free(own_argv)
        if self.se == NULL:
            raise FuseError(EIO, "libfuse could not create the session")

    cdef _mount(self, bytes target):
        if fuse_session_mount(self.se, target) != 0:
            self._end_session()
            raise FuseError(EIO, f"libfuse could not mount {os.fsdecode(target)}")

    cdef _set_nonblocking(self):
        # A request can vanish between poll and read (its caller killed before we read it):
        # a blocking read would then wait for the next request with the stop pipe unwatched.
        cdef int fd = fuse_session_fd(self.se)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)

    # -- the loop --------------------------------------------------------------------------

    def run(self):
        """Answer requests until stop(), a signal handler calling stop(), or the kernel end closes.
        Python signal handlers run while the loop waits."""
        cdef pollfd fds[2]
        cdef int ready, received
        cdef fuse_session *se = self.se
        cdef fuse_buf *buf = &self.buf
        if se == NULL:
            raise RuntimeError("no session")
        fds[0].fd = fuse_session_fd(se)
        fds[0].events = POLLIN
        fds[1].fd = self.wake_read_fd
        fds[1].events = POLLIN
        while not self.stop_requested and not fuse_session_exited(se):
            with nogil:
                ready = poll(fds, 2, -1)
            if ready < 0:
                if errno != EINTR:
                    raise OSError(errno, "poll on the fuse device")
                PyErr_CheckSignals()
                continue
            if fds[1].revents:
                self._drain_wakeups()
                PyErr_CheckSignals()
                continue
            if fds[0].revents & POLLIN:
                with nogil:
                    received = fuse_session_receive_buf(se, buf)
                if received > 0:
                    fuse_session_process_buf(se, buf)
                    if self.fatal is not None:
                        fatal, self.fatal = self.fatal, None
                        raise fatal
                elif received == 0:
                    break                   # unmounted, or the connection was aborted
                elif received == -EINTR or received == -EAGAIN:
                    PyErr_CheckSignals()
                elif fds[0].revents & (POLLHUP | POLLERR):
                    break                   # the kernel end went away while we read
                else:
                    raise OSError(-received, "reading the fuse device")
            elif fds[0].revents:
                break                       # POLLERR/POLLHUP alone: the connection is gone

    def stop(self):
        """Make run() return; callable from a signal handler or another thread."""
        self.stop_requested = True
        try:
            os.write(self.wake_write_fd, b"\0")
        except (BlockingIOError, OSError):
            pass

    cdef void _end_session(self) noexcept:
        if self.se != NULL:
            fuse_session_unmount(self.se)
            fuse_session_destroy(self.se)
            self.se = NULL
        if self.buf.mem != NULL:
            free(self.buf.mem)
            self.buf.mem = NULL

    cdef _drain_wakeups(self):
        cdef char scratch[64]
        while read(self.wake_read_fd, scratch, sizeof(scratch)) > 0:
            pass

    def close(self):
        """Unmount (FUSE file), close the channel, free the session. Idempotent. The wake-up
        pipe goes too: unregister it from signal.set_wakeup_fd first."""
        self._end_session()
        for fd in (self.wake_read_fd, self.wake_write_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.wake_read_fd = self.wake_write_fd = -1

    # -- shared handlers -------------------------------------------------------------------

    cdef void note_exception(self, BaseException exc, what) noexcept:
        if isinstance(exc, Exception):
            log.error("%s raised an exception", what, exc_info=exc)
        else:
            # KeyboardInterrupt, SystemExit...: answer the request, then let run() raise it
            self.fatal = exc

    cdef void reply_exception(self, fuse_req_t req, BaseException exc, what) noexcept:
        cdef int err = EIO
        try:
            if isinstance(exc, OSError) and isinstance(exc.errno, int) and 0 < exc.errno < 4096:
                err = exc.errno
            else:
                self.note_exception(exc, what)
        finally:
            fuse_reply_err(req, err)

    cdef void open(self, fuse_req_t req, fuse_file_info *fi) noexcept:
        cdef uint64_t fh
        try:
            ctx = self.dispatcher.open(fi.flags)
            fh = self.next_fh
            self.next_fh += 1
            self.contexts[fh] = ctx
        except BaseException as exc:
            self.reply_exception(req, exc, "Dispatcher.open")
            return
        fi.fh = fh
        fi.direct_io = 1        # reads and writes reach us (and fail) instead of a page cache
        fi.nonseekable = 1
        if fuse_reply_open(req, fi) != 0:
            # The opener was interrupted meanwhile: the kernel drops the fd, no RELEASE follows.
            self.release_fh(fh)

    cdef void release(self, fuse_req_t req, fuse_file_info *fi) noexcept:
        self.release_fh(fi.fh)
        fuse_reply_err(req, 0)

    cdef void release_fh(self, uint64_t fh) noexcept:
        ctx = self.contexts.pop(fh, _MISSING)
        if ctx is _MISSING:
            return
        try:
            self.dispatcher.release(ctx)
        except BaseException as exc:
            self.note_exception(exc, "Dispatcher.release")

    cdef bytes call(self, object ctx, uint32_t cmd, uintptr_t arg, bytes data):
        return as_bytes(self.dispatcher.ioctl(ctx, cmd, arg, data, self.mem))

    cdef void ioctl(self, fuse_req_t req, uint32_t cmd, void *arg, fuse_file_info *fi,
                    unsigned flags, const void *in_buf, size_t in_bufsz,
                    size_t out_bufsz) noexcept:
        cdef bytes out
        cdef pid_t pid = fuse_req_ctx(req).pid
        if flags & (FUSE_IOCTL_COMPAT | FUSE_IOCTL_32BIT):
            log.warning("refused ioctl %#x from 32-bit process %d: only 64-bit callers are "
                        "supported", cmd, pid)
            fuse_reply_err(req, ENODEV)
            return
        self.mem.begin(pid)
        try:
            ctx = self.contexts[fi.fh]
            if flags & FUSE_IOCTL_UNRESTRICTED:
                self.ioctl_unrestricted(req, ctx, cmd, <uintptr_t>arg, <const char *>in_buf,
                                        in_bufsz, out_bufsz)
            else:
                # Restricted (FUSE file): the kernel moved _IOC_SIZE bytes by Linux direction bits.
                out = self.call(ctx, cmd, <uintptr_t>arg,
                                PyBytes_FromStringAndSize(<const char *>in_buf, in_bufsz))
                fuse_reply_ioctl(req, 0, PyBytes_AS_STRING(out), min(<size_t>len(out), out_bufsz))
        except BaseException as exc:
            self.reply_exception(req, exc, f"ioctl {cmd:#x}")
        finally:
            self.mem.regions = None

    # -- CUSE: unrestricted ioctls through the retry protocol --------------------------------
    #
    # Round 1 arrives with no data: ask for the top-level struct (Dispatcher.layout). Round 2
    # carries it: ask Dispatcher.regions which embedded buffers the command touches and, when some
    # fit the kernel's limits, retry once more with them. The final round calls the handler; the
    # rounds are told apart by the sizes the kernel delivered, so no state is kept between them.

    cdef ioctl_unrestricted(self, fuse_req_t req, object ctx, uint32_t cmd, uintptr_t arg,
                            const char *in_buf, size_t in_bufsz, size_t out_bufsz):
        cdef size_t top_in, top_out
        cdef list wanted = None
        cdef bytes data, out
        cdef _Region top
        top_in, top_out = self.dispatcher.layout(cmd)
        if top_in > cuse_ioctl_max or top_out > cuse_ioctl_max:
            # Too big to travel through the kernel at all: process_vm both ways.
            out = self.call(ctx, cmd, arg, b"")
            self.mem.write(arg, out[:top_out])
            fuse_reply_ioctl(req, 0, NULL, 0)
            return
        if in_bufsz == 0 and out_bufsz == 0 and (top_in or top_out):
            self.reply_retry(req, arg, top_in, top_out, ())
            return
        data = PyBytes_FromStringAndSize(in_buf, min(in_bufsz, top_in))
        if top_in or top_out:
            wanted = self.select_regions(self.dispatcher.regions(cmd, data), top_in, top_out)
            if in_bufsz == top_in and out_bufsz == top_out:
                if wanted:
                    self.reply_retry(req, arg, top_in, top_out, wanted)
                    return
                wanted = None
            elif not self.fill_regions(wanted, in_buf + top_in, in_bufsz - top_in,
                                       out_bufsz - top_out):
                # The struct changed between rounds (a racing caller thread): what we fetched no
                # longer matches; serve everything from live memory instead.
                log.debug("ioctl %#x: regions changed between retry rounds", cmd)
                wanted = None
        if wanted is not None:
            top = _Region(arg, len(data), False)
            top.data = bytearray(data)
            self.mem.regions = [top] + wanted
        out = self.call(ctx, cmd, arg, data)
        self.reply_final(req, out, data, top_out, wanted)

    cdef list select_regions(self, regions, size_t top_in, size_t top_out):
        """The regions worth fetching: in the kernel's byte and iovec budgets, in order; the
        rest is left to process_vm. Out regions count against both directions."""
        cdef size_t in_total = top_in, out_total = top_out
        cdef int iovs = (top_in > 0) + (top_out > 0)
        cdef list chosen = []
        cdef uintptr_t addr
        cdef size_t length
        cdef bint out
        for addr, length, direction in regions:
            out = (direction & 2) != 0
            if length == 0 or addr == 0 or not (direction & 3):
                continue    # a NULL pointer must reach the handler, which reports EFAULT
            if (length > cuse_ioctl_max - in_total
                    or (out and length > cuse_ioctl_max - out_total)
                    or iovs + 1 + out > FUSE_IOCTL_MAX_IOV):
                continue
            in_total += length
            if out:
                out_total += length
            iovs += 1 + out
            chosen.append(_Region(addr, length, out))
        return chosen

    cdef bint fill_regions(self, list wanted, const char *fetched, size_t fetched_in,
                           size_t fetched_out):
        """Give each wanted region its bytes from the final round; False if the sizes disagree
        with what was asked."""
        cdef _Region r
        cdef size_t need_in = 0, need_out = 0, offset = 0
        for r in wanted:
            need_in += r.length
            if r.out:
                need_out += r.length
        if need_in != fetched_in or need_out != fetched_out or not wanted:
            return False
        for r in wanted:
            r.data = bytearray(fetched[offset:offset + r.length])
            offset += r.length
        return True

    cdef reply_retry(self, fuse_req_t req, uintptr_t arg, size_t top_in, size_t top_out,
                     wanted):
        cdef size_t n_in = 0, n_out = 0
        cdef _Region r
        if top_in:
            self.iov_in[0].iov_base = <void *>arg
            self.iov_in[0].iov_len = top_in
            n_in = 1
        if top_out:
            self.iov_out[0].iov_base = <void *>arg
            self.iov_out[0].iov_len = top_out
            n_out = 1
        for r in wanted:
            self.iov_in[n_in].iov_base = <void *>r.addr
            self.iov_in[n_in].iov_len = r.length
            n_in += 1
            if r.out:
                self.iov_out[n_out].iov_base = <void *>r.addr
                self.iov_out[n_out].iov_len = r.length
                n_out += 1
        fuse_reply_ioctl_retry(req, self.iov_in, n_in, self.iov_out, n_out)

    cdef reply_final(self, fuse_req_t req, bytes out, bytes data, size_t top_out, list wanted):
        """Reply the top-level output then, in order, the out regions up to the last one the
        handler wrote (the kernel scatters the reply over the out iovecs in order)."""
        cdef list sent = []
        cdef _Region r
        cdef int count = 0
        if wanted is not None:
            for r in wanted:
                if r.out:
                    sent.append(r)
            while sent and not (<_Region>sent[len(sent) - 1]).written:
                sent.pop()
        if <size_t>len(out) > top_out:
            out = out[:top_out]
        elif sent and <size_t>len(out) < top_out:
            # Region bytes follow: the top-level part must fill its iovec; pad with what the
            # caller had there (for _IOWR that is the input).
            out = out + data[len(out):top_out]
            out = out + bytes(top_out - len(out))
        self.iov_out[0].iov_base = PyBytes_AS_STRING(out)
        self.iov_out[0].iov_len = len(out)
        count = 1
        for r in sent:
            self.iov_out[count].iov_base = PyByteArray_AS_STRING(r.data)
            self.iov_out[count].iov_len = r.length
            count += 1
        fuse_reply_ioctl_iov(req, 0, self.iov_out, count)

    # -- FUSE file node --------------------------------------------------------------------

    cdef void reply_attr(self, fuse_req_t req) noexcept:
        cdef struct_stat st
        memset(&st, 0, sizeof(st))
        st.st_ino = 1
        st.st_mode = S_IFREG | self.node_mode
        st.st_nlink = 1
        st.st_uid = self.node_uid
        st.st_gid = self.node_gid
        st.st_blksize = 4096
        st.st_atime = st.st_mtime = st.st_ctime = <long>self.node_time
        fuse_reply_attr(req, &st, ATTR_TIMEOUT)

    cdef void setattr(self, fuse_req_t req, struct_stat *attr, int to_set) noexcept:
        # chmod/chown take effect (the kernel checked ownership: default_permissions); a size
        # change (open with O_TRUNC) and times are accepted and ignored: the node is always empty.
        if to_set & FUSE_SET_ATTR_MODE:
            self.node_mode = attr.st_mode & 0o7777
        if to_set & FUSE_SET_ATTR_UID:
            self.node_uid = attr.st_uid
        if to_set & FUSE_SET_ATTR_GID:
            self.node_gid = attr.st_gid
        if to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID):
            self.node_time = time.time()
        self.reply_attr(req)

    cdef void cuse_init_done(self) noexcept:
        if self.on_cuse_ready is None:
            return
        try:
            self.on_cuse_ready()
        except BaseException as exc:
            self.note_exception(exc, "CUSE ready callback")


# ---------------------------------------------------------------------------------------------
# libfuse callbacks: thin trampolines to the Session kept as the session's userdata

cdef inline Session session_of(fuse_req_t req):
    return <Session>fuse_req_userdata(req)

cdef void ff_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) noexcept:
    fuse_reply_err(req, ENOENT)     # the root is a file: nothing below it

cdef void ff_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info *fi) noexcept:
    session_of(req).reply_attr(req)

cdef void ff_setattr(fuse_req_t req, fuse_ino_t ino, struct_stat *attr, int to_set,
                     fuse_file_info *fi) noexcept:
    session_of(req).setattr(req, attr, to_set)

cdef void ff_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info *fi) noexcept:
    session_of(req).open(req, fi)

cdef void ff_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                  fuse_file_info *fi) noexcept:
    fuse_reply_err(req, ENODEV)     # pf's cdevsw has no read/write either

cdef void ff_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
                   fuse_file_info *fi) noexcept:
    fuse_reply_err(req, ENODEV)

cdef void ff_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info *fi) noexcept:
    session_of(req).release(req, fi)

cdef void ff_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                   fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
                   size_t out_bufsz) noexcept:
    session_of(req).ioctl(req, cmd, arg, fi, flags, in_buf, in_bufsz, out_bufsz)

cdef void cuse_init_done(void *userdata) noexcept:
    (<Session>userdata).cuse_init_done()

cdef void cuse_open(fuse_req_t req, fuse_file_info *fi) noexcept:
    session_of(req).open(req, fi)

cdef void cuse_read(fuse_req_t req, size_t size, off_t off, fuse_file_info *fi) noexcept:
    fuse_reply_err(req, ENODEV)

cdef void cuse_write(fuse_req_t req, const char *data, size_t size, off_t off,
                     fuse_file_info *fi) noexcept:
    fuse_reply_err(req, ENODEV)

cdef void cuse_release(fuse_req_t req, fuse_file_info *fi) noexcept:
    session_of(req).release(req, fi)

cdef void cuse_ioctl(fuse_req_t req, int cmd, void *arg, fuse_file_info *fi, unsigned flags,
                     const void *in_buf, size_t in_bufsz, size_t out_bufsz) noexcept:
    # libfuse 3.14's CUSE API passes the command as a signed int: pf's 0xc... values come negative
    session_of(req).ioctl(req, <uint32_t>cmd, arg, fi, flags, in_buf, in_bufsz, out_bufsz)


cdef fuse_lowlevel_ops fuse_file_ops
memset(&fuse_file_ops, 0, sizeof(fuse_file_ops))
fuse_file_ops.lookup = ff_lookup
fuse_file_ops.getattr = ff_getattr
fuse_file_ops.setattr = ff_setattr
fuse_file_ops.open = ff_open
fuse_file_ops.read = ff_read
fuse_file_ops.write = ff_write
fuse_file_ops.release = ff_release
fuse_file_ops.ioctl = ff_ioctl

cdef cuse_lowlevel_ops cuse_ops
memset(&cuse_ops, 0, sizeof(cuse_ops))
cuse_ops.init_done = cuse_init_done
cuse_ops.open = cuse_open
cuse_ops.read = cuse_read
cuse_ops.write = cuse_write
cuse_ops.release = cuse_release
cuse_ops.ioctl = cuse_ioctl


def lazy_unmount(path):
    """umount2(path, MNT_DETACH): detach a (stale) mount even if it is busy."""
    if umount2(os.fsencode(path), MNT_DETACH) != 0:
        raise OSError(errno, os.strerror(errno), path)
