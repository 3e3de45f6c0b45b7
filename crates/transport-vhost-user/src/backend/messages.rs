//! Every front-end message the back end handles, validated, turned into
//! operations on the connection ([`super::Conn`]).

use std::fs::File;
use std::sync::Arc;

use vblk_device::stats;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut};

use crate::inflight::InflightRegion;
use crate::memory::{map_region, MemTable, RegionDesc, MAX_MEM_SLOTS};

use super::vring::*;
use super::*;

impl VhostUserBackendReqHandlerMut for Conn {
    fn set_owner(&mut self) -> VuResult<()> {
        Ok(())
    }

    /// "It is recommended that back-ends either ignore this message, or use
    /// it to disable all rings."
    fn reset_owner(&mut self) -> VuResult<()> {
        self.stop_all();
        for v in &mut self.vrings {
            v.kick = None;
            v.enabled = false;
        }
        Ok(())
    }

    /// "Ask the vhost user back-end to disable all rings and reset all
    /// internal device state to the initial state, ready to be
    /// reinitialized."
    fn reset_device(&mut self) -> VuResult<()> {
        stats::inc(&self.device.stats().device.resets);
        self.device.reset_cache_mode();
        self.cache_mode_known = false;
        self.stop_all();
        self.dirty.reset();
        for v in &mut self.vrings {
            v.reset();
        }
        Ok(())
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(self.offered_features())
    }

