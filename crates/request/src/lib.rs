//! virtio-blk requests: the header, the request types, and the validation
//! that decides whether a request may reach storage.
//!
//! Everything here is a pure function of bytes and lengths, so it can be
//! property-tested and fuzzed without guest memory. Reading the bytes out of
//! a descriptor chain is the queue crate's job; executing the request is the
//! device crate's.

/// Sectors are always 512 bytes on the wire, whatever `blk_size` says.
pub const SECTOR_SHIFT: u32 = 9;
pub const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
/// `struct virtio_blk_outhdr`: type u32, reserved u32 (ioprio), sector u64.
pub const HEADER_LEN: usize = 16;
/// `VIRTIO_BLK_ID_BYTES`.
pub const ID_BYTES: usize = 20;
/// `struct virtio_blk_discard_write_zeroes`: sector u64, num_sectors u32, flags u32.
pub const SEGMENT_LEN: usize = 16;

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;

pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Flag in a write-zeroes segment: the device may deallocate.
pub const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP: u32 = 1;

/// The request header, little endian on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub request_type: u32,
    pub sector: u64,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Header {
            request_type: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            sector: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        }
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.request_type.to_le_bytes());
        b[8..16].copy_from_slice(&self.sector.to_le_bytes());
        b
    }
}

/// The request types vblk executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    In,
    Out,
    Flush,
    GetId,
    Discard,
    WriteZeroes,
}

impl RequestType {
    pub fn from_raw(t: u32) -> Option<Self> {
        Some(match t {
            VIRTIO_BLK_T_IN => Self::In,
            VIRTIO_BLK_T_OUT => Self::Out,
            VIRTIO_BLK_T_FLUSH => Self::Flush,
            VIRTIO_BLK_T_GET_ID => Self::GetId,
            VIRTIO_BLK_T_DISCARD => Self::Discard,
            VIRTIO_BLK_T_WRITE_ZEROES => Self::WriteZeroes,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
            Self::Flush => "flush",
            Self::GetId => "get_id",
            Self::Discard => "discard",
            Self::WriteZeroes => "write_zeroes",
        }
    }
}

/// What the device offers and the driver accepted, as far as validation
/// needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Capacity in bytes.
    pub capacity: u64,
    pub read_only: bool,
    /// VIRTIO_BLK_F_FLUSH offered.
    pub flush: bool,
    /// VIRTIO_BLK_F_DISCARD offered.
    pub discard: bool,
    /// VIRTIO_BLK_F_WRITE_ZEROES offered.
    pub write_zeroes: bool,
    pub max_discard_sectors: u32,
    pub max_write_zeroes_sectors: u32,
    /// Maximum segments in one discard / write-zeroes request.
    pub max_segments: u32,
}

/// A request that passed validation: it may be executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read `len` bytes at byte `offset` into the device-writable data buffers.
    In {
        offset: u64,
        len: u64,
    },
    /// Write `len` bytes from the device-readable data buffers at byte `offset`.
    Out {
        offset: u64,
        len: u64,
    },
    Flush,
    /// Write the serial number (up to `len` bytes of it).
    GetId {
        len: u64,
    },
    /// The readable data holds `segments` discard segments.
    Discard {
        segments: u32,
    },
    /// The readable data holds `segments` write-zeroes segments.
    WriteZeroes {
        segments: u32,
    },
}

/// A validation failure: the request is completed with `status`, unexecuted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u8,
    pub reason: &'static str,
}

fn ioerr(reason: &'static str) -> Reject {
    Reject {
        status: VIRTIO_BLK_S_IOERR,
        reason,
    }
}

fn unsupp(reason: &'static str) -> Reject {
    Reject {
        status: VIRTIO_BLK_S_UNSUPP,
        reason,
    }
}

/// Check that `len` bytes at `sector` lie inside `capacity`, without overflow.
/// Returns the byte offset.
pub fn check_range(sector: u64, len: u64, capacity: u64) -> Result<u64, Reject> {
    let offset = sector
        .checked_mul(SECTOR_SIZE)
        .ok_or(ioerr("sector overflows"))?;
    let end = offset.checked_add(len).ok_or(ioerr("length overflows"))?;
    if end > capacity {
        return Err(ioerr("access past the end of the disk"));
    }
    Ok(offset)
}

