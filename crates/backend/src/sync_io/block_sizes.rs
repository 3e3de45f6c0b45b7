//! The block-size probe of an image: logical and physical sector sizes
//! (`BLKSSZGET`/`BLKPBSZGET`) and the `O_DIRECT` alignments
//! (`STATX_DIOALIGN`, else the file system block).

use std::os::unix::io::RawFd;

const BLKSSZGET: libc::c_ulong = 0x1268; // _IO(0x12, 104): logical sector size (int)
const BLKPBSZGET: libc::c_ulong = 0x127b; // _IO(0x12, 123): physical sector size (unsigned int)

/// A power of two between 512 and 1 MiB, or `None`.
fn sane(v: u64) -> Option<u32> {
    (512..=1 << 20)
        .contains(&v)
        .then_some(v)
        .filter(|v| v.is_power_of_two())
        .and_then(|v| u32::try_from(v).ok())
}

/// `statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN)`: `(mem, offset)`
/// alignments for `O_DIRECT`, where the kernel reports them (6.1+).
///
/// statx(2): "STATX_DIOALIGN ... stx_dio_mem_align: The alignment (in bytes)
/// required for user memory buffers for direct I/O ... stx_dio_offset_align:
/// The alignment (in bytes) required for file offsets and I/O segment
/// lengths for direct I/O ... If direct I/O is not supported on the file,
/// both fields will be 0."
fn statx_dioalign(fd: RawFd) -> Option<(u32, u32)> {
    // SAFETY: all-zero bytes are a valid `statx` (plain integers).
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a valid empty C string, `stx` outlives the call.
    let r = unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if r != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_offset_align == 0 {
        return None;
    }
    Some((stx.stx_dio_mem_align.max(1), stx.stx_dio_offset_align))
}

/// Probe the block sizes of an image: `BLKSSZGET`/`BLKPBSZGET` for block
/// devices; for regular files `STATX_DIOALIGN` where the kernel has it, else
/// the file system's block size (`st_blksize`), never below 512.
/// `direct`: the file is open with `O_DIRECT` (the logical block size
/// reported then is the `O_DIRECT` offset alignment).
pub(crate) fn probe_block_sizes(fd: RawFd, block_device: bool, direct: bool) -> crate::BlockSizes {
    // SAFETY: all-zero bytes are a valid `stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` outlives the call.
    let fs_block = if unsafe { libc::fstat(fd, &mut st) } == 0 {
        sane(st.st_blksize as u64).unwrap_or(4096)
    } else {
        4096
    };
    let dio = statx_dioalign(fd);
    let (logical, physical) = if block_device {
        let mut lss: libc::c_int = 0;
        let mut pbs: libc::c_uint = 0;
        // SAFETY: BLKSSZGET writes one int into `lss`, which outlives the call.
        let l = if unsafe { libc::ioctl(fd, BLKSSZGET, &mut lss as *mut libc::c_int) } == 0 {
            sane(lss as u64).unwrap_or(512)
        } else {
            512
        };
        // SAFETY: BLKPBSZGET writes one unsigned int into `pbs`, which outlives the call.
        let p = if unsafe { libc::ioctl(fd, BLKPBSZGET, &mut pbs as *mut libc::c_uint) } == 0 {
            sane(u64::from(pbs)).unwrap_or(l)
        } else {
            l
        };
        (l, p.max(l))
    } else {
        let l = if direct {
            dio.and_then(|(_, off)| sane(u64::from(off)))
                .unwrap_or(fs_block)
        } else {
            512
        };
        (l, fs_block.max(l))
    };
    let (dio_mem_align, dio_offset_align) = match dio {
        Some((mem, off)) => (mem, off.max(1)),
        // Without STATX_DIOALIGN: the classic rule, buffers and offsets
        // aligned to the logical block size (the file system block for
        // files, the safe choice).
        None if block_device => (logical, logical),
        None => (fs_block, fs_block),
    };
    crate::BlockSizes {
        logical,
        physical,
        dio_mem_align,
        dio_offset_align,
    }
}
