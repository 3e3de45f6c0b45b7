//! `serve()` end to end over its UNIX socket, with rust-vmm's vfio-user
//! client standing in for QEMU: region and irq discovery, DMA maps of a
//! memfd, Linux's modern probe, requests, MSI-X eventfds, a second client
//! after the first disconnects, and shutdown with a client still attached.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vblk_transport_pci::regs::{layout::*, vfio::*};

const DISK: u64 = 1 << 20;
const RAM: u64 = 4 << 20;

fn wait_for(path: &Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn connect(path: &Path, ram: &GuestRam) -> vfio_user::Client {
    let mut c = vfio_user::Client::new(path).expect("connect");
    c.dma_map(0, 0, ram.size, ram.file.as_raw_fd()).unwrap();
    c
}

#[test]
fn a_client_over_the_socket_writes_then_a_second_one_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("pci.sock");
    let (dev, disk) = device(DISK, 2);
    let shutdown = Arc::new(AtomicBool::new(false));
    let server = {
        let (dev, sock, shutdown) = (dev.clone(), sock.clone(), shutdown.clone());
        std::thread::spawn(move || {
            vblk_transport_pci::serve(dev, &sock, shutdown, 0, Default::default())
        })
    };
    wait_for(&sock);
    let ram = GuestRam::new(RAM);

    // First client: discovery, probe, a write.
    {
        let mut c = connect(&sock, &ram);
        assert_eq!(c.region(0).unwrap().size, LEGACY_BAR_SIZE);
        assert_eq!(c.region(1).unwrap().size, 0x1000);
        assert_eq!(c.region(4).unwrap().size, MODERN_BAR_SIZE);
        assert_eq!(c.region(REGION_CONFIG).unwrap().size, 256);
        let msix = c.get_irq_info(IRQ_MSIX).unwrap();
        assert_eq!(msix.count, 3, "config + 2 queues");
        let intx = c.get_irq_info(IRQ_INTX).unwrap();
        assert_eq!(intx.count, 1);
        assert_ne!(intx.flags & IRQ_INFO_AUTOMASKED, 0);
        // QEMU registers an error notifier when ERR has one vector.
        assert_eq!(c.get_irq_info(IRQ_ERR).unwrap().count, 1);
        let (_err, err_dev) = eventfd();
        c.set_irqs(
            IRQ_ERR,
            IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            0,
            1,
            &[err_dev.as_raw_fd()],
        )
        .unwrap();

        let (q1, q1_dev) = eventfd();
        c.set_irqs(
            IRQ_MSIX,
            IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            1,
            1,
            &[q1_dev.as_raw_fd()],
        )
        .unwrap();
        let mut ring = Ring::new(0x1_0000, 0x2_0000, 0x3_0000, 128, 0x10_0000);
        let notify = modern_probe(&mut c, &ring, true);
        let (_, st) = ring.request(&ram.mem, VIRTIO_BLK_T_OUT, 100, &[0xc3; 2048]);
        c.bar_wr(MODERN, notify, 2, 0);
        assert_eq!(wait_status(&ram.mem, st), 0);
        assert_eq!(
            &disk.snapshot()[100 * 512..100 * 512 + 2048],
            &[0xc3; 2048][..]
        );
        assert_eq!(wait_signal(&q1), 1);
    }

    // The first client hung up; the next one gets a fresh function.
    let t = Instant::now();
    while counter(&dev, "disconnects") < 1 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = connect(&sock, &ram);
    assert_eq!(
        c.bar_rd(MODERN, COMMON_OFFSET + 20, 1),
        0,
        "status of a fresh function"
    );
    let mut ring = Ring::new(0x4_0000, 0x5_0000, 0x6_0000, 64, 0x20_0000);
    let notify = modern_probe(&mut c, &ring, false);
    let (buf, st) = ring.request(&ram.mem, VIRTIO_BLK_T_IN, 100, &[0; 2048]);
    c.bar_wr(MODERN, notify, 2, 0);
    assert_eq!(wait_status(&ram.mem, st), 0);
    assert_eq!(read_bytes(&ram.mem, buf, 2048), vec![0xc3; 2048]);

    // Shutdown with this client still attached and idle: serve returns
    // promptly and removes its socket.
    let t = Instant::now();
    shutdown.store(true, Ordering::SeqCst);
    server.join().unwrap().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(!sock.exists(), "socket left behind");
    assert!(
        c.region_read(0, 0, &mut [0u8; 4]).is_err(),
        "connection closed"
    );
    assert_eq!(counter(&dev, "connections"), 2);
    assert_eq!(counter(&dev, "disconnects"), 2);
}

