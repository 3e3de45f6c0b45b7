//! The queue threads: started at DRIVER_OK with a copy of each ready
//! queue, stopped at reset (each finishes its in-flight requests first),
//! and woken by a kick.

use std::sync::atomic::Ordering;

use vblk_device::runner::RingSetup;
use vblk_device::stats;
use vblk_interrupt::{Interrupt, InterruptKind};
use vblk_queue::{Queue, QueueT};

use super::{NotifyPath, PciFunction};
use crate::regs::status::*;

impl PciFunction {
    pub(super) fn start_queues(&mut self) {
        let packed = self.packed();
        for (i, q) in self.queues.iter().enumerate() {
            if !q.queue.ready() {
                continue;
            }
            let queue = match Queue::try_from(q.queue.state()) {
                Ok(queue) => queue,
                Err(e) => {
                    log::error!("virtio-blk PCI: queue {i}: {e}");
                    continue;
                }
            };
            let mut queue = queue;
            if packed {
                // A fresh packed ring: slot 0, both wrap counters 1 (2.8.1).
                vblk_device::set_packed_base(&mut queue, 0x8000_8000);
            }
            let broken = self.broken.clone();
            let irq = self.irq.clone();
            let ring = RingSetup {
                queue,
                mem: self.mem.clone(),
                kick: None,
                irq: self.irq.clone(),
                on_broken: Box::new(move |e| {
                    log::warn!("virtio-blk PCI: {e}; the device needs a reset");
                    broken.store(true, Ordering::Release);
                    // "If DRIVER_OK is set, after it sets DEVICE_NEEDS_RESET,
                    // the device MUST send a device configuration change
                    // notification to the driver." (2.1.2)
                    let _ = irq.trigger(InterruptKind::Config);
                }),
                inflight: None,
                resubmit: Vec::new(),
                packed,
            };
            if let Err(e) = self.runners.start(i as u16, ring) {
                log::error!("virtio-blk PCI: cannot start queue {i}: {e}");
            }
        }
        self.running = true;
    }

    /// Stop every queue; each finishes its in-flight requests first.
    pub(super) fn stop_queues(&mut self) {
        if !self.running {
            return;
        }
        for i in 0..self.queues.len() {
            self.runners.stop(i as u16);
        }
        self.running = false;
    }

    /// A kick: wake the queue's runner thread.
    pub fn notify(&mut self, q: u16, path: NotifyPath) {
        let Some(st) = self.dev.stats().queues.get(usize::from(q)) else {
            return;
        };
        match path {
            NotifyPath::Legacy => stats::inc(&st.notify_legacy),
            NotifyPath::Modern => stats::inc(&st.notify_modern),
        }
        // "The device MUST NOT consume buffers or send any used buffer
        // notifications to the driver before DRIVER_OK." (3.1.2)
        if !self.running || self.status & DEVICE_NEEDS_RESET != 0 {
            return;
        }
        self.runners.kick(q);
    }
}
