//! Online resize and the write-cache byte over vhost-user, against `vblk
//! serve` with a hand-driven front end: the front end hands over a
//! back-end request channel (SET_BACKEND_REQ_FD), `vblk resize` makes the
//! daemon send CONFIG_CHANGE_MSG on it, GET_CONFIG shows the new capacity,
//! and requests past the new end fail with IOERR. SET_CONFIG may write
//! `writeback` (CONFIG_WCE) and nothing else. Also `vblk resize`'s
//! refusals (no --resize-file, the null backend, bad sizes).

use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vblk_testkit::blk::{features as vf, Request};
use vblk_testkit::vhost_user::{Driver, Options};
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserProtocolFeatures};
use vhost::vhost_user::{
    FrontendReqHandler, HandlerResult, VhostUserFrontend, VhostUserFrontendReqHandlerMut,
};

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

#[test]
fn resize_notifies_on_the_backend_channel_and_moves_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(2 * MIB)
        .unwrap();
    let daemon = start(&img, &[]);
    let mut d = Driver::connect(&daemon.sock, opts()).unwrap();
    assert!(
        d.has(VhostUserProtocolFeatures::BACKEND_REQ),
        "BACKEND_REQ offered"
    );
    let changes = channel(&d);
    assert_eq!(d.capacity(), Some(2 * MIB));
    let last = 2 * MIB / 512 - 1;
    assert_eq!(status(&mut d, &Request::write(last, &[7; 512])), OK);

    // Shrink the export: the file is left alone.
    let (ok, out) = resize(&daemon, &["1M"]);
    assert!(ok, "{out}");
    assert_eq!(changes.load(Ordering::SeqCst), 1, "CONFIG_CHANGE_MSG");
    assert_eq!(d.capacity(), Some(MIB));
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 2 * MIB);
    assert_eq!(status(&mut d, &Request::read(last, 512)), IOERR);
    assert_eq!(status(&mut d, &Request::write(MIB / 512, &[1; 512])), IOERR);
    assert_eq!(status(&mut d, &Request::read(MIB / 512 - 1, 512)), OK);

    // Growing past the file needs --resize-file; then the file grows.
    let (ok, out) = resize(&daemon, &["4M"]);
    assert!(!ok && out.contains("--resize-file"), "{out}");
    assert_eq!(changes.load(Ordering::SeqCst), 1);
    let (ok, out) = resize(&daemon, &["4M", "--resize-file"]);
    assert!(ok, "{out}");
    assert_eq!(changes.load(Ordering::SeqCst), 2);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 * MIB);
    assert_eq!(d.capacity(), Some(4 * MIB));
    assert_eq!(
        status(&mut d, &Request::write(4 * MIB / 512 - 1, &[9; 512])),
        OK
    );
    // What was written at the old end before the shrink is still there.
    let r = d.run(&Request::read(last, 512)).unwrap();
    assert_eq!((r.status, &r.data[..512]), (OK, &[7u8; 512][..]));

    // Shrinking the file too.
    let (ok, out) = resize(&daemon, &["1536K", "--resize-file"]);
    assert!(ok, "{out}");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1536 << 10);
    assert_eq!(d.capacity(), Some(1536 << 10));

    // Refused: not a multiple of 512, zero.
    for bad in ["1000", "0"] {
        let (ok, out) = resize(&daemon, &[bad]);
        assert!(!ok && out.contains("multiple"), "{bad}: {out}");
    }
    assert_eq!(changes.load(Ordering::SeqCst), 3);
    let v = daemon.stats();
    assert_eq!(v["device"]["resizes"], 3);
    assert_eq!(v["device"]["backend_channel_notifications"], 3);
    assert_eq!(v["live"]["capacity"], 1536 << 10);
}

#[test]
fn set_config_writes_only_the_writeback_byte_and_only_with_config_wce() {
    let daemon = start("null:1M", &["--write-cache", "off"]);
    let sock = daemon.sock.clone();
    let d = Driver::connect(&sock, opts()).unwrap();
    let wb = |d: &Driver| {
        let (_, b) = d
            .fe()
            .get_config(32, 1, VhostUserConfigFlags::WRITABLE, &[0])
            .unwrap();
        b[0]
    };
    assert_eq!(wb(&d), 0, "--write-cache off");
    d.fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[1])
        .unwrap();
    assert_eq!(wb(&d), 1);
    // Anything else is refused (REPLY_ACK turns it into an error here).
    assert!(d
        .fe()
        .set_config(0, VhostUserConfigFlags::WRITABLE, &[0; 8])
        .is_err());
    assert!(d
        .fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[0, 0])
        .is_err());
    assert_eq!(wb(&d), 1);
    d.fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[0])
        .unwrap();
    assert_eq!(wb(&d), 0);
    drop(d);
    // A front end without CONFIG_WCE may not write it.
    let mut o = opts();
    o.features &= !CONFIG_WCE;
    let d = Driver::connect(&sock, o).unwrap();
    assert!(d
        .fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[1])
        .is_err());
    assert_eq!(vf::VERSION_1 & d.acked, vf::VERSION_1);
}

