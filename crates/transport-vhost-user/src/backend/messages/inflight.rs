//! Inflight I/O tracking messages: GET_INFLIGHT_FD (a fresh buffer from
//! the back end) and SET_INFLIGHT_FD (the buffer handed back, possibly by
//! a previous back end). The buffer itself is `crate::inflight`.

use std::fs::File;

use vhost::vhost_user::message::VhostUserInflight;
use vhost::vhost_user::Result as VuResult;

use crate::backend::Conn;
use crate::inflight::InflightRegion;

impl Conn {
    pub(super) fn on_get_inflight_fd(
        &mut self,
        msg: &VhostUserInflight,
    ) -> VuResult<(VhostUserInflight, File)> {
        // "this message is submitted by the front-end to get a shared
        // buffer from back-end. The shared buffer will be used to track
        // inflight I/O by back-end."
        let nq = msg.num_queues;
        let qs = msg.queue_size;
        if nq == 0 || nq > self.device.num_queues() {
            return self.fatal(
                "GET_INFLIGHT_FD",
                format!("{nq} queues (the device has {})", self.device.num_queues()),
            );
        }
        if qs == 0 || qs > self.max_queue_size() {
            return self.fatal(
                "GET_INFLIGHT_FD",
                format!("queue size {qs} (at most {})", self.max_queue_size()),
            );
        }
        let a = match InflightRegion::allocate(nq, qs) {
            Ok(a) => a,
            Err(e) => return self.fatal("GET_INFLIGHT_FD", e),
        };
        // Also track in it at once: a front end that never sends
        // SET_INFLIGHT_FD (libvhost-user behaves the same) still gets a
        // buffer that describes the rings.
        if !self.any_running() {
            match InflightRegion::map(&a.file, a.mmap_size, a.mmap_offset, nq, qs) {
                Ok(r) => self.inflight = Some(r),
                Err(e) => return self.fatal("GET_INFLIGHT_FD", e),
            }
        }
        self.inflight_from_us = true;
        log::debug!(
            "inflight buffer: {nq} queue(s) of {qs}, {} bytes",
            a.mmap_size
        );
        Ok((
            VhostUserInflight::new(a.mmap_size, a.mmap_offset, nq, qs),
            a.file,
        ))
    }

    pub(super) fn on_set_inflight_fd(
        &mut self,
        msg: &VhostUserInflight,
        file: File,
    ) -> VuResult<()> {
        // "this message is submitted by the front-end to send the shared
        // inflight buffer back to the back-end so that the back-end could
        // get inflight I/O after a crash or restart."
        if self.any_running() {
            return self.refuse("SET_INFLIGHT_FD", "rings are running");
        }
        match InflightRegion::map(
            &file,
            msg.mmap_size,
            msg.mmap_offset,
            msg.num_queues,
            msg.queue_size,
        ) {
            Ok(r) => {
                log::debug!(
                    "inflight buffer from the front end: {} queue(s) of {}",
                    msg.num_queues,
                    msg.queue_size
                );
                if !self.inflight_from_us {
                    crate::backend::channel::reconnected(&self.device);
                }
                self.inflight = Some(r);
                // `file` closes here; the mapping stays.
                Ok(())
            }
            Err(e) => self.refuse("SET_INFLIGHT_FD", e),
        }
    }
}
