//! What happens on a system call outside a thread's list: the process's
//! `--seccomp` mode, and the action a compiled filter takes.

use seccompiler::SeccompAction;

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
