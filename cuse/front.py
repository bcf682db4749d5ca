"""The device front: serve a Dispatcher (docs/architecture.md) on /dev/pf.

CUSE where the kernel has it (a real character device, unrestricted ioctls); otherwise a FUSE
filesystem whose root is a regular file, mounted on the device path. Also the lifecycle around the
request loop: one daemon per device path (a lock file), stale mounts of a killed daemon cleaned at
start, signals, and the node removed at exit.
"""

import contextlib
import errno
import fcntl
import grp
import logging
import os
import re
import signal
import stat
import subprocess
import threading
import urllib.parse

from cuse import _fuse

log = logging.getLogger("pfd.front")

LOCK_DIR = "/run/pfd"
CUSE_CONTROL = "/dev/cuse"
MODES = ("auto", "cuse", "fuse")
# fstype of our FUSE-file mounts (subtype=pf): with the lock held, such a mount is a dead daemon's
FUSE_FSTYPE = "fuse.pf"
NODE_CREATED = "node-created"


class FrontError(RuntimeError):
    """The device cannot be served; the message says why, in one line."""


class DeviceBusy(FrontError):
    """Another daemon already serves this device path."""


class NoopDispatcher:
    """Answers every command with its input unchanged (top-level struct by the Linux _IOC bits).
    The benchmark's baseline and a test aid."""

    def open(self, flags):
        return None

    def release(self, ctx):
        pass

    def layout(self, cmd):
        size = (cmd >> 16) & 0x3FFF
        direction = cmd >> 30               # Linux: 1 = _IOC_WRITE (in), 2 = _IOC_READ (out)
        return (size if direction & 1 else 0, size if direction & 2 else 0)

    def regions(self, cmd, arg):
        return []

    def ioctl(self, ctx, cmd, arg, data, mem):
        return data


def serve(dispatcher, device="/dev/pf", mode="auto", perm=0o600, group=None, ready=None,
          cuse_fd=None):
    """Serve `dispatcher` on `device` until SIGTERM/SIGINT (when called from the main thread) or
    until the kernel end goes away; on return the device node and the mount are gone.

    mode: "auto" (CUSE if /dev/cuse exists after trying `modprobe cuse`, else a FUSE file),
    "cuse" or "fuse". perm/group: the node's mode and group (name or gid). ready(): called once
    the device can be opened. cuse_fd: an already-open /dev/cuse (or a test's socket speaking the
    kernel protocol) to use instead of opening /dev/cuse; the front closes it.
    Raises DeviceBusy if another daemon serves `device`, FrontError if it cannot be served."""
    with Front(dispatcher, device, mode, perm, group, cuse_fd) as front:
        # Handlers first: a service manager may send SIGTERM as soon as ready() has run.
        with _stopped_by_signals(front):
            front.start(ready)
            front.run()


