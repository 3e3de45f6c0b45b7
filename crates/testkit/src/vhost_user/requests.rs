//! Requests on ring 0: submit (chain, publish, kick), wait for used
//! entries (with a deadline) and run a request to its [`Done`].

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::driver::Driver;
use crate::blk::{Request, STATUS_UNSET};
use crate::ring::Seg;

/// A completed request.
#[derive(Debug, Clone)]
pub struct Done {
    pub id: u32,
    /// The used length the daemon reported.
    pub len: u32,
    pub status: u8,
    /// The writable data after completion.
    pub data: Vec<u8>,
}

impl Driver {
    pub fn kick(&self) {
        let _ = self.kick.write(1);
    }

    /// Chain `segs`, publish the head and kick; returns the head.
    pub fn submit_segs(&mut self, segs: &[Seg]) -> u16 {
        let head = self.ring.chain(&self.ram.mem, segs);
        self.ring.publish(&self.ram.mem, head);
        self.kick();
        head
    }

    /// Place `r` in scratch RAM and submit it; returns (head, placement).
    pub fn submit(&mut self, r: &Request) -> (u16, crate::blk::Placed) {
        let at = self.scratch(r.footprint());
        let p = r.place(&self.ram.mem, at);
        (self.submit_segs(&p.segs), p)
    }

    /// The next used entry, waiting up to `limit` (polls the call eventfd).
    pub fn wait_used_for(&mut self, limit: Duration) -> Option<(u32, u32)> {
        let t = Instant::now();
        loop {
            if let Some(u) = self.ring.take_used(&self.ram.mem) {
                return Some(u);
            }
            let left = limit.saturating_sub(t.elapsed());
            if left.is_zero() {
                return None;
            }
            let mut p = libc::pollfd {
                fd: self.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one pollfd we own, bounded wait.
            unsafe { libc::poll(&mut p, 1, left.as_millis().clamp(1, 5) as i32) };
            let _ = self.call.read();
        }
    }

    pub fn wait_used(&mut self) -> Option<(u32, u32)> {
        self.wait_used_for(self.opts.timeout)
    }

    /// Submit `r` and wait for its completion: (used length, status, data).
    pub fn run(&mut self, r: &Request) -> Result<Done, String> {
        let (head, p) = self.submit(r);
        let (id, len) = self
            .wait_used()
            .ok_or_else(|| format!("no completion within {:?}", self.opts.timeout))?;
        if id != u32::from(head) {
            return Err(format!("completed head {id}, expected {head}"));
        }
        let status = self.ram.u8_at(p.status);
        let data = if r.in_len > 0 {
            self.ram.read(p.data, r.in_len as usize)
        } else {
            Vec::new()
        };
        if status == STATUS_UNSET {
            return Err("completed without a status".into());
        }
        Ok(Done {
            id,
            len,
            status,
            data,
        })
    }
}
