//! virtio-blk requests (virtio 1.2, 5.2.6): a header, data, a status byte,
//! placed in guest memory as the segments of one chain.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::ring::{Seg, F_WRITE};

pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const T_DISCARD: u32 = 11;
pub const T_WRITE_ZEROES: u32 = 13;

pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

/// What the status byte holds until the device writes it.
pub const STATUS_UNSET: u8 = 0xee;

/// Feature bits (virtio 1.2, 5.2.3 and 6).
pub mod features {
    pub const SEG_MAX: u64 = 1 << 2;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
    pub const INDIRECT_DESC: u64 = 1 << 28;
    pub const EVENT_IDX: u64 = 1 << 29;
    pub const PROTOCOL_FEATURES: u64 = 1 << 30;
    pub const VERSION_1: u64 = 1 << 32;
}

/// The 16-byte request header.
pub fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    h
}

/// One DISCARD / WRITE_ZEROES segment (sector, sectors, flags; bit 0 = unmap).
pub fn segment(sector: u64, num_sectors: u32, flags: u32) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[0..8].copy_from_slice(&sector.to_le_bytes());
    s[8..12].copy_from_slice(&num_sectors.to_le_bytes());
    s[12..16].copy_from_slice(&flags.to_le_bytes());
    s
}

/// A request before it is placed in memory.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: u32,
    pub sector: u64,
    /// Device-readable bytes after the header (OUT data, segments).
    pub out: Vec<u8>,
    /// Device-writable bytes before the status byte (IN data, GET_ID).
    pub in_len: u32,
}

impl Request {
    pub fn new(kind: u32, sector: u64) -> Request {
        Request {
            kind,
            sector,
            out: Vec::new(),
            in_len: 0,
        }
    }
    pub fn read(sector: u64, len: u32) -> Request {
        Request {
            in_len: len,
            ..Request::new(T_IN, sector)
        }
    }
    pub fn write(sector: u64, data: &[u8]) -> Request {
        Request {
            out: data.to_vec(),
            ..Request::new(T_OUT, sector)
        }
    }
    pub fn flush() -> Request {
        Request::new(T_FLUSH, 0)
    }
    pub fn get_id(len: u32) -> Request {
        Request {
            in_len: len,
            ..Request::new(T_GET_ID, 0)
        }
    }
    /// DISCARD of (sector, sectors, flags) segments.
    pub fn discard(segs: &[(u64, u32, u32)]) -> Request {
        Request {
            out: segs
                .iter()
                .flat_map(|&(s, n, f)| segment(s, n, f))
                .collect(),
            ..Request::new(T_DISCARD, 0)
        }
    }
    /// WRITE_ZEROES of (sector, sectors, flags) segments.
    pub fn write_zeroes(segs: &[(u64, u32, u32)]) -> Request {
        Request {
            kind: T_WRITE_ZEROES,
            ..Request::discard(segs)
        }
    }

    /// Bytes of guest memory [`Request::place`] uses.
    pub fn footprint(&self) -> u64 {
        16 + self.out.len() as u64 + u64::from(self.in_len) + 1
    }

    /// Write the request at `at` (header, readable data, writable data,
    /// status preset to [`STATUS_UNSET`], back to back) and return its
    /// segments: header, then the readable data if any, the writable data
    /// if any, the status byte.
    pub fn place(&self, mem: &GuestMemoryMmap, at: u64) -> Placed {
        let hdr = at;
        let out = hdr + 16;
        let inb = out + self.out.len() as u64;
        let status = inb + u64::from(self.in_len);
        let w = |b: &[u8], a: u64| {
            mem.write_slice(b, GuestAddress(a))
                .expect("request inside guest memory")
        };
        w(&header(self.kind, self.sector), hdr);
        w(&self.out, out);
        w(&vec![0u8; self.in_len as usize], inb);
        w(&[STATUS_UNSET], status);
        let mut segs: Vec<Seg> = vec![(hdr, 16, 0)];
        if !self.out.is_empty() {
            segs.push((out, self.out.len() as u32, 0));
        }
        if self.in_len > 0 {
            segs.push((inb, self.in_len, F_WRITE));
        }
        segs.push((status, 1, F_WRITE));
        Placed {
            segs,
            hdr,
            data: if self.in_len > 0 { inb } else { out },
            status,
            end: status + 1,
        }
    }
}

/// A request in guest memory.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The chain's buffers, in order.
    pub segs: Vec<Seg>,
    pub hdr: u64,
    /// The writable data if there is any, else the readable data.
    pub data: u64,
    pub status: u64,
    /// First byte after the request.
    pub end: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_header_data_status() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let p = Request::read(3, 512).place(&mem, 0x1000);
        assert_eq!(
            p.segs,
            vec![
                (0x1000, 16, 0),
                (0x1010, 512, F_WRITE),
                (0x1210, 1, F_WRITE)
            ]
        );
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(p.status)).unwrap(),
            STATUS_UNSET
        );
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x1008)).unwrap(), 3);
        let p = Request::discard(&[(1, 2, 0), (5, 1, 1)]).place(&mem, 0);
        assert_eq!(p.segs, vec![(0, 16, 0), (16, 32, 0), (48, 1, F_WRITE)]);
        assert_eq!(Request::flush().place(&mem, 0).segs.len(), 2);
    }
}
