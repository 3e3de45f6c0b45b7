//! Framing and errnos: refused messages consumed whole, VERSION first, no_reply, sizes.

use vblk_vfio_user::proto::{self, cmd, flags};
use vblk_vfio_user::{Limits, Session};

use crate::{negotiated, region_write, replies, Mock};

#[test]
fn a_refused_message_is_consumed_whole_and_an_embedded_header_is_not_run() {
    let (mut s, mut m) = negotiated();
    // Region 99 does not exist; its data is a DEVICE_RESET header.
    let reset = proto::message(7, cmd::DEVICE_RESET, 0, &[]);
    let mut stream = region_write(1, 99, 0, reset.len() as u32, &reset);
    // An unknown command whose payload is another DEVICE_RESET.
    stream.extend(proto::message(2, 0x7777, 0, &reset));
    stream.extend(proto::message(
        3,
        cmd::DEVICE_GET_INFO,
        0,
        &[&16u32.to_le_bytes()[..], &[0; 12]].concat(),
    ));
    let (out, err) = s.feed(&mut m, &stream);
    assert!(err.is_none());
    let r = replies(&out);
    assert_eq!(
        r.len(),
        3,
        "one reply per message, none for the embedded ones"
    );
    assert_eq!((r[0].0.id, r[0].0.error), (1, libc::EINVAL as u32));
    assert_eq!((r[1].0.id, r[1].0.error), (2, libc::ENOTSUP as u32));
    assert_eq!(r[2].0.id, 3);
    assert_eq!(r[2].0.flags, flags::TYPE_REPLY);
    assert!(!m.calls.contains(&"reset".to_string()));
}

#[test]
fn commands_before_version_are_refused_and_malformed_versions_answered() {
    let mut s = Session::new(Limits::default());
    let mut m = Mock::default();
    let reset = proto::message(1, cmd::DEVICE_RESET, 0, &[]);
    let (out, _) = s.feed(&mut m, &reset);
    let r = replies(&out);
    assert_eq!(r[0].0.flags, flags::TYPE_REPLY | flags::ERROR);
    assert_eq!(r[0].0.error, libc::EINVAL as u32);
    assert!(m.calls.is_empty());
    for bad in [
        b"\0\0\0\0{}".to_vec(),       // no NUL
        b"\0\0\0\0{}\0{}\0".to_vec(), // NUL inside
        b"\0\0\0\0[1]\0".to_vec(),    // not an object
        b"\0\0".to_vec(),             // too short
        vec![0; 12],                  // size 16 + 12: zeros, NULs inside
        b"\x01\0\0\0".to_vec(),       // major 1
    ] {
        let (out, err) = s.feed(&mut m, &proto::message(2, cmd::VERSION, 0, &bad));
        assert!(err.is_none());
        let r = replies(&out);
        assert_ne!(r[0].0.error, 0, "{bad:?}");
        assert!(!s.negotiated());
    }
    // A bare VERSION (no data) is fine; a second one is refused.
    let (out, _) = s.feed(&mut m, &proto::message(3, cmd::VERSION, 0, &[0, 0, 0, 0]));
    assert_eq!(replies(&out)[0].0.flags, flags::TYPE_REPLY);
    let (out, _) = s.feed(&mut m, &proto::message(4, cmd::VERSION, 0, &[0, 0, 0, 0]));
    assert_eq!(replies(&out)[0].0.error, libc::EINVAL as u32);
}

#[test]
fn no_reply_is_honoured_for_every_command() {
    let (mut s, mut m) = negotiated();
    let mut stream = region_write(1, 0, 0, 4, &[1, 2, 3, 4]);
    stream[8] |= flags::NO_REPLY as u8;
    let mut read = proto::message(2, cmd::REGION_READ, flags::NO_REPLY, &[0; 16]);
    read[16 + 12] = 4; // count 4 of region 0
    stream.extend(read);
    stream.extend(proto::message(3, 0x7777, flags::NO_REPLY, &[1; 9]));
    stream.extend(proto::message(4, cmd::DEVICE_RESET, 0, &[]));
    let (out, _) = s.feed(&mut m, &stream);
    let r = replies(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0.id, 4);
    assert_eq!(m.calls, ["write 0 0 4", "read 0 0 4", "reset"]);
}

#[test]
fn sizes_are_checked_per_command_and_absurd_sizes_drop_the_connection() {
    let (mut s, mut m) = negotiated();
    for (c, len) in [
        (cmd::DMA_MAP, 31),
        (cmd::DMA_MAP, 33),
        (cmd::DMA_UNMAP, 16),
        (cmd::DEVICE_GET_INFO, 0),
        (cmd::DEVICE_GET_REGION_INFO, 4),
        (cmd::DEVICE_GET_IRQ_INFO, 40),
        (cmd::DEVICE_SET_IRQS, 19),
        (cmd::REGION_READ, 15),
        (cmd::REGION_WRITE, 8),
        (cmd::DEVICE_RESET, 1),
    ] {
        let (out, err) = s.feed(&mut m, &proto::message(9, c, 0, &vec![0; len]));
        assert!(err.is_none());
        let r = replies(&out);
        assert_eq!(r[0].0.error, libc::EINVAL as u32, "command {c} size {len}");
    }
    // REGION_WRITE count that does not match its data; REGION_READ of 4 GiB.
    let (out, _) = s.feed(&mut m, &region_write(1, 0, 0, 0xffff_ffff, &[0; 4]));
    assert_eq!(replies(&out)[0].0.error, libc::EINVAL as u32);
    let mut read = proto::message(2, cmd::REGION_READ, 0, &[0; 16]);
    read[16 + 12..16 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    let (out, _) = s.feed(&mut m, &read);
    assert_eq!(replies(&out)[0].0.error, libc::E2BIG as u32);
    // A zero-byte read is answered without reaching the backend.
    let (out, _) = s.feed(&mut m, &proto::message(3, cmd::REGION_READ, 0, &[0; 16]));
    assert_eq!(replies(&out)[0].0.flags, flags::TYPE_REPLY);
    assert!(m.calls.is_empty());
    // Header sizes that cannot be framed.
    for size in [0u32, 8, 15, 0x10_0000 + 33, u32::MAX] {
        let mut h = proto::message(4, cmd::DEVICE_RESET, 0, &[]);
        h[4..8].copy_from_slice(&size.to_le_bytes());
        let (_, err) = s.feed(&mut m, &h);
        assert!(err.is_some(), "size {size}");
    }
}
