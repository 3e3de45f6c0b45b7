//! An in-memory backend for tests (the device's fuzz bodies and mock-queue
//! tests). Its fault injection (`fail_next`, `short_next`) exists only with
//! the `test-util` feature.

use std::io;
#[cfg(feature = "test-util")]
use std::sync::atomic::AtomicI32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::{Backend, IoEngine, IoOp, IoRequest, SyncEngine};

/// Bytes in a `Vec`, shared between clones.
#[derive(Clone)]
pub struct MemBackend {
    inner: Arc<Inner>,
}

struct Inner {
    data: Mutex<Vec<u8>>,
    read_only: bool,
    /// If non-zero, the next this-many requests fail with `fail_errno`.
    #[cfg(feature = "test-util")]
    fail_count: AtomicU64,
    #[cfg(feature = "test-util")]
    fail_errno: AtomicI32,
    /// If set, the next read/write transfers only half its bytes (short I/O).
    #[cfg(feature = "test-util")]
    short_io: AtomicU64,
    flushes: AtomicU64,
}

impl MemBackend {
    pub fn new(size: u64) -> Self {
        Self::with_data(vec![0; size as usize], false)
    }

    pub fn with_data(data: Vec<u8>, read_only: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                data: Mutex::new(data),
                read_only,
                #[cfg(feature = "test-util")]
                fail_count: AtomicU64::new(0),
                #[cfg(feature = "test-util")]
                fail_errno: AtomicI32::new(0),
                #[cfg(feature = "test-util")]
                short_io: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
            }),
        }
    }

    /// A copy of the current contents.
    pub fn snapshot(&self) -> Vec<u8> {
        self.inner
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Overwrite bytes at `offset`.
    pub fn fill(&self, offset: usize, bytes: &[u8]) {
        let mut d = self.inner.data.lock().unwrap_or_else(|e| e.into_inner());
        d[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// Make the next `count` requests fail with `errno`.
    #[cfg(feature = "test-util")]
    pub fn fail_next(&self, count: u64, errno: i32) {
        self.inner.fail_errno.store(errno, Ordering::SeqCst);
        self.inner.fail_count.store(count, Ordering::SeqCst);
    }

    /// Make the next `count` reads/writes transfer only half of their bytes.
    #[cfg(feature = "test-util")]
    pub fn short_next(&self, count: u64) {
        self.inner.short_io.store(count, Ordering::SeqCst);
    }

    pub fn flush_count(&self) -> u64 {
        self.inner.flushes.load(Ordering::SeqCst)
    }

    fn exec(inner: &Inner, req: &IoRequest) -> Result<u64, i32> {
        #[cfg(feature = "test-util")]
        if inner
            .fail_count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
            .is_ok()
        {
            return Err(inner.fail_errno.load(Ordering::SeqCst));
        }
        let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
        let size = data.len() as u64;
        let end = req.offset.checked_add(req.len).ok_or(libc::EINVAL)?;
        if end > size {
            return Err(libc::EIO);
        }
        match req.op {
            IoOp::Flush => {
                inner.flushes.fetch_add(1, Ordering::SeqCst);
                Ok(0)
            }
            IoOp::Discard | IoOp::WriteZeroes => {
                if inner.read_only {
                    return Err(libc::EROFS);
                }
                data[req.offset as usize..end as usize].fill(0);
                Ok(req.len)
            }
            IoOp::Read | IoOp::Write => {
                if req.op == IoOp::Write && inner.read_only {
                    return Err(libc::EROFS);
                }
                #[allow(unused_mut)]
                let mut limit = req.len;
                #[cfg(feature = "test-util")]
                if inner
                    .short_io
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                    .is_ok()
                {
                    limit = req.len / 2;
                }
                let mut pos = req.offset as usize;
                let mut done = 0u64;
                for v in &req.iovecs {
                    if done >= limit {
                        break;
                    }
                    let n = (v.iov_len as u64).min(limit - done) as usize;
                    if req.op == IoOp::Read {
                        // SAFETY: the iovec points to `iov_len` writable bytes that stay
                        // valid until completion (IoEngine::push contract); n <= iov_len.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(v.iov_base as *mut u8, n) };
                        dst.copy_from_slice(&data[pos..pos + n]);
                    } else {
                        // SAFETY: as above, readable bytes.
                        let src = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, n) };
                        data[pos..pos + n].copy_from_slice(src);
                    }
                    pos += n;
                    done += n as u64;
                }
                Ok(done)
            }
        }
    }
}

impl Backend for MemBackend {
    fn capacity(&self) -> u64 {
        self.inner
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len() as u64
    }

    fn engine(&self) -> io::Result<Box<dyn IoEngine>> {
        let inner = self.inner.clone();
        Ok(Box::new(SyncEngine::new(move |req: &IoRequest| {
            MemBackend::exec(&inner, req)
        })))
    }

    fn flush(&self) -> io::Result<()> {
        self.inner.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.inner.read_only
    }

    fn supports_discard(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("memory ({} bytes)", self.capacity())
    }

    /// The memory is the "file": `resize_file` grows (zero-filled) or
    /// shrinks it.
    fn resize(&self, size: u64, resize_file: bool) -> io::Result<()> {
        let mut data = self.inner.data.lock().unwrap_or_else(|e| e.into_inner());
        if resize_file {
            let n = usize::try_from(size)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size too large"))?;
            data.resize(n, 0);
        } else if size > data.len() as u64 {
            return Err(crate::resize_needs_file(
                "the memory disk",
                data.len() as u64,
                size,
            ));
        }
        Ok(())
    }
}
