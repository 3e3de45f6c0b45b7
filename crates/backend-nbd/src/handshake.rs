//! The fixed newstyle handshake: structured replies, then NBD_OPT_GO (with
//! a fallback to NBD_OPT_EXPORT_NAME for servers that do not know GO).

use std::io::{self, Read, Write};

use crate::proto::*;

/// What the server told us about the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    pub size: u64,
    /// Transmission flags (`TF_*`).
    pub flags: u16,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// NBD_INFO_BLOCK_SIZE: minimum, preferred, maximum (or defaults).
    pub min_block: u32,
    pub preferred_block: u32,
    pub max_block: u32,
}

impl ExportInfo {
    pub fn has(&self, flag: u16) -> bool {
        self.flags & TF_HAS_FLAGS != 0 && self.flags & flag != 0
    }
    /// Largest READ/WRITE payload we send.
    pub fn max_payload(&self) -> u32 {
        self.max_block.clamp(4096, DEFAULT_MAX_PAYLOAD)
    }
}

/// Longest option reply we accept (an INFO reply with a description is
/// small; this bounds what a hostile server can make us allocate).
const MAX_OPTION_REPLY: u32 = 64 << 10;
/// The old-style handshake's magic, which we do not speak.
const OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_u64(s: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn send_option(s: &mut impl Write, opt: u32, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len()).map_err(|_| bad("option too long"))?;
    let mut b = Vec::with_capacity(16 + data.len());
    b.extend_from_slice(&IHAVEOPT.to_be_bytes());
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(data);
    s.write_all(&b)
}

/// One option reply: (type, data).
fn read_option_reply(s: &mut impl Read, opt: u32) -> io::Result<(u32, Vec<u8>)> {
    let mut h = [0u8; 20];
    s.read_exact(&mut h)?;
    if be64(&h, 0) != OPT_REPLY_MAGIC {
        return Err(bad("bad option reply magic"));
    }
    if be32(&h, 8) != opt {
        return Err(bad(format!(
            "reply to option {} while asking {opt}",
            be32(&h, 8)
        )));
    }
    let kind = be32(&h, 12);
    let len = be32(&h, 16);
    if len > MAX_OPTION_REPLY {
        return Err(bad(format!("option reply of {len} bytes")));
    }
    let mut data = vec![0u8; len as usize];
    s.read_exact(&mut data)?;
    Ok((kind, data))
}

fn option_error(kind: u32, data: &[u8]) -> io::Error {
    let msg = String::from_utf8_lossy(data);
    let what = match kind & !REP_FLAG_ERROR {
        1 => "unsupported",
        2 => "forbidden by policy",
        3 => "invalid",
        4 => "platform",
        5 => "TLS required",
        6 => "unknown export",
        7 => "server shutting down",
        8 => "block size negotiation required",
        9 => "too big",
        _ => "error",
    };
    let kind_io = if kind & !REP_FLAG_ERROR == 6 {
        io::ErrorKind::NotFound
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(
        kind_io,
        format!(
            "NBD server: {what}{}{msg}",
            if msg.is_empty() { "" } else { ": " }
        ),
    )
}

/// Run the handshake for `export` on a fresh connection.
pub fn handshake<S: Read + Write>(s: &mut S, export: &str) -> io::Result<ExportInfo> {
    let magic = read_u64(s)?;
    if magic != NBDMAGIC {
        return Err(bad("not an NBD server (bad magic)"));
    }
    let magic2 = read_u64(s)?;
    if magic2 == OLDSTYLE_MAGIC {
        return Err(bad("old-style NBD servers are not supported"));
    }
    if magic2 != IHAVEOPT {
        return Err(bad("bad newstyle magic"));
    }
    let mut f = [0u8; 2];
    s.read_exact(&mut f)?;
    let hflags = u16::from_be_bytes(f);
    // "The client SHOULD NOT ... [use] any other option ... if the server
    // has not set NBD_FLAG_FIXED_NEWSTYLE" — we need option haggling.
    if hflags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(bad(
            "the server does not speak the fixed newstyle handshake",
        ));
    }
    let no_zeroes = hflags & FLAG_NO_ZEROES != 0;
    let mut cflags = FLAG_C_FIXED_NEWSTYLE;
    if no_zeroes {
        cflags |= FLAG_C_NO_ZEROES;
    }
    s.write_all(&cflags.to_be_bytes())?;

    send_option(s, OPT_STRUCTURED_REPLY, &[])?;
    let structured = loop {
        let (kind, data) = read_option_reply(s, OPT_STRUCTURED_REPLY)?;
        match kind {
            REP_ACK => break true,
            k if k & REP_FLAG_ERROR != 0 => {
                log::debug!("NBD: no structured replies: {}", option_error(k, &data));
                break false;
            }
            _ => continue,
        }
    };

    let name = export.as_bytes();
    let name_len = u32::try_from(name.len()).map_err(|_| bad("export name too long"))?;
    let mut go = Vec::new();
    go.extend_from_slice(&name_len.to_be_bytes());
    go.extend_from_slice(name);
    go.extend_from_slice(&1u16.to_be_bytes());
    go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(s, OPT_GO, &go)?;
    let mut info = ExportInfo {
        size: 0,
        flags: 0,
        structured,
        min_block: 1,
        preferred_block: 4096,
        max_block: DEFAULT_MAX_PAYLOAD,
    };
    let mut got_export = false;
    loop {
        let (kind, data) = read_option_reply(s, OPT_GO)?;
        match kind {
            REP_ACK => break,
            REP_INFO if data.len() >= 2 => match be16(&data, 0) {
                INFO_EXPORT if data.len() == 12 => {
                    info.size = be64(&data, 2);
                    info.flags = be16(&data, 10);
                    got_export = true;
                }
                INFO_BLOCK_SIZE if data.len() == 14 => {
                    info.min_block = be32(&data, 2).max(1);
                    info.preferred_block = be32(&data, 6);
                    info.max_block = be32(&data, 10);
                }
                _ => {}
            },
            REP_ERR_UNSUP => {
                // Old server: NBD_OPT_EXPORT_NAME ends the handshake with
                // the size and flags, and has no error path.
                send_option(s, OPT_EXPORT_NAME, name)?;
                info.size = read_u64(s)?;
                s.read_exact(&mut f)?;
                info.flags = u16::from_be_bytes(f);
                if !no_zeroes {
                    let mut z = [0u8; 124];
                    s.read_exact(&mut z)?;
                }
                return Ok(info);
            }
            k if k & REP_FLAG_ERROR != 0 => return Err(option_error(k, &data)),
            _ => {}
        }
    }
    if !got_export {
        return Err(bad(
            "the server finished NBD_OPT_GO without NBD_INFO_EXPORT",
        ));
    }
    Ok(info)
}

/// Say goodbye politely (NBD_CMD_DISC); errors do not matter.
pub fn disconnect(s: &mut impl Write) {
    let _ = s.write_all(&encode_request(0, CMD_DISC, 0, 0, 0));
}

/// Abort the handshake (used by tests and failed negotiations).
pub fn abort(s: &mut impl Write) {
    let _ = send_option(s, OPT_ABORT, &[]);
}
