//! NBD wire format: constants, request headers, reply headers and
//! structured-reply chunks (doc/proto.md of the NBD project). Everything is
//! big-endian. Decoding never trusts a length the server sends: callers
//! check every field against the request it answers.

// Handshake.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;

pub const REP_ACK: u32 = 1;
pub const REP_INFO: u32 = 3;
pub const REP_FLAG_ERROR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_FLAG_ERROR | 1;

pub const INFO_EXPORT: u16 = 0;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TF_HAS_FLAGS: u16 = 1 << 0;
pub const TF_READ_ONLY: u16 = 1 << 1;
pub const TF_SEND_FLUSH: u16 = 1 << 2;
pub const TF_SEND_FUA: u16 = 1 << 3;
pub const TF_SEND_TRIM: u16 = 1 << 5;
pub const TF_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TF_CAN_MULTI_CONN: u16 = 1 << 8;

// Transmission.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;

pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;

pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;
pub const REPLY_TYPE_ERROR_OFFSET: u16 = (1 << 15) | 2;

/// Size of a request header, a simple reply and a structured reply header.
pub const REQUEST_LEN: usize = 28;
pub const SIMPLE_REPLY_LEN: usize = 16;
pub const STRUCTURED_HEADER_LEN: usize = 20;

/// The largest payload we send or accept in one command. "The server
/// SHOULD NOT ... [exceed] 32 MiB" is the default maximum block size when
/// the server does not announce one (proto.md, "Block size constraints").
pub const DEFAULT_MAX_PAYLOAD: u32 = 32 << 20;
/// An error chunk's message is at most 4096 bytes ("The message ... MUST
/// NOT exceed 4096 bytes"); anything larger is a broken server.
pub const MAX_ERROR_MESSAGE: u32 = 4096;

/// A request header.
pub fn encode_request(
    flags: u16,
    cmd: u16,
    cookie: u64,
    offset: u64,
    len: u32,
) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&cmd.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..24].copy_from_slice(&offset.to_be_bytes());
    b[24..28].copy_from_slice(&len.to_be_bytes());
    b
}

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// The first four bytes of every reply say which kind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Simple,
    Structured,
}

pub fn reply_kind(magic: u32) -> Option<ReplyKind> {
    match magic {
        SIMPLE_REPLY_MAGIC => Some(ReplyKind::Simple),
        STRUCTURED_REPLY_MAGIC => Some(ReplyKind::Structured),
        _ => None,
    }
}

/// A simple reply: the 12 bytes after the magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimpleReply {
    pub error: u32,
    pub cookie: u64,
}

pub fn decode_simple(rest: &[u8; 12]) -> SimpleReply {
    SimpleReply {
        error: be32(rest, 0),
        cookie: be64(rest, 4),
    }
}

/// A structured reply chunk header: the 16 bytes after the magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub len: u32,
}

pub fn decode_chunk(rest: &[u8; 16]) -> ChunkHeader {
    ChunkHeader {
        flags: be16(rest, 0),
        kind: be16(rest, 2),
        cookie: be64(rest, 4),
        len: be32(rest, 12),
    }
}

/// An NBD error number as a host errno. "The server SHOULD map an error
/// ... to one of the listed values"; anything else is EIO for us.
pub fn errno_of(nbd: u32) -> i32 {
    match nbd {
        1 => libc::EPERM,
        5 => libc::EIO,
        12 => libc::ENOMEM,
        22 => libc::EINVAL,
        28 => libc::ENOSPC,
        75 => libc::EOVERFLOW,
        95 => libc::ENOTSUP,
        108 => libc::ESHUTDOWN,
        _ => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let b = encode_request(CMD_FLAG_FUA, CMD_WRITE, 0x0102030405060708, 0x1000, 512);
        assert_eq!(&b[0..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(be16(&b, 4), 1);
        assert_eq!(be16(&b, 6), 1);
        assert_eq!(be64(&b, 8), 0x0102030405060708);
        assert_eq!(be64(&b, 16), 0x1000);
        assert_eq!(be32(&b, 24), 512);
    }

    #[test]
    fn replies_decode() {
        assert_eq!(reply_kind(0x67446698), Some(ReplyKind::Simple));
        assert_eq!(reply_kind(0x668e33ef), Some(ReplyKind::Structured));
        assert_eq!(reply_kind(0xdeadbeef), None);
        let mut r = [0u8; 12];
        r[3] = 28;
        r[11] = 7;
        assert_eq!(
            decode_simple(&r),
            SimpleReply {
                error: 28,
                cookie: 7
            }
        );
        let mut c = [0u8; 16];
        c[1] = 1;
        c[3] = 2;
        c[11] = 9;
        c[15] = 12;
        assert_eq!(
            decode_chunk(&c),
            ChunkHeader {
                flags: 1,
                kind: 2,
                cookie: 9,
                len: 12
            }
        );
        assert_eq!(errno_of(28), libc::ENOSPC);
        assert_eq!(errno_of(12345), libc::EIO);
    }
}
