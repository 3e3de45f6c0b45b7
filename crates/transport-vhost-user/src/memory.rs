//! The front end's memory table: regions received with `SET_MEM_TABLE` /
//! `ADD_MEM_REG`, checked against their file before they are mapped, and
//! the translation of ring addresses (front-end user addresses) to guest
//! addresses.

use std::fs::File;

use vblk_memory::{map_guest_region, GuestMapping, MapError};
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestUsize};

/// Most regions the table holds (`VHOST_USER_GET_MAX_MEM_SLOTS`). The same
/// figure as libvhost-user's `VHOST_USER_MAX_RAM_SLOTS` (the x86 KVM limit).
pub const MAX_MEM_SLOTS: usize = 509;

/// Why a region or a table was refused.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("memory region of size 0")]
    Empty,
    #[error("memory region {0:#x}+{1:#x}: address or offset arithmetic overflows")]
    Overflow(u64, u64),
    #[error("memory region at guest address {0:#x}: mmap offset {1:#x} is not page aligned")]
    Unaligned(u64, u64),
    #[error("memory region at guest address {0:#x} overlaps another region")]
    Overlap(u64),
    #[error("too many memory regions (at most {MAX_MEM_SLOTS})")]
    TooMany,
    #[error("no memory region matches guest address {0:#x} size {1:#x}")]
    NoSuchRegion(u64, u64),
    #[error("memory region at guest address {0:#x}: {1}")]
    Map(u64, MapError),
}

/// One region as the front end described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionDesc {
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub userspace_addr: u64,
    pub mmap_offset: u64,
}

/// A mapped region, registered with the process-wide fault containment
/// (`vblk_memory`): unregistered when the last user of its mapping is gone.
#[derive(Debug)]
pub struct Mapped {
    pub desc: RegionDesc,
    mapping: GuestMapping,
}

/// The current memory table.
#[derive(Debug, Default)]
pub struct MemTable {
    /// Sorted by guest address, non-overlapping in guest and user space.
    regions: Vec<Mapped>,
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// Check `desc` against `file` and map it.
///
/// "Exactly one file descriptor from which the memory is mapped is passed
/// in the ancillary data" (vhost-user.rst, `VHOST_USER_ADD_MEM_REG`). The
/// front end is not trusted: a region whose `mmap offset + size` lies past
/// the end of the file would map pages that raise SIGBUS when touched, so
/// `map_guest_region` refuses it (`fstat`) before anything is mapped. A
/// file that is not sealed against shrinking (`F_SEAL_SHRINK`; QEMU's
/// memfd backends seal it) can still be truncated later: that fault is
/// contained by `vblk_memory` (a zero page over the faulting page) and the
/// device core breaks the ring that touched it.
pub fn map_region(desc: RegionDesc, file: File) -> Result<Mapped, MemoryError> {
    let RegionDesc {
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: uaddr,
        mmap_offset: offset,
    } = desc;
    if size == 0 {
        return Err(MemoryError::Empty);
    }
    if offset.checked_add(size).is_none()
        || gpa.checked_add(size).is_none()
        || uaddr.checked_add(size).is_none()
    {
        return Err(MemoryError::Overflow(gpa, size));
    }
    if !offset.is_multiple_of(page_size()) {
        return Err(MemoryError::Unaligned(gpa, offset));
    }
    let mapping = map_guest_region(file, offset, size, GuestAddress(gpa), true)
        .map_err(|e| MemoryError::Map(gpa, e))?;
    if mapping.sealed() {
        log::debug!("memory region {gpa:#x}+{size:#x}: fd sealed against shrinking");
    } else {
        log::info!(
            "memory region {gpa:#x}+{size:#x}: fd not sealed against shrinking; a truncation by the front end is contained and breaks the ring"
        );
    }
    Ok(Mapped { desc, mapping })
}

fn overlaps(a_start: u64, a_len: u64, b_start: u64, b_len: u64) -> bool {
    // Lengths are non-zero and ends do not overflow (checked in map_region).
    a_start < b_start.saturating_add(b_len) && b_start < a_start.saturating_add(a_len)
}

impl MemTable {
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// A table of exactly `regions` (SET_MEM_TABLE).
    pub fn from_regions(regions: Vec<Mapped>) -> Result<MemTable, MemoryError> {
        let mut t = MemTable::default();
        for r in regions {
            t.insert(r)?;
        }
        Ok(t)
    }

