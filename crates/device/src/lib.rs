//! The virtio-blk device core.
//!
//! It knows nothing of vhost-user or PCI. A transport owns the queues and the
//! guest memory; it hands a queue to [`QueueWorker::process`] when the driver
//! kicks, and receives interrupt requests through the
//! [`vblk_interrupt::Interrupt`] trait. The same core runs behind the
//! vhost-user-blk socket and inside the vfio-user PCI device.
//!
//! Path of one request inside the core, one file a step:
//! * `runner`: the per-queue event loop (kick eventfd, engine completion
//!   eventfd, control commands, polling);
//! * `worker`: pop → plan → submit, reap → complete, publish;
//! * `plan`: a chain becomes storage operations (request crate validates);
//! * `merge`: adjacent reads/writes of a round become one operation;
//! * `inflight`: the generation-tagged table of requests in flight;
//! * `used`: used elements, the used index, the interrupt decision;
//! * `ring`: the same steps over a packed ring (`VIRTIO_F_RING_PACKED`).

use std::sync::Arc;

use vblk_backend::Backend;

pub mod config;
mod config_write;
pub mod dirty;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing_packed;
mod inflight;
pub mod live;
mod merge;
mod plan;
mod resize;
mod ring;
pub mod runner;
pub mod stats;
mod used;
pub mod worker;

pub use config::{BlkConfig, CONFIG_SPACE_LEN};
pub use config_write::{ConfigWriteError, WRITEBACK_OFFSET};
pub use dirty::{DirtyLog, LogBitmap};
pub use live::{LiveConfig, NotifierHandle};
pub use merge::MERGE_MAX_BYTES;
pub use ring::{packed_base, set_packed_base};
pub use stats::{QueueStats, Stats};
pub use worker::{InflightLog, QueueError, QueueWorker};

/// Feature bits (virtio 1.2, 5.2.3 and 6), from `virtio-bindings`.
pub mod features {
    use virtio_bindings::{virtio_blk, virtio_config, virtio_ring};

    pub const VIRTIO_BLK_F_SIZE_MAX: u32 = virtio_blk::VIRTIO_BLK_F_SIZE_MAX;
    pub const VIRTIO_BLK_F_SEG_MAX: u32 = virtio_blk::VIRTIO_BLK_F_SEG_MAX;
    pub const VIRTIO_BLK_F_RO: u32 = virtio_blk::VIRTIO_BLK_F_RO;
    pub const VIRTIO_BLK_F_BLK_SIZE: u32 = virtio_blk::VIRTIO_BLK_F_BLK_SIZE;
    pub const VIRTIO_BLK_F_FLUSH: u32 = virtio_blk::VIRTIO_BLK_F_FLUSH;
    pub const VIRTIO_BLK_F_TOPOLOGY: u32 = virtio_blk::VIRTIO_BLK_F_TOPOLOGY;
    pub const VIRTIO_BLK_F_MQ: u32 = virtio_blk::VIRTIO_BLK_F_MQ;
    pub const VIRTIO_BLK_F_DISCARD: u32 = virtio_blk::VIRTIO_BLK_F_DISCARD;
    pub const VIRTIO_BLK_F_WRITE_ZEROES: u32 = virtio_blk::VIRTIO_BLK_F_WRITE_ZEROES;
    pub const VIRTIO_BLK_F_CONFIG_WCE: u32 = virtio_blk::VIRTIO_BLK_F_CONFIG_WCE;
    pub const VIRTIO_RING_F_INDIRECT_DESC: u32 = virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
    pub const VIRTIO_RING_F_EVENT_IDX: u32 = virtio_ring::VIRTIO_RING_F_EVENT_IDX;
    pub const VIRTIO_F_VERSION_1: u32 = virtio_config::VIRTIO_F_VERSION_1;
    /// Packed virtqueues (bit 34): offered by the transports that carry
    /// the ring positions (vhost-user, modern PCI), not by legacy PCI.
    pub const VIRTIO_F_RING_PACKED: u32 = virtio_config::VIRTIO_F_RING_PACKED;

    pub const fn bit(b: u32) -> u64 {
        1u64 << b
    }
}

/// One virtio-blk device: its configuration, its storage, its counters.
pub struct BlkDevice {
    config: BlkConfig,
    backend: Arc<dyn Backend>,
    stats: Arc<Stats>,
    /// Capacity and cache mode as they are now (resize, CONFIG_WCE).
    live: Arc<LiveConfig>,
}

impl BlkDevice {
    pub fn new(config: BlkConfig, backend: Arc<dyn Backend>) -> Self {
        let stats = Arc::new(Stats::new(usize::from(config.num_queues.max(1))));
        let live = LiveConfig::new(config.capacity.min(backend.capacity()), config.write_cache);
        BlkDevice {
            live,
            config,
            backend,
            stats,
        }
    }

    pub fn config(&self) -> &BlkConfig {
        &self.config
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The values that change while the device runs.
    pub fn live(&self) -> &Arc<LiveConfig> {
        &self.live
    }

    pub fn num_queues(&self) -> u16 {
        self.config.num_queues
    }

    /// Device feature bits offered to the driver (transport bits excluded
    /// except VERSION_1, INDIRECT_DESC and EVENT_IDX).
    pub fn features(&self) -> u64 {
        use features::*;
        let mut f = bit(VIRTIO_F_VERSION_1)
            | bit(VIRTIO_RING_F_INDIRECT_DESC)
            | bit(VIRTIO_RING_F_EVENT_IDX)
            | bit(VIRTIO_BLK_F_SEG_MAX)
            | bit(VIRTIO_BLK_F_BLK_SIZE)
            | bit(VIRTIO_BLK_F_FLUSH)
            | bit(VIRTIO_BLK_F_CONFIG_WCE)
            | bit(VIRTIO_BLK_F_TOPOLOGY)
            | bit(VIRTIO_BLK_F_MQ);
        if self.config.read_only {
            f |= bit(VIRTIO_BLK_F_RO);
        } else if self.config.discard {
            f |= bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
        }
        f
    }

    /// The `struct virtio_blk_config` bytes.
    pub fn config_space(&self) -> [u8; CONFIG_SPACE_LEN] {
        let mut b = self.config.to_bytes();
        b[0..8].copy_from_slice(&(self.live.capacity() / 512).to_le_bytes());
        b[WRITEBACK_OFFSET] = u8::from(self.live.writeback());
        b
    }

    /// Copy `data.len()` bytes of config space from `offset`; bytes outside
    /// the structure read as zero.
    pub fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cs = self.config_space();
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
                .and_then(|o| cs.get(o).copied())
                .unwrap_or(0);
        }
    }

    /// A worker for queue `index`, with its own storage engine.
    pub fn worker(&self, index: u16) -> std::io::Result<QueueWorker> {
        let engine = self.backend.engine()?;
        let mut w = QueueWorker::new(
            index,
            engine,
            self.config.limits(self.live.capacity()),
            self.config.serial,
            self.stats.clone(),
        );
        w.set_live(Some(self.live.clone()));
        Ok(w)
    }
}
