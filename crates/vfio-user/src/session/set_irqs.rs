//! DEVICE_SET_IRQS: one DATA and one ACTION flag, the eventfds matching
//! the count, the vectors inside the irq index, before the backend sees it.

use std::fs::File;
use std::io;

use super::{einval, no_fds, Session};
use crate::proto::{irq_set, size, Reader};
use crate::{refuse, Backend};

impl Session {
    pub(super) fn set_irqs<B: Backend + ?Sized>(
        &mut self,
        b: &mut B,
        p: &[u8],
        fds: Vec<File>,
    ) -> io::Result<Vec<u8>> {
        if p.len() < size::SET_IRQS {
            return Err(einval(format!("SET_IRQS: payload of {} bytes", p.len())));
        }
        let mut r = Reader::new(p);
        let argsz = r.u32().unwrap_or(0);
        let fl = r.u32().unwrap_or(0);
        let index = r.u32().unwrap_or(u32::MAX);
        let start = r.u32().unwrap_or(0);
        let count = r.u32().unwrap_or(0);
        if (argsz as usize) < size::SET_IRQS {
            return Err(einval(format!("SET_IRQS argsz {argsz}")));
        }
        // "The flags are mutually exclusive for both sets."
        let data = fl & irq_set::DATA_MASK;
        let action = fl & irq_set::ACTION_TYPE_MASK;
        if data.count_ones() != 1
            || action.count_ones() != 1
            || fl & !(irq_set::DATA_MASK | irq_set::ACTION_TYPE_MASK) != 0
        {
            return Err(einval(format!("SET_IRQS flags {fl:#x}")));
        }
        let extra = r.rest().len();
        if data == irq_set::DATA_BOOL {
            if extra != count as usize {
                return Err(einval(format!(
                    "SET_IRQS DATA_BOOL: {extra} bytes for {count} vectors"
                )));
            }
            return Err(refuse(libc::ENOTSUP, "SET_IRQS DATA_BOOL"));
        }
        if extra != 0 {
            return Err(einval(format!("SET_IRQS: {extra} unexpected data bytes")));
        }
        if data == irq_set::DATA_EVENTFD {
            // "If no file descriptors are provided, this de-assigns the
            // specified previously configured interrupts."
            if !fds.is_empty() && fds.len() != count as usize {
                return Err(einval(format!(
                    "SET_IRQS: {} eventfds for {count} vectors",
                    fds.len()
                )));
            }
        } else {
            no_fds(&fds, "SET_IRQS without DATA_EVENTFD")?;
        }
        let info = b
            .irq_info(index)
            .ok_or_else(|| einval(format!("no irq index {index}")))?;
        // "a count (and start) of 0, with data flags of DATA_NONE disables
        // all interrupts of the index".
        if u64::from(start) + u64::from(count) > u64::from(info.count) {
            return Err(einval(format!(
                "SET_IRQS index {index}: vectors {start}+{count} of {}",
                info.count
            )));
        }
        b.set_irqs(index, fl, start, count, fds)?;
        Ok(Vec::new())
    }
}
