//! What is measured (the daemon configurations and their points, the
//! quick subset, `--only`/`--filter`) and the run loop: for each run, for
//! each configuration, each daemon started fresh and measured at every
//! point, repeated while other load disturbs the machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::daemons::{self, Config, Daemon};
use crate::images;
use crate::measure::{self, Figures, WARMUP};
use crate::options::{Backend, BenchOptions, Point};
use crate::report::{Report, Row};

/// A point measured while other work used more than this many CPUs is
/// measured again (other engineers' builds and tests share the machine).
pub const MAX_OTHER_LOAD: f64 = 0.10;
pub const MAX_ATTEMPTS: usize = 4;

/// A daemon configuration and its (write, QD) points.
pub type Group = (Config, Vec<(bool, usize)>);

fn cfg(backend: Backend, queues: usize, poll: bool) -> Config {
    Config {
        backend,
        queues,
        poll,
    }
}

/// Every configuration of the full or quick set.
pub fn groups(quick: bool) -> Vec<Group> {
    let (r, w) = (false, true);
    if quick {
        return vec![
            (
                cfg(Backend::Null, 1, false),
                vec![(r, 1), (r, 32), (w, 32), (r, 128)],
            ),
            (cfg(Backend::Null, 1, true), vec![(r, 1), (r, 32)]),
            (cfg(Backend::Null, 2, false), vec![(r, 32)]),
            (cfg(Backend::File, 1, false), vec![(r, 32), (w, 32)]),
            (
                cfg(Backend::Direct, 1, false),
                vec![(r, 1), (r, 32), (w, 1), (w, 32)],
            ),
            (
                cfg(Backend::Nbd, 1, false),
                vec![(r, 1), (r, 32), (w, 1), (w, 32)],
            ),
        ];
    }
    let all: Vec<(bool, usize)> = [r, w]
        .into_iter()
        .flat_map(|write| [1, 32, 128].map(|qd| (write, qd)))
        .collect();
    let mut v = vec![(cfg(Backend::Nbd, 1, false), all.clone())];
    for backend in [Backend::Null, Backend::File, Backend::Direct] {
        // One queue on the real disk: the device, not the queue count, is
        // what is compared there.
        let queue_counts: &[usize] = if backend == Backend::Direct {
            &[1]
        } else {
            &[1, 2]
        };
        for &queues in queue_counts {
            for poll in [false, true] {
                v.push((cfg(backend, queues, poll), all.clone()));
            }
        }
    }
    v
}

fn point(c: Config, (write, qd): (bool, usize)) -> Point {
    Point {
        backend: c.backend,
        queues: c.queues,
        poll: c.poll,
        write,
        qd,
    }
}

/// The groups `--only`, `--filter` and an explicit point list leave,
/// without empty ones.
pub fn select(
    quick: bool,
    backends: &[Backend],
    filter: Option<&str>,
    only: &[Point],
) -> Vec<Group> {
    groups(quick)
        .into_iter()
        // NBD is opt-in (`--only nbd`): it starts a qemu-nbd.
        .filter(|(c, _)| {
            if backends.is_empty() {
                c.backend != Backend::Nbd
            } else {
                backends.contains(&c.backend)
            }
        })
        .filter_map(|(c, mut pts)| {
            if let Some(f) = filter {
                pts.retain(|&wq| point(c, wq).label().contains(f));
            }
            if !only.is_empty() {
                pts.retain(|&wq| only.contains(&point(c, wq)));
            }
            (!pts.is_empty()).then_some((c, pts))
        })
        .collect()
}

fn config_label(c: Config) -> String {
    format!(
        "{}, {} queue{}, {}",
        c.backend.label(),
        c.queues,
        if c.queues == 1 { "" } else { "s" },
        if c.poll { "polling" } else { "event-driven" }
    )
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Where the files go, and the CPUs.
struct Setup<'a> {
    opts: &'a BenchOptions,
    dir: PathBuf,
    tmpfs_image: PathBuf,
    disk_image: Option<PathBuf>,
    daemon_cpus: Vec<usize>,
    client_cpus: Vec<usize>,
    secs: f64,
}

