//! virtio-blk requests: the header, the request types, and the validation
//! that decides whether a request may reach storage.
//!
//! Everything here is a pure function of bytes and lengths, so it can be
//! property-tested and fuzzed without guest memory. Reading the bytes out of
//! a descriptor chain is the queue crate's job; executing the request is the
//! device crate's.

mod status;
mod validate;
mod wire;

pub use status::{Reject, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP};
pub use validate::{check_range, validate, Limits, Request};
pub use wire::{
    Header, RequestType, Segment, HEADER_LEN, ID_BYTES, SECTOR_SHIFT, SECTOR_SIZE, SEGMENT_LEN,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};

#[cfg(test)]
mod tests;
