//! The back-end side of one vhost-user connection: every front-end message,
//! validated, turned into ring starts and stops on the device core's
//! [`Runners`].
//!
//! Message framing, header checks and the REPLY_ACK answers are the rust-vmm
//! `vhost` crate's (`BackendReqHandler`); everything the messages *mean* is
//! here. Every field is hostile: queue indices, sizes, ring addresses,
//! memory regions and file descriptors are checked before use, and a bad
//! message is refused (REPLY_ACK answers non-zero) without a panic.

use std::fs::File;
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::{Arc, Mutex, RwLock};

use vblk_device::runner::{RingSetup, RunnerOptions, Runners};
use vblk_device::{features, stats, BlkDevice, QueueError};
use vblk_interrupt::{Interrupt, InterruptKind};
use vblk_queue::{Queue, QueueT};
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    Error as VuError, GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut,
};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap,
};
use vmm_sys_util::eventfd::EventFd;

use crate::inflight::InflightRegion;
use crate::memory::{map_region, MemTable, RegionDesc, MAX_MEM_SLOTS};

/// Largest GET_CONFIG / SET_CONFIG access (QEMU's `VHOST_USER_MAX_CONFIG_SIZE`).
const MAX_CONFIG_SIZE: u32 = 256;

/// The protocol features vblk offers.
pub fn offered_protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::CONFIG
        | VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::INFLIGHT_SHMFD
        | VhostUserProtocolFeatures::RESET_DEVICE
}

/// The queue's call eventfd, replaceable at any time (SET_VRING_CALL)
/// without restarting the ring.
struct CallSlot {
    index: u16,
    fd: RwLock<Option<EventFd>>,
    stats: Arc<stats::Stats>,
}

impl Interrupt for CallSlot {
    fn trigger(&self, kind: InterruptKind) -> std::io::Result<()> {
        match kind {
            InterruptKind::Queue(n) if n == self.index => {
                let fd = self.fd.read().unwrap_or_else(|e| e.into_inner());
                let Some(fd) = fd.as_ref() else {
                    // "This signals that polling will be used instead of
                    // waiting for the call" (bit 8, SET_VRING_CALL).
                    return Ok(());
                };
                stats::inc(&self.stats.queue(usize::from(n)).eventfd_signals);
                fd.write(1)
            }
            InterruptKind::Queue(_) => Ok(()),
            // Config-change interrupts need the back-end request channel
            // (not offered): vblk's config space never changes at run time.
            InterruptKind::Config => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RingAddr {
    desc: u64,
    used: u64,
    avail: u64,
}

/// What the front end configured for one ring.
struct Vring {
    /// SET_VRING_NUM (0: not set).
    size: u16,
    /// SET_VRING_ADDR: front-end user addresses.
    addr: Option<RingAddr>,
    /// SET_VRING_BASE, or where the ring stopped.
    base: u16,
    /// SET_VRING_KICK since the last stop: `Some(None)` = polling.
    kick: Option<Option<Arc<EventFd>>>,
    call: Arc<CallSlot>,
    err: Arc<Mutex<Option<EventFd>>>,
    /// SET_VRING_ENABLE.
    enabled: bool,
    /// Handed to the runner.
    running: bool,
}

impl Vring {
    fn new(index: u16, stats: Arc<stats::Stats>) -> Vring {
        Vring {
            size: 0,
            addr: None,
            base: 0,
            kick: None,
            call: Arc::new(CallSlot {
                index,
                fd: RwLock::new(None),
                stats,
            }),
            err: Arc::new(Mutex::new(None)),
            enabled: false,
            running: false,
        }
    }

    /// Back to the initial state (reset): stopped, nothing configured.
    fn reset(&mut self) {
        self.size = 0;
        self.addr = None;
        self.base = 0;
        self.kick = None;
        *self.call.fd.write().unwrap_or_else(|e| e.into_inner()) = None;
        *self.err.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.enabled = false;
        self.running = false;
    }
}

/// Take ownership of an fd the front end sent as an eventfd, refusing
/// anything else (a file or socket would make the runner spin or block).
fn into_eventfd(file: File) -> Result<EventFd, String> {
    match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
        Ok(l) if l.as_os_str() == "anon_inode:[eventfd]" => {}
        Ok(l) => return Err(format!("not an eventfd ({})", l.display())),
        // No /proc: cannot check, accept.
        Err(e) => log::debug!("cannot check an eventfd: {e}"),
    }
    // SAFETY: `into_raw_fd` hands over sole ownership of an open fd.
    Ok(unsafe { EventFd::from_raw_fd(file.into_raw_fd()) })
}

/// The state of one front-end connection.
pub struct Conn {
    // Declared first: dropped first, so every queue is quiesced and its
    // thread joined before the memory below is unmapped.
    runners: Runners,
    device: Arc<BlkDevice>,
    mem: GuestMemoryAtomic<GuestMemoryMmap>,
    table: MemTable,
    vrings: Vec<Vring>,
    acked_features: u64,
    acked_protocol: u64,
    inflight: Option<InflightRegion>,
    /// The last handler error was answered (REPLY_ACK or an error payload)
    /// or needs no answer: the connection survives it.
    rejected: bool,
}

type Res<T> = Result<T, String>;

impl Conn {
    pub fn new(
        device: Arc<BlkDevice>,
        threads: usize,
        opts: RunnerOptions,
    ) -> std::io::Result<Conn> {
        let runners = Runners::new(&device, threads, opts)?;
        let stats = device.stats().clone();
        let vrings = (0..device.num_queues())
            .map(|i| Vring::new(i, stats.clone()))
            .collect();
        Ok(Conn {
            runners,
            device,
            mem: GuestMemoryAtomic::new(GuestMemoryMmap::new()),
            table: MemTable::default(),
            vrings,
            acked_features: 0,
            acked_protocol: 0,
            inflight: None,
            rejected: false,
        })
    }

    /// Was the last error one the connection survives? Clears the flag.
    pub fn take_rejected(&mut self) -> bool {
        std::mem::take(&mut self.rejected)
    }

    /// Refuse a message: logged, answered non-zero if REPLY_ACK was asked
    /// for, and the connection stays up.
    fn refuse<T>(&mut self, what: &str, why: impl std::fmt::Display) -> VuResult<T> {
        log::warn!("vhost-user: {what} refused: {why}");
        self.rejected = true;
        Err(VuError::ReqHandlerError(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}: {why}"),
        )))
    }

