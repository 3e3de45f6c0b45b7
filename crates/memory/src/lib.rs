//! Guest memory mapped from a client's file descriptor, so that the client
//! cannot kill the daemon through it.
//!
//! Both transports receive guest RAM as (fd, offset, size) from a client
//! that may be hostile or compromised (a VMM): vfio-user's DMA_MAP and
//! vhost-user's SET_MEM_TABLE. Two things then turn into signals in the
//! device's threads:
//!
//! * **SIGBUS**: the mapping reaches past the end of the file, either from
//!   the start (a 4 MiB map of a 4 KiB memfd) or because the client shrinks
//!   the file afterwards. [`map_guest_region`] refuses the first case
//!   (`fstat`). The second cannot be refused when the fd is not sealed
//!   against shrinking (`F_SEAL_SHRINK`, which QEMU's memfd backends set),
//!   so it is contained instead: see below.
//! * **SIGSEGV**: the device writes a region the client mapped read-only.
//!   Read-only regions are mapped `MAP_SHARED` + `PROT_READ`: the device
//!   sees the client's current bytes (a `MAP_PRIVATE` copy would go stale
//!   after the device's first write to it) and can never write the client's
//!   file. `GuestMemoryMmap` does not look at the access mode
//!   (`GuestMemory::check_range(.., Permissions::Write)` is implemented for
//!   plain regions by discarding `Permissions`), so the page protection is
//!   what enforces it, and the resulting fault is contained like a SIGBUS.
//!
//! Containment: a process-wide SIGBUS/SIGSEGV handler looks the fault
//! address up in a fixed, lock-free table of registered guest mappings.
//! Inside one, it maps an anonymous zero page over the faulting page with
//! `mmap(MAP_FIXED)` (the access is then retried and succeeds on scratch
//! memory that is not the client's) and records the fault on the mapping;
//! [`GuestMapping::faults`] reports it and the transport marks the device
//! DEVICE_NEEDS_RESET. A fault anywhere else puts the previous disposition
//! back (Rust's stack-overflow handler, or the default action) and lets the
//! access fault again, so real crashes still crash.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use vm_memory::{FileOffset, GuestAddress, GuestRegionMmap, MmapRegion};

/// How many guest mappings can be registered at once, process-wide.
pub const MAX_MAPPINGS: usize = 4096;

/// Errors of [`map_guest_region`].
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("a guest memory region of 0 bytes")]
    Empty,
    #[error(
        "guest region {addr:#x}+{size:#x} wraps the address space or does not fit this process"
    )]
    Range { addr: u64, size: u64 },
    #[error(
        "file offset {offset:#x} + size {size:#x} reaches past the end of the file ({file_size:#x} bytes)"
    )]
    PastEof {
        offset: u64,
        size: u64,
        file_size: u64,
    },
    #[error("not a regular file or memfd (mode {0:#o})")]
    NotRegular(u32),
    #[error("fstat: {0}")]
    Stat(io::Error),
    #[error("mmap: {0}")]
    Mmap(String),
    #[error("all {0} guest mapping slots are in use")]
    NoSlot(usize),
    #[error("cannot install the SIGBUS/SIGSEGV handler: {0}")]
    Handler(io::Error),
}

impl MapError {
    /// The errno a protocol reply should carry for this error.
    pub fn errno(&self) -> i32 {
        match self {
            MapError::Empty
            | MapError::Range { .. }
            | MapError::PastEof { .. }
            | MapError::NotRegular(_) => libc::EINVAL,
            MapError::Stat(e) => e.raw_os_error().unwrap_or(libc::EIO),
            MapError::Mmap(_) => libc::ENOMEM,
            MapError::NoSlot(_) => libc::ENOSPC,
            MapError::Handler(_) => libc::EIO,
        }
    }
}

impl From<MapError> for io::Error {
    fn from(e: MapError) -> io::Error {
        let kind = match e.errno() {
            libc::EINVAL => io::ErrorKind::InvalidInput,
            libc::ENOMEM => io::ErrorKind::OutOfMemory,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Faults contained in one mapping since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults(u32);

const FAULT_BUS: u32 = 1;
const FAULT_SEGV: u32 = 2;

impl Faults {
    /// None so far: the mapping is intact.
    pub fn none(self) -> bool {
        self.0 == 0
    }
    /// SIGBUS: the file was shrunk under the mapping.
    pub fn past_eof(self) -> bool {
        self.0 & FAULT_BUS != 0
    }
    /// SIGSEGV: an access the mapping does not allow (a device write to a
    /// read-only region).
    pub fn protection(self) -> bool {
        self.0 & FAULT_SEGV != 0
    }
}

impl std::fmt::Display for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.past_eof(), self.protection()) {
            (false, false) => write!(f, "intact"),
            (true, false) => write!(f, "its file was shrunk under it"),
            (false, true) => write!(f, "the device wrote to it while it is read-only"),
            (true, true) => write!(f, "its file was shrunk and it was written while read-only"),
        }
    }
}

