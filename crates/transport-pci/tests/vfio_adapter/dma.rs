//! DMA_MAP / DMA_UNMAP: guest memory mapped and unmapped under a running
//! queue, overlap and exact-match rules, read-only and shrunk memory, and
//! an unmap waiting for the I/O in flight.

use std::sync::Arc;

use vblk_transport_pci::regs::{status::*, vfio::*};
use vblk_transport_pci::vfio::Backend;
use vblk_transport_pci::PciFunction;
use vblk_vfio_user::{Backend as _, DmaMapFlags, DmaUnmapFlags};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryBackend, GuestMemoryMmap};

use crate::common::*;
use crate::{backend, map_all, DISK, RAM};

#[test]
fn guest_memory_maps_and_unmaps_while_the_queue_runs() {
    let (mut b, dev, disk) = backend(1);
    let ram = GuestRam::new(RAM);
    let half = RAM / 2;
    // Two regions from the same memfd, as QEMU maps RAM around holes, plus a
    // ROM without an fd that we cannot reach.
    for (off, addr) in [(0, 0), (half, half)] {
        b.dma_map(
            DmaMapFlags::READ_WRITE,
            off,
            addr,
            half,
            Some(ram.file.try_clone().unwrap()),
        )
        .unwrap();
    }
    b.dma_map(DmaMapFlags::READ, 0, 0x1_0000_0000, 0x2_0000, None)
        .unwrap();
    let (cfg_irq, cfg_dev) = eventfd();
    b.set_irqs(
        IRQ_MSIX,
        IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
        0,
        1,
        vec![cfg_dev],
    )
    .unwrap();
    // Rings low, data buffers in the upper region.
    let mut ring = Ring::new(0x1_0000, 0x2_0000, 0x3_0000, 64, half + 0x1_0000);
    let notify = modern_probe(&mut b, &ring, true);
    let (_, st) = ring.request(&ram.mem, VIRTIO_BLK_T_OUT, 8, &[0x5a; 1024]);
    b.bar_wr(MODERN, notify, 2, 0);
    assert_eq!(status_byte(&ram.mem, st), 0);
    assert_eq!(&disk.snapshot()[4096..5120], &[0x5a; 1024][..]);

    // The upper region goes away and comes back while the queue is live.
    b.dma_unmap(DmaUnmapFlags::NONE, half, half).unwrap();
    b.dma_unmap(DmaUnmapFlags::NONE, 0x1_0000_0000, 0x2_0000)
        .unwrap();
    b.dma_map(
        DmaMapFlags::READ_WRITE,
        half,
        half,
        half,
        Some(ram.file.try_clone().unwrap()),
    )
    .unwrap();
    let (_, st) = ring.request(&ram.mem, VIRTIO_BLK_T_OUT, 16, &[0xa5; 512]);
    b.bar_wr(MODERN, notify, 2, 0);
    assert_eq!(status_byte(&ram.mem, st), 0);
    assert_eq!(&disk.snapshot()[8192..8704], &[0xa5; 512][..]);

    // Everything unmapped, as QEMU does between the two halves of a memory
    // topology change (SeaBIOS handing over to Linux): a kick finds the
    // ring outside guest memory. The ring waits for its memory instead of
    // being broken, and is served as soon as the memory is back.
    b.dma_unmap(DmaUnmapFlags::UNMAP_ALL, 0, 0).unwrap();
    let (_, st) = ring.request(&ram.mem, VIRTIO_BLK_T_OUT, 16, &[0x3c; 512]);
    b.bar_wr(MODERN, notify, 2, 0);
    b.function().settle();
    assert_eq!(b.function().status() & DEVICE_NEEDS_RESET, 0);
    assert_eq!(status_byte(&ram.mem, st), 0xee, "served without memory");
    assert_eq!(take(&cfg_irq), 0);
    map_all(&mut b, &ram);
    let t = std::time::Instant::now();
    while status_byte(&ram.mem, st) != 0 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "the waiting ring was not served when its memory came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(&disk.snapshot()[8192..8704], &[0x3c; 512][..]);
    assert_eq!(b.function().status() & DEVICE_NEEDS_RESET, 0);
    assert_eq!(counter(&dev, "needs_reset"), 0);
    assert_eq!(counter(&dev, "config_interrupts"), 0);
}

fn errno(r: std::io::Result<()>) -> i32 {
    vblk_vfio_user::errno_of(&r.expect_err("an error"))
}