#[test]
fn the_null_backend_resizes_but_has_no_file() {
    let daemon = start("null:1M", &[]);
    let mut d = Driver::connect(&daemon.sock, opts()).unwrap();
    let (ok, out) = resize(&daemon, &["2M", "--resize-file"]);
    assert!(!ok && out.contains("null backend has no file"), "{out}");
    let (ok, out) = resize(&daemon, &["2M"]);
    assert!(ok, "{out}");
    // No back-end channel: the front end is not told, but sees it on GET_CONFIG.
    assert_eq!(d.capacity(), Some(2 * MIB));
}

#[test]
fn a_read_only_image_is_not_resized() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ro.img");
    std::fs::File::create(&img).unwrap().set_len(MIB).unwrap();
    let daemon = start(&img, &["--readonly"]);
    let (ok, out) = resize(&daemon, &["2M", "--resize-file"]);
    assert!(!ok && out.contains("read-only"), "{out}");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), MIB);
}

#[test]
fn the_control_socket_answers_requests_and_silent_clients() {
    use std::io::{Read, Write};
    let daemon = start("null:1M", &["--write-cache", "off"]);
    let ask = |req: Option<&str>| -> serde_json::Value {
        let mut c = std::os::unix::net::UnixStream::connect(daemon.ctl()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if let Some(r) = req {
            c.write_all(r.as_bytes()).unwrap();
        }
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        serde_json::from_str(s.trim()).unwrap()
    };
    // A client that sends nothing (older `vblk stats`) still gets the counters.
    let v = ask(None);
    assert!(v.get("queues").is_some(), "{v}");
    let v = ask(Some("stats\n"));
    assert_eq!(v["live"]["capacity"], 1 << 20);
    assert_eq!(v["live"]["writeback"], false);
    for bad in [
        "resize\n",
        "resize 1M\n",
        "resize 4096 now\n",
        "shrink 4096\n",
    ] {
        let v = ask(Some(bad));
        assert_eq!(v["ok"], false, "{bad}: {v}");
    }
    let v = ask(Some("resize 4096\n"));
    assert_eq!(
        (v["ok"].clone(), v["new"].clone()),
        (true.into(), 4096.into())
    );
    assert_eq!(ask(Some("stats\n"))["live"]["generation"], 1);
}

/// SET_BACKEND_REQ_FD from a hostile front end: no fd, two fds, an fd that
/// is not a stream socket, an oversized payload, the message without
/// BACKEND_REQ negotiated, and a channel whose other end is gone when a
/// resize comes. Each is refused (answered non-zero) or drops that
/// connection; the daemon keeps serving and resizing.
#[test]
fn hostile_backend_channels_are_refused_and_the_daemon_keeps_serving() {
    use std::os::unix::net::UnixStream;
    use vblk_testkit::vhost_user::Reply;
    const SET_BACKEND_REQ_FD: u32 = 21;
    let daemon = start("null:1M", &[]);
    let sock = daemon.sock.clone();
    let d = Driver::negotiate(&sock, opts()).unwrap();
    let ack = |fds: &[i32]| {
        d.raw
            .call(SET_BACKEND_REQ_FD, true, &[], fds)
            .and_then(|r| r.u64())
    };
    let (a, b) = UnixStream::pair().unwrap();
    let (c, _c2) = UnixStream::pair().unwrap();
    let efd = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
    assert_eq!(ack(&[]), Some(1), "no fd");
    assert_eq!(ack(&[a.as_raw_fd(), c.as_raw_fd()]), Some(1), "two fds");
    assert_eq!(ack(&[efd.as_raw_fd()]), Some(1), "an eventfd");
    let (dg, _dg2) = std::os::unix::net::UnixDatagram::pair().unwrap();
    assert_eq!(ack(&[dg.as_raw_fd()]), Some(1), "a datagram socket");
    assert!(d.raw.answers(), "the connection survives refusals");
    // A good channel, then its other end goes away: the resize still works.
    assert_eq!(ack(&[a.as_raw_fd()]), Some(0));
    drop(a);
    drop(b);
    let (ok, out) = resize(&daemon, &["2M"]);
    assert!(ok, "{out}");
    assert!(d.raw.answers());
    // An oversized payload breaks the protocol: this connection goes.
    d.raw
        .send_sized(
            SET_BACKEND_REQ_FD,
            1 | 8,
            4096,
            &[0; 4096],
            &[c.as_raw_fd()],
        )
        .unwrap();
    assert!(matches!(d.raw.recv(), Reply::Closed | Reply::Timeout));
    drop(d);
    // Without BACKEND_REQ negotiated the library refuses it as any other.
    let mut o = opts();
    o.protocol &= !VhostUserProtocolFeatures::BACKEND_REQ;
    let d = Driver::negotiate(&sock, o).unwrap();
    let _ = d.raw.call(SET_BACKEND_REQ_FD, true, &[], &[c.as_raw_fd()]);
    drop(d);
    // The daemon still serves a well-behaved front end, and resizes.
    let mut d = Driver::connect(&sock, opts()).unwrap();
    let changes = channel(&d);
    let (ok, out) = resize(&daemon, &["3M"]);
    assert!(ok, "{out}");
    assert_eq!(changes.load(Ordering::SeqCst), 1);
    assert_eq!(d.capacity(), Some(3 * MIB));
    assert_eq!(status(&mut d, &Request::read(3 * MIB / 512 - 1, 512)), OK);
}

/// A front end that comes back with a previous daemon's inflight buffer
/// (SET_INFLIGHT_FD without GET_INFLIGHT_FD: QEMU reconnecting to a
/// restarted daemon) may have a guest in write-through mode, which QEMU
/// does not replay: the daemon goes write-through. A front end that got
/// its buffer from this daemon keeps the configured mode.
#[test]
fn a_reconnected_front_end_gets_write_through_until_its_guest_says() {
    use vhost::vhost_user::message::VhostUserInflight;
    let daemon = start("null:1M", &[]);
    let sock = daemon.sock.clone();
    let wb = |d: &Driver| {
        let (_, b) = d
            .fe()
            .get_config(32, 1, VhostUserConfigFlags::WRITABLE, &[0])
            .unwrap();
        b[0]
    };
    let ask = VhostUserInflight {
        mmap_size: 0,
        mmap_offset: 0,
        num_queues: 1,
        queue_size: 128,
    };
    // First connection: GET then SET, as QEMU does at the first start.
    let d = Driver::negotiate(&sock, opts()).unwrap();
    let (info, file) = d.fe().get_inflight_fd(&ask).unwrap();
    d.fe().set_inflight_fd(&info, file.as_raw_fd()).unwrap();
    assert_eq!(wb(&d), 1, "write-back as configured");
    drop(d);
    // The "restarted daemon" sees the old buffer come back.
    let d = Driver::negotiate(&sock, opts()).unwrap();
    assert_eq!(wb(&d), 1);
    d.fe().set_inflight_fd(&info, file.as_raw_fd()).unwrap();
    assert_eq!(wb(&d), 0, "write-through after a reconnect");
    // The guest's driver can choose again.
    d.fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[1])
        .unwrap();
    assert_eq!(wb(&d), 1);
}

