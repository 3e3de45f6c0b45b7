//! GET/SET_CONFIG outside the config space or on read-only fields.

use super::*;

fn config_msg(offset: u32, size: u32, flags: u32) -> Vec<u8> {
    let mut b = offset.to_le_bytes().to_vec();
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.resize(12 + size as usize, 0);
    b
}

fn config_oversized(env: &Env) -> String {
    let d = conn!(env);
    hostile(&d, req::GET_CONFIG, &config_msg(0, 4096, 0), &[])
}

fn config_offset_past_end(env: &Env) -> String {
    let d = conn!(env);
    hostile(&d, req::GET_CONFIG, &config_msg(0x1000, 8, 0), &[])
}

fn config_size_mismatch(env: &Env) -> String {
    let d = conn!(env);
    let mut b = config_msg(0, 256, 0);
    b.truncate(12 + 8);
    hostile(&d, req::GET_CONFIG, &b, &[])
}

fn config_write_capacity(env: &Env) -> String {
    let d = conn!(env);
    let mut b = config_msg(0, 8, 0);
    b[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    hostile(&d, req::SET_CONFIG, &b, &[])
}

pub(super) fn list() -> Vec<Case> {
    use Need::*;
    let config = Protocol(P::CONFIG);
    vec![
        case!(
            "config.oversized-read",
            config,
            config_oversized,
            "GET_CONFIG of 4096 bytes"
        ),
        case!(
            "config.offset-past-end",
            config,
            config_offset_past_end,
            "GET_CONFIG at offset 4096"
        ),
        case!(
            "config.size-mismatch",
            config,
            config_size_mismatch,
            "GET_CONFIG size 256 with an 8-byte payload"
        ),
        case!(
            "config.write-capacity",
            config,
            config_write_capacity,
            "SET_CONFIG of the capacity"
        ),
    ]
}