    /// Add a region (ADD_MEM_REG).
    pub fn insert(&mut self, r: Mapped) -> Result<(), MemoryError> {
        if self.regions.len() >= MAX_MEM_SLOTS {
            return Err(MemoryError::TooMany);
        }
        let d = r.desc;
        for o in &self.regions {
            if overlaps(
                d.guest_phys_addr,
                d.memory_size,
                o.desc.guest_phys_addr,
                o.desc.memory_size,
            ) || overlaps(
                d.userspace_addr,
                d.memory_size,
                o.desc.userspace_addr,
                o.desc.memory_size,
            ) {
                return Err(MemoryError::Overlap(d.guest_phys_addr));
            }
        }
        let at = self
            .regions
            .partition_point(|o| o.desc.guest_phys_addr < d.guest_phys_addr);
        self.regions.insert(at, r);
        Ok(())
    }

    /// Remove the region with this guest address, user address and size
    /// (REM_MEM_REG: "The memory region to be removed is identified by its
    /// guest address, user address and size. The mmap offset is ignored.").
    pub fn remove(&mut self, d: &RegionDesc) -> Result<Mapped, MemoryError> {
        let i = self
            .regions
            .iter()
            .position(|o| {
                o.desc.guest_phys_addr == d.guest_phys_addr
                    && o.desc.userspace_addr == d.userspace_addr
                    && o.desc.memory_size == d.memory_size
            })
            .ok_or(MemoryError::NoSuchRegion(d.guest_phys_addr, d.memory_size))?;
        Ok(self.regions.remove(i))
    }

    /// Would `d` fit (slot count, no overlap)? Checked before mapping.
    pub fn check_room(&self, d: &RegionDesc) -> Result<(), MemoryError> {
        if self.regions.len() >= MAX_MEM_SLOTS {
            return Err(MemoryError::TooMany);
        }
        for o in &self.regions {
            if overlaps(
                d.guest_phys_addr,
                d.memory_size.max(1),
                o.desc.guest_phys_addr,
                o.desc.memory_size,
            ) {
                return Err(MemoryError::Overlap(d.guest_phys_addr));
            }
        }
        Ok(())
    }

    /// The guest memory object for the device core.
    pub fn guest_memory(&self) -> GuestMemoryMmap {
        if self.regions.is_empty() {
            return GuestMemoryMmap::new();
        }
        let arcs = self.regions.iter().map(|r| r.mapping.region()).collect();
        // Sorted and non-overlapping by construction.
        GuestMemoryMmap::from_arc_regions(arcs).unwrap_or_else(|e| {
            log::error!("memory table inconsistent: {e}");
            GuestMemoryMmap::new()
        })
    }

    /// Translate a front-end user address range `[uaddr, uaddr + len)` to a
    /// guest address: "User addresses map to the vhost memory region
    /// containing that user address" (vhost-user.rst, "Memory access"). The
    /// whole range must lie in one region.
    pub fn uaddr_to_gpa(&self, uaddr: u64, len: u64) -> Option<GuestAddress> {
        self.regions.iter().find_map(|r| {
            let d = &r.desc;
            let off = uaddr.checked_sub(d.userspace_addr)?;
            let end = off.checked_add(len)?;
            if off < d.memory_size && end <= d.memory_size {
                d.guest_phys_addr.checked_add(off).map(GuestAddress)
            } else {
                None
            }
        })
    }

