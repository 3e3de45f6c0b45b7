//! Interrupt suppression: VRING_AVAIL_F_NO_INTERRUPT without EVENT_IDX,
//! used_event / avail_event with it.

use super::*;

#[test]
fn b5_no_interrupt_flag_without_event_idx() {
    let mut r = Rig::new();
    r.set_avail_flags(1); // VRING_AVAIL_F_NO_INTERRUPT
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, none()));
    assert_eq!(r.counter("interrupts_suppressed"), 1);
    assert_eq!(r.counter("interrupts"), 0);
    // The driver wants interrupts again.
    r.set_avail_flags(0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    assert_eq!(r.counter("interrupts"), 1);
    assert_eq!(r.backend.flush_count(), 2);
    r.check_disk();
}

#[test]
fn b6_event_idx_used_event_suppresses_then_fires() {
    let mut r = Rig::with(|_| {}, true);
    // used_event = 1: the driver wants an interrupt once used idx passes 1,
    // i.e. when the second entry is added.
    r.set_used_event(1);
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, none()));
    assert_eq!(r.counter("interrupts_suppressed"), 1);
    assert_eq!(r.counter("interrupts"), 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    assert_eq!(r.counter("interrupts"), 1);
    // used_event already behind: no more interrupts until it moves.
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, none()));
    assert_eq!(r.counter("interrupts_suppressed"), 2);
    // A batch that jumps over used_event still interrupts once.
    r.set_used_event(4);
    r.chain_at(0, &[(HDR, 16, 0), (STATUS, 1, F_WRITE)]);
    for _ in 0..3 {
        r.publish(0);
    }
    assert_eq!(r.run().unwrap(), 3);
    assert_eq!(r.irq.take(), q0());
    // avail_event tells the driver where the next kick is wanted.
    assert_eq!(r.avail_event(), 6);
    assert_eq!(r.backend.flush_count(), 6);
    r.check_disk();
}

#[test]
fn b7_event_idx_ignores_the_no_interrupt_flag() {
    let mut r = Rig::with(|_| {}, true);
    r.set_avail_flags(1);
    r.set_used_event(0);
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    assert_eq!(r.counter("interrupts"), 1);
    r.check_disk();
}
