# Cython's view of the parts of libfuse3 (3.14) the device front uses: the low-level API, the CUSE
# API and the few kernel-protocol constants libfuse does not export. Only the fields we touch are
# declared; the C compiler sees the real headers.

from libc.stdint cimport uint32_t, uint64_t
from posix.types cimport off_t, pid_t, uid_t, gid_t, mode_t
from posix.stat cimport struct_stat

# Must come before the first libfuse header: API 35 declares the low-level ioctl `cmd` unsigned.
cdef extern from *:
    """
    #ifndef FUSE_USE_VERSION
    #define FUSE_USE_VERSION 35
    #endif
    """

cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "fuse_lowlevel.h" nogil:   # fuse_opt.h, via the only header meant to be included
    cdef struct fuse_args:
        int argc
        char **argv
        int allocated
    void fuse_opt_free_args(fuse_args *args)

cdef extern from "fuse_lowlevel.h" nogil:   # fuse_common.h
    cdef struct fuse_file_info:
        int flags
        unsigned int direct_io
        unsigned int nonseekable
        uint64_t fh

    # One received request; libfuse allocates `mem` on first use, the owner frees it.
    cdef struct fuse_buf:
        size_t size
        void *mem

    enum:
        FUSE_IOCTL_COMPAT
        FUSE_IOCTL_UNRESTRICTED
        FUSE_IOCTL_MAX_IOV

cdef extern from "fuse_lowlevel.h" nogil:
    ctypedef uint64_t fuse_ino_t
    cdef struct fuse_req:
        pass
    ctypedef fuse_req *fuse_req_t
    cdef struct fuse_session:
        pass

    cdef struct fuse_ctx:
        uid_t uid
        gid_t gid
        pid_t pid
        mode_t umask

    int FUSE_SET_ATTR_MODE
    int FUSE_SET_ATTR_UID
    int FUSE_SET_ATTR_GID
    int FUSE_SET_ATTR_SIZE

    # The callbacks are called from fuse_session_process_buf, which the loop calls with the GIL
    # held, so they are declared (and implemented) as GIL-holding functions.
    cdef struct fuse_lowlevel_ops:
        void (*lookup)(fuse_req_t req, fuse_ino_t parent, const char *name)
        void (*getattr)(fuse_req_t req, fuse_ino_t ino, fuse_file_info *fi)
        void (*setattr)(fuse_req_t req, fuse_ino_t ino, struct_stat *attr, int to_set,
                        fuse_file_info *fi)
        void (*open)(fuse_req_t req, fuse_ino_t ino, fuse_file_info *fi)
        void (*read)(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info *fi)
        void (*write)(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                      fuse_file_info *fi)
        void (*release)(fuse_req_t req, fuse_ino_t ino, fuse_file_info *fi)
        void (*ioctl)(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                      fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
                      size_t out_bufsz)

    int fuse_reply_err(fuse_req_t req, int err)
    int fuse_reply_attr(fuse_req_t req, const struct_stat *attr, double attr_timeout)
    int fuse_reply_open(fuse_req_t req, const fuse_file_info *fi)
    int fuse_reply_ioctl_retry(fuse_req_t req, const iovec *in_iov, size_t in_count,
                               const iovec *out_iov, size_t out_count)
    int fuse_reply_ioctl(fuse_req_t req, int result, const void *buf, size_t size)
    int fuse_reply_ioctl_iov(fuse_req_t req, int result, const iovec *iov, int count)
    void *fuse_req_userdata(fuse_req_t req)
    const fuse_ctx *fuse_req_ctx(fuse_req_t req)

    fuse_session *fuse_session_new(fuse_args *args, const fuse_lowlevel_ops *op, size_t op_size,
                                   void *userdata)
    int fuse_session_mount(fuse_session *se, const char *mountpoint)
    void fuse_session_unmount(fuse_session *se)
    void fuse_session_destroy(fuse_session *se)
    int fuse_session_exited(fuse_session *se)
    int fuse_session_fd(fuse_session *se)
    int fuse_session_receive_buf(fuse_session *se, fuse_buf *buf)
    void fuse_session_process_buf(fuse_session *se, const fuse_buf *buf)

cdef extern from "cuse_lowlevel.h" nogil:
    int CUSE_UNRESTRICTED_IOCTL

    cdef struct cuse_info:
        unsigned dev_major
        unsigned dev_minor
        unsigned dev_info_argc
        const char **dev_info_argv
        unsigned flags

    # CUSE's ioctl takes a signed `int cmd` even in 3.14; the front converts it to unsigned.
    cdef struct cuse_lowlevel_ops:
        void (*init_done)(void *userdata)
        void (*open)(fuse_req_t req, fuse_file_info *fi)
        void (*read)(fuse_req_t req, size_t size, off_t off, fuse_file_info *fi)
        void (*write)(fuse_req_t req, const char *buf, size_t size, off_t off, fuse_file_info *fi)
        void (*release)(fuse_req_t req, fuse_file_info *fi)
        void (*ioctl)(fuse_req_t req, int cmd, void *arg, fuse_file_info *fi, unsigned flags,
                      const void *in_buf, size_t in_bufsz, size_t out_bufsz)

    fuse_session *cuse_lowlevel_new(fuse_args *args, const cuse_info *ci,
                                    const cuse_lowlevel_ops *clop, void *userdata)

# From include/uapi/linux/fuse.h; libfuse does not export it.
cdef enum:
    FUSE_IOCTL_32BIT = 1 << 3
