//! MSI-X: the table and the Pending Bit Array in BAR1, the per-vector and
//! function masks, and one eventfd per vector from the vfio-user client
//! (PCI Local Bus 3.0, 6.8.2).
//!
//! Who owns masking: QEMU's `vfio-user-pci` emulates the MSI-X table in the
//! VMM (it never reads or writes ours) and handles masked vectors itself;
//! it does forward PBA reads and the Message Control writes. A client that
//! does program our table gets the full PCI behaviour: "If a masked vector
//! has its Pending bit set, and the associated underlying interrupt events
//! are somehow satisfied ..." — a masked vector sets its pending bit, and
//! the message is sent when it is unmasked (6.8.2.9). So the per-vector
//! mask bits only count once the client has written our table; the function
//! mask always counts.

use std::sync::Arc;

use crate::line::Line;
use crate::regs::layout::{MSIX_BAR_MIN_SIZE, MSIX_PBA_OFFSET, MSIX_TABLE_OFFSET};
use crate::regs::msix::{ENTRY_SIZE, MAX_VECTORS, VECTOR_CTRL_MASKED};

/// Where the table and PBA are in the MSI-X BAR for a vector count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixLayout {
    pub vectors: usize,
    pub table_offset: u64,
    pub pba_offset: u64,
    pub bar_size: u64,
}

impl MsixLayout {
    /// One vector for configuration changes and one per queue (as Linux
    /// asks for), at most 2048.
    pub fn for_queues(queues: u16) -> Self {
        Self::new((usize::from(queues) + 1).min(MAX_VECTORS))
    }

    pub fn new(vectors: usize) -> Self {
        let vectors = vectors.clamp(1, MAX_VECTORS);
        let table_end = MSIX_TABLE_OFFSET + ENTRY_SIZE * vectors as u64;
        // Table and PBA are QWORD aligned (6.8.2.4, 6.8.2.5).
        let pba_offset = MSIX_PBA_OFFSET.max(table_end.next_multiple_of(8));
        let pba_len = (vectors as u64).div_ceil(64) * 8;
        let bar_size = (pba_offset + pba_len)
            .next_power_of_two()
            .max(MSIX_BAR_MIN_SIZE);
        MsixLayout {
            vectors,
            table_offset: MSIX_TABLE_OFFSET,
            pba_offset,
            bar_size,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Entry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    ctrl: u32,
}

/// What happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Signalled on the vector's eventfd.
    Delivered,
    /// Masked: the pending bit is set.
    Pending,
    /// No eventfd for this vector (the client has not set one up).
    NoLine,
    /// Not a vector of the table.
    NoVector,
}

pub struct Msix {
    enabled: bool,
    function_masked: bool,
    table: Vec<Entry>,
    pba: Vec<u64>,
    /// The client has written our table: honour its per-vector masks.
    table_live: bool,
    lines: Vec<Option<Arc<dyn Line>>>,
}

impl Msix {
    pub fn new(vectors: usize) -> Self {
        Msix {
            enabled: false,
            function_masked: false,
            // "each vector's Mask bit is set after reset" (6.8.2.9)
            table: vec![
                Entry {
                    ctrl: VECTOR_CTRL_MASKED,
                    ..Default::default()
                };
                vectors
            ],
            pba: vec![0; vectors.div_ceil(64)],
            table_live: false,
            lines: vec![None; vectors],
        }
    }

