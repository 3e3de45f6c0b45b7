//! Malformed, refused, mis-sized and pre-VERSION messages: the daemon lives and stays in step.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::{
    client, header, header_flags, msg, start, stop, Client, DEVICE_GET_INFO, DEVICE_RESET,
    DMA_UNMAP, NO_REPLY, REGION_READ, REGION_WRITE, VERSION,
};

#[test]
fn malformed_messages_do_not_kill_the_daemon() {
    let mut d = start();
    let attacks: Vec<Vec<u8>> = vec![
        // VERSION whose size is smaller than its own header.
        header(1, 1, 4).to_vec(),
        // An unknown command.
        header(2, 0x7777, 16).to_vec(),
        // A region read of 4 GiB - 1 from a region that does not exist.
        [
            header(3, 9, 32).to_vec(),
            0xffu32.to_le_bytes().to_vec(),
            vec![0; 4],
            0u64.to_le_bytes().to_vec(),
            0xffff_ffffu32.to_le_bytes().to_vec(),
        ]
        .concat(),
        // Half a header, then hang up.
        vec![1, 2, 3],
        // Garbage.
        (0..200u32).map(|i| (i * 37 % 251) as u8).collect(),
    ];
    for (i, a) in attacks.iter().enumerate() {
        let mut s = UnixStream::connect(&d.sock)
            .unwrap_or_else(|e| panic!("attack {i}: cannot connect: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = s.write_all(a);
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
        assert!(d.alive(), "daemon died on attack {i}");
    }
    // Still serving: a fresh client is accepted and the counters answer.
    let mut c = client(&d);
    c.version();
    assert!(c.device_info().ok());
    drop(c);
    let v = d.stats();
    assert!(
        v["device"]["connections"].as_u64().unwrap() >= attacks.len() as u64,
        "{v}"
    );
    stop(d);
}

#[test]
fn a_refused_message_is_consumed_whole_so_an_embedded_header_never_runs() {
    let d = start();
    let mut c = client(&d);
    c.version();
    let reset = msg(7, DEVICE_RESET, &[]);
    // REGION_WRITE to region 99 whose data is a DEVICE_RESET message.
    let mut p = Client::access(99, 0, reset.len() as u32);
    p.extend_from_slice(&reset);
    assert_eq!(c.call(REGION_WRITE, &p).errno(), libc::EINVAL);
    // An unknown command whose payload is a DEVICE_RESET message.
    assert_eq!(c.call(0x7777, &reset).errno(), libc::ENOTSUP);
    // A no_reply REGION_READ and VERSION-like no_reply unknown command:
    // no reply, and the stream stays in step.
    let mut r = header_flags(50, REGION_READ, 32, NO_REPLY).to_vec();
    r.extend_from_slice(&Client::access(7, 0, 4));
    c.send(&r, &[]);
    c.send(
        &[&header_flags(51, 0x7777, 20, NO_REPLY)[..], &[0; 4]].concat(),
        &[],
    );
    // The next reply is the next command's, not a reset's (id 7).
    let info = c.device_info();
    assert!(info.ok(), "{info:?}");
    assert!(c.nothing_more(), "no reply to the embedded reset");
    let v = d.stats();
    assert_eq!(v["device"]["resets"].as_u64(), Some(0), "{v}");
}

#[test]
fn wrong_sizes_are_answered_with_einval_and_absurd_sizes_drop_only_that_client() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    // DEVICE_GET_INFO with 4 bytes more or fewer than its layout.
    assert_eq!(c.call(DEVICE_GET_INFO, &[0; 20]).errno(), libc::EINVAL);
    assert_eq!(c.call(DEVICE_GET_INFO, &[0; 12]).errno(), libc::EINVAL);
    assert_eq!(c.call(DEVICE_RESET, &[0; 8]).errno(), libc::EINVAL);
    assert_eq!(c.call(DMA_UNMAP, &[0; 8]).errno(), libc::EINVAL);
    // REGION_WRITE whose count disagrees with its data.
    let mut p = Client::access(0, 0, 4096);
    p.extend_from_slice(&[0; 4]);
    assert_eq!(c.call(REGION_WRITE, &p).errno(), libc::EINVAL);
    assert!(c.device_info().ok(), "still in step");
    drop(c); // one client at a time

    // Sizes that cannot be framed end this connection, and only it.
    for size in [8u32, 0xffff_ffff] {
        let mut c = client(&d);
        c.version();
        c.send(&header(9, DEVICE_GET_INFO, size), &[]);
        assert!(c.closed(), "size {size}: connection dropped");
        assert!(d.alive());
    }
    let mut c = client(&d);
    c.version();
    assert!(c.device_info().ok());
    drop(c);
    stop(d);
}

#[test]
fn commands_before_version_and_malformed_versions_get_errno_replies() {
    let mut d = start();
    let mut c = client(&d);
    // "the first message is VERSION"
    assert_eq!(c.call(DEVICE_RESET, &[]).errno(), libc::EINVAL);
    assert_eq!(c.device_info().errno(), libc::EINVAL);
    for bad in [
        b"\0\0\0\0{\"capabilities\":{}}".to_vec(), // no NUL
        b"\0\0\0\0{}\0{}\0".to_vec(),              // NUL inside
        b"\0\0\0\0not json\0".to_vec(),
        vec![0; 12], // VERSION size 16 + 12: NULs inside
        vec![0; 2],  // shorter than major + minor
        vec![1, 0, 0, 0],
    ] {
        let r = c.call(VERSION, &bad);
        assert_ne!(r.errno(), 0, "{bad:?}");
        assert!(d.alive());
    }
    // A bare VERSION header (size 16, no payload).
    assert_eq!(c.call(VERSION, &[]).errno(), libc::EINVAL);
    c.version();
    assert!(c.device_info().ok());
}
