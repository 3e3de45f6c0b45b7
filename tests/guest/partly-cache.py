#!/usr/bin/env python3
"""Put a disk image into a partly cached host page-cache state, deterministically.

usage: partly-cache.py IMAGE [LABEL] [--chunk BYTES]

fsync the image (DONTNEED cannot drop dirty pages), read all of it (every page
cached), then posix_fadvise(POSIX_FADV_DONTNEED) every other chunk (odd chunks,
16 KiB by default). A guest read that is larger than a chunk, or not aligned to
one, then crosses cached/uncached boundaries in the host - the state in which
the old engine returned short reads as I/O errors (issue 8).

mincore() then measures the result: it fails unless at least 90% of the even
chunks are cached and at most 10% of the odd ones (e.g. on tmpfs, where
DONTNEED drops nothing, the state cannot be made: put the work directory on a
disk file system).
"""
import ctypes
import ctypes.util
import mmap
import os
import sys


def residency(fd, size, chunk):
    """(cached even chunks, cached odd chunks, chunks) from mincore()."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    page = mmap.PAGESIZE
    addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    try:
        vec = ctypes.create_string_buffer((size + page - 1) // page)
        if libc.mincore(addr, size, vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        pages = vec.raw
    finally:
        libc.munmap(addr, size)
    per = chunk // page
    chunks = (size + chunk - 1) // chunk
    even = odd = 0
    for c in range(chunks):
        cached = all(b & 1 for b in pages[c * per:(c + 1) * per])
        if cached:
            if c % 2:
                odd += 1
            else:
                even += 1
    return even, odd, chunks


def main():
    args = [a for a in sys.argv[1:]]
    chunk = 16384
    if "--chunk" in args:
        i = args.index("--chunk")
        chunk = int(args[i + 1])
        del args[i:i + 2]
    img = args[0]
    label = args[1] if len(args) > 1 else img
    if chunk % mmap.PAGESIZE:
        sys.exit(f"partly-cache: chunk {chunk} is not a multiple of the page size")
    fd = os.open(img, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        os.fsync(fd)
        # Start cold, then cache everything one page at a time with readahead
        # off: small folios, which DONTNEED can drop chunk by chunk (a large
        # folio that straddles a chunk boundary would stay whole).
        os.posix_fadvise(fd, 0, size, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(fd, 0, size, os.POSIX_FADV_RANDOM)
        page = mmap.PAGESIZE
        for off in range(0, size, page):
            os.pread(fd, page, off)
        for c in range(1, (size + chunk - 1) // chunk, 2):
            os.posix_fadvise(fd, c * chunk, chunk, os.POSIX_FADV_DONTNEED)
        even, odd, chunks = residency(fd, size, chunk)
    finally:
        os.close(fd)
    halves = (chunks + 1) // 2, chunks // 2
    msg = (f"host: {label}: image page cache partly warm: {even}/{halves[0]} even {chunk // 1024} KiB chunks "
           f"cached, {odd}/{halves[1]} odd chunks cached")
    if even < 0.9 * halves[0] or odd > 0.1 * halves[1]:
        sys.exit(msg + ": not the alternating state the test needs (tmpfs? memory pressure?)")
    print(msg)


if __name__ == "__main__":
    main()
