//! The write-cache byte: SET_CONFIG; write-through after a reconnect or a resumed ring.

use vblk_testkit::blk::features as vf;
use vhost::vhost_user::message::VhostUserConfigFlags;

use super::*;

#[test]
fn set_config_writes_only_the_writeback_byte_and_only_with_config_wce() {
    let daemon = start("null:1M", &["--write-cache", "off"]);
    let sock = daemon.sock.clone();
    let d = Driver::connect(&sock, opts()).unwrap();
    let wb = |d: &Driver| {
        let (_, b) = d
            .fe()
            .get_config(32, 1, VhostUserConfigFlags::WRITABLE, &[0])
            .unwrap();
        b[0]
    };
    assert_eq!(wb(&d), 0, "--write-cache off");
    d.fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[1])
        .unwrap();
    assert_eq!(wb(&d), 1);
    // Anything else is refused (REPLY_ACK turns it into an error here).
    assert!(d
        .fe()
        .set_config(0, VhostUserConfigFlags::WRITABLE, &[0; 8])
        .is_err());
    assert!(d
        .fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[0, 0])
        .is_err());
    assert_eq!(wb(&d), 1);
    d.fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[0])
        .unwrap();
    assert_eq!(wb(&d), 0);
    drop(d);
    // A front end without CONFIG_WCE may not write it.
    let mut o = opts();
    o.features &= !CONFIG_WCE;
    let d = Driver::connect(&sock, o).unwrap();
    assert!(d
        .fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[1])
        .is_err());
    assert_eq!(vf::VERSION_1 & d.acked, vf::VERSION_1);
}

/// A front end that comes back with a previous daemon's inflight buffer
/// (SET_INFLIGHT_FD without GET_INFLIGHT_FD: QEMU reconnecting to a
/// restarted daemon) may have a guest in write-through mode, which QEMU
/// does not replay: the daemon goes write-through. A front end that got
/// its buffer from this daemon keeps the configured mode.
#[test]
fn a_reconnected_front_end_gets_write_through_until_its_guest_says() {
    use vhost::vhost_user::message::VhostUserInflight;
    let daemon = start("null:1M", &[]);
    let sock = daemon.sock.clone();
    let wb = |d: &Driver| {
        let (_, b) = d
            .fe()
            .get_config(32, 1, VhostUserConfigFlags::WRITABLE, &[0])
            .unwrap();
        b[0]
    };
    let ask = VhostUserInflight {
        mmap_size: 0,
        mmap_offset: 0,
        num_queues: 1,
        queue_size: 128,
    };
    // First connection: GET then SET, as QEMU does at the first start.
    let d = Driver::negotiate(&sock, opts()).unwrap();
    let (info, file) = d.fe().get_inflight_fd(&ask).unwrap();
    d.fe().set_inflight_fd(&info, file.as_raw_fd()).unwrap();
    assert_eq!(wb(&d), 1, "write-back as configured");
    drop(d);
    // The "restarted daemon" sees the old buffer come back.
    let d = Driver::negotiate(&sock, opts()).unwrap();
    assert_eq!(wb(&d), 1);
    d.fe().set_inflight_fd(&info, file.as_raw_fd()).unwrap();
    assert_eq!(wb(&d), 0, "write-through after a reconnect");
    // The guest's driver can choose again.
    d.fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[1])
        .unwrap();
    assert_eq!(wb(&d), 1);
}

/// The destination of a live migration: a new connection whose first ring
/// starts where the source's stopped (QEMU sends no SET_CONFIG there). The
/// guest may have chosen write-through with the source daemon: the daemon
/// goes write-through until the guest writes `writeback`. A ring that
/// starts at 0 (a guest booting) keeps the configured mode, and so does a
/// later restart on the same connection.
#[test]
fn a_ring_resumed_mid_stream_gets_write_through_until_its_guest_says() {
    let daemon = start("null:1M", &[]);
    let sock = daemon.sock.clone();
    let wb = |d: &Driver| {
        let (_, b) = d
            .fe()
            .get_config(32, 1, VhostUserConfigFlags::WRITABLE, &[0])
            .unwrap();
        b[0]
    };
    let mut d = Driver::negotiate(&sock, opts()).unwrap();
    d.send_mem_table().unwrap();
    d.start_ring(0).unwrap();
    assert_eq!(wb(&d), 1, "a booting guest: write-back as configured");
    vhost::VhostBackend::get_vring_base(&*d.fe(), 0).unwrap();
    d.start_ring(7).unwrap();
    assert_eq!(wb(&d), 1, "a restart on the same connection keeps the mode");
    drop(d);

    let mut d = Driver::negotiate(&sock, opts()).unwrap();
    d.send_mem_table().unwrap();
    assert_eq!(wb(&d), 1);
    d.start_ring(7).unwrap();
    assert_eq!(wb(&d), 0, "write-through on a migration destination");
    d.fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[1])
        .unwrap();
    assert_eq!(wb(&d), 1, "the guest's driver chooses again");
    drop(d);

    // The guest chose first, then the ring started mid-stream: its choice holds.
    let mut d = Driver::negotiate(&sock, opts()).unwrap();
    d.send_mem_table().unwrap();
    d.fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[1])
        .unwrap();
    d.start_ring(9).unwrap();
    assert_eq!(wb(&d), 1);
}