/// Run the benchmark: every daemon at every selected point, `opts.runs`
/// times.
pub fn run(opts: &BenchOptions, invocation: String) -> Result<Report, String> {
    if !opts.vblk.exists() {
        return Err(format!("{}: no such vblk binary", opts.vblk.display()));
    }
    daemons::ensure_qsd(opts)?;
    let sel = select(
        opts.quick,
        &opts.backends,
        opts.filter.as_deref(),
        &opts.points,
    );
    if sel.is_empty() {
        return Err("--only/--filter left no point to measure".into());
    }
    let n = cores();
    let daemon_cpus = opts.daemon_cpus.clone().unwrap_or(vec![0]);
    let client_cpus =
        opts.client_cpus
            .clone()
            .unwrap_or(if n >= 2 { (1..n).collect() } else { vec![0] });
    if daemon_cpus.iter().any(|c| client_cpus.contains(c)) {
        eprintln!("bench: warning: daemon CPUs {daemon_cpus:?} and client CPUs {client_cpus:?} overlap (one-CPU machine?)");
    }
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("vblk-bench-{pid}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let shm = Path::new("/dev/shm");
    let tmpfs_image =
        if shm.is_dir() { shm } else { dir.as_path() }.join(format!("vblk-bench-{pid}.img"));
    let disk_image = if sel.iter().any(|(c, _)| c.backend == Backend::Direct) {
        Some(images::disk_dir(opts.disk_dir.as_deref())?.join(format!("vblk-bench-{pid}.img")))
    } else {
        None
    };
    let setup = Setup {
        opts,
        dir: dir.clone(),
        tmpfs_image,
        disk_image,
        daemon_cpus,
        client_cpus,
        secs: opts.secs.unwrap_or(if opts.quick { 1.5 } else { 3.0 }),
    };
    if opts.verbose {
        eprintln!(
            "bench: daemons pinned to CPU {:?}, client to CPU {:?}; {} s per point after a {} ms warm-up; {} run(s)",
            setup.daemon_cpus,
            setup.client_cpus,
            setup.secs,
            WARMUP.as_millis(),
            opts.runs
        );
    }
    let result = run_all(&setup, &sel);
    let _ = std::fs::remove_file(&setup.tmpfs_image);
    if let Some(d) = &setup.disk_image {
        let _ = std::fs::remove_file(d);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let commands = sel
        .iter()
        .map(|(c, _)| {
            (
                config_label(*c),
                Daemon::ALL.map(|d| daemons::command_line(opts, d, *c)),
            )
        })
        .collect();
    Ok(Report {
        rows: result?,
        machine: crate::machine(&opts.qsd),
        daemon_cpus: setup.daemon_cpus,
        client_cpus: setup.client_cpus,
        secs: setup.secs,
        quick: opts.quick,
        runs: opts.runs,
        commands,
        invocation,
        disk_image: setup.disk_image.map(|p| p.display().to_string()),
    })
}

fn run_all(s: &Setup, sel: &[Group]) -> Result<Vec<Row>, String> {
    let opts = s.opts;
    let mut rows: Vec<Row> = sel
        .iter()
        .flat_map(|(c, pts)| pts.iter().map(|&wq| Row::new(point(*c, wq))))
        .collect();
    let (mut have_tmpfs, mut have_disk) = (false, false);
    let mut nbd: Option<crate::nbd_server::NbdServer> = None;
    for run in 0..opts.runs {
        let mut first = 0;
        for (gi, (c, pts)) in sel.iter().enumerate() {
            let image = match c.backend {
                Backend::Null => s.tmpfs_image.clone(),
                Backend::File => {
                    if !have_tmpfs {
                        images::make_image(&s.tmpfs_image, false)?;
                        have_tmpfs = true;
                    }
                    s.tmpfs_image.clone()
                }
                Backend::Direct => {
                    let img = s.disk_image.clone().ok_or("no disk image")?;
                    if !have_disk {
                        if opts.verbose {
                            eprintln!("bench: writing the 1 GiB disk image {}", img.display());
                        }
                        images::make_image(&img, true)?;
                        have_disk = true;
                    }
                    img
                }
                Backend::Nbd => {
                    if !have_tmpfs {
                        images::make_image(&s.tmpfs_image, false)?;
                        have_tmpfs = true;
                    }
                    if nbd.is_none() {
                        nbd = Some(crate::nbd_server::NbdServer::start(&s.tmpfs_image, &s.dir)?);
                    }
                    // Both daemons get the NBD server's socket.
                    nbd.as_ref().map(|n| n.sock.clone()).ok_or("no qemu-nbd")?
                }
            };
            // Rotate which daemon goes first, so none always runs on the
            // freshest (or most disturbed) machine.
            let order: Vec<Daemon> = (0..3).map(|k| Daemon::ALL[(k + run + gi) % 3]).collect();
            for d in order {
                let mut running = daemons::start(opts, &s.dir, &image, &s.daemon_cpus, d, *c)?;
                running.helper = nbd.as_ref().map(|n| n.pid());
                for (i, &wq) in pts.iter().enumerate() {
                    let p = point(*c, wq);
                    let f = measure_point(s, &mut running, p)?;
                    rows[first + i].runs[d.index()].push(f);
                }
            }
            if opts.verbose {
                for r in &rows[first..first + pts.len()] {
                    eprintln!(
                        "bench: run {}/{}: {}: kIOPS vblk {:.0}, qsd {:.0}, qsd+iothread {:.0}",
                        run + 1,
                        opts.runs,
                        r.point.label(),
                        r.runs[0][run].iops / 1e3,
                        r.runs[1][run].iops / 1e3,
                        r.runs[2][run].iops / 1e3,
                    );
                }
            }
            first += pts.len();
        }
    }
    Ok(rows)
}

/// One point on a running daemon: measured again (up to MAX_ATTEMPTS) while
/// other load is high; the least disturbed attempt is kept, failed requests
/// of every attempt are counted.
fn measure_point(s: &Setup, d: &mut daemons::Running, p: Point) -> Result<Figures, String> {
    let name = d.daemon.name();
    let mut best: Option<Figures> = None;
    let mut failed = 0;
    for attempt in 1..=MAX_ATTEMPTS {
        let f = measure::measure(&s.client_cpus, d, p, s.secs)
            .and_then(|f| d.check_alive().map(|()| f))
            .map_err(|e| {
                format!(
                    "{name} at {}: {e}\n  the daemon's log ends with:\n    {}",
                    p.label(),
                    d.log_tail()
                )
            })?;
        if f.failed > 0 {
            eprintln!(
                "bench: {name} at {}: {} requests FAILED ({}); the daemon's log ends with:\n    {}",
                p.label(),
                f.failed,
                f.first_failure.as_deref().unwrap_or(""),
                d.log_tail()
            );
        }
        failed += f.failed;
        let quiet = f.other_load <= MAX_OTHER_LOAD;
        if !quiet && s.opts.verbose {
            eprintln!(
                "bench: {name} at {}: other processes used {:.2} CPUs (attempt {attempt}){}",
                p.label(),
                f.other_load,
                if attempt < MAX_ATTEMPTS {
                    "; measuring again"
                } else {
                    ""
                }
            );
        }
        if best.as_ref().is_none_or(|b| f.other_load < b.other_load) {
            best = Some(f);
        }
        if quiet {
            break;
        }
        std::thread::sleep(Duration::from_millis(500 * attempt as u64));
    }
    let mut f = best.unwrap_or_default();
    f.failed = failed;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(g: &[Group]) -> usize {
        g.iter().map(|(_, p)| p.len()).sum()
    }

    #[test]
    fn quick_covers_the_targets() {
        let g = groups(true);
        let has = |b: Backend, poll: bool, write: bool, qd: usize| {
            g.iter().any(|(c, pts)| {
                c.backend == b && c.queues == 1 && c.poll == poll && pts.contains(&(write, qd))
            })
        };
        for (write, qd) in [(false, 1), (false, 32), (true, 1), (true, 32)] {
            assert!(
                has(Backend::Direct, false, write, qd),
                "direct {write} {qd}"
            );
        }
        assert!(has(Backend::Null, false, false, 1));
        assert!(has(Backend::Null, false, false, 128));
        assert!(has(Backend::File, false, true, 32));
    }

    #[test]
    fn full_set_has_disk_at_every_qd() {
        let g = select(false, &[Backend::Direct], None, &[]);
        assert_eq!(g.len(), 2);
        assert_eq!(count(&g), 12);
        // Plus the opt-in NBD group (6 points), which `--only` must name.
        assert_eq!(count(&groups(false)), 2 * 4 * 6 + 2 * 6 + 6);
        assert_eq!(count(&select(false, &[], None, &[])), 2 * 4 * 6 + 2 * 6);
        let n = select(false, &[Backend::Nbd], None, &[]);
        assert_eq!(count(&n), 6);
        assert!(n
            .iter()
            .all(|(c, _)| c.backend == Backend::Nbd && c.queues == 1));
    }

    #[test]
    fn only_and_filter_select() {
        let g = select(false, &[Backend::Null], Some("| 1 | event | randread"), &[]);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].1, vec![(false, 1), (false, 32), (false, 128)]);
        assert!(select(true, &[], Some("no such point"), &[]).is_empty());
        let g = select(true, &[], Some("randwrite | 32"), &[]);
        assert!(g
            .iter()
            .all(|(_, p)| p.iter().all(|&(w, qd)| w && qd == 32)));
        assert_eq!(count(&g), 3);
        // An explicit point list: exactly that point ("randread | 1" alone
        // would also match QD128).
        let one = point(cfg(Backend::Null, 1, false), (false, 1));
        let g = select(true, &[], None, &[one]);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].1, vec![(false, 1)]);
    }
}
