//! One run of the fuzz body: decode the input, drive the function through
//! it, then reset and check what must hold (identity, read-only disk, reset
//! state, no leaked thread or fd).

use std::sync::Arc;

use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use crate::irq::{CountingLine, Line};
use crate::regs::{common, layout::*, legacy, msix as msix_regs};
use crate::PciFunction;

use super::input::{width, COMMON_FIELDS, DISK, LEGACY_FIELDS, QUEUE_SIZE};

const REGION_A: usize = 0x4_0000;
const MAX_OPS: usize = 512;

/// What one run saw (for the seed tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Operations performed.
    pub ops: usize,
    /// Values of every read, in order.
    pub reads: Vec<u64>,
    /// Interrupts signalled on the MSI-X lines and on INTx.
    pub msix: Vec<u64>,
    pub intx: u64,
    /// The disk's first 8 sectors afterwards.
    pub disk_head: Vec<u8>,
    /// The guest's bytes at 0x5000..0x5010 (where the seeds put statuses).
    pub status_bytes: Vec<u8>,
}

fn pristine() -> Vec<u8> {
    (0..DISK as usize).map(|i| (i % 251) as u8).collect()
}

pub use vblk_testkit::fuzz::process_counts;
use vblk_testkit::fuzz::ByteReader as Reader;

/// Wait briefly for the counts to come back to `before`; panic if not.
pub fn assert_no_leak(before: (usize, usize)) {
    vblk_testkit::fuzz::assert_no_leak(before, "the function");
}

/// The fuzz target: [`run`] with the leak check.
pub fn pci_registers(data: &[u8]) {
    run(data, true);
}

/// Run the operations `data` describes (see the `fuzzing` module docs); if
/// `check_leaks`, check that no thread or fd outlives the function (only
/// meaningful when nothing else in the process opens any meanwhile).
pub fn run(data: &[u8], check_leaks: bool) -> Outcome {
    let before = process_counts();
    let out = run_inner(data);
    if check_leaks {
        assert_no_leak(before);
    }
    out
}

