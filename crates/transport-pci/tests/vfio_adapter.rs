//! The vfio-user adapter without a socket: the messages QEMU sends
//! (DMA_MAP/UNMAP, SET_IRQS in QEMU's shapes, DEVICE_RESET, region
//! accesses) delivered straight to the `vblk_vfio_user::Backend`, with real eventfds
//! and guest RAM in a memfd.

mod common;

use std::io::Write;
use std::sync::Arc;

use common::*;
use vblk_transport_pci::regs::{common as cc, layout::*, legacy, pci, status::*, vfio::*};
use vblk_transport_pci::vfio::Backend;
use vblk_transport_pci::PciFunction;
use vblk_vfio_user::{Backend as _, DmaMapFlags, DmaUnmapFlags};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryBackend, GuestMemoryMmap};

const DISK: u64 = 1 << 20;
const RAM: u64 = 4 << 20;

fn backend(
    queues: u16,
) -> (
    Backend,
    Arc<vblk_device::BlkDevice>,
    vblk_backend::MemBackend,
) {
    let (dev, mem_backend) = device(DISK, queues);
    let f = PciFunction::new(dev.clone(), GuestMemoryAtomic::new(GuestMemoryMmap::new())).unwrap();
    (Backend::new(f), dev, mem_backend)
}

fn map_all(b: &mut Backend, ram: &GuestRam) {
    b.dma_map(
        DmaMapFlags::READ_WRITE,
        0,
        0,
        ram.size,
        Some(ram.file.try_clone().unwrap()),
    )
    .unwrap();
}

fn signal(f: &std::fs::File) {
    (&*f).write_all(&1u64.to_ne_bytes()).unwrap();
}

#[test]
fn intx_follows_vfio_automask_and_the_kvm_resample_eventfd() {
    let (mut b, dev, disk) = backend(1);
    let ram = GuestRam::new(RAM);
    map_all(&mut b, &ram);
    let (trig, trig_dev) = eventfd();
    let (resample, resample_dev) = eventfd();
    // QEMU's vfio_intx_enable, then vfio_intx_enable_kvm.
    b.set_irqs(
        IRQ_INTX,
        IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
        0,
        1,
        vec![trig_dev],
    )
    .unwrap();
    b.set_irqs(
        IRQ_INTX,
        IRQ_SET_DATA_NONE | IRQ_SET_ACTION_MASK,
        0,
        1,
        vec![],
    )
    .unwrap();
    b.set_irqs(
        IRQ_INTX,
        IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_UNMASK,
        0,
        1,
        vec![resample_dev],
    )
    .unwrap();
    b.set_irqs(
        IRQ_INTX,
        IRQ_SET_DATA_NONE | IRQ_SET_ACTION_UNMASK,
        0,
        1,
        vec![],
    )
    .unwrap();

    let mut ring = legacy_probe(&mut b, 0x10, false, 0x10_0000);
    disk.fill(0, &[0x11; 512]);
    let (buf, st) = ring.request(&ram.mem, VIRTIO_BLK_T_IN, 0, &[0; 512]);
    b.bar_wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(status_byte(&ram.mem, st), 0);
    assert_eq!(read_bytes(&ram.mem, buf, 512), vec![0x11; 512]);
    assert_eq!(take(&trig), 1, "first completion: one edge");
    assert_ne!(
        b.cfg_rd(pci::STATUS as u64, 2) & u64::from(pci::STATUS_INTERRUPT),
        0
    );

    // A second completion while the line is auto-masked: no new edge.
    ring.request(&ram.mem, VIRTIO_BLK_T_IN, 0, &[0; 512]);
    b.bar_wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(ring.used_idx(&ram.mem), 2);
    assert_eq!(take(&trig), 0);

    // KVM signals the resample fd at the guest's EOI: unmasked, and the
    // line (ISR not read yet) is still high, so it fires again.
    signal(&resample);
    assert_eq!(wait_signal(&trig), 1, "level re-fired after resample");

    // The guest's handler reads ISR: line low; the next EOI stays quiet.
    assert_eq!(b.bar_rd(0, legacy::ISR, 1), 1);
    assert_eq!(
        b.cfg_rd(pci::STATUS as u64, 2) & u64::from(pci::STATUS_INTERRUPT),
        0
    );
    signal(&resample);
    assert_eq!(wait_signal(&trig), 0);
    ring.request(&ram.mem, VIRTIO_BLK_T_IN, 0, &[0; 512]);
    b.bar_wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(take(&trig), 1, "unmasked by the resample: fires at once");
    assert_eq!(b.bar_rd(0, legacy::ISR, 1), 1);

    // QEMU without KVM unmasks with a plain message at each EOI.
    ring.request(&ram.mem, VIRTIO_BLK_T_IN, 0, &[0; 512]);
    b.bar_wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    b.set_irqs(
        IRQ_INTX,
        IRQ_SET_DATA_NONE | IRQ_SET_ACTION_UNMASK,
        0,
        1,
        vec![],
    )
    .unwrap();
    assert_eq!(take(&trig), 1);

    // INTx off: nothing fires any more, whatever the resample fd says
    // (its watcher thread is stopped with it).
    b.set_irqs(
        IRQ_INTX,
        IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
        0,
        0,
        vec![],
    )
    .unwrap();
    signal(&resample);
    ring.request(&ram.mem, VIRTIO_BLK_T_IN, 0, &[0; 512]);
    b.bar_wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(wait_signal(&trig), 0);
    // Counted when a completion raises the line; re-fires at unmask are not.
    assert_eq!(counter(&dev, "intx"), 2);
    assert_eq!(counter(&dev, "notify_legacy"), 5);
}

