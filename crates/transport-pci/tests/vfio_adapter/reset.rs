//! DEVICE_RESET: the client's reset is a function reset (status, command
//! register, MSI-X, queues), with guest memory kept and eventfds dropped.

use vblk_transport_pci::regs::{common as cc, layout::*, pci, vfio::*};
use vblk_vfio_user::Backend as _;

use crate::common::*;
use crate::{backend, map_all, RAM};

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
