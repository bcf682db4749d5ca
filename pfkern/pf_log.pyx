# cython: language_level=3
"""pflog for pf on Linux (FreeBSD 12.1 if_pflog.c + pflogd, in one place): packets that rules
with `log` match become pcap records of link type PFLOG (117) that `tcpdump -n -e -r` decodes.

Where they go (docs/pflog.md says why): a Linux TAP or TUN cannot carry DLT_PFLOG (libpcap
derives the link type of a live interface from its ARPHRD type, and no ARPHRD maps to PFLOG), so
there is no `tcpdump -i pflog0`. Each unit (`log (to pflogN)`, default pflog0) writes
- a pcap file, as pflogd writes /var/log/pflog (appended to across restarts when its header
  matches; optional size rotation path -> path.0 -> path.1 ...; reopen() for logrotate), and/or
- a FIFO, `tcpdump -n -e -l -r /run/pfd/pflog0` for live reading: each reader that opens it
  gets a fresh pcap header; with no reader nothing is written.

Shape:
- `pflog_packet` / `pflog_rule` (nogil, allocation-free; pf_log.pxd) build the record -- pcap
  record header, struct pfloghdr (net/if_pflog.h), the first snaplen bytes of the IP packet --
  straight into the unit's ring buffer under the unit's mutex and wake the writer when the ring
  was empty. A full ring drops the record (counted); nothing on this path touches a file.
- One writer thread per unit (`Pflog`) waits on an eventfd, writes whole records to the file
  (never a partial record: a failed write is truncated away) and the FIFO (non-blocking: a slow
  reader loses whole records, counted; a reader that leaves is noticed by POLLERR), then frees
  the ring space. File/FIFO opening, header checks and rotation are Python, on that thread.
- The units live in a static array, so the datapath never follows a pointer that close() frees:
  close() clears `active` under the unit's lock before the ring goes away.
"""
import errno as _errno
import fcntl as _fcntl
import logging
import os
import stat as _stat
import struct
import threading
import time

from libc.errno cimport errno, EINTR, EAGAIN
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy, strncpy

from pfkern.pfvar cimport pf_rule, PF_OUT
from pfkern.pfvar_priv cimport (pthread_mutex_t, pthread_mutex_init, pthread_mutex_lock,
                                pthread_mutex_unlock, htonl, AF_INET, AF_INET6)
from pfkern.pf_tap cimport tap_pkt

log = logging.getLogger("pfd.pflog")

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *, unsigned long, int)
    enum:
        POLLIN
        POLLOUT
        POLLERR
        POLLHUP

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int, int)
    enum:
        EFD_CLOEXEC
        EFD_NONBLOCK

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int, void *, size_t)
    ssize_t write(int, const void *, size_t)
    int close(int)
    int ftruncate(int, long)

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    enum:
        CLOCK_REALTIME
        CLOCK_MONOTONIC


# FreeBSD's values in the records: tcpdump's pflog printer knows BSD address families only
# (2, and 24/28/30 for IPv6), on Linux too; pid is NO_PID, uid UID_MAX when unknown.
cdef enum:
    BSD_AF_INET = 2
    BSD_AF_INET6 = 28
    NO_PID = 100000
    PCAP_RECHDR = 16            # ts_sec, ts_usec, caplen, len (32 bits each, host order)
    IP_MAXPACKET = 65535
    FIFO_FINISH_MS = 200        # the longest a FIFO reader may keep half a record waiting
    PIPE_BUF = 4096             # Linux: pipe writes up to this size are atomic

cdef uint32_t UID_MAX = <uint32_t>0xffffffff

DEFAULT_SNAPLEN = 116           # FreeBSD pflogd's DEF_SNAPLEN; counts the 64-byte pfloghdr
WHOLE_SNAPLEN = 262144          # snaplen=0: whole packets (tcpdump's default snaplen)
DEFAULT_BUFFER = 1 << 20
DEFAULT_FIFO = "/run/pfd/pflog0"
PCAP_MAGIC = 0xa1b2c3d4         # microsecond timestamps, written in host byte order


ctypedef struct pflog_t:
    pthread_mutex_t lock
    volatile int active         # records accepted (set/cleared under lock)
    uint32_t snaplen            # pcap snaplen: pfloghdr + packet bytes
    uint8_t *ring               # records exactly as they go to the file, never split at the end
    uint32_t size
    uint32_t head               # producer offset
    uint32_t tail               # consumer offset; head == tail: empty
    uint32_t wrap               # while head < tail: where the records at the top end
    int wakefd
    # producer counters (under lock)
    uint64_t logged
    uint64_t logged_bytes
    uint64_t dropped
    # writer thread's (read racily by stats())
    int file_fd
    int file_wanted
    int file_errno
    uint64_t file_size
    uint64_t file_max
    uint64_t file_records
    uint64_t file_drops
    uint64_t file_errors
    int fifo_fd
    uint64_t fifo_records
    uint64_t fifo_drops
    uint64_t fifo_closes


