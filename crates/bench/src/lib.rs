//! `vblk bench`: vblk against qemu-storage-daemon, side by side, over
//! vhost-user-blk, driven from the host by libblkio (no VM).
//!
//! For each point (backend, queues, completion mode, read/write, queue
//! depth) it starts each daemon, runs 4 KiB random I/O and reports IOPS,
//! p50/p99 latency, the daemon's CPU time per I/O (utime+stime of the whole
//! process, all threads, over the measured interval), and for vblk the kicks
//! and interrupts per I/O from its own counters (`--control` socket; the
//! columns stay empty if it is absent). Daemon and client are pinned to
//! different cores.
//!
//! The entry point for the command line is [`run`] with [`BenchOptions`];
//! [`Report`] renders the markdown table and the SVG plot, and
//! [`collapses`] lists the points where vblk fell under half of
//! qemu-storage-daemon's IOPS (what CI fails on).

use std::fmt::Write as _;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blkio::{Blkio, Completion, ReqFlags};

/// What to run. No command-line parsing here: the `vblk bench` subcommand
/// fills this in.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The short subset (about a minute).
    pub quick: bool,
    /// The vblk binary to benchmark.
    pub vblk: PathBuf,
    /// The qemu-storage-daemon binary (found in PATH by default).
    pub qsd: PathBuf,
    /// Seconds measured per point (after a 0.3 s warm-up); default 1.5
    /// (quick) or 3.
    pub secs: Option<f64>,
    /// Only these backends (empty: all of the selected set).
    pub backends: Vec<Backend>,
    /// Only points whose table label contains this, e.g.
    /// `"writeback | 1 | poll"` or `"randread | 128"`.
    pub filter: Option<String>,
    /// CPUs for the daemons and for the client (default: CPU 0 for the
    /// daemon, every other CPU for the client).
    pub daemon_cpus: Option<Vec<usize>>,
    pub client_cpus: Option<Vec<usize>>,
    /// Extra arguments for `vblk serve`.
    pub vblk_args: Vec<String>,
    /// Progress on stderr.
    pub verbose: bool,
    /// Install qemu-storage-daemon with apt-get if it is missing.
    pub install_qsd: bool,
    /// Serve qsd's export from an iothread (`poll-max-ns` 0 on event-driven
    /// rows, the polling budget on polling rows) instead of its main loop
    /// (which cannot poll). Default: yes.
    pub qsd_iothread: bool,
}

impl BenchOptions {
    pub fn new(vblk: impl Into<PathBuf>) -> Self {
        BenchOptions {
            quick: false,
            vblk: vblk.into(),
            qsd: PathBuf::from("qemu-storage-daemon"),
            secs: None,
            backends: Vec::new(),
            filter: None,
            daemon_cpus: None,
            client_cpus: None,
            vblk_args: Vec::new(),
            verbose: true,
            install_qsd: true,
            qsd_iothread: true,
        }
    }
}

/// Options of the `vblk bench` subcommand (kept for `src/main.rs`).
pub struct CliOptions {
    pub quick: bool,
    pub vblk: PathBuf,
    pub out: PathBuf,
    pub fail_on_collapse: bool,
}

impl From<&CliOptions> for BenchOptions {
    /// Also reads `VBLK_BENCH_ONLY` (a backend name: null, file, direct) and
    /// `VBLK_BENCH_ARGS` (extra `vblk serve` arguments) from the environment.
    fn from(c: &CliOptions) -> Self {
        let mut o = BenchOptions::new(&c.vblk);
        o.quick = c.quick;
        if let Ok(only) = std::env::var("VBLK_BENCH_ONLY") {
            o.backends = only.split(',').filter_map(Backend::parse).collect();
        }
        if let Ok(extra) = std::env::var("VBLK_BENCH_ARGS") {
            o.vblk_args = extra.split_whitespace().map(String::from).collect();
        }
        o
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    /// No storage: vblk `null:1G`, qsd `null-co,read-zeroes=on`.
    Null,
    /// A 1 GiB file on tmpfs through the page cache, io_uring.
    File,
    /// The same file with `O_DIRECT` (vblk `--cache none`, qsd
    /// `cache.direct=on`), io_uring.
    Direct,
}

impl Backend {
    pub fn parse(s: &str) -> Option<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "null" => Some(Backend::Null),
            "file" | "writeback" => Some(Backend::File),
            "direct" | "none" | "file-direct" => Some(Backend::Direct),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Backend::Null => "null",
            Backend::File => "file, writeback",
            Backend::Direct => "file, O_DIRECT",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Daemon {
    Vblk,
    Qsd,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub backend: Backend,
    pub queues: usize,
    pub poll: bool,
    pub write: bool,
    pub qd: usize,
}

/// What one daemon achieved at one point.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Daemon CPU time (all threads) per I/O.
    pub cpu_us_per_io: f64,
    /// Daemon CPU time / wall time (1.0 = one core busy).
    pub daemon_util: f64,
    /// Client CPU time / wall time, summed over its threads.
    pub client_util: f64,
    /// vblk's kicks (`notify_eventfd`) per I/O.
    pub kicks_per_io: Option<f64>,
    /// vblk's interrupts (`interrupts`) per I/O.
    pub irqs_per_io: Option<f64>,
    /// Requests that completed with an error (should be 0), and the first.
    pub failed: u64,
    pub first_failure: Option<String>,
    /// CPU time used by everything else on the machine (other processes,
    /// steal) during the interval, in CPUs: a measurement taken while this
    /// is high is repeated.
    pub other_load: f64,
}

/// One point, both daemons.
#[derive(Clone, Debug)]
pub struct Row {
    pub point: Point,
    pub vblk: Figures,
    pub qsd: Figures,
}

impl Row {
    pub fn iops_ratio(&self) -> f64 {
        self.vblk.iops / self.qsd.iops.max(1.0)
    }

