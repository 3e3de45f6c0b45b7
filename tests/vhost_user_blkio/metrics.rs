//! Metrics in the Prometheus format, over the control socket and HTTP.

use super::*;

/// The counters and the per-queue latency histogram reach Prometheus two
/// ways: `vblk stats --prometheus` and `--metrics-listen` over HTTP (under
/// the default seccomp filter).
#[test]
fn metrics_in_the_prometheus_format_over_the_control_socket_and_http() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    // A free port: bind :0, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut d = serve(
        &img,
        &["--size", "16M", "--metrics-listen", &port.to_string()],
    );
    let mut c = Client::connect(&d.sock);
    for i in 0..10u64 {
        assert_eq!(c.write(i * 4096, &pattern(i as u8, 4096)), 0);
    }
    let out = vblk()
        .args(["stats", "--prometheus", "--socket"])
        .arg(d.ctl())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# TYPE vblk_req_out_total counter"), "{text}");
    assert!(
        text.contains("vblk_req_out_total{queue=\"0\"} 10"),
        "{text}"
    );
    assert!(text.contains("# TYPE vblk_request_latency_seconds histogram"));
    // Ten requests timed, every one inside the +Inf bucket and the count.
    assert!(text.contains("vblk_request_latency_seconds_bucket{queue=\"0\",le=\"+Inf\"} 10"));
    assert!(text.contains("vblk_request_latency_seconds_count{queue=\"0\"} 10"));
    // The same over HTTP.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
    assert!(reply.contains("Content-Type: text/plain; version=0.0.4"));
    assert!(reply.contains("vblk_request_latency_seconds_count{queue=\"0\"} 10"));
    drop(c);
    assert!(d.stop().success());
}
