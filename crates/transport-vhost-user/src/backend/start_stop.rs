//! Starting and stopping rings: a ring starts once the front end has set
//! up everything it needs (size, addresses, memory, a kick, the enable),
//! split rings after inflight recovery; it stops (quiesced) on
//! GET_VRING_BASE, a new kick, a disable or the end of the connection.

use std::sync::Arc;

use vblk_device::runner::RingSetup;
use vblk_device::{features, stats, QueueError};
use vblk_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestAddressSpace};

use super::channel;
use super::vring::RingAddr;
use super::{Conn, Res};

impl Conn {
    /// Quiesce and stop ring `i`; returns where the ring stopped (its
    /// GET_VRING_BASE value).
    pub(super) fn stop_ring(&mut self, i: u16) -> u32 {
        let packed = self.packed();
        let Some(v) = self.vrings.get_mut(usize::from(i)) else {
            return 0;
        };
        if v.running {
            // "stop ring upon receiving VHOST_USER_GET_VRING_BASE": every
            // in-flight request completes and is on the used ring first.
            if let Some(st) = self.runners.stop(i) {
                v.base = if packed {
                    vblk_device::packed_base(&st.queue)
                } else {
                    u32::from(st.queue.next_avail())
                };
                if st.broken {
                    log::info!("queue {i}: stopped after it broke");
                }
            }
            v.running = false;
        }
        v.base
    }

    pub(super) fn stop_all(&mut self) {
        for i in 0..self.vrings.len() {
            self.stop_ring(i as u16);
        }
    }

    /// Translate the ring addresses of ring `i` (size `size`) to guest
    /// addresses: (descriptor table, avail ring, used ring).
    pub(super) fn translate(
        &self,
        a: &RingAddr,
        size: u16,
    ) -> Res<(GuestAddress, GuestAddress, GuestAddress)> {
        let (desc_len, avail_len, used_len) = self.ring_area_sizes(size);
        let desc = self
            .table
            .uaddr_to_gpa(a.desc, desc_len)
            .ok_or_else(|| format!("descriptor table {:#x} is not in guest memory", a.desc))?;
        let avail = self
            .table
            .uaddr_to_gpa(a.avail, avail_len)
            .ok_or_else(|| format!("available ring {:#x} is not in guest memory", a.avail))?;
        let used = self
            .table
            .uaddr_to_gpa(a.used, used_len)
            .ok_or_else(|| format!("used ring {:#x} is not in guest memory", a.used))?;
        Ok((desc, avail, used))
    }