    pub fn cpu_ratio(&self) -> f64 {
        self.vblk.cpu_us_per_io / self.qsd.cpu_us_per_io.max(1e-9)
    }
}

/// The result of [`run`].
#[derive(Clone, Debug)]
pub struct Report {
    pub rows: Vec<Row>,
    /// CPUs, model, kernel, qemu-storage-daemon version.
    pub machine: String,
    pub daemon_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    pub secs: f64,
    pub quick: bool,
}

const BS: usize = 4096;
const DISK: u64 = 1 << 30;
const WARMUP: Duration = Duration::from_millis(300);
/// Client queue size: without indirect descriptors a request takes 3
/// descriptors, so QD128 needs at least 384.
const CLIENT_QUEUE_SIZE: i32 = 512;
/// vblk `--poll-us` and qsd iothread `poll-max-ns` on polling rows.
const POLL_US: u64 = 50;

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// CPUs for the daemon and for the client.
fn default_pinning() -> (Vec<usize>, Vec<usize>) {
    let n = cores();
    if n >= 2 {
        (vec![0], (1..n).collect())
    } else {
        (vec![0], vec![0])
    }
}

fn pin_self(cpus: &[usize]) -> bool {
    // SAFETY: cpu_set_t is plain data, zero is a valid (empty) set;
    // sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// CPU time of a whole process (every thread, live or exited), in ns:
/// utime+stime of `/proc/PID/stat`, which the kernel derives from the
/// thread group's exact run time. Read through the process CPU-time clock
/// (ns resolution) where the kernel allows it, else from the file (clock
/// ticks).
fn cpu_ns(pid: u32) -> u64 {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: writes one clockid_t into `clock`.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } == 0 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec into `ts`.
        if unsafe { libc::clock_gettime(clock, &mut ts) } == 0 {
            return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        }
    }
    stat_cpu_ns(pid).unwrap_or(0)
}

/// utime+stime from `/proc/PID/stat` in ns.
fn stat_cpu_ns(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((utime + stime) * 1_000_000_000 / hz)
}

/// The calling thread's CPU time in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Busy CPU time of the whole machine (user, nice, system, irq, softirq,
/// steal) from `/proc/stat`, in ns.
fn system_busy_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    busy * 1_000_000_000 / hz
}

/// A point measured while other work used more than this many CPUs is
/// measured again (other engineers' builds and tests share the machine).
const MAX_OTHER_LOAD: f64 = 0.10;
const MAX_ATTEMPTS: usize = 4;

struct Running {
    daemon: Daemon,
    child: Child,
    sock: PathBuf,
    ctl: Option<PathBuf>,
    log: PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the daemon's stderr, for error messages.
    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n    ")
    }

    fn check_alive(&mut self) -> Result<(), String> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Err(format!(
                "{:?} exited ({st}); its log:\n    {}",
                self.daemon,
                self.log_tail()
            ));
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.sock);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.sock);
    }
}

struct Env<'a> {
    opts: &'a BenchOptions,
    dir: PathBuf,
    image: PathBuf,
    daemon_cpus: Vec<usize>,
    client_cpus: Vec<usize>,
}

