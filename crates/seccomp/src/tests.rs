//! Unit tests: every filter compiles, the lists nest as the threads that
//! start each other require, and nothing dangerous is allowed.

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
