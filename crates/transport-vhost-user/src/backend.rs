//! The back-end side of one vhost-user connection: every front-end message,
//! validated, turned into ring starts and stops on the device core's
//! [`Runners`].
//!
//! Message framing, header checks and the REPLY_ACK answers are the rust-vmm
//! `vhost` crate's (`BackendReqHandler`); everything the messages *mean* is
//! here. Every field is hostile: queue indices, sizes, ring addresses,
//! memory regions and file descriptors are checked before use, and a bad
//! message is refused (REPLY_ACK answers non-zero) without a panic.

use std::sync::Arc;

use vblk_device::runner::{RunnerOptions, Runners};
use vblk_device::{features, BlkDevice};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Error as VuError, Result as VuResult};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::inflight::InflightRegion;
use crate::memory::MemTable;

/// The protocol features vblk offers.
pub fn offered_protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::CONFIG
        | VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::INFLIGHT_SHMFD
        | VhostUserProtocolFeatures::RESET_DEVICE
        | VhostUserProtocolFeatures::LOG_SHMFD
        | VhostUserProtocolFeatures::BACKEND_REQ
}

pub mod channel;
mod messages;
mod migration;
mod packed;
mod start_stop;
mod vring;

use vring::Vring;

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
    /// Live migration: the dirty log (shared with the queue threads).
    dirty: Arc<crate::dirty_log::VuDirtyLog>,
    /// The last handler error was answered (REPLY_ACK or an error payload)
    /// or needs no answer: the connection survives it.
    rejected: bool,
    /// The back-end request channel (SET_BACKEND_REQ_FD), for
    /// configuration change notifications (online resize).
    channel: channel::SharedChannel,
    _config_notifier: vblk_device::NotifierHandle,
    /// GET_INFLIGHT_FD was answered on this connection (a SET_INFLIGHT_FD
    /// without it carries a previous daemon's buffer: a reconnect).
    inflight_from_us: bool,
    /// A ring started on this connection, or the guest's driver wrote the
    /// `writeback` byte: the cache mode in force is the guest's.
    cache_mode_known: bool,
}

type Res<T> = Result<T, String>;

impl Conn {
    pub fn new(
        device: Arc<BlkDevice>,
        threads: usize,
        mut opts: RunnerOptions,
    ) -> std::io::Result<Conn> {
        let dirty = Arc::new(crate::dirty_log::VuDirtyLog::new(device.num_queues()));
        opts.dirty_log = Some(dirty.clone());
        let runners = Runners::new(&device, threads, opts)?;
        let stats = device.stats().clone();
        let vrings = (0..device.num_queues())
            .map(|i| Vring::new(i, stats.clone()))
            .collect();
        // A new front end starts from the command line's cache mode.
        device.reset_cache_mode();
        let channel = channel::SharedChannel::default();
        let ch = channel.clone();
        let st = device.stats().clone();
        let config_notifier = device
            .live()
            .on_change(Arc::new(move || channel::notify(&ch, &st)));
        Ok(Conn {
            channel,
            _config_notifier: config_notifier,
            inflight_from_us: false,
            cache_mode_known: false,
            runners,
            device,
            mem: GuestMemoryAtomic::new(GuestMemoryMmap::new()),
            table: MemTable::default(),
            vrings,
            acked_features: 0,
            acked_protocol: 0,
            inflight: None,
            dirty,
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

    /// Device features plus PROTOCOL_FEATURES, LOG_ALL (live migration)
    /// and (unless turned off) packed rings.
    fn offered_features(&self) -> u64 {
        let mut f = self.device.features()
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
            | VhostUserVirtioFeatures::LOG_ALL.bits();
        if self.device.config().packed_rings {
            f |= features::bit(features::VIRTIO_F_RING_PACKED);
        }
        f
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
        self.dirty.reset();
        drop(guard);
        for v in &mut self.vrings {
            v.reset();
        }
    }
}
