//! The whole inflight buffer of a connection: allocated for
//! GET_INFLIGHT_FD, or mapped for SET_INFLIGHT_FD after checking it
//! against its file; hands out one [`QueueInflight`] per ring.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::sync::Arc;

use super::layout::{queue_region_size, OFF_DESC_NUM};
use super::queue::QueueInflight;
use super::shared_map::SharedMap;

#[derive(Debug, thiserror::Error)]
pub enum InflightError {
    #[error("inflight region: {0} queues of size {1} is not a valid layout")]
    BadGeometry(u16, u16),
    #[error("inflight region: size {size:#x} at offset {offset:#x} is smaller than {need:#x} bytes for {queues} queues of size {queue_size}")]
    TooSmall {
        size: u64,
        offset: u64,
        need: u64,
        queues: u16,
        queue_size: u16,
    },
    #[error("inflight region: offset {offset:#x} + size {size:#x} lies past the end of its file ({file_size:#x} bytes)")]
    PastEof {
        offset: u64,
        size: u64,
        file_size: u64,
    },
    #[error("inflight region: offset {0:#x} is not page aligned")]
    Unaligned(u64),
    #[error("inflight region: the fd is not a regular file or memfd")]
    NotAFile,
    #[error("inflight region: {0}")]
    Io(#[from] io::Error),
}

/// The whole inflight buffer of one connection.
#[derive(Debug, Clone)]
pub struct InflightRegion {
    map: Arc<SharedMap>,
    num_queues: u16,
    queue_size: u16,
    stride: usize,
}

/// What GET_INFLIGHT_FD answers.
#[derive(Debug)]
pub struct Allocated {
    pub file: File,
    pub mmap_size: u64,
    pub mmap_offset: u64,
}

fn geometry(num_queues: u16, queue_size: u16) -> Result<(usize, u64), InflightError> {
    if num_queues == 0 || queue_size == 0 {
        return Err(InflightError::BadGeometry(num_queues, queue_size));
    }
    let stride = queue_region_size(queue_size);
    let total = stride
        .checked_mul(u64::from(num_queues))
        .ok_or(InflightError::BadGeometry(num_queues, queue_size))?;
    let stride =
        usize::try_from(stride).map_err(|_| InflightError::BadGeometry(num_queues, queue_size))?;
    Ok((stride, total))
}

impl InflightRegion {
    /// GET_INFLIGHT_FD: a fresh, zeroed buffer for `num_queues` queues of
    /// `queue_size` entries, in a memfd sealed against resizing.
    pub fn allocate(num_queues: u16, queue_size: u16) -> Result<Allocated, InflightError> {
        let (_, total) = geometry(num_queues, queue_size)?;
        // SAFETY: memfd_create with a valid NUL-terminated name.
        let fd = unsafe {
            libc::memfd_create(
                c"vblk-inflight".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        // ftruncate: the new bytes read as zero, i.e. version 0, "an
        // uninitialized buffer".
        file.set_len(total)?;
        // SAFETY: fcntl on our own memfd with a plain integer argument.
        let r = unsafe {
            libc::fcntl(
                file.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(Allocated {
            file,
            mmap_size: total,
            mmap_offset: 0,
        })
    }

    /// SET_INFLIGHT_FD: map the front end's buffer after checking it
    /// against its file.
    pub fn map(
        file: &File,
        mmap_size: u64,
        mmap_offset: u64,
        num_queues: u16,
        queue_size: u16,
    ) -> Result<InflightRegion, InflightError> {
        let (stride, need) = geometry(num_queues, queue_size)?;
        if mmap_size < need {
            return Err(InflightError::TooSmall {
                size: mmap_size,
                offset: mmap_offset,
                need,
                queues: num_queues,
                queue_size,
            });
        }
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        if page == 0 || !mmap_offset.is_multiple_of(page) {
            return Err(InflightError::Unaligned(mmap_offset));
        }
        let md = file.metadata()?;
        let ft = md.file_type();
        if !ft.is_file() || ft.is_socket() {
            return Err(InflightError::NotAFile);
        }
        let end = mmap_offset
            .checked_add(need)
            .ok_or(InflightError::BadGeometry(num_queues, queue_size))?;
        if end > md.len() {
            return Err(InflightError::PastEof {
                offset: mmap_offset,
                size: need,
                file_size: md.len(),
            });
        }
        // Only what the layout needs is mapped: a larger mmap_size adds
        // nothing we would read.
        let len = usize::try_from(need).map_err(|_| InflightError::BadGeometry(0, 0))?;
        let map = Arc::new(SharedMap::map(file, mmap_offset, len)?);
        let r = InflightRegion {
            map,
            num_queues,
            queue_size,
            stride,
        };
        // libvhost-user sets desc_num from the message on SET_INFLIGHT_FD;
        // the field is informational for us (we never trust it).
        for q in 0..num_queues {
            if let Some(base) = r.base(q) {
                r.map.store16(base + OFF_DESC_NUM, queue_size);
            }
        }
        Ok(r)
    }

    pub fn num_queues(&self) -> u16 {
        self.num_queues
    }

    pub fn queue_size(&self) -> u16 {
        self.queue_size
    }

    fn base(&self, q: u16) -> Option<usize> {
        if q >= self.num_queues {
            return None;
        }
        self.stride.checked_mul(usize::from(q))
    }

    /// The tracker of queue `q` for a ring of `ring_size` entries. `None`
    /// if the buffer has no region for that queue or its entries cannot
    /// cover every head of the ring.
    pub fn queue(&self, q: u16, ring_size: u16) -> Option<QueueInflight> {
        let base = self.base(q)?;
        if ring_size == 0 || ring_size > self.queue_size {
            return None;
        }
        Some(QueueInflight {
            map: self.map.clone(),
            base,
            desc_num: ring_size,
            counter: 0,
            batch: Vec::new(),
        })
    }
}
