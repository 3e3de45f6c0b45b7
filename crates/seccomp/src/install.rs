//! Installing filters: the process's policy (its mode and every compiled
//! filter, set once by [`configure`]) and the per-thread [`enter`].

use std::io;
use std::sync::{Arc, OnceLock};

use seccompiler::BpfProgram;

use crate::action::{Action, Mode};
use crate::error::Error;
use crate::lists::filter;
use crate::thread_kind::ThreadKind;

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
