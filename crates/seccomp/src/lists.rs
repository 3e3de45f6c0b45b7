//! The allow-list of each thread kind: which system calls (and with which
//! arguments) each kind of thread may make, built from shared pieces.

use seccompiler::BpfProgram;

use crate::action::Action;
use crate::bpf::{Cond, List};
use crate::error::Error;
use crate::thread_kind::ThreadKind;

// ----------------------------------------------------------------------
// Lists
// ----------------------------------------------------------------------

macro_rules! sys {
    ($name:ident) => {
        (libc::$name, &stringify!($name)[4..])
    };
}

/// Every thread: memory, locks, time, signals (the fault handler and
/// signal-hook's handler run on whichever thread the signal hits), logging
/// to stderr, thread exit.
fn base(l: &mut List) {
    for s in [
        sys!(SYS_read),
        sys!(SYS_write),
        sys!(SYS_writev),
        sys!(SYS_close),
        sys!(SYS_futex),
        sys!(SYS_sched_yield),
        sys!(SYS_nanosleep),
        sys!(SYS_clock_nanosleep),
        sys!(SYS_clock_gettime),
        sys!(SYS_gettimeofday),
        sys!(SYS_brk),
        sys!(SYS_munmap),
        sys!(SYS_mremap),
        sys!(SYS_madvise),
        sys!(SYS_rt_sigreturn),
        sys!(SYS_rt_sigprocmask),
        sys!(SYS_rt_sigaction),
        sys!(SYS_sigaltstack),
        sys!(SYS_getpid),
        sys!(SYS_gettid),
        sys!(SYS_tgkill),
        sys!(SYS_exit),
        sys!(SYS_exit_group),
        sys!(SYS_restart_syscall),
        sys!(SYS_getrandom),
    ] {
        l.allow(s);
    }
    // Never executable memory.
    let no_exec = [Cond::Clear(2, libc::PROT_EXEC as u64)];
    l.allow_if(sys!(SYS_mmap), &no_exec);
    l.allow_if(sys!(SYS_mprotect), &no_exec);
    // send(2) on a connected socket (signal-hook's wake-up, vfio-user
    // replies): never to an address.
    l.allow_if(sys!(SYS_sendto), &[Cond::Null(4)]);
    // std checks that an fd is open before closing it (debug builds).
    l.allow_if(sys!(SYS_fcntl), &[Cond::Eq(1, libc::F_GETFD as u64)]);
}

/// A queue runner: wait on eventfds, drive io_uring or synchronous I/O.
fn queue_io(l: &mut List) {
    for s in [
        sys!(SYS_epoll_pwait),
        sys!(SYS_epoll_pwait2),
        sys!(SYS_epoll_ctl),
        sys!(SYS_ppoll),
        sys!(SYS_io_uring_enter),
        sys!(SYS_preadv),
        sys!(SYS_pwritev),
        sys!(SYS_preadv2),
        sys!(SYS_pwritev2),
        sys!(SYS_pread64),
        sys!(SYS_pwrite64),
        sys!(SYS_readv),
        sys!(SYS_fdatasync),
        sys!(SYS_fsync),
        sys!(SYS_fallocate),
        // An NBD request half sent on a broken connection: the queue
        // thread shuts the socket so its reply thread reconnects.
        sys!(SYS_shutdown),
    ] {
        l.allow(s);
    }
    #[cfg(target_arch = "x86_64")]
    for s in [sys!(SYS_epoll_wait), sys!(SYS_poll)] {
        l.allow(s);
    }
}

/// Threads that start threads (glibc's `pthread_create` and Rust's thread
/// start run in the new thread under its creator's filters) and whose
/// children install a filter of their own.
fn spawn(l: &mut List) {
    for s in [
        sys!(SYS_clone3),
        sys!(SYS_set_robust_list),
        sys!(SYS_rseq),
        sys!(SYS_sched_getaffinity),
    ] {
        l.allow(s);
    }
    l.allow_if(sys!(SYS_clone), &[Cond::Set(0, libc::CLONE_THREAD as u64)]);
    l.allow_if(
        sys!(SYS_prctl),
        &[
            Cond::Eq(0, libc::PR_SET_NAME as u64),
            Cond::Eq(0, libc::PR_SET_NO_NEW_PRIVS as u64),
        ],
    );
    l.allow_if(
        sys!(SYS_seccomp),
        &[Cond::Eq(0, libc::SECCOMP_SET_MODE_FILTER as u64)],
    );
}