/// Validate a request.
///
/// * `readable_data`: device-readable bytes after the 16-byte header;
/// * `writable_data`: device-writable bytes before the status byte.
pub fn validate(
    header: &Header,
    readable_data: u64,
    writable_data: u64,
    limits: &Limits,
) -> Result<Request, Reject> {
    let Some(kind) = RequestType::from_raw(header.request_type) else {
        return Err(unsupp("unknown request type"));
    };
    match kind {
        RequestType::In => {
            if readable_data != 0 {
                return Err(ioerr("IN request with device-readable data"));
            }
            if !writable_data.is_multiple_of(SECTOR_SIZE) {
                return Err(ioerr("data length is not a multiple of 512"));
            }
            let offset = check_range(header.sector, writable_data, limits.capacity)?;
            Ok(Request::In {
                offset,
                len: writable_data,
            })
        }
        RequestType::Out => {
            if writable_data != 0 {
                return Err(ioerr("OUT request with device-writable data"));
            }
            if !readable_data.is_multiple_of(SECTOR_SIZE) {
                return Err(ioerr("data length is not a multiple of 512"));
            }
            let offset = check_range(header.sector, readable_data, limits.capacity)?;
            if limits.read_only {
                return Err(ioerr("write to a read-only device"));
            }
            Ok(Request::Out {
                offset,
                len: readable_data,
            })
        }
        RequestType::Flush => {
            if !limits.flush {
                return Err(unsupp("FLUSH not offered"));
            }
            Ok(Request::Flush)
        }
        RequestType::GetId => {
            if readable_data != 0 {
                return Err(ioerr("GET_ID with device-readable data"));
            }
            Ok(Request::GetId {
                len: writable_data.min(ID_BYTES as u64),
            })
        }
        RequestType::Discard | RequestType::WriteZeroes => {
            let offered = if kind == RequestType::Discard {
                limits.discard
            } else {
                limits.write_zeroes
            };
            if !offered {
                return Err(unsupp("DISCARD/WRITE_ZEROES not offered"));
            }
            if writable_data != 0 {
                return Err(ioerr("DISCARD/WRITE_ZEROES with device-writable data"));
            }
            if readable_data == 0 || !readable_data.is_multiple_of(SEGMENT_LEN as u64) {
                return Err(ioerr("segment data is not a multiple of 16 bytes"));
            }
            let segments = readable_data / SEGMENT_LEN as u64;
            if segments > u64::from(limits.max_segments) {
                return Err(unsupp("too many segments"));
            }
            if limits.read_only {
                return Err(ioerr("write to a read-only device"));
            }
            let segments = segments as u32;
            Ok(if kind == RequestType::Discard {
                Request::Discard { segments }
            } else {
                Request::WriteZeroes { segments }
            })
        }
    }
}

/// One discard / write-zeroes segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub sector: u64,
    pub num_sectors: u32,
    pub flags: u32,
}

impl Segment {
    pub fn parse(b: &[u8; SEGMENT_LEN]) -> Self {
        Segment {
            sector: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            num_sectors: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            flags: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        }
    }

