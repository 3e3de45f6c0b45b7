//! The backing files: a 1 GiB file on tmpfs (page-cache rows) and a 1 GiB
//! file on a real file system (O_DIRECT rows), each written through once.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::daemons::DISK;

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Whether `dir` is on a memory file system (tmpfs or ramfs), and its free
/// bytes. Err if statfs fails.
pub fn fs_info(dir: &Path) -> Result<(bool, u64), String> {
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: statfs is plain data; zero is a valid value to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path; statfs writes one struct into `st`.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "statfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    let t = st.f_type as i64;
    let free = (st.f_bavail as u64).saturating_mul(st.f_bsize as u64);
    Ok((t == TMPFS_MAGIC || t == RAMFS_MAGIC, free))
}

/// Where the real-disk image goes: `wanted` if given (refused if it is a
/// memory file system), else the first of /var/tmp and the current
/// directory that is on a disk and has room.
pub fn disk_dir(wanted: Option<&Path>) -> Result<PathBuf, String> {
    let need = DISK + (256 << 20);
    let check = |d: &Path| -> Result<(), String> {
        let (mem, free) = fs_info(d)?;
        if mem {
            return Err(format!(
                "{} is on tmpfs/ramfs, not a disk (--disk-dir)",
                d.display()
            ));
        }
        if free < need {
            return Err(format!(
                "{} has {} MiB free, {} MiB needed",
                d.display(),
                free >> 20,
                need >> 20
            ));
        }
        Ok(())
    };
    if let Some(d) = wanted {
        check(d)?;
        return Ok(d.to_path_buf());
    }
    let mut why = vec![];
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    for d in [PathBuf::from("/var/tmp"), cwd] {
        match check(&d) {
            Ok(()) => return Ok(d),
            Err(e) => why.push(e),
        }
    }
    Err(format!(
        "no directory for the real-disk image: {}",
        why.join("; ")
    ))
}

/// A 1 GiB image at `path`, preallocated and written through once (so
/// reads hit real data, not holes: a sparse tmpfs file would read from the
/// shared zero page, a sparse disk file would not touch the disk). With
/// `sync` the data is flushed to the disk and dropped from the page cache.
pub fn make_image(path: &Path, sync: bool) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::create(path).map_err(err)?;
    // SAFETY: fallocate on a file descriptor we own; no memory involved.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, DISK as libc::off_t) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        // Not every file system preallocates; writing the data is enough.
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(err(e));
        }
    }
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8 + 1).collect();
    for _ in 0..DISK / chunk.len() as u64 {
        f.write_all(&chunk).map_err(err)?;
    }
    if sync {
        f.sync_all().map_err(err)?;
        // SAFETY: posix_fadvise on our own descriptor; advisory only.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_shm_is_memory_and_refused() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return;
        }
        assert!(fs_info(shm).unwrap().0);
        let e = disk_dir(Some(shm)).unwrap_err();
        assert!(e.contains("tmpfs"), "{e}");
    }

    #[test]
    fn missing_dir_is_an_error() {
        assert!(fs_info(Path::new("/nonexistent/vblk-bench")).is_err());
    }
}