/// `fcntl` commands vblk (and std) use.
const FCNTL: [libc::c_int; 8] = [
    libc::F_GETFD,
    libc::F_SETFD,
    libc::F_GETFL,
    libc::F_SETFL,
    libc::F_DUPFD_CLOEXEC,
    libc::F_GET_SEALS,
    libc::F_ADD_SEALS,
    libc::F_GETPIPE_SZ,
];

/// Block-device size queries (made at open, and harmless).
const BLKSSZGET: u64 = 0x1268;
const BLKPBSZGET: u64 = 0x127b;
const BLKGETSIZE64: u64 = 0x8008_1272;

// FIONBIO/FIOCLEX are c_ulong with glibc, c_int with musl.
#[allow(clippy::unnecessary_cast)]
fn ioctls() -> Vec<Cond> {
    [
        libc::FIONBIO as u64,
        libc::FIOCLEX as u64,
        BLKSSZGET,
        BLKPBSZGET,
        BLKGETSIZE64,
    ]
    .into_iter()
    .map(|r| Cond::Eq(1, r))
    .collect()
}

fn fcntls() -> Vec<Cond> {
    FCNTL.iter().map(|&c| Cond::Eq(1, c as u64)).collect()
}

fn fds(l: &mut List) {
    l.allow_if(sys!(SYS_fcntl), &fcntls());
    l.allow_if(sys!(SYS_ioctl), &ioctls());
    for s in [
        sys!(SYS_dup),
        sys!(SYS_dup3),
        sys!(SYS_fstat),
        sys!(SYS_newfstatat),
        sys!(SYS_statx),
        sys!(SYS_lseek),
    ] {
        l.allow(s);
    }
}

/// Creating queue runners and their engines (`Runners::new` runs on the
/// transport's thread): eventfds, epoll, io_uring rings.
fn engine_setup(l: &mut List) {
    for s in [
        sys!(SYS_eventfd2),
        sys!(SYS_epoll_create1),
        sys!(SYS_io_uring_setup),
        sys!(SYS_io_uring_register),
    ] {
        l.allow(s);
    }
    fds(l);
}

/// A UNIX-socket server with fds in messages.
fn unix_server(l: &mut List) {
    for s in [
        sys!(SYS_accept4),
        sys!(SYS_recvmsg),
        sys!(SYS_sendmsg),
        sys!(SYS_recvfrom),
        sys!(SYS_shutdown),
        sys!(SYS_getsockopt),
        sys!(SYS_getsockname),
        sys!(SYS_getpeername),
    ] {
        l.allow(s);
    }
    l.allow_if(
        sys!(SYS_setsockopt),
        &[Cond::Eq(1, libc::SOL_SOCKET as u64)],
    );
}

/// vhost-user: the inflight region is a memfd the back end creates.
fn vhost_protocol(l: &mut List) {
    unix_server(l);
    for s in [
        sys!(SYS_memfd_create),
        sys!(SYS_ftruncate),
        // A front end's eventfd is checked through /proc/self/fd/N.
        sys!(SYS_readlinkat),
    ] {
        l.allow(s);
    }
    #[cfg(target_arch = "x86_64")]
    l.allow(sys!(SYS_readlink));
}

/// The end of `serve`: the final flush, and the socket files removed if
/// they are still ours.
fn teardown(l: &mut List) {
    l.allow(sys!(SYS_unlinkat));
    #[cfg(target_arch = "x86_64")]
    for s in [sys!(SYS_unlink), sys!(SYS_lstat), sys!(SYS_stat)] {
        l.allow(s);
    }
}

