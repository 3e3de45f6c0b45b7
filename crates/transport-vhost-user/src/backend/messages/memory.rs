//! Guest memory messages: SET_MEM_TABLE (the whole table at once) and,
//! with CONFIGURE_MEM_SLOTS, ADD_MEM_REG and REM_MEM_REG.

use std::fs::File;

use vhost::vhost_user::message::{VhostUserMemoryRegion, VhostUserSingleMemoryRegion};
use vhost::vhost_user::Result as VuResult;

use crate::backend::Conn;
use crate::memory::{map_region, MemTable, RegionDesc, MAX_MEM_SLOTS};

impl Conn {
    pub(super) fn on_set_mem_table(
        &mut self,
        regions: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy: Option<bool>,
    ) -> VuResult<Option<Vec<u64>>> {
        if regions.len() != files.len() {
            return self.refuse("SET_MEM_TABLE", "one fd per region expected");
        }
        if regions.len() > MAX_MEM_SLOTS {
            return self.refuse("SET_MEM_TABLE", "too many regions");
        }
        let mut mapped = Vec::with_capacity(regions.len());
        for (r, f) in regions.iter().zip(files) {
            let d = RegionDesc {
                guest_phys_addr: r.guest_phys_addr,
                memory_size: r.memory_size,
                userspace_addr: r.user_addr,
                mmap_offset: r.mmap_offset,
            };
            match map_region(d, f) {
                Ok(m) => mapped.push(m),
                Err(e) => return self.refuse("SET_MEM_TABLE", e),
            }
        }
        let table = match MemTable::from_regions(mapped) {
            Ok(t) => t,
            Err(e) => return self.refuse("SET_MEM_TABLE", e),
        };
        self.install(table);
        Ok(None)
    }

    pub(super) fn on_add_mem_region(
        &mut self,
        region: &VhostUserSingleMemoryRegion,
        fd: File,
        _postcopy: Option<bool>,
    ) -> VuResult<Option<u64>> {
        let d = RegionDesc {
            guest_phys_addr: region.guest_phys_addr,
            memory_size: region.memory_size,
            userspace_addr: region.user_addr,
            mmap_offset: region.mmap_offset,
        };
        if let Err(e) = self.table.check_room(&d) {
            return self.refuse("ADD_MEM_REG", e);
        }
        let m = match map_region(d, fd) {
            Ok(m) => m,
            Err(e) => return self.refuse("ADD_MEM_REG", e),
        };
        let guard = self.runners.pause_all();
        let r = self.table.insert(m);
        if r.is_ok() {
            let new = self.table.guest_memory();
            self.mem
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(new);
        }
        drop(guard);
        match r {
            Ok(()) => Ok(None),
            Err(e) => self.refuse("ADD_MEM_REG", e),
        }
    }

    pub(super) fn on_remove_mem_region(
        &mut self,
        region: &VhostUserSingleMemoryRegion,
    ) -> VuResult<()> {
        let d = RegionDesc {
            guest_phys_addr: region.guest_phys_addr,
            memory_size: region.memory_size,
            userspace_addr: region.user_addr,
            mmap_offset: region.mmap_offset,
        };
        let guard = self.runners.pause_all();
        let r = self.table.remove(&d);
        if r.is_ok() {
            let new = self.table.guest_memory();
            self.mem
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(new);
        }
        // The removed mapping goes while every queue is still paused.
        let removed = r.map(drop);
        drop(guard);
        match removed {
            Ok(()) => Ok(()),
            Err(e) => self.refuse("REM_MEM_REG", e),
        }
    }
}