#[test]
fn msix_eventfds_in_the_shapes_qemu_sends() {
    let (mut b, dev, _disk) = backend(1);
    let ram = GuestRam::new(RAM);
    map_all(&mut b, &ram);
    let (c0, c0_dev) = eventfd();
    let (q1, q1_dev) = eventfd();
    // QEMU negotiates max_msg_fds = 1 with us: one vector per message.
    b.set_irqs(
        IRQ_MSIX,
        IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
        0,
        1,
        vec![c0_dev],
    )
    .unwrap();
    b.set_irqs(
        IRQ_MSIX,
        IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
        1,
        1,
        vec![q1_dev],
    )
    .unwrap();
    let mut ring = Ring::new(0x1_0000, 0x2_0000, 0x3_0000, 64, 0x10_0000);
    let notify = modern_probe(&mut b, &ring, true);
    ring.request(&ram.mem, VIRTIO_BLK_T_OUT, 3, &[0x42; 512]);
    b.bar_wr(MODERN, notify, 2, 0);
    assert_eq!(take(&q1), 1);
    assert_eq!(take(&c0), 0);
    assert_eq!(counter(&dev, "msix"), 1);

    // "-1" (no eventfd) arrives as a message with a count and no fds.
    b.set_irqs(
        IRQ_MSIX,
        IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
        1,
        1,
        vec![],
    )
    .unwrap();
    ring.request(&ram.mem, VIRTIO_BLK_T_OUT, 3, &[0x42; 512]);
    b.bar_wr(MODERN, notify, 2, 0);
    assert_eq!(take(&q1), 0);
    assert_eq!(ring.used_idx(&ram.mem), 2, "completed all the same");

    // Malformed: fd count differs from count, vectors past the table, MSI-X
    // masking through SET_IRQS (not advertised), vectors of MSI.
    let (_x, x_dev) = eventfd();
    assert!(b
        .set_irqs(
            IRQ_MSIX,
            IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            0,
            2,
            vec![x_dev]
        )
        .is_err());
    let (_y, y_dev) = eventfd();
    assert!(b
        .set_irqs(
            IRQ_MSIX,
            IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            2,
            1,
            vec![y_dev]
        )
        .is_err());
    assert!(b
        .set_irqs(
            IRQ_MSIX,
            IRQ_SET_DATA_NONE | IRQ_SET_ACTION_MASK,
            0,
            1,
            vec![]
        )
        .is_err());
    assert!(b
        .set_irqs(
            IRQ_MSI,
            IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
            0,
            1,
            vec![]
        )
        .is_err());
    // Disabling everything.
    b.set_irqs(
        IRQ_MSIX,
        IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
        0,
        0,
        vec![],
    )
    .unwrap();
    b.set_irqs(
        IRQ_MSI,
        IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
        0,
        0,
        vec![],
    )
    .unwrap();
}

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

