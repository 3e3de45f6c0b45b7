//! Parsing: the request layout on the wire (sector size, header and
//! segment sizes, request type numbers), the header and the
//! discard / write-zeroes segment, read from and written to little-endian
//! bytes. Whether a request may run is `validate`'s job (including
//! [`Segment::check`]).

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
}