impl Env<'_> {
    fn start(
        &self,
        daemon: Daemon,
        backend: Backend,
        queues: usize,
        poll: bool,
    ) -> Result<Running, String> {
        let sock = self.dir.join(format!("{daemon:?}.sock"));
        let ctl = self.dir.join("vblk.ctl");
        let log = self.dir.join(format!("{daemon:?}.log"));
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(&ctl);
        let image = self.image.display().to_string();
        let mut cmd = match daemon {
            Daemon::Vblk => {
                let mut c = Command::new(&self.opts.vblk);
                c.arg("serve").arg("--vhost-user").arg(&sock);
                c.arg("--control").arg(&ctl);
                c.args(["--num-queues", &queues.to_string(), "--queue-size", "1024"]);
                // As many worker threads as the daemon has CPUs (qsd gets
                // one event loop thread too).
                c.args(["--threads", &self.daemon_cpus.len().to_string()]);
                match backend {
                    Backend::Null => c.args(["--image", &format!("null:{DISK}")]),
                    Backend::File | Backend::Direct => c.args([
                        "--image",
                        &image,
                        "--aio",
                        "io-uring",
                        "--cache",
                        if backend == Backend::Direct {
                            "none"
                        } else {
                            "writeback"
                        },
                    ]),
                };
                if poll {
                    c.args(["--poll-us", &POLL_US.to_string()]);
                }
                c.args(&self.opts.vblk_args);
                c
            }
            Daemon::Qsd => {
                let mut c = Command::new(&self.opts.qsd);
                // With an iothread: it serves every queue and polls
                // (adaptively, up to poll-max-ns) on polling rows only, like
                // vblk --poll-us.
                let iothread = if self.opts.qsd_iothread {
                    c.args([
                        "--object",
                        &format!(
                            "iothread,id=io0,poll-max-ns={}",
                            if poll { POLL_US * 1000 } else { 0 }
                        ),
                    ]);
                    ",iothread=io0"
                } else {
                    ""
                };
                match backend {
                    Backend::Null => c.args([
                        "--blockdev",
                        &format!("driver=null-co,node-name=n0,size={DISK},read-zeroes=on"),
                    ]),
                    Backend::File | Backend::Direct => c.args([
                        "--blockdev",
                        &format!(
                            "driver=file,node-name=n0,filename={image},aio=io_uring,cache.direct={}",
                            if backend == Backend::Direct { "on" } else { "off" }
                        ),
                    ]),
                };
                c.args([
                    "--export",
                    &format!(
                        "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path={},writable=on,num-queues={queues}{iothread}",
                        sock.display()
                    ),
                ]);
                c
            }
        };
        let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let cpus = self.daemon_cpus.clone();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf));
        // SAFETY: pre_exec runs in the forked child before exec; it only
        // calls sched_setaffinity (async-signal-safe) on a set built on the
        // stack, no allocation.
        unsafe {
            cmd.pre_exec(move || {
                pin_self(&cpus);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {}: {e}",
                match daemon {
                    Daemon::Vblk => self.opts.vblk.display(),
                    Daemon::Qsd => self.opts.qsd.display(),
                }
            )
        })?;
        let mut r = Running {
            daemon,
            child,
            sock: sock.clone(),
            ctl: (daemon == Daemon::Vblk).then_some(ctl),
            log,
        };
        let t = Instant::now();
        while UnixStream::connect(&sock).is_err() {
            r.check_alive()?;
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "{daemon:?} did not listen on {} within 10 s; its log:\n    {}",
                    sock.display(),
                    r.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // qsd (like most vhost-user back-ends) serves one front-end and may
        // need a moment after that probing connection closes.
        std::thread::sleep(Duration::from_millis(50));
        Ok(r)
    }
}

/// vblk's counters summed over the queues: (kicks, interrupts, used-ring
/// pushes). None when the daemon has no control socket (or another format).
fn vblk_counters(ctl: &Path) -> Option<(u64, u64, u64)> {
    let mut s = String::new();
    let mut c = UnixStream::connect(ctl).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    c.read_to_string(&mut s).ok()?;
    let v: serde_json::Value = serde_json::from_str(s.trim()).ok()?;
    let q = v.get("queues")?.as_array()?;
    let sum = |keys: &[&str]| -> Option<u64> {
        let k = keys
            .iter()
            .find(|k| q.first().and_then(|x| x.get(**k)).is_some())?;
        Some(
            q.iter()
                .map(|x| x.get(*k).and_then(|n| n.as_u64()).unwrap_or(0))
                .sum(),
        )
    };
    Some((
        sum(&["notify_eventfd"])?,
        sum(&["interrupts", "eventfd_signals"])?,
        sum(&["used_pushes", "status_ok"]).unwrap_or(0),
    ))
}

/// What one client thread measured.
#[derive(Default)]
struct ThreadResult {
    ios: u64,
    lat_ns: Vec<u32>,
    cpu_ns: u64,
    error: Option<String>,
    /// Requests the device completed with an error (not fatal: counted).
    failed: u64,
    first_failure: Option<String>,
}

