//! DMA maps checked, capped and unmapped exactly; guest memory shrunk or read-only under rings.

use std::os::unix::fs::FileExt;

use crate::{client, memfd, start, stop, DEVICE_RESET, NEEDS_RESET, VERSION};

#[test]
fn dma_maps_are_checked_capped_and_unmapped_exactly() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    // A 4 MiB map of a 4 KiB memfd: refused (it would SIGBUS on touch).
    let small = memfd(4096);
    assert_eq!(
        c.dma_map(3, 0, 0, 4 << 20, Some(&small)).errno(),
        libc::EINVAL
    );
    assert_eq!(
        c.dma_map(3, 4096, 0, 4096, Some(&small)).errno(),
        libc::EINVAL
    );
    // A fine map; an overlapping one is EEXIST.
    let ram = memfd(1 << 20);
    assert!(c.dma_map(3, 0, 0x10_0000, 1 << 20, Some(&ram)).ok());
    assert_eq!(
        c.dma_map(3, 0, 0x18_0000, 1 << 20, Some(&ram)).errno(),
        libc::EEXIST
    );
    // Unmaps must match a mapping exactly.
    assert_eq!(c.dma_unmap(0x10_0000, 4096).errno(), libc::EINVAL);
    assert_eq!(c.dma_unmap(0x10_1000, 1 << 20).errno(), libc::EINVAL);
    assert_eq!(c.dma_unmap(0x20_0000, 1 << 20).errno(), libc::EINVAL);
    let r = c.dma_unmap(0x10_0000, 1 << 20);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.payload.len(), 24, "the entry is echoed");
    assert_eq!(c.dma_unmap(0x10_0000, 1 << 20).errno(), libc::EINVAL);

    // The map cap, advertised in VERSION: fds do not pile up.
    drop(c); // one client at a time
    let mut c2 = client(&d);
    let mut p = vec![0, 0, 0, 0];
    p.extend_from_slice(b"{}\0");
    let v = c2.call(VERSION, &p);
    let json = &v.payload[4..v.payload.len() - 1];
    let caps: serde_json::Value = serde_json::from_slice(json).unwrap();
    let max = caps["capabilities"]["max_dma_maps"].as_u64().unwrap();
    assert!((1..=4096).contains(&max), "{caps}");
    assert!(caps["capabilities"]["max_msg_fds"].as_u64().unwrap() >= 8);
    let page = memfd(4096);
    let fds_before = d.open_fds();
    for i in 0..max {
        let r = c2.dma_map(1, 0, i * 4096, 4096, Some(&page));
        assert!(r.ok(), "map {i}: {r:?}");
    }
    assert_eq!(
        c2.dma_map(1, 0, max * 4096, 4096, Some(&page)).errno(),
        libc::ENOSPC
    );
    assert!(d.open_fds() <= fds_before + max as usize + 2);
    drop(c2);
    assert!(d.alive());
}

#[test]
fn a_memfd_shrunk_under_the_rings_does_not_kill_the_daemon() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    let ram = memfd(64 * 1024);
    assert!(c.dma_map(3, 0, 0, 64 * 1024, Some(&ram)).ok());
    let notify = c.probe(0x1000, 0x3000, 0x4000);
    ram.set_len(0).unwrap(); // not sealed: allowed

    // The device reads the avail ring: SIGBUS. The queue thread reads the
    // ring after the kick's reply.
    c.modern_wr(notify, 0, 2);
    let t = std::time::Instant::now();
    while c.status() & NEEDS_RESET == 0 && t.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(d.alive(), "daemon killed by SIGBUS");
    assert_ne!(c.status() & NEEDS_RESET, 0, "breakage reported");
    // The daemon goes on serving: a reset and a fresh map work.
    assert!(c.call(DEVICE_RESET, &[]).ok());
    assert!(c.dma_unmap(0, 64 * 1024).ok());
    assert!(d.alive());
    drop(c);
    stop(d);
}

#[test]
fn the_device_never_writes_a_read_only_region() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    let ram = memfd(64 * 1024);
    // One IN request: header (OUT), 512 data bytes and status (IN).
    let desc = [
        (0x8000u64, 16u32, 1u16, 1u16),
        (0x9000, 512, 1 | 2, 2),
        (0xa000, 1, 2, 0),
    ];
    for (i, (addr, len, flags, next)) in desc.iter().enumerate() {
        let mut b = addr.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&next.to_le_bytes());
        ram.write_all_at(&b, 0x1000 + 16 * i as u64).unwrap();
    }
    ram.write_all_at(&[0; 16], 0x8000).unwrap(); // VIRTIO_BLK_T_IN, sector 0
    ram.write_all_at(&[0x77; 512], 0x9000).unwrap();
    ram.write_all_at(&[0xff], 0xa000).unwrap();
    ram.write_all_at(&[0, 0, 1, 0, 0, 0], 0x3000).unwrap(); // avail idx 1, ring[0] 0

    // Mapped readable only.
    assert!(c.dma_map(1, 0, 0, 64 * 1024, Some(&ram)).ok());
    let notify = c.probe(0x1000, 0x3000, 0x4000);
    c.modern_wr(notify, 0, 2);
    assert!(d.alive(), "daemon killed writing a read-only region");
    let mut b = [0u8; 512];
    ram.read_exact_at(&mut b, 0x9000).unwrap();
    assert_eq!(b, [0x77; 512], "data untouched");
    ram.read_exact_at(&mut b[..1], 0xa000).unwrap();
    assert_eq!(b[0], 0xff, "status untouched");
    ram.read_exact_at(&mut b[..4], 0x4000).unwrap();
    assert_eq!(&b[..4], &[0; 4], "used ring untouched");
    assert_ne!(c.status() & NEEDS_RESET, 0, "the failed write is reported");
    drop(c);
    stop(d);
}
