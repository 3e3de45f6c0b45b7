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
//!
//! [`PciFunction`]: crate::PciFunction

// Where each step lives: what the input bytes mean (sizes, register
// tables, widths, op codes: `input`); one run and its checks (`harness`);
// inputs built from driver-level steps (`builder`) and the well-formed
// seed corpus made with it (`seeds`). Module graph: `harness` → `input`,
// `seeds` → `builder` → `input`.
mod harness;
mod input;

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------
mod builder;
mod seeds;

pub use builder::Builder;
pub use harness::{assert_no_leak, pci_registers, process_counts, run, Outcome};
pub use input::{op, COMMON_FIELDS, DISK, LEGACY_FIELDS, QUEUE_SIZE};
pub use seeds::{seed_features, seeds, Seed};