/// Run one point against a running daemon.
fn measure(env: &Env, d: &Running, p: Point, secs: f64) -> Result<Figures, String> {
    let e = |x: blkio::Error| format!("libblkio: {}", x.message());
    let mut b = Blkio::new("virtio-blk-vhost-user").map_err(e)?;
    b.set_str("path", d.sock.to_str().unwrap_or_default())
        .map_err(e)?;
    b.connect().map_err(e)?;
    let maxq = b.get_i32("max-queues").map_err(e)?;
    if (maxq as usize) < p.queues {
        return Err(format!(
            "the daemon offers {maxq} queues, {} wanted",
            p.queues
        ));
    }
    let capacity = b.get_u64("capacity").map_err(e)?;
    if p.poll {
        b.set_i32("num-queues", 0).map_err(e)?;
        b.set_i32("num-poll-queues", p.queues as i32).map_err(e)?;
    } else {
        b.set_i32("num-queues", p.queues as i32).map_err(e)?;
    }
    b.set_i32("queue-size", CLIENT_QUEUE_SIZE).map_err(e)?;
    let out = b.start().map_err(e)?;
    let queues = if p.poll { out.poll_queues } else { out.queues };
    let region = b.alloc_mem_region(p.queues * p.qd * BS).map_err(e)?;
    b.map_mem_region(&region).map_err(e)?;
    let base = region.addr;
    let blocks = (capacity / BS as u64).max(1);

    let run = Duration::from_secs_f64(secs);
    let barrier = std::sync::Barrier::new(p.queues + 1);
    let client_cpus = &env.client_cpus;
    type Sample = (u64, Option<(u64, u64, u64)>, Instant, u64);
    let sample = || -> Sample {
        (
            cpu_ns(d.pid()),
            d.ctl.as_deref().and_then(vblk_counters),
            Instant::now(),
            system_busy_ns(),
        )
    };
    let (results, s0, s1): (Vec<ThreadResult>, Sample, Sample) = std::thread::scope(|s| {
        let mut hs = vec![];
        for (qi, mut q) in queues.into_iter().enumerate() {
            let barrier = &barrier;
            hs.push(s.spawn(move || {
                pin_self(client_cpus);
                let mut r = ThreadResult::default();
                let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ ((qi as u64 + 1) << 17);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng % blocks) * BS as u64
                };
                let submit = |q: &mut blkio::Blkioq, slot: usize, off: u64| {
                    let buf = (base + (qi * p.qd + slot) * BS) as *mut u8;
                    if p.write {
                        q.write(off, buf, BS, slot, ReqFlags::empty());
                    } else {
                        q.read(off, buf, BS, slot, ReqFlags::empty());
                    }
                };
                let mut started = vec![Instant::now(); p.qd];
                let mut offsets = vec![0u64; p.qd];
                for slot in 0..p.qd {
                    started[slot] = Instant::now();
                    offsets[slot] = next();
                    submit(&mut q, slot, offsets[slot]);
                }
                let mut comps: Vec<MaybeUninit<Completion>> =
                    (0..p.qd).map(|_| MaybeUninit::uninit()).collect();
                r.lat_ns.reserve(1 << 20);
                let t0 = Instant::now();
                let mut measuring = false;
                let mut t_meas = t0;
                let mut cpu0 = 0;
                let mut in_flight = p.qd;
                loop {
                    let now = Instant::now();
                    if !measuring && (now - t0 >= WARMUP || r.error.is_some()) {
                        barrier.wait();
                        measuring = true;
                        t_meas = Instant::now();
                        cpu0 = thread_cpu_ns();
                    }
                    if measuring && (now - t_meas >= run || r.error.is_some()) {
                        break;
                    }
                    let mut timeout = Duration::from_secs(5);
                    let n = match q.do_io(
                        &mut comps,
                        1,
                        if p.poll { None } else { Some(&mut timeout) },
                        None,
                    ) {
                        Ok(0) => {
                            r.error = Some("no completion within 5 s".into());
                            continue;
                        }
                        Ok(n) => n,
                        Err(x) => {
                            r.error = Some(format!("do_io: {}", x.message()));
                            continue;
                        }
                    };
                    let done = Instant::now();
                    for c in &comps[..n] {
                        // SAFETY: do_io initialised the first n completions.
                        let c = unsafe { c.assume_init_ref() };
                        let slot = c.user_data;
                        if c.ret < 0 {
                            r.failed += 1;
                            if r.first_failure.is_none() {
                                r.first_failure = Some(format!(
                                    "{} at byte {} failed: {}",
                                    if p.write { "write" } else { "read" },
                                    offsets[slot],
                                    std::io::Error::from_raw_os_error(-c.ret)
                                ));
                            }
                        }
                        if measuring {
                            r.ios += 1;
                            r.lat_ns
                                .push((done - started[slot]).as_nanos().min(u128::from(u32::MAX))
                                    as u32);
                        }
                        started[slot] = Instant::now();
                        offsets[slot] = next();
                        submit(&mut q, slot, offsets[slot]);
                    }
                }
                r.cpu_ns = thread_cpu_ns().saturating_sub(cpu0);
                barrier.wait();
                // Drain what is still in flight (not measured).
                while in_flight > 0 && r.error.is_none() {
                    let mut timeout = Duration::from_secs(5);
                    match q.do_io(
                        &mut comps,
                        1,
                        if p.poll { None } else { Some(&mut timeout) },
                        None,
                    ) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => in_flight = in_flight.saturating_sub(n),
                    }
                }
                r
            }));
        }
        // Sample the daemon between the barriers.
        barrier.wait();
        let s0 = sample();
        barrier.wait();
        let s1 = sample();
        let res = hs
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| ThreadResult {
                    error: Some("client thread panicked".into()),
                    ..Default::default()
                })
            })
            .collect();
        (res, s0, s1)
    });
    drop(b);
    if let Some(err) = results.iter().find_map(|r| r.error.clone()) {
        return Err(err);
    }
    let wall = (s1.2 - s0.2).as_secs_f64();
    let ios: u64 = results.iter().map(|r| r.ios).sum();
    let mut lat: Vec<u32> = results
        .iter()
        .flat_map(|r| r.lat_ns.iter().copied())
        .collect();
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |&x| f64::from(x) / 1e3)
    };
    let cpu = s1.0.saturating_sub(s0.0) as f64;
    let client_ns = results.iter().map(|r| r.cpu_ns).sum::<u64>() as f64;
    let busy = s1.3.saturating_sub(s0.3) as f64;
    let ios_f = ios.max(1) as f64;
    let mut f = Figures {
        iops: ios as f64 / wall,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        cpu_us_per_io: cpu / 1e3 / ios_f,
        daemon_util: cpu / 1e9 / wall,
        client_util: client_ns / 1e9 / wall,
        other_load: ((busy - cpu - client_ns) / 1e9 / wall).max(0.0),
        failed: results.iter().map(|r| r.failed).sum(),
        first_failure: results.iter().find_map(|r| r.first_failure.clone()),
        ..Default::default()
    };
    if let (Some(a), Some(b)) = (s0.1, s1.1) {
        // Per I/O the daemon completed in the same interval (its used-ring
        // pushes), falling back to the I/Os the client counted.
        let used = b.2.saturating_sub(a.2);
        let n = if used > 0 { used as f64 } else { ios_f };
        f.kicks_per_io = Some(b.0.saturating_sub(a.0) as f64 / n);
        f.irqs_per_io = Some(b.1.saturating_sub(a.1) as f64 / n);
    }
    Ok(f)
}

