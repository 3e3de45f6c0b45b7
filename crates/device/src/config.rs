//! Device configuration and the `virtio_blk_config` structure.

use vblk_request::{Limits, ID_BYTES};

/// Size of the config structure we expose (up to and including
/// `write_zeroes_may_unmap` and its padding; virtio 1.2, 5.2.4).
pub const CONFIG_SPACE_LEN: usize = 60;

/// Largest discard / write-zeroes request, in sectors.
pub const MAX_DISCARD_SECTORS: u32 = 1 << 22;
/// Segments per discard / write-zeroes request.
pub const MAX_DISCARD_SEG: u32 = 32;

/// What the device is, as set on the command line.
#[derive(Debug, Clone)]
pub struct BlkConfig {
    /// Capacity in bytes (multiple of 512).
    pub capacity: u64,
    pub read_only: bool,
    /// Offer DISCARD / WRITE_ZEROES.
    pub discard: bool,
    /// The GET_ID answer, zero padded.
    pub serial: [u8; ID_BYTES],
    /// `blk_size`: 512 or 4096.
    pub logical_block_size: u32,
    /// The storage's physical block size in bytes (a power-of-two multiple
    /// of `logical_block_size`; anything else, e.g. 0, means "same as
    /// logical"), e.g. from `Backend::block_sizes().physical`. Sets
    /// `physical_block_exp` and `min_io_size`.
    pub physical_block_size: u32,
    pub num_queues: u16,
    /// Largest queue the device accepts.
    pub queue_size: u16,
    /// `seg_max`: data segments per request.
    pub seg_max: u32,
    /// Offer packed virtqueues (`VIRTIO_F_RING_PACKED`) where the transport
    /// can carry them (vhost-user, modern PCI).
    pub packed_rings: bool,
    /// The write-cache mode a driver starts with (`--write-cache`): true =
    /// write-back (FLUSH makes writes durable), false = write-through
    /// (every write durable before it completes).
    pub write_cache: bool,
}

impl BlkConfig {
    pub fn new(capacity: u64) -> Self {
        BlkConfig {
            capacity,
            read_only: false,
            discard: true,
            serial: [0; ID_BYTES],
            logical_block_size: 512,
            physical_block_size: 0,
            num_queues: 1,
            queue_size: 256,
            seg_max: 254,
            packed_rings: true,
            write_cache: true,
        }
    }

    /// Set the serial from a string: at most 20 bytes are kept.
    pub fn set_serial(&mut self, s: &str) {
        self.serial = [0; ID_BYTES];
        let b = s.as_bytes();
        let n = b.len().min(ID_BYTES);
        self.serial[..n].copy_from_slice(&b[..n]);
    }

    pub fn limits(&self, backend_capacity: u64) -> Limits {
        Limits {
            capacity: self.capacity.min(backend_capacity),
            read_only: self.read_only,
            flush: true,
            discard: self.discard && !self.read_only,
            write_zeroes: self.discard && !self.read_only,
            max_discard_sectors: MAX_DISCARD_SECTORS,
            max_write_zeroes_sectors: MAX_DISCARD_SECTORS,
            max_segments: MAX_DISCARD_SEG,
        }
    }

    pub fn to_bytes(&self) -> [u8; CONFIG_SPACE_LEN] {
        let mut b = [0u8; CONFIG_SPACE_LEN];
        let put32 = |b: &mut [u8; CONFIG_SPACE_LEN], o: usize, v: u32| {
            b[o..o + 4].copy_from_slice(&v.to_le_bytes())
        };
        b[0..8].copy_from_slice(&(self.capacity / 512).to_le_bytes()); // capacity (sectors)
        put32(&mut b, 8, 0); // size_max (feature not offered)
        put32(&mut b, 12, self.seg_max); // seg_max
                                         // geometry (16..20) left zero
        put32(&mut b, 20, self.logical_block_size); // blk_size
                                                    // topology: physical_block_exp u8, alignment_offset u8, min_io_size u16, opt_io_size u32
        let lbs = self.logical_block_size.max(1);
        let ratio = self.physical_block_size / lbs;
        let exp = if ratio > 1 && ratio.is_power_of_two() && ratio * lbs == self.physical_block_size
        {
            ratio.trailing_zeros().min(15) as u8
        } else {
            0
        };
        // virtio 1.2, 5.2.4: "physical_block_exp: exponent for physical
        // block per logical block. ... min_io_size: suggested minimum I/O
        // size in blocks. opt_io_size: optimal (suggested maximum) I/O size
        // in blocks." Blocks are logical blocks (Linux: io_min = blk_size *
        // min_io_size), not 512-byte sectors.
        b[24] = exp; // physical_block_exp
        b[25] = 0; // alignment_offset
        let min_io = 1u16 << exp; // one physical block, in logical blocks
        b[26..28].copy_from_slice(&min_io.to_le_bytes());
        put32(&mut b, 28, 0); // opt_io_size: no suggestion
                              // writeback: the initial mode; the device overlays the live one
                              // (`BlkDevice::config_space`).
        b[32] = u8::from(self.write_cache);
        b[34..36].copy_from_slice(&self.num_queues.to_le_bytes()); // num_queues
        put32(&mut b, 36, MAX_DISCARD_SECTORS); // max_discard_sectors
        put32(&mut b, 40, MAX_DISCARD_SEG); // max_discard_seg
        put32(&mut b, 44, (self.logical_block_size / 512).max(1)); // discard_sector_alignment
        put32(&mut b, 48, MAX_DISCARD_SECTORS); // max_write_zeroes_sectors
        put32(&mut b, 52, MAX_DISCARD_SEG); // max_write_zeroes_seg
        b[56] = 1; // write_zeroes_may_unmap
        b
    }
}

#[cfg(test)]
mod topology_tests {
    use super::*;

    #[test]
    fn min_io_size_is_in_logical_blocks() {
        let mut c = BlkConfig::new(1 << 20);
        c.logical_block_size = 4096;
        let b = c.to_bytes();
        assert_eq!((b[24], u16::from_le_bytes([b[26], b[27]])), (0, 1));
        c.logical_block_size = 512;
        c.physical_block_size = 4096;
        let b = c.to_bytes();
        assert_eq!((b[24], u16::from_le_bytes([b[26], b[27]])), (3, 8));
        c.physical_block_size = 3000;
        let b = c.to_bytes();
        assert_eq!((b[24], u16::from_le_bytes([b[26], b[27]])), (0, 1));
    }
}
