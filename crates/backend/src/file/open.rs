//! Opening an image: creating a sparse file when asked, opening it
//! (`O_DIRECT` for `--cache none`), its size (file length or
//! `BLKGETSIZE64`) and block sizes, and what the storage holds now.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use super::{ctx, CacheMode, FileBackend, FileOptions};
use crate::check_size;
use crate::sync_io::{probe_block_sizes, Direct, SyncFile};

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
    pub(super) fn storage_size(&self) -> io::Result<u64> {
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
