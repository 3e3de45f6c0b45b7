//! Inflight I/O tracking (`VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD`), split
//! rings.
//!
//! vhost-user.rst, "Inflight I/O tracking": the back-end keeps, in a buffer
//! shared with the front end, which descriptor heads it has taken from the
//! avail ring and not yet returned, so that after a crash or a restart the
//! next back-end can "resubmit inflight DescStateSplit entries in order of
//! their counter value". The buffer is one region per queue:
//!
//! ```text
//! u64 features; u16 version; u16 desc_num; u16 last_batch_head; u16 used_idx;
//! DescStateSplit desc[desc_num];   // u8 inflight; u8 padding[5]; u16 next; u64 counter
//! ```
//!
//! Each queue region is `ALIGN_UP(16 * queue_size + 2, 64)` bytes, as
//! libvhost-user lays it out (`vu_inflight_queue_size`), so a buffer
//! written by one back-end can be read by another.
//!
//! The buffer is shared memory the front end can write at any time: every
//! value read from it (version, indices, counters) is treated as hostile,
//! and every access is bounds-checked against the mapping.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::sync::atomic::{fence, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use vblk_device::InflightLog;

/// Byte alignment of each queue region (libvhost-user `INFLIGHT_ALIGNMENT`).
pub const INFLIGHT_ALIGNMENT: u64 = 64;
/// "The version of this region. It's 1 currently."
pub const INFLIGHT_VERSION: u16 = 1;

const HDR: usize = 16;
const DESC: usize = 16;
const OFF_VERSION: usize = 8;
const OFF_DESC_NUM: usize = 10;
const OFF_LAST_BATCH_HEAD: usize = 12;
const OFF_USED_IDX: usize = 14;
const D_INFLIGHT: usize = 0;
const D_NEXT: usize = 6;
const D_COUNTER: usize = 8;

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

/// Size of one queue's region: `ALIGN_UP(sizeof(DescStateSplit) *
/// queue_size + sizeof(uint16_t), INFLIGHT_ALIGNMENT)` (libvhost-user).
/// Always at least the 16-byte header plus `queue_size` entries.
pub fn queue_region_size(queue_size: u16) -> u64 {
    let raw = 16 * u64::from(queue_size) + 2;
    raw.div_ceil(INFLIGHT_ALIGNMENT) * INFLIGHT_ALIGNMENT
}