cdef pflog_t pflog_ifs[16]      # PFLOGIFS_MAX (checked at import)
cdef int i_
for i_ in range(PFLOGIFS_MAX):
    memset(&pflog_ifs[i_], 0, sizeof(pflog_t))
    pthread_mutex_init(&pflog_ifs[i_].lock, NULL)
    pflog_ifs[i_].wakefd = -1
    pflog_ifs[i_].file_fd = -1
    pflog_ifs[i_].fifo_fd = -1
assert PFLOGIFS_MAX == 16 and sizeof(pfloghdr) == PFLOG_HDRLEN == 64 and PFLOG_REAL_HDRLEN == 61


# ---------------------------------------------------------------------------------------------
# Datapath side
# ---------------------------------------------------------------------------------------------

cdef inline uint32_t rd32(const uint8_t *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline void wr32(uint8_t *p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)


cdef uint8_t *ring_reserve(pflog_t *lg, uint32_t n) noexcept nogil:
    """n contiguous bytes for a record, or NULL when the ring is full (lock held)."""
    cdef uint8_t *at
    if lg.head == lg.tail:
        lg.head = 0
        lg.tail = 0
    if lg.head >= lg.tail:
        if lg.size - lg.head >= n:
            at = lg.ring + lg.head
            lg.head += n
            return at
        if n < lg.tail:             # strictly: head must not catch up with tail
            lg.wrap = lg.head
            lg.head = n
            return lg.ring
        return NULL
    if lg.tail - lg.head > n:
        at = lg.ring + lg.head
        lg.head += n
        return at
    return NULL


cdef void ip4_header_cksum(uint8_t *ip, uint32_t hlen) noexcept nogil:
    cdef uint32_t s = 0, i
    ip[10] = 0
    ip[11] = 0
    i = 0
    while i + 1 < hlen:
        s += (<uint32_t>ip[i] << 8) | ip[i + 1]
        i += 2
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    s = ~s & 0xffff
    ip[10] = <uint8_t>(s >> 8)
    ip[11] = <uint8_t>(s & 0xff)


cdef bint pflog_active(uint8_t unit) noexcept nogil:
    return unit < PFLOGIFS_MAX and pflog_ifs[unit].active != 0


cdef int pflog_packet(uint8_t unit, const tap_pkt *p, uint8_t dir, uint8_t action,
                      uint8_t reason, const char *ifname, uint32_t rulenr, uint32_t subrulenr,
                      const char *ruleset, uint32_t uid, uint32_t rule_uid,
                      int32_t rule_pid) noexcept nogil:
    cdef pflog_t *lg
    cdef uint32_t caplen, reclen, hl, i
    cdef uint8_t *rec
    cdef pfloghdr *h
    cdef timespec ts
    cdef bint wake
    cdef uint64_t one = 1
    if unit >= PFLOGIFS_MAX or p == NULL:
        return PFLOG_NOUNIT
    lg = &pflog_ifs[unit]
    if not lg.active:                       # unlocked hint; checked again below
        return PFLOG_NOUNIT
    clock_gettime(CLOCK_REALTIME, &ts)
    pthread_mutex_lock(&lg.lock)
    if not lg.active:
        pthread_mutex_unlock(&lg.lock)
        return PFLOG_NOUNIT
    caplen = p.len
    if caplen > lg.snaplen - PFLOG_HDRLEN:
        caplen = lg.snaplen - PFLOG_HDRLEN
    reclen = PCAP_RECHDR + PFLOG_HDRLEN + caplen
    wake = lg.head == lg.tail
    rec = ring_reserve(lg, reclen)
    if rec == NULL:
        lg.dropped += 1
        pthread_mutex_unlock(&lg.lock)
        return PFLOG_FULL
    wr32(rec, <uint32_t>ts.tv_sec)
    wr32(rec + 4, <uint32_t>(ts.tv_nsec // 1000))
    wr32(rec + 8, PFLOG_HDRLEN + caplen)
    wr32(rec + 12, PFLOG_HDRLEN + p.len)
    h = <pfloghdr *>(rec + PCAP_RECHDR)
    memset(h, 0, PFLOG_HDRLEN)
    h.length = PFLOG_REAL_HDRLEN
    if p.af == AF_INET:
        h.af = BSD_AF_INET
    elif p.af == AF_INET6 or p.af == BSD_AF_INET6:
        h.af = BSD_AF_INET6
    else:
        h.af = p.af
    h.action = action
    h.reason = reason
    if ifname != NULL:              # the kif name's 16 bytes, NUL-padded (FreeBSD: memcpy)
        i = 0
        while i < PFLOG_IFNAMSIZ and ifname[i] != 0:
            h.ifname[i] = ifname[i]
            i += 1
    if ruleset != NULL:
        strncpy(h.ruleset, ruleset, PFLOG_RULESET_NAME_SIZE - 1)   # strlcpy: always terminated
    h.rulenr = htonl(rulenr)
    h.subrulenr = htonl(subrulenr)
    h.uid = uid
    h.pid = NO_PID
    h.rule_uid = rule_uid
    h.rule_pid = rule_pid
    h.dir = dir
    memcpy(rec + PCAP_RECHDR + PFLOG_HDRLEN, p.l3, caplen)
    # FreeBSD recomputes the IPv4 header checksum of outbound packets before logging them
    if h.af == BSD_AF_INET and dir == PF_OUT and caplen >= 20:
        hl = (p.l3[0] & 0x0f) * 4
        if hl >= 20 and hl <= caplen:
            ip4_header_cksum(rec + PCAP_RECHDR + PFLOG_HDRLEN, hl)
    lg.logged += 1
    lg.logged_bytes += PFLOG_HDRLEN + p.len
    if wake:        # under the lock: close() cannot close wakefd between our check and this
        write(lg.wakefd, &one, 8)
    pthread_mutex_unlock(&lg.lock)
    return PFLOG_QUEUED


cdef int pflog_rule(const tap_pkt *p, uint8_t dir, uint8_t reason, const char *ifname,
                    const pf_rule *rm, const pf_rule *am, const char *anchor) noexcept nogil:
    if rm == NULL:
        return PFLOG_NOUNIT
    if am == NULL:
        return pflog_packet(rm.logif, p, dir, rm.action, reason, ifname, rm.nr, UID_MAX, NULL,
                            UID_MAX, rm.cuid, rm.cpid)
    return pflog_packet(rm.logif, p, dir, rm.action, reason, ifname, am.nr, rm.nr, anchor,
                        UID_MAX, rm.cuid, rm.cpid)


# ---------------------------------------------------------------------------------------------
# Writer side (its own thread; the C part runs without the GIL)
# ---------------------------------------------------------------------------------------------

cdef uint64_t count_records(const uint8_t *buf, uint32_t n) noexcept nogil:
    cdef uint32_t off = 0
    cdef uint64_t k = 0
    while off + PCAP_RECHDR <= n:
        off += PCAP_RECHDR + rd32(buf + off + 8)
        k += 1
    return k


cdef bint ring_peek(pflog_t *lg, uint32_t *start, uint32_t *n) noexcept nogil:
    """The oldest contiguous run of whole records, left in place until ring_release."""
    cdef bint ok = True
    pthread_mutex_lock(&lg.lock)
    if lg.head < lg.tail and lg.tail == lg.wrap:
        lg.tail = 0
    if lg.head == lg.tail:
        ok = False
    elif lg.head > lg.tail:
        start[0] = lg.tail
        n[0] = lg.head - lg.tail
    else:
        start[0] = lg.tail
        n[0] = lg.wrap - lg.tail
    pthread_mutex_unlock(&lg.lock)
    return ok


cdef void ring_release(pflog_t *lg, uint32_t start, uint32_t n) noexcept nogil:
    pthread_mutex_lock(&lg.lock)
    lg.tail = start + n
    if lg.head < lg.tail and lg.tail == lg.wrap:
        lg.tail = 0
    pthread_mutex_unlock(&lg.lock)


cdef void sink_file(pflog_t *lg, const uint8_t *buf, uint32_t n) noexcept nogil:
    cdef uint32_t off = 0
    cdef ssize_t w
    if lg.file_fd < 0:
        if lg.file_wanted:
            lg.file_drops += count_records(buf, n)
        return
    while off < n:
        w = write(lg.file_fd, buf + off, n - off)
        if w < 0:
            if errno == EINTR:
                continue
            # disk full, I/O error: keep the file a valid capture (no half record) and go on
            lg.file_errno = errno
            lg.file_errors += 1
            lg.file_drops += count_records(buf, n)
            ftruncate(lg.file_fd, <long>lg.file_size)
            return
        off += <uint32_t>w
    lg.file_size += n
    lg.file_records += count_records(buf, n)


cdef void fifo_close(pflog_t *lg) noexcept nogil:
    if lg.fifo_fd >= 0:
        close(lg.fifo_fd)
        lg.fifo_fd = -1
        lg.fifo_closes += 1


cdef uint64_t mono_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000 + <uint64_t>(ts.tv_nsec // 1000000)


cdef bint fifo_finish(pflog_t *lg, const uint8_t *buf, uint32_t n) noexcept nogil:
    """Write the rest of a record the reader has the start of (a half record would corrupt its
    stream); wait for room at most FIFO_FINISH_MS."""
    cdef uint64_t deadline = mono_ms() + FIFO_FINISH_MS, now
    cdef pollfd pf
    cdef ssize_t w
    while n > 0:
        w = write(lg.fifo_fd, buf, n)
        if w > 0:
            buf += w
            n -= <uint32_t>w
            continue
        if w < 0 and errno == EINTR:
            continue
        if w < 0 and errno != EAGAIN:
            return False
        now = mono_ms()
        if now >= deadline:
            return False
        pf.fd = lg.fifo_fd
        pf.events = POLLOUT
        pf.revents = 0
        poll(&pf, 1, <int>(deadline - now))
    return True


cdef void sink_fifo(pflog_t *lg, const uint8_t *buf, uint32_t n) noexcept nogil:
    """Whole records to the reader, in writes of at most PIPE_BUF bytes, which a non-blocking
    pipe takes entirely or not at all: a reader that is behind loses whole records, never half
    of one. Only a record bigger than PIPE_BUF can go in part; fifo_finish writes the rest."""
    cdef uint32_t off = 0, end, rl, k
    cdef ssize_t w
    while off < n and lg.fifo_fd >= 0:
        end = off
        k = 0
        while end < n:
            rl = PCAP_RECHDR + rd32(buf + end + 8)
            if k > 0 and end + rl - off > PIPE_BUF:
                break
            end += rl
            k += 1
        w = write(lg.fifo_fd, buf + off, end - off)
        if w < 0:
            if errno == EINTR:
                continue
            if errno == EAGAIN:             # the reader is behind: drop what is left
                lg.fifo_drops += count_records(buf + off, n - off)
            else:                           # EPIPE: the reader left
                fifo_close(lg)
            return
        if <uint32_t>w < end - off:         # one record > PIPE_BUF, partly taken
            if not fifo_finish(lg, buf + off + w, end - off - <uint32_t>w):
                fifo_close(lg)
                return
        lg.fifo_records += k
        off = end


cdef int pflog_drain(pflog_t *lg, int timeout_ms) noexcept nogil:
    """Wait for records (or timeout_ms), write all there are; 1 when the file reached its size
    limit and the caller should rotate before draining on."""
    cdef pollfd fds[2]
    cdef int nf = 1
    cdef uint64_t v
    cdef uint32_t start, n
    fds[0].fd = lg.wakefd
    fds[0].events = POLLIN
    fds[0].revents = 0
    if lg.fifo_fd >= 0:
        fds[1].fd = lg.fifo_fd
        fds[1].events = 0                   # POLLERR: the last reader closed its end
        fds[1].revents = 0
        nf = 2
    if poll(fds, nf, timeout_ms) > 0:
        if fds[0].revents & POLLIN:
            read(lg.wakefd, &v, 8)
        if nf == 2 and fds[1].revents & (POLLERR | POLLHUP):
            fifo_close(lg)
    while ring_peek(lg, &start, &n):
        sink_file(lg, lg.ring + start, n)
        if lg.fifo_fd >= 0:
            sink_fifo(lg, lg.ring + start, n)
        ring_release(lg, start, n)
        if lg.file_max and lg.file_fd >= 0 and lg.file_size >= lg.file_max:
            return 1
    return 0


# ---------------------------------------------------------------------------------------------
# Control plane
# ---------------------------------------------------------------------------------------------

def pcap_file_header(snaplen):
    """The 24-byte pcap global header of a pflog capture (host byte order, as libpcap writes)."""
    return struct.pack("=IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, snaplen, DLT_PFLOG)


_units = {}                     # unit -> open Pflog
_units_lock = threading.Lock()


class PflogError(Exception):
    pass


cdef class Pflog:
    """One pflog unit (`pflogN`): its ring, writer thread and outputs.

    Pflog(unit=0, path=None, fifo=None, snaplen=116, buffer=1 MiB, max_size=0, keep=3)
      path      pcap file (pflogd's /var/log/pflog); appended to when its header matches,
                otherwise moved aside to path.bad[.N]; None: no file
      fifo      FIFO path, created (mode 0600) if missing; None: no FIFO
      snaplen   pcap snaplen, counting the 64-byte pfloghdr (pflogd -s); 0: whole packets
      max_size  rotate the file when it reaches this many bytes (0: never; use reopen() with
                logrotate instead); keep: rotated files kept (path.0 newest ... path.<keep-1>)
    open() starts it (the datapath sees it from then on), close() stops it after writing what
    is buffered; reopen() reopens the file (after an external rotation); stats() -> dict.
    """
    cdef pflog_t *lg
    cdef readonly int unit
    cdef readonly object path
    cdef readonly object fifo
    cdef readonly uint32_t snaplen
    cdef readonly uint32_t buffer
    cdef readonly uint64_t max_size
    cdef readonly int keep
    cdef object thread
    cdef object made_fifo
    cdef object fifo_lock
    cdef bint stopping
    cdef bint want_reopen
    cdef bint paused
    cdef object paused_ack
    cdef uint64_t errors_logged
    cdef double next_error_log

    def __init__(self, unit=0, path=None, fifo=None, snaplen=DEFAULT_SNAPLEN,
                 buffer=DEFAULT_BUFFER, max_size=0, keep=3):
        unit = int(unit)
        if not 0 <= unit < PFLOGIFS_MAX:
            raise PflogError(f"pflog unit {unit}: must be 0..{PFLOGIFS_MAX - 1}")
        snaplen = int(snaplen) or WHOLE_SNAPLEN
        if not PFLOG_HDRLEN <= snaplen <= WHOLE_SNAPLEN:
            raise PflogError(f"pflog snaplen {snaplen}: must be 0 (whole packets) or "
                             f"{PFLOG_HDRLEN}..{WHOLE_SNAPLEN}")
        if int(max_size) < 0 or int(keep) < 0:
            raise PflogError("pflog max_size and keep must not be negative")
        self.unit = unit
        self.path = os.fspath(path) if path else None
        self.fifo = os.fspath(fifo) if fifo else None
        self.snaplen = snaplen
        rec = PCAP_RECHDR + min(snaplen, PFLOG_HDRLEN + IP_MAXPACKET)
        self.buffer = max(int(buffer), 4 * rec)
        if self.buffer > (1 << 30):
            raise PflogError("pflog buffer: at most 1 GiB")
        self.max_size = int(max_size)
        self.keep = int(keep)
        self.lg = &pflog_ifs[unit]
        self.thread = None

    @property
    def name(self):
        return f"pflog{self.unit}"

    @property
    def running(self):
        return self.thread is not None

    # --- lifecycle -------------------------------------------------------------------------

    def open(self):
        cdef pflog_t *lg = self.lg
        cdef uint8_t *ring
        if self.thread is not None:
            return self
        with _units_lock:
            if self.unit in _units:
                raise PflogError(f"{self.name} is already open")
            _units[self.unit] = self
        try:
            ring = <uint8_t *>malloc(self.buffer)
            if ring == NULL:
                raise MemoryError()
            lg.ring = ring
            lg.size = self.buffer
            lg.head = lg.tail = lg.wrap = 0
            lg.snaplen = self.snaplen
            lg.logged = lg.logged_bytes = lg.dropped = 0
            lg.file_records = lg.file_drops = lg.file_errors = 0
            lg.fifo_records = lg.fifo_drops = lg.fifo_closes = 0
            lg.file_errno = 0
            lg.file_max = self.max_size
            lg.file_wanted = self.path is not None
            lg.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
            if lg.wakefd < 0:
                raise OSError(errno, os.strerror(errno))
            if self.path is not None:
                self._open_file()
            if self.fifo is not None:
                self._make_fifo()
        except BaseException:
            self._release()
            self._unlock_fifo()
            with _units_lock:
                _units.pop(self.unit, None)
            raise
        self.stopping = False
        self.want_reopen = False
        self.errors_logged = 0
        self.next_error_log = 0.0
        self.thread = threading.Thread(target=self._run, name=f"pf-{self.name}", daemon=True)
        pthread_mutex_lock(&lg.lock)
        lg.active = 1
        pthread_mutex_unlock(&lg.lock)
        self.thread.start()
        log.info("%s: file %s, fifo %s, snaplen %d", self.name, self.path or "-",
                 self.fifo or "-", self.snaplen)
        return self

    def close(self):
        """Stop taking records, write what is buffered, close the outputs."""
        cdef pflog_t *lg = self.lg
        cdef uint64_t one = 1
        if self.thread is None:
            return
        pthread_mutex_lock(&lg.lock)
        lg.active = 0
        pthread_mutex_unlock(&lg.lock)
        self.stopping = True
        write(lg.wakefd, &one, 8)
        self.thread.join()
        self.thread = None
        self._release()
        if self.made_fifo is not None:
            try:
                if _stat.S_ISFIFO(os.lstat(self.made_fifo).st_mode):
                    os.unlink(self.made_fifo)
            except OSError:
                pass
            self.made_fifo = None
        self._unlock_fifo()
        with _units_lock:
            if _units.get(self.unit) is self:
                del _units[self.unit]

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def reopen(self):
        """Reopen the file (logrotate's postrotate / SIGHUP); returns at once."""
        cdef uint64_t one = 1
        if self.thread is not None:
            self.want_reopen = True
            write(self.lg.wakefd, &one, 8)

    def flush(self, timeout=5.0):
        """Wait until every record taken so far has been written (or timeout); True if so."""
        cdef pflog_t *lg = self.lg
        cdef uint64_t one = 1
        cdef bint empty
        deadline = time.monotonic() + timeout
        if self.thread is None:
            return True
        write(lg.wakefd, &one, 8)
        while True:
            pthread_mutex_lock(&lg.lock)
            empty = lg.head == lg.tail
            pthread_mutex_unlock(&lg.lock)
            # empty and not mid-write: ring_release runs after the sinks
            if empty:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def stats(self):
        cdef pflog_t *lg = self.lg
        pthread_mutex_lock(&lg.lock)
        d = {"logged": lg.logged, "logged_bytes": lg.logged_bytes, "dropped": lg.dropped}
        pthread_mutex_unlock(&lg.lock)
        d.update(file_records=lg.file_records, file_drops=lg.file_drops,
                 file_errors=lg.file_errors, file_size=lg.file_size if lg.file_fd >= 0 else 0,
                 fifo_records=lg.fifo_records, fifo_drops=lg.fifo_drops,
                 fifo_reader=lg.fifo_fd >= 0, fifo_closes=lg.fifo_closes)
        return d

    def _pause_for_tests(self, paused):
        """Hold the writer (the ring fills: what the datapath sees when the disk stalls);
        returns once the writer is held."""
        cdef uint64_t one = 1
        self.paused_ack = threading.Event()
        self.paused = bool(paused)
        if self.paused and self.thread is not None:
            write(self.lg.wakefd, &one, 8)
            if not self.paused_ack.wait(5):
                raise RuntimeError("the pflog writer did not pause")

    # --- writer thread ---------------------------------------------------------------------

    def _run(self):
        cdef pflog_t *lg = self.lg
        cdef int r = 0
        cdef int timeout
        while True:
            if self.paused and not self.stopping:      # _pause_for_tests
                self.paused_ack.set()
                time.sleep(0.005)
                continue
            timeout = 0 if r else 250
            with nogil:
                r = pflog_drain(lg, timeout)
            if self.stopping:
                with nogil:
                    while pflog_drain(lg, 0):
                        pass
                break
            try:
                if r:
                    self._rotate()
                if self.want_reopen:
                    self.want_reopen = False
                    self._close_file()
                    self._open_file()
                if self.fifo is not None and lg.fifo_fd < 0:
                    self._connect_fifo()
                if lg.file_errors != self.errors_logged:
                    self._log_file_errors()
            except Exception:                   # never let the writer die: records would pile up
                log.exception("%s: writer", self.name)
                time.sleep(0.25)
                r = 0

    def _log_file_errors(self):
        now = time.monotonic()
        if now >= self.next_error_log:
            log.warning("%s: writing %s: %s (%d failed writes, %d records lost)", self.name,
                        self.path, os.strerror(self.lg.file_errno), self.lg.file_errors,
                        self.lg.file_drops)
            self.errors_logged = self.lg.file_errors
            self.next_error_log = now + 10.0

    # --- file ------------------------------------------------------------------------------

    def _open_file(self):
        """Open (or create) the capture file; an existing file is appended to only when it is a
        pflog capture this snaplen fits, else moved aside."""
        cdef pflog_t *lg = self.lg
        path = self.path
        header = pcap_file_header(self.snaplen)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            log.error("%s: cannot open %s: %s", self.name, path, e.strerror)
            return
        size = os.fstat(fd).st_size
        if size:
            head = os.pread(fd, 24, 0)
            if not self._header_fits(head):
                os.close(fd)
                aside = self._aside_name(path)
                os.rename(path, aside)
                log.warning("%s: %s is not a pflog capture of snaplen >= %d; moved to %s",
                            self.name, path, self.snaplen, aside)
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                size = 0
        if size == 0:
            os.write(fd, header)
            size = len(header)
        lg.file_size = size
        lg.file_fd = fd

    def _header_fits(self, head):
        if len(head) < 24:
            return False
        magic, major, minor, _zone, _sig, snaplen, linktype = struct.unpack("=IHHiIII", head)
        return (magic == PCAP_MAGIC and (major, minor) == (2, 4) and linktype == DLT_PFLOG
                and snaplen >= self.snaplen)

    @staticmethod
    def _aside_name(path):
        cand = path + ".bad"
        n = 0
        while os.path.lexists(cand):
            n += 1
            cand = f"{path}.bad.{n}"
        return cand

    def _close_file(self):
        cdef pflog_t *lg = self.lg
        if lg.file_fd >= 0:
            os.close(lg.file_fd)
            lg.file_fd = -1
            lg.file_size = 0

    def _rotate(self):
        """path -> path.0 -> path.1 ... (keep files), then a fresh path."""
        path = self.path
        self._close_file()
        try:
            if self.keep == 0:
                os.unlink(path)
            else:
                for i in range(self.keep - 1, 0, -1):
                    if os.path.lexists(f"{path}.{i - 1}"):
                        os.replace(f"{path}.{i - 1}", f"{path}.{i}")
                os.replace(path, f"{path}.0")
        except OSError as e:
            log.error("%s: rotating %s: %s", self.name, path, e.strerror)
        self._open_file()
        if self.lg.file_fd >= 0 and self.lg.file_size >= self.lg.file_max:
            # rotation failed and the old file came back: stop rotating into a loop
            log.error("%s: %s still over max_size after rotation; rotation disabled",
                      self.name, path)
            self.lg.file_max = 0

    # --- FIFO ------------------------------------------------------------------------------

    def _make_fifo(self):
        """Create the FIFO (or adopt an existing one) once we hold <fifo>.lock: two writers on
        one FIFO would interleave their pcap headers. Held elsewhere: run without the FIFO."""
        path = self.fifo
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        lock = path + ".lock"
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").split() or ["?"]
                os.close(fd)
                log.warning("%s: %s is in use by another pfd (pid %s); no FIFO for this one",
                            self.name, path, holder[0])
                self.fifo = None
                return
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)            # its holder removed it as it stopped: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fifo_lock = (fd, lock)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkfifo(path, 0o600)
            self.made_fifo = path
            return
        if not _stat.S_ISFIFO(st.st_mode):
            raise PflogError(f"{self.name}: {path} exists and is not a FIFO")

    def _unlock_fifo(self):
        if self.fifo_lock is not None:
            fd, lock = self.fifo_lock
            try:
                os.unlink(lock)             # while still holding it (see the loop above)
            except OSError:
                pass
            os.close(fd)
            self.fifo_lock = None

    def _connect_fifo(self):
        """A reader has opened the FIFO (else ENXIO): give it a pcap header, then records."""
        cdef pflog_t *lg = self.lg
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno not in (_errno.ENXIO, _errno.ENOENT, _errno.EINTR):
                log.warning("%s: %s: %s", self.name, self.fifo, e.strerror)
            return
        try:
            _fcntl.fcntl(fd, _fcntl.F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        try:
            os.write(fd, pcap_file_header(self.snaplen))   # empty pipe: 24 bytes go at once
        except OSError:
            os.close(fd)
            return
        lg.fifo_fd = fd

    def _release(self):
        cdef pflog_t *lg = self.lg
        pthread_mutex_lock(&lg.lock)
        lg.active = 0
        if lg.ring != NULL:
            free(lg.ring)
        lg.ring = NULL
        lg.size = lg.head = lg.tail = lg.wrap = 0
        if lg.wakefd >= 0:
            close(lg.wakefd)
            lg.wakefd = -1
        pthread_mutex_unlock(&lg.lock)
        self._close_file()
        if lg.fifo_fd >= 0:
            close(lg.fifo_fd)
            lg.fifo_fd = -1


def units():
    """{unit: Pflog} of the open units."""
    with _units_lock:
        return dict(_units)


# ---------------------------------------------------------------------------------------------
# Configuration (pfd): flags and a [[pflog]] table
# ---------------------------------------------------------------------------------------------

def add_arguments(parser):
    g = parser.add_argument_group("pflog (docs/pflog.md)")
    g.add_argument("--pflog", metavar="FILE", default=None,
                   help="write pflog0 records to this pcap file (like pflogd's /var/log/pflog)")
    g.add_argument("--pflog-fifo", metavar="PATH", default=None,
                   help=f"pflog0 FIFO for live reading with tcpdump -r (e.g. {DEFAULT_FIFO}; "
                        "'none' disables it)")
    g.add_argument("--pflog-snaplen", metavar="N", type=int, default=None,
                   help=f"bytes kept of each record, pfloghdr included (default {DEFAULT_SNAPLEN}"
                        " as pflogd; 0 = whole packets)")
    g.add_argument("--pflog-max-size", metavar="BYTES", type=int, default=None,
                   help="rotate the pflog file at this size (default: never)")
    g.add_argument("--pflog-keep", metavar="N", type=int, default=None,
                   help="rotated pflog files kept (default 3)")


_KEYS = {"unit", "file", "fifo", "snaplen", "buffer", "max_size", "keep"}


def from_config(args=None, tables=(), default_fifo=DEFAULT_FIFO):
    """The Pflog units (not yet open) that pfd's flags and config want.

    tables: the config file's [[pflog]] entries, dicts with keys unit (default 0), file, fifo,
    snaplen, buffer, max_size, keep. The flags (add_arguments) describe unit 0 and override its
    table entry field by field. Unit 0 gets `default_fifo` unless a FIFO or 'none' is given
    (pass default_fifo=None for no FIFO by default). Raises PflogError on bad input.
    """
    specs = {}
    for t in tables or ():
        bad = set(t) - _KEYS
        if bad:
            raise PflogError(f"[[pflog]]: unknown key(s) {', '.join(sorted(bad))}")
        unit = int(t.get("unit", 0))
        if unit in specs:
            raise PflogError(f"[[pflog]]: unit {unit} given twice")
        specs[unit] = dict(t, unit=unit)
    s0 = specs.setdefault(0, {"unit": 0})
    if args is not None:
        for flag, key in (("pflog", "file"), ("pflog_fifo", "fifo"), ("pflog_snaplen", "snaplen"),
                          ("pflog_max_size", "max_size"), ("pflog_keep", "keep")):
            v = getattr(args, flag, None)
            if v is not None:
                s0[key] = v
    if "fifo" not in s0 and default_fifo:
        s0["fifo"] = default_fifo
    out = []
    for unit in sorted(specs):
        s = specs[unit]
        fifo = s.get("fifo")
        if fifo in ("", "none"):
            fifo = None
        path = s.get("file") or None
        if path is None and fifo is None:
            continue
        out.append(Pflog(unit=unit, path=path, fifo=fifo,
                         snaplen=s.get("snaplen", DEFAULT_SNAPLEN),
                         buffer=s.get("buffer", DEFAULT_BUFFER),
                         max_size=s.get("max_size", 0), keep=s.get("keep", 3)))
    return out


# ---------------------------------------------------------------------------------------------
# Test hooks: the datapath call with a packet from Python bytes
# ---------------------------------------------------------------------------------------------

def _log_for_tests(int unit, bytes packet, int af, int dir, int action, int reason, ifname,
                   uint32_t rulenr, uint32_t subrulenr=0xffffffff, ruleset=None,
                   uint32_t uid=0xffffffff, uint32_t rule_uid=0, int32_t rule_pid=0):
    """pflog_packet() on a tap_pkt whose l3 is `packet` (af: Linux value 2/10); returns its
    PFLOG_* result."""
    cdef tap_pkt p
    cdef bytes ifn = ifname.encode() if ifname is not None else b""
    cdef bytes rs = ruleset.encode() if ruleset is not None else None
    cdef const char *rsp = NULL
    if rs is not None:
        rsp = rs
    memset(&p, 0, sizeof(p))
    p.l3 = <uint8_t *><const char *>packet
    p.len = len(packet)
    p.af = af
    cdef const char *ifp = ifn
    cdef int r
    with nogil:
        r = pflog_packet(unit, &p, dir, action, reason, ifp, rulenr, subrulenr, rsp, uid,
                         rule_uid, rule_pid)
    return r


def _log_rule_for_tests(bytes packet, int af, int dir, int reason, ifname, int action,
                        uint32_t nr, int logif=0, uint32_t cuid=0, int32_t cpid=0,
                        anchor_nr=None, anchor=None):
    """pflog_rule() with a struct pf_rule built from the arguments (and, when anchor_nr is
    given, the anchor-call rule of the main ruleset)."""
    cdef tap_pkt p
    cdef pf_rule *rm = <pf_rule *>calloc(1, sizeof(pf_rule))
    cdef pf_rule *am = NULL
    cdef bytes ifn = ifname.encode()
    cdef bytes an = anchor.encode() if anchor is not None else None
    cdef const char *anp = NULL
    cdef const char *ifp
    cdef int r
    if rm == NULL:
        raise MemoryError()
    try:
        rm.action = action
        rm.nr = nr
        rm.logif = logif
        rm.cuid = cuid
        rm.cpid = cpid
        if anchor_nr is not None:
            am = <pf_rule *>calloc(1, sizeof(pf_rule))
            if am == NULL:
                raise MemoryError()
            am.nr = anchor_nr
        if an is not None:
            anp = an
        memset(&p, 0, sizeof(p))
        p.l3 = <uint8_t *><const char *>packet
        p.len = len(packet)
        p.af = af
        ifp = ifn
        with nogil:
            r = pflog_rule(&p, dir, reason, ifp, rm, am, anp)
        return r
    finally:
        free(rm)
        free(am)
