//! The well-formed seed sessions (a corpus for the fuzzer, and what the
//! smoke test checks they do), and the feature bits they negotiate.

use std::sync::Arc;

use vblk_device::{BlkConfig, BlkDevice};

use super::builder::{fd, region_bytes, req, state, Builder, NEED_REPLY, UADDR};
use super::harness::DISK;

/// Protocol features vblk offers (REPLY_ACK, MQ, CONFIG, ...).
pub fn protocol_features() -> u64 {
    crate::backend::offered_protocol_features().bits()
}

/// Virtio features the device offers, plus VHOST_USER_F_PROTOCOL_FEATURES.
pub fn virtio_features(read_only: bool) -> u64 {
    let mut cfg = BlkConfig::new(DISK);
    cfg.read_only = read_only;
    let dev = BlkDevice::new(cfg, Arc::new(vblk_backend::NullBackend::new(DISK)));
    dev.features() | (1 << 30)
}

/// A named input.
pub type Seed = (&'static str, Vec<u8>);

/// Well-formed sessions: handshake only; a read, a write and a flush
/// through a started ring (with and without REPLY_ACK); two queues; the
/// inflight buffer; ADD/REM_MEM_REG; a reset in the middle; a ring
/// polled without a kick fd; config reads and a refused config write.
pub fn seeds() -> Vec<Seed> {
    let f = virtio_features(false);
    let p = protocol_features();
    let mut out: Vec<Seed> = Vec::new();

    let mut b = Builder::new(0);
    b.handshake(f, p, 0)
        .msg(req::GET_MAX_MEM_SLOTS, 0, 0, &[])
        .msg(req::GET_CONFIG, 0, 0, &{
            // VhostUserConfig (offset, size, flags) and room for the bytes.
            let mut c = vec![0u8; 12 + 60];
            c[4] = 60;
            c
        })
        .msg(
            req::SET_CONFIG,
            NEED_REPLY,
            0,
            &[0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
        );
    out.push(("handshake_config", b.bytes()));

    // A read of sector 2 into 1024 bytes, then GET_VRING_BASE.
    let mut b = Builder::new(0);
    b.chain(0, 0, 2, 1024, true)
        .handshake(f, p, 0)
        .mem_table(0)
        .ring(0, 0)
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0));
    out.push(("read", b.bytes()));

    // A write of 512 bytes at sector 1, every message with NEED_REPLY.
    let mut b = Builder::new(0);
    b.chain(0, 1, 1, 512, false)
        .handshake(f, p, NEED_REPLY)
        .mem_table(NEED_REPLY)
        .ring(0, NEED_REPLY)
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0));
    out.push(("write_reply_ack", b.bytes()));

    // Both queues: a write on 0, a flush on 1.
    let mut b = Builder::new(0);
    b.chain(0, 1, 3, 512, false)
        .chain(1, 4, 0, 0, false)
        .handshake(f, p, 0)
        .mem_table(0)
        .ring(0, 0)
        .ring(1, 0)
        .msg(req::GET_VRING_BASE, 0, 0, &state(1, 0))
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0));
    out.push(("two_queues", b.bytes()));

    // The inflight buffer first (as QEMU does), then a read.
    let mut infl = Vec::new();
    infl.extend_from_slice(&0u64.to_le_bytes());
    infl.extend_from_slice(&0u64.to_le_bytes());
    infl.extend_from_slice(&2u16.to_le_bytes());
    infl.extend_from_slice(&8u16.to_le_bytes());
    infl.extend_from_slice(&[0; 4]); // repr(C) padding
    let mut b = Builder::new(0);
    b.chain(0, 0, 0, 512, true)
        .handshake(f, p, 0)
        .msg(req::GET_INFLIGHT_FD, 0, 0, &infl)
        .mem_table(0)
        .ring(0, 0)
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0));
    out.push(("inflight_read", b.bytes()));

    // ADD_MEM_REG instead of SET_MEM_TABLE, a read, REM_MEM_REG while
    // the ring is stopped, and again with the ring running.
    let mut single = vec![0u8; 8];
    single.extend_from_slice(&region_bytes(0, 0, 0));
    let mut b = Builder::new(0);
    b.chain(0, 0, 4, 512, true)
        .handshake(f, p, NEED_REPLY)
        .msg(req::ADD_MEM_REG, NEED_REPLY, 1 | fd::SEALED_MEMFD, &single)
        .ring(0, NEED_REPLY)
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0))
        .msg(req::REM_MEM_REG, NEED_REPLY, 0, &single)
        .msg(req::ADD_MEM_REG, NEED_REPLY, 1 | fd::MEMFD, &single)
        .msg(req::SET_VRING_KICK, 0, 1 | fd::EVENTFD, &0u64.to_le_bytes())
        .msg(req::REM_MEM_REG, NEED_REPLY, 0, &single);
    out.push(("add_rem_mem_reg", b.bytes()));

    // RESET_DEVICE with a ring running, then set up again; RESET_OWNER.
    let mut b = Builder::new(0);
    b.chain(0, 0, 5, 512, true)
        .handshake(f, p, 0)
        .mem_table(0)
        .ring(0, 0)
        .msg(req::RESET_DEVICE, NEED_REPLY, 0, &[])
        .mem_table(0)
        .ring(0, 0)
        .msg(req::RESET_OWNER, 0, 0, &[]);
    out.push(("reset_device", b.bytes()));

    // A polled ring (kick without an fd: bit 8), an err fd, and a
    // read-only disk refusing a write.
    let mut b = Builder::new(1);
    b.chain(0, 1, 1, 512, false)
        .handshake(virtio_features(true), p, 0)
        .mem_table(0)
        .msg(req::SET_VRING_ERR, 0, 1 | fd::EVENTFD, &0u64.to_le_bytes())
        .msg(req::SET_VRING_NUM, 0, 0, &state(0, 8));
    let mut addr = Vec::new();
    addr.extend_from_slice(&0u32.to_le_bytes());
    addr.extend_from_slice(&0u32.to_le_bytes());
    for a in [0u64, 0x2000, 0x1000, 0] {
        addr.extend_from_slice(&(UADDR + a).to_le_bytes());
    }
    b.msg(req::SET_VRING_ADDR, 0, 0, &addr)
        .msg(req::SET_VRING_KICK, 0, 0, &0x100u64.to_le_bytes())
        .msg(req::SET_VRING_ENABLE, 0, 0, &state(0, 1))
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0));
    out.push(("polled_read_only", b.bytes()));

    // Hostile but framed: a region past the end of its memfd, an fd on a
    // message that takes none, a size field that overstates the payload.
    let mut p2 = Vec::new();
    p2.extend_from_slice(&1u32.to_le_bytes());
    p2.extend_from_slice(&0u32.to_le_bytes());
    p2.extend_from_slice(&region_bytes(0, 0x1000, 0));
    let mut b = Builder::new(0);
    b.handshake(f, p, NEED_REPLY)
        .msg(req::SET_MEM_TABLE, NEED_REPLY, 1 | fd::EMPTY_MEMFD, &p2)
        .msg(req::SET_MEM_TABLE, NEED_REPLY, 1 | fd::MEMFD, &p2)
        .msg(req::GET_QUEUE_NUM, 0, 1 | fd::EVENTFD, &[])
        .msg(req::SET_VRING_NUM, 0x40, 0, &state(0, 8));
    out.push(("hostile_framed", b.bytes()));
    out
}