/// A daemon configuration (backend, queues, polling) and its (write, QD) points.
type Group = (Backend, usize, bool, Vec<(bool, usize)>);

fn groups(quick: bool) -> Vec<Group> {
    if quick {
        return vec![
            (
                Backend::Null,
                1,
                false,
                vec![(false, 1), (false, 32), (true, 32), (false, 128)],
            ),
            (Backend::Null, 1, true, vec![(false, 1), (false, 32)]),
            (Backend::Null, 2, false, vec![(false, 32)]),
            (Backend::File, 1, false, vec![(false, 32), (true, 32)]),
            (Backend::Direct, 1, false, vec![(false, 32)]),
        ];
    }
    let mut v = vec![];
    for backend in [Backend::Null, Backend::File, Backend::Direct] {
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

fn have(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_qsd(opts: &BenchOptions) -> Result<(), String> {
    if have(&opts.qsd) {
        return Ok(());
    }
    if !opts.install_qsd {
        return Err(format!("{} not found", opts.qsd.display()));
    }
    // Debian: bookworm-backports' qemu-utils ships it; plain bookworm has
    // it in qemu-system-common.
    eprintln!("bench: qemu-storage-daemon missing: installing it with apt-get");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    for pkg in ["qemu-utils", "qemu-system-common"] {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", pkg])
            .status();
        if have(&opts.qsd) {
            return Ok(());
        }
    }
    Err("qemu-storage-daemon is not installed and apt-get could not install it (qemu-utils, qemu-system-common)".into())
}

/// A 1 GiB image on tmpfs, written through once so reads hit real pages
/// (a sparse tmpfs file would read holes from the shared zero page).
fn make_image(path: &Path) -> Result<(), String> {
    use std::io::Write;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::create(path).map_err(err)?;
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8 + 1).collect();
    for _ in 0..DISK / chunk.len() as u64 {
        f.write_all(&chunk).map_err(err)?;
    }
    Ok(())
}

/// Run the benchmark: both daemons at every point of the selected set.
pub fn run(opts: BenchOptions) -> Result<Report, String> {
    if !opts.vblk.exists() {
        return Err(format!("{}: no such vblk binary", opts.vblk.display()));
    }
    ensure_qsd(&opts)?;
    let (dc, cc) = default_pinning();
    let daemon_cpus = opts.daemon_cpus.clone().unwrap_or(dc);
    let client_cpus = opts.client_cpus.clone().unwrap_or(cc);
    if daemon_cpus.iter().any(|c| client_cpus.contains(c)) {
        eprintln!("bench: warning: daemon CPUs {daemon_cpus:?} and client CPUs {client_cpus:?} overlap (one-CPU machine?)");
    }
    let secs = opts.secs.unwrap_or(if opts.quick { 1.5 } else { 3.0 });
    let dir = std::env::temp_dir().join(format!("vblk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let shm = Path::new("/dev/shm");
    let image = if shm.is_dir() { shm } else { dir.as_path() }
        .join(format!("vblk-bench-{}.img", std::process::id()));
    let env = Env {
        opts: &opts,
        dir: dir.clone(),
        image: image.clone(),
        daemon_cpus: daemon_cpus.clone(),
        client_cpus: client_cpus.clone(),
    };
    if opts.verbose {
        eprintln!("bench: daemon pinned to CPU {daemon_cpus:?}, client to CPU {client_cpus:?}; {secs} s per point after a {} ms warm-up", WARMUP.as_millis());
    }
    let result = run_groups(&env, secs);
    let _ = std::fs::remove_file(&image);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Report {
        rows: result?,
        machine: machine(&opts.qsd),
        daemon_cpus,
        client_cpus,
        secs,
        quick: opts.quick,
    })
}

fn run_groups(env: &Env, secs: f64) -> Result<Vec<Row>, String> {
    let opts = env.opts;
    let mut rows = vec![];
    let mut have_image = false;
    for (backend, queues, poll, mut pts) in groups(opts.quick) {
        if !opts.backends.is_empty() && !opts.backends.contains(&backend) {
            continue;
        }
        if let Some(f) = &opts.filter {
            pts.retain(|&(write, qd)| {
                label(&Point {
                    backend,
                    queues,
                    poll,
                    write,
                    qd,
                })
                .contains(f.as_str())
            });
            if pts.is_empty() {
                continue;
            }
        }
        if backend != Backend::Null && !have_image {
            make_image(&env.image)?;
            have_image = true;
        }
        let mut figs: Vec<[Figures; 2]> = vec![Default::default(); pts.len()];
        for (di, daemon) in [Daemon::Vblk, Daemon::Qsd].into_iter().enumerate() {
            let mut d = env.start(daemon, backend, queues, poll)?;
            for (i, &(write, qd)) in pts.iter().enumerate() {
                let p = Point {
                    backend,
                    queues,
                    poll,
                    write,
                    qd,
                };
                let mut best: Option<Figures> = None;
                for attempt in 1..=MAX_ATTEMPTS {
                    let f = measure(env, &d, p, secs)
                        .and_then(|f| d.check_alive().map(|()| f))
                        .map_err(|e| {
                            format!(
                                "{daemon:?} at {}: {e}\n  the daemon's log ends with:\n    {}",
                                label(&p),
                                d.log_tail()
                            )
                        })?;
                    if f.failed > 0 {
                        eprintln!(
                            "bench: {daemon:?} at {}: {} requests FAILED ({}); the daemon's log ends with:\n    {}",
                            label(&p),
                            f.failed,
                            f.first_failure.as_deref().unwrap_or(""),
                            d.log_tail()
                        );
                    }
                    let quiet = f.other_load <= MAX_OTHER_LOAD;
                    if !quiet && opts.verbose {
                        eprintln!(
                            "bench: {daemon:?} at {}: other processes used {:.2} CPUs (attempt {attempt}){}",
                            label(&p),
                            f.other_load,
                            if attempt < MAX_ATTEMPTS { "; measuring again" } else { "" }
                        );
                    }
                    // The least disturbed attempt, but never hide failed requests.
                    let failed = best.as_ref().map_or(0, |b| b.failed) + f.failed;
                    if best.as_ref().is_none_or(|b| f.other_load < b.other_load) {
                        best = Some(f);
                    }
                    if let Some(b) = best.as_mut() {
                        b.failed = failed;
                    }
                    if quiet {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500 * attempt as u64));
                }
                figs[i][di] = best.unwrap_or_default();
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
            if opts.verbose {
                eprintln!("{}", format_row(&row));
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn label(p: &Point) -> String {
    format!(
        "{} | {} | {} | {} | {}",
        p.backend.label(),
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
    let failed = |f: &Figures| {
        if f.failed > 0 {
            format!(" ({} FAILED)", f.failed)
        } else {
            String::new()
        }
    };
    format!(
        "| {}{}{} | {:.0} | {:.0} | **{:.2}** | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} | {:.2} | **{:.2}** | {:.0} % / {:.0} % | {} | {} |",
        label(&r.point),
        failed(&r.vblk),
        failed(&r.qsd),
        r.vblk.iops / 1e3,
        r.qsd.iops / 1e3,
        r.iops_ratio(),
        r.vblk.p50_us,
        r.vblk.p99_us,
        r.qsd.p50_us,
        r.qsd.p99_us,
        r.vblk.cpu_us_per_io,
        r.qsd.cpu_us_per_io,
        r.cpu_ratio(),
        r.vblk.client_util * 100.0,
        r.qsd.client_util * 100.0,
        opt(r.vblk.kicks_per_io),
        opt(r.vblk.irqs_per_io),
    )
}

/// The markdown table of `rows`.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| backend | queues | completion | workload | QD | vblk kIOPS | qsd kIOPS | IOPS ratio | vblk p50/p99 µs | qsd p50/p99 µs | vblk CPU µs/IO | qsd CPU µs/IO | CPU ratio | client CPU (vblk / qsd run) | vblk kicks/IO | vblk irqs/IO |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(s, "{}", format_row(r));
    }
    s
}

/// How many points meet the reference targets (IOPS ≥ qsd, CPU/IO ≤ 0.5× qsd).
pub fn targets(rows: &[Row]) -> String {
    let n = rows.len();
    let iops = rows.iter().filter(|r| r.iops_ratio() >= 1.0).count();
    let cpu = rows.iter().filter(|r| r.cpu_ratio() <= 0.5).count();
    let minmax = |f: &dyn Fn(&Row) -> f64| {
        rows.iter()
            .map(f)
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)))
    };
    let (imin, imax) = minmax(&|r| r.iops_ratio());
    let (cmin, cmax) = minmax(&|r| r.cpu_ratio());
    format!(
        "| target | met at | range (vblk / qsd) |\n|---|---|---|\n| IOPS ≥ qsd's | {iops} of {n} points | {imin:.2}–{imax:.2}× |\n| daemon CPU per I/O ≤ 0.5× qsd's | {cpu} of {n} points | {cmin:.2}–{cmax:.2}× |\n"
    )
}

/// Points where vblk falls under half of qemu-storage-daemon's IOPS (CI
/// fails only on these).
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

/// An SVG: for each backend measured, IOPS (left) and daemon CPU µs per
/// I/O (right) against queue depth, both daemons, single-queue random reads;
/// solid lines event-driven, dashed polling.
pub fn svg(rows: &[Row]) -> String {
    let mut backends: Vec<Backend> = vec![];
    for r in rows {
        if !backends.contains(&r.point.backend) {
            backends.push(r.point.backend);
        }
    }
    let (pw, ph, pad, top) = (380.0, 220.0, 60.0, 40.0);
    let w = 2.0 * pw + 3.0 * pad;
    let h = top + backends.len().max(1) as f64 * (ph + pad) + 30.0;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
    );
    let _ = writeln!(
        s,
        "<text x='{pad}' y='20' font-size='14'>vblk vs qemu-storage-daemon, vhost-user-blk, 4 KiB random reads, 1 queue (libblkio client)</text>"
    );
    type Getter = fn(&Figures) -> f64;
    let panels: [(&str, Getter); 2] = [
        ("kIOPS", |f| f.iops / 1e3),
        ("daemon CPU µs per I/O", |f| f.cpu_us_per_io),
    ];
    let qds = [1.0f64, 32.0, 128.0];
    let xpos = |x0: f64, qd: f64| x0 + 10.0 + (pw - 20.0) * (qd.log2() / 7.0).clamp(0.0, 1.0);
    for (bi, &backend) in backends.iter().enumerate() {
        let sel: Vec<&Row> = rows
            .iter()
            .filter(|r| r.point.backend == backend && r.point.queues == 1 && !r.point.write)
            .collect();
        let y0 = top + bi as f64 * (ph + pad) + 20.0;
        for (pi, (title, get)) in panels.iter().enumerate() {
            let x0 = pad + pi as f64 * (pw + pad);
            let max = nice_max(
                sel.iter()
                    .flat_map(|r| [get(&r.vblk), get(&r.qsd)])
                    .fold(0.0f64, f64::max),
            );
            let _ = writeln!(
                s,
                "<text x='{x0}' y='{}' font-weight='bold'>{}: {title}</text>",
                y0 - 6.0,
                backend.label()
            );
            let _ = writeln!(
                s,
                "<rect x='{x0}' y='{y0}' width='{pw}' height='{ph}' fill='none' stroke='#888'/>"
            );
            for k in 0..=4 {
                let v = max * k as f64 / 4.0;
                let y = y0 + ph - ph * k as f64 / 4.0;
                let _ = writeln!(
                    s,
                    "<line x1='{x0}' x2='{}' y1='{y:.1}' y2='{y:.1}' stroke='#eee'/>",
                    x0 + pw
                );
                let _ = writeln!(
                    s,
                    "<text x='{}' y='{:.1}' text-anchor='end' fill='#555'>{}</text>",
                    x0 - 4.0,
                    y + 4.0,
                    if v == v.round() {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.1}")
                    }
                );
            }
            for qd in qds {
                let _ = writeln!(
                    s,
                    "<text x='{:.1}' y='{}' text-anchor='middle' fill='#555'>QD{qd}</text>",
                    xpos(x0, qd),
                    y0 + ph + 15.0
                );
            }
            for (series, color) in [(Daemon::Vblk, "#1f77b4"), (Daemon::Qsd, "#d62728")] {
                for poll in [false, true] {
                    let mut pts: Vec<(f64, f64)> = sel
                        .iter()
                        .filter(|r| r.point.poll == poll)
                        .map(|r| {
                            let f = if series == Daemon::Vblk {
                                &r.vblk
                            } else {
                                &r.qsd
                            };
                            (r.point.qd as f64, get(f))
                        })
                        .collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    if pts.is_empty() {
                        continue;
                    }
                    let xy: Vec<(f64, f64)> = pts
                        .iter()
                        .map(|&(qd, v)| (xpos(x0, qd), y0 + ph - ph * v / max))
                        .collect();
                    let path: Vec<String> =
                        xy.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                    let dash = if poll { " stroke-dasharray='6,4'" } else { "" };
                    let _ = writeln!(
                        s,
                        "<polyline points='{}' fill='none' stroke='{color}' stroke-width='2'{dash}/>",
                        path.join(" ")
                    );
                    for (x, y) in xy {
                        let _ =
                            writeln!(s, "<circle cx='{x:.1}' cy='{y:.1}' r='3' fill='{color}'/>");
                    }
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "<text x='{pad}' y='{}'><tspan fill='#1f77b4' font-weight='bold'>— vblk</tspan>   <tspan fill='#d62728' font-weight='bold'>— qemu-storage-daemon</tspan>   solid: event-driven, dashed: polling; x: queue depth (log scale)</text>",
        h - 10.0
    );
    s.push_str("</svg>\n");
    s
}

/// A round axis maximum (four ticks of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5 or 8 × a power of ten)
/// a little above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let step = v * 1.05 / 4.0;
    let p = 10f64.powf(step.log10().floor());
    let m = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.5, 8.0, 10.0]
        .into_iter()
        .find(|m| m * p >= step)
        .unwrap_or(10.0);
    4.0 * m * p
}

fn machine(qsd: &Path) -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        info.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qsd = Command::new(qsd)
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
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {:.0} GiB", kb as f64 / (1 << 20) as f64)
        });
    let hyp = if info.contains(" hypervisor") {
        " (virtual machine)"
    } else {
        ""
    };
    format!(
        "{} CPUs ({}, {} MHz{hyp}){mem}, Linux {}, {qsd}",
        cores(),
        field("model name"),
        field("cpu MHz"),
        kernel.trim()
    )
}

