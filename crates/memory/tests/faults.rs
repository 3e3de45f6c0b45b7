//! A client's file misbehaving under a guest mapping: refused up front when
//! it can be, contained and reported when it cannot. Each test would kill
//! the test process (SIGBUS / SIGSEGV) without the containment.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;

use vblk_memory::{map_guest_region, MapError};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const PAGE: u64 = 4096;

fn memfd(size: u64, seal_shrink: bool) -> File {
    let flags = if seal_shrink {
        libc::MFD_ALLOW_SEALING
    } else {
        0
    };
    // SAFETY: a NUL-terminated name; the result is checked, then owned.
    let fd = unsafe { libc::memfd_create(c"vblk-memory-test".as_ptr(), flags) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor nobody else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(size).unwrap();
    if seal_shrink {
        // SAFETY: plain fcntl on our descriptor.
        let r = unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) };
        assert_eq!(r, 0);
    }
    f
}

#[test]
fn a_mapping_past_the_end_of_the_file_is_refused() {
    let f = memfd(PAGE, false);
    let e = map_guest_region(
        f.try_clone().unwrap(),
        0,
        1024 * PAGE,
        GuestAddress(0),
        true,
    )
    .unwrap_err();
    assert!(matches!(e, MapError::PastEof { .. }), "{e}");
    assert_eq!(e.errno(), libc::EINVAL);
    let e =
        map_guest_region(f.try_clone().unwrap(), PAGE, PAGE, GuestAddress(0), true).unwrap_err();
    assert!(matches!(e, MapError::PastEof { .. }), "{e}");
    let e =
        map_guest_region(f.try_clone().unwrap(), u64::MAX, 2, GuestAddress(0), true).unwrap_err();
    assert!(matches!(e, MapError::PastEof { .. }), "{e}");
    let e = map_guest_region(
        f.try_clone().unwrap(),
        0,
        PAGE,
        GuestAddress(u64::MAX),
        true,
    )
    .unwrap_err();
    assert!(matches!(e, MapError::Range { .. }), "{e}");
    assert!(matches!(
        map_guest_region(f, 0, 0, GuestAddress(0), true),
        Err(MapError::Empty)
    ));
}

#[test]
fn a_file_shrunk_under_the_mapping_is_contained_and_reported() {
    let f = memfd(4 * PAGE, false);
    let m = map_guest_region(
        f.try_clone().unwrap(),
        0,
        4 * PAGE,
        GuestAddress(0x10000),
        true,
    )
    .unwrap();
    assert!(!m.sealed());
    let mem = GuestMemoryMmap::from_arc_regions(vec![m.region()]).unwrap();
    mem.write_obj(0xabcdu32, GuestAddress(0x10000)).unwrap();
    assert!(m.faults().none());
    f.set_len(PAGE).unwrap();
    // First page still backed by the file; the rest is past EOF: SIGBUS.
    assert_eq!(mem.read_obj::<u32>(GuestAddress(0x10000)).unwrap(), 0xabcd);
    let before = vblk_memory::contained_faults();
    let v: u32 = mem.read_obj(GuestAddress(0x10000 + 2 * PAGE)).unwrap();
    assert_eq!(v, 0, "a scratch zero page replaced the missing one");
    mem.write_obj(7u32, GuestAddress(0x10000 + 3 * PAGE))
        .unwrap();
    assert!(m.faults().past_eof(), "{:?}", m.faults());
    assert!(vblk_memory::contained_faults() >= before + 2);
    // The fault is told to this mapping's memory, not to other memory.
    let base = m.region().as_ptr() as usize;
    assert!(vblk_memory::faulted_within(base, (4 * PAGE) as usize));
    let other = memfd(PAGE, false);
    let o = map_guest_region(other, 0, PAGE, GuestAddress(0x100000), true).unwrap();
    assert!(!vblk_memory::faulted_within(
        o.region().as_ptr() as usize,
        PAGE as usize
    ));
    drop(mem);
    drop(m);
}

#[test]
fn a_write_to_a_read_only_region_never_reaches_the_file() {
    let f = memfd(2 * PAGE, true);
    f.write_all_at(&[0x5a; 16], 0).unwrap();
    let m = map_guest_region(f.try_clone().unwrap(), 0, 2 * PAGE, GuestAddress(0), false).unwrap();
    assert!(m.sealed());
    assert!(!m.writable());
    let mem = GuestMemoryMmap::from_arc_regions(vec![m.region()]).unwrap();
    // Reads see the client's bytes, also later ones (MAP_SHARED).
    assert_eq!(mem.read_obj::<u8>(GuestAddress(0)).unwrap(), 0x5a);
    f.write_all_at(&[0x77], PAGE).unwrap();
    assert_eq!(mem.read_obj::<u8>(GuestAddress(PAGE)).unwrap(), 0x77);
    mem.write_obj(0xffu8, GuestAddress(0)).unwrap();
    assert!(m.faults().protection(), "{:?}", m.faults());
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(b, [0x5a], "the client's file is untouched");
}

#[test]
fn many_mappings_register_and_release_their_slots() {
    let f = memfd(PAGE, true);
    for i in 0..3 * vblk_memory::MAX_MAPPINGS as u64 / 2 {
        let m = map_guest_region(
            f.try_clone().unwrap(),
            0,
            PAGE,
            GuestAddress(i * PAGE),
            true,
        )
        .unwrap();
        drop(m);
    }
}
