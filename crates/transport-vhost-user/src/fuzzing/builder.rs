//! [`Builder`]: an input written as vhost-user messages (request codes,
//! fd kinds, QEMU's handshake, a memory table, rings and request chains in
//! the guest image) instead of raw bytes.

/// Request codes.
pub mod req {
    pub const GET_FEATURES: u8 = 1;
    pub const SET_FEATURES: u8 = 2;
    pub const SET_OWNER: u8 = 3;
    pub const RESET_OWNER: u8 = 4;
    pub const SET_MEM_TABLE: u8 = 5;
    pub const SET_VRING_NUM: u8 = 8;
    pub const SET_VRING_ADDR: u8 = 9;
    pub const SET_VRING_BASE: u8 = 10;
    pub const GET_VRING_BASE: u8 = 11;
    pub const SET_VRING_KICK: u8 = 12;
    pub const SET_VRING_CALL: u8 = 13;
    pub const SET_VRING_ERR: u8 = 14;
    pub const GET_PROTOCOL_FEATURES: u8 = 15;
    pub const SET_PROTOCOL_FEATURES: u8 = 16;
    pub const GET_QUEUE_NUM: u8 = 17;
    pub const SET_VRING_ENABLE: u8 = 18;
    pub const GET_CONFIG: u8 = 24;
    pub const SET_CONFIG: u8 = 25;
    pub const GET_INFLIGHT_FD: u8 = 31;
    pub const SET_INFLIGHT_FD: u8 = 32;
    pub const RESET_DEVICE: u8 = 34;
    pub const GET_MAX_MEM_SLOTS: u8 = 36;
    pub const ADD_MEM_REG: u8 = 37;
    pub const REM_MEM_REG: u8 = 38;
}

/// Fd kinds of a record.
pub mod fd {
    pub const MEMFD: u8 = 0;
    pub const EVENTFD: u8 = 1 << 3;
    pub const SEALED_MEMFD: u8 = 2 << 3;
    pub const EMPTY_MEMFD: u8 = 3 << 3;
}

/// NEED_REPLY in a record's flags byte.
pub const NEED_REPLY: u8 = 0x08;

/// Where the seeds put guest memory: one region of 16 pages at guest
/// address 0, front-end user address `UADDR`.
pub const UADDR: u64 = 0x7f00_0000_0000;
pub const REGION_PAGES: u8 = 15;

/// Builds an input.
pub struct Builder {
    opts: u8,
    image: Vec<u8>,
    records: Vec<u8>,
}