#[test]
fn dma_maps_must_not_overlap_and_unmaps_must_match_exactly() {
    let (mut b, _dev, _disk) = backend(1);
    let ram = GuestRam::new(RAM);
    let f = || Some(ram.file.try_clone().unwrap());
    b.dma_map(DmaMapFlags::READ_WRITE, 0, 0, RAM / 2, f())
        .unwrap();
    // "A command to map over an existing region must be failed by the
    // server with EEXIST".
    let r = b.dma_map(DmaMapFlags::READ_WRITE, 0, RAM / 4, RAM / 2, f());
    assert_eq!(errno(r), libc::EEXIST);
    let r = b.dma_map(DmaMapFlags::READ, 0, 0x1000, 0x1000, None);
    assert_eq!(errno(r), libc::EEXIST, "fd-less maps overlap too");
    // Past the end of the file: EINVAL, nothing mapped.
    let r = b.dma_map(DmaMapFlags::READ_WRITE, RAM / 2, RAM, RAM, f());
    assert_eq!(errno(r), libc::EINVAL);
    // "The address and size of the DMA region being unmapped must match
    // exactly a previous mapping."
    for (a, s) in [(0, RAM / 4), (0x1000, RAM / 2), (RAM, RAM / 2)] {
        assert_eq!(errno(b.dma_unmap(DmaUnmapFlags::NONE, a, s)), libc::EINVAL);
    }
    assert!(
        b.function().memory().memory().num_regions() == 1,
        "still mapped"
    );
    b.dma_unmap(DmaUnmapFlags::NONE, 0, RAM / 2).unwrap();
    assert_eq!(b.function().memory().memory().num_regions(), 0);
}

#[test]
fn a_read_only_region_is_never_written_and_the_device_needs_a_reset() {
    let (mut b, dev, _disk) = backend(1);
    let ram = GuestRam::new(RAM);
    b.dma_map(
        DmaMapFlags::READ,
        0,
        0,
        ram.size,
        Some(ram.file.try_clone().unwrap()),
    )
    .unwrap();
    let mut ring = Ring::new(0x1_0000, 0x2_0000, 0x3_0000, 64, 0x10_0000);
    let (buf, st) = ring.request(&ram.mem, VIRTIO_BLK_T_IN, 0, &[0x11; 512]);
    // The queue thread touches the used ring as soon as the ring starts
    // (notification flags): the fault may come at DRIVER_OK already.
    let (notify, status, driver_ok) = modern_probe_status(&mut b, &ring, false);
    assert_eq!(status & !u64::from(DEVICE_NEEDS_RESET), driver_ok);
    b.bar_wr(MODERN, notify, 2, 0);
    assert_eq!(status_byte(&ram.mem, st), 0xee, "status not written");
    assert_eq!(read_bytes(&ram.mem, buf, 512), vec![0x11; 512]);
    assert_eq!(ring.used_idx(&ram.mem), 0, "used ring not written");
    assert_ne!(b.function().status() & DEVICE_NEEDS_RESET, 0);
    assert_eq!(counter(&dev, "needs_reset"), 1);
}

#[test]
fn a_shrunk_memfd_is_contained_and_reported() {
    let (mut b, _dev, _disk) = backend(1);
    let ram = GuestRam::new(RAM);
    map_all(&mut b, &ram);
    let mut ring = Ring::new(0x1_0000, 0x2_0000, 0x3_0000, 64, 0x10_0000);
    let notify = modern_probe(&mut b, &ring, false);
    ring.request(&ram.mem, VIRTIO_BLK_T_OUT, 0, &[1; 512]);
    ram.file.set_len(0).unwrap();
    b.bar_wr(MODERN, notify, 2, 0);
    assert_ne!(b.function().status() & DEVICE_NEEDS_RESET, 0);
}

/// "the server must release all references to that DMA region before
/// replying, which potentially includes in-flight DMA transactions": a
/// DMA_UNMAP while a slow read is in flight waits for the read, which
/// completes into the memory before it goes.
#[test]
fn dma_unmap_waits_for_in_flight_io() {
    use std::time::{Duration, Instant};
    use vblk_backend::testing::{Outcome, ScriptedBackend};
    let disk = ScriptedBackend::new(DISK);
    disk.fill(0, &[0x3c; 512]);
    disk.set_script(|_, _, _| Outcome::after(Duration::from_millis(300)));
    let dev = Arc::new(vblk_device::BlkDevice::new(
        vblk_device::BlkConfig::new(DISK),
        Arc::new(disk.clone()),
    ));
    let f = PciFunction::new(dev, GuestMemoryAtomic::new(GuestMemoryMmap::new())).unwrap();
    let mut b = Backend::new(f);
    let ram = GuestRam::new(RAM);
    map_all(&mut b, &ram);
    let mut ring = Ring::new(0x1_0000, 0x2_0000, 0x3_0000, 64, 0x10_0000);
    let notify = modern_probe(&mut b, &ring, false);
    let (buf, st) = ring.request(&ram.mem, VIRTIO_BLK_T_IN, 0, &[0; 512]);
    b.bar_wr(MODERN, notify, 2, 0);
    let t = Instant::now();
    while disk.in_kernel() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the read never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    b.dma_unmap(DmaUnmapFlags::NONE, 0, ram.size).unwrap();
    // When the unmap is answered nothing is in flight, and the read landed.
    assert_eq!(disk.in_kernel(), 0);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "unmap did not wait"
    );
    assert_eq!(status_byte(&ram.mem, st), 0);
    assert_eq!(read_bytes(&ram.mem, buf, 512), vec![0x3c; 512]);
    assert_eq!(ring.used_idx(&ram.mem), 1);
}
