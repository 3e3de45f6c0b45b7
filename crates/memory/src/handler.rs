//! The process-wide SIGBUS/SIGSEGV handler: a fault inside a registered
//! guest mapping is contained (a scratch page mapped over it), any other
//! fault goes to the previous disposition.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::error::MapError;
use crate::faults::{FAULT_BUS, FAULT_SEGV};
use crate::registry::{find, CONTAINED};

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
static OLD_BUS: OnceLock<libc::sigaction> = OnceLock::new();
static OLD_SEGV: OnceLock<libc::sigaction> = OnceLock::new();

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel hands SA_SIGINFO handlers a valid siginfo_t; for
    // SIGBUS and SIGSEGV `si_addr` is the union member it filled in.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // si_code > 0: raised by the kernel for an access, not sent by kill().
    if code > 0 {
        if let Some(slot) = find(addr) {
            let page = addr & !(PAGE_SIZE.load(Ordering::Relaxed) - 1);
            // SAFETY: `page` lies inside a registered guest mapping that is
            // alive (slots are released before their munmap), so replacing
            // this one page of it with anonymous memory touches nothing
            // else; mmap is a plain system call, safe in a signal handler.
            let p = unsafe {
                libc::mmap(
                    page as *mut libc::c_void,
                    PAGE_SIZE.load(Ordering::Relaxed),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                let bit = if sig == libc::SIGBUS {
                    FAULT_BUS
                } else {
                    FAULT_SEGV
                };
                slot.faults.fetch_or(bit, Ordering::AcqRel);
                CONTAINED.fetch_add(1, Ordering::Relaxed);
                return; // the access is retried on the scratch page
            }
        }
    }
    // Not ours: the previous disposition handles the repeated fault.
    let old = if sig == libc::SIGBUS {
        OLD_BUS.get()
    } else {
        OLD_SEGV.get()
    };
    // SAFETY: sigaction/signal/raise are async-signal-safe; `old` is a
    // disposition the kernel gave us earlier.
    unsafe {
        match old {
            Some(o) => {
                libc::sigaction(sig, o, std::ptr::null_mut());
            }
            None => {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if code <= 0 {
            libc::raise(sig);
        }
    }
}

pub(crate) fn install_handler() -> Result<(), MapError> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        // SAFETY: sysconf has no side effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE_SIZE.store(page as usize, Ordering::Relaxed);
        }
        for (sig, old) in [(libc::SIGBUS, &OLD_BUS), (libc::SIGSEGV, &OLD_SEGV)] {
            // SAFETY: an all-zero sigaction is a valid value to fill in.
            let mut prev: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: reads the current disposition into `prev`, ours.
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut prev) } != 0 {
                return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
            let _ = old.set(prev);
            // SAFETY: as above.
            let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
            sa.sa_sigaction = on_fault
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: sa_mask is inside `sa`, which we own.
            unsafe { libc::sigemptyset(&mut sa.sa_mask) };
            // SAFETY: a valid sigaction whose handler only uses atomics and
            // async-signal-safe calls.
            if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
        }
        Ok(())
    });
    r.map_err(|e| MapError::Handler(io::Error::from_raw_os_error(e)))
}