impl Builder {
    pub fn new(opts: u8) -> Builder {
        Builder {
            opts,
            image: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Image bytes at `off` (the memfd offset = guest address in the seeds).
    pub fn image(&mut self, off: usize, b: &[u8]) -> &mut Self {
        if self.image.len() < off + b.len() {
            self.image.resize(off + b.len(), 0);
        }
        self.image[off..off + b.len()].copy_from_slice(b);
        self
    }

    pub fn msg(&mut self, code: u8, flags: u8, fds: u8, payload: &[u8]) -> &mut Self {
        self.records
            .extend_from_slice(&[code, flags, fds, REGION_PAGES]);
        self.records
            .extend_from_slice(&(payload.len() as u16).to_le_bytes());
        self.records.extend_from_slice(payload);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut v = vec![self.opts];
        v.extend_from_slice(&(self.image.len() as u16).to_le_bytes());
        v.extend_from_slice(&self.image);
        v.extend_from_slice(&self.records);
        v
    }

    /// Feature negotiation as QEMU does it; `proto` the protocol features
    /// acked, `flags` on every message (NEED_REPLY).
    pub fn handshake(&mut self, features: u64, proto: u64, flags: u8) -> &mut Self {
        self.msg(req::GET_FEATURES, 0, 0, &[])
            .msg(req::GET_PROTOCOL_FEATURES, 0, 0, &[])
            .msg(req::SET_FEATURES, flags, 0, &features.to_le_bytes())
            .msg(req::SET_PROTOCOL_FEATURES, flags, 0, &proto.to_le_bytes())
            .msg(req::SET_OWNER, flags, 0, &[])
            .msg(req::GET_QUEUE_NUM, 0, 0, &[])
    }

    /// SET_MEM_TABLE with one region of REGION_PAGES+1 pages.
    pub fn mem_table(&mut self, flags: u8) -> &mut Self {
        let mut p = Vec::new();
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&region_bytes(0, 0, 0));
        self.msg(req::SET_MEM_TABLE, flags, 1 | fd::MEMFD, &p)
    }

    /// Ring `q` of 8 entries: desc at guest 0x100 * q, avail 0x1000 +
    /// 0x100 * q, used 0x2000 + 0x100 * q, base 0, call and kick eventfds,
    /// enabled.
    pub fn ring(&mut self, q: u32, flags: u8) -> &mut Self {
        let o = 0x100 * u64::from(q);
        let mut addr = Vec::new();
        addr.extend_from_slice(&q.to_le_bytes());
        addr.extend_from_slice(&0u32.to_le_bytes());
        for a in [o, 0x2000 + o, 0x1000 + o, 0] {
            addr.extend_from_slice(&(UADDR + a).to_le_bytes());
        }
        self.msg(req::SET_VRING_NUM, flags, 0, &state(q, 8))
            .msg(req::SET_VRING_ADDR, flags, 0, &addr)
            .msg(req::SET_VRING_BASE, flags, 0, &state(q, 0))
            .msg(
                req::SET_VRING_CALL,
                flags,
                1 | fd::EVENTFD,
                &u64::from(q).to_le_bytes(),
            )
            .msg(
                req::SET_VRING_KICK,
                flags,
                1 | fd::EVENTFD,
                &u64::from(q).to_le_bytes(),
            )
            .msg(req::SET_VRING_ENABLE, flags, 0, &state(q, 1))
    }

    /// A chain in ring `q` (of the layout [`Builder::ring`] uses): header
    /// (type `t`, sector `sector`) at 0x3000 + 0x100 q, `len` data bytes at
    /// 0x4000 + 0x1000 q (device-writable if `write`), status at 0x8000 +
    /// 0x10 q; published as avail entry 0.
    pub fn chain(&mut self, q: u64, t: u32, sector: u64, len: u32, write: bool) -> &mut Self {
        let hdr = 0x3000 + 0x100 * q;
        let data = 0x4000 + 0x1000 * q;
        let status = 0x8000 + 0x10 * q;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.image(hdr as usize, &h);
        self.image(data as usize, &vec![0xa5; len as usize]);
        let table = 0x100 * q as usize;
        let mut d = Vec::new();
        let mut desc = |addr: u64, l: u32, fl: u16, next: u16| {
            d.extend_from_slice(&addr.to_le_bytes());
            d.extend_from_slice(&l.to_le_bytes());
            d.extend_from_slice(&fl.to_le_bytes());
            d.extend_from_slice(&next.to_le_bytes());
        };
        if len > 0 {
            desc(hdr, 16, 1, 1);
            desc(data, len, 1 | if write { 2 } else { 0 }, 2);
            desc(status, 1, 2, 0);
        } else {
            desc(hdr, 16, 1, 1);
            desc(status, 1, 2, 0);
        }
        self.image(table, &d);
        let avail = 0x1000 + 0x100 * q as usize;
        self.image(avail, &[0, 0, 1, 0, 0, 0])
    }
}

/// A `VhostUserMemoryRegion` of the seeds' memfd: guest `gpa`, user
/// address `UADDR + gpa`, file offset `offset`.
pub fn region_bytes(gpa: u64, offset: u64, shrink: u64) -> Vec<u8> {
    let size = (u64::from(REGION_PAGES) + 1) * 4096 - shrink;
    let mut v = Vec::new();
    for x in [gpa, size, UADDR + gpa, offset] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

/// A `VhostUserVringState`.
pub fn state(index: u32, num: u32) -> Vec<u8> {
    let mut v = index.to_le_bytes().to_vec();
    v.extend_from_slice(&num.to_le_bytes());
    v
}
