//! Errors building or installing a filter.

use std::io;

use crate::thread_kind::ThreadKind;

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
