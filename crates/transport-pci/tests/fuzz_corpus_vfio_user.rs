//! The `vfio_user_session` fuzz body (`vblk_vfio_user::fuzzing`, the
//! session under the PCI function's vfio-user server) over the corpus kept
//! in `fuzz/corpus/vfio_user_session` (seeds and what the fuzzer found
//! interesting), on stable Rust. Random inputs and generators for the same
//! body are in `crates/vfio-user/tests/session/random_messages.rs`.

#[test]
fn vfio_user_session_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus/vfio_user_session");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut n = 0;
    for e in rd.filter_map(|e| e.ok()) {
        let input = std::fs::read(e.path()).unwrap();
        vblk_vfio_user::fuzzing::session_stream(&input);
        n += 1;
    }
    assert!(n > 0, "empty corpus at {}", dir.display());
}