impl Report {
    /// Where vblk fell under half of qsd's IOPS.
    pub fn collapses(&self) -> Vec<String> {
        collapses(&self.rows)
    }

    pub fn svg(&self) -> String {
        svg(&self.rows)
    }

    /// The report: machine, method, table, targets.
    pub fn markdown(&self) -> String {
        format!(
            "Machine: {}\n\
             Daemon pinned to CPU {:?}, client (libblkio virtio-blk-vhost-user) to CPU {:?}. \
             4 KiB random I/O over 1 GiB, {} s per point after a {} ms warm-up{}.\n\
             CPU µs/IO = the daemon's CPU time (utime+stime, all threads) over the measured \
             interval / I/Os completed; client CPU = the client threads' CPU time / wall time. \
             Ratios are vblk / qemu-storage-daemon.\n\n{}\n{}",
            self.machine,
            self.daemon_cpus,
            self.client_cpus,
            self.secs,
            WARMUP.as_millis(),
            if self.quick { " (quick subset)" } else { "" },
            table(&self.rows),
            targets(&self.rows),
        )
    }

    /// The rows as JSON.
    pub fn json(&self) -> serde_json::Value {
        let fig = |f: &Figures| {
            serde_json::json!({
                "iops": f.iops, "p50_us": f.p50_us, "p99_us": f.p99_us,
                "cpu_us_per_io": f.cpu_us_per_io, "daemon_util": f.daemon_util,
                "client_util": f.client_util, "kicks_per_io": f.kicks_per_io,
                "irqs_per_io": f.irqs_per_io, "other_load": f.other_load,
                "failed_requests": f.failed, "first_failure": f.first_failure,
            })
        };
        serde_json::json!({
            "machine": self.machine,
            "daemon_cpus": self.daemon_cpus,
            "client_cpus": self.client_cpus,
            "secs": self.secs,
            "rows": self.rows.iter().map(|r| serde_json::json!({
                "backend": r.point.backend.label(),
                "queues": r.point.queues,
                "poll": r.point.poll,
                "write": r.point.write,
                "qd": r.point.qd,
                "vblk": fig(&r.vblk),
                "qsd": fig(&r.qsd),
            })).collect::<Vec<_>>(),
        })
    }

