//! Page-cache states for tests (feature `test-util`): a directory on a
//! real file system, and an image range left partly cached.

/// A temporary directory on a real (not tmpfs) file system: tmpfs has
/// no `RWF_NOWAIT`, no `O_DIRECT` and no page cache to drop.
pub fn real_fs_dir() -> tempfile::TempDir {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let on_tmpfs = |p: &std::path::Path| {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            return true;
        };
        // SAFETY: all-zero bytes are a valid `statfs`.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid C string and out-pointer, alive for the call.
        let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
        r != 0 || st.f_type as i64 == TMPFS_MAGIC
    };
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp");
    let _ = std::fs::create_dir_all(&target);
    for cand in [std::path::Path::new("/var/tmp"), target.as_path()] {
        if cand.is_dir() && !on_tmpfs(cand) {
            if let Ok(d) = tempfile::tempdir_in(cand) {
                return d;
            }
        }
    }
    panic!("no directory on a real file system for the test image");
}

/// Leave `[offset, offset + 64 KiB)` of the file partly in the page
/// cache: the first and last 24 KiB cached, the middle 16 KiB not.
///
/// `POSIX_FADV_DONTNEED` on just the middle is not enough: it cannot drop
/// part of a large folio. So: write back, drop the whole file, and read
/// the two ends again through a descriptor with `POSIX_FADV_RANDOM` (no
/// readahead, so the middle stays out).
pub fn partly_cache(path: &std::path::Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: plain syscalls on an open descriptor.
    unsafe {
        assert_eq!(libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED), 0);
        assert_eq!(libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM), 0);
    }
    let mut b = vec![0u8; 24576];
    f.read_exact_at(&mut b, offset).unwrap();
    f.read_exact_at(&mut b, offset + 40960).unwrap();
}

/// Pages of `[offset, offset + len)` of the open file that are dirty or
/// under writeback in the page cache: `(dirty, writeback)`, from
/// `cachestat(2)` (Linux 6.5). `None` where the kernel lacks it.
pub fn dirty_pages(fd: std::os::unix::io::RawFd, offset: u64, len: u64) -> Option<(u64, u64)> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    let range = Range { off: offset, len };
    let mut st = Stat::default();
    // SAFETY: cachestat(fd, *range, *stat, flags) reads `range` and writes
    // `st`, both alive for the call.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd,
            &range as *const Range,
            &mut st as *mut Stat,
            0u32,
        )
    };
    (r == 0).then_some((st.nr_dirty, st.nr_writeback))
}
