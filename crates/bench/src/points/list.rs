//! What is measured: the daemon configurations and their (write, QD)
//! points, the quick subset, and what `--only`/`--filter` leave.

use crate::daemons::Config;
use crate::options::{Backend, Point};

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

pub(super) fn point(c: Config, (write, qd): (bool, usize)) -> Point {
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

pub(super) fn config_label(c: Config) -> String {
    format!(
        "{}, {} queue{}, {}",
        c.backend.label(),
        c.queues,
        if c.queues == 1 { "" } else { "s" },
        if c.poll { "polling" } else { "event-driven" }
    )
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
