//! Configuration space accesses: the stored header and capabilities, with
//! the live bits (INTx status, MSI-X control) and the
//! VIRTIO_PCI_CAP_PCI_CFG window onto the BARs.

use super::PciFunction;
use crate::regs::{cap, layout::*, msix, pci};

impl PciFunction {
    fn pci_cfg_data(&self) -> std::ops::Range<usize> {
        CAP_PCI_CFG + cap::PCI_CFG_DATA..CAP_PCI_CFG + cap::PCI_CFG_DATA + 4
    }

    pub fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        let Ok(off) = usize::try_from(offset) else {
            data.fill(0);
            return;
        };
        self.cfg.read(off, data);
        // Live bits: INTx status, MSI-X control, the PCI_CFG data window.
        let status_lo = if self.irq.intx_asserted() {
            pci::STATUS_INTERRUPT as u8
        } else {
            0
        };
        let (en, fm) = self.irq.msix_control_bits();
        let ctrl_at = CAP_MSIX + msix::CAP_CONTROL + 1;
        let ctrl_hi = (self.cfg.u8_at(ctrl_at) & 0x3f)
            | if en {
                (msix::CTRL_ENABLE >> 8) as u8
            } else {
                0
            }
            | if fm {
                (msix::CTRL_FUNCTION_MASK >> 8) as u8
            } else {
                0
            };
        let window = self.pci_cfg_data();
        let mut win = None;
        for (i, b) in data.iter_mut().enumerate() {
            let Some(o) = off.checked_add(i) else { break };
            if o == pci::STATUS {
                *b |= status_lo;
            } else if o == ctrl_at {
                *b = ctrl_hi;
            } else if window.contains(&o) {
                let w = *win.get_or_insert_with(|| {
                    let mut tmp = [0u8; 4];
                    self.pci_cfg_access(&mut tmp, false);
                    tmp
                });
                *b = w[o - window.start];
            }
        }
    }

    pub fn config_write(&mut self, offset: u64, data: &[u8]) {
        let Ok(off) = usize::try_from(offset) else {
            return;
        };
        let window = self.pci_cfg_data();
        if window.contains(&off) {
            let mut tmp = [0u8; 4];
            let n = data.len().min(window.end - off);
            let at = off - window.start;
            tmp[at..at + n].copy_from_slice(&data[..n]);
            self.pci_cfg_access(&mut tmp, true);
            return;
        }
        let touches = |o: usize| (off..off.saturating_add(data.len())).contains(&o);
        self.cfg.write(off, data);
        if touches(pci::COMMAND + 1) {
            let cmd = self.cfg.u16_at(pci::COMMAND);
            self.irq
                .set_intx_disabled(cmd & pci::COMMAND_INTX_DISABLE != 0);
        }
        if touches(CAP_MSIX + msix::CAP_CONTROL + 1) {
            let ctrl = self.cfg.u16_at(CAP_MSIX + msix::CAP_CONTROL);
            self.irq.set_msix_control(
                ctrl & msix::CTRL_ENABLE != 0,
                ctrl & msix::CTRL_FUNCTION_MASK != 0,
            );
        }
    }

    /// VIRTIO_PCI_CAP_PCI_CFG: access BAR `bar` at `offset`, `length` bytes,
    /// through `pci_cfg_data` (4.1.4.9). "The device MUST ignore ... if
    /// length is not 1, 2 or 4 ... or offset is not a multiple of length"
    /// (4.1.4.9.1: the driver MUST NOT, and we do nothing then).
    fn pci_cfg_access(&mut self, data: &mut [u8; 4], write: bool) {
        let bar = usize::from(self.cfg.u8_at(CAP_PCI_CFG + cap::BAR));
        let offset = u64::from(self.cfg.u32_at(CAP_PCI_CFG + cap::OFFSET));
        let length = self.cfg.u32_at(CAP_PCI_CFG + cap::LENGTH) as usize;
        if !matches!(length, 1 | 2 | 4) || offset % length as u64 != 0 {
            return;
        }
        if write {
            self.bar_write(bar, offset, &data[..length]);
        } else {
            self.bar_read(bar, offset, &mut data[..length]);
        }
    }
}
