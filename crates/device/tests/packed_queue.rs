//! The device core over a packed ring (`VIRTIO_F_RING_PACKED`), driven by
//! the test kit's `PackedDriver` in real guest memory: every request type,
//! completions out of order through the runner and a scripted engine,
//! event suppression both ways, and hostile rings (the ring breaks,
//! nothing is used, no status or data written).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vblk_backend::testing::{Outcome, ScriptedBackend};
use vblk_backend::{Backend, MemBackend};
use vblk_device::runner::{RingSetup, RunnerOptions, Runners};
use vblk_device::{set_packed_base, BlkConfig, BlkDevice, QueueError, QueueWorker};
use vblk_interrupt::InterruptKind;
use vblk_queue::packed::{PackedError, EVENT_FLAG_DESC, EVENT_FLAG_DISABLE, EVENT_FLAG_ENABLE};
use vblk_queue::{Queue, QueueT};
use vblk_testkit::blk::{Request, STATUS_UNSET, S_OK, S_UNSUPP};
use vblk_testkit::packed::{avail_bits, PDesc, PackedDriver, P_INDIRECT, P_NEXT, P_WRITE};
use vblk_testkit::RecordingInterrupt;
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const QSIZE: u16 = 16;
const RING: u64 = 0;
const BUFS: u64 = 0x1_0000;
const TABLES: u64 = 0x8_0000;
const MEM: u64 = 0x10_0000;
const DISK: u64 = 64 * 1024;
const Q0: InterruptKind = InterruptKind::Queue(0);

fn guest() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap()
}

/// The queue a transport hands over for a packed ring: driver area in the
/// avail address, device area in the used address, a fresh base.
fn packed_queue(d: &PackedDriver, event_idx: bool) -> Queue {
    let mut q = Queue::new(QSIZE).unwrap();
    q.set_size(d.size);
    q.set_desc_table_address(Some(d.desc as u32), Some(0));
    q.set_avail_ring_address(Some(d.driver_area as u32), Some(0));
    q.set_used_ring_address(Some(d.device_area as u32), Some(0));
    q.set_event_idx(event_idx);
    q.set_ready(true);
    set_packed_base(&mut q, d.base());
    q
}

struct Rig {
    mem: GuestMemoryMmap,
    drv: PackedDriver,
    queue: Queue,
    backend: MemBackend,
    worker: QueueWorker,
    irq: RecordingInterrupt,
    next: u64,
}

impl Rig {
    fn new(event_idx: bool) -> Rig {
        let mem = guest();
        let drv = PackedDriver::new(RING, QSIZE);
        let backend = MemBackend::new(DISK);
        let mut c = BlkConfig::new(DISK);
        c.set_serial("packed-serial");
        let dev = BlkDevice::new(c, Arc::new(backend.clone()));
        let mut worker = dev.worker(0).unwrap();
        let queue = packed_queue(&drv, event_idx);
        worker.attach_ring(&queue, true).unwrap();
        assert!(worker.is_packed());
        Rig {
            mem,
            drv,
            queue,
            backend,
            worker,
            irq: RecordingInterrupt::new(),
            next: BUFS,
        }
    }

    /// Place `req` and make it available as buffer `id`; returns where
    /// its status and data are.
    fn add(&mut self, req: &Request, id: u16, indirect: bool) -> (u64, u64) {
        let p = req.place(&self.mem, self.next);
        self.next = (p.end + 0xfff) & !0xfff;
        if indirect {
            self.drv
                .add_indirect(&self.mem, TABLES + 0x400 * u64::from(id), &p.segs, id);
        } else {
            self.drv.add(&self.mem, &p.segs, id);
        }
        (p.status, p.data)
    }

    fn run(&mut self) -> Result<usize, QueueError> {
        self.worker.process(&mut self.queue, &self.mem, &self.irq)
    }

    fn byte(&self, at: u64) -> u8 {
        self.mem.read_obj(GuestAddress(at)).unwrap()
    }

    fn bytes(&self, at: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }
}

