//! Force unit access: a write pushed with `fua` is on stable storage when it
//! completes. `cachestat(2)` shows whether the written pages are still
//! dirty (or under writeback) in the page cache right after completion; a
//! plain write on a real file system leaves them dirty, so the check can
//! fail.

use crate::pagecache::{dirty_pages, real_fs_dir};
use crate::testutil::one_with;
use crate::{Backend, CacheMode, FileBackend, FileOptions, IoOp};

const LEN: u64 = 64 << 10;

fn check_engine(io_uring: bool) {
    let dir = real_fs_dir();
    let path = dir.path().join("fua.img");
    let b = FileBackend::open(
        &path,
        FileOptions {
            create_size: Some(1 << 20),
            cache: CacheMode::Writeback,
            io_uring,
            ..Default::default()
        },
    )
    .unwrap();
    let mut e = b.engine().unwrap();
    let mut data = vec![0x5au8; LEN as usize];
    let Some(before) = dirty_pages(b.raw_fd(), 0, 1 << 20) else {
        eprintln!("cachestat(2) unavailable: skipping");
        return;
    };
    assert_eq!(before, (0, 0));

    // A plain write: the pages stay dirty (the check can see it).
    let c = one_with(&mut *e, IoOp::Write, 0, LEN, &mut [&mut data], false);
    assert_eq!(c.result, Ok(LEN));
    let (dirty, wb) = dirty_pages(b.raw_fd(), 0, LEN).unwrap();
    assert!(
        dirty + wb > 0,
        "{}: a plain write left nothing dirty",
        e.name()
    );

    // A write with force unit access: nothing of it left to write back.
    let c = one_with(&mut *e, IoOp::Write, 256 << 10, LEN, &mut [&mut data], true);
    assert_eq!(c.result, Ok(LEN));
    assert_eq!(
        dirty_pages(b.raw_fd(), 256 << 10, LEN).unwrap(),
        (0, 0),
        "{}: a FUA write completed with dirty pages",
        e.name()
    );
}

#[test]
fn a_fua_write_is_durable_on_completion_with_io_uring() {
    check_engine(true);
}

#[test]
fn a_fua_write_is_durable_on_completion_with_the_sync_engine() {
    check_engine(false);
}
