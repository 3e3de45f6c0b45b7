//! Memory tables: regions past their file, overlaps, ADD/REM_MEM_REG, a truncated memfd.

use super::*;

#[test]
fn memory_regions_past_their_file_are_refused_and_the_daemon_lives() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut daemon, sock) = start(dir.path(), &img);
    let small = memfd(1 << 20);
    let region = |gpa: u64, size: u64, off: u64, fd: i32| VhostUserMemoryRegionInfo {
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: 0x7000_0000_0000 + gpa,
        mmap_offset: off,
        mmap_handle: fd,
    };
    let sfd = small.as_raw_fd();
    let mut g = Guest::connect_with(&sock, Setup::acked(), |fe| {
        // Past the end of the file: mapping it would SIGBUS the daemon on
        // first touch. Refused (REPLY_ACK non-zero), connection kept.
        assert!(fe.set_mem_table(&[region(0, 4 << 20, 0, sfd)]).is_err());
        assert!(fe.set_mem_table(&[region(0, 4096, 1 << 20, sfd)]).is_err());
        // Overlapping regions.
        assert!(fe
            .set_mem_table(&[region(0, 8192, 0, sfd), region(4096, 4096, 0, sfd)])
            .is_err());
        assert_eq!(fe.get_max_mem_slots().unwrap(), 509);
        // A hostile queue index or size is refused, the connection kept.
        assert!(fe.set_vring_num(5, 16).is_err());
        assert!(fe.set_vring_num(0, 24).is_err(), "not a power of two");
        assert!(fe.set_vring_num(0, 2048).is_err(), "over the maximum");
    });
    // The valid table sent afterwards serves I/O on the same connection.
    assert_eq!(get_id(&mut g), 21);
    // ADD_MEM_REG past the end is refused too; a good one is added and
    // removed again, and the ring keeps working across the changes.
    let extra = memfd(1 << 20);
    let far = 0x1_0000_0000u64;
    assert!(g
        .fe
        .add_mem_region(&region(far, 2 << 20, 0, extra.as_raw_fd()))
        .is_err());
    assert!(
        g.fe.add_mem_region(&region(0x1000, 4096, 0, extra.as_raw_fd()))
            .is_err(),
        "overlaps the guest RAM"
    );
    g.fe.add_mem_region(&region(far, 1 << 20, 0, extra.as_raw_fd()))
        .unwrap();
    assert_eq!(get_id(&mut g), 21);
    g.fe.remove_mem_region(&region(far, 1 << 20, 0, -1))
        .unwrap();
    assert!(g
        .fe
        .remove_mem_region(&region(far, 1 << 20, 0, -1))
        .is_err());
    assert_eq!(get_id(&mut g), 21);
    assert!(daemon.alive());
    drop(g);
    // mmap offset + size overflows: the message itself is invalid (the
    // vhost crate drops the connection); the daemon lives on.
    let fe = Frontend::connect(&sock, 1).unwrap();
    fe.set_owner().unwrap();
    let _ = fe.set_mem_table(&[region(0, 4096, u64::MAX - 4095, small.as_raw_fd())]);
    let _ = fe.get_features();
    drop(fe);
    // GET_VRING_BASE of a queue that does not exist: no answer can be
    // given, so the connection is dropped; the daemon lives on.
    let g = Guest::connect(&sock);
    assert!(g.fe.get_vring_base(7).is_err());
    drop(g);
    assert!(daemon.alive());
    // And a plain front end is served afterwards.
    let mut g = Guest::connect(&sock);
    assert_eq!(get_id(&mut g), 21);
    drop(g);
    assert!(daemon.alive());
}

#[test]
fn a_front_end_that_truncates_guest_memory_does_not_kill_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut daemon, sock) = start_with_control(dir.path(), &img, &[]);
    // Guest memory is an unsealed memfd: the front end can shrink it under
    // the daemon's mapping.
    let mut g = Guest::connect(&sock);
    assert_eq!(get_id(&mut g), 21);
    g.header(HDR, 8, 0);
    // Cut the file below DATA and STATUS (the rings and HDR stay); from
    // here on this test touches nothing past 0x20000 itself.
    g.ram.truncate(0x20000).unwrap();
    g.publish_raw(
        &[
            (HDR, 16, F_NEXT, 1),
            (DATA, 20, F_WRITE | F_NEXT, 2),
            (STATUS, 1, F_WRITE, 0),
        ],
        None,
    );
    // The write of the ID and status faults in the daemon: contained, the
    // ring is broken, the daemon lives.
    let _ = g.wait_used_for(Duration::from_millis(500));
    std::thread::sleep(Duration::from_millis(100));
    assert!(daemon.alive(), "a truncated memfd killed the daemon");
    let stats = daemon.stats();
    assert_eq!(stats["device"]["needs_reset"], 1, "{stats}");
    drop(g);
    // The next front end is served.
    let mut g = Guest::connect(&sock);
    assert_eq!(get_id(&mut g), 21);
    drop(g);
    assert!(daemon.alive());
}