    fn set_features(&mut self, f: u64) -> VuResult<()> {
        let offered = self.offered_features();
        if f & !offered != 0 {
            return self.refuse(
                "SET_FEATURES",
                format!("bits {:#x} were not offered", f & !offered),
            );
        }
        let log_all = VhostUserVirtioFeatures::LOG_ALL.bits();
        if self.any_running() && (f ^ self.acked_features) & !log_all != 0 {
            log::info!("features changed with rings running; applies at the next ring start");
        }
        self.acked_features = f;
        self.device.features_negotiated(f);
        // VHOST_F_LOG_ALL starts and stops dirty logging, rings running.
        self.set_logging(f & log_all != 0);
        log::debug!("driver accepted features {f:#x}");
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        regions: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy: Option<bool>,
    ) -> VuResult<Option<Vec<u64>>> {
        if regions.len() != files.len() {
            return self.refuse("SET_MEM_TABLE", "one fd per region expected");
        }
        if regions.len() > MAX_MEM_SLOTS {
            return self.refuse("SET_MEM_TABLE", "too many regions");
        }
        let mut mapped = Vec::with_capacity(regions.len());
        for (r, f) in regions.iter().zip(files) {
            let d = RegionDesc {
                guest_phys_addr: r.guest_phys_addr,
                memory_size: r.memory_size,
                userspace_addr: r.user_addr,
                mmap_offset: r.mmap_offset,
            };
            match map_region(d, f) {
                Ok(m) => mapped.push(m),
                Err(e) => return self.refuse("SET_MEM_TABLE", e),
            }
        }
        let table = match MemTable::from_regions(mapped) {
            Ok(t) => t,
            Err(e) => return self.refuse("SET_MEM_TABLE", e),
        };
        self.install(table);
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
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

    fn set_vring_addr(
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

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
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

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
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

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
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

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
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

    fn set_vring_err(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
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

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(offered_protocol_features())
    }

    fn set_protocol_features(&mut self, f: u64) -> VuResult<()> {
        let offered = offered_protocol_features().bits();
        if f & !offered != 0 {
            return self.refuse(
                "SET_PROTOCOL_FEATURES",
                format!("bits {:#x} were not offered", f & !offered),
            );
        }
        self.acked_protocol = f;
        Ok(())
    }

    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(u64::from(self.device.num_queues()))
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
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

    fn get_config(
        &mut self,
        offset: u32,
        size: u32,
        _flags: VhostUserConfigFlags,
    ) -> VuResult<Vec<u8>> {
        // "vhost-user back-end uses zero length of payload to indicate an
        // error to the vhost-user front-end" (the library answers so).
        if size > MAX_CONFIG_SIZE || offset.checked_add(size).is_none() {
            return self.refuse("GET_CONFIG", format!("{size} bytes at {offset}"));
        }
        let mut buf = vec![0u8; size as usize];
        self.device.read_config(u64::from(offset), &mut buf);
        Ok(buf)
    }

    fn set_config(&mut self, offset: u32, buf: &[u8], flags: VhostUserConfigFlags) -> VuResult<()> {
        // "back-ends MUST NOT accept SET_CONFIG for read-only configuration
        // space fields unless the live migration bit is set": only
        // `writeback` is writable, and only with CONFIG_WCE negotiated
        // (the library checked the payload length against `size`).
        if flags.contains(VhostUserConfigFlags::LIVE_MIGRATION) {
            return Ok(());
        }
        if let Err(e) = self
            .device
            .write_config(u64::from(offset), buf, self.acked_features)
        {
            stats::inc(&self.device.stats().device.bad_register_writes);
            return self.refuse("SET_CONFIG", e);
        }
        self.cache_mode_known = true;
        Ok(())
    }

    /// Reached only when the library took SET_BACKEND_REQ_FD itself (the
    /// connection thread answers it first, see `channel`): its `Backend`
    /// cannot send CONFIG_CHANGE_MSG.
    fn set_backend_req_fd(&mut self, _backend: vhost::vhost_user::Backend) {
        log::warn!("vhost-user: back-end channel taken by the library; resize notifications will not reach this front end");
    }

    fn set_gpu_socket(&mut self, _gpu: GpuBackend) -> VuResult<()> {
        self.refuse("GPU_SET_SOCKET", "not a GPU")
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> VuResult<File> {
        // The library answers an empty reply on error.
        self.refuse("GET_SHARED_OBJECT", "not supported")
    }

    fn get_inflight_fd(&mut self, msg: &VhostUserInflight) -> VuResult<(VhostUserInflight, File)> {
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

    fn set_inflight_fd(&mut self, msg: &VhostUserInflight, file: File) -> VuResult<()> {
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
                    super::channel::reconnected(&self.device);
                }
                self.inflight = Some(r);
                // `file` closes here; the mapping stays.
                Ok(())
            }
            Err(e) => self.refuse("SET_INFLIGHT_FD", e),
        }
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Ok(MAX_MEM_SLOTS as u64)
    }

    fn add_mem_region(
        &mut self,
        region: &VhostUserSingleMemoryRegion,
        fd: File,
        _postcopy: Option<bool>,
    ) -> VuResult<Option<u64>> {
        let d = RegionDesc {
            guest_phys_addr: region.guest_phys_addr,
            memory_size: region.memory_size,
            userspace_addr: region.user_addr,
            mmap_offset: region.mmap_offset,
        };
        if let Err(e) = self.table.check_room(&d) {
            return self.refuse("ADD_MEM_REG", e);
        }
        let m = match map_region(d, fd) {
            Ok(m) => m,
            Err(e) => return self.refuse("ADD_MEM_REG", e),
        };
        let guard = self.runners.pause_all();
        let r = self.table.insert(m);
        if r.is_ok() {
            let new = self.table.guest_memory();
            self.mem
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(new);
        }
        drop(guard);
        match r {
            Ok(()) => Ok(None),
            Err(e) => self.refuse("ADD_MEM_REG", e),
        }
    }

    fn remove_mem_region(&mut self, region: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        let d = RegionDesc {
            guest_phys_addr: region.guest_phys_addr,
            memory_size: region.memory_size,
            userspace_addr: region.user_addr,
            mmap_offset: region.mmap_offset,
        };
        let guard = self.runners.pause_all();
        let r = self.table.remove(&d);
        if r.is_ok() {
            let new = self.table.guest_memory();
            self.mem
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(new);
        }
        // The removed mapping goes while every queue is still paused.
        let removed = r.map(drop);
        drop(guard);
        match removed {
            Ok(()) => Ok(()),
            Err(e) => self.refuse("REM_MEM_REG", e),
        }
    }

    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _fd: File,
    ) -> VuResult<Option<File>> {
        // The library answers the error code itself.
        self.refuse("SET_DEVICE_STATE_FD", "not supported")
    }

    fn check_device_state(&mut self) -> VuResult<()> {
        self.refuse("CHECK_DEVICE_STATE", "not supported")
    }

    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        self.fatal("GET_SHMEM_CONFIG", "not supported")
    }

    fn set_log_base(&mut self, log: &VhostUserLog, file: File) -> VuResult<()> {
        // The library answers only on success (the front end waits for
        // that reply): a log that cannot be used drops the connection.
        match self.install_log(log, file) {
            Ok(()) => Ok(()),
            Err(e) => self.fatal("SET_LOG_BASE", e),
        }
    }
}