#[test]
fn region_accesses_outside_a_region_are_refused() {
    let (mut b, dev, _disk) = backend(1);
    let mut buf = [0u8; 4];
    assert!(b.region_read(0, LEGACY_BAR_SIZE - 2, &mut buf).is_err());
    assert!(b.region_read(REGION_ROM, 0, &mut buf).is_err());
    assert!(b.region_read(REGION_VGA, 0, &mut buf).is_err());
    assert!(
        b.region_read(2, 0, &mut buf).is_err(),
        "BAR2 does not exist"
    );
    assert!(b
        .region_write(MODERN as u32, MODERN_BAR_SIZE, &buf)
        .is_err());
    assert!(b
        .region_read(REGION_CONFIG, u64::MAX - 1, &mut buf)
        .is_err());
    let mut cfg = [0u8; 256];
    b.region_read(REGION_CONFIG, 0, &mut cfg).unwrap();
    assert_eq!(&cfg[0..4], &[0xf4, 0x1a, 0x01, 0x10]);
    let mut big = vec![0u8; 257];
    assert!(b.region_read(REGION_CONFIG, 0, &mut big).is_err());
    assert_eq!(counter(&dev, "connections"), 1, "counted once");
}

#[test]
fn client_reset_is_a_function_reset() {
    let (mut b, _dev, _disk) = backend(1);
    let ram = GuestRam::new(RAM);
    map_all(&mut b, &ram);
    let (q1, q1_dev) = eventfd();
    b.set_irqs(
        IRQ_MSIX,
        IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
        1,
        1,
        vec![q1_dev],
    )
    .unwrap();
    b.cfg_wr(pci::COMMAND as u64, 2, 0x0407);
    let ring = Ring::new(0x1_0000, 0x2_0000, 0x3_0000, 64, 0x10_0000);
    modern_probe(&mut b, &ring, true);
    b.reset().unwrap();
    assert_eq!(b.function().status(), 0);
    assert_eq!(
        b.cfg_rd(pci::COMMAND as u64, 2),
        0,
        "command register reset"
    );
    assert_eq!(
        b.cfg_rd(CAP_MSIX as u64 + 2, 2) & 0xc000,
        0,
        "MSI-X disabled"
    );
    assert_eq!(b.bar_rd(MODERN, COMMON_OFFSET + cc::QUEUE_ENABLE, 2), 0);
    // Guest memory stays mapped; the eventfds are gone.
    let mut ring = Ring::new(0x1_0000, 0x2_0000, 0x3_0000, 64, 0x10_0000);
    let notify = modern_probe(&mut b, &ring, true);
    let (_, st) = ring.request(&ram.mem, VIRTIO_BLK_T_OUT, 0, &[1; 512]);
    b.bar_wr(MODERN, notify, 2, 0);
    assert_eq!(status_byte(&ram.mem, st), 0);
    assert_eq!(take(&q1), 0);
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

#[test]
fn zero_length_accesses_touch_nothing() {
    let (mut b, _dev, _disk) = backend(1);
    b.region_read(MODERN as u32, ISR_OFFSET, &mut []).unwrap();
    b.region_write(MODERN as u32, NOTIFY_OFFSET, &[]).unwrap();
    b.region_read(REGION_CONFIG, 0, &mut []).unwrap();
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
