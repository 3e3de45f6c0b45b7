//! Guest RAM in a memfd (shared with the device) and eventfds for the
//! interrupts the device signals.

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;

use vm_memory::GuestMemoryMmap;

/// Guest RAM at guest address 0, in a memfd as QEMU's
/// memory-backend-memfd,share=on: the test's view and the device's are the
/// same pages.
pub struct GuestRam {
    pub file: File,
    pub mem: GuestMemoryMmap,
    pub size: u64,
}

impl GuestRam {
    pub fn new(size: u64) -> GuestRam {
        let ram = vblk_testkit::GuestRam::memfd(size).unwrap();
        GuestRam {
            file: ram.file.expect("memfd"),
            mem: ram.mem,
            size,
        }
    }
}

/// An eventfd: (our end, the end handed to the device).
pub fn eventfd() -> (File, File) {
    // SAFETY: plain eventfd(2); the result is checked and owned by the File.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(fd >= 0, "eventfd");
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    let g = f.try_clone().unwrap();
    (f, g)
}

/// Take an eventfd's count (0 if it was not signalled).
pub fn take(f: &File) -> u64 {
    let mut b = [0u8; 8];
    match (&*f).read(&mut b) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => 0,
    }
}

/// Wait up to a second for an eventfd to be signalled; its count.
pub fn wait_signal(f: &File) -> u64 {
    for _ in 0..200 {
        let n = take(f);
        if n > 0 {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    0
}
