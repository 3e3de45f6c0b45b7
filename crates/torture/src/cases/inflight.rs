//! GET/SET_INFLIGHT_FD with short, misplaced or garbage shared memory.

use super::*;

fn inflight_body(mmap_size: u64, offset: u64, queues: u16, size: u16) -> Vec<u8> {
    let mut b = mmap_size.to_le_bytes().to_vec();
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&queues.to_le_bytes());
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(&[0u8; 4]);
    b
}

fn inflight_short_memfd(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture-inflight", 4096).expect("memfd");
    hostile(
        &d,
        req::SET_INFLIGHT_FD,
        &inflight_body(1 << 20, 0, 1, d.ring.size),
        &[f.as_raw_fd()],
    )
}

fn inflight_offset_past_eof(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture-inflight", 1 << 16).expect("memfd");
    hostile(
        &d,
        req::SET_INFLIGHT_FD,
        &inflight_body(4096, u64::MAX - 4095, 1, d.ring.size),
        &[f.as_raw_fd()],
    )
}

fn inflight_no_fd(env: &Env) -> String {
    let d = bare!(env);
    hostile(
        &d,
        req::SET_INFLIGHT_FD,
        &inflight_body(4096, 0, 1, d.ring.size),
        &[],
    )
}

fn inflight_garbage(env: &Env) -> String {
    use vhost::vhost_user::message::VhostUserInflight;
    let mut d = bare!(env);
    let asked = VhostUserInflight {
        mmap_size: 0,
        mmap_offset: 0,
        num_queues: 1,
        queue_size: d.ring.size,
    };
    let (info, file) = match d.fe().get_inflight_fd(&asked) {
        Ok(x) => x,
        Err(e) => return format!("GET_INFLIGHT_FD refused: {e}"),
    };
    // Every byte 0xa5: every head "in flight", counters and the batch
    // head nonsense, a version that is not 1.
    let len = info.mmap_size as usize;
    let _ = std::os::unix::fs::FileExt::write_all_at(&file, &vec![0xa5u8; len], info.mmap_offset);
    let a = match d.fe().set_inflight_fd(&info, file.as_raw_fd()) {
        Ok(()) => "accepted the region".to_string(),
        Err(e) => format!("refused the region ({e})"),
    };
    if let Err(e) = d.send_mem_table() {
        return format!("{a}; refused the table: {e}");
    }
    // Descriptors all garbage too.
    d.ram.fill(0, 0xa5, 16 * usize::from(d.ring.size));
    let s = match d.start_ring(0) {
        Ok(()) => observe(&mut d, None),
        Err(e) => format!("ring refused ({e})"),
    };
    format!("{a}; {s}")
}

pub(super) fn list() -> Vec<Case> {
    use Need::*;
    let inflight = Protocol(P::INFLIGHT_SHMFD);
    vec![
        case!(
            "inflight.short-memfd",
            inflight,
            inflight_short_memfd,
            "SET_INFLIGHT_FD claiming 1 MiB of a 4 KiB memfd"
        ),
        case!(
            "inflight.offset-past-eof",
            inflight,
            inflight_offset_past_eof,
            "SET_INFLIGHT_FD offset near 2^64"
        ),
        case!(
            "inflight.no-fd",
            inflight,
            inflight_no_fd,
            "SET_INFLIGHT_FD without a descriptor"
        ),
        case!(
            "inflight.garbage",
            inflight,
            inflight_garbage,
            "an inflight region and a descriptor table of 0xa5"
        ),
    ]
}
