//! BAR accesses: bounds, routing to the legacy (BAR0), MSI-X (BAR1) and
//! modern (BAR4) registers, and BAR1 itself.

use super::PciFunction;
use crate::regs::layout::*;

impl PciFunction {
    fn in_bar(&self, bar: usize, offset: u64, len: usize) -> bool {
        let size = self.bar_size(bar);
        size != 0
            && offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= size)
    }

    /// Read from a BAR. Outside the BAR, and at offsets without a
    /// register, reads return 0.
    pub fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        self.sync_broken();
        data.fill(0);
        if !self.in_bar(bar, offset, data.len()) {
            return;
        }
        match bar {
            LEGACY_BAR => self.legacy_read(offset, data),
            MSIX_BAR => self.msix_read(offset, data),
            MODERN_BAR => self.modern_read(offset, data),
            _ => {}
        }
    }

    /// Write to a BAR. Outside the BAR, and at offsets without a register,
    /// writes are dropped.
    pub fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        self.sync_broken();
        if !self.in_bar(bar, offset, data.len()) {
            self.bad_write("access past a BAR");
            return;
        }
        match bar {
            LEGACY_BAR => self.legacy_write(offset, data),
            MSIX_BAR => self.msix_write(offset, data),
            MODERN_BAR => self.modern_write(offset, data),
            _ => {}
        }
    }

    // ---- BAR1: MSI-X table and PBA, byte accesses merged into dwords ----

    fn msix_dword(&self, o: u64) -> u32 {
        let l = &self.msix_layout;
        if o >= l.pba_offset {
            self.irq.pba_read(o - l.pba_offset)
        } else {
            self.irq.table_read(o - l.table_offset)
        }
    }

    fn msix_read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let o = offset + i as u64;
            *b = self.msix_dword(o & !3).to_le_bytes()[(o % 4) as usize];
        }
    }

    fn msix_write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        if end > self.msix_layout.pba_offset {
            // "Software should never write ... the PBA" (6.8.2.10): read-only.
            return self.bad_write("write to the MSI-X PBA");
        }
        let mut o = offset & !3;
        while o < end {
            let mut w = self.msix_dword(o).to_le_bytes();
            for (k, byte) in w.iter_mut().enumerate() {
                let a = o + k as u64;
                if (offset..end).contains(&a) {
                    *byte = data[(a - offset) as usize];
                }
            }
            self.irq
                .table_write(o - self.msix_layout.table_offset, u32::from_le_bytes(w));
            o += 4;
        }
    }
}
