//! Every front-end message the back end handles, validated, turned into
//! operations on the connection ([`super::Conn`]).
//!
//! This file is the table: the one `VhostUserBackendReqHandlerMut` impl,
//! where a message answered in one expression (no-ops, constants, refusals
//! of what vblk does not support) is answered directly, and every other
//! message goes to the file of its group:
//!
//! * `features`: RESET_OWNER, RESET_DEVICE, SET_FEATURES,
//!   SET_PROTOCOL_FEATURES;
//! * `memory`: SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG;
//! * `vrings`: SET_VRING_NUM, _ADDR, _BASE, GET_VRING_BASE, SET_VRING_KICK,
//!   _CALL, _ERR, _ENABLE;
//! * `config`: GET_CONFIG, SET_CONFIG;
//! * `inflight`: GET_INFLIGHT_FD, SET_INFLIGHT_FD;
//! * `super::migration`: SET_LOG_BASE (with VHOST_F_LOG_ALL's logging).

mod config;
mod features;
mod inflight;
mod memory;
mod vrings;

use std::fs::File;

use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut};

use crate::memory::MAX_MEM_SLOTS;

use super::{offered_protocol_features, Conn};

impl VhostUserBackendReqHandlerMut for Conn {
    fn set_owner(&mut self) -> VuResult<()> {
        Ok(())
    }

    fn reset_owner(&mut self) -> VuResult<()> {
        self.on_reset_owner()
    }

    fn reset_device(&mut self) -> VuResult<()> {
        self.on_reset_device()
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(self.offered_features())
    }

    fn set_features(&mut self, f: u64) -> VuResult<()> {
        self.on_set_features(f)
    }

    fn set_mem_table(
        &mut self,
        regions: &[VhostUserMemoryRegion],
        files: Vec<File>,
        postcopy: Option<bool>,
    ) -> VuResult<Option<Vec<u64>>> {
        self.on_set_mem_table(regions, files, postcopy)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        self.on_set_vring_num(index, num)
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
        self.on_set_vring_addr(index, flags, descriptor, used, available, log)
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        self.on_set_vring_base(index, base)
    }

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        self.on_get_vring_base(index)
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.on_set_vring_kick(index, fd)
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.on_set_vring_call(index, fd)
    }

    fn set_vring_err(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.on_set_vring_err(index, fd)
    }

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(offered_protocol_features())
    }

    fn set_protocol_features(&mut self, f: u64) -> VuResult<()> {
        self.on_set_protocol_features(f)
    }

    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(u64::from(self.device.num_queues()))
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        self.on_set_vring_enable(index, enable)
    }

    fn get_config(
        &mut self,
        offset: u32,
        size: u32,
        flags: VhostUserConfigFlags,
    ) -> VuResult<Vec<u8>> {
        self.on_get_config(offset, size, flags)
    }

    fn set_config(&mut self, offset: u32, buf: &[u8], flags: VhostUserConfigFlags) -> VuResult<()> {
        self.on_set_config(offset, buf, flags)
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
        self.on_get_inflight_fd(msg)
    }

    fn set_inflight_fd(&mut self, msg: &VhostUserInflight, file: File) -> VuResult<()> {
        self.on_set_inflight_fd(msg, file)
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Ok(MAX_MEM_SLOTS as u64)
    }

    fn add_mem_region(
        &mut self,
        region: &VhostUserSingleMemoryRegion,
        fd: File,
        postcopy: Option<bool>,
    ) -> VuResult<Option<u64>> {
        self.on_add_mem_region(region, fd, postcopy)
    }

    fn remove_mem_region(&mut self, region: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        self.on_remove_mem_region(region)
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
        self.on_set_log_base(log, file)
    }
}
