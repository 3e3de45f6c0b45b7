//! The [`Driver`] over a packed ring (`VIRTIO_F_RING_PACKED`): the ring
//! set-up messages with the packed areas and the 32-bit vring base (sent
//! raw: the `vhost` crate's `set_vring_base` takes 16 bits), and requests
//! run through the test kit's [`PackedDriver`].

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::VhostUserFrontend;
use vhost::{VhostBackend, VringConfigData};

use super::driver::{e, Driver};
use super::raw::Reply;
use super::requests::Done;
use super::wire::{req, state_bytes};
use crate::blk::{features as vf, Request, STATUS_UNSET};
use crate::packed::PackedDriver;

/// `VIRTIO_F_RING_PACKED`.
pub const RING_PACKED: u64 = 1 << 34;

impl Driver {
    /// A packed ring of `size` where the split ring would be (guest
    /// address 0); its areas fit inside the split ring's.
    pub fn packed_ring(&self) -> PackedDriver {
        PackedDriver::new(self.ring.desc, self.ring.size)
    }

    /// SET_VRING_BASE with all 32 bits (packed: avail position | used
    /// position << 16). Returns the REPLY_ACK answer when one is asked for.
    pub fn set_vring_base_raw(&self, index: u32, base: u32) -> Result<(), String> {
        let ack = self.acks();
        match self
            .raw
            .call(req::SET_VRING_BASE, ack, &state_bytes(index, base), &[])
        {
            None => Ok(()),
            Some(r) => match r.u64() {
                Some(0) => Ok(()),
                Some(n) => Err(format!("SET_VRING_BASE refused ({n})")),
                None => Err(format!("SET_VRING_BASE: {:?}", matches!(r, Reply::Closed))),
            },
        }
    }

    /// SET_VRING_NUM/ADDR/BASE/CALL/KICK/ENABLE for packed ring 0.
    pub fn start_packed_ring(&mut self, p: &PackedDriver, base: u32) -> Result<(), String> {
        let uva = |gpa| self.ram.host_addr(gpa);
        let cfg = VringConfigData {
            queue_max_size: p.size,
            queue_size: p.size,
            flags: 0,
            desc_table_addr: uva(p.desc),
            // The driver area travels in the "avail" field, the device
            // area in the "used" field.
            used_ring_addr: uva(p.device_area),
            avail_ring_addr: uva(p.driver_area),
            log_addr: None,
        };
        self.fe()
            .set_vring_num(0, p.size)
            .map_err(e("SET_VRING_NUM"))?;
        self.fe()
            .set_vring_addr(0, &cfg)
            .map_err(e("SET_VRING_ADDR"))?;
        self.set_vring_base_raw(0, base)?;
        self.fe()
            .set_vring_call(0, &self.call)
            .map_err(e("SET_VRING_CALL"))?;
        self.fe()
            .set_vring_kick(0, &self.kick)
            .map_err(e("SET_VRING_KICK"))?;
        if self.acked & vf::PROTOCOL_FEATURES != 0 {
            self.fe()
                .set_vring_enable(0, true)
                .map_err(e("SET_VRING_ENABLE"))?;
        }
        Ok(())
    }

    /// GET_VRING_BASE: stops the ring, returns all 32 bits.
    pub fn get_vring_base(&self) -> Result<u32, String> {
        self.fe().get_vring_base(0).map_err(e("GET_VRING_BASE"))
    }

    /// Whether INFLIGHT_SHMFD was negotiated.
    pub fn has_inflight(&self) -> bool {
        self.has(VhostUserProtocolFeatures::INFLIGHT_SHMFD)
    }

    /// The next used descriptor of `p`, waiting up to the timeout.
    pub fn wait_packed_used(&mut self, p: &mut PackedDriver) -> Option<(u16, u32)> {
        let t = Instant::now();
        loop {
            if let Some(u) = p.take_used(&self.ram.mem) {
                return Some(u);
            }
            let left = self.opts.timeout.saturating_sub(t.elapsed());
            if left.is_zero() {
                return None;
            }
            let mut fd = libc::pollfd {
                fd: self.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one pollfd we own, bounded wait.
            unsafe {
                libc::poll(
                    &mut fd,
                    1,
                    left.min(Duration::from_millis(5)).as_millis() as i32,
                )
            };
            let _ = self.call.read();
        }
    }

    /// Run `r` as buffer `id` of packed ring `p` and wait for it.
    pub fn run_packed(
        &mut self,
        p: &mut PackedDriver,
        r: &Request,
        id: u16,
    ) -> Result<Done, String> {
        let at = self.scratch(r.footprint());
        let placed = r.place(&self.ram.mem, at);
        p.add(&self.ram.mem, &placed.segs, id);
        self.kick();
        let (got, len) = self
            .wait_packed_used(p)
            .ok_or_else(|| format!("no used descriptor within {:?}", self.opts.timeout))?;
        if got != id {
            return Err(format!("used buffer {got}, expected {id}"));
        }
        let status = self.ram.u8_at(placed.status);
        if status == STATUS_UNSET {
            return Err("used without a status".into());
        }
        let data = if r.in_len > 0 {
            self.ram.read(placed.data, r.in_len as usize)
        } else {
            Vec::new()
        };
        Ok(Done {
            id: u32::from(got),
            len,
            status,
            data,
        })
    }
}
