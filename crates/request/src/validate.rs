//! Validation: what the device offers ([`Limits`]), and whether a request
//! (its header and data lengths) or a discard / write-zeroes segment may
//! reach storage ([`Request`]) or is rejected with a status ([`Reject`]).

use crate::status::{ioerr, unsupp, Reject};
use crate::wire::{
    Header, RequestType, Segment, ID_BYTES, SECTOR_SHIFT, SECTOR_SIZE, SEGMENT_LEN,
    VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};

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

impl Segment {
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
