//! The session without a socket: framing, VERSION first, sizes, errnos,
//! the DMA map cap, and random message sequences that must never panic or
//! reach the backend out of bounds.
//!
//! Shared here: a mock backend that checks every access, the VERSION
//! exchange and message builders. The tests, by theme, are in the modules
//! below.

// Where the tests live: framing, VERSION first, no_reply and sizes
// (`messages`); the DMA map cap (`dma`); random message sequences and the
// fuzz body (`random_messages`).
mod dma;
mod messages;
mod random_messages;

use std::fs::File;
use std::io;

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