    pub fn vectors(&self) -> usize {
        self.table.len()
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn function_masked(&self) -> bool {
        self.function_masked
    }

    /// The Message Control enable and function-mask bits were written.
    pub fn set_control(&mut self, enabled: bool, function_masked: bool) {
        self.enabled = enabled;
        self.function_masked = function_masked;
        self.deliver_pending();
    }

    fn masked(&self, v: usize) -> bool {
        self.function_masked
            || (self.table_live
                && self
                    .table
                    .get(v)
                    .is_some_and(|e| e.ctrl & VECTOR_CTRL_MASKED != 0))
    }

    fn pending(&self, v: usize) -> bool {
        self.pba[v / 64] & (1 << (v % 64)) != 0
    }

    fn set_pending(&mut self, v: usize, on: bool) {
        if on {
            self.pba[v / 64] |= 1 << (v % 64);
        } else {
            self.pba[v / 64] &= !(1 << (v % 64));
        }
    }

    /// Send vector `v`'s message, or hold it pending while masked.
    pub fn fire(&mut self, v: usize) -> Sent {
        if v >= self.table.len() {
            return Sent::NoVector;
        }
        if self.masked(v) {
            // "the function is prohibited from sending the associated message,
            // and the function must set the associated Pending bit" (6.8.2.9)
            self.set_pending(v, true);
            return Sent::Pending;
        }
        match &self.lines[v] {
            Some(l) => {
                l.signal();
                Sent::Delivered
            }
            None => Sent::NoLine,
        }
    }

    /// "... if the Mask bit is cleared and the Pending bit is set, the
    /// function must schedule sending the associated message, and clear
    /// the Pending bit as soon as the message has been sent." (6.8.2.9)
    fn deliver_pending(&mut self) {
        if !self.enabled {
            return;
        }
        for v in 0..self.table.len() {
            if self.pending(v) && !self.masked(v) {
                self.set_pending(v, false);
                if let Some(l) = &self.lines[v] {
                    l.signal();
                }
            }
        }
    }

    /// A dword of the table, `offset` relative to the table start.
    pub fn table_read(&self, offset: u64) -> u32 {
        let (i, word) = ((offset / ENTRY_SIZE) as usize, (offset % ENTRY_SIZE) / 4);
        let Some(e) = self.table.get(i) else { return 0 };
        match word {
            0 => e.addr_lo,
            1 => e.addr_hi,
            2 => e.data,
            _ => e.ctrl,
        }
    }

    /// Write a dword of the table. Only the mask bit of Vector Control is
    /// writable; the message address and data are the client's business
    /// (the eventfd stands for them) but read back as written.
    pub fn table_write(&mut self, offset: u64, value: u32) {
        let (i, word) = ((offset / ENTRY_SIZE) as usize, (offset % ENTRY_SIZE) / 4);
        let Some(e) = self.table.get_mut(i) else {
            return;
        };
        self.table_live = true;
        match word {
            0 => e.addr_lo = value & !3, // DWORD aligned (6.8.2.6)
            1 => e.addr_hi = value,
            2 => e.data = value,
            _ => e.ctrl = value & VECTOR_CTRL_MASKED,
        }
        self.deliver_pending();
    }

    /// A dword of the PBA, `offset` relative to the PBA start. Read-only.
    pub fn pba_read(&self, offset: u64) -> u32 {
        let q = (offset / 8) as usize;
        let Some(bits) = self.pba.get(q) else {
            return 0;
        };
        (bits >> ((offset % 8) / 4 * 32)) as u32
    }

    pub fn set_line(&mut self, v: usize, line: Option<Arc<dyn Line>>) {
        if let Some(slot) = self.lines.get_mut(v) {
            *slot = line;
        }
    }

    pub fn clear_lines(&mut self) {
        self.lines.iter_mut().for_each(|l| *l = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::CountingLine;

    #[test]
    fn layout_grows_past_128_vectors() {
        let l = MsixLayout::for_queues(2);
        assert_eq!((l.vectors, l.pba_offset, l.bar_size), (3, 0x800, 0x1000));
        let l = MsixLayout::for_queues(127);
        assert_eq!((l.pba_offset, l.bar_size), (0x800, 0x1000));
        let l = MsixLayout::for_queues(1024);
        assert_eq!(l.vectors, 1025);
        assert_eq!(l.pba_offset, 1025 * 16);
        assert!(l.pba_offset + 17 * 8 <= l.bar_size);
        assert!(l.bar_size.is_power_of_two());
        assert_eq!(MsixLayout::for_queues(u16::MAX).vectors, MAX_VECTORS);
    }

    #[test]
    fn pending_bits_past_64_vectors() {
        let mut m = Msix::new(100);
        let line = Arc::new(CountingLine::default());
        m.set_line(90, Some(line.clone()));
        m.set_control(true, false);
        m.table_write(90 * 16 + 12, 1);
        assert_eq!(m.fire(90), Sent::Pending);
        assert_eq!(m.pba_read(8), 1 << (90 - 64));
        assert_eq!(m.pba_read(12), 0);
        m.table_write(90 * 16 + 12, 0);
        assert_eq!(line.count(), 1);
        assert_eq!(m.pba_read(8), 0);
        assert_eq!(m.fire(100), Sent::NoVector);
        assert_eq!(m.pba_read(1 << 20), 0);
    }
}
