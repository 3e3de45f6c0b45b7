//! The opcode allowlist: the ring refuses what the engine does not use.

use super::*;

#[test]
fn the_ring_refuses_opcodes_outside_the_allowlist() {
    let (_d, _p, mut e) = engine(4096);
    let (registered, restricted) = e.hardening();
    if !restricted {
        eprintln!("kernel refused IORING_REGISTER_RESTRICTIONS; skipped");
        return;
    }
    assert!(registered);
    // IORING_OP_OPENAT is not on the list.
    let sqe = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), c"/".as_ptr())
        .build()
        .user_data(CANCEL_TAG | 1);
    // SAFETY: the path is a static C string.
    unsafe { e.ring.submission().push(&sqe) }.unwrap();
    e.ring.submit_and_wait(1).unwrap();
    let c = e.ring.completion().next().expect("a CQE");
    assert_eq!(c.result(), -libc::EACCES);
    // The engine's own operations still work.
    let mut b = vec![0u8; 4096];
    assert_eq!(
        one(&mut e, IoOp::Read, 0, 4096, &mut [&mut b]).result,
        Ok(4096)
    );
    assert_eq!(one(&mut e, IoOp::Flush, 0, 0, &mut []).result, Ok(0));
}
