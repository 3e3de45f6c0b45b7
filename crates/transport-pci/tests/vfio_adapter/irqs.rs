//! SET_IRQS in the shapes QEMU sends: INTx with vfio's automask and the
//! KVM resample eventfd, MSI-X eventfds one vector per message, and the
//! malformed requests refused.

use std::io::Write;

use vblk_transport_pci::regs::{legacy, pci, vfio::*};
use vblk_vfio_user::Backend as _;

use crate::common::*;
use crate::{backend, map_all, RAM};

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
