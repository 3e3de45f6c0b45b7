//! A raw image file (or block device), read and written with
//! `preadv`/`pwritev` (synchronous engine) or io_uring (see [`crate::uring`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sync_io::{exec_sync, probe_block_sizes, Direct, SyncFile};
use crate::{check_size, Backend, BlockSizes, IoEngine, IoRequest, SyncEngine};

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
    /// Bytes served (changes with an online resize).
    size: std::sync::atomic::AtomicU64,
    opts: FileOptions,
    block_device: bool,
    block_sizes: BlockSizes,
    /// What the engines' synchronous paths share (fd, `O_DIRECT`
    /// alignment, the read-modify-write lock).
    sync: SyncFile,
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
        let direct = opts.cache == CacheMode::None;
        let block_sizes = probe_block_sizes(file.as_raw_fd(), block_device, direct);
        log::debug!("{}: block sizes {block_sizes:?}", path.display());
        let sync = SyncFile {
            fd: file.as_raw_fd(),
            direct: direct
                .then(|| Direct::new(block_sizes.dio_mem_align, block_sizes.dio_offset_align)),
            rmw: Default::default(),
        };
        Ok(Self {
            file: Arc::new(file),
            path: path.to_path_buf(),
            size: std::sync::atomic::AtomicU64::new(size - size % 512),
            opts,
            block_device,
            block_sizes,
            sync,
            warned_uring: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// What the file or device holds now (it may have been grown or
    /// shrunk behind our back since it was opened).
    fn storage_size(&self) -> io::Result<u64> {
        if self.block_device {
            let mut sz: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 into `sz`, which outlives the call.
            let r =
                unsafe { libc::ioctl(self.file.as_raw_fd(), BLKGETSIZE64, &mut sz as *mut u64) };
            if r < 0 {
                return Err(ctx(
                    &self.path,
                    "cannot get block device size",
                    io::Error::last_os_error(),
                ));
            }
            Ok(sz)
        } else {
            let m = self
                .file
                .metadata()
                .map_err(|e| ctx(&self.path, "cannot stat image", e))?;
            Ok(m.len())
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

impl Backend for FileBackend {
    fn capacity(&self) -> u64 {
        self.size.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn engine(&self) -> io::Result<Box<dyn IoEngine>> {
        if self.opts.io_uring {
            match crate::uring::UringEngine::with_sync(
                self.file.clone(),
                self.sync.clone(),
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
        // The closure keeps the file open as long as the engine lives.
        let file = self.file.clone();
        let sync = self.sync.clone();
        Ok(Box::new(SyncEngine::new(move |req: &IoRequest| {
            let _keep = &file;
            exec_sync(&sync, req)
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

    fn block_sizes(&self) -> BlockSizes {
        self.block_sizes
    }

    fn resize(&self, size: u64, resize_file: bool) -> io::Result<()> {
        let refuse = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        let name = self.path.display();
        if resize_file && self.opts.read_only {
            return refuse(format!("{name} is open read-only: it cannot be resized"));
        }
        if resize_file && self.block_device {
            return refuse(format!(
                "{name} is a block device: vblk does not resize devices (resize it, then run vblk resize without --resize-file)"
            ));
        }
        let have = self.storage_size()?;
        if resize_file {
            if have != size {
                // The user asked for it: the file grows (sparse) or loses
                // everything past `size`.
                self.file
                    .set_len(size)
                    .map_err(|e| ctx(&self.path, "cannot resize image", e))?;
                // The new length must survive a crash like the data does.
                self.file
                    .sync_all()
                    .map_err(|e| ctx(&self.path, "cannot sync the new size", e))?;
                log::info!("{name}: resized from {have} to {size} bytes");
            }
        } else if size > have {
            return Err(crate::resize_needs_file(&name.to_string(), have, size));
        }
        self.size.store(size, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "file {} ({} bytes, cache={}, {}{})",
            self.path.display(),
            self.capacity(),
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
    use crate::{IoCompletion, IoOp};

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
                fua: false,
            });
            e.push(IoRequest {
                op: IoOp::Flush,
                offset: 0,
                len: 0,
                iovecs: vec![],
                token: 8,
                fua: false,
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

    /// Every engine and cache mode: a 64 KiB read and a 64 KiB write over a
    /// range whose middle 16 KiB are not in the page cache complete with
    /// `Ok(65536)` and move exactly the right bytes.
    #[test]
    fn partly_cached_64k_read_and_write_every_engine_and_cache_mode() {
        for io_uring in [false, true] {
            for cache in [CacheMode::Writeback, CacheMode::None] {
                let what = format!("io_uring={io_uring} cache={cache:?}");
                let dir = crate::testutil::real_fs_dir();
                let p = dir.path().join("pc.img");
                let init: Vec<u8> = (0..1usize << 18).map(|i| (i % 253) as u8).collect();
                std::fs::write(&p, &init).unwrap();
                let b = match FileBackend::open(
                    &p,
                    FileOptions {
                        cache,
                        io_uring,
                        ..Default::default()
                    },
                ) {
                    Ok(b) => b,
                    Err(e) if cache == CacheMode::None => {
                        eprintln!("{what}: O_DIRECT unsupported here ({e}); skipped");
                        continue;
                    }
                    Err(e) => panic!("{what}: {e}"),
                };
                let mut e = b.engine().unwrap();
                // Aligned buffers, so O_DIRECT takes the direct path.
                let mut buf = crate::AlignedBuf::new(65536, 4096).unwrap();
                crate::testutil::partly_cache(&p, 65536);
                let c = crate::testutil::one(
                    &mut *e,
                    IoOp::Read,
                    65536,
                    65536,
                    &mut [buf.as_mut_slice()],
                );
                assert_eq!(c.result, Ok(65536), "{what}: read");
                assert!(buf.as_slice() == &init[65536..131072], "{what}: read bytes");

                let new: Vec<u8> = (0..65536usize).map(|i| (i % 241) as u8 ^ 0xa5).collect();
                buf.as_mut_slice().copy_from_slice(&new);
                crate::testutil::partly_cache(&p, 65536);
                let c = crate::testutil::one(
                    &mut *e,
                    IoOp::Write,
                    65536,
                    65536,
                    &mut [buf.as_mut_slice()],
                );
                assert_eq!(c.result, Ok(65536), "{what}: write");
                let d = std::fs::read(&p).unwrap();
                assert!(d[65536..131072] == new[..], "{what}: written bytes");
                assert!(d[..65536] == init[..65536] && d[131072..] == init[131072..]);
                assert_eq!(e.in_flight(), 0);
            }
        }
    }

    #[test]
    fn block_sizes_are_probed_and_sane() {
        let dir = crate::testutil::real_fs_dir();
        let p = dir.path().join("bs.img");
        for cache in [CacheMode::Writeback, CacheMode::None] {
            let b = match FileBackend::open(
                &p,
                FileOptions {
                    create_size: Some(1 << 20),
                    cache,
                    ..Default::default()
                },
            ) {
                Ok(b) => b,
                Err(_) => continue,
            };
            let bs = b.block_sizes();
            for v in [bs.logical, bs.physical, bs.dio_offset_align] {
                assert!(v.is_power_of_two() && v >= 512, "{bs:?}");
            }
            assert!(bs.dio_mem_align.is_power_of_two(), "{bs:?}");
            assert!(bs.physical >= bs.logical, "{bs:?}");
            if cache == CacheMode::Writeback {
                assert_eq!(bs.logical, 512, "buffered files address 512-byte sectors");
            } else {
                assert_eq!(bs.logical, bs.dio_offset_align.max(512), "{bs:?}");
            }
        }
    }

    /// `--cache none` with guest buffers at odd addresses and odd lengths:
    /// both engines bounce instead of failing with `EINVAL`.
    #[test]
    fn cache_none_unaligned_guest_buffers_round_trip_on_both_engines() {
        for io_uring in [false, true] {
            let dir = crate::testutil::real_fs_dir();
            let p = dir.path().join("ua.img");
            let b = match FileBackend::open(
                &p,
                FileOptions {
                    create_size: Some(1 << 20),
                    cache: CacheMode::None,
                    io_uring,
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
            // 1 byte past an allocation: not even 2-byte aligned.
            let mut backing = vec![0u8; 8192 + 1];
            let data: Vec<u8> = (0..5120usize).map(|i| (i % 199) as u8 + 1).collect();
            backing[1..5121].copy_from_slice(&data);
            let (x, y) = backing[1..5121].split_at_mut(1536);
            let c = crate::testutil::one(&mut *e, IoOp::Write, 3 * 512, 5120, &mut [x, y]);
            assert_eq!(c.result, Ok(5120), "io_uring={io_uring}: write");
            let mut back = vec![0u8; 5121];
            let c = crate::testutil::one(&mut *e, IoOp::Read, 3 * 512, 5120, &mut [&mut back[1..]]);
            assert_eq!(c.result, Ok(5120), "io_uring={io_uring}: read");
            assert!(back[1..] == data[..]);
            let d = std::fs::read(&p).unwrap();
            assert!(d[1536..1536 + 5120] == data[..]);
            assert!(d[..1536].iter().chain(&d[6656..]).all(|&v| v == 0));
        }
    }
}
