//! Unit tests: the layout matches libvhost-user's, mapping checks the
//! buffer against its file, logging then recovering resubmits the right
//! heads, and a hostile region stays bounded.

use std::fs::File;
use std::sync::atomic::{AtomicU16, AtomicU64};

use vblk_device::InflightLog;

use super::layout::{DESC, D_COUNTER, D_NEXT, HDR, OFF_LAST_BATCH_HEAD, OFF_USED_IDX, OFF_VERSION};
use super::shared_map::SharedMap;
use super::*;

fn region(nq: u16, qs: u16) -> (InflightRegion, File) {
    let a = InflightRegion::allocate(nq, qs).unwrap();
    let r = InflightRegion::map(&a.file, a.mmap_size, a.mmap_offset, nq, qs).unwrap();
    (r, a.file)
}

#[test]
fn layout_matches_libvhost_user() {
    assert_eq!(queue_region_size(128), 2112);
    assert_eq!(queue_region_size(1), 64);
    assert_eq!(queue_region_size(4), 128);
    for qs in [1u16, 2, 3, 4, 255, 256, 1024, 32768] {
        assert!(queue_region_size(qs) >= 16 + 16 * u64::from(qs));
        assert_eq!(queue_region_size(qs) % 64, 0);
    }
    let a = InflightRegion::allocate(2, 256).unwrap();
    assert_eq!(a.mmap_size, 2 * queue_region_size(256));
    assert_eq!(a.file.metadata().unwrap().len(), a.mmap_size);
    // Sealed: cannot shrink.
    assert!(a.file.set_len(0).is_err());
}

#[test]
fn map_checks_size_and_file() {
    let a = InflightRegion::allocate(1, 16).unwrap();
    assert!(matches!(
        InflightRegion::map(&a.file, a.mmap_size, 0, 2, 16),
        Err(InflightError::TooSmall { .. })
    ));
    assert!(matches!(
        InflightRegion::map(&a.file, 1 << 20, 4096, 1, 16),
        Err(InflightError::PastEof { .. })
    ));
    assert!(matches!(
        InflightRegion::map(&a.file, a.mmap_size, 0, 0, 16),
        Err(InflightError::BadGeometry(..))
    ));
    assert!(InflightRegion::map(&a.file, a.mmap_size, 0, 1, 16).is_ok());
    let r = InflightRegion::map(&a.file, a.mmap_size, 0, 1, 16).unwrap();
    assert!(r.queue(1, 16).is_none());
    assert!(r.queue(0, 32).is_none(), "ring larger than the region");
}

#[test]
fn log_then_recover() {
    let (r, _f) = region(1, 8);
    let mut q = r.queue(0, 8).unwrap();
    let rec = q.recover(0);
    assert!(rec.fresh);
    assert_eq!(q.version(), 1);
    // Pop 5, 2, 7; complete 2 and publish (used idx 1); complete 5,
    // write its used element, crash before publishing.
    q.popped(5);
    q.popped(2);
    q.popped(7);
    q.completing(2);
    q.published(1);
    q.completing(5);
    let mut q2 = r.queue(0, 8).unwrap();
    let rec = q2.recover(1);
    assert_eq!(rec.resubmit, vec![5, 7]);
    assert_eq!(rec.next_avail, Some(3));
    // Same, but the used idx reached the guest (2) before the crash:
    // 5 is done, only 7 is resubmitted.
    let mut q3 = r.queue(0, 8).unwrap();
    let rec = q3.recover(2);
    assert_eq!(rec.resubmit, vec![7]);
    assert_eq!(rec.next_avail, Some(3));
    assert_eq!(q3.used_idx(), 2);
    // Counter continues after the newest resubmitted head.
    q3.popped(1);
    let mut q4 = r.queue(0, 8).unwrap();
    assert_eq!(q4.recover(2).resubmit, vec![7, 1]);
}

#[test]
fn hostile_region_is_bounded() {
    let (r, f) = region(1, 4);
    let map = SharedMap::map(&f, 0, queue_region_size(4) as usize).unwrap();
    // version 1, last_batch_head out of range, used_idx far behind,
    // every inflight byte set, counters random.
    map.store16(OFF_VERSION, 1);
    map.store16(OFF_LAST_BATCH_HEAD, 999);
    map.store16(OFF_USED_IDX, 40000);
    for h in 0..4usize {
        map.store8(HDR + DESC * h, 1);
        map.store16(HDR + DESC * h + D_NEXT, 0xffff);
        map.store64(HDR + DESC * h + D_COUNTER, u64::MAX - h as u64);
    }
    let mut q = r.queue(0, 4).unwrap();
    let rec = q.recover(3);
    assert_eq!(rec.resubmit, vec![3, 2, 1, 0]);
    assert_eq!(rec.next_avail, Some(7));
    // Out-of-range heads from the core are ignored.
    q.popped(4);
    q.completing(u16::MAX);
    q.published(0);
    assert!(map.atomic::<AtomicU64>(usize::MAX - 2).is_none());
    assert!(map.atomic::<AtomicU16>(1).is_none());
}
