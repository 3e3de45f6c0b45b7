//! `vblk bench`: vblk against qemu-storage-daemon, side by side, over
//! vhost-user-blk, driven from the host by libblkio (no VM).
//!
//! For each point (backend, queues, completion mode, read/write, queue
//! depth) it starts each daemon, runs 4 KiB random I/O and reports IOPS,
//! p50/p99 latency, the daemon's CPU time per I/O (all its threads, from
//! /proc/PID/task/*/schedstat), and for vblk the kicks and interrupts per
//! I/O from its own counters. Daemon and client are pinned to different
//! cores.

use std::fmt::Write as _;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blkio::{Blkio, Completion, ReqFlags};

/// Options from the command line.
pub struct CliOptions {
    pub quick: bool,
    pub vblk: PathBuf,
    pub out: PathBuf,
    pub fail_on_collapse: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Null,
    /// A file on tmpfs, io_uring.
    File,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Daemon {
    Vblk,
    Qsd,
}

#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub backend: Backend,
    pub queues: usize,
    pub poll: bool,
    pub write: bool,
    pub qd: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_us_per_io: f64,
    pub kicks_per_io: Option<f64>,
    pub irqs_per_io: Option<f64>,
}

const DISK: u64 = 1 << 30;
const BS: usize = 4096;

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// CPUs for the daemon and for the client.
fn pinning() -> (Vec<usize>, Vec<usize>) {
    let n = cores();
    if n >= 2 {
        (vec![0], (1..n).collect())
    } else {
        (vec![0], vec![0])
    }
}

