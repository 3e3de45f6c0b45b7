//! A backend that stores nothing: reads return zeroes, writes vanish. It
//! measures the device path alone (like qemu-storage-daemon's `null-co`
//! with `read-zeroes=on`).

use std::io;

use crate::{Backend, IoEngine, IoOp, IoRequest, SyncEngine};

pub struct NullBackend {
    size: u64,
}

impl NullBackend {
    pub fn new(size: u64) -> Self {
        Self { size }
    }
}

impl Backend for NullBackend {
    fn capacity(&self) -> u64 {
        self.size
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
        format!("null ({} bytes, reads return zeroes)", self.size)
    }
}
