//! Mapping a client's file as guest memory ([`map_guest_region`]): the
//! size and seal checks, the registration with the fault handler, and the
//! handle ([`GuestMapping`]) whose last reference unregisters it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use vm_memory::{FileOffset, GuestAddress, GuestRegionMmap, MmapRegion};

use crate::error::MapError;
use crate::faults::Faults;
use crate::handler::install_handler;
use crate::registry::{activate, claim, release, MAX_MAPPINGS, TABLE};

// ----------------------------------------------------------------------
// Mappings
// ----------------------------------------------------------------------

/// Mappings whose region was still shared when their handle was dropped:
/// they stay registered until the last user lets go, so that a fault in
/// them is still contained and their address range is not released to
/// the table while it is still mapped.
static GRAVEYARD: Mutex<Vec<(usize, Arc<GuestRegionMmap>)>> = Mutex::new(Vec::new());

fn reap() {
    let mut g = GRAVEYARD.lock().unwrap_or_else(|e| e.into_inner());
    g.retain(|(slot, region)| {
        if Arc::strong_count(region) == 1 {
            release(*slot);
            false // dropped here: munmap after the slot is free
        } else {
            true
        }
    });
}

/// One guest region mapped from a client's file and registered with the
/// fault handler. Insert [`GuestMapping::region`] into the guest memory;
/// keep the handle for as long as the region is in use, and drop it after
/// removing the region: the registration goes with the last reference.
pub struct GuestMapping {
    region: Arc<GuestRegionMmap>,
    slot: usize,
    guest_addr: GuestAddress,
    size: u64,
    writable: bool,
    sealed: bool,
}

impl std::fmt::Debug for GuestMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMapping")
            .field("guest_addr", &self.guest_addr)
            .field("size", &self.size)
            .field("writable", &self.writable)
            .field("sealed", &self.sealed)
            .field("faults", &self.faults())
            .finish()
    }
}

impl GuestMapping {
    /// The region, for `GuestMemoryMmap::insert_region`.
    pub fn region(&self) -> Arc<GuestRegionMmap> {
        self.region.clone()
    }
    pub fn guest_addr(&self) -> GuestAddress {
        self.guest_addr
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn writable(&self) -> bool {
        self.writable
    }
    /// The fd is sealed against shrinking: SIGBUS cannot happen.
    pub fn sealed(&self) -> bool {
        self.sealed
    }
    /// Faults contained in this mapping so far.
    pub fn faults(&self) -> Faults {
        TABLE
            .get(self.slot)
            .map_or(Faults(0), |s| Faults(s.faults.load(Ordering::Acquire)))
    }
}

impl Drop for GuestMapping {
    fn drop(&mut self) {
        if Arc::strong_count(&self.region) == 1 {
            // The field drops (munmap) after this returns: slot first.
            release(self.slot);
        } else {
            log::debug!(
                "guest region {:#x}+{:#x} still in use; unregistered when released",
                self.guest_addr.0,
                self.size
            );
            GRAVEYARD
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.slot, self.region.clone()));
        }
    }
}

/// Map `size` bytes of `file` at `file_offset` as guest memory at
/// `guest_addr`, shared with the client: read-write if `writable`, else
/// read-only (`PROT_READ`; a device write is then a contained fault, never
/// a write to the client's file).
///
/// Refused: an empty or wrapping range, a file that is not a regular file
/// (memfd, tmpfs, hugetlbfs), and `file_offset + size` past the file's
/// current size (which would SIGBUS on first touch). A file that can still
/// shrink (no `F_SEAL_SHRINK`) is accepted; a later shrink is contained by
/// the fault handler and reported by [`GuestMapping::faults`].
pub fn map_guest_region(
    file: File,
    file_offset: u64,
    size: u64,
    guest_addr: GuestAddress,
    writable: bool,
) -> Result<GuestMapping, MapError> {
    if size == 0 {
        return Err(MapError::Empty);
    }
    let range = MapError::Range {
        addr: guest_addr.0,
        size,
    };
    let len = usize::try_from(size).map_err(|_| MapError::Range {
        addr: guest_addr.0,
        size,
    })?;
    if guest_addr.0.checked_add(size - 1).is_none() {
        return Err(range);
    }
    // SAFETY: an all-zero stat is a valid value for fstat to fill in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is an open descriptor we own; `st` is ours.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut st) } != 0 {
        return Err(MapError::Stat(io::Error::last_os_error()));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(MapError::NotRegular(st.st_mode));
    }
    let file_size = u64::try_from(st.st_size).unwrap_or(0);
    match file_offset.checked_add(size) {
        Some(end) if end <= file_size => {}
        _ => {
            return Err(MapError::PastEof {
                offset: file_offset,
                size,
                file_size,
            })
        }
    }
    // SAFETY: F_GET_SEALS only reads the descriptor's seals; files that
    // cannot be sealed answer EINVAL (then: not sealed).
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    let sealed = seals >= 0 && seals & libc::F_SEAL_SHRINK != 0;
    install_handler()?;
    reap();
    let slot = claim().ok_or(MapError::NoSlot(MAX_MAPPINGS))?;
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    let mmap = match MmapRegion::build(
        Some(FileOffset::new(file, file_offset)),
        len,
        prot,
        libc::MAP_SHARED | libc::MAP_NORESERVE,
    ) {
        Ok(m) => m,
        Err(e) => {
            release(slot);
            return Err(MapError::Mmap(e.to_string()));
        }
    };
    let start = mmap.as_ptr() as usize;
    let Some(region) = GuestRegionMmap::new(mmap, guest_addr) else {
        release(slot);
        return Err(range);
    };
    activate(slot, start, len);
    if !sealed {
        log::debug!(
            "guest region {:#x}+{size:#x}: fd not sealed against shrinking; faults contained",
            guest_addr.0
        );
    }
    Ok(GuestMapping {
        region: Arc::new(region),
        slot,
        guest_addr,
        size,
        writable,
        sealed,
    })
}
