//! The control socket (`vblk serve --control SOCKET`) and its clients
//! (`vblk stats`, `vblk resize`).
//!
//! Protocol: one connection, one request line, one JSON answer, then the
//! daemon closes the connection.
//!
//! * `stats` → the counters (`Stats::to_json`) and, under `live`, the
//!   configuration as it is now (capacity, writeback, generation);
//! * `resize BYTES [resize-file]` → `{"ok":true,"old":N,"new":N,"file":B}`
//!   or `{"ok":false,"error":"..."}`.
//!
//! A client that sends nothing within [`REQUEST_WAIT`] gets the counters
//! (what every connection got before there were requests).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use vblk_backend::parse_size;
use vblk_device::BlkDevice;

/// How long the daemon waits for a request line before it answers with
/// the counters.
const REQUEST_WAIT: Duration = Duration::from_millis(300);
/// Longest request line.
const MAX_REQUEST: usize = 256;

/// Serve the control socket. The path is taken like the vhost-user
/// socket's: only a stale socket is replaced. The returned socket removes
/// its file when dropped, if the file is still ours.
pub fn start(path: &Path, device: Arc<BlkDevice>) -> Result<vblk_socket::BoundSocket, String> {
    let bound = vblk_socket::BoundSocket::bind(path).map_err(|e| format!("--control: {e}"))?;
    let listener = bound
        .listener()
        .try_clone()
        .and_then(|l| l.set_nonblocking(false).map(|()| l))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    crate::spawn_control_thread("control", move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let answer = answer(&device, &read_request(&mut conn));
            let _ = conn.write_all(answer.to_string().as_bytes());
            let _ = conn.write_all(b"\n");
        }
    })?;
    Ok(bound)
}

/// The request line, or "" when the client sent none in time.
fn read_request(conn: &mut UnixStream) -> String {
    let _ = conn.set_read_timeout(Some(REQUEST_WAIT));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64];
    while buf.len() < MAX_REQUEST && !buf.contains(&b'\n') {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
    String::from_utf8_lossy(line).trim().to_string()
}

fn answer(device: &BlkDevice, req: &str) -> serde_json::Value {
    let words: Vec<&str> = req.split_whitespace().collect();
    match words.as_slice() {
        [] | ["stats"] => {
            let mut v = device.stats().to_json();
            if let Some(o) = v.as_object_mut() {
                let live = device.live();
                o.insert(
                    "live".into(),
                    serde_json::json!({
                        "capacity": live.capacity(),
                        "writeback": live.writeback(),
                        "generation": live.generation(),
                    }),
                );
            }
            v
        }
        ["resize", size, rest @ ..] => {
            let resize_file = match rest {
                [] => false,
                ["resize-file"] => true,
                _ => return refuse(format!("resize: unexpected '{}'", rest.join(" "))),
            };
            let Ok(size) = size.parse::<u64>() else {
                return refuse(format!("resize: '{size}' is not a size in bytes"));
            };
            match device.resize(size, resize_file) {
                Ok(r) => serde_json::json!({
                    "ok": true, "old": r.old, "new": r.new, "file": r.file,
                }),
                Err(e) => refuse(e),
            }
        }
        _ => refuse(format!("unknown request '{req}'")),
    }
}

fn refuse(error: String) -> serde_json::Value {
    log::warn!("control: {error}");
    serde_json::json!({ "ok": false, "error": error })
}

/// Send one request line to a daemon's control socket; its JSON answer.
pub fn request(socket: &Path, line: &str, timeout: Duration) -> Result<serde_json::Value, String> {
    let name = socket.display();
    let mut conn =
        UnixStream::connect(socket).map_err(|e| format!("{name}: cannot connect: {e}"))?;
    conn.set_read_timeout(Some(timeout)).ok();
    conn.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("{name}: {e}"))?;
    let mut s = String::new();
    conn.read_to_string(&mut s)
        .map_err(|e| format!("{name}: {e}"))?;
    serde_json::from_str(s.trim()).map_err(|e| format!("{name}: bad answer: {e}"))
}

#[derive(Args)]
pub struct StatsArgs {
    /// The daemon's control socket (`vblk serve --control`).
    #[arg(long, value_name = "SOCKET")]
    socket: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Print the Prometheus text exposition format instead of a table.
    #[arg(long)]
    prometheus: bool,
}

/// `vblk stats`.
pub fn stats(a: StatsArgs) -> Result<(), String> {
    let v = request(&a.socket, "stats", Duration::from_secs(5))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else if a.prometheus {
        print!("{}", vblk_device::stats::render_prometheus(&v));
    } else {
        if let Some(l) = v.get("live") {
            let n = |k: &str| l.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            let wb = l.get("writeback").and_then(|x| x.as_bool()) == Some(true);
            println!(
                "capacity {} bytes ({} sectors), write cache {}, config generation {}",
                n("capacity"),
                n("capacity") / 512,
                if wb { "write-back" } else { "write-through" },
                n("generation")
            );
        }
        print!("{}", vblk_device::stats::render_table(&v));
    }
    Ok(())
}

#[derive(Args)]
pub struct ResizeArgs {
    /// The daemon's control socket (`vblk serve --control`).
    #[arg(long, value_name = "SOCKET")]
    socket: PathBuf,
    /// The new size (e.g. 2G, 512M, or bytes; a multiple of the logical block size).
    size: String,
    /// Also grow or shrink the image file (shrinking loses the data past
    /// the new end). Without it the file is never changed: the export
    /// shrinks, or grows up to what the file (or block device) holds.
    #[arg(long)]
    resize_file: bool,
}

/// `vblk resize`: ask the daemon, print what it did.
pub fn resize(a: ResizeArgs) -> Result<(), String> {
    let size = parse_size(&a.size).map_err(|e| format!("SIZE: {e}"))?;
    let line = if a.resize_file {
        format!("resize {size} resize-file")
    } else {
        format!("resize {size}")
    };
    // A resize that shrinks the file waits for in-flight I/O (up to 10 s),
    // and each front end acknowledges the notification.
    let v = request(&a.socket, &line, Duration::from_secs(60))?;
    if v.get("ok").and_then(|b| b.as_bool()) == Some(true) {
        let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        println!(
            "resized from {} to {} bytes ({} sectors){}",
            n("old"),
            n("new"),
            n("new") / 512,
            if a.resize_file {
                ", image file too"
            } else {
                ""
            }
        );
        Ok(())
    } else {
        let e = v.get("error").and_then(|e| e.as_str()).unwrap_or("refused");
        Err(format!("resize refused: {e}"))
    }
}