    /// Start ring `i` if everything it needs is there: size, addresses,
    /// memory, a kick (set since the last stop) and, once
    /// PROTOCOL_FEATURES is negotiated, SET_VRING_ENABLE 1.
    pub(super) fn try_start(&mut self, i: u16) -> Res<()> {
        let proto = self.protocol_features_acked();
        let Some(v) = self.vrings.get(usize::from(i)) else {
            return Err(format!("no queue {i}"));
        };
        if v.running {
            return Ok(());
        }
        let Some(kick) = v.kick.clone() else {
            return Ok(());
        };
        // "If VHOST_USER_F_PROTOCOL_FEATURES has been negotiated, the ring
        // is initialized in a disabled state and is enabled by
        // VHOST_USER_SET_VRING_ENABLE with parameter 1."
        if proto && !v.enabled {
            return Ok(());
        }
        if v.size == 0 {
            return Err(format!("queue {i}: kicked before SET_VRING_NUM"));
        }
        let Some(addr) = v.addr else {
            return Err(format!("queue {i}: kicked before SET_VRING_ADDR"));
        };
        if self.table.is_empty() {
            return Err(format!("queue {i}: kicked before SET_MEM_TABLE"));
        }
        let (size, base) = (v.size, v.base);
        let (desc, avail, used) = self.translate(&addr, size)?;
        let mem = self.mem.memory();
        let err = |e: virtio_queue::Error| format!("queue {i}: {e}");
        let mut q = Queue::new(self.max_queue_size()).map_err(err)?;
        q.try_set_size(size).map_err(err)?;
        q.try_set_desc_table_address(desc).map_err(err)?;
        q.try_set_avail_ring_address(avail).map_err(err)?;
        q.try_set_used_ring_address(used).map_err(err)?;
        q.set_event_idx(
            self.acked_features & features::bit(features::VIRTIO_RING_F_EVENT_IDX) != 0,
        );
        let packed = self.packed();
        if packed {
            // Both positions come from SET_VRING_BASE; the worker checks
            // them against the ring size when it attaches.
            vblk_device::set_packed_base(&mut q, self.packed_start_base(base));
            if self.inflight.is_some() {
                log::info!(
                    "queue {i}: packed ring: the inflight region is not used (requests in flight at a crash are not resubmitted)"
                );
            }
            return self.start_ring(i, q, kick, Vec::new(), None, true);
        }
        let Ok(base) = u16::try_from(base) else {
            return Err(format!("queue {i}: base {base:#x} exceeds 16 bits"));
        };
        // The used ring in guest memory says how far the device got (as in
        // libvhost-user, which reads `used->idx` when the ring is set up).
        let used_idx_addr = used
            .checked_add(2)
            .ok_or_else(|| format!("queue {i}: used ring address overflows"))?;
        let used_idx = u16::from_le(
            mem.read_obj::<u16>(used_idx_addr)
                .map_err(|e| format!("queue {i}: cannot read the used index: {e}"))?,
        );
        q.set_next_used(used_idx);
        let mut next_avail = base;
        let mut resubmit = Vec::new();
        let mut log: Option<Box<dyn vblk_device::InflightLog>> = None;
        if let Some(region) = &self.inflight {
            match region.queue(i, size) {
                Some(mut qi) => {
                    let rec = qi.recover(used_idx);
                    if let Some(n) = rec.next_avail {
                        if n != base {
                            log::info!(
                                "queue {i}: inflight region says the avail ring continues at {n} (used {used_idx} + {} in flight), not at base {base}",
                                rec.resubmit.len()
                            );
                        }
                        next_avail = n;
                    }
                    if !rec.resubmit.is_empty() {
                        log::info!(
                            "queue {i}: resubmitting {} inflight request(s): {:?}",
                            rec.resubmit.len(),
                            rec.resubmit
                        );
                    }
                    resubmit = rec.resubmit;
                    log = Some(Box::new(qi));
                }
                None => log::warn!(
                    "queue {i}: the inflight region ({} queues of {}) does not cover this ring of {size}; not tracked",
                    region.num_queues(),
                    region.queue_size()
                ),
            }
        }
        q.set_next_avail(next_avail);
        q.set_ready(true);
        if !q.is_valid(&*mem) {
            return Err(format!(
                "queue {i}: rings at {desc:?}/{avail:?}/{used:?} (size {size}) are not valid guest memory"
            ));
        }
        log::debug!("queue {i}: avail at {next_avail}, used at {used_idx}");
        self.start_ring(i, q, kick, resubmit, log, false)
    }

    /// Hand ring `i`, set up as `q`, to its runner.
    fn start_ring(
        &mut self,
        i: u16,
        mut q: Queue,
        kick: Option<Arc<vmm_sys_util::eventfd::EventFd>>,
        resubmit: Vec<u16>,
        log: Option<Box<dyn vblk_device::InflightLog>>,
        packed: bool,
    ) -> Res<()> {
        // The first ring of a connection that starts where another device
        // left it (a non-zero position: the destination of a live
        // migration, or a reconnect) serves a guest whose driver set up the
        // cache mode earlier, with another daemon: QEMU replays no
        // SET_CONFIG, so that choice is unknown here. Write-through is the
        // safe guess until the guest writes `writeback` again.
        if !self.cache_mode_known {
            self.cache_mode_known = true;
            // A fresh ring: positions 0 (split), or positions 0 with both
            // wrap counters 1 (packed, virtio 1.2, 2.8.1).
            let fresh = if packed { 0x8000 } else { 0 };
            if q.next_avail() != fresh || q.next_used() != fresh {
                channel::cache_mode_unknown(&self.device, "a front end resumed a running guest");
            }
        }
        q.set_ready(true);
        let size = q.size();
        let stats = self.device.stats().clone();
        let v = &self.vrings[usize::from(i)];
        let err_fd = v.err.clone();
        let on_broken: Box<dyn Fn(&QueueError) + Send> = Box::new(move |e: &QueueError| {
            log::warn!("queue {i}: broken ({e}); served again once the front end restarts it");
            stats::inc(&stats.device.needs_reset);
            if let Some(fd) = err_fd.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = fd.write(1);
            }
        });
        let setup = RingSetup {
            queue: q,
            mem: self.mem.clone(),
            kick,
            irq: v.call.clone(),
            on_broken,
            inflight: log,
            resubmit,
            packed,
        };
        self.runners
            .start(i, setup)
            .map_err(|e| format!("queue {i}: cannot start: {e}"))?;
        self.vrings[usize::from(i)].running = true;
        // Serve what is already available (and the resubmitted heads)
        // without waiting for the next kick: "in case of I/O hang after
        // reconnecting" (libvhost-user).
        self.runners.kick(i);
        log::debug!("queue {i}: started, size {size}, packed {packed}");
        Ok(())
    }
}