@contextlib.contextmanager
def _stopped_by_signals(front):
    """SIGTERM and SIGINT stop `front` for the duration (main thread only: a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop = lambda signum, frame: front.stop()
    saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    # The C-level handler writes to this fd, so a signal landing just before the loop blocks
    # still wakes it.
    saved_wakeup = signal.set_wakeup_fd(front.session.wakeup_fd, warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(saved_wakeup)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class Front:
    """serve() in steps, for callers that run the loop in a thread and stop it themselves:
    `with Front(...) as f: f.start(ready); f.run()`, and `f.stop()` from elsewhere."""

    def __init__(self, dispatcher, device="/dev/pf", mode="auto", perm=0o600, group=None,
                 cuse_fd=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.dispatcher = dispatcher
        self.device = os.path.abspath(device)
        self.perm = perm
        self.gid = _group_id(group)
        self.cuse_fd = cuse_fd
        self.requested_mode = mode
        self.mode = _choose_mode(mode, self.device, cuse_fd)
        self.session = _fuse.Session(dispatcher)
        self._lock_fd = None
        self._created_node = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self, ready=None):
        """Take the device path, clean what a dead daemon left there, create the device."""
        self._lock()
        _clean_stale_mounts(self.device)
        if self.mode == "cuse":
            self._start_cuse(ready)
        else:
            self._start_fuse_file(ready)

    def run(self):
        """The request loop, until stop() or the kernel end closes (returns at once if stop()
        came first)."""
        self.session.run()

    def stop(self):
        """Make run() return (now, or as soon as it starts); thread- and signal-safe."""
        if self.session is not None:
            self.session.stop()

    def close(self):
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.cuse_fd is not None:
            _close_quietly(self.cuse_fd)    # never handed to the session
            self.cuse_fd = None
        if self._created_node and _leftover_fuse_node(self.device):
            try:
                os.unlink(self.device)
            except OSError as exc:
                log.warning("could not remove %s: %s", self.device, exc.strerror)
            self._created_node = False
        if self._lock_fd is not None:
            os.unlink(self._lock_path)  # still locked: a starter that opened it retries
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- steps -------------------------------------------------------------------------------

    def _lock(self):
        os.makedirs(LOCK_DIR, exist_ok=True)
        path = os.path.join(LOCK_DIR, urllib.parse.quote(self.device, safe="") + ".lock")
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").split() or ["?"]
                os.close(fd)
                raise DeviceBusy(f"{self.device} is already served by another pfd "
                                 f"(pid {holder[0]})") from None
            if _same_file(fd, path):
                break
            os.close(fd)        # its holder removed it as it stopped: lock the new one
        self._lock_fd, self._lock_path = fd, path
        # A predecessor killed before it could remove the node it created leaves that note here:
        # the node is then ours to remove too.
        self._created_node = NODE_CREATED in os.pread(fd, 64, 0).decode(errors="replace").split()
        self._write_lock_note()

    def _write_lock_note(self):
        note = f"{os.getpid()}\n" + (f"{NODE_CREATED}\n" if self._created_node else "")
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, note.encode(), 0)

    def _start_cuse(self, ready):
        devname = os.path.relpath(self.device, "/dev")
        if _leftover_fuse_node(self.device):
            os.unlink(self.device)      # an empty file a FUSE-mode run left: it would hide the device
        if self._created_node:
            self._created_node = False  # devtmpfs owns the node from now on
            self._write_lock_note()
        owns_fd = self.cuse_fd is None
        try:
            fd = os.open(CUSE_CONTROL, os.O_RDWR | os.O_CLOEXEC) if owns_fd else self.cuse_fd
        except OSError as exc:
            raise FrontError(f"cannot open {CUSE_CONTROL}: {exc.strerror}") from None
        self.cuse_fd = None             # the session owns it from here
        log.info("serving %s as a CUSE character device", self.device)

        def registered():
            self._set_cuse_node_attributes()
            if ready is not None:
                ready()

        try:
            self.session.attach_cuse(devname, fd, owns_fd, registered)
        except OSError as exc:
            raise FrontError(f"cannot start the CUSE session for {self.device}: "
                             f"{exc.strerror}") from None

    def _set_cuse_node_attributes(self):
        # devtmpfs created the node (0600 root) before the CUSE_INIT reply returned
        try:
            os.chmod(self.device, self.perm)
            if self.gid is not None:
                os.chown(self.device, -1, self.gid)
        except FileNotFoundError:
            log.warning("CUSE device registered but %s did not appear (no devtmpfs on /dev?)",
                        self.device)

    def _start_fuse_file(self, ready):
        try:
            st = os.lstat(self.device)
        except FileNotFoundError:
            try:
                os.close(os.open(self.device, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC,
                                 0o600))
            except OSError as exc:
                raise FrontError(f"cannot create {self.device}: {exc.strerror}") from None
            self._created_node = True
            self._write_lock_note()
        else:
            if not stat.S_ISREG(st.st_mode):
                raise FrontError(f"{self.device} exists and is not a regular file; "
                                 "a FUSE file can only be mounted on one")
        gid = os.getegid() if self.gid is None else self.gid
        log.info("serving %s as a FUSE file%s", self.device,
                 " (no CUSE in this kernel)" if self.requested_mode == "auto" else "")
        try:
            self.session.mount_fuse_file(self.device, self.perm, os.geteuid(), gid)
        except OSError as exc:
            raise FrontError(f"cannot mount a FUSE file on {self.device}: {exc.strerror}") from None
        if ready is not None:
            ready()


# -- helpers -----------------------------------------------------------------------------------

def _choose_mode(mode, device, cuse_fd):
    if cuse_fd is not None:
        if mode == "fuse":
            raise ValueError("cuse_fd given with mode='fuse'")
        mode = "cuse"
    under_dev = os.path.dirname(device) != "/" and device.startswith("/dev/")
    if mode == "auto":
        mode = "cuse" if under_dev and _cuse_available() else "fuse"
    if mode == "cuse" and not under_dev:
        raise FrontError(f"a CUSE device lives under /dev, not at {device}")
    if mode == "cuse" and cuse_fd is None and not _cuse_available():
        raise FrontError("no CUSE in this kernel (/dev/cuse missing after modprobe cuse)")
    return mode


def _cuse_available():
    if not os.path.exists(CUSE_CONTROL):
        try:
            subprocess.run(["modprobe", "cuse"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        except (OSError, subprocess.SubprocessError):
            pass
    return os.path.exists(CUSE_CONTROL)


def _group_id(group):
    if group is None or isinstance(group, int):
        return group
    if str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise FrontError(f"unknown group {group!r}") from None


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _mount_types_at(path):
    """fstypes of the mounts whose mount point is `path`, bottom first (/proc/self/mountinfo)."""
    types = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields, _, tail = line.partition(" - ")
            mount_point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields.split()[4])
            if mount_point == path:
                types.append(tail.split()[0])
    return types


def _connection_dead(path):
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False


def _clean_stale_mounts(device):
    """Lazily unmount FUSE mounts a killed daemon left on `device` (we hold its lock, so no live
    pfd serves it). Anything else mounted there is not ours to remove."""
    path = os.path.join(os.path.realpath(os.path.dirname(device)), os.path.basename(device))
    while True:
        types = _mount_types_at(path)
        if not types:
            return
        fstype = types[-1]
        if fstype != FUSE_FSTYPE and not _connection_dead(path):
            raise DeviceBusy(f"{device} is a mount point of {fstype}; refusing to cover it")
        log.warning("removing a stale FUSE mount on %s left by a daemon that died", device)
        try:
            _fuse.lazy_unmount(path)
        except OSError as exc:
            raise FrontError(f"cannot remove the stale mount on {device}: {exc.strerror}") from None


def _leftover_fuse_node(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def _same_file(fd, path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass
