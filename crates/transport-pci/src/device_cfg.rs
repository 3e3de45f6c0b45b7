//! The device-specific configuration as it changes while the function
//! runs: online resize (a configuration change notification through the
//! config MSI-X vector, or ISR bit 1 with INTx), the configuration
//! generation, and the driver's writes of `writeback` (CONFIG_WCE) through
//! the modern device-config region or the legacy registers after the
//! common header.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vblk_device::{BlkDevice, NotifierHandle};
use vblk_interrupt::{Interrupt, InterruptKind};

use crate::function::PciFunction;
use crate::irq::Irq;

/// Notifies the driver of device-side configuration changes while it is
/// running (between DRIVER_OK and the next reset).
pub(crate) struct ConfigChange {
    driver_ok: Arc<AtomicBool>,
    _registered: NotifierHandle,
}

impl ConfigChange {
    pub(crate) fn new(dev: &BlkDevice, irq: Arc<Irq>) -> Self {
        let driver_ok = Arc::new(AtomicBool::new(false));
        let on = driver_ok.clone();
        let registered = dev.live().on_change(Arc::new(move || {
            if on.load(Ordering::SeqCst) {
                // "The device MUST set the Device Configuration Interrupt
                // bit in ISR status before sending a device configuration
                // change notification to the driver" (virtio 1.2,
                // 4.1.5.3): `Irq` sets ISR bit 1, then fires the config
                // vector (MSI-X) or asserts INTx.
                if let Err(e) = irq.trigger(InterruptKind::Config) {
                    log::warn!("virtio-blk PCI: configuration change interrupt: {e}");
                }
            }
        }));
        ConfigChange {
            driver_ok,
            _registered: registered,
        }
    }

    pub(crate) fn set_driver_ok(&self, on: bool) {
        self.driver_ok.store(on, Ordering::SeqCst);
    }
}

impl PciFunction {
    /// `config_generation`: the function's own changes (DEVICE_NEEDS_RESET)
    /// plus the device's (resize). "The device MUST present a changed
    /// config_generation after the driver has read a device-specific
    /// configuration value which has changed since any part of the
    /// device-specific configuration was last read." (virtio 1.2, 4.1.4.3.1)
    pub(crate) fn generation(&self) -> u8 {
        self.config_generation
            .wrapping_add(self.dev.live().generation() as u8)
    }

    /// A driver write at `offset` of the device-specific configuration
    /// (modern BAR4 device region, or legacy BAR0 after the header).
    pub(crate) fn device_config_write(&mut self, offset: u64, data: &[u8]) {
        if let Err(e) = self.dev.write_config(offset, data, self.driver_features) {
            self.bad_write(&format!("device config: {e}"));
        }
    }

    /// DRIVER_OK: the driver's features are final (the cache mode follows
    /// them), and configuration changes are notified from now on.
    pub(crate) fn device_config_driver_ok(&self) {
        self.dev.features_negotiated(self.driver_features);
        self.config_change.set_driver_ok(true);
    }
}
