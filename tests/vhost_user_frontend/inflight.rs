//! The inflight region: its layout, tracking, and resubmission after a restart.

use super::*;

/// Offsets in one queue region of the inflight buffer.
const IF_VERSION: usize = 8;
const IF_DESC_NUM: usize = 10;
const IF_LAST_BATCH_HEAD: usize = 12;
const IF_USED_IDX: usize = 14;
fn if_desc(head: u16) -> usize {
    16 + 16 * usize::from(head)
}

#[test]
fn inflight_region_round_trip_and_resubmission_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut daemon, sock) = start(dir.path(), &img);
    let mut g = Guest::connect_with(&sock, Setup::acked(), |_| {});
    {
        let (info, file) = g.inflight.as_ref().unwrap();
        // One queue of 16: ALIGN_UP(16 * 16 + 2, 64) bytes, as libvhost-user.
        assert_eq!(info.mmap_size, 320);
        assert_eq!(info.mmap_offset, 0);
        assert_eq!(file.metadata().unwrap().len(), 320);
        // SAFETY: fcntl F_GET_SEALS on our own fd.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        assert!(seals & libc::F_SEAL_SHRINK != 0, "seals {seals:#x}");
    }
    // A region too small for what it claims is refused.
    {
        let (info, file) = g.inflight.as_ref().unwrap();
        let mut bad = *info;
        bad.queue_size = 1024;
        assert!(g.fe.set_inflight_fd(&bad, file.as_raw_fd()).is_err());
    }
    for _ in 0..3 {
        assert_eq!(get_id(&mut g), 21);
    }
    // The back-end tracked the requests: initialized, used_idx follows the
    // used ring, nothing left in flight.
    assert_eq!(g.inflight_get(IF_VERSION, 2), 1);
    assert_eq!(g.inflight_get(IF_DESC_NUM, 2), u64::from(QSIZE));
    assert_eq!(g.inflight_get(IF_USED_IDX, 2), 3);
    for h in 0..QSIZE {
        assert_eq!(g.inflight_get(if_desc(h), 1), 0, "head {h} still in flight");
    }
    // Stop the ring (as QEMU does on a VM stop or a back-end restart).
    assert_eq!(g.fe.get_vring_base(0).unwrap(), 3);

    // Forge the state a crash leaves behind: the driver made heads 3, 1, 2
    // available (avail 3..6). Head 3's used element reached the used ring
    // (used idx 4) but the crash came before the inflight region saw it
    // (used_idx 3, last batch = [3]). Heads 1 and 2 are in flight, 1 the
    // older. On restart the back-end must drop 3 from the in-flight set,
    // resubmit 1 and 2, and continue the avail ring at 4 + 2 = 6.
    let chain = |g: &Guest, head: u16, d: u16, buf: u64| {
        let hdr = 0x50000 + 0x100 * u64::from(head);
        let st = hdr + 0x80;
        g.header(hdr, 0, 1);
        g.put(st, &[0xff]);
        g.put(buf, &[0u8; 512]);
        g.put(
            DESC + 16 * u64::from(head),
            &Guest::desc_bytes(hdr, 16, F_NEXT, d),
        );
        g.put(
            DESC + 16 * u64::from(d),
            &Guest::desc_bytes(buf, 512, F_WRITE | F_NEXT, d + 1),
        );
        g.put(
            DESC + 16 * u64::from(d + 1),
            &Guest::desc_bytes(st, 1, F_WRITE, 0),
        );
        st
    };
    let st1 = chain(&g, 1, 4, 0x60000);
    let st2 = chain(&g, 2, 6, 0x61000);
    for (slot, head) in [(3u16, 3u16), (4, 1), (5, 2)] {
        g.put(AVAIL + 4 + 2 * u64::from(slot), &head.to_le_bytes());
    }
    g.put(AVAIL + 2, &6u16.to_le_bytes());
    g.put(USED + 4 + 8 * 3, &[3, 0, 0, 0, 1, 0, 0, 0]);
    g.put(USED + 2, &4u16.to_le_bytes());
    g.inflight_put(IF_USED_IDX, 3, 2);
    g.inflight_put(IF_LAST_BATCH_HEAD, 3, 2);
    g.inflight_put(if_desc(3), 1, 1);
    g.inflight_put(if_desc(1), 1, 1);
    g.inflight_put(if_desc(1) + 8, 5, 8);
    g.inflight_put(if_desc(2), 1, 1);
    g.inflight_put(if_desc(2) + 8, 10, 8);
    // Restart: the front end's base (3) is stale; the region knows better.
    g.start_ring(3);
    g.ring.used_seen = 4;
    let mut heads = Vec::new();
    for _ in 0..2 {
        let e = USED + 4 + 8 * u64::from(g.ring.used_seen % QSIZE);
        assert!(g.wait_used().is_some(), "inflight requests not resubmitted");
        heads.push(u32::from_le_bytes(g.get(e, 4).try_into().unwrap()));
    }
    heads.sort();
    assert_eq!(heads, vec![1, 2], "resubmitted the wrong heads");
    assert_eq!(g.get(st1, 1), [0]);
    assert_eq!(g.get(st2, 1), [0]);
    assert!(g.get(0x60000, 512).iter().all(|&b| b == 0x5a));
    assert!(g.get(0x61000, 512).iter().all(|&b| b == 0x5a));
    // Head 3 (already used) was not executed again.
    assert_eq!(
        g.wait_used_for(Duration::from_millis(300)),
        None,
        "a completed request was resubmitted"
    );
    // The avail ring continues at 6.
    g.ring.avail_idx = 6;
    assert_eq!(get_id(&mut g), 21);
    assert_eq!(g.u16_at(USED + 2), 7);
    assert_eq!(g.inflight_get(IF_USED_IDX, 2), 7);
    for h in 0..QSIZE {
        assert_eq!(g.inflight_get(if_desc(h), 1), 0, "head {h} still in flight");
    }
    drop(g);
    assert!(daemon.alive());
}