#[test]
fn every_request_type_over_a_packed_ring() {
    let mut r = Rig::new(false);
    let data: Vec<u8> = (0..1024).map(|i| (i % 253) as u8).collect();
    let (w, _) = r.add(&Request::write(2, &data), 3, false);
    let (f, _) = r.add(&Request::flush(), 7, false);
    // Requests in flight together are unordered: read after the write.
    assert_eq!(r.run().unwrap(), 2);
    let (rd, rd_at) = r.add(&Request::read(2, 1024), 1, true);
    let (id, id_at) = r.add(&Request::get_id(20), 0, false);
    let (dc, _) = r.add(&Request::discard(&[(8, 2, 0)]), 15, true);
    let (bad, _) = r.add(&Request::new(200, 0), 4, false);
    assert_eq!(r.run().unwrap(), 4);
    for st in [w, f, rd, id, dc] {
        assert_eq!(r.byte(st), S_OK);
    }
    assert_eq!(r.byte(bad), S_UNSUPP);
    assert_eq!(r.bytes(rd_at, 1024), data);
    assert_eq!(&r.bytes(id_at, 13), b"packed-serial");
    assert_eq!(&r.backend.snapshot()[1024..2048], &data[..]);
    assert_eq!(&r.backend.snapshot()[4096..5120], &[0u8; 1024][..]);
    let mut used: Vec<(u16, u32)> = std::iter::from_fn(|| r.drv.take_used(&r.mem)).collect();
    used.sort();
    assert_eq!(
        used,
        vec![(0, 21), (1, 1025), (3, 1), (4, 1), (7, 1), (15, 1)]
    );
    assert_eq!(r.irq.take(), vec![Q0, Q0]);
    // Around the ring a few times (wrap counters flip).
    for lap in 0..10u16 {
        let (st, _) = r.add(&Request::read(0, 512), lap % QSIZE, lap % 2 == 0);
        assert_eq!(r.run().unwrap(), 1);
        assert_eq!(r.byte(st), S_OK);
        assert_eq!(r.drv.take_used(&r.mem), Some((lap % QSIZE, 513)));
    }
}

#[test]
fn interrupts_follow_the_driver_event_suppression() {
    let mut r = Rig::new(true);
    r.drv.set_driver_event(&r.mem, 0, EVENT_FLAG_DISABLE);
    r.add(&Request::flush(), 0, false);
    r.run().unwrap();
    assert_eq!(r.irq.take(), vec![], "DISABLE: no interrupt");
    assert_eq!(r.drv.take_used(&r.mem), Some((0, 1)));
    r.drv.set_driver_event(&r.mem, 0, EVENT_FLAG_ENABLE);
    r.add(&Request::flush(), 1, false);
    r.run().unwrap();
    assert_eq!(r.irq.take(), vec![Q0], "ENABLE: interrupt");
    r.drv.take_used(&r.mem).unwrap();
    // DESC: only once the used ring passes slot 7 (wrap 1); it is at
    // slot 4 now and each flush takes 2 slots.
    r.drv.set_driver_event(&r.mem, 0x8007, EVENT_FLAG_DESC);
    r.add(&Request::flush(), 2, false);
    r.run().unwrap();
    assert_eq!(
        r.irq.take(),
        vec![],
        "slots 4..6 do not reach the event slot"
    );
    r.add(&Request::flush(), 3, false);
    r.run().unwrap();
    assert_eq!(r.irq.take(), vec![Q0], "slots 6..8 cover slot 7");
    assert_eq!(r.drv.take_used(&r.mem), Some((2, 1)));
    assert_eq!(r.drv.take_used(&r.mem), Some((3, 1)));
    // The device asks for kicks again once it goes idle.
    assert_eq!(r.drv.device_event(&r.mem).1, EVENT_FLAG_ENABLE);
}

/// A hostile ring: the worker stops with a packed-ring error, and neither
/// the used ring, the status byte, nor the disk changed.
fn assert_broken(r: &mut Rig, status: u64, want: PackedError) {
    let ring_before = r.bytes(RING, 16 * usize::from(QSIZE));
    let disk_before = r.backend.snapshot();
    match r.run() {
        Err(QueueError::Packed(0, e)) => assert_eq!(e, want),
        other => panic!("expected a broken ring ({want}), got {other:?}"),
    }
    assert_eq!(r.byte(status), STATUS_UNSET, "a status was written");
    assert_eq!(
        r.bytes(RING, 16 * usize::from(QSIZE)),
        ring_before,
        "a used descriptor was written"
    );
    assert_eq!(r.backend.snapshot(), disk_before, "the disk changed");
    assert_eq!(r.irq.take(), vec![]);
}

