//! vfio-user wire format (QEMU `docs/interop/vfio-user.rst`, protocol 0.1),
//! parsed field by field in little endian from byte slices: no `repr(C)`
//! casts, no reads past a slice.
//!
//! "In this revision, all data is in the endianness of the host system":
//! vblk runs on little-endian hosts only (x86_64, aarch64), where host
//! order and little endian agree.

/// "All messages, both command messages and reply messages, are preceded
/// by a 16-byte header".
pub const HEADER_SIZE: usize = 16;

/// Command numbers ("Commands" table).
pub mod cmd {
    pub const VERSION: u16 = 1;
    pub const DMA_MAP: u16 = 2;
    pub const DMA_UNMAP: u16 = 3;
    pub const DEVICE_GET_INFO: u16 = 4;
    pub const DEVICE_GET_REGION_INFO: u16 = 5;
    pub const DEVICE_GET_REGION_IO_FDS: u16 = 6;
    pub const DEVICE_GET_IRQ_INFO: u16 = 7;
    pub const DEVICE_SET_IRQS: u16 = 8;
    pub const REGION_READ: u16 = 9;
    pub const REGION_WRITE: u16 = 10;
    pub const DMA_READ: u16 = 11;
    pub const DMA_WRITE: u16 = 12;
    pub const DEVICE_RESET: u16 = 13;
    pub const REGION_WRITE_MULTI: u16 = 15;
    pub const DEVICE_FEATURE: u16 = 16;
}

/// Header flags: "Bit 0-3 Type, 4 No_reply, 5 Error".
pub mod flags {
    pub const TYPE_MASK: u32 = 0xf;
    pub const TYPE_COMMAND: u32 = 0;
    pub const TYPE_REPLY: u32 = 1;
    pub const NO_REPLY: u32 = 1 << 4;
    pub const ERROR: u32 = 1 << 5;
}

/// Payload sizes of the fixed-layout requests (after the header).
pub mod size {
    pub const VERSION_MIN: usize = 4;
    pub const DMA_MAP: usize = 32;
    pub const DMA_UNMAP: usize = 24;
    pub const DEVICE_INFO: usize = 16;
    pub const REGION_INFO: usize = 32;
    pub const REGION_IO_FDS: usize = 16;
    pub const IRQ_INFO: usize = 16;
    pub const SET_IRQS: usize = 20;
    pub const REGION_ACCESS: usize = 16;
}

/// The message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub id: u16,
    pub command: u16,
    /// "the size of the entire message, including the header".
    pub size: u32,
    pub flags: u32,
    pub error: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_SIZE]) -> Header {
        let mut r = Reader::new(b);
        // The slice is exactly HEADER_SIZE bytes: every read succeeds.
        Header {
            id: r.u16().unwrap_or(0),
            command: r.u16().unwrap_or(0),
            size: r.u32().unwrap_or(0),
            flags: r.u32().unwrap_or(0),
            error: r.u32().unwrap_or(0),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.command.to_le_bytes());
        b[4..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.error.to_le_bytes());
        b
    }

    /// "No_reply in a command message indicates that no reply is needed".
    pub fn no_reply(&self) -> bool {
        self.flags & flags::NO_REPLY != 0
    }

    pub fn kind(&self) -> u32 {
        self.flags & flags::TYPE_MASK
    }
}

/// Little-endian reads from a byte slice; `None` past its end.
pub struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.b.split_first_chunk::<N>()?;
        self.b = rest;
        Some(*head)
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.take::<2>().map(u16::from_le_bytes)
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    pub fn rest(&self) -> &'a [u8] {
        self.b
    }
}

/// Little-endian writes into a growing buffer.
#[derive(Default)]
pub struct Writer {
    pub b: Vec<u8>,
}

impl Writer {
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.b.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.b.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.b.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.b.extend_from_slice(v);
        self
    }
}

/// VFIO_USER_DMA_MAP flags: "0 readable, 1 writeable".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaMapFlags(pub u32);

impl DmaMapFlags {
    pub const READ: DmaMapFlags = DmaMapFlags(1);
    pub const WRITE: DmaMapFlags = DmaMapFlags(2);
    pub const READ_WRITE: DmaMapFlags = DmaMapFlags(3);
    pub fn contains(self, other: DmaMapFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn bits(self) -> u32 {
        self.0
    }
}

/// VFIO_USER_DMA_UNMAP flags (linux/vfio.h `VFIO_DMA_UNMAP_FLAG_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaUnmapFlags(pub u32);

impl DmaUnmapFlags {
    pub const NONE: DmaUnmapFlags = DmaUnmapFlags(0);
    pub const GET_DIRTY_BITMAP: DmaUnmapFlags = DmaUnmapFlags(1 << 0);
    pub const UNMAP_ALL: DmaUnmapFlags = DmaUnmapFlags(1 << 1);
    pub fn contains(self, other: DmaUnmapFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn bits(self) -> u32 {
        self.0
    }
}

/// DEVICE_GET_INFO flags.
pub const DEVICE_FLAGS_RESET: u32 = 1 << 0;
pub const DEVICE_FLAGS_PCI: u32 = 1 << 1;

/// SET_IRQS flags (linux/vfio.h `VFIO_IRQ_SET_*`).
pub mod irq_set {
    pub const DATA_NONE: u32 = 1 << 0;
    pub const DATA_BOOL: u32 = 1 << 1;
    pub const DATA_EVENTFD: u32 = 1 << 2;
    pub const DATA_MASK: u32 = DATA_NONE | DATA_BOOL | DATA_EVENTFD;
    pub const ACTION_MASK: u32 = 1 << 3;
    pub const ACTION_UNMASK: u32 = 1 << 4;
    pub const ACTION_TRIGGER: u32 = 1 << 5;
    pub const ACTION_TYPE_MASK: u32 = ACTION_MASK | ACTION_UNMASK | ACTION_TRIGGER;
}

/// REGION_INFO flags.
pub const REGION_INFO_FLAG_READ: u32 = 1 << 0;
pub const REGION_INFO_FLAG_WRITE: u32 = 1 << 1;

/// What DEVICE_GET_INFO answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
}

/// What DEVICE_GET_REGION_INFO answers for one region (no capabilities,
/// nothing mmap-able).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    pub flags: u32,
    pub size: u64,
}

/// What DEVICE_GET_IRQ_INFO answers for one index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqInfo {
    pub flags: u32,
    pub count: u32,
}

/// A message as a client would send it: header (with `size` filled in)
/// plus payload. For tests and fuzzing.
pub fn message(id: u16, command: u16, hflags: u32, payload: &[u8]) -> Vec<u8> {
    let size = u32::try_from(HEADER_SIZE.saturating_add(payload.len())).unwrap_or(u32::MAX);
    let h = Header {
        id,
        command,
        size,
        flags: hflags,
        error: 0,
    };
    let mut v = h.encode().to_vec();
    v.extend_from_slice(payload);
    v
}
