//! One ring's configuration as the front end sets it, and its call eventfd.

use std::fs::File;
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::{Arc, Mutex, RwLock};

use vblk_device::stats;
use vblk_interrupt::{Interrupt, InterruptKind};
use vmm_sys_util::eventfd::EventFd;

/// The queue's call eventfd, replaceable at any time (SET_VRING_CALL)
/// without restarting the ring.
pub(super) struct CallSlot {
    pub(super) index: u16,
    pub(super) fd: RwLock<Option<EventFd>>,
    pub(super) stats: Arc<stats::Stats>,
}

impl Interrupt for CallSlot {
    fn trigger(&self, kind: InterruptKind) -> std::io::Result<()> {
        match kind {
            InterruptKind::Queue(n) if n == self.index => {
                let fd = self.fd.read().unwrap_or_else(|e| e.into_inner());
                let Some(fd) = fd.as_ref() else {
                    // "This signals that polling will be used instead of
                    // waiting for the call" (bit 8, SET_VRING_CALL).
                    return Ok(());
                };
                stats::inc(&self.stats.queue(usize::from(n)).eventfd_signals);
                fd.write(1)
            }
            InterruptKind::Queue(_) => Ok(()),
            // Config-change interrupts need the back-end request channel
            // (not offered): vblk's config space never changes at run time.
            InterruptKind::Config => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RingAddr {
    pub(super) desc: u64,
    pub(super) used: u64,
    pub(super) avail: u64,
}

/// What the front end configured for one ring.
pub(super) struct Vring {
    /// SET_VRING_NUM (0: not set).
    pub(super) size: u16,
    /// SET_VRING_ADDR: front-end user addresses.
    pub(super) addr: Option<RingAddr>,
    /// SET_VRING_BASE, or where the ring stopped (split: the avail index;
    /// packed: avail position | used position << 16, see `packed`).
    pub(super) base: u32,
    /// SET_VRING_KICK since the last stop: `Some(None)` = polling.
    pub(super) kick: Option<Option<Arc<EventFd>>>,
    pub(super) call: Arc<CallSlot>,
    pub(super) err: Arc<Mutex<Option<EventFd>>>,
    /// SET_VRING_ENABLE.
    pub(super) enabled: bool,
    /// Handed to the runner.
    pub(super) running: bool,
}

impl Vring {
    pub(super) fn new(index: u16, stats: Arc<stats::Stats>) -> Vring {
        Vring {
            size: 0,
            addr: None,
            base: 0,
            kick: None,
            call: Arc::new(CallSlot {
                index,
                fd: RwLock::new(None),
                stats,
            }),
            err: Arc::new(Mutex::new(None)),
            enabled: false,
            running: false,
        }
    }

    /// Back to the initial state (reset): stopped, nothing configured.
    pub(super) fn reset(&mut self) {
        self.size = 0;
        self.addr = None;
        self.base = 0;
        self.kick = None;
        *self.call.fd.write().unwrap_or_else(|e| e.into_inner()) = None;
        *self.err.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.enabled = false;
        self.running = false;
    }
}

/// Take ownership of an fd the front end sent as an eventfd, refusing
/// anything else (a file or socket would make the runner spin or block).
pub(super) fn into_eventfd(file: File) -> Result<EventFd, String> {
    match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
        Ok(l) if l.as_os_str() == "anon_inode:[eventfd]" => {}
        Ok(l) => return Err(format!("not an eventfd ({})", l.display())),
        // No /proc: cannot check, accept.
        Err(e) => log::debug!("cannot check an eventfd: {e}"),
    }
    // SAFETY: `into_raw_fd` hands over sole ownership of an open fd.
    Ok(unsafe { EventFd::from_raw_fd(file.into_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_slot_signals_the_current_eventfd_and_can_be_swapped() {
        let stats = Arc::new(stats::Stats::new(2));
        let slot = CallSlot {
            index: 1,
            fd: RwLock::new(None),
            stats: stats.clone(),
        };
        // No call fd: polling, nothing to do.
        slot.trigger(InterruptKind::Queue(1)).unwrap();
        let a = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let b = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        *slot.fd.write().unwrap() = Some(a.try_clone().unwrap());
        slot.trigger(InterruptKind::Queue(1)).unwrap();
        // Another queue's or a config interrupt does not touch this fd.
        slot.trigger(InterruptKind::Queue(0)).unwrap();
        slot.trigger(InterruptKind::Config).unwrap();
        assert_eq!(a.read().unwrap(), 1);
        *slot.fd.write().unwrap() = Some(b.try_clone().unwrap());
        slot.trigger(InterruptKind::Queue(1)).unwrap();
        assert_eq!(b.read().unwrap(), 1);
        assert!(a.read().is_err(), "the old call fd was signalled");
        assert_eq!(
            stats
                .queue(1)
                .eventfd_signals
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    #[test]
    fn only_eventfds_are_taken_as_kick_or_call() {
        let f = tempfile::tempfile().unwrap();
        assert!(into_eventfd(f).is_err());
        let (s, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(into_eventfd(File::from(std::os::fd::OwnedFd::from(s))).is_err());
        let e = EventFd::new(0).unwrap();
        // SAFETY: dup of our own eventfd; the File owns the new descriptor.
        let dup = unsafe { File::from_raw_fd(libc::dup(e.as_raw_fd())) };
        let e2 = into_eventfd(dup).unwrap();
        e2.write(3).unwrap();
        assert_eq!(e.read().unwrap(), 3);
    }
}
