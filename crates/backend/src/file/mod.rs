//! A raw image file (or block device), read and written with
//! `preadv`/`pwritev` (synchronous engine) or io_uring (see [`crate::uring`]).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sync_io::{exec_sync, SyncFile};
use crate::{Backend, BlockSizes, IoEngine, IoRequest, SyncEngine};

// Opening (or creating) the image and probing its size and block sizes
// is in `open`; serving it (engines, flush, resize) is the `Backend`
// implementation below.
mod open;
#[cfg(test)]
mod tests;

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
