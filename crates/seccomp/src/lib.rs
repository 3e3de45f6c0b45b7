//! seccomp-bpf allow-lists for vblk's threads, one per thread kind.
//!
//! The daemon parses input from a front end it does not trust (vhost-user
//! messages, vfio-user messages, guest rings). If a bug there ever let a
//! front end run code in the daemon, the filters below keep what that code
//! can do to the system calls vblk itself makes: no `execve`, no opening
//! files, no network sockets, no executable memory, no `ptrace`...
//!
//! Thread kinds and where their filter goes on (`vblk serve`):
//!
//! | kind | threads | installed |
//! |---|---|---|
//! | [`ThreadKind::Control`] | `vblk-signals`, `vblk-control` | first thing in each, before `serve` goes on |
//! | [`ThreadKind::Main`] | the main thread | after the image is opened and the control socket bound, before the transport starts; inherited by every thread created later |
//! | [`ThreadKind::VhostUser`] | the main thread, serving vhost-user | after the socket is bound, before the first `accept` |
//! | [`ThreadKind::VfioUser`] | the `vfio-user` server thread | first thing in it, before the first `accept` |
//! | [`ThreadKind::Queue`] | every `vblk-queue-N` runner | first thing in it (`RunnerOptions::thread_hook`) |
//! | [`ThreadKind::Nbd`] | every `vblk-nbd-N` connection thread | first thing in it, when the image is opened (before `Main`) |
//!
//! Filters stack: a thread runs every filter it inherited plus its own, and
//! a system call must pass all of them. `Main` is therefore the union of
//! every list (plus binding a UNIX socket); the transport lists contain the
//! queue list (their runners inherit them). The unit tests check these
//! inclusions.
//!
//! What every thread keeps (signal handlers run on any thread): the memory
//! allocator, the guest-memory fault handler of `vblk-memory` (`mmap`
//! `MAP_FIXED` over a page, `rt_sigaction`, `tgkill`), signal-hook's wake-up
//! (`send` on its socket), thread exit.
//!
//! Arguments are checked where it is cheap and certain: `mmap`/`mprotect`
//! never with `PROT_EXEC`, `socket` only `AF_UNIX`, `ioctl` only the
//! requests vblk makes, `fcntl` only the commands it uses, `sendto` only
//! without an address, `clone` only with `CLONE_THREAD`, `prctl` only
//! `PR_SET_NAME`/`PR_SET_NO_NEW_PRIVS`.
//!
//! Use: [`configure`] once (it compiles every filter), then [`enter`] on
//! each thread; [`thread_hook`] is the same for `RunnerOptions`. Until
//! [`configure`] runs (library users, in-process tests), [`enter`] does
//! nothing.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, OnceLock};

pub use seccompiler::BpfProgram;
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

/// The kinds of threads, each with its own allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThreadKind {
    /// The main thread before a transport narrows it; its filter is
    /// inherited by every thread started afterwards, so it allows the
    /// union of all the lists.
    Main,
    /// The signal thread and the `--control` statistics thread.
    Control,
    /// The thread serving vhost-user messages (the main thread).
    VhostUser,
    /// The vfio-user server thread (and the INTx watcher threads it starts).
    VfioUser,
    /// A queue runner: rings, eventfds, storage I/O.
    Queue,
    /// An NBD connection's reply thread (`vblk-nbd-N`): reads replies,
    /// reconnects (TCP or UNIX `socket` + `connect`). Started before the
    /// main filter, so it is not part of `Main`.
    Nbd,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [ThreadKind; 6] = [
        ThreadKind::Main,
        ThreadKind::Control,
        ThreadKind::VhostUser,
        ThreadKind::VfioUser,
        ThreadKind::Queue,
        ThreadKind::Nbd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Main => "main",
            ThreadKind::Control => "control",
            ThreadKind::VhostUser => "vhost-user",
            ThreadKind::VfioUser => "vfio-user",
            ThreadKind::Queue => "queue",
            ThreadKind::Nbd => "nbd",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `--seccomp`: what happens on a system call outside a thread's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The process is killed (SIGSYS, `SECCOMP_RET_KILL_PROCESS`).
    Kill,
    /// The call goes through and the kernel logs it (`SECCOMP_RET_LOG`:
    /// the audit log or the kernel log, `type=SECCOMP ... syscall=N`).
    Log,
    /// No filter.
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "kill" => Ok(Mode::Kill),
            "log" => Ok(Mode::Log),
            "off" => Ok(Mode::Off),
            _ => Err(format!("unknown seccomp mode '{s}' (kill, log or off)")),
        }
    }
}

/// The action a compiled filter takes on a call outside its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    KillProcess,
    Log,
    /// Fail the call with this errno (tests).
    Errno(u32),
}

