//! Why a guest region was not mapped, and the errno a protocol reply
//! carries for it.

use std::io;

/// Errors of [`map_guest_region`](crate::map_guest_region).
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("a guest memory region of 0 bytes")]
    Empty,
    #[error(
        "guest region {addr:#x}+{size:#x} wraps the address space or does not fit this process"
    )]
    Range { addr: u64, size: u64 },
    #[error(
        "file offset {offset:#x} + size {size:#x} reaches past the end of the file ({file_size:#x} bytes)"
    )]
    PastEof {
        offset: u64,
        size: u64,
        file_size: u64,
    },
    #[error("not a regular file or memfd (mode {0:#o})")]
    NotRegular(u32),
    #[error("fstat: {0}")]
    Stat(io::Error),
    #[error("mmap: {0}")]
    Mmap(String),
    #[error("all {0} guest mapping slots are in use")]
    NoSlot(usize),
    #[error("cannot install the SIGBUS/SIGSEGV handler: {0}")]
    Handler(io::Error),
}

impl MapError {
    /// The errno a protocol reply should carry for this error.
    pub fn errno(&self) -> i32 {
        match self {
            MapError::Empty
            | MapError::Range { .. }
            | MapError::PastEof { .. }
            | MapError::NotRegular(_) => libc::EINVAL,
            MapError::Stat(e) => e.raw_os_error().unwrap_or(libc::EIO),
            MapError::Mmap(_) => libc::ENOMEM,
            MapError::NoSlot(_) => libc::ENOSPC,
            MapError::Handler(_) => libc::EIO,
        }
    }
}

impl From<MapError> for io::Error {
    fn from(e: MapError) -> io::Error {
        let kind = match e.errno() {
            libc::EINVAL => io::ErrorKind::InvalidInput,
            libc::ENOMEM => io::ErrorKind::OutOfMemory,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
