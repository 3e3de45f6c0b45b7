//! A backend that stores nothing: reads return zeroes, writes vanish. It
//! measures the device path alone (like qemu-storage-daemon's `null-co`
//! with `read-zeroes=on`).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Backend, IoEngine, IoOp, IoRequest, SyncEngine};

pub struct NullBackend {
    size: AtomicU64,
}

impl NullBackend {
    pub fn new(size: u64) -> Self {
        Self {
            size: AtomicU64::new(size),
        }
    }
}

impl Backend for NullBackend {
    fn capacity(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    fn engine(&self) -> io::Result<Box<dyn IoEngine>> {
        Ok(Box::new(SyncEngine::new(|req: &IoRequest| {
            if req.op == IoOp::Read {
                for v in &req.iovecs {
                    // SAFETY: the iovec points to `iov_len` writable bytes that stay valid
                    // until completion (IoEngine::push contract).
                    unsafe { std::ptr::write_bytes(v.iov_base as *mut u8, 0, v.iov_len) };
                }
            }
            Ok(req.len)
        })))
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn supports_discard(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("null ({} bytes, reads return zeroes)", self.capacity())
    }

    /// A null device has no storage: its size is only a number, so the
    /// export can take any size; there is no file to resize.
    fn resize(&self, size: u64, resize_file: bool) -> io::Result<()> {
        if resize_file {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the null backend has no file to resize (--resize-file does not apply)",
            ));
        }
        self.size.store(size, Ordering::SeqCst);
        Ok(())
    }
}