#[test]
fn shutdown_with_no_client_and_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("pci.sock");
    // A socket file nobody listens on, as a crashed daemon leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let (dev, _disk) = device(DISK, 1);
    let shutdown = Arc::new(AtomicBool::new(false));
    let server = {
        let (dev, sock, shutdown) = (dev.clone(), sock.clone(), shutdown.clone());
        std::thread::spawn(move || {
            vblk_transport_pci::serve(dev, &sock, shutdown, 0, Default::default())
        })
    };
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(t.elapsed() < Duration::from_secs(5), "never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A second daemon on the same live socket is refused.
    let second = vblk_transport_pci::serve(
        dev.clone(),
        &sock,
        Arc::new(AtomicBool::new(false)),
        0,
        Default::default(),
    );
    assert!(
        matches!(
            second,
            Err(vblk_transport_pci::Error::Socket(
                vblk_socket::SocketError::Live(_)
            ))
        ),
        "{second:?}"
    );
    shutdown.store(true, Ordering::SeqCst);
    server.join().unwrap().unwrap();
    assert!(!sock.exists());
}

#[test]
fn a_file_at_the_socket_path_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    // `--vfio-user disk.img`, a typo: the image must survive.
    let img = dir.path().join("disk.img");
    std::fs::write(&img, b"precious").unwrap();
    let (dev, _disk) = device(DISK, 1);
    let r = vblk_transport_pci::serve(
        dev,
        &img,
        Arc::new(AtomicBool::new(false)),
        0,
        Default::default(),
    );
    assert!(
        matches!(
            r,
            Err(vblk_transport_pci::Error::Socket(
                vblk_socket::SocketError::NotASocket(..)
            ))
        ),
        "{r:?}"
    );
    assert_eq!(std::fs::read(&img).unwrap(), b"precious");
}

#[test]
fn several_msix_eventfds_arrive_in_one_set_irqs() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("pci.sock");
    let (dev, _disk) = device(DISK, 2);
    let shutdown = Arc::new(AtomicBool::new(false));
    let server = {
        let (dev, sock, shutdown) = (dev.clone(), sock.clone(), shutdown.clone());
        std::thread::spawn(move || {
            vblk_transport_pci::serve(dev, &sock, shutdown, 0, Default::default())
        })
    };
    wait_for(&sock);
    let ram = GuestRam::new(RAM);
    {
        let mut c = connect(&sock, &ram);
        // All three vectors in one message, as QEMU does when the server's
        // max_msg_fds allows (it used to be 1).
        let fds: Vec<_> = (0..3).map(|_| eventfd()).collect();
        let raw: Vec<_> = fds.iter().map(|(_, d)| d.as_raw_fd()).collect();
        c.set_irqs(
            IRQ_MSIX,
            IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            0,
            3,
            &raw,
        )
        .unwrap();
        let mut ring = Ring::new(0x1_0000, 0x2_0000, 0x3_0000, 128, 0x10_0000);
        let notify = modern_probe(&mut c, &ring, true);
        let (_, st) = ring.request(&ram.mem, VIRTIO_BLK_T_OUT, 1, &[7; 512]);
        c.bar_wr(MODERN, notify, 2, 0);
        assert_eq!(wait_signal(&fds[1].0), 1, "queue 0's vector 1 fired");
        assert_eq!(status_byte(&ram.mem, st), 0);
    }
    shutdown.store(true, Ordering::SeqCst);
    server.join().unwrap().unwrap();
}
