//! Fuzz bodies, shared by the `cargo fuzz` target `vfio_user_session`
//! (fuzz/) and the stable smoke test (tests/session/random_messages.rs). Not API.

use std::fs::File;
use std::io;

use crate::proto::{self, cmd, flags, Header};
use crate::{
    Backend, DeviceInfo, DmaMapFlags, DmaUnmapFlags, IrqInfo, Limits, RegionInfo, Session,
};

const REGIONS: [u64; 4] = [0x80, 0x1000, 0, 0x4000];

/// A backend that checks the session's promises: accesses non-empty and
/// inside their region, vector ranges inside the irq's count, fd counts
/// as the request says, unmaps of what is mapped. A broken promise panics
/// (a fuzz finding).
#[derive(Default)]
pub struct CheckingBackend {
    maps: Vec<(u64, u64)>,
}

impl Backend for CheckingBackend {
    fn device_info(&self) -> DeviceInfo {
        DeviceInfo {
            flags: proto::DEVICE_FLAGS_PCI | proto::DEVICE_FLAGS_RESET,
            num_regions: REGIONS.len() as u32,
            num_irqs: 2,
        }
    }
    fn region_info(&self, index: u32) -> Option<RegionInfo> {
        REGIONS.get(index as usize).map(|&size| RegionInfo {
            flags: if size > 0 {
                proto::REGION_INFO_FLAG_READ | proto::REGION_INFO_FLAG_WRITE
            } else {
                0
            },
            size,
        })
    }
    fn irq_info(&self, index: u32) -> Option<IrqInfo> {
        match index {
            0 => Some(IrqInfo { flags: 7, count: 1 }),
            1 => Some(IrqInfo { flags: 9, count: 3 }),
            _ => None,
        }
    }
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let size = REGIONS[region as usize];
        assert!(!data.is_empty() && offset + data.len() as u64 <= size);
        data.fill(0x5a);
        Ok(())
    }
    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let size = REGIONS[region as usize];
        assert!(!data.is_empty() && offset + data.len() as u64 <= size);
        Ok(())
    }
    fn dma_map(
        &mut self,
        flags: DmaMapFlags,
        _offset: u64,
        address: u64,
        size: u64,
        _fd: Option<File>,
    ) -> io::Result<()> {
        assert!(size > 0 && address.checked_add(size - 1).is_some());
        assert_eq!(flags.bits() & !3, 0);
        let end = address + size;
        if self.maps.iter().any(|&(a, s)| address < a + s && a < end) {
            return Err(crate::refuse(libc::EEXIST, "overlap"));
        }
        self.maps.push((address, size));
        Ok(())
    }
    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        if flags.contains(DmaUnmapFlags::UNMAP_ALL) {
            assert_eq!((address, size), (0, 0));
            self.maps.clear();
            return Ok(());
        }
        let i = self
            .maps
            .iter()
            .position(|&m| m == (address, size))
            .ok_or_else(|| crate::refuse(libc::EINVAL, "not mapped"))?;
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
        let n = self.irq_info(index).map_or(0, |i| i.count);
        assert!(u64::from(start) + u64::from(count) <= u64::from(n));
        assert!(fds.is_empty() || fds.len() == count as usize);
        Ok(())
    }
    fn reset(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes → (optionally a valid VERSION first) → a message stream through
/// [`Session::feed`]. Checks: no panic; replies are whole, one per
/// message at most, typed as replies; error replies carry an errno; the
/// DMA map count stays within the limit.
pub fn session_stream(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_dma_maps: 4,
        max_data_xfer_size: 0x2000,
        ..Limits::default()
    };
    let mut s = Session::new(limits);
    let mut b = CheckingBackend::default();
    if first & 1 != 0 {
        s.feed(&mut b, &proto::message(0, cmd::VERSION, 0, &[0, 0, 0, 0]));
    }
    let (out, _) = s.feed(&mut b, rest);
    assert!(s.dma_maps() <= limits.max_dma_maps);
    let mut o = out.as_slice();
    let mut n = 0;
    while let Some((hb, tail)) = o.split_first_chunk::<{ proto::HEADER_SIZE }>() {
        let h = Header::parse(hb);
        assert_eq!(h.kind(), flags::TYPE_REPLY);
        if h.flags & flags::ERROR != 0 {
            assert_ne!(h.error, 0);
        }
        let len = (h.size as usize)
            .checked_sub(proto::HEADER_SIZE)
            .expect("reply size");
        o = tail.get(len..).expect("whole reply");
        n += 1;
    }
    assert!(o.is_empty());
    assert!(n <= rest.len() / proto::HEADER_SIZE);
}