    /// Fail a message that needs a reply the library will not send on
    /// error: the connection is dropped (the front end would wait forever).
    fn fatal<T>(&mut self, what: &str, why: impl std::fmt::Display) -> VuResult<T> {
        log::warn!("vhost-user: {what} failed: {why}; dropping the front end");
        Err(VuError::ReqHandlerError(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}: {why}"),
        )))
    }

    fn queue_index(&self, index: u32) -> Option<u16> {
        u16::try_from(index)
            .ok()
            .filter(|i| usize::from(*i) < self.vrings.len())
    }

    fn max_queue_size(&self) -> u16 {
        self.device.config().queue_size
    }

    fn protocol_features_acked(&self) -> bool {
        self.acked_features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0
    }

    fn any_running(&self) -> bool {
        self.vrings.iter().any(|v| v.running)
    }

    /// Quiesce and stop ring `i`; returns where the avail ring stopped.
    fn stop_ring(&mut self, i: u16) -> u16 {
        let Some(v) = self.vrings.get_mut(usize::from(i)) else {
            return 0;
        };
        if v.running {
            // "stop ring upon receiving VHOST_USER_GET_VRING_BASE": every
            // in-flight request completes and is on the used ring first.
            if let Some(st) = self.runners.stop(i) {
                v.base = st.queue.next_avail();
                if st.broken {
                    log::info!("queue {i}: stopped after it broke");
                }
            }
            v.running = false;
        }
        v.base
    }

    fn stop_all(&mut self) {
        for i in 0..self.vrings.len() {
            self.stop_ring(i as u16);
        }
    }

    /// Translate the ring addresses of ring `i` (size `size`) to guest
    /// addresses: (descriptor table, avail ring, used ring).
    fn translate(
        &self,
        a: &RingAddr,
        size: u16,
    ) -> Res<(GuestAddress, GuestAddress, GuestAddress)> {
        let n = u64::from(size);
        // virtio 1.2, 2.7: descriptor table 16 * size, available ring
        // 6 + 2 * size, used ring 6 + 8 * size bytes (with EVENT_IDX fields).
        let desc = self
            .table
            .uaddr_to_gpa(a.desc, 16 * n)
            .ok_or_else(|| format!("descriptor table {:#x} is not in guest memory", a.desc))?;
        let avail = self
            .table
            .uaddr_to_gpa(a.avail, 6 + 2 * n)
            .ok_or_else(|| format!("available ring {:#x} is not in guest memory", a.avail))?;
        let used = self
            .table
            .uaddr_to_gpa(a.used, 6 + 8 * n)
            .ok_or_else(|| format!("used ring {:#x} is not in guest memory", a.used))?;
        Ok((desc, avail, used))
    }

    /// Start ring `i` if everything it needs is there: size, addresses,
    /// memory, a kick (set since the last stop) and, once
    /// PROTOCOL_FEATURES is negotiated, SET_VRING_ENABLE 1.
    fn try_start(&mut self, i: u16) -> Res<()> {
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
        };
        self.runners
            .start(i, setup)
            .map_err(|e| format!("queue {i}: cannot start: {e}"))?;
        self.vrings[usize::from(i)].running = true;
        // Serve what is already available (and the resubmitted heads)
        // without waiting for the next kick: "in case of I/O hang after
        // reconnecting" (libvhost-user).
        self.runners.kick(i);
        log::debug!("queue {i}: started, size {size}, avail at {next_avail}, used at {used_idx}");
        Ok(())
    }

    /// Install `table` as guest memory. Every runner is paused first: no
    /// request points into the old mappings when they go.
    fn install(&mut self, table: MemTable) {
        let new = table.guest_memory();
        let guard = self.runners.pause_all();
        self.mem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(new);
        let old = std::mem::replace(&mut self.table, table);
        drop(old);
        drop(guard);
        log::debug!(
            "guest memory: {} region(s), {} bytes",
            self.table.len(),
            self.table.total()
        );
    }

    /// Stop every ring, forget the memory table and the inflight region:
    /// the connection is over. Also what Drop does (in field order).
    pub fn shutdown(&mut self) {
        self.stop_all();
        let guard = self.runners.pause_all();
        self.mem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(GuestMemoryMmap::new());
        self.table = MemTable::default();
        self.inflight = None;
        drop(guard);
        for v in &mut self.vrings {
            v.reset();
        }
    }
}

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
        self.stop_all();
        for v in &mut self.vrings {
            v.reset();
        }
        Ok(())
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(self.device.features() | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits())
    }

    fn set_features(&mut self, f: u64) -> VuResult<()> {
        let offered = self.device.features() | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        if f & !offered != 0 {
            return self.refuse(
                "SET_FEATURES",
                format!("bits {:#x} were not offered", f & !offered),
            );
        }
        if self.any_running() && f != self.acked_features {
            log::info!("features changed with rings running; applies at the next ring start");
        }
        self.acked_features = f;
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
        _log: u64,
    ) -> VuResult<()> {
        let Some(i) = self.queue_index(index) else {
            return self.refuse("SET_VRING_ADDR", format!("no queue {index}"));
        };
        if flags.contains(VhostUserVringAddrFlags::VHOST_VRING_F_LOG) {
            // VHOST_F_LOG_ALL is not offered: nothing to log to.
            return self.refuse("SET_VRING_ADDR", "logging was not negotiated");
        }
        let a = RingAddr {
            desc: descriptor,
            used,
            avail: available,
        };
        let v = &self.vrings[usize::from(i)];
        if v.running {
            if v.addr == Some(a) {
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
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let Some(i) = self.queue_index(index) else {
            return self.refuse("SET_VRING_BASE", format!("no queue {index}"));
        };
        // Split rings only (VIRTIO_F_RING_PACKED is not offered): the base
        // is a 16-bit avail index.
        let Ok(b) = u16::try_from(base) else {
            return self.refuse("SET_VRING_BASE", format!("base {base} exceeds 16 bits"));
        };
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
        log::debug!("queue {i}: stopped at avail {base}");
        Ok(VhostUserVringState::new(index, u32::from(base)))
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
        // space fields unless the live migration bit is set": nothing in
        // virtio_blk_config is writable (CONFIG_WCE is not offered).
        if flags.contains(VhostUserConfigFlags::LIVE_MIGRATION) {
            return Ok(());
        }
        stats::inc(&self.device.stats().device.bad_register_writes);
        self.refuse(
            "SET_CONFIG",
            format!(
                "{} bytes at {offset}: the config space is read-only",
                buf.len()
            ),
        )
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

    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> VuResult<()> {
        self.fatal("SET_LOG_BASE", "not supported")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_slot_signals_the_current_eventfd_and_can_be_swapped() {
        let stats = Arc::new(stats::Stats::new(2));
        let slot = CallSlot {
            index: 1,
            fd: RwLock::new(None),
            stats: stats.clone(),
        };
        // No call fd: polling, nothing to do.
        slot.trigger(InterruptKind::Queue(1)).unwrap();
        let a = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let b = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        *slot.fd.write().unwrap() = Some(a.try_clone().unwrap());
        slot.trigger(InterruptKind::Queue(1)).unwrap();
        // Another queue's or a config interrupt does not touch this fd.
        slot.trigger(InterruptKind::Queue(0)).unwrap();
        slot.trigger(InterruptKind::Config).unwrap();
        assert_eq!(a.read().unwrap(), 1);
        *slot.fd.write().unwrap() = Some(b.try_clone().unwrap());
        slot.trigger(InterruptKind::Queue(1)).unwrap();
        assert_eq!(b.read().unwrap(), 1);
        assert!(a.read().is_err(), "the old call fd was signalled");
        assert_eq!(
            stats
                .queue(1)
                .eventfd_signals
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    #[test]
    fn only_eventfds_are_taken_as_kick_or_call() {
        let f = tempfile::tempfile().unwrap();
        assert!(into_eventfd(f).is_err());
        let (s, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(into_eventfd(File::from(std::os::fd::OwnedFd::from(s))).is_err());
        let e = EventFd::new(0).unwrap();
        // SAFETY: dup of our own eventfd; the File owns the new descriptor.
        let dup = unsafe { File::from_raw_fd(libc::dup(e.as_raw_fd())) };
        let e2 = into_eventfd(dup).unwrap();
        e2.write(3).unwrap();
        assert_eq!(e.read().unwrap(), 3);
    }
}
