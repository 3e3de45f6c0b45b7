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

mod action;
mod bpf;
mod error;
mod install;
mod lists;
mod thread_kind;

pub use action::{Action, Mode};
pub use error::Error;
pub use install::{apply, configure, enter, mode, thread_hook, ThreadHook};
pub use lists::{filter, syscalls, within};
pub use seccompiler::BpfProgram;
pub use thread_kind::ThreadKind;

#[cfg(test)]
mod tests;
