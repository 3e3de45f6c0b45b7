//! The session without a socket: framing, VERSION first, sizes, errnos,
//! the DMA map cap, and random message sequences that must never panic or
//! reach the backend out of bounds.

use std::fs::File;
use std::io;

use proptest::prelude::*;
use vblk_vfio_user::proto::{self, cmd, flags, Header};
use vblk_vfio_user::{
    refuse, Backend, DeviceInfo, DmaMapFlags, DmaUnmapFlags, IrqInfo, Limits, RegionInfo, Session,
};

const REGION_SIZE: [u64; 3] = [0x100, 0, 0x4000];

#[derive(Default)]
struct Mock {
    calls: Vec<String>,
    maps: Vec<(u64, u64)>,
}

impl Backend for Mock {
    fn device_info(&self) -> DeviceInfo {
        DeviceInfo {
            flags: proto::DEVICE_FLAGS_PCI | proto::DEVICE_FLAGS_RESET,
            num_regions: 3,
            num_irqs: 1,
        }
    }
    fn region_info(&self, index: u32) -> Option<RegionInfo> {
        REGION_SIZE.get(index as usize).map(|&size| RegionInfo {
            flags: proto::REGION_INFO_FLAG_READ | proto::REGION_INFO_FLAG_WRITE,
            size,
        })
    }
    fn irq_info(&self, index: u32) -> Option<IrqInfo> {
        (index == 0).then_some(IrqInfo { flags: 1, count: 4 })
    }
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        assert!(!data.is_empty());
        assert!(offset + data.len() as u64 <= REGION_SIZE[region as usize]);
        data.fill(0xab);
        self.calls
            .push(format!("read {region} {offset} {}", data.len()));
        Ok(())
    }
    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        assert!(!data.is_empty());
        assert!(offset + data.len() as u64 <= REGION_SIZE[region as usize]);
        self.calls
            .push(format!("write {region} {offset} {}", data.len()));
        Ok(())
    }
    fn dma_map(
        &mut self,
        _flags: DmaMapFlags,
        _offset: u64,
        address: u64,
        size: u64,
        _fd: Option<File>,
    ) -> io::Result<()> {
        assert!(size > 0);
        if self
            .maps
            .iter()
            .any(|&(a, s)| address < a + s && a < address + size)
        {
            return Err(refuse(libc::EEXIST, "overlap"));
        }
        self.maps.push((address, size));
        self.calls.push(format!("map {address:#x}"));
        Ok(())
    }
    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        if flags.contains(DmaUnmapFlags::UNMAP_ALL) {
            self.maps.clear();
            return Ok(());
        }
        let i = self
            .maps
            .iter()
            .position(|&m| m == (address, size))
            .ok_or_else(|| refuse(libc::EINVAL, "no such map"))?;
        self.maps.remove(i);
        Ok(())
    }
    fn set_irqs(
        &mut self,
        index: u32,
        _flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        assert_eq!(index, 0);
        assert!(start as u64 + count as u64 <= 4);
        assert!(fds.is_empty() || fds.len() == count as usize);
        Ok(())
    }
    fn reset(&mut self) -> io::Result<()> {
        self.calls.push("reset".into());
        Ok(())
    }
}