/// `vblk resize` runs on the control thread: the image file's size is
/// read (fstat, BLKGETSIZE64 in `fds`), changed and synced; the front ends
/// are notified (an eventfd write, or a message on the vhost-user back-end
/// channel, both in the base list and `unix_server`).
fn online_resize(l: &mut List) {
    for s in [sys!(SYS_ftruncate), sys!(SYS_fsync), sys!(SYS_fdatasync)] {
        l.allow(s);
    }
}

/// Binding a UNIX socket (the transport's, at start): a stale socket is
/// probed with `connect` before it is replaced.
fn bind(l: &mut List) {
    l.allow_if(sys!(SYS_socket), &[Cond::Eq(0, libc::AF_UNIX as u64)]);
    for s in [sys!(SYS_bind), sys!(SYS_listen), sys!(SYS_connect)] {
        l.allow(s);
    }
}

/// An NBD connection thread: replies read into guest memory (`readv`),
/// requests resent (`writev`), and reconnecting over TCP or UNIX with a
/// timeout (`socket`, non-blocking `connect`, `poll`, `getsockopt`
/// SO_ERROR, `setsockopt` TCP_NODELAY and the timeouts).
fn nbd(l: &mut List) {
    for s in [
        sys!(SYS_readv),
        sys!(SYS_recvfrom),
        sys!(SYS_recvmsg),
        sys!(SYS_sendmsg),
        sys!(SYS_connect),
        sys!(SYS_shutdown),
        sys!(SYS_setsockopt),
        sys!(SYS_getsockopt),
        sys!(SYS_getsockname),
        sys!(SYS_getpeername),
        sys!(SYS_ppoll),
    ] {
        l.allow(s);
    }
    #[cfg(target_arch = "x86_64")]
    l.allow(sys!(SYS_poll));
    l.allow_if(
        sys!(SYS_socket),
        &[
            Cond::Eq(0, libc::AF_UNIX as u64),
            Cond::Eq(0, libc::AF_INET as u64),
            Cond::Eq(0, libc::AF_INET6 as u64),
        ],
    );
    l.allow_if(sys!(SYS_fcntl), &fcntls());
    l.allow_if(sys!(SYS_ioctl), &ioctls());
}

fn list(kind: ThreadKind) -> List {
    let mut l = List::default();
    base(&mut l);
    match kind {
        ThreadKind::Queue => queue_io(&mut l),
        ThreadKind::Control => {
            unix_server(&mut l);
            fds(&mut l);
            online_resize(&mut l);
            #[cfg(target_arch = "x86_64")]
            l.allow(sys!(SYS_poll));
            l.allow(sys!(SYS_ppoll));
        }
        ThreadKind::VhostUser => {
            queue_io(&mut l);
            spawn(&mut l);
            engine_setup(&mut l);
            vhost_protocol(&mut l);
            teardown(&mut l);
        }
        ThreadKind::VfioUser => {
            queue_io(&mut l);
            spawn(&mut l);
            engine_setup(&mut l);
            unix_server(&mut l);
        }
        ThreadKind::Nbd => nbd(&mut l),
        ThreadKind::Main => {
            for k in ThreadKind::ALL {
                if k != ThreadKind::Main && k != ThreadKind::Nbd {
                    l.add(&list(k));
                }
            }
            teardown(&mut l);
            bind(&mut l);
        }
    }
    l
}

/// The names of the system calls `kind` may make (some only with certain
/// arguments).
pub fn syscalls(kind: ThreadKind) -> Vec<&'static str> {
    list(kind).0.values().map(|(n, _)| *n).collect()
}

/// Is every call `narrower` allows also allowed by `wider`? (The error
/// names the first one that is not.)
pub fn within(narrower: ThreadKind, wider: ThreadKind) -> Result<(), String> {
    list(narrower).within(&list(wider))
}

/// The compiled filter of `kind`: calls outside the list get `action`.
pub fn filter(kind: ThreadKind, action: Action) -> Result<BpfProgram, Error> {
    list(kind).filter(kind, action)
}
