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

            /// (name, description) of every counter, in declaration order.
            pub fn docs() -> &'static [(&'static str, &'static str)] {
                &[$((stringify!($field), $doc),)*]
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
    fua_writes: "writes and write-zeroes made durable before completing (write-through)",
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
    resizes: "online resizes (vblk resize)",
    cache_mode_changes: "write-cache mode switches by the driver (CONFIG_WCE)",
    backend_channel_notifications: "configuration changes sent on the vhost-user back-end channel",
});

/// Upper bounds of the latency histogram's buckets, in microseconds (the
/// last bucket, +Inf, is implied).
pub const LATENCY_BUCKETS_US: [u64; 13] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

/// Request latency, from the moment a request is planned to the moment its
/// last storage operation completes (submit → complete), per queue.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last one is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn record(&self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// (non-cumulative bucket counts, +Inf last; sum in nanoseconds).
    pub fn snapshot(&self) -> (Vec<u64>, u64) {
        (
            self.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            self.sum_ns.load(Ordering::Relaxed),
        )
    }
}

/// All counters of one device.
#[derive(Debug)]
pub struct Stats {
    pub device: DeviceStats,
    pub queues: Vec<QueueStats>,
    /// Per queue: request latency.
    pub latency: Vec<Histogram>,
}

impl Stats {
    pub fn new(num_queues: usize) -> Self {
        Stats {
            device: DeviceStats::default(),
            queues: (0..num_queues).map(|_| QueueStats::default()).collect(),
            latency: (0..num_queues).map(|_| Histogram::default()).collect(),
        }
    }

    /// The queue's latency histogram (out of range: the last queue's).
    pub fn latency(&self, i: usize) -> &Histogram {
        &self.latency[i.min(self.latency.len() - 1)]
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
        let latency: Vec<serde_json::Value> = self
            .latency
            .iter()
            .map(|h| {
                let (counts, sum_ns) = h.snapshot();
                serde_json::json!({ "buckets_us": LATENCY_BUCKETS_US, "counts": counts, "sum_ns": sum_ns })
            })
            .collect();
        serde_json::json!({
            "device": obj(self.device.snapshot()),
            "queues": self.queues.iter().map(|q| obj(q.snapshot())).collect::<Vec<_>>(),
            "latency": latency,
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

/// Render a stats JSON document (as produced by [`Stats::to_json`]) in the
/// Prometheus text exposition format (version 0.0.4): every counter as
/// `vblk_<name>_total` (per queue with a `queue` label, device-wide ones as
/// `vblk_device_<name>_total`) and the latency histograms as
/// `vblk_request_latency_seconds`.
pub fn render_prometheus(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let doc = |docs: &[(&str, &str)], k: &str| {
        docs.iter()
            .find(|(n, _)| *n == k)
            .map_or("", |(_, d)| *d)
            .to_string()
    };
    if let Some(d) = v.get("device").and_then(|d| d.as_object()) {
        for (k, n) in d {
            let name = format!("vblk_device_{k}_total");
            let _ = writeln!(s, "# HELP {name} {}", doc(DeviceStats::docs(), k));
            let _ = writeln!(s, "# TYPE {name} counter");
            let _ = writeln!(s, "{name} {}", n.as_u64().unwrap_or(0));
        }
    }
    let queues = v
        .get("queues")
        .and_then(|q| q.as_array())
        .cloned()
        .unwrap_or_default();
    if let Some(first) = queues.first().and_then(|q| q.as_object()) {
        for k in first.keys() {
            let name = format!("vblk_{k}_total");
            let _ = writeln!(s, "# HELP {name} {}", doc(QueueStats::docs(), k));
            let _ = writeln!(s, "# TYPE {name} counter");
            for (i, q) in queues.iter().enumerate() {
                let n = q.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
                let _ = writeln!(s, "{name}{{queue=\"{i}\"}} {n}");
            }
        }
    }
    if let Some(lat) = v.get("latency").and_then(|l| l.as_array()) {
        let name = "vblk_request_latency_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} Request latency from submission to completion, per queue."
        );
        let _ = writeln!(s, "# TYPE {name} histogram");
        for (i, h) in lat.iter().enumerate() {
            let counts: Vec<u64> = h
                .get("counts")
                .and_then(|c| c.as_array())
                .map(|c| c.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
                .unwrap_or_default();
            let mut cumulative = 0u64;
            for (b, c) in LATENCY_BUCKETS_US.iter().zip(counts.iter()) {
                cumulative = cumulative.saturating_add(*c);
                let le = *b as f64 / 1e6;
                let _ = writeln!(s, "{name}_bucket{{queue=\"{i}\",le=\"{le}\"}} {cumulative}");
            }
            let total: u64 = counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
            let _ = writeln!(s, "{name}_bucket{{queue=\"{i}\",le=\"+Inf\"}} {total}");
            let sum_ns = h.get("sum_ns").and_then(|x| x.as_u64()).unwrap_or(0);
            let _ = writeln!(s, "{name}_sum{{queue=\"{i}\"}} {}", sum_ns as f64 / 1e9);
            let _ = writeln!(s, "{name}_count{{queue=\"{i}\"}} {total}");
        }
    }
    s
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

#[cfg(test)]
mod prometheus_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latencies_land_in_their_buckets_and_render_cumulatively() {
        let s = Stats::new(2);
        s.latency(0).record(Duration::from_micros(5)); // <= 10 µs
        s.latency(0).record(Duration::from_micros(10)); // <= 10 µs
        s.latency(0).record(Duration::from_micros(300)); // <= 500 µs
        s.latency(0).record(Duration::from_secs(5)); // +Inf
        inc(&s.queue(1).req_in);
        let (counts, sum) = s.latency(0).snapshot();
        assert_eq!(counts[0], 2);
        assert_eq!(counts[5], 1);
        assert_eq!(counts[LATENCY_BUCKETS_US.len()], 1);
        assert_eq!(sum, 5_000_315_000);
        let text = render_prometheus(&s.to_json());
        assert!(
            text.contains("vblk_request_latency_seconds_bucket{queue=\"0\",le=\"0.00001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("vblk_request_latency_seconds_bucket{queue=\"0\",le=\"0.00025\"} 2\n")
        );
        assert!(text.contains("vblk_request_latency_seconds_bucket{queue=\"0\",le=\"0.0005\"} 3\n"));
        assert!(text.contains("vblk_request_latency_seconds_bucket{queue=\"0\",le=\"1\"} 3\n"));
        assert!(text.contains("vblk_request_latency_seconds_bucket{queue=\"0\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("vblk_request_latency_seconds_count{queue=\"0\"} 4\n"));
        assert!(text.contains("vblk_request_latency_seconds_sum{queue=\"0\"} 5.000315\n"));
        assert!(text.contains("# HELP vblk_req_in_total IN requests\n"));
        assert!(text.contains("vblk_req_in_total{queue=\"1\"} 1\n"));
        assert!(text.contains("# TYPE vblk_device_resets_total counter\n"));
    }
}
