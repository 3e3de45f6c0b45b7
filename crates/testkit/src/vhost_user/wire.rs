//! The wire format of front-end messages: request codes, header flags and
//! the bodies [`RawConn`](super::RawConn) sends (memory regions, memory
//! tables, vring states and addresses), byte by byte.

/// Front-end request codes (vhost-user spec, "Front-end message types").
pub mod req {
    pub const GET_FEATURES: u32 = 1;
    pub const SET_FEATURES: u32 = 2;
    pub const SET_OWNER: u32 = 3;
    pub const RESET_OWNER: u32 = 4;
    pub const SET_MEM_TABLE: u32 = 5;
    pub const SET_LOG_BASE: u32 = 6;
    pub const SET_LOG_FD: u32 = 7;
    pub const SET_VRING_NUM: u32 = 8;
    pub const SET_VRING_ADDR: u32 = 9;
    pub const SET_VRING_BASE: u32 = 10;
    pub const GET_VRING_BASE: u32 = 11;
    pub const SET_VRING_KICK: u32 = 12;
    pub const SET_VRING_CALL: u32 = 13;
    pub const SET_VRING_ERR: u32 = 14;
    pub const GET_PROTOCOL_FEATURES: u32 = 15;
    pub const SET_PROTOCOL_FEATURES: u32 = 16;
    pub const GET_QUEUE_NUM: u32 = 17;
    pub const SET_VRING_ENABLE: u32 = 18;
    pub const GET_CONFIG: u32 = 24;
    pub const SET_CONFIG: u32 = 25;
    pub const GET_INFLIGHT_FD: u32 = 31;
    pub const SET_INFLIGHT_FD: u32 = 32;
    pub const RESET_DEVICE: u32 = 34;
    pub const GET_MAX_MEM_SLOTS: u32 = 36;
    pub const ADD_MEM_REG: u32 = 37;
    pub const REM_MEM_REG: u32 = 38;
}

/// Header flags: protocol version 1, a reply, a reply wanted.
pub const FLAG_VERSION: u32 = 0x1;
pub const FLAG_REPLY: u32 = 0x4;
pub const FLAG_NEED_REPLY: u32 = 0x8;

/// Body of a memory region (guest address, size, user address, mmap offset).
pub fn region_bytes(gpa: u64, size: u64, uva: u64, offset: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..8].copy_from_slice(&gpa.to_le_bytes());
    b[8..16].copy_from_slice(&size.to_le_bytes());
    b[16..24].copy_from_slice(&uva.to_le_bytes());
    b[24..32].copy_from_slice(&offset.to_le_bytes());
    b
}

/// Body of SET_MEM_TABLE: the region count as given, then the regions.
pub fn mem_table_bytes(num_regions: u32, regions: &[[u8; 32]]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&num_regions.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for r in regions {
        b.extend_from_slice(r);
    }
    b
}

/// Body of a vring state message (index, num).
pub fn state_bytes(index: u32, num: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&index.to_le_bytes());
    b[4..8].copy_from_slice(&num.to_le_bytes());
    b
}

/// Body of SET_VRING_ADDR (index, flags, desc, used, avail, log).
pub fn vring_addr_bytes(index: u32, desc: u64, used: u64, avail: u64) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[0..4].copy_from_slice(&index.to_le_bytes());
    b[8..16].copy_from_slice(&desc.to_le_bytes());
    b[16..24].copy_from_slice(&used.to_le_bytes());
    b[24..32].copy_from_slice(&avail.to_le_bytes());
    b
}