fn version_payload() -> Vec<u8> {
    let mut p = vec![0, 0, 0, 0];
    p.extend_from_slice(br#"{"capabilities":{"max_msg_fds":8}}"#);
    p.push(0);
    p
}

/// Parse the replies of a stream: (header, payload) each.
fn replies(mut b: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let mut v = Vec::new();
    while b.len() >= 16 {
        let h = Header::parse(b[..16].try_into().unwrap());
        let end = h.size as usize;
        v.push((h, b[16..end].to_vec()));
        b = &b[end..];
    }
    assert!(b.is_empty(), "replies are whole");
    v
}

fn negotiated() -> (Session, Mock) {
    let mut s = Session::new(Limits::default());
    let mut m = Mock::default();
    let (out, err) = s.feed(
        &mut m,
        &proto::message(0, cmd::VERSION, 0, &version_payload()),
    );
    assert!(err.is_none());
    let r = replies(&out);
    assert_eq!(r[0].0.flags, flags::TYPE_REPLY);
    let json = &r[0].1[4..];
    assert_eq!(json.last(), Some(&0));
    let v: serde_json::Value = serde_json::from_slice(&json[..json.len() - 1]).unwrap();
    assert_eq!(v["capabilities"]["max_dma_maps"], 512);
    assert_eq!(v["capabilities"]["max_msg_fds"], 16);
    assert!(v["capabilities"].get("migration").is_none());
    (s, m)
}

fn region_write(id: u16, region: u32, offset: u64, count: u32, data: &[u8]) -> Vec<u8> {
    let mut p = offset.to_le_bytes().to_vec();
    p.extend_from_slice(&region.to_le_bytes());
    p.extend_from_slice(&count.to_le_bytes());
    p.extend_from_slice(data);
    proto::message(id, cmd::REGION_WRITE, 0, &p)
}

#[test]
fn a_refused_message_is_consumed_whole_and_an_embedded_header_is_not_run() {
    let (mut s, mut m) = negotiated();
    // Region 99 does not exist; its data is a DEVICE_RESET header.
    let reset = proto::message(7, cmd::DEVICE_RESET, 0, &[]);
    let mut stream = region_write(1, 99, 0, reset.len() as u32, &reset);
    // An unknown command whose payload is another DEVICE_RESET.
    stream.extend(proto::message(2, 0x7777, 0, &reset));
    stream.extend(proto::message(
        3,
        cmd::DEVICE_GET_INFO,
        0,
        &[&16u32.to_le_bytes()[..], &[0; 12]].concat(),
    ));
    let (out, err) = s.feed(&mut m, &stream);
    assert!(err.is_none());
    let r = replies(&out);
    assert_eq!(
        r.len(),
        3,
        "one reply per message, none for the embedded ones"
    );
    assert_eq!((r[0].0.id, r[0].0.error), (1, libc::EINVAL as u32));
    assert_eq!((r[1].0.id, r[1].0.error), (2, libc::ENOTSUP as u32));
    assert_eq!(r[2].0.id, 3);
    assert_eq!(r[2].0.flags, flags::TYPE_REPLY);
    assert!(!m.calls.contains(&"reset".to_string()));
}

#[test]
fn commands_before_version_are_refused_and_malformed_versions_answered() {
    let mut s = Session::new(Limits::default());
    let mut m = Mock::default();
    let reset = proto::message(1, cmd::DEVICE_RESET, 0, &[]);
    let (out, _) = s.feed(&mut m, &reset);
    let r = replies(&out);
    assert_eq!(r[0].0.flags, flags::TYPE_REPLY | flags::ERROR);
    assert_eq!(r[0].0.error, libc::EINVAL as u32);
    assert!(m.calls.is_empty());
    for bad in [
        b"\0\0\0\0{}".to_vec(),       // no NUL
        b"\0\0\0\0{}\0{}\0".to_vec(), // NUL inside
        b"\0\0\0\0[1]\0".to_vec(),    // not an object
        b"\0\0".to_vec(),             // too short
        vec![0; 12],                  // size 16 + 12: zeros, NULs inside
        b"\x01\0\0\0".to_vec(),       // major 1
    ] {
        let (out, err) = s.feed(&mut m, &proto::message(2, cmd::VERSION, 0, &bad));
        assert!(err.is_none());
        let r = replies(&out);
        assert_ne!(r[0].0.error, 0, "{bad:?}");
        assert!(!s.negotiated());
    }
    // A bare VERSION (no data) is fine; a second one is refused.
    let (out, _) = s.feed(&mut m, &proto::message(3, cmd::VERSION, 0, &[0, 0, 0, 0]));
    assert_eq!(replies(&out)[0].0.flags, flags::TYPE_REPLY);
    let (out, _) = s.feed(&mut m, &proto::message(4, cmd::VERSION, 0, &[0, 0, 0, 0]));
    assert_eq!(replies(&out)[0].0.error, libc::EINVAL as u32);
}

#[test]
fn no_reply_is_honoured_for_every_command() {
    let (mut s, mut m) = negotiated();
    let mut stream = region_write(1, 0, 0, 4, &[1, 2, 3, 4]);
    stream[8] |= flags::NO_REPLY as u8;
    let mut read = proto::message(2, cmd::REGION_READ, flags::NO_REPLY, &[0; 16]);
    read[16 + 12] = 4; // count 4 of region 0
    stream.extend(read);
    stream.extend(proto::message(3, 0x7777, flags::NO_REPLY, &[1; 9]));
    stream.extend(proto::message(4, cmd::DEVICE_RESET, 0, &[]));
    let (out, _) = s.feed(&mut m, &stream);
    let r = replies(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0.id, 4);
    assert_eq!(m.calls, ["write 0 0 4", "read 0 0 4", "reset"]);
}

#[test]
fn sizes_are_checked_per_command_and_absurd_sizes_drop_the_connection() {
    let (mut s, mut m) = negotiated();
    for (c, len) in [
        (cmd::DMA_MAP, 31),
        (cmd::DMA_MAP, 33),
        (cmd::DMA_UNMAP, 16),
        (cmd::DEVICE_GET_INFO, 0),
        (cmd::DEVICE_GET_REGION_INFO, 4),
        (cmd::DEVICE_GET_IRQ_INFO, 40),
        (cmd::DEVICE_SET_IRQS, 19),
        (cmd::REGION_READ, 15),
        (cmd::REGION_WRITE, 8),
        (cmd::DEVICE_RESET, 1),
    ] {
        let (out, err) = s.feed(&mut m, &proto::message(9, c, 0, &vec![0; len]));
        assert!(err.is_none());
        let r = replies(&out);
        assert_eq!(r[0].0.error, libc::EINVAL as u32, "command {c} size {len}");
    }
    // REGION_WRITE count that does not match its data; REGION_READ of 4 GiB.
    let (out, _) = s.feed(&mut m, &region_write(1, 0, 0, 0xffff_ffff, &[0; 4]));
    assert_eq!(replies(&out)[0].0.error, libc::EINVAL as u32);
    let mut read = proto::message(2, cmd::REGION_READ, 0, &[0; 16]);
    read[16 + 12..16 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    let (out, _) = s.feed(&mut m, &read);
    assert_eq!(replies(&out)[0].0.error, libc::E2BIG as u32);
    // A zero-byte read is answered without reaching the backend.
    let (out, _) = s.feed(&mut m, &proto::message(3, cmd::REGION_READ, 0, &[0; 16]));
    assert_eq!(replies(&out)[0].0.flags, flags::TYPE_REPLY);
    assert!(m.calls.is_empty());
    // Header sizes that cannot be framed.
    for size in [0u32, 8, 15, 0x10_0000 + 33, u32::MAX] {
        let mut h = proto::message(4, cmd::DEVICE_RESET, 0, &[]);
        h[4..8].copy_from_slice(&size.to_le_bytes());
        let (_, err) = s.feed(&mut m, &h);
        assert!(err.is_some(), "size {size}");
    }
}

fn dma_map(id: u16, addr: u64, size: u64) -> Vec<u8> {
    let mut p = 32u32.to_le_bytes().to_vec();
    p.extend_from_slice(&3u32.to_le_bytes());
    p.extend_from_slice(&0u64.to_le_bytes());
    p.extend_from_slice(&addr.to_le_bytes());
    p.extend_from_slice(&size.to_le_bytes());
    proto::message(id, cmd::DMA_MAP, 0, &p)
}

#[test]
fn the_dma_map_count_is_capped_and_follows_unmaps() {
    let limits = Limits {
        max_dma_maps: 3,
        ..Limits::default()
    };
    let mut s = Session::new(limits);
    let mut m = Mock::default();
    s.feed(&mut m, &proto::message(0, cmd::VERSION, 0, &[0; 4]));
    let mut stream = Vec::new();
    for i in 0..4u64 {
        stream.extend(dma_map(i as u16, i << 20, 1 << 20));
    }
    let (out, _) = s.feed(&mut m, &stream);
    let errs: Vec<u32> = replies(&out).iter().map(|r| r.0.error).collect();
    assert_eq!(errs, [0, 0, 0, libc::ENOSPC as u32]);
    // Overlap: EEXIST from the backend; the count does not move.
    let mut unmap = 24u32.to_le_bytes().to_vec();
    unmap.extend_from_slice(&0u32.to_le_bytes());
    unmap.extend_from_slice(&0u64.to_le_bytes());
    unmap.extend_from_slice(&(1u64 << 20).to_le_bytes());
    let (out, _) = s.feed(&mut m, &proto::message(9, cmd::DMA_UNMAP, 0, &unmap));
    let r = replies(&out);
    assert_eq!(r[0].0.error, 0);
    assert_eq!(r[0].1, unmap, "the reply echoes the entry");
    assert_eq!(s.dma_maps(), 2);
    let (out, _) = s.feed(&mut m, &dma_map(10, 0x18_0000, 1 << 20));
    assert_eq!(replies(&out)[0].0.error, libc::EEXIST as u32);
    // Unmap of something not mapped exactly.
    let (out, _) = s.feed(&mut m, &proto::message(11, cmd::DMA_UNMAP, 0, &unmap));
    assert_eq!(replies(&out)[0].0.error, libc::EINVAL as u32);
    assert_eq!(s.dma_maps(), 2);
}

fn arb_offset() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..0x5000, any::<u64>(), Just(u64::MAX - 3)]
}

