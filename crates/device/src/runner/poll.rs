//! Busy-polling: before the runner thread sleeps, it watches every active
//! queue's avail ring and engine for an adaptive window (kicks off while it
//! does).

use std::time::{Duration, Instant};

use super::thread::RunnerThread;

impl RunnerThread {
    /// Busy-poll every active queue's avail ring and engine for up to its
    /// adaptive window. Returns whether work was found.
    pub(super) fn poll(&mut self) -> bool {
        let max = self.opts.poll;
        let window = self
            .queues
            .iter()
            .filter(|q| q.active.as_ref().is_some_and(|a| !a.broken))
            .map(|q| q.poll_window)
            .max()
            .unwrap_or(Duration::ZERO);
        if window.is_zero() {
            return false;
        }
        // No kicks while we watch the ring ourselves: the driver saves its
        // notification (a syscall) for every request found by polling.
        for q in &mut self.queues {
            if let Some(a) = q.active.as_mut().filter(|a| !a.broken) {
                let _ = q.worker.set_notification(&mut a.queue, &*a.mem, false);
            }
        }
        let deadline = Instant::now() + window;
        let mut found = false;
        'outer: while Instant::now() < deadline {
            for q in &mut self.queues {
                let Some(a) = q.active.as_mut() else { continue };
                if a.broken {
                    continue;
                }
                let pending = q.worker.has_pending(&a.queue, &*a.mem);
                let done = q.worker.in_flight() > 0
                    && q.worker.reap(&mut a.queue, &*a.mem, 0).unwrap_or(0) > 0;
                if done {
                    let _ = q.worker.publish(&mut a.queue, &*a.mem, &*a.irq);
                }
                if pending || done {
                    found = true;
                    break 'outer;
                }
            }
            if !self
                .ctl
                .cmds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
            {
                return true;
            }
            std::hint::spin_loop();
        }
        if !found {
            // Kicks back on before sleeping; chains that raced in are work.
            for q in &mut self.queues {
                if let Some(a) = q.active.as_mut().filter(|a| !a.broken) {
                    found |= q
                        .worker
                        .set_notification(&mut a.queue, &*a.mem, true)
                        .unwrap_or(true);
                }
            }
        }
        for q in &mut self.queues {
            q.poll_window = if found {
                (q.poll_window * 2).min(max)
            } else {
                (q.poll_window / 2).max(max / 16)
            };
        }
        found
    }
}
