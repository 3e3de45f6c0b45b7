//! Ring messages: SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE,
//! GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR and
//! SET_VRING_ENABLE.

use std::fs::File;
use std::sync::Arc;

use vhost::vhost_user::message::{VhostUserVringAddrFlags, VhostUserVringState};
use vhost::vhost_user::Result as VuResult;

use crate::backend::vring::{into_eventfd, RingAddr};
use crate::backend::Conn;

impl Conn {
    pub(super) fn on_set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        let Some(i) = self.queue_index(index) else {
            return self.refuse("SET_VRING_NUM", format!("no queue {index}"));
        };
        let max = self.max_queue_size();
        let Some(n) = u16::try_from(num)
            .ok()
            .filter(|n| *n > 0 && *n <= max && n.is_power_of_two())
        else {
            return self.refuse(
                "SET_VRING_NUM",
                format!("queue size {num}: must be a power of two, at most {max}"),
            );
        };
        let v = &mut self.vrings[usize::from(i)];
        if v.running {
            return self.refuse("SET_VRING_NUM", format!("queue {i} is running"));
        }
        v.size = n;
        Ok(())
    }

    pub(super) fn on_set_vring_addr(
        &mut self,
        index: u32,
        flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        log: u64,
    ) -> VuResult<()> {
        let Some(i) = self.queue_index(index) else {
            return self.refuse("SET_VRING_ADDR", format!("no queue {index}"));
        };
        // "Modifications to "used" vring should be marked if
        // VHOST_VRING_F_LOG is part of ring's flags", at `log_guest_addr`.
        let used_log = flags
            .contains(VhostUserVringAddrFlags::VHOST_VRING_F_LOG)
            .then_some(log);
        let a = RingAddr {
            desc: descriptor,
            used,
            avail: available,
        };
        let v = &self.vrings[usize::from(i)];
        if v.running {
            if v.addr == Some(a) {
                // Logging switched on or off for a running ring.
                self.dirty.set_used_ring(i, used_log);
                return Ok(());
            }
            return self.refuse("SET_VRING_ADDR", format!("queue {i} is running"));
        }
        // Checked now if the table and size are known, again at start.
        if !self.table.is_empty() {
            if let Err(e) = self.translate(&a, v.size.max(1)) {
                return self.refuse("SET_VRING_ADDR", e);
            }
        }
        self.vrings[usize::from(i)].addr = Some(a);
        self.dirty.set_used_ring(i, used_log);
        Ok(())
    }

    pub(super) fn on_set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let Some(i) = self.queue_index(index) else {
            return self.refuse("SET_VRING_BASE", format!("no queue {index}"));
        };
        // Split rings: a 16-bit avail index; packed rings: both positions
        // with their wrap counters (`packed`).
        if let Err(e) = self.check_base(base) {
            return self.refuse("SET_VRING_BASE", e);
        }
        let b = base;
        let v = &mut self.vrings[usize::from(i)];
        if v.running {
            return self.refuse("SET_VRING_BASE", format!("queue {i} is running"));
        }
        v.base = b;
        Ok(())
    }

    pub(super) fn on_get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        let Some(i) = self.queue_index(index) else {
            return self.fatal("GET_VRING_BASE", format!("no queue {index}"));
        };
        let base = self.stop_ring(i);
        let v = &mut self.vrings[usize::from(i)];
        // Stopped: it starts again on the next SET_VRING_KICK.
        v.kick = None;
        log::debug!("queue {i}: stopped at {base:#x}");
        Ok(VhostUserVringState::new(index, base))
    }

    pub(super) fn on_set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        let Some(i) = self.queue_index(u32::from(index)) else {
            return self.refuse("SET_VRING_KICK", format!("no queue {index}"));
        };
        // "Bit 8 is the invalid FD flag. This flag is set when there is no
        // file descriptor in the ancillary data. This signals that polling
        // should be used instead of waiting for the kick." (the vhost crate
        // decodes it: `fd` is None then).
        let kick = match fd.map(into_eventfd).transpose() {
            Ok(k) => k.map(Arc::new),
            Err(e) => return self.refuse("SET_VRING_KICK", e),
        };
        if self.vrings[usize::from(i)].running {
            // A new kick fd for a running ring: restart it on the new fd,
            // where it stopped.
            self.stop_ring(i);
        }
        self.vrings[usize::from(i)].kick = Some(kick);
        if let Err(e) = self.try_start(i) {
            return self.refuse("SET_VRING_KICK", e);
        }
        Ok(())
    }

    pub(super) fn on_set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        let Some(i) = self.queue_index(u32::from(index)) else {
            return self.refuse("SET_VRING_CALL", format!("no queue {index}"));
        };
        let call = match fd.map(into_eventfd).transpose() {
            Ok(c) => c,
            Err(e) => return self.refuse("SET_VRING_CALL", e),
        };
        let slot = &self.vrings[usize::from(i)].call;
        *slot.fd.write().unwrap_or_else(|e| e.into_inner()) = call;
        Ok(())
    }

    pub(super) fn on_set_vring_err(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        let Some(i) = self.queue_index(u32::from(index)) else {
            return self.refuse("SET_VRING_ERR", format!("no queue {index}"));
        };
        let errfd = match fd.map(into_eventfd).transpose() {
            Ok(e) => e,
            Err(e) => return self.refuse("SET_VRING_ERR", e),
        };
        *self.vrings[usize::from(i)]
            .err
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = errfd;
        Ok(())
    }

    pub(super) fn on_set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        let Some(i) = self.queue_index(index) else {
            return self.refuse("SET_VRING_ENABLE", format!("no queue {index}"));
        };
        self.vrings[usize::from(i)].enabled = enable;
        if enable {
            if let Err(e) = self.try_start(i) {
                return self.refuse("SET_VRING_ENABLE", e);
            }
        } else if self.vrings[usize::from(i)].running {
            // Disabled: no more requests are taken; those in flight finish.
            // The kick stays set, so enabling it again resumes where it
            // stopped.
            self.stop_ring(i);
        }
        Ok(())
    }
}