    /// Total mapped bytes.
    pub fn total(&self) -> GuestUsize {
        self.regions
            .iter()
            .fold(0u64, |a, r| a.saturating_add(r.desc.memory_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd(len: u64) -> File {
        use std::os::unix::io::FromRawFd;
        // SAFETY: memfd_create with a valid C string; the fd is ours.
        let fd = unsafe { libc::memfd_create(c"t".as_ptr(), libc::MFD_ALLOW_SEALING) };
        assert!(fd >= 0);
        // SAFETY: fd is a fresh descriptor we own.
        let f = unsafe { File::from_raw_fd(fd) };
        f.set_len(len).unwrap();
        f
    }

    fn desc(gpa: u64, size: u64, uaddr: u64, off: u64) -> RegionDesc {
        RegionDesc {
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: uaddr,
            mmap_offset: off,
        }
    }

    #[test]
    fn region_past_eof_is_refused_before_mapping() {
        let e = map_region(desc(0, 0x3000, 0x10000, 0), memfd(0x2000)).unwrap_err();
        assert!(
            matches!(e, MemoryError::Map(_, MapError::PastEof { .. })),
            "{e}"
        );
        let e = map_region(desc(0, 0x2000, 0x10000, 0x1000), memfd(0x2000)).unwrap_err();
        assert!(
            matches!(e, MemoryError::Map(_, MapError::PastEof { .. })),
            "{e}"
        );
        let e = map_region(desc(0, 0x1000, 0, u64::MAX - 0x800), memfd(0x2000)).unwrap_err();
        assert!(matches!(e, MemoryError::Overflow(..)), "{e}");
        let e = map_region(desc(0, 0x1000, 0, 0x800), memfd(0x2000)).unwrap_err();
        assert!(matches!(e, MemoryError::Unaligned(..)), "{e}");
        let e = map_region(desc(0, 0, 0, 0), memfd(0x2000)).unwrap_err();
        assert!(matches!(e, MemoryError::Empty), "{e}");
        assert!(map_region(desc(0, 0x1000, 0, 0x1000), memfd(0x2000)).is_ok());
    }

    #[test]
    fn a_socket_is_not_memory() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let f = File::from(std::os::fd::OwnedFd::from(a));
        let e = map_region(desc(0, 0x1000, 0, 0), f).unwrap_err();
        assert!(
            matches!(e, MemoryError::Map(_, MapError::NotRegular(_))),
            "{e}"
        );
    }

    #[test]
    fn table_translation_overlap_and_removal() {
        let mut t = MemTable::default();
        t.insert(map_region(desc(0, 0x4000, 0x7000_0000, 0), memfd(0x4000)).unwrap())
            .unwrap();
        t.insert(map_region(desc(0x10000, 0x2000, 0x9000_0000, 0), memfd(0x2000)).unwrap())
            .unwrap();
        let e = t
            .insert(map_region(desc(0x1000, 0x1000, 0x5000_0000, 0), memfd(0x1000)).unwrap())
            .unwrap_err();
        assert!(matches!(e, MemoryError::Overlap(_)));
        let e = t
            .insert(map_region(desc(0x20000, 0x1000, 0x7000_1000, 0), memfd(0x1000)).unwrap())
            .unwrap_err();
        assert!(
            matches!(e, MemoryError::Overlap(_)),
            "user addresses overlap"
        );
        assert_eq!(
            t.uaddr_to_gpa(0x9000_0100, 0x100),
            Some(GuestAddress(0x10100))
        );
        assert_eq!(t.uaddr_to_gpa(0x9000_1f00, 0x200), None, "crosses the end");
        assert_eq!(t.uaddr_to_gpa(0x6fff_ffff, 2), None);
        assert_eq!(t.uaddr_to_gpa(u64::MAX, 2), None);
        let m = t.guest_memory();
        use vm_memory::GuestMemoryBackend;
        assert_eq!(m.num_regions(), 2);
        assert!(t.remove(&desc(0x10000, 0x1000, 0x9000_0000, 0)).is_err());
        t.remove(&desc(0x10000, 0x2000, 0x9000_0000, 0xdead))
            .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.total(), 0x4000);
    }
}
