//! Fuzz body for the `cargo fuzz` target `vhost_user_messages` (fuzz/),
//! also run on stable by `tests/fuzz_smoke.rs`. Built only with the
//! `fuzzing` feature: none of it is in the release binary. Not API.
//!
//! Bytes → a sequence of raw vhost-user messages (header + payload, with
//! memfds and eventfds attached as the input says) written into one end of
//! a socketpair; the other end is served in-process by the same per-
//! connection loop the daemon runs (`serve_connection`: the `vhost` crate's
//! `BackendReqHandler` over [`Conn`](crate::backend::Conn)), against a
//! 1 MiB `MemBackend`. The writing end is then shut down, so the loop sees
//! the end of the stream, drops the connection and stops every ring.
//!
//! Checks: no panic (on any thread: under `cargo fuzz` a panic aborts);
//! no hang (reads and replies are bounded by short timeouts); every reply
//! is a whole, well-formed reply to a request that was sent; and, when
//! asked, no thread and no file descriptor outlives the connection.
//!
//! Input layout:
//!
//! ```text
//! input  := opts:u8 image_len:u16le image[image_len] record*
//! opts   : bit 0 read-only disk; bit 1 one queue (else two)
//! image  : written at offset 0 of every memfd the input attaches
//!          (descriptor table, rings, request headers and data)
//! record := code:u8 flags:u8 fds:u8 pages:u8 len:u16le payload[len]
//!   code  : request code = code % 48
//!   flags : 0x80 set: header flags = flags & 0x7f, raw (any version,
//!           REPLY bit...); else version 1 | (flags & 0x08, NEED_REPLY),
//!           and 0x40 overstates the header size by `pages` bytes
//!   fds   : count = fds & 7 file descriptors of kind (fds >> 3) & 3:
//!           0 memfd of pages+1 pages holding the image, 1 eventfd,
//!           2 the same memfd sealed against shrinking and growing,
//!           3 an empty memfd
//!   len   : payload bytes (clamped to what is left of the input)
//! ```

// Where each step lives: one run, from the input's records to the
// replies checked (`harness`); inputs built from vhost-user messages
// (`builder`) and the well-formed seed sessions made with it (`seeds`).
// Module graph: `seeds` → `builder`, `seeds` → `harness`.
mod harness;

// ---------------------------------------------------------------------------
// Seeds: well-formed sessions, to start the fuzzer's corpus and to check
// (in the smoke test) that the input layout reaches real I/O.
// ---------------------------------------------------------------------------
mod builder;
mod seeds;

pub use builder::{fd, region_bytes, req, state, Builder, NEED_REPLY, REGION_PAGES, UADDR};
pub use harness::{
    assert_no_leak, process_counts, run, vhost_user_messages, Outcome, DISK, HEADER_LEN, MAX_FDS,
    MAX_IMAGE, MAX_MESSAGES,
};
pub use seeds::{protocol_features, seeds, virtio_features, Seed};