#[test]
fn hostile_packed_rings_break_the_ring_and_write_nothing() {
    let write = Request::write(0, &[0x55; 512]);
    // An id past the ring.
    let mut r = Rig::new(false);
    let (st, _) = r.add(&write, QSIZE, false);
    assert_broken(&mut r, st, PackedError::BadId(QSIZE));
    // A chain longer than the ring.
    let mut r = Rig::new(false);
    let p = write.place(&r.mem, BUFS);
    for i in 0..QSIZE {
        r.drv.put(
            &r.mem,
            i,
            PDesc {
                addr: p.hdr,
                len: 16,
                id: 0,
                flags: P_NEXT | avail_bits(true),
            },
        );
    }
    assert_broken(&mut r, p.status, PackedError::ChainTooLong(QSIZE));
    // NEXT inside an indirect table; an indirect table inside one.
    for (flags, want) in [
        (P_NEXT, PackedError::BadIndirectFlags(0, P_NEXT)),
        (P_INDIRECT, PackedError::BadIndirectFlags(0, P_INDIRECT)),
    ] {
        let mut r = Rig::new(false);
        let p = write.place(&r.mem, BUFS);
        let mut segs = p.segs.clone();
        segs[0].2 |= flags;
        r.drv.add_indirect(&r.mem, TABLES, &segs, 0);
        assert_broken(&mut r, p.status, want);
    }
    // A chain whose second descriptor carries the other lap's wrap bits.
    let mut r = Rig::new(false);
    let p = write.place(&r.mem, BUFS);
    r.drv.put(
        &r.mem,
        1,
        PDesc {
            addr: p.segs[1].0,
            len: 512,
            id: 0,
            flags: P_NEXT | avail_bits(false),
        },
    );
    r.drv.put(
        &r.mem,
        2,
        PDesc {
            addr: p.status,
            len: 1,
            id: 0,
            flags: P_WRITE | avail_bits(true),
        },
    );
    r.drv.put(
        &r.mem,
        0,
        PDesc {
            addr: p.hdr,
            len: 16,
            id: 0,
            flags: P_NEXT | avail_bits(true),
        },
    );
    assert_broken(&mut r, p.status, PackedError::NotAvailable(1));
    // A descriptor ring outside guest memory: the ring cannot even start.
    let mem = guest();
    let drv = PackedDriver::new(MEM - 16 * 8, 16);
    let dev = BlkDevice::new(BlkConfig::new(DISK), Arc::new(MemBackend::new(DISK)));
    let mut w = dev.worker(0).unwrap();
    let mut q = packed_queue(&drv, false);
    w.attach_ring(&q, true).unwrap();
    let irq = RecordingInterrupt::new();
    assert!(matches!(
        w.process(&mut q, &mem, &irq),
        Err(QueueError::Packed(0, PackedError::BadEventArea(_)))
    ));
    // A saved position past the ring: refused when the ring attaches.
    let mut q = packed_queue(&PackedDriver::new(RING, 16), false);
    set_packed_base(&mut q, 0x8010_8000);
    assert!(matches!(
        w.attach_ring(&q, true),
        Err(QueueError::Packed(0, PackedError::BadBase(_)))
    ));
}

#[test]
fn packed_completions_go_out_in_completion_order_through_the_runner() {
    let backend = ScriptedBackend::new(DISK);
    // The first read (sector 0) is slow, the rest fast.
    backend.set_script(|_, off, _| {
        if off == 0 {
            Outcome::after(Duration::from_millis(300))
        } else {
            Outcome::after(Duration::from_millis(1))
        }
    });
    backend.fill(0, &[0x77; 512]);
    backend.fill(16 * 512, &[0x88; 512]);
    backend.fill(32 * 512, &[0x99; 512]);
    let backend = Arc::new(backend);
    let dev = Arc::new(BlkDevice::new(
        BlkConfig::new(DISK),
        backend.clone() as Arc<dyn Backend>,
    ));
    let runners = Runners::new(&dev, 0, RunnerOptions::default()).unwrap();
    let mem = guest();
    let atomic = GuestMemoryAtomic::new(mem.clone());
    let mut drv = PackedDriver::new(RING, QSIZE);
    let irq = Arc::new(RecordingInterrupt::new());
    let kick = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
    runners
        .start(
            0,
            RingSetup {
                queue: packed_queue(&drv, true),
                mem: atomic,
                kick: Some(kick.clone()),
                irq: irq.clone(),
                on_broken: Box::new(|e| panic!("ring broken: {e}")),
                inflight: None,
                resubmit: vec![],
                packed: true,
            },
        )
        .unwrap();
    let mut status = HashMap::new();
    let mut offset = HashMap::new();
    for (id, sector) in [(9u16, 0u64), (2, 16), (5, 32)] {
        let p = Request::read(sector, 512).place(&mem, BUFS + 0x1000 * u64::from(id));
        drv.add(&mem, &p.segs, id);
        status.insert(id, (p.status, p.data));
        offset.insert(id, sector * 512);
    }
    kick.write(1).unwrap();
    let mut order = vec![];
    let t = Instant::now();
    while order.len() < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "used so far: {order:?}"
        );
        // Anything used by now must be out of the engine.
        let in_kernel: Vec<u64> = backend.outstanding().iter().map(|o| o.offset).collect();
        while let Some((id, len)) = drv.take_used(&mem) {
            assert!(
                !in_kernel.contains(&offset[&id]),
                "buffer {id} used while its I/O is out"
            );
            assert_eq!(len, 513);
            order.push(id);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(order[2], 9, "the slow read last: {order:?}");
    let read = |at: u64| {
        let mut b = [0u8; 512];
        mem.read_slice(&mut b, GuestAddress(at)).unwrap();
        b
    };
    for (id, fill) in [(9u16, 0x77u8), (2, 0x88), (5, 0x99)] {
        let (st, data) = status[&id];
        assert_eq!(mem.read_obj::<u8>(GuestAddress(st)).unwrap(), S_OK);
        assert_eq!(read(data), [fill; 512]);
    }
    // Where the ring stopped, as the transport reads it back (GET_VRING_BASE):
    // 3 buffers of 3 descriptors, both positions at slot 9, wrap 1.
    let stopped = runners.stop(0).unwrap();
    assert!(!stopped.broken);
    assert_eq!(vblk_device::packed_base(&stopped.queue), 0x8009_8009);
    assert!(!irq.take().is_empty());
}
