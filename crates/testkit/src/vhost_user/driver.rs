//! The [`Driver`]: how it connects ([`Options`]), the connection and the
//! feature negotiation, what was negotiated, the config space's capacity
//! and the scratch RAM requests are placed in. [`Driver::connect`]
//! (negotiate, then memory table and ring 0) is in `setup`.

use std::path::Path;
use std::time::Duration;

use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserHeaderFlag, VhostUserProtocolFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::VhostBackend;
use vmm_sys_util::eventfd::EventFd;

use super::deadline::{connect_timeout, Fe, Watchdog};
use super::raw::RawConn;
use crate::blk::features as vf;
use crate::mem::GuestRam;
use crate::ring::SplitRing;

/// How a [`Driver`] connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// Guest RAM (one memfd at guest address 0).
    pub mem_size: u64,
    pub queue_size: u16,
    /// Virtio features wanted (what the daemon offers of them is acked).
    pub features: u64,
    /// Protocol features wanted (likewise).
    pub protocol: VhostUserProtocolFeatures,
    /// REPLY_ACK on every message, when negotiated: refusals become errors.
    pub reply_ack: bool,
    /// The deadline of every socket read and every wait.
    pub timeout: Duration,
    /// Queue indices the `Frontend` lets through (the daemon must refuse
    /// the ones it does not have).
    pub max_queues: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mem_size: 8 << 20,
            queue_size: 128,
            features: vf::VERSION_1
                | vf::PROTOCOL_FEATURES
                | vf::FLUSH
                | vf::BLK_SIZE
                | vf::SEG_MAX
                | vf::INDIRECT_DESC
                | vf::DISCARD
                | vf::WRITE_ZEROES,
            protocol: VhostUserProtocolFeatures::CONFIG
                | VhostUserProtocolFeatures::MQ
                | VhostUserProtocolFeatures::REPLY_ACK
                | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
                | VhostUserProtocolFeatures::INFLIGHT_SHMFD
                | VhostUserProtocolFeatures::RESET_DEVICE,
            reply_ack: true,
            timeout: Duration::from_secs(5),
            max_queues: 256,
        }
    }
}

/// A vhost-user front end with one memfd of guest RAM and ring 0.
pub struct Driver {
    fe: Frontend,
    wd: Watchdog,
    pub raw: RawConn,
    pub ram: GuestRam,
    pub ring: SplitRing,
    pub kick: EventFd,
    pub call: EventFd,
    /// Virtio features the daemon offered / we acked.
    pub offered: u64,
    pub acked: u64,
    pub offered_protocol: VhostUserProtocolFeatures,
    pub acked_protocol: VhostUserProtocolFeatures,
    pub opts: Options,
    scratch_base: u64,
    scratch: u64,
}

pub(super) fn e<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

impl Driver {
    /// Connect and negotiate features; no memory table, no ring yet.
    pub fn negotiate(sock: &Path, opts: Options) -> Result<Driver, String> {
        let stream = connect_timeout(sock, opts.timeout).map_err(e("connect"))?;
        stream
            .set_read_timeout(Some(opts.timeout))
            .map_err(e("timeout"))?;
        stream
            .set_write_timeout(Some(opts.timeout))
            .map_err(e("timeout"))?;
        let raw = RawConn::new(stream.try_clone().map_err(e("socket"))?);
        let wd = Watchdog::new(&stream).map_err(e("watchdog"))?;
        let fe = Frontend::from_stream(stream, opts.max_queues);
        // The whole negotiation runs under one deadline.
        wd.arm(opts.timeout);
        let mut g = Fe { fe, wd: &wd };
        let fe = &mut g;
        fe.set_owner().map_err(e("SET_OWNER"))?;
        let offered = fe.get_features().map_err(e("GET_FEATURES"))?;
        if offered & vf::VERSION_1 == 0 {
            return Err("the daemon does not offer VERSION_1".into());
        }
        let acked = offered & opts.features;
        fe.set_features(acked).map_err(e("SET_FEATURES"))?;
        let (offered_protocol, acked_protocol) = if acked & vf::PROTOCOL_FEATURES != 0 {
            let pf = fe
                .get_protocol_features()
                .map_err(e("GET_PROTOCOL_FEATURES"))?;
            let want = pf & opts.protocol;
            fe.set_protocol_features(want)
                .map_err(e("SET_PROTOCOL_FEATURES"))?;
            (pf, want)
        } else {
            (
                VhostUserProtocolFeatures::empty(),
                VhostUserProtocolFeatures::empty(),
            )
        };
        if opts.reply_ack && acked_protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        let fe = g.fe.clone();
        drop(g);
        let ram = GuestRam::memfd(opts.mem_size).map_err(e("guest RAM"))?;
        let ring = SplitRing::packed(0, opts.queue_size);
        let scratch_base = (ring.end() + 0xffff) & !0xffff;
        assert!(
            scratch_base < opts.mem_size,
            "guest RAM too small for the ring"
        );
        Ok(Driver {
            fe,
            wd,
            raw,
            ram,
            ring,
            kick: EventFd::new(0).map_err(e("eventfd"))?,
            call: EventFd::new(libc::EFD_NONBLOCK).map_err(e("eventfd"))?,
            offered,
            acked,
            offered_protocol,
            acked_protocol,
            opts,
            scratch_base,
            scratch: scratch_base,
        })
    }

    /// The front end, for one call (or a few): the connection is shut
    /// down if they take longer than the timeout.
    pub fn fe(&self) -> Fe<'_> {
        self.wd.arm(self.opts.timeout);
        Fe {
            fe: self.fe.clone(),
            wd: &self.wd,
        }
    }

    /// Whether protocol feature `f` was negotiated.
    pub fn has(&self, f: VhostUserProtocolFeatures) -> bool {
        self.acked_protocol.contains(f)
    }

    /// Whether REPLY_ACK is on for every message.
    pub fn acks(&self) -> bool {
        self.opts.reply_ack && self.has(VhostUserProtocolFeatures::REPLY_ACK)
    }

    /// Capacity in bytes from the config space (CONFIG), if it answers.
    pub fn capacity(&mut self) -> Option<u64> {
        if !self.has(VhostUserProtocolFeatures::CONFIG) {
            return None;
        }
        let (_, cfg) = self
            .fe()
            .get_config(0, 8, VhostUserConfigFlags::WRITABLE, &[0u8; 8])
            .ok()?;
        Some(u64::from_le_bytes(cfg.get(..8)?.try_into().ok()?) * 512)
    }

    /// `len` bytes of scratch RAM (after the ring; wraps around).
    pub fn scratch(&mut self, len: u64) -> u64 {
        let len = (len + 63) & !63;
        assert!(
            self.scratch_base + len <= self.ram.size,
            "scratch request too big"
        );
        if self.scratch + len > self.ram.size {
            self.scratch = self.scratch_base;
        }
        let at = self.scratch;
        self.scratch += len;
        at
    }
}
