//! DEVICE_SET_IRQS: the client's MSI-X and INTx eventfds, and the
//! eventfds the client asks us to watch (INTx unmask / mask), each on a
//! thread of its own.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::EventFd;

use super::{einval, Backend};
use crate::irq::{EventFdLine, Irq, Line};
use crate::regs::vfio::*;

/// A thread that runs `action` each time the client signals `fd`, until
/// dropped.
pub(super) struct FdWatcher {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl FdWatcher {
    fn spawn(name: &str, mut fd: File, action: impl Fn() + Send + 'static) -> io::Result<Self> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let stop_rx = stop.try_clone()?;
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                let mut fds = [
                    libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: stop_rx.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: `fds` is a valid array of two pollfds for the call.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if n < 0 {
                    if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                if fds[1].revents != 0 {
                    return;
                }
                if fds[0].revents & libc::POLLIN != 0 {
                    let mut b = [0u8; 8];
                    match fd.read(&mut b) {
                        Ok(0) | Err(_) => return, // not an eventfd after all, or closed
                        Ok(_) => action(),
                    }
                } else if fds[0].revents != 0 {
                    return; // POLLHUP / POLLERR / POLLNVAL
                }
            })?;
        Ok(FdWatcher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FdWatcher {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Backend {
    fn watch_intx(&self, fd: File, unmask: bool) -> io::Result<FdWatcher> {
        let irq: Arc<Irq> = self.func.irq().clone();
        let name = if unmask {
            "vfio-intx-unmask"
        } else {
            "vfio-intx-mask"
        };
        FdWatcher::spawn(name, fd, move || irq.set_intx_masked(!unmask))
    }

    pub(super) fn set_intx(&mut self, flags: u32, count: u32, fds: Vec<File>) -> io::Result<()> {
        let irq = self.func.irq().clone();
        let data_none = flags & IRQ_SET_DATA_NONE != 0;
        let data_eventfd = flags & IRQ_SET_DATA_EVENTFD != 0;
        let fd = fds.into_iter().next();
        if flags & IRQ_SET_ACTION_TRIGGER != 0 {
            if data_eventfd && count == 1 {
                // No fd: QEMU's way of sending "-1", i.e. none.
                irq.set_intx_line(fd.map(|f| Arc::new(EventFdLine(f)) as Arc<dyn Line>));
                // A fresh trigger starts unmasked (vfio_pci_set_intx_trigger).
                irq.set_intx_masked(false);
            } else if count == 0 && (data_none || data_eventfd) {
                // INTx off: the unmask/mask eventfds go with it.
                irq.set_intx_line(None);
                self.intx_unmask = None;
                self.intx_mask = None;
            } else {
                log::debug!("vfio-user: INTx trigger {flags:#x} count {count} ignored");
            }
        } else if flags & (IRQ_SET_ACTION_MASK | IRQ_SET_ACTION_UNMASK) != 0 {
            let unmask = flags & IRQ_SET_ACTION_UNMASK != 0;
            if data_none {
                if count == 1 {
                    irq.set_intx_masked(!unmask);
                }
            } else if data_eventfd {
                // Mask / unmask whenever the client signals this eventfd: KVM
                // signals its resample fd at the guest's EOI.
                let w = match fd {
                    Some(fd) => Some(self.watch_intx(fd, unmask)?),
                    None => None,
                };
                if unmask {
                    self.intx_unmask = w;
                } else {
                    self.intx_mask = w;
                }
            }
        }
        Ok(())
    }

    pub(super) fn set_msix(
        &mut self,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        let irq = self.func.irq().clone();
        if flags & IRQ_SET_ACTION_TRIGGER == 0 {
            // Per-vector masking is in the MSI-X table (the irq info does not
            // say MASKABLE), as for kernel vfio-pci.
            return Err(einval("MSI-X mask/unmask through SET_IRQS"));
        }
        if flags & IRQ_SET_DATA_NONE != 0 {
            if count == 0 {
                irq.clear_msix_lines();
            }
            return Ok(());
        }
        if flags & IRQ_SET_DATA_EVENTFD == 0 {
            return Err(einval("MSI-X trigger without eventfds"));
        }
        // QEMU sends runs of "-1" (no eventfd) as messages with no fds.
        if !fds.is_empty() && fds.len() != count as usize {
            return Err(einval(format!(
                "MSI-X: {} eventfds for {count} vectors",
                fds.len()
            )));
        }
        let mut fds = fds.into_iter();
        for v in start..start + count {
            let line = fds
                .next()
                .map(|f| Arc::new(EventFdLine(f)) as Arc<dyn Line>);
            irq.set_msix_line(v as usize, line);
        }
        Ok(())
    }
}
