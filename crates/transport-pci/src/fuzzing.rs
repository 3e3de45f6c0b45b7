//! Fuzz body for the `cargo fuzz` target `pci_registers` (fuzz/), also run
//! on stable by `tests/fuzz_smoke.rs`. Built only with the `fuzzing`
//! feature: none of it is in the release binary. Not API.
//!
//! Bytes → guest memory holding fuzzer-chosen ring bytes, then a sequence
//! of register accesses on a [`PciFunction`] (config space, the legacy
//! BAR0, the MSI-X table and PBA in BAR1, the modern common / ISR / device
//! / notify structures in BAR4, and through them the PCI_CFG window),
//! kicks, resets and guest-memory changes (a guest writing its rings; a
//! DMA unmap or remap under `pause`, as the vfio-user server does); then a
//! function reset. The queues run on their own threads, as in the daemon.
//!
//! Checks: no panic (on any thread: under `cargo fuzz` a panic aborts) and
//! no hang; the PCI identity never changes; a read-only disk is never
//! written; after the function reset the device status, queue enables and
//! MSI-X control read 0; no thread or fd outlives the function (when
//! asked).
//!
//! Input layout:
//!
//! ```text
//! input := opts:u8 image_len:u16le image[image_len] op*
//! opts  : bit 0 read-only disk; bit 1 one queue (else two); bit 2 no
//!         interrupt lines (else a counting line per MSI-X vector and INTx)
//! image : guest bytes at guest address 0 (region A: 0..0x40000; region B
//!         0x40000..0x41000 right after it; region C at 0x100000, 4 KiB)
//! op    := k:u8 args, by k % 12:
//!   0 config read   off:u16 w:u8
//!   1 config write  off:u16 w:u8 value:u64
//!   2 BAR read      bar:u8 off:u16 w:u8
//!   3 BAR write     bar:u8 off:u16 w:u8 value:u64
//!   4 common cfg    field:u8 value:u32   (a field of BAR4's common cfg,
//!                                          at its offset and width)
//!   5 legacy reg    field:u8 value:u32   (a BAR0 register, same)
//!   6 notify        q:u8                 (bit 7: legacy path)
//!   7 settle
//!   8 reset         b:u8                 (bit 0: function reset)
//!   9 guest write   addr:u16 len:u8 bytes[len]  (at addr * 4)
//!  10 memory change m:u8  (m % 3: A unmapped / A shortened to 0x8000 /
//!                          back to A+B+C; under `pause`)
//!  11 MSI-X entry   entry:u8 word:u8 value:u32
//! w     : width [1, 2, 4, 8][w & 3]; with bit 2 set, any of 0..=8
//!         ((w >> 3) % 9)
//! ```

use std::sync::Arc;

use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use crate::irq::{CountingLine, Line};
use crate::regs::{common, layout::*, legacy, msix as msix_regs};
use crate::PciFunction;

/// Disk behind the function.
pub const DISK: u64 = 64 * 1024;
/// Largest queue (legacy queues have exactly this size).
pub const QUEUE_SIZE: u16 = 8;
const REGION_A: usize = 0x4_0000;
const MAX_OPS: usize = 512;

/// Modern common-config fields (offset, width), as the driver sees them.
pub const COMMON_FIELDS: &[(u64, usize)] = &[
    (common::DEVICE_FEATURE_SELECT, 4),
    (common::DEVICE_FEATURE, 4),
    (common::DRIVER_FEATURE_SELECT, 4),
    (common::DRIVER_FEATURE, 4),
    (common::MSIX_CONFIG, 2),
    (common::NUM_QUEUES, 2),
    (common::DEVICE_STATUS, 1),
    (common::CONFIG_GENERATION, 1),
    (common::QUEUE_SELECT, 2),
    (common::QUEUE_SIZE, 2),
    (common::QUEUE_MSIX_VECTOR, 2),
    (common::QUEUE_ENABLE, 2),
    (common::QUEUE_NOTIFY_OFF, 2),
    (common::QUEUE_DESC_LO, 4),
    (common::QUEUE_DESC_HI, 4),
    (common::QUEUE_DRIVER_LO, 4),
    (common::QUEUE_DRIVER_HI, 4),
    (common::QUEUE_DEVICE_LO, 4),
    (common::QUEUE_DEVICE_HI, 4),
];

