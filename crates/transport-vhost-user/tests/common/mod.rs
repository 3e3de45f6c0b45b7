//! An in-process vhost-user daemon for the transport's tests: `serve` on
//! a thread, its socket in a temporary directory; stopped and joined when
//! dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vblk_device::BlkDevice;
use vblk_transport_vhost_user::{serve, StopSignal};

pub struct Served {
    pub sock: PathBuf,
    stop: Arc<StopSignal>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Serve `dev` and wait until its socket is there.
    pub fn start(dev: Arc<BlkDevice>) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vu.sock");
        let stop = Arc::new(StopSignal::new().unwrap());
        let thread = {
            let (stop, sock) = (stop.clone(), sock.clone());
            std::thread::spawn(move || serve(dev, &sock, Default::default(), stop).unwrap())
        };
        let t = Instant::now();
        while !sock.exists() {
            assert!(t.elapsed() < Duration::from_secs(5), "never listened");
            std::thread::sleep(Duration::from_millis(5));
        }
        Served {
            sock,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Stop the daemon; `serve` must have ended without an error.
    #[allow(dead_code)] // not every test file stops explicitly
    pub fn stop(mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
