//! A scripted NBD server (test double): a correct handshake with the
//! flags a test chooses, then a `Script` that answers each request as it
//! likes — correctly, or with bad magic, unknown cookies, short replies,
//! chunks outside the request, oversize lengths.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use vblk_backend_nbd::proto::*;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Req {
    pub flags: u16,
    pub cmd: u16,
    pub cookie: u64,
    pub offset: u64,
    pub len: u32,
    pub data: Vec<u8>,
}

/// What the script does with a request: write raw bytes back (anything),
/// close the connection, or both (a reply cut short by a hang-up).
pub enum Answer {
    Bytes(Vec<u8>),
    Close,
    BytesThenClose(Vec<u8>),
}

pub type Script = Arc<dyn Fn(&Req, &mut Vec<u8>) -> Answer + Send + Sync>;

pub struct Double {
    pub path: PathBuf,
    pub log: Arc<Mutex<Vec<Req>>>,
    _dir: tempfile::TempDir,
}

pub fn simple(cookie: u64, error: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&error.to_be_bytes());
    b.extend_from_slice(&cookie.to_be_bytes());
    b
}

pub fn chunk(cookie: u64, flags: u16, kind: u16, payload: &[u8]) -> Vec<u8> {
    chunk_len(cookie, flags, kind, payload.len() as u32, payload)
}

/// A chunk whose header claims `len` bytes whatever the payload is.
pub fn chunk_len(cookie: u64, flags: u16, kind: u16, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&cookie.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

pub fn offset_data(cookie: u64, flags: u16, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut p = offset.to_be_bytes().to_vec();
    p.extend_from_slice(data);
    chunk(cookie, flags, REPLY_TYPE_OFFSET_DATA, &p)
}

/// The well-behaved answer (simple replies unless `structured`), over
/// `disk`.
pub fn correct(r: &Req, disk: &mut [u8], structured: bool) -> Answer {
    let range = r.offset as usize..r.offset as usize + r.len as usize;
    match r.cmd {
        CMD_READ => {
            let data = disk[range].to_vec();
            if structured {
                Answer::Bytes(offset_data(r.cookie, REPLY_FLAG_DONE, r.offset, &data))
            } else {
                let mut b = simple(r.cookie, 0);
                b.extend_from_slice(&data);
                Answer::Bytes(b)
            }
        }
        CMD_WRITE => {
            disk[range].copy_from_slice(&r.data);
            Answer::Bytes(simple(r.cookie, 0))
        }
        CMD_WRITE_ZEROES | CMD_TRIM => {
            disk[range].fill(0);
            Answer::Bytes(simple(r.cookie, 0))
        }
        _ => Answer::Bytes(simple(r.cookie, 0)),
    }
}

fn opt_reply(s: &mut UnixStream, opt: u32, kind: u32, data: &[u8]) {
    let mut b = Vec::new();
    b.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    s.write_all(&b).unwrap();
}

fn serve(
    mut s: UnixStream,
    size: u64,
    flags: u16,
    structured: bool,
    script: &Script,
    disk: &Mutex<Vec<u8>>,
    log: &Mutex<Vec<Req>>,
) -> std::io::Result<()> {
    s.write_all(&NBDMAGIC.to_be_bytes())?;
    s.write_all(&IHAVEOPT.to_be_bytes())?;
    s.write_all(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes())?;
    let mut cf = [0u8; 4];
    s.read_exact(&mut cf)?;
    loop {
        let mut h = [0u8; 16];
        s.read_exact(&mut h)?;
        let opt = be32(&h, 8);
        let mut data = vec![0u8; be32(&h, 12) as usize];
        s.read_exact(&mut data)?;
        match opt {
            OPT_STRUCTURED_REPLY if structured => opt_reply(&mut s, opt, REP_ACK, &[]),
            OPT_GO => {
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&(flags | TF_HAS_FLAGS).to_be_bytes());
                opt_reply(&mut s, opt, REP_INFO, &info);
                opt_reply(&mut s, opt, REP_ACK, &[]);
                break;
            }
            _ => opt_reply(&mut s, opt, REP_ERR_UNSUP, &[]),
        }
    }
    loop {
        let mut h = [0u8; 28];
        s.read_exact(&mut h)?;
        let mut r = Req {
            flags: be16(&h, 4),
            cmd: be16(&h, 6),
            cookie: be64(&h, 8),
            offset: be64(&h, 16),
            len: be32(&h, 24),
            data: vec![],
        };
        if r.cmd == CMD_DISC {
            return Ok(());
        }
        if r.cmd == CMD_WRITE {
            r.data = vec![0u8; r.len as usize];
            s.read_exact(&mut r.data)?;
        }
        log.lock().unwrap().push(r.clone());
        let a = script(&r, &mut disk.lock().unwrap());
        match a {
            Answer::Bytes(b) => s.write_all(&b)?,
            Answer::Close => return Ok(()),
            Answer::BytesThenClose(b) => {
                s.write_all(&b)?;
                return Ok(());
            }
        }
    }
}

impl Double {
    /// Start serving a `size`-byte disk (zeroes) on a UNIX socket; each
    /// connection gets the same handshake and script (reconnects too).
    pub fn start(size: u64, flags: u16, structured: bool, script: Script) -> Double {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("double.sock");
        let l = UnixListener::bind(&path).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let disk = Arc::new(Mutex::new(vec![0u8; size as usize]));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let (script, disk, log) = (script.clone(), disk.clone(), log2.clone());
                std::thread::spawn(move || {
                    let _ = serve(c, size, flags, structured, &script, &disk, &log);
                });
            }
        });
        Double {
            path,
            log,
            _dir: dir,
        }
    }

    pub fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.path.display())
    }
}