fn pin_self(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Total CPU time of a process, all threads, in nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

struct Running {
    child: Child,
    sock: PathBuf,
    ctl: Option<PathBuf>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(
    daemon: Daemon,
    vblk: &Path,
    dir: &Path,
    backend: Backend,
    queues: usize,
    poll: bool,
) -> Result<Running, String> {
    let sock = dir.join(format!("{daemon:?}.sock"));
    let ctl = dir.join("vblk.ctl");
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&ctl);
    let file = Path::new("/dev/shm/vblk-bench.img");
    if backend == Backend::File && !file.exists() {
        let f = std::fs::File::create(file).map_err(|e| format!("{}: {e}", file.display()))?;
        f.set_len(DISK)
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    let mut cmd = match daemon {
        Daemon::Vblk => {
            let mut c = Command::new(vblk);
            c.arg("serve")
                .arg("--vhost-user")
                .arg(&sock)
                .arg("--control")
                .arg(&ctl);
            c.args(["--num-queues", &queues.to_string(), "--queue-size", "1024"]);
            // As many worker threads as the daemon has CPUs (like qsd's one
            // event loop on its one CPU).
            c.args(["--threads", &pinning().0.len().to_string()]);
            if let Ok(extra) = std::env::var("VBLK_BENCH_ARGS") {
                c.args(extra.split_whitespace());
            }
            match backend {
                Backend::Null => c.args(["--image", &format!("null:{DISK}")]),
                Backend::File => {
                    c.arg("--image")
                        .arg(file)
                        .args(["--aio", "io-uring", "--cache", "writeback"])
                }
            };
            if poll {
                c.args(["--poll-us", "50"]);
            }
            c
        }
        Daemon::Qsd => {
            let mut c = Command::new("qemu-storage-daemon");
            match backend {
                Backend::Null => c.args([
                    "--blockdev",
                    &format!("driver=null-co,node-name=n0,size={DISK},read-zeroes=on"),
                ]),
                Backend::File => c.args([
                    "--blockdev",
                    &format!(
                        "driver=file,node-name=n0,filename={},aio=io_uring,cache.direct=off",
                        file.display()
                    ),
                ]),
            };
            c.args([
                "--export",
                &format!(
                    "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path={},writable=on,num-queues={queues}",
                    sock.display()
                ),
            ]);
            c
        }
    };
    let (daemon_cpus, _) = pinning();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: pre_exec runs in the forked child before exec; it only calls
    // sched_setaffinity (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            pin_self(&daemon_cpus);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {daemon:?}: {e}"))?;
    let r = Running {
        child,
        sock: sock.clone(),
        ctl: (daemon == Daemon::Vblk).then_some(ctl),
    };
    let t = Instant::now();
    while !sock.exists() {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(format!("{daemon:?} did not create {}", sock.display()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(r)
}

fn vblk_counters(ctl: &Path) -> Option<(u64, u64, u64)> {
    let mut s = String::new();
    UnixStream::connect(ctl).ok()?.read_to_string(&mut s).ok()?;
    let v: serde_json::Value = serde_json::from_str(s.trim()).ok()?;
    let q = v.get("queues")?.as_array()?;
    let sum = |k: &str| {
        q.iter()
            .map(|x| x.get(k).and_then(|n| n.as_u64()).unwrap_or(0))
            .sum::<u64>()
    };
    Some((
        sum("notify_eventfd"),
        sum("eventfd_signals"),
        sum("used_pushes"),
    ))
}

/// Run one point against a running daemon.
fn measure(d: &Running, p: Point, secs: f64) -> Result<Figures, String> {
    let e = |x: blkio::Error| format!("libblkio: {}", x.message());
    let mut b = Blkio::new("virtio-blk-vhost-user").map_err(e)?;
    b.set_str("path", d.sock.to_str().unwrap_or_default())
        .map_err(e)?;
    b.connect().map_err(e)?;
    if p.poll {
        b.set_i32("num-queues", 0).map_err(e)?;
        b.set_i32("num-poll-queues", p.queues as i32).map_err(e)?;
    } else {
        b.set_i32("num-queues", p.queues as i32).map_err(e)?;
    }
    b.set_i32("queue-size", 512).map_err(e)?;
    let out = b.start().map_err(e)?;
    let queues = if p.poll { out.poll_queues } else { out.queues };
    let region = b.alloc_mem_region(p.queues * p.qd * BS).map_err(e)?;
    b.map_mem_region(&region).map_err(e)?;
    let base = region.addr;
    let (_, client_cpus) = pinning();
    let cap_blocks = DISK / BS as u64;

    let warm = Duration::from_millis(300);
    let run = Duration::from_secs_f64(secs);
    let barrier = std::sync::Barrier::new(p.queues + 1);
    let results: Vec<(u64, Vec<u32>)> = std::thread::scope(|s| {
        let mut hs = vec![];
        for (qi, mut q) in queues.into_iter().enumerate() {
            let cpus = client_cpus.clone();
            let barrier = &barrier;
            hs.push(s.spawn(move || {
                pin_self(&cpus);
                let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ (qi as u64 + 1);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng % cap_blocks) * BS as u64
                };
                let mut started = vec![Instant::now(); p.qd];
                let submit = |q: &mut blkio::Blkioq, slot: usize, off: u64| {
                    let buf = (base + (qi * p.qd + slot) * BS) as *mut u8;
                    if p.write {
                        q.write(off, buf, BS, slot, ReqFlags::empty());
                    } else {
                        q.read(off, buf, BS, slot, ReqFlags::empty());
                    }
                };
                for (slot, t) in started.iter_mut().enumerate() {
                    *t = Instant::now();
                    submit(&mut q, slot, next());
                }
                let mut comps: Vec<MaybeUninit<Completion>> =
                    (0..p.qd).map(|_| MaybeUninit::uninit()).collect();
                let mut lat: Vec<u32> = Vec::with_capacity(1 << 20);
                let mut count = 0u64;
                let t0 = Instant::now();
                let mut measuring = false;
                let mut t_meas = t0;
                loop {
                    let now = Instant::now();
                    if !measuring && now - t0 >= warm {
                        barrier.wait();
                        measuring = true;
                        t_meas = Instant::now();
                    }
                    if measuring && now - t_meas >= run {
                        break;
                    }
                    let mut timeout = Duration::from_secs(5);
                    let n = match q.do_io(
                        &mut comps,
                        1,
                        if p.poll { None } else { Some(&mut timeout) },
                        None,
                    ) {
                        Ok(n) => n,
                        Err(_) => break,
                    };
                    let done = Instant::now();
                    for c in &comps[..n] {
                        // SAFETY: do_io initialised the first n completions.
                        let c = unsafe { c.assume_init_ref() };
                        let slot = c.user_data;
                        if measuring {
                            count += 1;
                            lat.push(
                                (done - started[slot]).as_nanos().min(u128::from(u32::MAX)) as u32
                            );
                        }
                        started[slot] = Instant::now();
                        submit(&mut q, slot, next());
                    }
                }
                barrier.wait();
                // Drain what is still in flight.
                let mut left = p.qd;
                while left > 0 {
                    let mut timeout = Duration::from_secs(5);
                    match q.do_io(
                        &mut comps,
                        1,
                        if p.poll { None } else { Some(&mut timeout) },
                        None,
                    ) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
                (count, lat)
            }));
        }
        // Sample the daemon between the barriers.
        barrier.wait();
        let cpu0 = cpu_ns(d.child.id());
        let c0 = d.ctl.as_deref().and_then(vblk_counters);
        let t0 = Instant::now();
        barrier.wait();
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu1 = cpu_ns(d.child.id());
        let c1 = d.ctl.as_deref().and_then(vblk_counters);
        let mut res: Vec<(u64, Vec<u32>)> = hs
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        res.push((cpu1.saturating_sub(cpu0), vec![]));
        res.push(((elapsed * 1e9) as u64, vec![]));
        if let (Some(a), Some(b)) = (c0, c1) {
            res.push((b.0 - a.0, vec![]));
            res.push((b.1 - a.1, vec![]));
            res.push((b.2 - a.2, vec![]));
        }
        res
    });
    drop(b);
    let (ios, mut lat): (u64, Vec<u32>) =
        results[..p.queues]
            .iter()
            .fold((0, vec![]), |(n, mut l), (c, x)| {
                l.extend_from_slice(x);
                (n + c, l)
            });
    let cpu = results[p.queues].0 as f64;
    let wall = results[p.queues + 1].0 as f64 / 1e9;
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |&x| f64::from(x) / 1e3)
    };
    let ios_f = ios.max(1) as f64;
    let mut f = Figures {
        iops: ios as f64 / wall,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        cpu_us_per_io: cpu / 1e3 / ios_f,
        ..Default::default()
    };
    if results.len() >= p.queues + 5 {
        let used = results[p.queues + 4].0.max(1) as f64;
        f.kicks_per_io = Some(results[p.queues + 2].0 as f64 / used);
        f.irqs_per_io = Some(results[p.queues + 3].0 as f64 / used);
    }
    Ok(f)
}

pub struct Row {
    pub point: Point,
    pub vblk: Figures,
    pub qsd: Figures,
}

/// A daemon configuration (backend, queues, polling) and its (write, QD) points.
type Group = (Backend, usize, bool, Vec<(bool, usize)>);

fn points(quick: bool) -> Vec<Group> {
    if quick {
        return vec![
            (
                Backend::Null,
                1,
                false,
                vec![(false, 1), (false, 32), (true, 32)],
            ),
            (Backend::Null, 1, true, vec![(false, 1), (false, 32)]),
            (Backend::File, 1, false, vec![(false, 32), (true, 32)]),
        ];
    }
    let mut v = vec![];
    for backend in [Backend::Null, Backend::File] {
        for queues in [1, 2] {
            for poll in [false, true] {
                let mut pts = vec![];
                for write in [false, true] {
                    for qd in [1, 32, 128] {
                        pts.push((write, qd));
                    }
                }
                v.push((backend, queues, poll, pts));
            }
        }
    }
    v
}

/// Run the benchmark; returns the rows.
pub fn run(opts: &CliOptions) -> Result<Vec<Row>, String> {
    let have_qsd = || {
        Command::new("qemu-storage-daemon")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have_qsd() {
        // Debian: bookworm-backports' qemu-utils ships it; plain bookworm has
        // it in qemu-system-common.
        eprintln!("bench: qemu-storage-daemon missing: installing it with apt-get");
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        for pkg in ["qemu-utils", "qemu-system-common"] {
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-qq", pkg])
                .status();
            if have_qsd() {
                break;
            }
        }
        if !have_qsd() {
            return Err("qemu-storage-daemon is not installed and apt-get could not install it (qemu-utils, qemu-system-common)".into());
        }
    }
    let dir = std::env::temp_dir().join(format!("vblk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let secs = if opts.quick { 1.5 } else { 3.0 };
    let (dc, cc) = pinning();
    eprintln!("bench: daemon pinned to CPU {dc:?}, client to CPU {cc:?}; {secs} s per point after a 0.3 s warm-up");
    let mut rows = vec![];
    let only = std::env::var("VBLK_BENCH_ONLY").ok();
    for (backend, queues, poll, pts) in points(opts.quick) {
        if let Some(o) = &only {
            if !format!("{backend:?}").eq_ignore_ascii_case(o) {
                continue;
            }
        }
        let mut figs: Vec<[Figures; 2]> = vec![Default::default(); pts.len()];
        for (di, daemon) in [Daemon::Vblk, Daemon::Qsd].into_iter().enumerate() {
            let d = start(daemon, &opts.vblk, &dir, backend, queues, poll)?;
            for (i, &(write, qd)) in pts.iter().enumerate() {
                let p = Point {
                    backend,
                    queues,
                    poll,
                    write,
                    qd,
                };
                figs[i][di] = measure(&d, p, secs).map_err(|e| format!("{daemon:?} {p:?}: {e}"))?;
            }
        }
        for (i, &(write, qd)) in pts.iter().enumerate() {
            let [v, q] = figs[i].clone();
            let row = Row {
                point: Point {
                    backend,
                    queues,
                    poll,
                    write,
                    qd,
                },
                vblk: v,
                qsd: q,
            };
            eprintln!("{}", format_row(&row));
            rows.push(row);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file("/dev/shm/vblk-bench.img");
    Ok(rows)
}

fn label(p: &Point) -> String {
    format!(
        "{} | {} | {} | {} | {}",
        if p.backend == Backend::Null {
            "null"
        } else {
            "file (tmpfs, io_uring)"
        },
        p.queues,
        if p.poll { "poll" } else { "event" },
        if p.write { "randwrite" } else { "randread" },
        p.qd
    )
}

fn opt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

fn format_row(r: &Row) -> String {
    format!(
        "| {} | {:.0} | {:.0} | **{:.2}** | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} | {:.2} | **{:.2}** | {} | {} |",
        label(&r.point),
        r.vblk.iops / 1e3,
        r.qsd.iops / 1e3,
        r.vblk.iops / r.qsd.iops.max(1.0),
        r.vblk.p50_us,
        r.vblk.p99_us,
        r.qsd.p50_us,
        r.qsd.p99_us,
        r.vblk.cpu_us_per_io,
        r.qsd.cpu_us_per_io,
        r.vblk.cpu_us_per_io / r.qsd.cpu_us_per_io.max(1e-9),
        opt(r.vblk.kicks_per_io),
        opt(r.vblk.irqs_per_io),
    )
}

pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| backend | queues | completion | workload | QD | vblk kIOPS | qsd kIOPS | IOPS ratio | vblk p50/p99 µs | qsd p50/p99 µs | vblk CPU µs/IO | qsd CPU µs/IO | CPU ratio | vblk kicks/IO | vblk irqs/IO |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(s, "{}", format_row(r));
    }
    s
}

/// An SVG: IOPS (left) and daemon CPU per I/O (right) against QD, for the
/// single-queue event-driven null-backend random reads of both daemons.
pub fn svg(rows: &[Row]) -> String {
    let sel: Vec<&Row> = rows
        .iter()
        .filter(|r| r.point.backend == Backend::Null && r.point.queues == 1 && !r.point.write)
        .collect();
    let (w, h, pad) = (900.0, 360.0, 50.0);
    let pw = (w - 3.0 * pad) / 2.0;
    let ph = h - 2.0 * pad;
    let mut s = format!("<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n");
    type Getter = Box<dyn Fn(&Figures) -> f64>;
    let panels: [(&str, Getter); 2] = [
        (
            "kIOPS (4 KiB randread, null, 1 queue)",
            Box::new(|f: &Figures| f.iops / 1e3),
        ),
        (
            "daemon CPU µs per I/O",
            Box::new(|f: &Figures| f.cpu_us_per_io),
        ),
    ];
    for (pi, (title, get)) in panels.iter().enumerate() {
        let x0 = pad + pi as f64 * (pw + pad);
        let max = sel
            .iter()
            .flat_map(|r| [get(&r.vblk), get(&r.qsd)])
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let _ = writeln!(s, "<text x='{}' y='{}'>{title}</text>", x0, pad - 15.0);
        let _ = writeln!(
            s,
            "<rect x='{x0}' y='{pad}' width='{pw}' height='{ph}' fill='none' stroke='#888'/>"
        );
        for k in 0..=4 {
            let v = max * k as f64 / 4.0;
            let y = pad + ph - ph * k as f64 / 4.0;
            let _ = writeln!(
                s,
                "<text x='{}' y='{}' text-anchor='end' fill='#555'>{v:.1}</text>",
                x0 - 4.0,
                y + 4.0
            );
        }
        for (series, color) in [("vblk", "#1f77b4"), ("qsd", "#d62728")] {
            for poll in [false, true] {
                let pts: Vec<(f64, f64)> = sel
                    .iter()
                    .filter(|r| r.point.poll == poll)
                    .map(|r| {
                        (
                            r.point.qd as f64,
                            get(if series == "vblk" { &r.vblk } else { &r.qsd }),
                        )
                    })
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let xmax = (128f64).log2();
                let path: Vec<String> = pts
                    .iter()
                    .map(|(qd, v)| {
                        format!(
                            "{:.1},{:.1}",
                            x0 + pw * (qd.log2() / xmax).clamp(0.0, 1.0),
                            pad + ph - ph * v / max
                        )
                    })
                    .collect();
                let dash = if poll { " stroke-dasharray='5,4'" } else { "" };
                let _ = writeln!(
                    s,
                    "<polyline points='{}' fill='none' stroke='{color}' stroke-width='2'{dash}/>",
                    path.join(" ")
                );
                for p in &path {
                    let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                    let _ = writeln!(s, "<circle cx='{x}' cy='{y}' r='3' fill='{color}'/>");
                }
            }
        }
        for qd in [1.0f64, 32.0, 128.0] {
            let x = x0 + pw * qd.log2() / 7.0;
            let _ = writeln!(
                s,
                "<text x='{x}' y='{}' text-anchor='middle' fill='#555'>QD{qd}</text>",
                pad + ph + 15.0
            );
        }
    }
    let _ = writeln!(s, "<text x='{pad}' y='{}'><tspan fill='#1f77b4'>— vblk</tspan>  <tspan fill='#d62728'>— qemu-storage-daemon</tspan>  (solid: event-driven, dashed: polling)</text>", h - 10.0);
    s.push_str("</svg>\n");
    s
}

/// Points where vblk falls under half of qemu-storage-daemon's IOPS.
pub fn collapses(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.vblk.iops < 0.5 * r.qsd.iops)
        .map(|r| {
            format!(
                "{}: vblk {:.0} vs qsd {:.0} IOPS",
                label(&r.point),
                r.vblk.iops,
                r.qsd.iops
            )
        })
        .collect()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qsd = Command::new("qemu-storage-daemon")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    format!("{} CPUs ({cpu}), Linux {}, {qsd}", cores(), kernel.trim())
}

/// The `vblk bench` command.
pub fn main(opts: CliOptions) -> Result<(), String> {
    let rows = run(&opts)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let t = table(&rows);
    let (dc, cc) = pinning();
    let report = format!(
        "Machine: {}\nDaemon pinned to CPU {dc:?}, client (libblkio virtio-blk-vhost-user) to CPU {cc:?}. 4 KiB random I/O over 1 GiB.\nCPU µs/IO = the daemon's CPU time (all threads) / I/Os completed. Ratios are vblk / qemu-storage-daemon.\n\n{t}",
        machine()
    );
    println!("{report}");
    std::fs::write(opts.out.join("bench.md"), &report).map_err(|e| e.to_string())?;
    std::fs::write(opts.out.join("bench.svg"), svg(&rows)).map_err(|e| e.to_string())?;
    let c = collapses(&rows);
    if !c.is_empty() {
        eprintln!(
            "bench: vblk collapsed below half of qemu-storage-daemon at:\n  {}",
            c.join("\n  ")
        );
        if opts.fail_on_collapse {
            return Err(format!("{} collapsed point(s)", c.len()));
        }
    }
    eprintln!(
        "bench: report in {}/bench.md and bench.svg",
        opts.out.display()
    );
    Ok(())
}
