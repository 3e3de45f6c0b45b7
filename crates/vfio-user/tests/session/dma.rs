//! The DMA map cap: maps counted, capped with ENOSPC, and freed by exact unmaps only.

use vblk_vfio_user::proto::{self, cmd};
use vblk_vfio_user::{Limits, Session};

use crate::{replies, Mock};

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