fn run_inner(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut r = Reader(data);
    let (Some(opts), Some(image_len)) = (r.u8(), r.u16()) else {
        return out;
    };
    let image = r.take(usize::from(image_len).min(REGION_A));

    let region = |at: u64, size: usize| {
        GuestRegionMmap::<()>::from_range(GuestAddress(at), size, None)
            .ok()
            .map(Arc::new)
    };
    let (Some(a), Some(a_short), Some(b), Some(c)) = (
        region(0, REGION_A),
        region(0, 0x8000),
        region(REGION_A as u64, 0x1000),
        region(0x10_0000, 0x1000),
    ) else {
        return out;
    };
    // Three layouts over the same regions (same bytes): A+B+C, B+C (A
    // unmapped), a shorter A'+B+C.
    let layout = |v: &[&Arc<GuestRegionMmap>]| {
        GuestMemoryMmap::from_arc_regions(v.iter().map(|r| Arc::clone(r)).collect()).ok()
    };
    let (Some(full), without_a, short_a) = (
        layout(&[&a, &b, &c]),
        layout(&[&b, &c]),
        layout(&[&a_short, &b, &c]),
    ) else {
        return out;
    };
    let _ = full.write_slice(image, GuestAddress(0));

    let backend = MemBackend::new(DISK);
    backend.fill(0, &pristine());
    let mut cfg = BlkConfig::new(DISK);
    cfg.read_only = opts & 1 != 0;
    cfg.num_queues = if opts & 2 != 0 { 1 } else { 2 };
    cfg.queue_size = QUEUE_SIZE;
    let dev = Arc::new(BlkDevice::new(cfg, Arc::new(backend.clone())));
    let mem = vm_memory::GuestMemoryAtomic::new(full.clone());
    let Ok(mut f) = PciFunction::new(dev, mem) else {
        return out;
    };
    let msix: Vec<Arc<CountingLine>> = if opts & 4 == 0 {
        (0..f.msix_layout().vectors)
            .map(|_| Arc::new(CountingLine::default()))
            .collect()
    } else {
        Vec::new()
    };
    for (i, l) in msix.iter().enumerate() {
        f.irq().set_msix_line(i, Some(l.clone() as Arc<dyn Line>));
    }
    let intx = Arc::new(CountingLine::default());
    if opts & 4 == 0 {
        f.irq().set_intx_line(Some(intx.clone() as Arc<dyn Line>));
    }

    let identity = cfg_read(&mut f, 0, 4);
    assert_eq!(identity, 0x1001_1af4);
    while out.ops < MAX_OPS {
        let Some(k) = r.u8() else { break };
        out.ops += 1;
        match k % 12 {
            0 => {
                let (Some(off), Some(w)) = (r.u16(), r.u8()) else {
                    break;
                };
                let mut b = [0u8; 8];
                f.config_read(u64::from(off & 0x1ff), &mut b[..width(w)]);
                out.reads.push(u64::from_le_bytes(b));
            }
            1 => {
                let (Some(off), Some(w), Some(v)) = (r.u16(), r.u8(), r.u64()) else {
                    break;
                };
                f.config_write(u64::from(off & 0x1ff), &v.to_le_bytes()[..width(w)]);
            }
            2 => {
                let (Some(bar), Some(off), Some(w)) = (r.u8(), r.u16(), r.u8()) else {
                    break;
                };
                let mut b = [0u8; 8];
                f.bar_read(usize::from(bar % 8), u64::from(off), &mut b[..width(w)]);
                out.reads.push(u64::from_le_bytes(b));
            }
            3 => {
                let (Some(bar), Some(off), Some(w), Some(v)) = (r.u8(), r.u16(), r.u8(), r.u64())
                else {
                    break;
                };
                f.bar_write(
                    usize::from(bar % 8),
                    u64::from(off),
                    &v.to_le_bytes()[..width(w)],
                );
            }
            4 | 5 => {
                let (Some(i), Some(v)) = (r.u8(), r.u32()) else {
                    break;
                };
                let (bar, fields) = if k % 12 == 4 {
                    (MODERN_BAR, COMMON_FIELDS)
                } else {
                    (LEGACY_BAR, LEGACY_FIELDS)
                };
                let (off, w) = fields[usize::from(i) % fields.len()];
                f.bar_write(bar, COMMON_OFFSET + off, &v.to_le_bytes()[..w]);
            }
            6 => {
                let Some(q) = r.u8() else { break };
                if q & 0x80 != 0 {
                    f.bar_write(
                        LEGACY_BAR,
                        legacy::QUEUE_NOTIFY,
                        &u16::from(q & 3).to_le_bytes(),
                    );
                } else {
                    let at = NOTIFY_OFFSET + u64::from(NOTIFY_OFF_MULTIPLIER) * u64::from(q & 3);
                    f.bar_write(MODERN_BAR, at, &u16::from(q & 3).to_le_bytes());
                }
            }
            7 => f.settle(),
            8 => {
                let Some(b) = r.u8() else { break };
                if b & 1 != 0 {
                    f.function_reset();
                } else {
                    f.reset();
                }
            }
            9 => {
                let (Some(addr), Some(len)) = (r.u16(), r.u8()) else {
                    break;
                };
                let bytes = r.take(usize::from(len));
                let _ = full.write_slice(bytes, GuestAddress(u64::from(addr) * 4));
            }
            10 => {
                let Some(m) = r.u8() else { break };
                let new = match m % 3 {
                    0 => without_a.clone(),
                    1 => short_a.clone(),
                    _ => Some(full.clone()),
                };
                if let Some(new) = new {
                    // As a DMA unmap: no queue touches guest memory meanwhile.
                    let _paused = f.pause();
                    let atomic = f.memory().clone();
                    let guard = atomic.lock().unwrap_or_else(|e| e.into_inner());
                    guard.replace(new);
                }
            }
            _ => {
                let (Some(e), Some(word), Some(v)) = (r.u8(), r.u8(), r.u32()) else {
                    break;
                };
                let at = msix_regs::ENTRY_SIZE * u64::from(e) + 4 * u64::from(word % 4);
                f.bar_write(MSIX_BAR, at, &v.to_le_bytes());
            }
        }
    }
    assert_eq!(cfg_read(&mut f, 0, 4), identity, "the PCI identity changed");

    f.settle();
    f.function_reset();
    let mut b = [0u8; 1];
    f.bar_read(MODERN_BAR, COMMON_OFFSET + common::DEVICE_STATUS, &mut b);
    assert_eq!(b[0], 0, "device status after a function reset");
    for q in 0..f.device().num_queues() {
        f.bar_write(
            MODERN_BAR,
            COMMON_OFFSET + common::QUEUE_SELECT,
            &q.to_le_bytes(),
        );
        let mut e = [0u8; 2];
        f.bar_read(MODERN_BAR, COMMON_OFFSET + common::QUEUE_ENABLE, &mut e);
        assert_eq!(e, [0, 0], "queue {q} enabled after a function reset");
    }
    let ctrl = cfg_read(&mut f, (CAP_MSIX + msix_regs::CAP_CONTROL) as u64, 2);
    assert_eq!(
        ctrl as u16 & (msix_regs::CTRL_ENABLE | msix_regs::CTRL_FUNCTION_MASK),
        0,
        "MSI-X control after a function reset"
    );
    let mut legacy_status = [0u8; 1];
    f.bar_read(LEGACY_BAR, legacy::STATUS, &mut legacy_status);
    assert_eq!(legacy_status[0], 0);
    let read_only = f.device().config().read_only;
    drop(f);

    out.msix = msix.iter().map(|l| l.count()).collect();
    out.intx = intx.count();
    let disk = backend.snapshot();
    if read_only {
        assert!(disk == pristine(), "read-only disk written");
    }
    out.disk_head = disk[..8 * 512].to_vec();
    let mut s = vec![0u8; 16];
    let _ = full.read_slice(&mut s, GuestAddress(0x5000));
    out.status_bytes = s;
    out
}

fn cfg_read(f: &mut PciFunction, off: u64, n: usize) -> u64 {
    let mut b = [0u8; 8];
    f.config_read(off, &mut b[..n]);
    u64::from_le_bytes(b)
}