impl From<Action> for SeccompAction {
    fn from(a: Action) -> SeccompAction {
        match a {
            Action::KillProcess => SeccompAction::KillProcess,
            Action::Log => SeccompAction::Log,
            Action::Errno(e) => SeccompAction::Errno(e),
        }
    }
}

/// Errors building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("seccomp: cannot build the {0} filter: {1}")]
    Build(ThreadKind, String),
    #[error(
        "seccomp: the kernel refused the {0} filter: {1} (a kernel without seccomp-bpf: run with --seccomp off)"
    )]
    Refused(ThreadKind, String),
    #[error("seccomp: this kernel cannot log system calls (no SECCOMP_RET_LOG in /proc/sys/kernel/seccomp/actions_avail); use --seccomp kill or off")]
    NoLog,
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::other(e)
    }
}

// ----------------------------------------------------------------------
// Lists
// ----------------------------------------------------------------------

/// One condition on one argument; a syscall allowed under conditions is
/// allowed when any one of them holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cond {
    /// The low 32 bits of the argument equal the value.
    Eq(u8, u64),
    /// The argument (64 bits) is 0.
    Null(u8),
    /// None of these bits is set in the low 32 bits.
    Clear(u8, u64),
    /// All of these bits are set (64 bits).
    Set(u8, u64),
}

impl Cond {
    fn rule(self) -> Result<SeccompRule, seccompiler::BackendError> {
        use SeccompCmpArgLen::{Dword, Qword};
        let c = match self {
            Cond::Eq(a, v) => SeccompCondition::new(a, Dword, SeccompCmpOp::Eq, v)?,
            Cond::Null(a) => SeccompCondition::new(a, Qword, SeccompCmpOp::Eq, 0)?,
            Cond::Clear(a, m) => SeccompCondition::new(a, Dword, SeccompCmpOp::MaskedEq(m), 0)?,
            Cond::Set(a, m) => SeccompCondition::new(a, Qword, SeccompCmpOp::MaskedEq(m), m)?,
        };
        SeccompRule::new(vec![c])
    }
}

/// `None`: any arguments; `Some(conds)`: one of them must hold.
type Args = Option<Vec<Cond>>;