fn arb_message() -> impl Strategy<Value = Vec<u8>> {
    let hflags = prop_oneof![Just(0u32), Just(0u32), Just(flags::NO_REPLY), any::<u32>()];
    let access = |o: u64, r: u32, c: u32| {
        let mut p = o.to_le_bytes().to_vec();
        p.extend_from_slice(&r.to_le_bytes());
        p.extend_from_slice(&c.to_le_bytes());
        p
    };
    let body = prop_oneof![
        // Anything.
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..48)),
        // REGION_READ in plausible shapes.
        (
            arb_offset(),
            0u32..5,
            prop_oneof![0u32..0x5000, any::<u32>()]
        )
            .prop_map(move |(o, r, c)| (cmd::REGION_READ, access(o, r, c))),
        // REGION_WRITE with data matching its count, or off by one.
        (arb_offset(), 0u32..5, 0u32..64, -1i32..=1).prop_map(move |(o, r, c, d)| {
            let mut p = access(o, r, c);
            p.extend(std::iter::repeat_n(0x11, (c as i32 + d).max(0) as usize));
            (cmd::REGION_WRITE, p)
        }),
        // SET_IRQS: any flags, small ranges.
        (
            prop_oneof![any::<u32>(), 0u32..64],
            0u32..3,
            0u32..6,
            0u32..6
        )
            .prop_map(|(f, i, st, c)| {
                let mut p = 20u32.to_le_bytes().to_vec();
                for v in [f, i, st, c] {
                    p.extend_from_slice(&v.to_le_bytes());
                }
                (cmd::DEVICE_SET_IRQS, p)
            }),
        // DMA_MAP / DMA_UNMAP over a small address space.
        (0u32..4, 0u64..8, 0u64..4, any::<bool>()).prop_map(|(f, a, sz, map)| {
            let mut p = if map { 32u32 } else { 24 }.to_le_bytes().to_vec();
            p.extend_from_slice(&f.to_le_bytes());
            if map {
                p.extend_from_slice(&0u64.to_le_bytes());
            }
            p.extend_from_slice(&(a << 20).to_le_bytes());
            p.extend_from_slice(&(sz << 20).to_le_bytes());
            (if map { cmd::DMA_MAP } else { cmd::DMA_UNMAP }, p)
        }),
        // Fixed-size queries, right or wrong sizes.
        (
            4u16..8,
            0u32..12,
            prop_oneof![Just(16usize), Just(32), 0usize..40]
        )
            .prop_map(|(c, idx, len)| {
                let mut p = vec![0u8; len];
                if len >= 12 {
                    p[0..4].copy_from_slice(&(len as u32).to_le_bytes());
                    p[8..12].copy_from_slice(&idx.to_le_bytes());
                }
                (c, p)
            }),
        Just((cmd::DEVICE_RESET, vec![])),
    ];
    (any::<u16>(), hflags, body).prop_map(|(id, f, (c, p))| proto::message(id, c, f, &p))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn random_message_sequences_never_panic(
        msgs in proptest::collection::vec(arb_message(), 1..24),
        version_first in any::<bool>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut s = Session::new(Limits::default());
        let mut m = Mock::default();
        let mut stream = Vec::new();
        if version_first {
            stream.extend(proto::message(0, cmd::VERSION, 0, &version_payload()));
        }
        let mut sent = 0usize;
        for msg in &msgs {
            stream.extend_from_slice(msg);
            sent += 1;
        }
        stream.extend_from_slice(&garbage);
        let (out, _err) = s.feed(&mut m, &stream);
        // Replies are whole, at most one per message (+ VERSION).
        let r = replies(&out);
        prop_assert!(r.len() <= sent + usize::from(version_first) + garbage.len() / 16 + 1);
        for (h, _) in r {
            prop_assert_eq!(h.flags & flags::TYPE_MASK, flags::TYPE_REPLY);
            if h.flags & flags::ERROR != 0 {
                prop_assert!(h.error != 0);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]
    /// The `cargo fuzz` body on stable: raw bytes, and byte soup built
    /// from real headers.
    #[test]
    fn fuzz_body_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        vblk_vfio_user::fuzzing::session_stream(&data);
    }

    #[test]
    fn fuzz_body_on_message_soup(msgs in proptest::collection::vec(arb_message(), 0..16), v in any::<u8>()) {
        let mut data = vec![v];
        for m in msgs {
            data.extend(m);
        }
        vblk_vfio_user::fuzzing::session_stream(&data);
    }
}
