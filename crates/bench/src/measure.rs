//! One measurement: the libblkio client (one thread per queue, pinned to
//! the client CPUs), latency percentiles, and CPU accounting for the
//! daemon (all its threads), the client and the rest of the machine.

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use blkio::{Blkio, Completion, ReqFlags};

use crate::daemons::{pin_self, Running};
use crate::options::Point;

pub const BS: usize = 4096;
pub const WARMUP: Duration = Duration::from_millis(300);
/// Client queue size: without indirect descriptors a request takes 3
/// descriptors, so QD128 needs at least 384.
pub const CLIENT_QUEUE_SIZE: i32 = 512;

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

/// CPU time of a whole process (every thread, live or exited), in ns:
/// utime+stime of `/proc/PID/stat`, which the kernel derives from the
/// thread group's exact run time. Read through the process CPU-time clock
/// (ns resolution) where the kernel allows it, else from the file (clock
/// ticks).
pub fn cpu_ns(pid: u32) -> u64 {
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
pub fn stat_cpu_ns(pid: u32) -> Option<u64> {
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
pub fn thread_cpu_ns() -> u64 {
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
pub fn system_busy_ns() -> u64 {
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

/// vblk's counters summed over the queues: (kicks, interrupts, used-ring
/// pushes). None when the daemon has no control socket (or another format).
fn vblk_counters(ctl: &Path) -> Option<(u64, u64, u64)> {
    let mut s = String::new();
    let mut c = UnixStream::connect(ctl).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // The control protocol's request line (src/control.rs); without one
    // the daemon waits a moment before it answers with the counters.
    c.write_all(b"stats\n").ok()?;
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

/// The `q` quantile of sorted latencies in ns, in µs (0 if empty).
pub fn percentile_us(sorted_ns: &[u32], q: f64) -> f64 {
    let i = ((sorted_ns.len() as f64 * q) as usize).min(sorted_ns.len().saturating_sub(1));
    sorted_ns.get(i).map_or(0.0, |&x| f64::from(x) / 1e3)
}

/// Run one point against a running daemon.
pub fn measure(client_cpus: &[usize], d: &Running, p: Point, secs: f64) -> Result<Figures, String> {
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
    let pct = |q: f64| percentile_us(&lat, q);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_readable() {
        let pid = std::process::id();
        // Burn 20 ms of this thread's CPU (wall time would not do on a busy
        // machine); the process clock includes it.
        let t0 = thread_cpu_ns();
        while thread_cpu_ns() - t0 < 20_000_000 {
            std::hint::black_box(0);
        }
        assert!(cpu_ns(pid) >= 20_000_000);
        assert!(stat_cpu_ns(pid).is_some());
        assert!(system_busy_ns() > 0);
    }

    #[test]
    fn percentiles() {
        let lat: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_us(&lat, 0.5), 51.0);
        assert_eq!(percentile_us(&lat, 0.99), 100.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
