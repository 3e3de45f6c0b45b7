//! A split virtqueue the test fills as a driver would, and reads of the
//! status bytes and data the device writes back.

use vblk_testkit::blk::header;
use vblk_testkit::{SplitRing, F_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;

/// A split virtqueue the test drives as a driver would.
pub struct Ring {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub size: u16,
    pub avail_idx: u16,
    /// Scratch area for headers, data and status bytes.
    pub scratch: u64,
}

impl Ring {
    pub fn new(desc: u64, avail: u64, used: u64, size: u16, scratch: u64) -> Ring {
        Ring {
            desc,
            avail,
            used,
            size,
            avail_idx: 0,
            scratch,
        }
    }

    /// The kit's view of this ring.
    pub fn split(&self) -> SplitRing {
        let mut r = SplitRing::new(self.size, self.desc, self.avail, self.used);
        r.avail_idx = self.avail_idx;
        r
    }

    /// Publish a 3-descriptor request (header, data, status) for `len`
    /// bytes at `sector`; the data buffer is at the returned address, the
    /// status byte right after it (pre-set to 0xee).
    pub fn request(
        &mut self,
        mem: &GuestMemoryMmap,
        kind: u32,
        sector: u64,
        data: &[u8],
    ) -> (u64, u64) {
        let slot = self.avail_idx % self.size;
        let head = (slot % (self.size / 3)) * 3;
        // Requests complete synchronously: 8 scratch slots of 16 KiB do.
        assert!(data.len() < 0x3000);
        let base = self.scratch + u64::from(slot % 8) * 0x4000;
        let (hdr, buf, status) = (base, base + 0x1000, base + 0x1000 + data.len() as u64);
        mem.write_slice(&header(kind, sector), GuestAddress(hdr))
            .unwrap();
        mem.write_slice(data, GuestAddress(buf)).unwrap();
        mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
        let data_flags = if kind == VIRTIO_BLK_T_IN { F_WRITE } else { 0 };
        let mut ring = self.split();
        ring.chain_at(
            mem,
            head,
            &[
                (hdr, 16, 0),
                (buf, data.len() as u32, data_flags),
                (status, 1, F_WRITE),
            ],
        );
        ring.publish(mem, head);
        self.avail_idx = ring.avail_idx;
        (buf, status)
    }

    pub fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        self.split().used_idx(mem)
    }
}

/// Wait (up to 5 s) until the status byte at `at` is no longer the
/// placeholder `Ring::request` put there (requests complete on the queue
/// threads, after the kick's reply).
pub fn wait_status(mem: &GuestMemoryMmap, at: u64) -> u8 {
    let t = std::time::Instant::now();
    loop {
        let s = status_byte(mem, at);
        if s != 0xee || t.elapsed() > std::time::Duration::from_secs(5) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

pub fn status_byte(mem: &GuestMemoryMmap, at: u64) -> u8 {
    mem.read_obj(GuestAddress(at)).unwrap()
}

pub fn read_bytes(mem: &GuestMemoryMmap, at: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    mem.read_slice(&mut v, GuestAddress(at)).unwrap();
    v
}
