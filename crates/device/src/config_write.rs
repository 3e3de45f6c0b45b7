//! Driver writes to the device configuration: the write-cache mode
//! (`VIRTIO_BLK_F_CONFIG_WCE`), the only writable field of
//! `virtio_blk_config`.

use crate::features::{bit, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_FLUSH};
use crate::BlkDevice;

/// Offset of `writeback` in `struct virtio_blk_config` (virtio 1.2, 5.2.4).
pub const WRITEBACK_OFFSET: usize = 32;

/// Why a driver's config write was refused (the transport counts it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigWriteError {
    #[error("writeback written without VIRTIO_BLK_F_CONFIG_WCE negotiated")]
    NotNegotiated,
    #[error("{len} bytes at {offset}: only writeback (1 byte at 32) is writable")]
    ReadOnly { offset: u64, len: usize },
}

impl BlkDevice {
    /// A driver writes `data` at `offset` of the device configuration,
    /// having negotiated `driver_features`. "writeback: ... the driver can
    /// switch to write-through mode by writing 0 ... and back to write-back
    /// by writing 1" when VIRTIO_BLK_F_CONFIG_WCE is negotiated (virtio
    /// 1.2, 5.2.4 / 5.2.5.1); every other field is read-only, so any other
    /// write is refused and changes nothing.
    pub fn write_config(
        &self,
        offset: u64,
        data: &[u8],
        driver_features: u64,
    ) -> Result<(), ConfigWriteError> {
        if offset != WRITEBACK_OFFSET as u64 || data.len() != 1 {
            return Err(ConfigWriteError::ReadOnly {
                offset,
                len: data.len(),
            });
        }
        if driver_features & bit(VIRTIO_BLK_F_CONFIG_WCE) == 0 {
            return Err(ConfigWriteError::NotNegotiated);
        }
        // Any non-zero value selects write-back (as QEMU's `wce != 0`).
        let writeback = data[0] != 0;
        let live = self.live();
        let before = live.writeback();
        live.set_writeback(writeback);
        if live.writeback() != before {
            crate::stats::inc(&self.stats().device.cache_mode_changes);
            log::info!(
                "the driver switched the cache to {}",
                if live.writeback() {
                    "write-back"
                } else {
                    "write-through"
                }
            );
        }
        Ok(())
    }

    /// The driver's features are final (DRIVER_OK on PCI, SET_FEATURES
    /// over vhost-user). "If VIRTIO_BLK_F_CONFIG_WCE is negotiated but
    /// VIRTIO_BLK_F_FLUSH is not, the device MUST initialize writeback to
    /// 0" (virtio 1.2, 5.2.5.1); a driver that cannot flush gets a
    /// write-through device in any case (it could never make a write-back
    /// cache durable). The chosen mode itself is kept: a firmware driver
    /// without FLUSH (SeaBIOS) does not turn the next driver's cache off.
    pub fn features_negotiated(&self, driver_features: u64) {
        self.live()
            .set_flush_ok(driver_features & bit(VIRTIO_BLK_F_FLUSH) != 0);
    }

    /// Device reset: back to the `--write-cache` mode.
    pub fn reset_cache_mode(&self) {
        self.live().reset_cache_mode();
    }

    /// Writes complete only once durable (write-through mode).
    pub fn write_through(&self) -> bool {
        !self.live().writeback()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlkConfig;
    use std::sync::Arc;
    use vblk_backend::MemBackend;

    fn dev(write_cache: bool) -> BlkDevice {
        let mut c = BlkConfig::new(1 << 20);
        c.write_cache = write_cache;
        BlkDevice::new(c, Arc::new(MemBackend::new(1 << 20)))
    }

    #[test]
    fn only_the_writeback_byte_is_writable_and_only_with_config_wce() {
        let d = dev(true);
        let all = d.features();
        let no_wce = all & !bit(VIRTIO_BLK_F_CONFIG_WCE);
        assert_eq!(d.config_space()[WRITEBACK_OFFSET], 1);
        assert_eq!(
            d.write_config(32, &[0], no_wce),
            Err(ConfigWriteError::NotNegotiated)
        );
        assert!(d.live().writeback());
        for (off, len) in [(0u64, 1usize), (31, 1), (33, 1), (32, 2), (32, 4), (32, 0)] {
            let before = d.config_space();
            assert!(
                d.write_config(off, &vec![0; len], all).is_err(),
                "{off}+{len}"
            );
            assert_eq!(d.config_space(), before);
        }
        d.write_config(32, &[0], all).unwrap();
        assert!(d.write_through());
        assert_eq!(d.config_space()[WRITEBACK_OFFSET], 0);
        d.write_config(32, &[7], all).unwrap();
        assert!(!d.write_through());
        assert_eq!(d.config_space()[WRITEBACK_OFFSET], 1);
    }

    #[test]
    fn a_driver_without_flush_gets_write_through_and_a_reset_restores_the_default() {
        let d = dev(true);
        let all = d.features();
        // Firmware without FLUSH: write-through, and the config byte says 0.
        d.features_negotiated(all & !bit(VIRTIO_BLK_F_FLUSH) & !bit(VIRTIO_BLK_F_CONFIG_WCE));
        assert!(d.write_through());
        assert_eq!(d.config_space()[WRITEBACK_OFFSET], 0);
        // The next driver (after a reset) starts from --write-cache.
        d.reset_cache_mode();
        assert!(!d.write_through());
        d.features_negotiated(all);
        assert!(!d.write_through());
        d.write_config(32, &[0], all).unwrap();
        d.features_negotiated(all);
        assert!(d.write_through(), "a renegotiation keeps the chosen mode");
        d.reset_cache_mode();
        assert!(!d.write_through());
        let off = dev(false);
        assert_eq!(off.config_space()[WRITEBACK_OFFSET], 0);
        off.features_negotiated(all & !bit(VIRTIO_BLK_F_CONFIG_WCE));
        assert!(off.write_through());
    }
}
