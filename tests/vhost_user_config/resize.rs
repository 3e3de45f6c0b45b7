//! `vblk resize`: CONFIG_CHANGE_MSG, the moved end, refusals; the control socket's requests.

use std::time::Duration;

use super::*;

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