#[derive(Clone, Debug, Default)]
struct List(BTreeMap<i64, (&'static str, Args)>);

impl List {
    fn allow(&mut self, (nr, name): (i64, &'static str)) {
        self.0.insert(nr, (name, None));
    }

    fn allow_if(&mut self, (nr, name): (i64, &'static str), conds: &[Cond]) {
        let e = self.0.entry(nr).or_insert((name, Some(Vec::new())));
        if let Some(v) = &mut e.1 {
            v.extend_from_slice(conds);
            v.sort_unstable();
            v.dedup();
        }
    }

    fn add(&mut self, other: &List) {
        for (&nr, (name, args)) in &other.0 {
            match args {
                None => self.allow((nr, name)),
                Some(c) => self.allow_if((nr, name), c),
            }
        }
    }

    /// Does every call this list allows also pass `wider`?
    fn within(&self, wider: &List) -> Result<(), String> {
        for (nr, (name, args)) in &self.0 {
            match (args, wider.0.get(nr)) {
                (_, None) => return Err(format!("{name} is not allowed at all")),
                (_, Some((_, None))) => {}
                (None, Some((_, Some(_)))) => {
                    return Err(format!("{name}: any arguments, but only some there"))
                }
                (Some(c), Some((_, Some(w)))) => {
                    if let Some(x) = c.iter().find(|x| !w.contains(x)) {
                        return Err(format!("{name}: {x:?} is not allowed there"));
                    }
                }
            }
        }
        Ok(())
    }

    fn filter(&self, kind: ThreadKind, action: Action) -> Result<BpfProgram, Error> {
        let bad = |e: String| Error::Build(kind, e);
        let mut rules = BTreeMap::new();
        for (&nr, (_, args)) in &self.0 {
            let r = match args {
                None => Vec::new(),
                Some(c) => c
                    .iter()
                    .map(|c| c.rule())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(e.to_string()))?,
            };
            rules.insert(nr, r);
        }
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| bad(e.to_string()))?;
        let f = SeccompFilter::new(rules, action.into(), SeccompAction::Allow, arch)
            .map_err(|e| bad(e.to_string()))?;
        BpfProgram::try_from(f).map_err(|e| bad(e.to_string()))
    }
}

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

/// Install a compiled filter on the calling thread (and the threads it
/// starts afterwards).
pub fn apply(kind: ThreadKind, prog: &BpfProgram) -> Result<(), Error> {
    seccompiler::apply_filter(prog).map_err(|e| Error::Refused(kind, e.to_string()))
}

// ----------------------------------------------------------------------
// The process's policy
// ----------------------------------------------------------------------

struct Policy {
    mode: Mode,
    programs: Vec<BpfProgram>,
}

static POLICY: OnceLock<Policy> = OnceLock::new();

/// Set the process's mode and compile every filter (once; a second call
/// keeps the first mode and says so). Checks that the kernel offers
/// `SECCOMP_RET_LOG` for [`Mode::Log`] when it tells.
pub fn configure(mode: Mode) -> Result<(), Error> {
    if let Some(p) = POLICY.get() {
        if p.mode != mode {
            return Err(Error::Build(
                ThreadKind::Main,
                format!("already configured as {:?}", p.mode),
            ));
        }
        return Ok(());
    }
    let action = match mode {
        Mode::Kill => Action::KillProcess,
        Mode::Log => {
            if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail") {
                if !s.split_whitespace().any(|a| a == "log") {
                    return Err(Error::NoLog);
                }
            }
            Action::Log
        }
        Mode::Off => {
            let _ = POLICY.set(Policy {
                mode,
                programs: Vec::new(),
            });
            return Ok(());
        }
    };
    let programs = ThreadKind::ALL
        .iter()
        .map(|&k| filter(k, action))
        .collect::<Result<Vec<_>, _>>()?;
    let _ = POLICY.set(Policy { mode, programs });
    Ok(())
}

/// The configured mode (`None` before [`configure`]).
pub fn mode() -> Option<Mode> {
    POLICY.get().map(|p| p.mode)
}

/// Install the configured filter of `kind` on the calling thread. Does
/// nothing before [`configure`] or with [`Mode::Off`].
pub fn enter(kind: ThreadKind) -> io::Result<()> {
    let Some(p) = POLICY.get() else {
        return Ok(());
    };
    match p.programs.get(kind.index()) {
        Some(prog) => {
            apply(kind, prog)?;
            log::debug!("seccomp: {kind} filter installed ({:?})", p.mode);
            Ok(())
        }
        None => Ok(()),
    }
}

/// Hook type of `RunnerOptions::thread_hook`.
pub type ThreadHook = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// A hook that installs `kind`'s filter, or `None` when no filter is
/// configured.
pub fn thread_hook(kind: ThreadKind) -> Option<ThreadHook> {
    match mode() {
        Some(Mode::Kill) | Some(Mode::Log) => Some(Arc::new(move || enter(kind))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_compiles_for_every_action() {
        for k in ThreadKind::ALL {
            for a in [Action::KillProcess, Action::Log, Action::Errno(1)] {
                let p = filter(k, a).unwrap();
                assert!(!p.is_empty());
                // BPF programs are limited to 4096 instructions.
                assert!(p.len() < 4096, "{k}: {} instructions", p.len());
            }
        }
    }

    /// Filters stack: a thread started after its creator installed a
    /// filter runs both, so each list must fit inside its creator's.
    #[test]
    fn lists_fit_inside_the_lists_of_the_threads_that_start_them() {
        for k in ThreadKind::ALL {
            if k == ThreadKind::Nbd {
                // Started before the main filter (when the image opens).
                continue;
            }
            within(k, ThreadKind::Main).unwrap_or_else(|e| panic!("{k} in main: {e}"));
        }
        // The NBD thread may open network sockets; nothing under Main may.
        assert!(within(ThreadKind::Nbd, ThreadKind::Main).is_err());
        within(ThreadKind::Queue, ThreadKind::VhostUser).unwrap();
        within(ThreadKind::Queue, ThreadKind::VfioUser).unwrap();
        // And the check itself can fail.
        assert!(within(ThreadKind::VhostUser, ThreadKind::Queue).is_err());
        assert!(within(ThreadKind::Main, ThreadKind::VhostUser).is_err());
    }

    #[test]
    fn nothing_dangerous_is_in_any_list() {
        for k in ThreadKind::ALL {
            let names = syscalls(k);
            for bad in [
                "execve",
                "execveat",
                "fork",
                "vfork",
                "ptrace",
                "open",
                "openat",
                "openat2",
                "process_vm_writev",
                "process_vm_readv",
                "kill",
                "setuid",
                "mount",
                "chmod",
                "bpf",
                "perf_event_open",
                "init_module",
            ] {
                assert!(!names.contains(&bad), "{k} allows {bad}");
            }
        }
        assert!(!syscalls(ThreadKind::Queue).contains(&"socket"));
        assert!(!syscalls(ThreadKind::VhostUser).contains(&"socket"));
        assert!(!syscalls(ThreadKind::VfioUser).contains(&"socket"));
        assert!(syscalls(ThreadKind::Main).contains(&"socket"));
    }

    #[test]
    fn modes_parse() {
        assert_eq!("kill".parse::<Mode>(), Ok(Mode::Kill));
        assert_eq!("log".parse::<Mode>(), Ok(Mode::Log));
        assert_eq!("off".parse::<Mode>(), Ok(Mode::Off));
        assert!("allow".parse::<Mode>().is_err());
    }
}