// ----------------------------------------------------------------------
// The registry the signal handler reads: fixed size, atomics only.
// ----------------------------------------------------------------------

const FREE: u8 = 0;
const CLAIMED: u8 = 1;
const ACTIVE: u8 = 2;

struct Slot {
    state: AtomicU8,
    start: AtomicUsize,
    len: AtomicUsize,
    faults: AtomicU32,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            state: AtomicU8::new(FREE),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            faults: AtomicU32::new(0),
        }
    }
}

static TABLE: [Slot; MAX_MAPPINGS] = [const { Slot::new() }; MAX_MAPPINGS];
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
static CONTAINED: AtomicU64 = AtomicU64::new(0);
static OLD_BUS: OnceLock<libc::sigaction> = OnceLock::new();
static OLD_SEGV: OnceLock<libc::sigaction> = OnceLock::new();

/// Faults contained so far, process-wide (for counters and tests; a cheap
/// "did anything happen" check before [`faulted_within`]).
pub fn contained_faults() -> u64 {
    CONTAINED.load(Ordering::Relaxed)
}

/// Whether a registered mapping lying inside the host range
/// `[start, start + len)` has contained a fault: tells one device's guest
/// memory from another's.
pub fn faulted_within(start: usize, len: usize) -> bool {
    TABLE.iter().any(|s| {
        s.state.load(Ordering::Acquire) == ACTIVE && s.faults.load(Ordering::Relaxed) != 0 && {
            let at = s.start.load(Ordering::Relaxed);
            at >= start && at - start < len
        }
    })
}

fn claim() -> Option<usize> {
    TABLE.iter().position(|s| {
        s.state
            .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

fn activate(i: usize, start: usize, len: usize) {
    if let Some(s) = TABLE.get(i) {
        s.start.store(start, Ordering::Relaxed);
        s.len.store(len, Ordering::Relaxed);
        s.faults.store(0, Ordering::Relaxed);
        s.state.store(ACTIVE, Ordering::Release);
    }
}

fn release(i: usize) {
    if let Some(s) = TABLE.get(i) {
        s.state.store(FREE, Ordering::Release);
    }
}

/// Async-signal-safe: atomics only.
fn find(addr: usize) -> Option<&'static Slot> {
    TABLE.iter().find(|s| {
        s.state.load(Ordering::Acquire) == ACTIVE && {
            let start = s.start.load(Ordering::Relaxed);
            let len = s.len.load(Ordering::Relaxed);
            addr >= start && addr - start < len
        }
    })
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel hands SA_SIGINFO handlers a valid siginfo_t; for
    // SIGBUS and SIGSEGV `si_addr` is the union member it filled in.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // si_code > 0: raised by the kernel for an access, not sent by kill().
    if code > 0 {
        if let Some(slot) = find(addr) {
            let page = addr & !(PAGE_SIZE.load(Ordering::Relaxed) - 1);
            // SAFETY: `page` lies inside a registered guest mapping that is
            // alive (slots are released before their munmap), so replacing
            // this one page of it with anonymous memory touches nothing
            // else; mmap is a plain system call, safe in a signal handler.
            let p = unsafe {
                libc::mmap(
                    page as *mut libc::c_void,
                    PAGE_SIZE.load(Ordering::Relaxed),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                let bit = if sig == libc::SIGBUS {
                    FAULT_BUS
                } else {
                    FAULT_SEGV
                };
                slot.faults.fetch_or(bit, Ordering::AcqRel);
                CONTAINED.fetch_add(1, Ordering::Relaxed);
                return; // the access is retried on the scratch page
            }
        }
    }
    // Not ours: the previous disposition handles the repeated fault.
    let old = if sig == libc::SIGBUS {
        OLD_BUS.get()
    } else {
        OLD_SEGV.get()
    };
    // SAFETY: sigaction/signal/raise are async-signal-safe; `old` is a
    // disposition the kernel gave us earlier.
    unsafe {
        match old {
            Some(o) => {
                libc::sigaction(sig, o, std::ptr::null_mut());
            }
            None => {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if code <= 0 {
            libc::raise(sig);
        }
    }
}

fn install_handler() -> Result<(), MapError> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        // SAFETY: sysconf has no side effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE_SIZE.store(page as usize, Ordering::Relaxed);
        }
        for (sig, old) in [(libc::SIGBUS, &OLD_BUS), (libc::SIGSEGV, &OLD_SEGV)] {
            // SAFETY: an all-zero sigaction is a valid value to fill in.
            let mut prev: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: reads the current disposition into `prev`, ours.
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut prev) } != 0 {
                return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
            let _ = old.set(prev);
            // SAFETY: as above.
            let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
            sa.sa_sigaction = on_fault
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: sa_mask is inside `sa`, which we own.
            unsafe { libc::sigemptyset(&mut sa.sa_mask) };
            // SAFETY: a valid sigaction whose handler only uses atomics and
            // async-signal-safe calls.
            if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
        }
        Ok(())
    });
    r.map_err(|e| MapError::Handler(io::Error::from_raw_os_error(e)))
}

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