    pub fn to_bytes(&self) -> [u8; SEGMENT_LEN] {
        let mut b = [0u8; SEGMENT_LEN];
        b[0..8].copy_from_slice(&self.sector.to_le_bytes());
        b[8..12].copy_from_slice(&self.num_sectors.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// Validate one segment; returns (byte offset, byte length).
    pub fn check(&self, discard: bool, limits: &Limits) -> Result<(u64, u64), Reject> {
        let max = if discard {
            limits.max_discard_sectors
        } else {
            limits.max_write_zeroes_sectors
        };
        // "the device MUST set the status byte to VIRTIO_BLK_S_UNSUPP for discard
        // and write zeroes commands if any unknown flag is set" (virtio 1.2, 5.2.6.2);
        // UNMAP is not valid for discard.
        let allowed = if discard {
            0
        } else {
            VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
        };
        if self.flags & !allowed != 0 {
            return Err(unsupp("unknown segment flag"));
        }
        if self.num_sectors > max {
            return Err(ioerr("segment larger than the advertised maximum"));
        }
        let len = u64::from(self.num_sectors) << SECTOR_SHIFT;
        let offset = check_range(self.sector, len, limits.capacity)?;
        Ok((offset, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: Limits = Limits {
        capacity: 1 << 20,
        read_only: false,
        flush: true,
        discard: true,
        write_zeroes: true,
        max_discard_sectors: 1 << 16,
        max_write_zeroes_sectors: 1 << 16,
        max_segments: 1,
    };

    fn h(t: u32, sector: u64) -> Header {
        Header {
            request_type: t,
            sector,
        }
    }

    #[test]
    fn reads_and_writes_in_range() {
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_IN, 2), 0, 1024, &L),
            Ok(Request::In {
                offset: 1024,
                len: 1024
            })
        );
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_OUT, 2047), 512, 0, &L),
            Ok(Request::Out {
                offset: 2047 * 512,
                len: 512
            })
        );
    }

    #[test]
    fn last_sector_ok_next_one_fails() {
        assert!(validate(&h(VIRTIO_BLK_T_IN, 2047), 0, 512, &L).is_ok());
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_IN, 2048), 0, 512, &L)
                .unwrap_err()
                .status,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_IN, 2047), 0, 1024, &L)
                .unwrap_err()
                .status,
            VIRTIO_BLK_S_IOERR
        );
    }

    #[test]
    fn overflowing_sector_is_ioerr() {
        for s in [u64::MAX, u64::MAX / 512, u64::MAX / 512 + 1] {
            assert_eq!(
                validate(&h(VIRTIO_BLK_T_OUT, s), 512, 0, &L)
                    .unwrap_err()
                    .status,
                VIRTIO_BLK_S_IOERR
            );
        }
    }

    #[test]
    fn wrong_direction_and_partial_sector() {
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_IN, 0), 512, 512, &L)
                .unwrap_err()
                .status,
            1
        );
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_OUT, 0), 512, 512, &L)
                .unwrap_err()
                .status,
            1
        );
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_OUT, 0), 100, 0, &L)
                .unwrap_err()
                .status,
            1
        );
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_IN, 0), 0, 513, &L)
                .unwrap_err()
                .status,
            1
        );
    }

    #[test]
    fn read_only_refuses_writes_but_reads() {
        let ro = Limits {
            read_only: true,
            ..L
        };
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_OUT, 0), 512, 0, &ro)
                .unwrap_err()
                .status,
            1
        );
        assert!(validate(&h(VIRTIO_BLK_T_IN, 0), 0, 512, &ro).is_ok());
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_DISCARD, 0), 16, 0, &ro)
                .unwrap_err()
                .status,
            1
        );
    }

    #[test]
    fn unknown_types_unsupp() {
        for t in [2, 3, 5, 7, 9, 10, 12, 14, 0xffff_ffff] {
            assert_eq!(
                validate(&h(t, 0), 0, 0, &L).unwrap_err().status,
                VIRTIO_BLK_S_UNSUPP
            );
        }
        let nf = Limits {
            flush: false,
            discard: false,
            ..L
        };
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_FLUSH, 0), 0, 0, &nf)
                .unwrap_err()
                .status,
            2
        );
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_DISCARD, 0), 16, 0, &nf)
                .unwrap_err()
                .status,
            2
        );
    }

    #[test]
    fn get_id_truncates_to_20() {
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_GET_ID, 0), 0, 64, &L),
            Ok(Request::GetId { len: 20 })
        );
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_GET_ID, 0), 0, 8, &L),
            Ok(Request::GetId { len: 8 })
        );
    }

    #[test]
    fn segments() {
        let s = Segment {
            sector: 8,
            num_sectors: 8,
            flags: 0,
        };
        assert_eq!(Segment::parse(&s.to_bytes()), s);
        assert_eq!(s.check(true, &L), Ok((4096, 4096)));
        let bad = Segment { flags: 1, ..s };
        assert_eq!(bad.check(true, &L).unwrap_err().status, VIRTIO_BLK_S_UNSUPP);
        assert!(bad.check(false, &L).is_ok());
        let past = Segment {
            sector: 2047,
            num_sectors: 2,
            flags: 0,
        };
        assert_eq!(
            past.check(false, &L).unwrap_err().status,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_DISCARD, 0), 32, 0, &L)
                .unwrap_err()
                .status,
            2
        );
        assert_eq!(
            validate(&h(VIRTIO_BLK_T_DISCARD, 0), 15, 0, &L)
                .unwrap_err()
                .status,
            1
        );
    }

    proptest! {
        /// Whatever the header and lengths, validation never panics, and an
        /// accepted IN/OUT lies entirely inside the disk.
        #[test]
        fn validation_is_total_and_in_bounds(t in 0u32..16, sector: u64, r in 0u64..1<<33, w in 0u64..1<<33, ro: bool) {
            let lim = Limits { read_only: ro, ..L };
            match validate(&h(t, sector), r, w, &lim) {
                Ok(Request::In { offset, len }) | Ok(Request::Out { offset, len }) => {
                    prop_assert!(offset + len <= lim.capacity);
                    prop_assert_eq!(len % 512, 0);
                    prop_assert_eq!(offset, sector * 512);
                }
                Ok(_) => {}
                Err(rej) => prop_assert!(rej.status == VIRTIO_BLK_S_IOERR || rej.status == VIRTIO_BLK_S_UNSUPP),
            }
        }

        #[test]
        fn header_roundtrip(t: u32, sector: u64) {
            let hd = h(t, sector);
            prop_assert_eq!(Header::parse(&hd.to_bytes()), hd);
        }

        #[test]
        fn segment_check_in_bounds(sector: u64, n: u32, flags: u32, discard: bool) {
            let s = Segment { sector, num_sectors: n, flags };
            if let Ok((off, len)) = s.check(discard, &L) {
                prop_assert!(off.checked_add(len).unwrap() <= L.capacity);
            }
        }
    }
}
