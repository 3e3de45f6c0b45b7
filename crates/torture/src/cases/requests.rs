//! virtio-blk request headers and payloads that must fail cleanly.

use super::*;

fn bad_type(env: &Env) -> String {
    request(env, Request::new(0x1234, 0), |_| {})
}

fn sector_past_end(env: &Env) -> String {
    request(env, Request::read(env.sectors(), 512), |_| {})
}

fn sector_overflow(env: &Env) -> String {
    request(env, Request::read(u64::MAX, 512), |_| {})
}

fn sector_end_overflow(env: &Env) -> String {
    request(env, Request::write(u64::MAX / 512, &[0u8; 1024]), |_| {})
}

fn odd_length(env: &Env) -> String {
    request(env, Request::read(0, 513), |_| {})
}

fn get_id_short(env: &Env) -> String {
    request(env, Request::get_id(4), |_| {})
}

fn get_id_no_buffer(env: &Env) -> String {
    request(env, Request::get_id(0), |_| {})
}

fn discard_bad_flags(env: &Env) -> String {
    request(env, Request::discard(&[(0, 8, 0xffff_fffe)]), |_| {})
}

fn discard_unmap_flag(env: &Env) -> String {
    request(env, Request::discard(&[(0, 8, 1)]), |_| {})
}

fn write_zeroes_bad_flags(env: &Env) -> String {
    request(env, Request::write_zeroes(&[(0, 8, 0xffff_fffe)]), |_| {})
}

fn discard_too_many_segments(env: &Env) -> String {
    let segs: Vec<_> = (0..1000).map(|i| (i * 8, 8, 0)).collect();
    request(env, Request::discard(&segs), |_| {})
}

fn discard_past_end(env: &Env) -> String {
    request(env, Request::discard(&[(env.sectors() - 1, 64, 0)]), |_| {})
}

fn discard_sector_overflow(env: &Env) -> String {
    request(env, Request::write_zeroes(&[(u64::MAX - 3, 8, 0)]), |_| {})
}

fn discard_odd_payload(env: &Env) -> String {
    let mut r = Request::discard(&[(0, 8, 0)]);
    r.out.push(0);
    request(env, r, |_| {})
}

fn flush_with_data(env: &Env) -> String {
    let mut r = Request::flush();
    r.sector = 12345;
    r.out = vec![0x11; 512];
    r.in_len = 512;
    request(env, r, |_| {})
}

fn in_with_readable_data(env: &Env) -> String {
    request(env, Request::read(0, 512), |s| s[1].2 = 0)
}

fn out_with_writable_data(env: &Env) -> String {
    request(env, Request::write(0, &[0x22; 512]), |s| s[1].2 = F_WRITE)
}

fn huge_read(env: &Env) -> String {
    request(env, Request::read(0, 512), |s| s[1].1 = 0xffff_fe00)
}

pub(super) fn list() -> Vec<Case> {
    use Need::*;
    vec![
        case!("req.bad-type", Nothing, bad_type, "request type 0x1234"),
        case!(
            "req.sector-past-end",
            Nothing,
            sector_past_end,
            "a read at the capacity"
        ),
        case!(
            "req.sector-overflow",
            Nothing,
            sector_overflow,
            "sector 2^64 - 1"
        ),
        case!(
            "req.sector-end-overflow",
            Nothing,
            sector_end_overflow,
            "a write whose end overflows"
        ),
        case!("req.odd-length", Nothing, odd_length, "a read of 513 bytes"),
        case!(
            "req.huge-read",
            Nothing,
            huge_read,
            "a read of 4 GiB into 8 MiB of RAM"
        ),
        case!(
            "req.get-id-short",
            Nothing,
            get_id_short,
            "GET_ID into 4 bytes"
        ),
        case!(
            "req.get-id-no-buffer",
            Nothing,
            get_id_no_buffer,
            "GET_ID with only a status byte"
        ),
        case!(
            "req.in-readable-data",
            Nothing,
            in_with_readable_data,
            "a read into a readable buffer"
        ),
        case!(
            "req.out-writable-data",
            Nothing,
            out_with_writable_data,
            "a write from a writable buffer"
        ),
        case!(
            "req.flush-with-data",
            Nothing,
            flush_with_data,
            "FLUSH with a sector and data"
        ),
        case!(
            "req.discard-bad-flags",
            Feature(vf::DISCARD),
            discard_bad_flags,
            "DISCARD with reserved flag bits"
        ),
        case!(
            "req.discard-unmap-flag",
            Feature(vf::DISCARD),
            discard_unmap_flag,
            "DISCARD with the unmap flag"
        ),
        case!(
            "req.discard-too-many-segments",
            Feature(vf::DISCARD),
            discard_too_many_segments,
            "DISCARD of 1000 segments"
        ),
        case!(
            "req.discard-past-end",
            Feature(vf::DISCARD),
            discard_past_end,
            "DISCARD across the end"
        ),
        case!(
            "req.discard-odd-payload",
            Feature(vf::DISCARD),
            discard_odd_payload,
            "DISCARD payload of 17 bytes"
        ),
        case!(
            "req.write-zeroes-bad-flags",
            Feature(vf::WRITE_ZEROES),
            write_zeroes_bad_flags,
            "WRITE_ZEROES with reserved flag bits"
        ),
        case!(
            "req.write-zeroes-overflow",
            Feature(vf::WRITE_ZEROES),
            discard_sector_overflow,
            "WRITE_ZEROES at sector 2^64 - 4"
        ),
    ]
}
