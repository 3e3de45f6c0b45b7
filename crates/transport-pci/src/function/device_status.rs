//! The device status register, shared by the legacy and modern
//! interfaces: a driver's status write (the transition table itself is
//! `crate::status`), device and function reset, and DEVICE_NEEDS_RESET.

use std::sync::atomic::Ordering;

use vblk_device::{features, stats};
use vblk_interrupt::{Interrupt, InterruptKind};
use vblk_queue::QueueT;
use vm_memory::GuestAddressSpace;

use super::PciFunction;
use crate::config_space::ConfigSpace;
use crate::regs::status::*;
use crate::status::{features_ok, transition};

impl PciFunction {
    /// A runner found its ring broken: show DEVICE_NEEDS_RESET from now on
    /// (its configuration interrupt was sent by the runner).
    pub(crate) fn sync_broken(&mut self) {
        if self.broken.swap(false, Ordering::AcqRel) {
            self.mark_needs_reset("a queue's ring is broken", false);
        }
    }

    /// Device reset: status 0, legacy QUEUE_PFN 0. "Upon reset, the device
    /// MUST initialize device status to 0" and forget features, queues and
    /// vectors (virtio 1.2, 2.1.2, 4.1.4.3.1). Config space and the
    /// client's eventfds stay: they are PCI's and vfio's.
    pub fn reset(&mut self) {
        self.config_change.set_driver_ok(false);
        self.dev.reset_cache_mode();
        self.stop_queues();
        self.broken.store(false, Ordering::Release);
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        for q in &mut self.queues {
            q.queue.reset();
            q.pfn = 0;
        }
        self.irq.reset();
        stats::inc(&self.dev.stats().device.resets);
    }

    /// Function reset (the vfio-user client's DEVICE_RESET, like a PCI
    /// FLR): the device reset plus config space and every interrupt
    /// eventfd. Guest memory stays mapped: it is the client's to unmap.
    pub fn function_reset(&mut self) {
        self.reset();
        self.cfg = ConfigSpace::new(&self.msix_layout);
        self.irq.reset_all();
    }

    /// "The device SHOULD set DEVICE_NEEDS_RESET when it enters an error
    /// state that a reset is needed. If DRIVER_OK is set, after it sets
    /// DEVICE_NEEDS_RESET, the device MUST send a device configuration
    /// change notification to the driver." (2.1.2). Queues stay stopped
    /// until the reset.
    pub(crate) fn needs_reset(&mut self, why: &str) {
        self.mark_needs_reset(why, true);
    }

    fn mark_needs_reset(&mut self, why: &str, interrupt: bool) {
        if self.status & DEVICE_NEEDS_RESET != 0 {
            return;
        }
        log::warn!("virtio-blk PCI: {why}; the device needs a reset");
        self.status |= DEVICE_NEEDS_RESET;
        self.config_generation = self.config_generation.wrapping_add(1);
        stats::inc(&self.dev.stats().device.needs_reset);
        if interrupt {
            let _ = self.irq.trigger(InterruptKind::Config);
        }
    }

    pub(crate) fn write_status(&mut self, v: u8, legacy: bool) {
        if v == 0 {
            // "Writing 0 into this field resets the device." (4.1.4.3.1)
            self.reset();
            return;
        }
        let new = match transition(self.status, v, legacy) {
            Ok(s) => s,
            Err(e) => {
                return self.bad_write(&format!(
                    "device status {:#x} -> {v:#x}: {e:?}",
                    self.status
                ))
            }
        };
        let added = new & !self.status;
        if added & FEATURES_OK != 0
            && !features_ok(self.offered_features(legacy), self.driver_features, legacy)
        {
            // "The device MUST NOT ... accept FEATURES_OK" for a subset it
            // cannot support; the driver re-reads status and sees it unset.
            self.bad_write("FEATURES_OK for features that were not offered (or without VERSION_1)");
            self.status = new & !FEATURES_OK;
            return;
        }
        if added & DRIVER_OK != 0 {
            let event_idx =
                self.driver_features & features::bit(features::VIRTIO_RING_F_EVENT_IDX) != 0;
            for q in &mut self.queues {
                q.queue.set_event_idx(event_idx);
            }
            self.status = new;
            let bad = {
                let mem = self.mem.memory();
                // Packed rings have 4-byte event areas where the split
                // layout's checks would ask for whole rings: the worker
                // checks a packed ring as it attaches and as it reads it.
                let packed = self.packed();
                self.queues
                    .iter()
                    .position(|q| q.queue.ready() && !packed && !q.queue.is_valid(&*mem))
            };
            if let Some(i) = bad {
                self.needs_reset(&format!(
                    "queue {i} has a ring outside guest memory at DRIVER_OK"
                ));
                return;
            }
            self.device_config_driver_ok();
            self.start_queues();
            return;
        }
        self.status = new;
    }
}
