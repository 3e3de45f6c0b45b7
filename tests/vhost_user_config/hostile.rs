//! Hostile SET_BACKEND_REQ_FD messages: refused or dropped; the daemon keeps serving.

use super::*;

/// SET_BACKEND_REQ_FD from a hostile front end: no fd, two fds, an fd that
/// is not a stream socket, an oversized payload, the message without
/// BACKEND_REQ negotiated, and a channel whose other end is gone when a
/// resize comes. Each is refused (answered non-zero) or drops that
/// connection; the daemon keeps serving and resizing.
#[test]
fn hostile_backend_channels_are_refused_and_the_daemon_keeps_serving() {
    use std::os::unix::net::UnixStream;
    use vblk_testkit::vhost_user::Reply;
    const SET_BACKEND_REQ_FD: u32 = 21;
    let daemon = start("null:1M", &[]);
    let sock = daemon.sock.clone();
    let d = Driver::negotiate(&sock, opts()).unwrap();
    let ack = |fds: &[i32]| {
        d.raw
            .call(SET_BACKEND_REQ_FD, true, &[], fds)
            .and_then(|r| r.u64())
    };
    let (a, b) = UnixStream::pair().unwrap();
    let (c, _c2) = UnixStream::pair().unwrap();
    let efd = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
    assert_eq!(ack(&[]), Some(1), "no fd");
    assert_eq!(ack(&[a.as_raw_fd(), c.as_raw_fd()]), Some(1), "two fds");
    assert_eq!(ack(&[efd.as_raw_fd()]), Some(1), "an eventfd");
    let (dg, _dg2) = std::os::unix::net::UnixDatagram::pair().unwrap();
    assert_eq!(ack(&[dg.as_raw_fd()]), Some(1), "a datagram socket");
    assert!(d.raw.answers(), "the connection survives refusals");
    // A good channel, then its other end goes away: the resize still works.
    assert_eq!(ack(&[a.as_raw_fd()]), Some(0));
    drop(a);
    drop(b);
    let (ok, out) = resize(&daemon, &["2M"]);
    assert!(ok, "{out}");
    assert!(d.raw.answers());
    // An oversized payload breaks the protocol: this connection goes.
    d.raw
        .send_sized(
            SET_BACKEND_REQ_FD,
            1 | 8,
            4096,
            &[0; 4096],
            &[c.as_raw_fd()],
        )
        .unwrap();
    assert!(matches!(d.raw.recv(), Reply::Closed | Reply::Timeout));
    drop(d);
    // Without BACKEND_REQ negotiated the library refuses it as any other.
    let mut o = opts();
    o.protocol &= !VhostUserProtocolFeatures::BACKEND_REQ;
    let d = Driver::negotiate(&sock, o).unwrap();
    let _ = d.raw.call(SET_BACKEND_REQ_FD, true, &[], &[c.as_raw_fd()]);
    drop(d);
    // The daemon still serves a well-behaved front end, and resizes.
    let mut d = Driver::connect(&sock, opts()).unwrap();
    let changes = channel(&d);
    let (ok, out) = resize(&daemon, &["3M"]);
    assert!(ok, "{out}");
    assert_eq!(changes.load(Ordering::SeqCst), 1);
    assert_eq!(d.capacity(), Some(3 * MIB));
    assert_eq!(status(&mut d, &Request::read(3 * MIB / 512 - 1, 512)), OK);
}
