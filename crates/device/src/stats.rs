//! Counters for every step of the path, per queue, readable while the
//! device runs (`vblk stats`).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($name:ident { $($field:ident : $doc:literal),* $(,)? }) => {
        #[derive(Debug, Default)]
        pub struct $name {
            $(#[doc = $doc] pub $field: AtomicU64,)*
        }

        impl $name {
            /// (name, value) of every counter, in declaration order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field.load(Ordering::Relaxed)),)*]
            }

            /// Zero every counter.
            pub fn clear(&self) {
                $(self.$field.store(0, Ordering::Relaxed);)*
            }
        }
    };
}

counters!(QueueStats {
    notify_legacy: "kicks through the legacy QUEUE_NOTIFY register",
    notify_modern: "kicks through the modern notify region",
    notify_eventfd: "kicks through an eventfd (vhost-user kick, ioeventfd)",
    drains: "times the avail ring was drained",
    chains_popped: "descriptor chains popped from the avail ring",
    malformed_chains: "chains returned unexecuted (no header or no status byte)",
    req_in: "IN requests",
    req_out: "OUT requests",
    req_flush: "FLUSH requests",
    req_get_id: "GET_ID requests",
    req_discard: "DISCARD requests",
    req_write_zeroes: "WRITE_ZEROES requests",
    req_unsupported: "requests of an unknown type",
    status_ok: "requests completed with VIRTIO_BLK_S_OK",
    status_ioerr: "requests completed with VIRTIO_BLK_S_IOERR",
    status_unsupp: "requests completed with VIRTIO_BLK_S_UNSUPP",
    backend_errors: "requests the storage failed (EIO, ENOSPC, short I/O)",
    bad_address: "requests whose buffers lie outside guest memory",
    broken_rings: "chains that broke the ring (descriptor loop, bad indirect table, over 4 GiB)",
    submits: "batches submitted to the storage engine",
    reaps: "completion rounds (used entries published together)",
    engine_errors: "storage engine submit or reap failures (retried)",
    quiesces: "waits for every in-flight request (stop, reset, memory change)",
    stuck_io: "times in-flight I/O was still outstanding after the stuck threshold",
    backend_ios: "I/Os submitted to the storage engine (after merging)",
    merged: "requests merged into a neighbour's I/O",
    bytes_read: "bytes read for the guest",
    bytes_written: "bytes written for the guest",
    used_pushes: "chains put on the used ring",
    interrupts: "interrupts requested from the transport",
    interrupts_suppressed: "interrupts skipped (EVENT_IDX / NO_INTERRUPT)",
    msix: "interrupts delivered as MSI-X",
    intx: "interrupts delivered as INTx",
    eventfd_signals: "interrupts delivered through a call eventfd",
});

counters!(DeviceStats {
    resets: "device resets",
    needs_reset: "times the device was marked DEVICE_NEEDS_RESET",
    config_interrupts: "configuration-change interrupts",
    connections: "front-end connections accepted",
    disconnects: "front-end disconnections",
    bad_register_writes: "register writes refused or ignored",
});

/// All counters of one device.
#[derive(Debug)]
pub struct Stats {
    pub device: DeviceStats,
    pub queues: Vec<QueueStats>,
}

impl Stats {
    pub fn new(num_queues: usize) -> Self {
        Stats {
            device: DeviceStats::default(),
            queues: (0..num_queues).map(|_| QueueStats::default()).collect(),
        }
    }

    /// The queue's counters; out-of-range indexes share the last queue's.
    pub fn queue(&self, i: usize) -> &QueueStats {
        &self.queues[i.min(self.queues.len() - 1)]
    }

    pub fn to_json(&self) -> serde_json::Value {
        let obj = |v: Vec<(&'static str, u64)>| {
            serde_json::Value::Object(
                v.into_iter()
                    .map(|(k, n)| (k.to_string(), n.into()))
                    .collect(),
            )
        };
        serde_json::json!({
            "device": obj(self.device.snapshot()),
            "queues": self.queues.iter().map(|q| obj(q.snapshot())).collect::<Vec<_>>(),
        })
    }
}

/// Add one to a counter.
#[inline]
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Add `n` to a counter.
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Render a stats JSON document (as produced by [`Stats::to_json`]) as a
/// human table: one row per counter, one column per queue.
pub fn render_table(v: &serde_json::Value) -> String {
    let mut s = String::new();
    if let Some(d) = v.get("device").and_then(|d| d.as_object()) {
        s.push_str("device\n");
        for (k, n) in d {
            s.push_str(&format!("  {k:<24} {n}\n"));
        }
    }
    let queues = v
        .get("queues")
        .and_then(|q| q.as_array())
        .cloned()
        .unwrap_or_default();
    if let Some(first) = queues.first().and_then(|q| q.as_object()) {
        s.push_str(&format!("{:<26}", "queue"));
        for i in 0..queues.len() {
            s.push_str(&format!("{:>14}", i));
        }
        s.push('\n');
        for k in first.keys() {
            s.push_str(&format!("  {k:<24}"));
            for q in &queues {
                s.push_str(&format!(
                    "{:>14}",
                    q.get(k).and_then(|x| x.as_u64()).unwrap_or(0)
                ));
            }
            s.push('\n');
        }
    }
    s
}
