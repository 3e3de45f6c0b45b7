//! Guest memory and ring 0 for the daemon: the memory table (our memfd
//! RAM, or any region for hostile tables) and the split ring's set-up,
//! start and restart messages; [`Driver::connect`] does all of it after
//! the negotiation.

use std::os::fd::RawFd;
use std::path::Path;

use vhost::vhost_user::VhostUserFrontend;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};

use super::driver::{e, Driver, Options};
use crate::blk::features as vf;

impl Driver {
    /// Connect, negotiate, send the memory table and start ring 0.
    pub fn connect(sock: &Path, opts: Options) -> Result<Driver, String> {
        let mut d = Driver::negotiate(sock, opts)?;
        d.send_mem_table()?;
        d.start_ring(0)?;
        Ok(d)
    }

    /// The guest RAM as a memory-table region (user address = our mapping).
    pub fn region(&self) -> VhostUserMemoryRegionInfo {
        VhostUserMemoryRegionInfo {
            guest_phys_addr: self.ram.gpa,
            memory_size: self.ram.size,
            userspace_addr: self.ram.host_addr(self.ram.gpa),
            mmap_offset: 0,
            mmap_handle: self.ram.fd(),
        }
    }

    /// Any region of any file (for hostile tables).
    pub fn region_of(
        gpa: u64,
        size: u64,
        uva: u64,
        offset: u64,
        fd: RawFd,
    ) -> VhostUserMemoryRegionInfo {
        VhostUserMemoryRegionInfo {
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: uva,
            mmap_offset: offset,
            mmap_handle: fd,
        }
    }

    pub fn send_mem_table(&self) -> Result<(), String> {
        self.fe()
            .set_mem_table(&[self.region()])
            .map(|_| ())
            .map_err(e("SET_MEM_TABLE"))
    }

    /// Ring 0's addresses in our (user) address space.
    pub fn vring_config(&self) -> VringConfigData {
        let uva = |gpa| self.ram.host_addr(gpa);
        VringConfigData {
            queue_max_size: self.ring.size,
            queue_size: self.ring.size,
            flags: 0,
            desc_table_addr: uva(self.ring.desc),
            used_ring_addr: uva(self.ring.used),
            avail_ring_addr: uva(self.ring.avail),
            log_addr: None,
        }
    }

    /// SET_VRING_NUM/ADDR/BASE/CALL/KICK/ENABLE for ring 0 at `base`.
    pub fn start_ring(&mut self, base: u16) -> Result<(), String> {
        self.fe()
            .set_vring_num(0, self.ring.size)
            .map_err(e("SET_VRING_NUM"))?;
        self.fe()
            .set_vring_addr(0, &self.vring_config())
            .map_err(e("SET_VRING_ADDR"))?;
        self.fe()
            .set_vring_base(0, base)
            .map_err(e("SET_VRING_BASE"))?;
        self.fe()
            .set_vring_call(0, &self.call)
            .map_err(e("SET_VRING_CALL"))?;
        self.fe()
            .set_vring_kick(0, &self.kick)
            .map_err(e("SET_VRING_KICK"))?;
        if self.acked & vf::PROTOCOL_FEATURES != 0 {
            self.fe()
                .set_vring_enable(0, true)
                .map_err(e("SET_VRING_ENABLE"))?;
        }
        Ok(())
    }

    /// GET_VRING_BASE (stops the ring), zero the rings, start again at 0.
    pub fn restart_ring(&mut self) -> Result<(), String> {
        self.fe().get_vring_base(0).map_err(e("GET_VRING_BASE"))?;
        self.ring.reset(&self.ram.mem);
        self.start_ring(0)
    }
}
