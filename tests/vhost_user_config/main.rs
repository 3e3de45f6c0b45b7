//! Online resize and the write-cache byte over vhost-user, against `vblk
//! serve` with a hand-driven front end: the front end hands over a
//! back-end request channel (SET_BACKEND_REQ_FD), `vblk resize` makes the
//! daemon send CONFIG_CHANGE_MSG on it, GET_CONFIG shows the new capacity,
//! and requests past the new end fail with IOERR. SET_CONFIG may write
//! `writeback` (CONFIG_WCE) and nothing else. Also `vblk resize`'s
//! refusals (no --resize-file, the null backend, bad sizes).

mod hostile;
mod resize;
mod write_cache;

use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use vblk_testkit::blk::Request;
use vblk_testkit::vhost_user::{Driver, Options};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{
    FrontendReqHandler, HandlerResult, VhostUserFrontend, VhostUserFrontendReqHandlerMut,
};

#[path = "../common/mod.rs"]
mod common;
use common::{vblk, Daemon};

const MIB: u64 = 1 << 20;
const CONFIG_WCE: u64 = 1 << 11;
const OK: u8 = 0;
const IOERR: u8 = 1;

/// `vblk serve --image <image> --vhost-user ... --control ... <extra>`.
fn start(image: impl AsRef<std::ffi::OsStr>, extra: &[&str]) -> Daemon {
    Daemon::vhost_user(image).control().args(extra).start()
}

/// `vblk resize`: (success, stdout + stderr).
fn resize(daemon: &Daemon, args: &[&str]) -> (bool, String) {
    let out = vblk()
        .args(["resize", "--socket"])
        .arg(daemon.ctl())
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Counts CONFIG_CHANGE_MSG.
#[derive(Default)]
struct Changes(Arc<AtomicUsize>);

impl VhostUserFrontendReqHandlerMut for Changes {
    fn handle_config_change(&mut self) -> HandlerResult<u64> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(0)
    }
}

/// Hand the daemon a back-end channel and serve it on a thread; returns
/// the counter of configuration changes.
fn channel(d: &Driver) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    let mut h = FrontendReqHandler::new(Arc::new(Mutex::new(Changes(n.clone())))).unwrap();
    h.set_reply_ack_flag(true);
    let tx = h.get_tx_raw_fd();
    d.fe().set_backend_request_fd(&FdRef(tx)).unwrap();
    std::thread::spawn(move || while h.handle_request().is_ok() {});
    n
}

struct FdRef(i32);
impl AsRawFd for FdRef {
    fn as_raw_fd(&self) -> i32 {
        self.0
    }
}

fn opts() -> Options {
    let mut o = Options::default();
    o.features |= CONFIG_WCE;
    o.protocol |= VhostUserProtocolFeatures::BACKEND_REQ;
    o
}

fn status(d: &mut Driver, r: &Request) -> u8 {
    d.run(r).unwrap().status
}
