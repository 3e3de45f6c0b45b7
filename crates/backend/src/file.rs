//! A raw image file (or block device), read and written with
//! `preadv`/`pwritev` (synchronous engine) or io_uring (see [`crate::uring`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{check_size, Backend, IoEngine, IoOp, IoRequest, SyncEngine};

/// Host page-cache use, named as qemu-storage-daemon users know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Go through the host page cache; FLUSH is an `fdatasync`.
    #[default]
    Writeback,
    /// `O_DIRECT`: bypass the host page cache; FLUSH is still an `fdatasync`.
    None,
}

/// How to open an image.
#[derive(Debug, Clone, Default)]
pub struct FileOptions {
    pub read_only: bool,
    /// Create a sparse file of this size if the path does not exist.
    pub create_size: Option<u64>,
    pub cache: CacheMode,
    /// Use io_uring (falls back to the synchronous engine if unavailable).
    pub io_uring: bool,
}

/// A raw image file.
pub struct FileBackend {
    file: Arc<File>,
    path: PathBuf,
    size: u64,
    opts: FileOptions,
    block_device: bool,
    warned_uring: std::sync::atomic::AtomicBool,
}

fn ctx(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

impl FileBackend {
    /// Open (or create) an image. Errors name the file and the reason.
    pub fn open(path: &Path, opts: FileOptions) -> io::Result<Self> {
        if let Some(size) = opts.create_size {
            check_size(size)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("--size: {e}")))?;
        }
        let exists = path.exists();
        if !exists {
            match opts.create_size {
                Some(size) if !opts.read_only => {
                    let f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(path)
                        .map_err(|e| ctx(path, "cannot create image", e))?;
                    f.set_len(size)
                        .map_err(|e| ctx(path, "cannot size new image", e))?;
                    log::info!("created sparse image {} of {} bytes", path.display(), size);
                }
                Some(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "{}: image does not exist and --readonly forbids creating it",
                            path.display()
                        ),
                    ))
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "{}: image does not exist (give --size to create a sparse one)",
                            path.display()
                        ),
                    ))
                }
            }
        }
        let mut oo = OpenOptions::new();
        oo.read(true).write(!opts.read_only);
        if opts.cache == CacheMode::None {
            oo.custom_flags(libc::O_DIRECT);
        }
        let file = oo
            .open(path)
            .map_err(|e| ctx(path, "cannot open image", e))?;
        let meta = file
            .metadata()
            .map_err(|e| ctx(path, "cannot stat image", e))?;
        let block_device = meta.file_type().is_block_device();
        let size = if block_device {
            let mut sz: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 into `sz`, which outlives the call.
            let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut sz as *mut u64) };
            if r < 0 {
                return Err(ctx(
                    path,
                    "cannot get block device size",
                    io::Error::last_os_error(),
                ));
            }
            sz
        } else if meta.is_file() {
            meta.len()
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file or block device", path.display()),
            ));
        };
        if exists {
            if let Some(want) = opts.create_size {
                if want != size {
                    log::warn!(
                        "{}: exists with {} bytes; --size {} ignored",
                        path.display(),
                        size,
                        want
                    );
                }
            }
        }
        if size < 512 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: image is smaller than one 512-byte sector",
                    path.display()
                ),
            ));
        }
        if size % 512 != 0 {
            log::warn!(
                "{}: size {} is not a multiple of 512; the last {} bytes are not exported",
                path.display(),
                size,
                size % 512
            );
        }
        Ok(Self {
            file: Arc::new(file),
            path: path.to_path_buf(),
            size: size - size % 512,
            opts,
            block_device,
            warned_uring: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// Execute one request synchronously on `fd`. Short transfers are retried;
/// a transfer that makes no progress is an `EIO`.
pub(crate) fn exec_sync(fd: RawFd, req: &IoRequest) -> Result<u64, i32> {
    match req.op {
        IoOp::Read | IoOp::Write => {
            let mut iov = req.iovecs.clone();
            let mut start = 0usize;
            let mut offset = req.offset;
            let mut done = 0u64;
            while start < iov.len() {
                let cnt = (iov.len() - start).min(libc::UIO_MAXIOV as usize) as libc::c_int;
                let off = libc::off_t::try_from(offset).map_err(|_| libc::EINVAL)?;
                // SAFETY: the iovecs describe guest memory that stays mapped until the
                // request completes (IoEngine::push contract); `cnt` is within the slice.
                let r = unsafe {
                    if req.op == IoOp::Read {
                        libc::preadv(fd, iov[start..].as_ptr(), cnt, off)
                    } else {
                        libc::pwritev(fd, iov[start..].as_ptr(), cnt, off)
                    }
                };
                if r < 0 {
                    let e = io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO);
                    if e == libc::EINTR {
                        continue;
                    }
                    return Err(e);
                }
                if r == 0 {
                    return Err(libc::EIO);
                }
                let mut n = r as usize;
                done += n as u64;
                offset += n as u64;
                while n > 0 && start < iov.len() {
                    if n >= iov[start].iov_len {
                        n -= iov[start].iov_len;
                        start += 1;
                    } else {
                        // SAFETY: advancing within the same iovec by less than its length.
                        iov[start].iov_base =
                            unsafe { (iov[start].iov_base as *mut u8).add(n) } as *mut _;
                        iov[start].iov_len -= n;
                        n = 0;
                    }
                }
                while start < iov.len() && iov[start].iov_len == 0 {
                    start += 1;
                }
            }
            Ok(done)
        }
        IoOp::Flush => {
            // SAFETY: plain syscall on a file descriptor we own.
            if unsafe { libc::fdatasync(fd) } < 0 {
                return Err(io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO));
            }
            Ok(0)
        }
        IoOp::Discard | IoOp::WriteZeroes => {
            let off = libc::off_t::try_from(req.offset).map_err(|_| libc::EINVAL)?;
            let len = libc::off_t::try_from(req.len).map_err(|_| libc::EINVAL)?;
            let mode = if req.op == IoOp::Discard {
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
            } else {
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
            };
            // SAFETY: plain syscall on a file descriptor we own.
            if unsafe { libc::fallocate(fd, mode, off, len) } == 0 {
                return Ok(req.len);
            }
            let e = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if req.op == IoOp::Discard {
                // Discard is advisory: succeeding without deallocating is allowed.
                return Ok(req.len);
            }
            if e != libc::EOPNOTSUPP && e != libc::EINVAL {
                return Err(e);
            }
            write_zeroes_slow(fd, req.offset, req.len)
        }
    }
}

