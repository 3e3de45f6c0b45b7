//! [`Builder`]: an input written as driver-level steps (register writes,
//! a request chain in the guest image, Linux's modern probe) instead of
//! raw bytes.

use crate::regs::{common, layout::*, msix as msix_regs};

use super::input::{op, COMMON_FIELDS, LEGACY_FIELDS, QUEUE_SIZE};

/// Index of a field in [`COMMON_FIELDS`] / [`LEGACY_FIELDS`].
fn field(fields: &[(u64, usize)], off: u64) -> u8 {
    fields.iter().position(|&(o, _)| o == off).unwrap_or(0) as u8
}

/// Builds an input.
pub struct Builder {
    opts: u8,
    pub(super) image: Vec<u8>,
    ops: Vec<u8>,
}

impl Builder {
    pub fn new(opts: u8) -> Builder {
        Builder {
            opts,
            image: Vec::new(),
            ops: Vec::new(),
        }
    }

    pub fn image(&mut self, at: usize, b: &[u8]) -> &mut Self {
        if self.image.len() < at + b.len() {
            self.image.resize(at + b.len(), 0);
        }
        self.image[at..at + b.len()].copy_from_slice(b);
        self
    }

    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.ops.extend_from_slice(b);
        self
    }

    pub fn common(&mut self, off: u64, v: u32) -> &mut Self {
        self.raw(&[op::COMMON, field(COMMON_FIELDS, off)])
            .raw(&v.to_le_bytes())
    }

    pub fn legacy(&mut self, off: u64, v: u32) -> &mut Self {
        self.raw(&[op::LEGACY, field(LEGACY_FIELDS, off)])
            .raw(&v.to_le_bytes())
    }

    pub fn cfg_write(&mut self, off: u16, w: u8, v: u64) -> &mut Self {
        self.raw(&[op::CFG_WRITE])
            .raw(&off.to_le_bytes())
            .raw(&[w])
            .raw(&v.to_le_bytes())
    }

    pub fn cfg_read(&mut self, off: u16, w: u8) -> &mut Self {
        self.raw(&[op::CFG_READ]).raw(&off.to_le_bytes()).raw(&[w])
    }

    pub fn bar_read(&mut self, bar: u8, off: u16, w: u8) -> &mut Self {
        self.raw(&[op::BAR_READ, bar])
            .raw(&off.to_le_bytes())
            .raw(&[w])
    }

    pub fn bar_write(&mut self, bar: u8, off: u16, w: u8, v: u64) -> &mut Self {
        self.raw(&[op::BAR_WRITE, bar])
            .raw(&off.to_le_bytes())
            .raw(&[w])
            .raw(&v.to_le_bytes())
    }

    /// A chain (header at 0x3000 + 0x100 n, 512 bytes at 0x4000 + 0x200 n, status
    /// at 0x5000 + n) as descriptors 3n.. of a table at `desc`, published
    /// as avail entry `slot` (index `slot + 1`) of the avail ring at
    /// `avail`. `t`: request type (0 IN, 1 OUT, 4 FLUSH).
    pub fn chain(&mut self, desc: u64, avail: u64, n: u16, slot: u16, t: u32) -> &mut Self {
        let hdr = 0x3000 + 0x100 * u64::from(n);
        let status = 0x5000 + u64::from(n);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&(u64::from(n) + 1).to_le_bytes());
        self.image(hdr as usize, &h);
        self.image(status as usize, &[0xee]);
        let data = 0x4000 + 0x200 * u64::from(n);
        self.image(data as usize, &[0x5a; 512]);
        let write = if t == 0 { 2 } else { 0 };
        let d0 = 3 * n;
        let descs = [
            (hdr, 16u32, 1u16, d0 + 1),
            (data, 512, 1 | write, d0 + 2),
            (status, 1, 2, 0),
        ];
        for (i, (a, l, fl, nx)) in descs.iter().enumerate() {
            let mut d = Vec::new();
            d.extend_from_slice(&a.to_le_bytes());
            d.extend_from_slice(&l.to_le_bytes());
            d.extend_from_slice(&fl.to_le_bytes());
            d.extend_from_slice(&nx.to_le_bytes());
            self.image((desc + 16 * (u64::from(d0) + i as u64)) as usize, &d);
        }
        self.image(
            (avail + 4 + 2 * u64::from(slot)) as usize,
            &d0.to_le_bytes(),
        );
        self.image((avail + 2) as usize, &(slot + 1).to_le_bytes())
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut v = vec![self.opts];
        v.extend_from_slice(&(self.image.len() as u16).to_le_bytes());
        v.extend_from_slice(&self.image);
        v.extend_from_slice(&self.ops);
        v
    }

    /// The modern probe up to DRIVER_OK for queue 0 (desc 0, avail 0x1000,
    /// used 0x2000) and, with two queues, queue 1 (0x800 / 0x1800 /
    /// 0x2800), with `features` acked and MSI-X vectors 0 (config), 1, 2.
    pub fn modern_probe(&mut self, features: u64, queues: u16, msix: bool) -> &mut Self {
        use crate::regs::status::*;
        if msix {
            self.cfg_write(
                (CAP_MSIX + msix_regs::CAP_CONTROL) as u16,
                1,
                u64::from(msix_regs::CTRL_ENABLE),
            );
        }
        self.common(common::DEVICE_STATUS, u32::from(ACKNOWLEDGE))
            .common(common::DEVICE_STATUS, u32::from(ACKNOWLEDGE | DRIVER))
            .common(common::DEVICE_FEATURE_SELECT, 1)
            .bar_read(MODERN_BAR as u8, common::DEVICE_FEATURE as u16, 2)
            .common(common::DRIVER_FEATURE_SELECT, 0)
            .common(common::DRIVER_FEATURE, features as u32)
            .common(common::DRIVER_FEATURE_SELECT, 1)
            .common(common::DRIVER_FEATURE, (features >> 32) as u32)
            .common(
                common::DEVICE_STATUS,
                u32::from(ACKNOWLEDGE | DRIVER | FEATURES_OK),
            )
            .common(common::MSIX_CONFIG, 0);
        for q in 0..queues {
            let o = 0x800 * u32::from(q);
            self.common(common::QUEUE_SELECT, u32::from(q))
                .common(common::QUEUE_SIZE, u32::from(QUEUE_SIZE))
                .common(common::QUEUE_MSIX_VECTOR, u32::from(q) + 1)
                .common(common::QUEUE_DESC_LO, o)
                .common(common::QUEUE_DESC_HI, 0)
                .common(common::QUEUE_DRIVER_LO, 0x1000 + o)
                .common(common::QUEUE_DEVICE_LO, 0x2000 + o)
                .common(common::QUEUE_ENABLE, 1);
        }
        self.common(
            common::DEVICE_STATUS,
            u32::from(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK),
        )
    }
}
