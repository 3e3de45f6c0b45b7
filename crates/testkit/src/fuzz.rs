//! Helpers the fuzz bodies share: reading structured values out of the
//! fuzzer's bytes, and checking that a run leaves no thread or fd behind.

use std::time::{Duration, Instant};

/// Little-endian values taken off the front of a fuzz input; `None` (or
/// fewer bytes) once it runs out.
pub struct ByteReader<'a>(pub &'a [u8]);

impl<'a> ByteReader<'a> {
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from(self.u16()?) | (u32::from(self.u16()?) << 16))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from(self.u32()?) | (u64::from(self.u32()?) << 32))
    }
    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// Threads and open fds of this process (Linux).
pub fn process_counts() -> (usize, usize) {
    let count = |d: &str| std::fs::read_dir(d).map_or(0, |r| r.count());
    (count("/proc/self/task"), count("/proc/self/fd"))
}

/// Wait briefly (a joined thread leaves /proc a moment after `join`
/// returns) for the counts to come back to `before`; panic if they do not.
pub fn assert_no_leak(before: (usize, usize), what: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = process_counts();
        if now.0 <= before.0 && now.1 <= before.1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "leak: {} threads and {} fds before, {} and {} after {what}",
            before.0,
            before.1,
            now.0,
            now.1
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_off_the_front_little_endian() {
        let mut r = ByteReader(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u16(), Some(0x0302));
        assert_eq!(r.u32(), Some(0x0706_0504));
        assert_eq!(r.take(2), &[8, 9]);
        assert_eq!(r.u64(), None, "only 4 bytes left");
        assert_eq!(r.take(9), &[] as &[u8]);
    }
}
