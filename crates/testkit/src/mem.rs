//! Guest memory: plain anonymous memory for in-process tests, or a memfd
//! (as QEMU's `memory-backend-memfd,share=on`) that a daemon maps too, so the
//! test's view and the device's are the same pages.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap,
    MmapRegion,
};

/// Guest RAM: one region at `gpa`, optionally backed by a memfd.
pub struct GuestRam {
    /// The memfd, for memory shared with a daemon (`None`: anonymous).
    pub file: Option<File>,
    pub mem: GuestMemoryMmap,
    /// Guest physical address of the first byte.
    pub gpa: u64,
    pub size: u64,
}

/// A memfd of `len` bytes (sealable, so a test can seal or shrink it).
pub fn memfd(name: &std::ffi::CStr, len: u64) -> io::Result<File> {
    // SAFETY: memfd_create with a NUL-terminated name; the result is
    // checked and then owned by the File.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(len)?;
    Ok(f)
}

impl GuestRam {
    /// Anonymous guest memory at guest address 0 (in-process tests).
    pub fn anon(size: u64) -> GuestRam {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size as usize)])
            .expect("anonymous guest memory");
        GuestRam {
            file: None,
            mem,
            gpa: 0,
            size,
        }
    }

    /// `size` bytes of a fresh memfd, mapped shared at guest address `gpa`.
    pub fn memfd_at(gpa: u64, size: u64) -> io::Result<GuestRam> {
        let file = memfd(c"vblk-guest-ram", size)?;
        let region = MmapRegion::build(
            Some(FileOffset::new(file.try_clone()?, 0)),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .map_err(|e| io::Error::other(format!("mmap guest RAM: {e}")))?;
        let region = GuestRegionMmap::new(region, GuestAddress(gpa))
            .ok_or_else(|| io::Error::other("guest RAM region overflows"))?;
        let mem = GuestMemoryMmap::from_regions(vec![region])
            .map_err(|e| io::Error::other(format!("guest RAM: {e}")))?;
        Ok(GuestRam {
            file: Some(file),
            mem,
            gpa,
            size,
        })
    }

    /// `size` bytes of a fresh memfd at guest address 0.
    pub fn memfd(size: u64) -> io::Result<GuestRam> {
        Self::memfd_at(0, size)
    }

    /// The memfd's descriptor (-1 for anonymous memory).
    pub fn fd(&self) -> RawFd {
        self.file.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Our own (host virtual) address of guest address `gpa`.
    pub fn host_addr(&self, gpa: u64) -> u64 {
        assert!(self.contains(gpa, 0), "{gpa:#x} is not in guest RAM");
        let region = self
            .mem
            .find_region(GuestAddress(gpa))
            .expect("address in guest RAM");
        region.as_ptr() as u64 + (gpa - self.gpa)
    }

    /// Whether `[gpa, gpa + len)` is inside this RAM.
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        gpa >= self.gpa && gpa.saturating_add(len) <= self.gpa + self.size
    }

    pub fn write(&self, gpa: u64, bytes: &[u8]) {
        self.mem
            .write_slice(bytes, GuestAddress(gpa))
            .expect("write inside guest RAM");
    }

    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem
            .read_slice(&mut v, GuestAddress(gpa))
            .expect("read inside guest RAM");
        v
    }

    pub fn fill(&self, gpa: u64, byte: u8, len: usize) {
        self.write(gpa, &vec![byte; len]);
    }

    pub fn u8_at(&self, gpa: u64) -> u8 {
        self.read(gpa, 1)[0]
    }

    pub fn u16_at(&self, gpa: u64) -> u16 {
        self.mem
            .read_obj(GuestAddress(gpa))
            .expect("u16 in guest RAM")
    }

    pub fn u32_at(&self, gpa: u64) -> u32 {
        self.mem
            .read_obj(GuestAddress(gpa))
            .expect("u32 in guest RAM")
    }

    /// Shrink (or grow) the memfd under every mapping of it. After a
    /// shrink, touching the cut-off part SIGBUSes: the caller must not.
    pub fn truncate(&self, len: u64) -> io::Result<()> {
        match &self.file {
            Some(f) => f.set_len(len),
            None => Err(io::Error::other("anonymous guest RAM has no file")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfd_ram_is_the_file() {
        let ram = GuestRam::memfd_at(0x1000_0000, 0x10000).unwrap();
        ram.write(0x1000_0010, b"abc");
        assert_eq!(ram.read(0x1000_0010, 3), b"abc");
        let mut b = [0u8; 3];
        use std::os::unix::fs::FileExt;
        ram.file
            .as_ref()
            .unwrap()
            .read_exact_at(&mut b, 0x10)
            .unwrap();
        assert_eq!(&b, b"abc");
        assert!(ram.contains(0x1000_0000, 0x10000));
        assert!(!ram.contains(0x1000_0001, 0x10000));
        assert_ne!(ram.fd(), -1);
        assert_eq!(GuestRam::anon(4096).fd(), -1);
    }
}
