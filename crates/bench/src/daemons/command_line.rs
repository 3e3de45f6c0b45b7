//! The daemons' command lines: the arguments each is started with, and the
//! same with placeholders for the report.

use super::{Config, Daemon, DISK, POLL_US};
use crate::options::{Backend, BenchOptions};

/// The arguments `daemon` is started with (after the program name).
/// `image` is the backing file (unused for null), `sock` the vhost-user
/// socket, `ctl` vblk's control socket.
pub fn args(
    daemon: Daemon,
    c: Config,
    image: &str,
    sock: &str,
    ctl: &str,
    extra: &[String],
) -> Vec<String> {
    let mut a: Vec<String> = vec![];
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    match daemon {
        Daemon::Vblk => {
            // vblk's own defaults otherwise (threads, queue size, batch,
            // polling on event rows).
            push(&["serve", "--vhost-user", sock, "--control", ctl]);
            push(&["--num-queues", &c.queues.to_string()]);
            match c.backend {
                Backend::Null => push(&["--image", &format!("null:{DISK}")]),
                Backend::File => push(&[
                    "--image",
                    image,
                    "--aio",
                    "io-uring",
                    "--cache",
                    "writeback",
                ]),
                Backend::Direct => {
                    push(&["--image", image, "--aio", "io-uring", "--cache", "none"])
                }
                Backend::Nbd => push(&["--image", &format!("nbd+unix:///?socket={image}")]),
            }
            if c.poll {
                push(&["--poll-us", &POLL_US.to_string()]);
            }
            a.extend(extra.iter().cloned());
        }
        Daemon::Qsd | Daemon::QsdIothread => {
            let iothread = daemon == Daemon::QsdIothread;
            if iothread {
                let obj = if c.poll {
                    format!("iothread,id=io0,poll-max-ns={}", POLL_US * 1000)
                } else {
                    "iothread,id=io0".to_string()
                };
                push(&["--object", &obj]);
            }
            let node = match c.backend {
                Backend::Null => {
                    format!("driver=null-co,node-name=n0,size={DISK},read-zeroes=on")
                }
                Backend::Nbd => {
                    format!("driver=nbd,node-name=n0,server.type=unix,server.path={image}")
                }
                Backend::File | Backend::Direct => format!(
                    "driver=file,node-name=n0,filename={image},aio=io_uring,cache.direct={}",
                    if c.backend == Backend::Direct {
                        "on"
                    } else {
                        "off"
                    }
                ),
            };
            push(&["--blockdev", &node]);
            push(&[
                "--export",
                &format!(
                    "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path={sock},writable=on,num-queues={}{}",
                    c.queues,
                    if iothread { ",iothread=io0" } else { "" }
                ),
            ]);
        }
    }
    a
}

/// `program args...` with placeholders for the paths, for the report.
pub fn command_line(opts: &BenchOptions, daemon: Daemon, c: Config) -> String {
    let prog = match daemon {
        Daemon::Vblk => "vblk".to_string(),
        _ => "qemu-storage-daemon".to_string(),
    };
    let a = args(daemon, c, "$IMAGE", "$SOCK", "$CTL", &opts.vblk_args);
    format!("{prog} {}", a.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(backend: Backend, poll: bool) -> Config {
        Config {
            backend,
            queues: 1,
            poll,
        }
    }

    #[test]
    fn event_rows_use_defaults() {
        let v = args(Daemon::Vblk, cfg(Backend::Null, false), "i", "s", "c", &[]).join(" ");
        assert!(!v.contains("--poll-us") && !v.contains("--threads"), "{v}");
        let q = args(
            Daemon::QsdIothread,
            cfg(Backend::Null, false),
            "i",
            "s",
            "c",
            &[],
        )
        .join(" ");
        assert!(q.contains("--object iothread,id=io0 "), "{q}");
        assert!(
            !q.contains("poll-max-ns") && q.ends_with(",iothread=io0"),
            "{q}"
        );
        let m = args(Daemon::Qsd, cfg(Backend::Null, false), "i", "s", "c", &[]).join(" ");
        assert!(!m.contains("iothread"), "{m}");
    }

    #[test]
    fn polling_rows_match_budgets() {
        let v = args(Daemon::Vblk, cfg(Backend::File, true), "i", "s", "c", &[]).join(" ");
        assert!(v.contains("--poll-us 50"), "{v}");
        let q = args(
            Daemon::QsdIothread,
            cfg(Backend::File, true),
            "i",
            "s",
            "c",
            &[],
        )
        .join(" ");
        assert!(q.contains("poll-max-ns=50000"), "{q}");
    }

    #[test]
    fn direct_is_o_direct_io_uring_on_both() {
        let extra = vec!["--batch".to_string(), "8".to_string()];
        let v = args(
            Daemon::Vblk,
            cfg(Backend::Direct, false),
            "img",
            "s",
            "c",
            &extra,
        )
        .join(" ");
        assert!(v.contains("--image img --aio io-uring --cache none"), "{v}");
        assert!(v.ends_with("--batch 8"), "{v}");
        let q = args(
            Daemon::Qsd,
            cfg(Backend::Direct, false),
            "img",
            "s",
            "c",
            &extra,
        )
        .join(" ");
        assert!(q.contains("driver=file,node-name=n0,filename=img,aio=io_uring,cache.direct=on"));
        assert!(!q.contains("--batch"));
    }
}