/// Legacy BAR0 registers (offset, width).
pub const LEGACY_FIELDS: &[(u64, usize)] = &[
    (legacy::HOST_FEATURES, 4),
    (legacy::GUEST_FEATURES, 4),
    (legacy::QUEUE_PFN, 4),
    (legacy::QUEUE_NUM, 2),
    (legacy::QUEUE_SEL, 2),
    (legacy::QUEUE_NOTIFY, 2),
    (legacy::STATUS, 1),
    (legacy::ISR, 1),
    (legacy::MSI_CONFIG_VECTOR, 2),
    (legacy::MSI_QUEUE_VECTOR, 2),
];

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

fn width(w: u8) -> usize {
    if w & 4 != 0 {
        usize::from(w >> 3) % 9
    } else {
        [1, 2, 4, 8][usize::from(w & 3)]
    }
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

/// Run the operations `data` describes (see the module docs); if
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

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

/// Op codes (k % 12).
pub mod op {
    pub const CFG_READ: u8 = 0;
    pub const CFG_WRITE: u8 = 1;
    pub const BAR_READ: u8 = 2;
    pub const BAR_WRITE: u8 = 3;
    pub const COMMON: u8 = 4;
    pub const LEGACY: u8 = 5;
    pub const NOTIFY: u8 = 6;
    pub const SETTLE: u8 = 7;
    pub const RESET: u8 = 8;
    pub const GUEST_WRITE: u8 = 9;
    pub const MEMORY: u8 = 10;
    pub const MSIX_ENTRY: u8 = 11;
}

/// Index of a field in [`COMMON_FIELDS`] / [`LEGACY_FIELDS`].
fn field(fields: &[(u64, usize)], off: u64) -> u8 {
    fields.iter().position(|&(o, _)| o == off).unwrap_or(0) as u8
}

/// Builds an input.
pub struct Builder {
    opts: u8,
    image: Vec<u8>,
    ops: Vec<u8>,
}

impl Builder {
    pub fn new(opts: u8) -> Builder {
        Builder {
            opts,
            image: Vec::new(),
            ops: Vec::new(),
        }
    }

    pub fn image(&mut self, at: usize, b: &[u8]) -> &mut Self {
        if self.image.len() < at + b.len() {
            self.image.resize(at + b.len(), 0);
        }
        self.image[at..at + b.len()].copy_from_slice(b);
        self
    }

    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.ops.extend_from_slice(b);
        self
    }

    pub fn common(&mut self, off: u64, v: u32) -> &mut Self {
        self.raw(&[op::COMMON, field(COMMON_FIELDS, off)])
            .raw(&v.to_le_bytes())
    }

    pub fn legacy(&mut self, off: u64, v: u32) -> &mut Self {
        self.raw(&[op::LEGACY, field(LEGACY_FIELDS, off)])
            .raw(&v.to_le_bytes())
    }

    pub fn cfg_write(&mut self, off: u16, w: u8, v: u64) -> &mut Self {
        self.raw(&[op::CFG_WRITE])
            .raw(&off.to_le_bytes())
            .raw(&[w])
            .raw(&v.to_le_bytes())
    }

    pub fn cfg_read(&mut self, off: u16, w: u8) -> &mut Self {
        self.raw(&[op::CFG_READ]).raw(&off.to_le_bytes()).raw(&[w])
    }

    pub fn bar_read(&mut self, bar: u8, off: u16, w: u8) -> &mut Self {
        self.raw(&[op::BAR_READ, bar])
            .raw(&off.to_le_bytes())
            .raw(&[w])
    }

    pub fn bar_write(&mut self, bar: u8, off: u16, w: u8, v: u64) -> &mut Self {
        self.raw(&[op::BAR_WRITE, bar])
            .raw(&off.to_le_bytes())
            .raw(&[w])
            .raw(&v.to_le_bytes())
    }

    /// A chain (header at 0x3000 + 0x100 n, 512 bytes at 0x4000 + 0x200 n, status
    /// at 0x5000 + n) as descriptors 3n.. of a table at `desc`, published
    /// as avail entry `slot` (index `slot + 1`) of the avail ring at
    /// `avail`. `t`: request type (0 IN, 1 OUT, 4 FLUSH).
    pub fn chain(&mut self, desc: u64, avail: u64, n: u16, slot: u16, t: u32) -> &mut Self {
        let hdr = 0x3000 + 0x100 * u64::from(n);
        let status = 0x5000 + u64::from(n);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&(u64::from(n) + 1).to_le_bytes());
        self.image(hdr as usize, &h);
        self.image(status as usize, &[0xee]);
        let data = 0x4000 + 0x200 * u64::from(n);
        self.image(data as usize, &[0x5a; 512]);
        let write = if t == 0 { 2 } else { 0 };
        let d0 = 3 * n;
        let descs = [
            (hdr, 16u32, 1u16, d0 + 1),
            (data, 512, 1 | write, d0 + 2),
            (status, 1, 2, 0),
        ];
        for (i, (a, l, fl, nx)) in descs.iter().enumerate() {
            let mut d = Vec::new();
            d.extend_from_slice(&a.to_le_bytes());
            d.extend_from_slice(&l.to_le_bytes());
            d.extend_from_slice(&fl.to_le_bytes());
            d.extend_from_slice(&nx.to_le_bytes());
            self.image((desc + 16 * (u64::from(d0) + i as u64)) as usize, &d);
        }
        self.image(
            (avail + 4 + 2 * u64::from(slot)) as usize,
            &d0.to_le_bytes(),
        );
        self.image((avail + 2) as usize, &(slot + 1).to_le_bytes())
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut v = vec![self.opts];
        v.extend_from_slice(&(self.image.len() as u16).to_le_bytes());
        v.extend_from_slice(&self.image);
        v.extend_from_slice(&self.ops);
        v
    }

    /// The modern probe up to DRIVER_OK for queue 0 (desc 0, avail 0x1000,
    /// used 0x2000) and, with two queues, queue 1 (0x800 / 0x1800 /
    /// 0x2800), with `features` acked and MSI-X vectors 0 (config), 1, 2.
    pub fn modern_probe(&mut self, features: u64, queues: u16, msix: bool) -> &mut Self {
        use crate::regs::status::*;
        if msix {
            self.cfg_write(
                (CAP_MSIX + msix_regs::CAP_CONTROL) as u16,
                1,
                u64::from(msix_regs::CTRL_ENABLE),
            );
        }
        self.common(common::DEVICE_STATUS, u32::from(ACKNOWLEDGE))
            .common(common::DEVICE_STATUS, u32::from(ACKNOWLEDGE | DRIVER))
            .common(common::DEVICE_FEATURE_SELECT, 1)
            .bar_read(MODERN_BAR as u8, common::DEVICE_FEATURE as u16, 2)
            .common(common::DRIVER_FEATURE_SELECT, 0)
            .common(common::DRIVER_FEATURE, features as u32)
            .common(common::DRIVER_FEATURE_SELECT, 1)
            .common(common::DRIVER_FEATURE, (features >> 32) as u32)
            .common(
                common::DEVICE_STATUS,
                u32::from(ACKNOWLEDGE | DRIVER | FEATURES_OK),
            )
            .common(common::MSIX_CONFIG, 0);
        for q in 0..queues {
            let o = 0x800 * u32::from(q);
            self.common(common::QUEUE_SELECT, u32::from(q))
                .common(common::QUEUE_SIZE, u32::from(QUEUE_SIZE))
                .common(common::QUEUE_MSIX_VECTOR, u32::from(q) + 1)
                .common(common::QUEUE_DESC_LO, o)
                .common(common::QUEUE_DESC_HI, 0)
                .common(common::QUEUE_DRIVER_LO, 0x1000 + o)
                .common(common::QUEUE_DEVICE_LO, 0x2000 + o)
                .common(common::QUEUE_ENABLE, 1);
        }
        self.common(
            common::DEVICE_STATUS,
            u32::from(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK),
        )
    }
}

