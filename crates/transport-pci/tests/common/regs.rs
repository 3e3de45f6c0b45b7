//! Register access, whatever carries it: [`Regs`] over the function
//! itself, the vfio-user backend and a real vfio-user client.

use vblk_transport_pci::regs::layout::MODERN_BAR;
use vblk_transport_pci::vfio::Backend;
use vblk_transport_pci::PciFunction;
use vblk_vfio_user::Backend as _;

pub const CONFIG_REGION: u32 = 7;

pub const MODERN: usize = MODERN_BAR;

/// Register access, whatever carries it.
pub trait Regs {
    fn bar_rd(&mut self, bar: usize, off: u64, n: usize) -> u64;
    fn bar_wr(&mut self, bar: usize, off: u64, n: usize, v: u64);
    fn cfg_rd(&mut self, off: u64, n: usize) -> u64;
    fn cfg_wr(&mut self, off: u64, n: usize, v: u64);
}

impl Regs for PciFunction {
    fn bar_rd(&mut self, bar: usize, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.bar_read(bar, off, &mut b[..n]);
        u64::from_le_bytes(b)
    }
    fn bar_wr(&mut self, bar: usize, off: u64, n: usize, v: u64) {
        self.bar_write(bar, off, &v.to_le_bytes()[..n]);
        // Requests run on the queue threads: wait for a kick's effects.
        self.settle();
    }
    fn cfg_rd(&mut self, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.config_read(off, &mut b[..n]);
        u64::from_le_bytes(b)
    }
    fn cfg_wr(&mut self, off: u64, n: usize, v: u64) {
        self.config_write(off, &v.to_le_bytes()[..n]);
    }
}

impl Regs for Backend {
    fn bar_rd(&mut self, bar: usize, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.region_read(bar as u32, off, &mut b[..n]).unwrap();
        u64::from_le_bytes(b)
    }
    fn bar_wr(&mut self, bar: usize, off: u64, n: usize, v: u64) {
        self.region_write(bar as u32, off, &v.to_le_bytes()[..n])
            .unwrap();
        self.function().settle();
    }
    fn cfg_rd(&mut self, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.region_read(CONFIG_REGION, off, &mut b[..n]).unwrap();
        u64::from_le_bytes(b)
    }
    fn cfg_wr(&mut self, off: u64, n: usize, v: u64) {
        self.region_write(CONFIG_REGION, off, &v.to_le_bytes()[..n])
            .unwrap();
    }
}

impl Regs for vfio_user::Client {
    fn bar_rd(&mut self, bar: usize, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.region_read(bar as u32, off, &mut b[..n]).unwrap();
        u64::from_le_bytes(b)
    }
    fn bar_wr(&mut self, bar: usize, off: u64, n: usize, v: u64) {
        self.region_write(bar as u32, off, &v.to_le_bytes()[..n])
            .unwrap();
    }
    fn cfg_rd(&mut self, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.region_read(CONFIG_REGION, off, &mut b[..n]).unwrap();
        u64::from_le_bytes(b)
    }
    fn cfg_wr(&mut self, off: u64, n: usize, v: u64) {
        self.region_write(CONFIG_REGION, off, &v.to_le_bytes()[..n])
            .unwrap();
    }
}
