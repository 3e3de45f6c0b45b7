//! Synchronous I/O on a file descriptor, shared by the synchronous file
//! engine and the io_uring engine (for what it runs inline or cannot put on
//! the ring): vectored reads and writes that continue short transfers,
//! `O_DIRECT` bounce buffers, `fdatasync`, `fallocate` and the hand-written
//! write-zeroes fallback. Also the iovec helpers both engines use.
//!
//! Module graph: `file` → `uring` → `sync_io` and `file` → `sync_io`.

use std::alloc::Layout;
use std::io;
use std::os::unix::io::RawFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use crate::{IoOp, IoRequest};

/// Largest bounce buffer one request uses at a time (larger unaligned
/// requests are bounced window by window).
pub(crate) const BOUNCE_WINDOW: u64 = 1 << 20;

/// The errno of the last failed libc call.
pub(crate) fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `O_DIRECT` alignment requirements (powers of two, ≥ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Direct {
    /// Memory address alignment of every buffer.
    pub mem: u64,
    /// File offset and length alignment (also of every iovec's length: the
    /// kernel checks each segment against the logical block size).
    pub off: u64,
}

impl Direct {
    pub(crate) fn new(mem: u32, off: u32) -> Self {
        let p2 = |v: u32| u64::from(v.max(1)).next_power_of_two();
        Direct {
            mem: p2(mem),
            off: p2(off),
        }
    }

    /// Alignment of a bounce buffer: good for both memory and length rules.
    fn buf_align(&self) -> usize {
        usize::try_from(self.mem.max(self.off).max(512)).unwrap_or(4096)
    }

    /// Whether `req` (a read or write) can go to an `O_DIRECT` file as is.
    pub(crate) fn fits(&self, req: &IoRequest) -> bool {
        req.offset.is_multiple_of(self.off)
            && req.len.is_multiple_of(self.off)
            && req.iovecs.iter().all(|v| {
                (v.iov_base as u64).is_multiple_of(self.mem)
                    && (v.iov_len as u64).is_multiple_of(self.off)
            })
    }
}

/// A file descriptor plus what synchronous I/O on it needs to know.
#[derive(Debug, Clone)]
pub(crate) struct SyncFile {
    pub fd: RawFd,
    /// `Some` when the file is open with `O_DIRECT`.
    pub direct: Option<Direct>,
    /// Serialises the read-modify-write cycles of unaligned `O_DIRECT`
    /// writes (shared by every engine of one backend), so two of them on the
    /// same block cannot undo each other.
    pub rmw: Arc<Mutex<()>>,
}

impl SyncFile {
    /// A buffered (not `O_DIRECT`) file.
    #[cfg(test)]
    pub(crate) fn buffered(fd: RawFd) -> Self {
        SyncFile {
            fd,
            direct: None,
            rmw: Arc::new(Mutex::new(())),
        }
    }
}

/// A zeroed heap buffer with a chosen alignment, for `O_DIRECT` I/O.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: the buffer is uniquely owned heap memory, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// `len` zeroed bytes aligned to `align` (a power of two). `None` when
    /// the layout is invalid or the allocation fails.
    pub fn new(len: usize, align: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len.max(1), align).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(AlignedBuf { ptr, len, layout })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` owns `len` initialised bytes, borrowed with `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` owns `len` initialised bytes, borrowed mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// One iovec over the whole buffer.
    pub fn iovec(&mut self) -> libc::iovec {
        libc::iovec {
            iov_base: self.ptr.as_ptr() as *mut libc::c_void,
            iov_len: self.len,
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("align", &self.layout.align())
            .finish()
    }
}

/// The iovecs after their first `n` bytes (empty iovecs dropped).
pub fn skip_iovecs(iovecs: &[libc::iovec], mut n: u64) -> Vec<libc::iovec> {
    let mut out = Vec::with_capacity(iovecs.len());
    for v in iovecs {
        let l = v.iov_len as u64;
        if n >= l {
            n -= l;
            continue;
        }
        // `n < iov_len`, so it fits in usize.
        let k = n as usize;
        out.push(libc::iovec {
            // Pointer arithmetic only (wrapping_add: never dereferenced here);
            // the result stays inside the same iovec because k < iov_len.
            iov_base: (v.iov_base as *mut u8).wrapping_add(k) as *mut libc::c_void,
            iov_len: v.iov_len - k,
        });
        n = 0;
    }
    out
}

/// The part of `req` after its first `n` bytes: what a short transfer still
/// has to do. Offset and length move by the bytes actually skipped.
pub(crate) fn advance(req: &IoRequest, n: u64) -> IoRequest {
    let iovecs = skip_iovecs(&req.iovecs, n);
    let left: u64 = iovecs.iter().map(|v| v.iov_len as u64).sum();
    let done = req.len.saturating_sub(left);
    IoRequest {
        op: req.op,
        offset: req.offset.saturating_add(done),
        len: left,
        iovecs,
        token: req.token,
        fua: req.fua,
    }
}

/// Copy `dst.len()` bytes out of the byte stream the iovecs describe,
/// starting `skip` bytes into it. Returns the bytes copied (less at the end
/// of the iovecs).
///
/// # Safety
/// Every iovec must describe readable memory of `iov_len` bytes.
pub(crate) unsafe fn copy_from_iovecs(iovecs: &[libc::iovec], skip: u64, dst: &mut [u8]) -> usize {
    let mut at = 0usize;
    for v in skip_iovecs(iovecs, skip) {
        if at >= dst.len() {
            break;
        }
        let n = v.iov_len.min(dst.len() - at);
        // SAFETY: the caller guarantees the iovec is readable for iov_len ≥ n
        // bytes; `dst[at..at + n]` is in bounds; guest and heap memory do not
        // overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(v.iov_base as *const u8, dst[at..].as_mut_ptr(), n)
        };
        at += n;
    }
    at
}

/// Copy `src` into the byte stream the iovecs describe, starting `skip`
/// bytes into it. Returns the bytes copied.
///
/// # Safety
/// Every iovec must describe writable memory of `iov_len` bytes.
pub(crate) unsafe fn copy_to_iovecs(iovecs: &[libc::iovec], skip: u64, src: &[u8]) -> usize {
    let mut at = 0usize;
    for v in skip_iovecs(iovecs, skip) {
        if at >= src.len() {
            break;
        }
        let n = v.iov_len.min(src.len() - at);
        // SAFETY: the caller guarantees the iovec is writable for iov_len ≥ n
        // bytes; `src[at..at + n]` is in bounds; no overlap.
        unsafe { std::ptr::copy_nonoverlapping(src[at..].as_ptr(), v.iov_base as *mut u8, n) };
        at += n;
    }
    at
}

/// `preadv`/`pwritev` the whole request, `IOV_MAX` iovecs at a time,
/// continuing short transfers. A transfer that makes no progress is `EIO`.
fn rw_vectored(fd: RawFd, req: &IoRequest) -> Result<u64, i32> {
    let mut iov = req.iovecs.clone();
    iov.retain(|v| v.iov_len > 0);
    let mut start = 0usize;
    let mut done = 0u64;
    while start < iov.len() {
        // "preadv() ... iovcnt ... greater than IOV_MAX: EINVAL" (preadv(2)).
        let cnt = (iov.len() - start).min(libc::UIO_MAXIOV as usize) as libc::c_int;
        let offset = req.offset.checked_add(done).ok_or(libc::EINVAL)?;
        let off = libc::off_t::try_from(offset).map_err(|_| libc::EINVAL)?;
        // SAFETY: the iovecs describe guest memory that stays mapped until the
        // request completes (IoEngine::push contract); `cnt` is within the slice.
        let r = unsafe {
            if req.op == IoOp::Read {
                libc::preadv(fd, iov[start..].as_ptr(), cnt, off)
            } else {
                libc::pwritev(fd, iov[start..].as_ptr(), cnt, off)
            }
        };
        if r < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(libc::EIO);
        }
        let mut n = r as usize;
        done += n as u64;
        while n > 0 && start < iov.len() {
            if n >= iov[start].iov_len {
                n -= iov[start].iov_len;
                start += 1;
            } else {
                iov[start].iov_base =
                    (iov[start].iov_base as *mut u8).wrapping_add(n) as *mut libc::c_void;
                iov[start].iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(done)
}

/// `pread` into `buf` at `offset` until it is full or the file ends.
/// Returns the bytes read.
fn pread_full(fd: RawFd, buf: &mut [u8], offset: u64) -> Result<usize, i32> {
    let mut at = 0usize;
    while at < buf.len() {
        let pos = offset.checked_add(at as u64).ok_or(libc::EINVAL)?;
        let off = libc::off_t::try_from(pos).map_err(|_| libc::EINVAL)?;
        // SAFETY: `buf[at..]` is a live, writable buffer of the given length.
        let r = unsafe {
            libc::pread(
                fd,
                buf[at..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - at,
                off,
            )
        };
        if r < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            break;
        }
        at += r as usize;
    }
    Ok(at)
}

/// `pwrite` all of `buf` at `offset`.
fn pwrite_full(fd: RawFd, buf: &[u8], offset: u64) -> Result<(), i32> {
    let mut at = 0usize;
    while at < buf.len() {
        let pos = offset.checked_add(at as u64).ok_or(libc::EINVAL)?;
        let off = libc::off_t::try_from(pos).map_err(|_| libc::EINVAL)?;
        // SAFETY: `buf[at..]` is a live buffer of the given length.
        let r = unsafe {
            libc::pwrite(
                fd,
                buf[at..].as_ptr() as *const libc::c_void,
                buf.len() - at,
                off,
            )
        };
        if r < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(libc::EIO);
        }
        at += r as usize;
    }
    Ok(())
}

/// A read or write on an `O_DIRECT` file whose buffers, offset or length are
/// not aligned: through an aligned heap buffer, one window of at most
/// [`BOUNCE_WINDOW`] bytes at a time. Writes that do not cover whole aligned
/// blocks read the partial head and tail blocks first (read-modify-write,
/// under the backend's RMW lock).
///
/// The RMW lock orders read-modify-write cycles against each other, not
/// against an aligned write to the same block running at the same time in
/// an io_uring (a guest that writes two halves of one physical block
/// concurrently could lose one of them). A device that advertises
/// `blk_size` ≥ `BlockSizes::dio_offset_align` under `--cache none` never
/// takes this path; QEMU would serialise overlapping requests here.
///
/// The last block of a file whose size is not a multiple of the alignment is
/// read short (the missing bytes are zero in the buffer) and written whole,
/// which extends the file by less than one block; the exported capacity was
/// fixed at open and does not change.
fn rw_bounced(f: &SyncFile, d: Direct, req: &IoRequest) -> Result<u64, i32> {
    let window = BOUNCE_WINDOW.max(d.off.saturating_mul(2));
    let mut pos = 0u64;
    while pos < req.len {
        let off = req.offset.checked_add(pos).ok_or(libc::EINVAL)?;
        let a_start = off - off % d.off;
        let head = off - a_start;
        let n = (req.len - pos).min(window - head);
        let end = off.checked_add(n).ok_or(libc::EINVAL)?;
        let a_end = end.checked_next_multiple_of(d.off).ok_or(libc::EINVAL)?;
        let blen = usize::try_from(a_end - a_start).map_err(|_| libc::ENOMEM)?;
        let mut buf = AlignedBuf::new(blen, d.buf_align()).ok_or(libc::ENOMEM)?;
        let (lo, hi) = (head as usize, (end - a_start) as usize);
        if req.op == IoOp::Read {
            let got = pread_full(f.fd, buf.as_mut_slice(), a_start)?;
            if got < hi {
                // The range ends past the end of the file.
                return Err(libc::EIO);
            }
            // SAFETY: the iovecs are writable guest memory (push contract).
            unsafe { copy_to_iovecs(&req.iovecs, pos, &buf.as_slice()[lo..hi]) };
        } else {
            let partial = lo != 0 || hi != blen;
            let _guard = if partial {
                Some(f.rmw.lock().unwrap_or_else(|e| e.into_inner()))
            } else {
                None
            };
            let blk = d.off as usize;
            if lo != 0 {
                pread_full(f.fd, &mut buf.as_mut_slice()[..blk], a_start)?;
            }
            if hi != blen && (lo == 0 || blen > blk) {
                let tail = blen - blk;
                pread_full(f.fd, &mut buf.as_mut_slice()[tail..], a_start + tail as u64)?;
            }
            // SAFETY: the iovecs are readable guest memory (push contract).
            unsafe { copy_from_iovecs(&req.iovecs, pos, &mut buf.as_mut_slice()[lo..hi]) };
            pwrite_full(f.fd, buf.as_slice(), a_start)?;
        }
        pos += n;
    }
    Ok(req.len)
}

/// A read or write, bounced when `O_DIRECT` needs it.
fn rw(f: &SyncFile, req: &IoRequest) -> Result<u64, i32> {
    match f.direct {
        Some(d) if !d.fits(req) => rw_bounced(f, d, req),
        _ => rw_vectored(f.fd, req),
    }
}

/// Execute one request synchronously. Short transfers are continued; a
/// transfer that makes no progress is an `EIO`.
pub(crate) fn exec_sync(f: &SyncFile, req: &IoRequest) -> Result<u64, i32> {
    let n = exec_sync_op(f, req)?;
    if req.fua && matches!(req.op, IoOp::Write | IoOp::WriteZeroes) {
        // Force unit access: the data is durable before the completion.
        // SAFETY: plain syscall on a file descriptor we own.
        if unsafe { libc::fdatasync(f.fd) } < 0 {
            return Err(last_errno());
        }
    }
    Ok(n)
}

fn exec_sync_op(f: &SyncFile, req: &IoRequest) -> Result<u64, i32> {
    match req.op {
        IoOp::Read | IoOp::Write => rw(f, req),
        IoOp::Flush => {
            // SAFETY: plain syscall on a file descriptor we own.
            if unsafe { libc::fdatasync(f.fd) } < 0 {
                return Err(last_errno());
            }
            Ok(0)
        }
        IoOp::Discard | IoOp::WriteZeroes => {
            let off = libc::off_t::try_from(req.offset).map_err(|_| libc::EINVAL)?;
            let len = libc::off_t::try_from(req.len).map_err(|_| libc::EINVAL)?;
            let mode = if req.op == IoOp::Discard {
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
            } else {
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
            };
            // SAFETY: plain syscall on a file descriptor we own.
            if unsafe { libc::fallocate(f.fd, mode, off, len) } == 0 {
                return Ok(req.len);
            }
            let e = last_errno();
            if req.op == IoOp::Discard {
                // Discard is advisory: succeeding without deallocating is allowed.
                return Ok(req.len);
            }
            if e != libc::EOPNOTSUPP && e != libc::EINVAL {
                return Err(e);
            }
            write_zeroes_slow(f, req.offset, req.len)
        }
    }
}

/// Write-zeroes where `FALLOC_FL_ZERO_RANGE` is unsupported: write zeroes by
/// hand, from an aligned buffer (so `O_DIRECT` accepts it; unaligned ends
/// are bounced like any write).
pub(crate) fn write_zeroes_slow(f: &SyncFile, offset: u64, len: u64) -> Result<u64, i32> {
    const CHUNK: usize = 1 << 16;
    let align = f.direct.map_or(4096, |d| d.buf_align());
    let mut zeroes = AlignedBuf::new(CHUNK, align).ok_or(libc::ENOMEM)?;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64);
        let mut v = zeroes.iovec();
        v.iov_len = n as usize;
        let req = IoRequest {
            op: IoOp::Write,
            offset: offset.checked_add(done).ok_or(libc::EINVAL)?,
            len: n,
            iovecs: vec![v],
            token: 0,
            fua: false, // the caller syncs once at the end
        };
        rw(f, &req)?;
        done += n;
    }
    Ok(len)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::iov;
    use std::os::unix::io::AsRawFd;

    #[test]
    fn advance_across_iovec_boundaries() {
        let mut a = vec![0u8; 1000];
        let mut b = vec![0u8; 3096];
        let req = IoRequest {
            op: IoOp::Read,
            offset: 10_000,
            len: 4096,
            iovecs: vec![iov(&mut a), iov(&mut b)],
            token: 9,
            fua: false,
        };
        // Inside the second iovec.
        let r = advance(&req, 1500);
        assert_eq!((r.offset, r.len, r.token), (11_500, 2596, 9));
        assert_eq!(r.iovecs.len(), 1);
        assert_eq!(r.iovecs[0].iov_len, 2596);
        assert_eq!(r.iovecs[0].iov_base as usize, b.as_ptr() as usize + 500);
        // Exactly at the boundary: the first iovec disappears whole.
        let r = advance(&req, 1000);
        assert_eq!((r.offset, r.len, r.iovecs.len()), (11_000, 3096, 1));
        assert_eq!(r.iovecs[0].iov_base as usize, b.as_ptr() as usize);
        // Inside the first iovec: both stay, the first shortened.
        let r = advance(&req, 1);
        assert_eq!((r.offset, r.len, r.iovecs.len()), (10_001, 4095, 2));
        assert_eq!(r.iovecs[0].iov_base as usize, a.as_ptr() as usize + 1);
        assert_eq!(r.iovecs[0].iov_len, 999);
        // Nothing and everything.
        let r = advance(&req, 0);
        assert_eq!((r.offset, r.len, r.iovecs.len()), (10_000, 4096, 2));
        let r = advance(&req, 4096);
        assert_eq!((r.offset, r.len, r.iovecs.len()), (14_096, 0, 0));
        // More than there is: clamped, no overflow.
        let r = advance(&req, u64::MAX);
        assert_eq!((r.offset, r.len, r.iovecs.len()), (14_096, 0, 0));
    }

    #[test]
    fn iovec_copies_honour_skip_and_bounds() {
        let mut a = vec![0u8; 3];
        let mut b = vec![0u8; 5];
        let v = [iov(&mut a), iov(&mut b)];
        // SAFETY: the iovecs cover `a` and `b`, alive and unborrowed here.
        let n = unsafe { copy_to_iovecs(&v, 2, &[1, 2, 3, 4, 5, 6, 7, 8]) };
        assert_eq!(n, 6);
        assert_eq!(a, [0, 0, 1]);
        assert_eq!(b, [2, 3, 4, 5, 6]);
        let v = [iov(&mut a), iov(&mut b)];
        let mut out = [0u8; 4];
        // SAFETY: as above.
        let n = unsafe { copy_from_iovecs(&v, 1, &mut out) };
        assert_eq!((n, out), (4, [0, 1, 2, 3]));
    }

    #[test]
    fn direct_fits_checks_memory_offset_and_lengths() {
        let d = Direct::new(512, 4096);
        let mut buf = AlignedBuf::new(8192, 4096).unwrap();
        let base = buf.iovec();
        let mk = |offset: u64, iovecs: Vec<libc::iovec>| IoRequest {
            op: IoOp::Read,
            offset,
            len: iovecs.iter().map(|v| v.iov_len as u64).sum(),
            iovecs,
            token: 0,
            fua: false,
        };
        assert!(d.fits(&mk(4096, vec![base])));
        assert!(!d.fits(&mk(512, vec![base])), "offset");
        let mut short = base;
        short.iov_len = 512;
        assert!(!d.fits(&mk(0, vec![short])), "length");
        let mut shifted = base;
        shifted.iov_base = (base.iov_base as *mut u8).wrapping_add(512) as *mut libc::c_void;
        shifted.iov_len = 4096;
        assert!(
            d.fits(&mk(0, vec![shifted])),
            "512-aligned memory is enough"
        );
        shifted.iov_base = (base.iov_base as *mut u8).wrapping_add(8) as *mut libc::c_void;
        assert!(!d.fits(&mk(0, vec![shifted])), "memory");
    }

    #[test]
    fn write_zeroes_fallback_writes_zeroes() {
        let dir = crate::testutil::real_fs_dir();
        let p = dir.path().join("z.img");
        std::fs::write(&p, vec![0xeeu8; 1 << 18]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let f = SyncFile::buffered(file.as_raw_fd());
        assert_eq!(write_zeroes_slow(&f, 1000, 100_000), Ok(100_000));
        let d = std::fs::read(&p).unwrap();
        assert!(d[..1000].iter().all(|&b| b == 0xee));
        assert!(d[1000..101_000].iter().all(|&b| b == 0));
        assert!(d[101_000..].iter().all(|&b| b == 0xee));
    }
}
