//! The run loop: the CPUs and image paths, then for each run, for each
//! configuration, each daemon started fresh and measured at every point;
//! the [`Report`] at the end.

use std::path::Path;

use super::list::{config_label, point, select, Group};
use super::measure_point::measure_point;
use super::Setup;
use crate::daemons::{self, Daemon};
use crate::images;
use crate::measure::WARMUP;
use crate::options::{Backend, BenchOptions};
use crate::report::{Report, Row};

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
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