    /// Write bench.md, bench.svg and bench.json into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let err = |e: std::io::Error| format!("{}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::write(dir.join("bench.md"), self.markdown()).map_err(err)?;
        std::fs::write(dir.join("bench.svg"), self.svg()).map_err(err)?;
        let json = serde_json::to_string_pretty(&self.json()).unwrap_or_default();
        std::fs::write(dir.join("bench.json"), json).map_err(err)?;
        Ok(())
    }
}

/// The `vblk bench` command: run, print and write the report, and fail on a
/// collapse if asked to.
pub fn main(opts: CliOptions) -> Result<(), String> {
    let report = run(BenchOptions::from(&opts))?;
    println!("{}", report.markdown());
    report.write(&opts.out)?;
    let c = report.collapses();
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
        "bench: report in {}/bench.md, bench.svg and bench.json",
        opts.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(vblk: f64, qsd: f64) -> Row {
        let f = |iops| Figures {
            iops,
            cpu_us_per_io: 1e6 / iops,
            ..Default::default()
        };
        Row {
            point: Point {
                backend: Backend::Null,
                queues: 1,
                poll: false,
                write: false,
                qd: 32,
            },
            vblk: f(vblk),
            qsd: f(qsd),
        }
    }

    #[test]
    fn collapse_only_below_half() {
        assert!(collapses(&[row(100.0, 150.0), row(51.0, 100.0)]).is_empty());
        let c = collapses(&[row(100.0, 150.0), row(49.0, 100.0)]);
        assert_eq!(c.len(), 1);
        assert!(c[0].contains("vblk 49 vs qsd 100"), "{c:?}");
    }

    #[test]
    fn table_and_svg_render() {
        let mut rows = vec![row(200.0, 100.0), row(300.0, 100.0)];
        rows[1].point.qd = 1;
        let t = table(&rows);
        assert_eq!(t.lines().count(), 4);
        assert!(t.contains("**2.00**"));
        let s = svg(&rows);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("polyline"));
        assert!(targets(&rows).contains("2 of 2 points"));
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(274.0), 300.0);
        assert_eq!(nice_max(190.0), 200.0);
        assert_eq!(nice_max(33.0), 40.0);
        assert!((nice_max(1.2) - 1.6).abs() < 1e-9);
        assert_eq!(nice_max(0.0), 1.0);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let pid = std::process::id();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0);
        }
        assert!(cpu_ns(pid) > 0);
        assert!(stat_cpu_ns(pid).is_some());
        assert!(thread_cpu_ns() > 0);
    }
}
