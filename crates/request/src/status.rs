//! Status mapping: the status byte a request completes with, and the
//! rejection (status and reason) of a request that fails validation.

pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// A validation failure: the request is completed with `status`, unexecuted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u8,
    pub reason: &'static str,
}

pub(crate) fn ioerr(reason: &'static str) -> Reject {
    Reject {
        status: VIRTIO_BLK_S_IOERR,
        reason,
    }
}

pub(crate) fn unsupp(reason: &'static str) -> Reject {
    Reject {
        status: VIRTIO_BLK_S_UNSUPP,
        reason,
    }
}
