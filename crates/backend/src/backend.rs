//! The storage object: the [`Backend`] trait every backend implements, the
//! [`BlockSizes`] it reports, and the error of a resize it cannot hold.

use std::io;

use crate::IoEngine;

/// Block sizes of the storage, for the device configuration and for
/// `O_DIRECT` alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// The smallest unit the storage addresses (bytes, a power of two ≥ 512).
    pub logical: u32,
    /// The storage's physical block (≥ `logical`): smaller writes are a
    /// read-modify-write somewhere below us.
    pub physical: u32,
    /// `O_DIRECT`: required alignment of memory buffers (1: none).
    pub dio_mem_align: u32,
    /// `O_DIRECT`: required alignment of file offsets and lengths (1: none).
    pub dio_offset_align: u32,
}

impl Default for BlockSizes {
    fn default() -> Self {
        BlockSizes {
            logical: 512,
            physical: 512,
            dio_mem_align: 1,
            dio_offset_align: 1,
        }
    }
}

/// A storage object shared by all queues.
pub trait Backend: Send + Sync {
    /// Size in bytes (a multiple of 512).
    fn capacity(&self) -> u64;
    /// A fresh engine for one queue worker.
    fn engine(&self) -> io::Result<Box<dyn IoEngine>>;
    /// Make every completed write durable (used at shutdown).
    fn flush(&self) -> io::Result<()>;
    /// Whether the backend can be written.
    fn read_only(&self) -> bool {
        false
    }
    /// Whether DISCARD is meaningful (punches holes).
    fn supports_discard(&self) -> bool {
        false
    }
    /// The storage's block sizes. Engines bounce requests that do not meet
    /// the `O_DIRECT` alignments, so these are advice for the device
    /// configuration (`blk_size`, `physical_block_exp`), not requirements.
    fn block_sizes(&self) -> BlockSizes {
        BlockSizes::default()
    }
    /// For logs: what this backend is.
    fn describe(&self) -> String;
    /// Online resize: serve `size` bytes from now on (a multiple of 512).
    /// With `resize_file` the storage itself grows or shrinks (a regular
    /// file is truncated or extended); without it the storage is left
    /// alone and `size` must fit in what it holds now. Backends that
    /// cannot do it say why.
    fn resize(&self, size: u64, resize_file: bool) -> io::Result<()> {
        let _ = (size, resize_file);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} cannot be resized", self.describe()),
        ))
    }
}

/// The error of a resize the storage cannot hold without `resize_file`.
pub fn resize_needs_file(what: &str, have: u64, want: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{what} holds {have} bytes, fewer than {want}: grow it first, or pass --resize-file"
        ),
    )
}
