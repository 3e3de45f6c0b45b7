//! GET_ID, config space, indirect tables, hostile chains and broken rings over the socket.

use vblk_testkit::ring::F_INDIRECT;
use vhost::vhost_user::message::VhostUserConfigFlags;

use super::*;

#[test]
fn get_id_config_and_hostile_chains_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.img");
    std::fs::write(&img, vec![0x5a; 1 << 20]).unwrap();
    let (mut daemon, sock) =
        start_with_control(dir.path(), &img, &["--serial", "vblk-test-serial-01"]);
    let mut g = Guest::connect(&sock);

    // Config space: capacity in sectors, blk_size.
    let (_, cfg) =
        g.fe.get_config(0, 24, VhostUserConfigFlags::WRITABLE, &[0u8; 24])
            .unwrap();
    assert_eq!(u64::from_le_bytes(cfg[0..8].try_into().unwrap()), 2048);
    assert_eq!(u32::from_le_bytes(cfg[20..24].try_into().unwrap()), 512);

    // GET_ID: 20 bytes of serial + status.
    g.header(HDR, 8, 0);
    g.put(STATUS, &[0xff]);
    let len = g.submit(&[(HDR, 16, 0), (DATA, 20, F_WRITE), (STATUS, 1, F_WRITE)]);
    assert_eq!(len, 21);
    assert_eq!(g.get(STATUS, 1), [0]);
    assert_eq!(&g.get(DATA, 20)[..19], b"vblk-test-serial-01");

    // IN through an indirect table.
    let table = 0x40000;
    g.header(HDR, 0, 1);
    g.put(table, &Guest::desc_bytes(HDR, 16, F_NEXT, 1));
    g.put(
        table + 16,
        &Guest::desc_bytes(DATA, 512, F_WRITE | F_NEXT, 2),
    );
    g.put(table + 32, &Guest::desc_bytes(STATUS, 1, F_WRITE, 0));
    g.put(STATUS, &[0xff]);
    g.put(DATA, &[0u8; 512]);
    assert_eq!(g.submit(&[(table, 48, F_INDIRECT)]), 513);
    assert_eq!(g.get(STATUS, 1), [0]);
    assert!(g.get(DATA, 512).iter().all(|&b| b == 0x5a));

    // Hostile: status byte in a readable descriptor → returned unexecuted, len 0.
    g.header(HDR, 1, 0);
    assert_eq!(g.submit(&[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, 0)]), 0);
    // Hostile: data buffer outside guest memory → IOERR.
    g.header(HDR, 0, 0);
    g.put(STATUS, &[0xff]);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (1 << 40, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        1
    );
    assert_eq!(g.get(STATUS, 1), [1]);
    // Hostile: sector past the end → IOERR.
    g.header(HDR, 0, 2048);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        1
    );
    assert_eq!(g.get(STATUS, 1), [1]);
    // Hostile: a chain that loops (0 → 1 → 0 ...) breaks the ring: it is
    // not served (no used entry), the daemon survives, and the ring is
    // served again once the front end restarts it.
    g.header(HDR, 0, 0);
    g.publish_raw(
        &[(HDR, 16, F_NEXT, 1), (DATA, 512, F_WRITE | F_NEXT, 0)],
        None,
    );
    assert_eq!(
        g.wait_used_for(Duration::from_millis(500)),
        None,
        "a looping chain was completed"
    );
    g.restart_zeroed();
    // Hostile: unknown type → UNSUPP.
    g.header(HDR, 0x1234, 0);
    g.put(STATUS, &[0xff]);
    assert_eq!(g.submit(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]), 1);
    assert_eq!(g.get(STATUS, 1), [2]);

    // Still serving: a write lands in the file.
    g.header(HDR, 1, 7);
    g.put(DATA, &[0xc3; 512]);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]),
        1
    );
    assert_eq!(g.get(STATUS, 1), [0]);
    g.header(HDR, 4, 0);
    assert_eq!(g.submit(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]), 1);
    assert!(std::fs::read(&img).unwrap()[7 * 512..8 * 512]
        .iter()
        .all(|&b| b == 0xc3));

    // Hostile: the avail index jumps by more than the queue size. The queue
    // is refused (no completion), the daemon survives, and a new front end
    // is served.
    g.header(HDR, 0, 0);
    g.publish_raw(
        &[(HDR, 16, F_NEXT, 1), (STATUS, 1, F_WRITE, 0)],
        Some(g.ring.avail_idx.wrapping_add(1000)),
    );
    assert_eq!(
        g.wait_used_for(Duration::from_millis(500)),
        None,
        "a broken ring was served"
    );
    let stats = daemon.stats();
    assert_eq!(stats["device"]["needs_reset"], 2, "{stats}");
    assert!(
        stats["queues"][0]["malformed_chains"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["queues"][0]["bad_address"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    // The front end stops and restarts the ring (what QEMU does on a guest
    // reset): the queue is served again on the same connection.
    g.restart_zeroed();
    g.header(HDR, 0, 7);
    g.put(STATUS, &[0xff]);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        513,
        "a restarted ring is not served"
    );
    drop(g);
    assert!(daemon.alive(), "daemon died on a broken ring");
    let mut g = Guest::connect(&sock);
    g.header(HDR, 0, 7);
    g.put(STATUS, &[0xff]);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        513
    );
    assert!(g.get(DATA, 512).iter().all(|&b| b == 0xc3));
    drop(g);
    drop(daemon); // killed
    let _ = std::fs::remove_file(&sock);
}
