//! Configuration space messages: GET_CONFIG and SET_CONFIG.

use vblk_device::stats;
use vhost::vhost_user::message::VhostUserConfigFlags;
use vhost::vhost_user::Result as VuResult;

use crate::backend::Conn;

/// Largest GET_CONFIG / SET_CONFIG access (QEMU's `VHOST_USER_MAX_CONFIG_SIZE`).
const MAX_CONFIG_SIZE: u32 = 256;

impl Conn {
    pub(super) fn on_get_config(
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

    pub(super) fn on_set_config(
        &mut self,
        offset: u32,
        buf: &[u8],
        flags: VhostUserConfigFlags,
    ) -> VuResult<()> {
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
}