/// A shared mapping, unmapped on drop.
#[derive(Debug)]
struct SharedMap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access goes through
// atomics (see `atomic`), so sharing the pointer between threads is sound.
unsafe impl Send for SharedMap {}
// SAFETY: as above.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Map `len` bytes of `file` from `offset` (page aligned), shared.
    fn map(file: &File, offset: u64, len: usize) -> io::Result<SharedMap> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a fresh shared mapping of a file we hold; the result is
        // checked against MAP_FAILED and owned by the returned value.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap { ptr: p.cast(), len })
    }

    /// The atomic of type `T` at byte `off`, if it lies in the mapping and
    /// is aligned.
    fn atomic<T>(&self, off: usize) -> Option<&T> {
        let size = std::mem::size_of::<T>();
        let end = off.checked_add(size)?;
        if end > self.len || !off.is_multiple_of(std::mem::align_of::<T>()) {
            return None;
        }
        // SAFETY: `off..off + size` lies inside the live mapping (checked
        // above) and the mapping is page aligned, so the address is aligned
        // for T (checked above). T is only instantiated with AtomicU8/16/64,
        // which are valid for any bit pattern and may be accessed
        // concurrently (the front end shares this memory).
        Some(unsafe { &*(self.ptr.add(off) as *const T) })
    }

    fn load8(&self, off: usize) -> u8 {
        self.atomic::<AtomicU8>(off)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
    fn store8(&self, off: usize, v: u8) {
        if let Some(a) = self.atomic::<AtomicU8>(off) {
            a.store(v, Ordering::Release)
        }
    }
    fn load16(&self, off: usize) -> u16 {
        self.atomic::<AtomicU16>(off)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
    fn store16(&self, off: usize, v: u16) {
        if let Some(a) = self.atomic::<AtomicU16>(off) {
            a.store(v, Ordering::Release)
        }
    }
    fn load64(&self, off: usize) -> u64 {
        self.atomic::<AtomicU64>(off)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
    fn store64(&self, off: usize, v: u64) {
        if let Some(a) = self.atomic::<AtomicU64>(off) {
            a.store(v, Ordering::Release)
        }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `map`; no
        // reference into it outlives `self` (accessors borrow `self`).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
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

/// The inflight state of one queue region: implements the "When receiving
/// available buffers" and "When supplying used buffers" steps for the
/// device core, and the "When reconnecting" steps for a ring start.
#[derive(Debug)]
pub struct QueueInflight {
    map: Arc<SharedMap>,
    base: usize,
    /// Heads are below this (the ring size, at most the region's queue size).
    desc_num: u16,
    /// The "global counter".
    counter: u64,
    /// Heads passed to `completing` since the last `published`.
    batch: Vec<u16>,
}

/// What a ring start has to do after reading the inflight region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Heads to execute again, oldest first.
    pub resubmit: Vec<u16>,
    /// Where the avail ring continues: the used index plus the number of
    /// heads still in flight (libvhost-user `vu_check_queue_inflights`:
    /// every head taken from the avail ring is either on the used ring or
    /// in flight).
    pub next_avail: Option<u16>,
    /// The region was uninitialized (version 0) and has been initialized.
    pub fresh: bool,
}

impl QueueInflight {
    fn desc(&self, head: u16, field: usize) -> Option<usize> {
        if head >= self.desc_num {
            return None;
        }
        self.base
            .checked_add(HDR)?
            .checked_add(usize::from(head).checked_mul(DESC)?)?
            .checked_add(field)
    }

    fn set_inflight(&self, head: u16, v: u8) {
        if let Some(o) = self.desc(head, D_INFLIGHT) {
            self.map.store8(o, v);
        }
    }

    pub fn version(&self) -> u16 {
        self.map.load16(self.base + OFF_VERSION)
    }

    pub fn used_idx(&self) -> u16 {
        self.map.load16(self.base + OFF_USED_IDX)
    }

    /// "When reconnecting", given the `idx` of the used ring as it is in
    /// guest memory now.
    pub fn recover(&mut self, used_ring_idx: u16) -> Recovery {
        self.batch.clear();
        if self.version() != INFLIGHT_VERSION {
            // "Zero value indicates an uninitialized buffer" (and any other
            // value is one we cannot read): start from a clean region.
            for h in 0..self.desc_num {
                self.set_inflight(h, 0);
            }
            self.map.store16(self.base + OFF_USED_IDX, used_ring_idx);
            self.map.store16(self.base + OFF_LAST_BATCH_HEAD, 0);
            self.map.store16(self.base + OFF_VERSION, INFLIGHT_VERSION);
            self.counter = 0;
            return Recovery {
                resubmit: Vec::new(),
                next_avail: None,
                fresh: true,
            };
        }
        // 1. "If the value of used_idx does not match the idx value of used
        //    ring (means the inflight field of DescStateSplit entries in
        //    last batch may be incorrect),
        //    a. Subtract the value of used_idx from the idx value of used
        //       ring to get last batch size of DescStateSplit entries
        //    b. Set the inflight field of each DescStateSplit entry to 0 in
        //       last batch list which starts from last_batch_head
        //    c. Set used_idx to the idx value of used ring"
        let recorded = self.used_idx();
        if recorded != used_ring_idx {
            // A batch is never larger than the ring: a bigger difference
            // comes from a corrupt region and is bounded here.
            let batch = used_ring_idx.wrapping_sub(recorded).min(self.desc_num);
            let mut h = self.map.load16(self.base + OFF_LAST_BATCH_HEAD);
            for _ in 0..batch {
                let Some(next) = self.desc(h, D_NEXT) else {
                    break;
                };
                self.set_inflight(h, 0);
                h = self.map.load16(next);
            }
            fence(Ordering::Release);
            self.map.store16(self.base + OFF_USED_IDX, used_ring_idx);
        }
        // 2. "Resubmit inflight DescStateSplit entries in order of their
        //    counter value".
        let mut inflight: Vec<(u64, u16)> = (0..self.desc_num)
            .filter(|h| self.desc(*h, D_INFLIGHT).map(|o| self.map.load8(o)) == Some(1))
            .map(|h| (self.desc(h, D_COUNTER).map_or(0, |o| self.map.load64(o)), h))
            .collect();
        inflight.sort_unstable();
        self.counter = inflight.last().map_or(0, |(c, _)| c.wrapping_add(1));
        let n = u16::try_from(inflight.len()).unwrap_or(u16::MAX);
        Recovery {
            resubmit: inflight.into_iter().map(|(_, h)| h).collect(),
            next_avail: Some(used_ring_idx.wrapping_add(n)),
            fresh: false,
        }
    }
}

impl InflightLog for QueueInflight {
    /// "When receiving available buffers from the driver: 1. Get the next
    /// available head-descriptor index from available ring, i 2. Set
    /// desc[i].counter to the value of global counter 3. Increase global
    /// counter by 1 4. Set desc[i].inflight to 1"
    fn popped(&mut self, head: u16) {
        if let Some(o) = self.desc(head, D_COUNTER) {
            self.map.store64(o, self.counter);
            self.counter = self.counter.wrapping_add(1);
            fence(Ordering::Release);
            self.set_inflight(head, 1);
        }
    }

    /// "When supplying used buffers to the driver: 1. Get corresponding
    /// used head-descriptor index, i 2. Set desc[i].next to last_batch_head
    /// 3. Set last_batch_head to i"
    fn completing(&mut self, head: u16) {
        let Some(next) = self.desc(head, D_NEXT) else {
            return;
        };
        let last = self.map.load16(self.base + OFF_LAST_BATCH_HEAD);
        self.map.store16(next, last);
        self.map.store16(self.base + OFF_LAST_BATCH_HEAD, head);
        self.batch.push(head);
    }

    /// "5. Increase the idx value of used ring by the size of the batch
    /// [done by the core] 6. Set the inflight field of each DescStateSplit
    /// entry in the batch to 0 7. Set used_idx to the idx value of used
    /// ring"
    fn published(&mut self, used_idx: u16) {
        for h in std::mem::take(&mut self.batch) {
            self.set_inflight(h, 0);
        }
        fence(Ordering::Release);
        self.map.store16(self.base + OFF_USED_IDX, used_idx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(nq: u16, qs: u16) -> (InflightRegion, File) {
        let a = InflightRegion::allocate(nq, qs).unwrap();
        let r = InflightRegion::map(&a.file, a.mmap_size, a.mmap_offset, nq, qs).unwrap();
        (r, a.file)
    }

    #[test]
    fn layout_matches_libvhost_user() {
        assert_eq!(queue_region_size(128), 2112);
        assert_eq!(queue_region_size(1), 64);
        assert_eq!(queue_region_size(4), 128);
        for qs in [1u16, 2, 3, 4, 255, 256, 1024, 32768] {
            assert!(queue_region_size(qs) >= 16 + 16 * u64::from(qs));
            assert_eq!(queue_region_size(qs) % 64, 0);
        }
        let a = InflightRegion::allocate(2, 256).unwrap();
        assert_eq!(a.mmap_size, 2 * queue_region_size(256));
        assert_eq!(a.file.metadata().unwrap().len(), a.mmap_size);
        // Sealed: cannot shrink.
        assert!(a.file.set_len(0).is_err());
    }

    #[test]
    fn map_checks_size_and_file() {
        let a = InflightRegion::allocate(1, 16).unwrap();
        assert!(matches!(
            InflightRegion::map(&a.file, a.mmap_size, 0, 2, 16),
            Err(InflightError::TooSmall { .. })
        ));
        assert!(matches!(
            InflightRegion::map(&a.file, 1 << 20, 4096, 1, 16),
            Err(InflightError::PastEof { .. })
        ));
        assert!(matches!(
            InflightRegion::map(&a.file, a.mmap_size, 0, 0, 16),
            Err(InflightError::BadGeometry(..))
        ));
        assert!(InflightRegion::map(&a.file, a.mmap_size, 0, 1, 16).is_ok());
        let r = InflightRegion::map(&a.file, a.mmap_size, 0, 1, 16).unwrap();
        assert!(r.queue(1, 16).is_none());
        assert!(r.queue(0, 32).is_none(), "ring larger than the region");
    }

    #[test]
    fn log_then_recover() {
        let (r, _f) = region(1, 8);
        let mut q = r.queue(0, 8).unwrap();
        let rec = q.recover(0);
        assert!(rec.fresh);
        assert_eq!(q.version(), 1);
        // Pop 5, 2, 7; complete 2 and publish (used idx 1); complete 5,
        // write its used element, crash before publishing.
        q.popped(5);
        q.popped(2);
        q.popped(7);
        q.completing(2);
        q.published(1);
        q.completing(5);
        let mut q2 = r.queue(0, 8).unwrap();
        let rec = q2.recover(1);
        assert_eq!(rec.resubmit, vec![5, 7]);
        assert_eq!(rec.next_avail, Some(3));
        // Same, but the used idx reached the guest (2) before the crash:
        // 5 is done, only 7 is resubmitted.
        let mut q3 = r.queue(0, 8).unwrap();
        let rec = q3.recover(2);
        assert_eq!(rec.resubmit, vec![7]);
        assert_eq!(rec.next_avail, Some(3));
        assert_eq!(q3.used_idx(), 2);
        // Counter continues after the newest resubmitted head.
        q3.popped(1);
        let mut q4 = r.queue(0, 8).unwrap();
        assert_eq!(q4.recover(2).resubmit, vec![7, 1]);
    }

    #[test]
    fn hostile_region_is_bounded() {
        let (r, f) = region(1, 4);
        let map = SharedMap::map(&f, 0, queue_region_size(4) as usize).unwrap();
        // version 1, last_batch_head out of range, used_idx far behind,
        // every inflight byte set, counters random.
        map.store16(OFF_VERSION, 1);
        map.store16(OFF_LAST_BATCH_HEAD, 999);
        map.store16(OFF_USED_IDX, 40000);
        for h in 0..4usize {
            map.store8(HDR + DESC * h, 1);
            map.store16(HDR + DESC * h + D_NEXT, 0xffff);
            map.store64(HDR + DESC * h + D_COUNTER, u64::MAX - h as u64);
        }
        let mut q = r.queue(0, 4).unwrap();
        let rec = q.recover(3);
        assert_eq!(rec.resubmit, vec![3, 2, 1, 0]);
        assert_eq!(rec.next_avail, Some(7));
        // Out-of-range heads from the core are ignored.
        q.popped(4);
        q.completing(u16::MAX);
        q.published(0);
        assert!(map.atomic::<AtomicU64>(usize::MAX - 2).is_none());
        assert!(map.atomic::<AtomicU16>(1).is_none());
    }
}