/// The features the seeds ack: VERSION_1, FLUSH, SEG_MAX, BLK_SIZE, MQ,
/// and EVENT_IDX if `event_idx`.
pub fn seed_features(event_idx: bool) -> u64 {
    (1 << 32) | (1 << 9) | (1 << 2) | (1 << 6) | (1 << 12) | if event_idx { 1 << 29 } else { 0 }
}

/// A named input.
pub type Seed = (&'static str, Vec<u8>);

/// Well-formed driver sequences: the modern probe with an IN request on
/// each queue (MSI-X and INTx), the legacy probe with a request (INTx, and
/// with MSI-X), the PCI_CFG window, MSI-X masking, a memory unmap under a
/// running queue, resets at several stages, and a sweep of every
/// register at every width.
pub fn seeds() -> Vec<Seed> {
    use crate::regs::status::*;
    let mut out: Vec<Seed> = Vec::new();
    let notify = |b: &mut Builder, q: u8| {
        b.raw(&[op::NOTIFY, q]);
    };

    // Modern, MSI-X, two queues, an IN on each, EVENT_IDX.
    let mut b = Builder::new(0);
    b.chain(0, 0x1000, 0, 0, 0)
        .chain(0x800, 0x1800, 1, 0, 1)
        .modern_probe(seed_features(true), 2, true);
    notify(&mut b, 0);
    notify(&mut b, 1);
    b.raw(&[op::SETTLE]).bar_read(1, 0x800, 8);
    out.push(("modern_msix", b.bytes()));

    // Modern without MSI-X: INTx and the ISR (read clears); a flush.
    let mut b = Builder::new(2);
    b.chain(0, 0x1000, 0, 0, 4)
        .modern_probe(seed_features(false), 1, false);
    notify(&mut b, 0);
    b.raw(&[op::SETTLE])
        .cfg_read(6, 2)
        .bar_read(MODERN_BAR as u8, ISR_OFFSET as u16, 1)
        .bar_read(MODERN_BAR as u8, ISR_OFFSET as u16, 1);
    out.push(("modern_intx_flush", b.bytes()));

    // Legacy: QUEUE_PFN 1 (desc 0x1000, avail 0x1080, used 0x2000).
    for (name, msix) in [("legacy_intx", false), ("legacy_msix", true)] {
        let mut b = Builder::new(2);
        b.chain(0x1000, 0x1080, 0, 0, 0);
        if msix {
            b.cfg_write(
                (CAP_MSIX + msix_regs::CAP_CONTROL) as u16,
                1,
                u64::from(msix_regs::CTRL_ENABLE),
            )
            .legacy(legacy::MSI_CONFIG_VECTOR, 0)
            .legacy(legacy::MSI_QUEUE_VECTOR, 1);
        }
        b.legacy(legacy::STATUS, u32::from(ACKNOWLEDGE))
            .legacy(legacy::STATUS, u32::from(ACKNOWLEDGE | DRIVER))
            .bar_read(0, 0, 4)
            .legacy(legacy::GUEST_FEATURES, (1 << 9) | (1 << 6))
            .legacy(legacy::QUEUE_SEL, 0)
            .bar_read(0, legacy::QUEUE_NUM as u16, 2)
            .legacy(legacy::QUEUE_PFN, 1)
            .legacy(legacy::STATUS, u32::from(ACKNOWLEDGE | DRIVER | DRIVER_OK))
            .raw(&[op::NOTIFY, 0x80, op::SETTLE])
            .bar_read(0, legacy::ISR as u16, 1)
            .bar_read(0, if msix { 24 } else { 20 }, 8);
        out.push((name, b.bytes()));
    }

    // The PCI_CFG window: bar 4, offset DEVICE_STATUS, length 1; read it,
    // write ACKNOWLEDGE through it; then length 4 at the device config.
    let c = CAP_PCI_CFG as u16;
    let mut b = Builder::new(0);
    b.cfg_write(c + 4, 1, MODERN_BAR as u64)
        .cfg_write(c + 8, 4, common::DEVICE_STATUS)
        .cfg_write(c + 12, 4, 1)
        .cfg_read(c + 16, 4)
        .cfg_write(c + 16, 1, 1)
        .cfg_write(c + 8, 4, DEVICE_OFFSET)
        .cfg_write(c + 12, 4, 4)
        .cfg_read(c + 16, 4)
        .cfg_write(c + 4, 1, 0)
        .cfg_write(c + 8, 4, legacy::STATUS)
        .cfg_write(c + 12, 4, 1)
        .cfg_read(c + 16, 1);
    out.push(("pci_cfg_window", b.bytes()));

    // MSI-X: program entries, function mask, per-vector mask, kick while
    // masked (pending bit), unmask (delivered), PBA read.
    let mut b = Builder::new(2);
    b.chain(0, 0x1000, 0, 0, 0)
        .modern_probe(seed_features(false), 1, true);
    for e in 0..2u8 {
        b.raw(&[op::MSIX_ENTRY, e, 0])
            .raw(&0xfee0_0000u32.to_le_bytes())
            .raw(&[op::MSIX_ENTRY, e, 2])
            .raw(&(0x40 + u32::from(e)).to_le_bytes())
            .raw(&[op::MSIX_ENTRY, e, 3])
            .raw(&1u32.to_le_bytes());
    }
    b.raw(&[op::NOTIFY, 0, op::SETTLE])
        .bar_read(MSIX_BAR as u8, 0x800, 8)
        .raw(&[op::MSIX_ENTRY, 1, 3])
        .raw(&0u32.to_le_bytes())
        .cfg_write(
            (CAP_MSIX + msix_regs::CAP_CONTROL) as u16,
            2,
            u64::from(msix_regs::CTRL_ENABLE | msix_regs::CTRL_FUNCTION_MASK),
        )
        .cfg_read((CAP_MSIX + msix_regs::CAP_CONTROL) as u16, 2)
        .bar_read(MSIX_BAR as u8, 0x10, 4);
    out.push(("msix_masking", b.bytes()));

    // Region A unmapped under a running queue: the next kick breaks the
    // ring (DEVICE_NEEDS_RESET); a reset and the probe again, A back.
    let mut b = Builder::new(2);
    b.chain(0, 0x1000, 0, 0, 0)
        .modern_probe(seed_features(false), 1, true)
        .raw(&[op::MEMORY, 0]);
    notify(&mut b, 0);
    b.raw(&[op::SETTLE])
        .bar_read(MODERN_BAR as u8, common::DEVICE_STATUS as u16, 1)
        .raw(&[op::RESET, 0, op::MEMORY, 2])
        .modern_probe(seed_features(false), 1, true);
    notify(&mut b, 0);
    b.raw(&[op::SETTLE, op::MEMORY, 1]);
    out.push(("unmap_running", b.bytes()));

    // Resets at every stage, and QUEUE_PFN 0 (a legacy reset).
    let mut b = Builder::new(0);
    b.common(common::DEVICE_STATUS, u32::from(ACKNOWLEDGE))
        .raw(&[op::RESET, 0])
        .common(common::DEVICE_STATUS, u32::from(ACKNOWLEDGE | DRIVER))
        .common(common::DRIVER_FEATURE, 0)
        .common(
            common::DEVICE_STATUS,
            u32::from(ACKNOWLEDGE | DRIVER | FEATURES_OK),
        )
        .raw(&[op::RESET, 1])
        .modern_probe(seed_features(false), 2, true)
        .common(common::DEVICE_STATUS, 0)
        .legacy(legacy::STATUS, 1)
        .legacy(legacy::QUEUE_PFN, 2)
        .legacy(legacy::QUEUE_PFN, 0)
        .raw(&[op::RESET, 1]);
    out.push(("resets", b.bytes()));

    // Every register at widths 1, 2, 4 and 8 (reads), config space too.
    let mut b = Builder::new(0);
    for w in 0..4u8 {
        let step = [1u16, 2, 4, 8][usize::from(w)];
        for off in (0..0x100u16).step_by(usize::from(step.max(4))) {
            b.cfg_read(off, w);
        }
        for off in (0..0x80u16).step_by(usize::from(step)) {
            b.bar_read(0, off, w);
        }
        for off in (0..0x40u16).step_by(usize::from(step)) {
            b.bar_read(MODERN_BAR as u8, off, w);
        }
        b.bar_read(MODERN_BAR as u8, DEVICE_OFFSET as u16, w);
    }
    out.push(("sweep", b.bytes()));

    // A guest refilling its ring after DRIVER_OK (a second request).
    let mut b = Builder::new(2);
    b.chain(0, 0x1000, 0, 0, 0)
        .image(0x4200, &[0x5a; 512])
        .modern_probe(seed_features(false), 1, true);
    notify(&mut b, 0);
    let mut later = Builder::new(0);
    later.chain(0, 0x1000, 1, 1, 1);
    // Descriptors 3..6 and avail entry 1, written by the guest now.
    b.raw(&[op::SETTLE, op::GUEST_WRITE])
        .raw(&(0x30u16 / 4).to_le_bytes())
        .raw(&[48])
        .raw(&later.image[0x30..0x60])
        .raw(&[op::GUEST_WRITE])
        .raw(&(0x3100u16 / 4).to_le_bytes())
        .raw(&[16])
        .raw(&later.image[0x3100..0x3110])
        .raw(&[op::GUEST_WRITE])
        .raw(&(0x1000u16 / 4).to_le_bytes())
        .raw(&[8])
        .raw(&later.image[0x1000..0x1008]);
    notify(&mut b, 0);
    b.raw(&[op::SETTLE]);
    out.push(("refill", b.bytes()));
    out
}
