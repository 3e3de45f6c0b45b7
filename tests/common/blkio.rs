//! A libblkio `virtio-blk-vhost-user` client for the tests: the first
//! queue, a 1 MiB buffer of its own, one request at a time.

use std::mem::MaybeUninit;
use std::path::Path;
use std::time::Duration;

use blkio::{Blkio, Blkioq, Completion, ReqFlags};

pub struct Client {
    pub b: Blkio,
    pub q: Blkioq,
    buf: *mut u8,
    buf_len: usize,
    timeout: Duration,
}

/// How to connect: queues, read-only, how long a request may take.
pub struct Connect<'a> {
    sock: &'a Path,
    queues: i32,
    read_only: bool,
    timeout: Duration,
}

impl Connect<'_> {
    pub fn queues(mut self, n: i32) -> Self {
        self.queues = n;
        self
    }

    pub fn read_only(mut self, ro: bool) -> Self {
        self.read_only = ro;
        self
    }

    /// How long `wait` waits for a completion (default 10 s).
    pub fn timeout(mut self, secs: u64) -> Self {
        self.timeout = Duration::from_secs(secs);
        self
    }

    pub fn connect(self) -> Client {
        let mut b = Blkio::new("virtio-blk-vhost-user").unwrap();
        b.set_str("path", self.sock.to_str().unwrap()).unwrap();
        if self.read_only {
            b.set_bool("read-only", true).unwrap();
        }
        b.connect().unwrap();
        b.set_i32("num-queues", self.queues).unwrap();
        let mut out = b.start().unwrap();
        let q = out.queues.remove(0);
        let region = b.alloc_mem_region(1 << 20).unwrap();
        b.map_mem_region(&region).unwrap();
        Client {
            b,
            q,
            buf: region.addr as *mut u8,
            buf_len: region.len,
            timeout: self.timeout,
        }
    }
}

impl Client {
    /// One queue, read-write, 10 s per request.
    pub fn connect(sock: &Path) -> Client {
        Client::with(sock).connect()
    }

    pub fn with(sock: &Path) -> Connect<'_> {
        Connect {
            sock,
            queues: 1,
            read_only: false,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn buf(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.buf_len);
        // SAFETY: the region is mapped, owned by this client and at least
        // `buf_len` bytes long.
        unsafe { std::slice::from_raw_parts_mut(self.buf, len) }
    }

    /// The next completion's result (0 or a negative errno).
    pub fn wait(&mut self) -> i32 {
        let mut c = [MaybeUninit::<Completion>::uninit()];
        let mut timeout = self.timeout;
        let n = self.q.do_io(&mut c, 1, Some(&mut timeout), None).unwrap();
        assert_eq!(n, 1, "no completion within {:?}", self.timeout);
        // SAFETY: do_io initialised one completion.
        unsafe { c[0].assume_init_ref() }.ret
    }

    /// Queue a write of `data` without waiting for it (see `wait`).
    pub fn start_write(&mut self, off: u64, data: &[u8]) {
        self.buf(data.len()).copy_from_slice(data);
        self.q
            .write(off, self.buf, data.len(), 0, ReqFlags::empty());
    }

    pub fn write(&mut self, off: u64, data: &[u8]) -> i32 {
        self.start_write(off, data);
        self.wait()
    }

    /// The bytes read (the buffer is filled with 0xee first, so a read
    /// that writes nothing shows).
    pub fn read(&mut self, off: u64, len: usize) -> Result<Vec<u8>, i32> {
        self.buf(len).fill(0xee);
        self.q.read(off, self.buf, len, 0, ReqFlags::empty());
        match self.wait() {
            0 => Ok(self.buf(len).to_vec()),
            e => Err(e),
        }
    }

    pub fn flush(&mut self) -> i32 {
        self.q.flush(0, ReqFlags::empty());
        self.wait()
    }
}

/// Test data that differs per seed and per byte.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
