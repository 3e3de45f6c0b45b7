//! Ownership and feature negotiation: RESET_OWNER, RESET_DEVICE,
//! SET_FEATURES and SET_PROTOCOL_FEATURES (SET_OWNER, GET_FEATURES and
//! GET_PROTOCOL_FEATURES are answered in the table, `messages.rs`).

use vblk_device::stats;
use vhost::vhost_user::message::VhostUserVirtioFeatures;
use vhost::vhost_user::Result as VuResult;

use crate::backend::{offered_protocol_features, Conn};

impl Conn {
    /// "It is recommended that back-ends either ignore this message, or use
    /// it to disable all rings."
    pub(super) fn on_reset_owner(&mut self) -> VuResult<()> {
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
    pub(super) fn on_reset_device(&mut self) -> VuResult<()> {
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

    pub(super) fn on_set_features(&mut self, f: u64) -> VuResult<()> {
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

    pub(super) fn on_set_protocol_features(&mut self, f: u64) -> VuResult<()> {
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
}
