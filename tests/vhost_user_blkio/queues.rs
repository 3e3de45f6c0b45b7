//! Raw libblkio queues: two queues with polling and batches, 512- and 1024-entry queues.

use std::mem::MaybeUninit;
use std::time::Duration;

use blkio::{Blkio, Completion, ReqFlags};

use super::*;

#[test]
fn two_queues_with_polling_and_a_batch_of_32() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let mut d = serve(
        &img,
        &[
            "--size",
            "16M",
            "--num-queues",
            "2",
            "--poll-us",
            "200",
            "--threads",
            "1",
        ],
    );
    let mut b = Blkio::new("virtio-blk-vhost-user").unwrap();
    b.set_str("path", d.sock.to_str().unwrap()).unwrap();
    b.connect().unwrap();
    b.set_i32("num-queues", 2).unwrap();
    b.set_i32("queue-size", 128).unwrap();
    let mut out = b.start().unwrap();
    let region = b.alloc_mem_region(64 * 4096).unwrap();
    b.map_mem_region(&region).unwrap();
    let base = region.addr as *mut u8;
    // SAFETY: the region is mapped and 64 * 4096 bytes long.
    let mem = unsafe { std::slice::from_raw_parts_mut(base, 64 * 4096) };
    for (i, chunk) in mem[..32 * 4096].chunks_mut(4096).enumerate() {
        chunk.copy_from_slice(&pattern(i as u8, 4096));
    }
    // 32 adjacent writes in one batch on queue 0 (merging candidates).
    let q0 = &mut out.queues[0];
    for i in 0..32usize {
        // SAFETY: pointer inside the mapped region.
        q0.write(
            (i * 4096) as u64,
            unsafe { base.add(i * 4096) },
            4096,
            i,
            ReqFlags::empty(),
        );
    }
    let mut c: Vec<MaybeUninit<Completion>> = (0..32).map(|_| MaybeUninit::uninit()).collect();
    let mut got = 0;
    while got < 32 {
        let mut t = Duration::from_secs(10);
        let n = q0.do_io(&mut c[got..], 1, Some(&mut t), None).unwrap();
        assert!(n > 0, "writes did not complete");
        for x in &c[got..got + n] {
            // SAFETY: do_io initialised n completions.
            assert_eq!(unsafe { x.assume_init_ref() }.ret, 0);
        }
        got += n;
    }
    // Read everything back through queue 1.
    let q1 = &mut out.queues[1];
    for i in 0..32usize {
        // SAFETY: pointer inside the mapped region.
        q1.read(
            (i * 4096) as u64,
            unsafe { base.add((32 + i) * 4096) },
            4096,
            i,
            ReqFlags::empty(),
        );
    }
    got = 0;
    while got < 32 {
        let mut t = Duration::from_secs(10);
        let n = q1.do_io(&mut c[got..], 1, Some(&mut t), None).unwrap();
        assert!(n > 0, "reads did not complete");
        got += n;
    }
    assert_eq!(&mem[32 * 4096..], &mem[..32 * 4096].to_vec()[..]);
    let s = d.stats();
    assert_eq!(s["queues"][0]["req_out"], 32, "{s}");
    assert_eq!(s["queues"][1]["req_in"], 32, "{s}");
    assert_eq!(s["queues"][0]["status_ok"], 32, "{s}");
    assert!(d.stop().success());
    let bytes = std::fs::read(&img).unwrap();
    for i in 0..32 {
        assert_eq!(
            &bytes[i * 4096..(i + 1) * 4096],
            &pattern(i as u8, 4096)[..]
        );
    }
}

#[test]
fn queues_of_512_and_1024_entries_are_accepted() {
    // qemu-storage-daemon accepts up to 1024; so does vblk by default.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let mut d = serve(&img, &["--size", "4M"]);
    for qs in [512, 1024] {
        let mut b = Blkio::new("virtio-blk-vhost-user").unwrap();
        b.set_str("path", d.sock.to_str().unwrap()).unwrap();
        b.connect().unwrap();
        b.set_i32("queue-size", qs).unwrap();
        let mut out = b
            .start()
            .unwrap_or_else(|e| panic!("queue size {qs} refused: {}", e.message()));
        let region = b.alloc_mem_region(1 << 20).unwrap();
        b.map_mem_region(&region).unwrap();
        let base = region.addr as *mut u8;
        let q = &mut out.queues[0];
        // More requests than the old 256-entry limit, in one batch.
        let n = 300usize;
        for i in 0..n {
            // SAFETY: each 512-byte target lies inside the 1 MiB region.
            q.read(
                (i * 512) as u64,
                unsafe { base.add(i * 512) },
                512,
                i,
                ReqFlags::empty(),
            );
        }
        let mut c: Vec<MaybeUninit<Completion>> = (0..n).map(|_| MaybeUninit::uninit()).collect();
        let mut got = 0;
        while got < n {
            let mut t = Duration::from_secs(10);
            let k = q.do_io(&mut c[got..], 1, Some(&mut t), None).unwrap();
            assert!(k > 0, "queue size {qs}: reads did not complete");
            for x in &c[got..got + k] {
                // SAFETY: do_io initialised k completions.
                assert_eq!(unsafe { x.assume_init_ref() }.ret, 0);
            }
            got += k;
        }
    }
    assert!(d.stop().success());

    // An explicit smaller maximum is enforced.
    let mut d = serve(&img, &["--queue-size", "256"]);
    let mut b = Blkio::new("virtio-blk-vhost-user").unwrap();
    b.set_str("path", d.sock.to_str().unwrap()).unwrap();
    b.connect().unwrap();
    b.set_i32("queue-size", 512).unwrap();
    assert!(
        b.start().is_err(),
        "a 512-entry queue passed --queue-size 256"
    );
    drop(b);
    assert!(d.stop().success());
}
