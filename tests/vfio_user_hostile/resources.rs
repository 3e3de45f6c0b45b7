//! Exhaustion: no client-sized allocations, and fds sent with messages are closed.

use std::io::Write;
use std::os::fd::AsRawFd;

use crate::{client, header, memfd, start, vm_hwm, Client, DEVICE_GET_INFO, REGION_WRITE};

#[test]
fn client_sized_allocations_never_happen() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    let before = vm_hwm(&d);
    // REGION_WRITE claiming 4 GiB - 1 of data in a 32-byte message.
    let w = Client::access(0, 0, 0xffff_ffff);
    assert_eq!(c.call(REGION_WRITE, &w).errno(), libc::EINVAL);
    // REGION_READ of 4 GiB - 1 from a real region.
    assert_eq!(c.rd(0, 0, 0xffff_ffff).errno(), libc::E2BIG);
    // A header announcing a 4 GiB message, followed by a little data.
    let mut big = header(3, REGION_WRITE, 0xffff_fff0).to_vec();
    big.extend_from_slice(&Client::access(0, 0, 0xffff_ffd0));
    big.extend_from_slice(&[0; 4096]);
    drop(c); // one client at a time
    let mut c2 = client(&d);
    c2.version();
    let _ = c2.s.write_all(&big);
    assert!(c2.closed());
    let after = vm_hwm(&d);
    assert!(
        after < before + 16 * 1024,
        "peak memory {before} KiB -> {after} KiB"
    );
    assert!(d.alive());
}

#[test]
fn fds_sent_with_a_message_are_closed_when_unused() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    let f = memfd(4096);
    let before = d.open_fds();
    let mut info = 16u32.to_le_bytes().to_vec();
    info.extend_from_slice(&[0; 12]);
    for _ in 0..50 {
        // Fds with a command that takes none.
        let fds = [f.as_raw_fd(); 3];
        assert_eq!(
            c.call_fds(DEVICE_GET_INFO, &info, &fds).errno(),
            libc::EINVAL
        );
        // More fds than max_msg_fds: the kernel truncates (MSG_CTRUNC).
        let fds = [f.as_raw_fd(); 40];
        let mut p = 20u32.to_le_bytes().to_vec();
        for v in [4u32 | 32, 2, 0, 40] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(c.call_fds(8, &p, &fds).errno(), libc::EINVAL);
    }
    assert!(c.device_info().ok(), "in step");
    assert!(
        d.open_fds() <= before + 2,
        "fds leaked: {before} -> {}",
        d.open_fds()
    );
    assert!(d.alive());
}