fn write_zeroes_slow(fd: RawFd, mut offset: u64, len: u64) -> Result<u64, i32> {
    let zeroes = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeroes.len() as u64) as usize;
        let off = libc::off_t::try_from(offset).map_err(|_| libc::EINVAL)?;
        // SAFETY: `zeroes` is a live buffer of at least `n` bytes.
        let r = unsafe { libc::pwrite(fd, zeroes.as_ptr() as *const _, n, off) };
        if r <= 0 {
            return Err(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        offset += r as u64;
        left -= r as u64;
    }
    Ok(len)
}

impl Backend for FileBackend {
    fn capacity(&self) -> u64 {
        self.size
    }

    fn engine(&self) -> io::Result<Box<dyn IoEngine>> {
        if self.opts.io_uring {
            match crate::uring::UringEngine::new(
                self.file.clone(),
                256,
                self.opts.cache == CacheMode::Writeback && !self.block_device,
            ) {
                Ok(e) => return Ok(Box::new(e)),
                Err(e) => {
                    if !self
                        .warned_uring
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        log::warn!(
                            "{}: --aio io-uring requested but io_uring is unavailable ({e}); \
                             FALLING BACK to synchronous preadv/pwritev on the queue threads \
                             (--aio threads silences this)",
                            self.path.display()
                        )
                    }
                }
            }
        }
        let file = self.file.clone();
        Ok(Box::new(SyncEngine::new(move |req: &IoRequest| {
            exec_sync(file.as_raw_fd(), req)
        })))
    }

    fn flush(&self) -> io::Result<()> {
        if self.opts.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn read_only(&self) -> bool {
        self.opts.read_only
    }

    fn supports_discard(&self) -> bool {
        !self.block_device
    }

    fn describe(&self) -> String {
        format!(
            "file {} ({} bytes, cache={}, {}{})",
            self.path.display(),
            self.size,
            if self.opts.cache == CacheMode::None {
                "none"
            } else {
                "writeback"
            },
            if self.opts.io_uring {
                "io_uring"
            } else {
                "sync"
            },
            if self.opts.read_only {
                ", read-only"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IoCompletion;

    fn iov(buf: &mut [u8]) -> libc::iovec {
        libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut _,
            iov_len: buf.len(),
        }
    }

    #[test]
    fn create_write_read_flush() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.img");
        let b = FileBackend::open(
            &p,
            FileOptions {
                create_size: Some(1 << 20),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(b.capacity(), 1 << 20);
        let mut e = b.engine().unwrap();
        let mut a = vec![0xabu8; 1024];
        let mut c = vec![0xcdu8; 512];
        // SAFETY: buffers outlive the reap below.
        unsafe {
            e.push(IoRequest {
                op: IoOp::Write,
                offset: 4096,
                len: 1536,
                iovecs: vec![iov(&mut a), iov(&mut c)],
                token: 7,
            });
            e.push(IoRequest {
                op: IoOp::Flush,
                offset: 0,
                len: 0,
                iovecs: vec![],
                token: 8,
            });
        }
        e.submit().unwrap();
        let mut out: Vec<IoCompletion> = vec![];
        e.reap(&mut out, 2).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].result, Ok(1536));
        let data = std::fs::read(&p).unwrap();
        assert!(data[4096..5120].iter().all(|&x| x == 0xab));
        assert!(data[5120..5632].iter().all(|&x| x == 0xcd));
        assert!(data[..4096].iter().all(|&x| x == 0));
    }

    #[test]
    fn errors_name_the_file() {
        let err = FileBackend::open(Path::new("/nonexistent/x.img"), FileOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/x.img"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = FileBackend::open(
            &dir.path().join("y.img"),
            FileOptions {
                create_size: Some(1000),
                ..Default::default()
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("multiple of 512"), "{err}");
    }

    #[test]
    fn io_uring_with_o_direct_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("direct.img");
        let b = match FileBackend::open(
            &p,
            FileOptions {
                create_size: Some(1 << 20),
                cache: CacheMode::None,
                io_uring: true,
                ..Default::default()
            },
        ) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("O_DIRECT unsupported here ({e}); skipped");
                return;
            }
        };
        let mut e = b.engine().unwrap();
        assert_eq!(e.name(), "io_uring");
        let layout = std::alloc::Layout::from_size_align(4096, 512).unwrap();
        // SAFETY: non-zero layout; freed below with the same layout.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        // SAFETY: `ptr` owns 4096 zeroed bytes until the dealloc below.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, 4096) };
        buf.fill(0x3c);
        let c = crate::testutil::one(&mut *e, IoOp::Write, 8192, 4096, &mut [&mut *buf]);
        assert_eq!(c.result, Ok(4096));
        buf.fill(0);
        let c = crate::testutil::one(&mut *e, IoOp::Read, 8192, 4096, &mut [&mut *buf]);
        assert_eq!(c.result, Ok(4096));
        assert!(buf.iter().all(|&x| x == 0x3c));
        let c = crate::testutil::one(&mut *e, IoOp::Flush, 0, 0, &mut []);
        assert_eq!(c.result, Ok(0));
        // SAFETY: allocated above with this layout; `buf` is not used after.
        unsafe { std::alloc::dealloc(ptr, layout) };
    }

    #[test]
    fn read_past_eof_is_eio_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.img");
        std::fs::write(&p, vec![1u8; 1024]).unwrap();
        let b = FileBackend::open(&p, FileOptions::default()).unwrap();
        let mut e = b.engine().unwrap();
        let mut buf = vec![0u8; 512];
        let c = crate::testutil::one(&mut *e, IoOp::Read, 1024, 512, &mut [&mut buf]);
        assert_eq!(c.result, Err(libc::EIO));
    }
}