/// The destination of a live migration: a new connection whose first ring
/// starts where the source's stopped (QEMU sends no SET_CONFIG there). The
/// guest may have chosen write-through with the source daemon: the daemon
/// goes write-through until the guest writes `writeback`. A ring that
/// starts at 0 (a guest booting) keeps the configured mode, and so does a
/// later restart on the same connection.
#[test]
fn a_ring_resumed_mid_stream_gets_write_through_until_its_guest_says() {
    let daemon = start("null:1M", &[]);
    let sock = daemon.sock.clone();
    let wb = |d: &Driver| {
        let (_, b) = d
            .fe()
            .get_config(32, 1, VhostUserConfigFlags::WRITABLE, &[0])
            .unwrap();
        b[0]
    };
    let mut d = Driver::negotiate(&sock, opts()).unwrap();
    d.send_mem_table().unwrap();
    d.start_ring(0).unwrap();
    assert_eq!(wb(&d), 1, "a booting guest: write-back as configured");
    vhost::VhostBackend::get_vring_base(&*d.fe(), 0).unwrap();
    d.start_ring(7).unwrap();
    assert_eq!(wb(&d), 1, "a restart on the same connection keeps the mode");
    drop(d);

    let mut d = Driver::negotiate(&sock, opts()).unwrap();
    d.send_mem_table().unwrap();
    assert_eq!(wb(&d), 1);
    d.start_ring(7).unwrap();
    assert_eq!(wb(&d), 0, "write-through on a migration destination");
    d.fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[1])
        .unwrap();
    assert_eq!(wb(&d), 1, "the guest's driver chooses again");
    drop(d);

    // The guest chose first, then the ring started mid-stream: its choice holds.
    let mut d = Driver::negotiate(&sock, opts()).unwrap();
    d.send_mem_table().unwrap();
    d.fe()
        .set_config(32, VhostUserConfigFlags::WRITABLE, &[1])
        .unwrap();
    d.start_ring(9).unwrap();
    assert_eq!(wb(&d), 1);
}
