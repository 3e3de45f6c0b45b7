//! Storage backends.
//!
//! A [`Backend`] is the storage object (a raw image file, memory, nothing at
//! all). Each queue worker gets its own [`IoEngine`] from it. The device core
//! is written against the engine interface only, so it does not care which
//! engine it drives (synchronous `preadv`/`pwritev`, io_uring, or the
//! scripted engine of the `test-util` feature).
//!
//! # The engine contract
//!
//! One thread drives an engine (engines are `Send`, not `Sync`):
//!
//! 1. [`IoEngine::push`] queues a request. Nothing reaches the storage yet.
//! 2. [`IoEngine::submit`] hands every queued request to the storage.
//!    Synchronous engines execute them right there.
//! 3. [`IoEngine::reap`] (or [`IoEngine::reap_timeout`]) appends completions
//!    to `out`, in any order: when the engine's [`IoEngine::completion_fd`]
//!    is readable, or right after `submit` for engines without one.
//!
//! Every engine in this crate guarantees, and any other engine must:
//!
//! * **Exactly once.** Every pushed request comes back from `reap` exactly
//!   once, with the [`Token`] it was pushed with (echoed, never interpreted).
//!   Completions come out of order. [`IoEngine::in_flight`] counts requests
//!   pushed and not yet returned.
//! * **No access after completion.** A request is returned only when neither
//!   the kernel nor any helper thread can still read or write its buffers;
//!   from then on the device may reuse or unmap that memory. (This is why
//!   dropping an io_uring engine waits for the requests it still has in the
//!   kernel.)
//! * **Full transfers.** A read or write that moved only part of its bytes
//!   (short transfer, partly cached range under `RWF_NOWAIT`) is continued
//!   from where it stopped; its completion is `Ok(len)` with the request's
//!   FULL length. One that cannot make progress (end of file) is
//!   `Err(EIO)`. The device should still treat `Ok(n)` with `n != len` as an
//!   I/O error: the scripted test engine produces it on purpose.
//! * **Transient errors stay inside.** `EINTR`/`EAGAIN`/`EBUSY` from
//!   `io_uring_enter` are retried (after making room in the completion
//!   ring); `EAGAIN`/`EINTR` results of single requests are resubmitted up
//!   to a bounded number of times, then reported as the errno.
//! * **`submit` failures lose nothing.** When `submit` returns an error,
//!   every request it was given is in exactly one of these states: in the
//!   kernel (it will complete), still queued inside the engine (the next
//!   `submit` — or a `reap` — hands it over; it counts in `in_flight`), or
//!   already completed with an errno because it never reached the storage.
//!   A request is never counted in flight while being neither in the kernel
//!   nor queued. The device keeps reaping and calls `submit` again later.
//! * **`reap` failures lose nothing.** When `reap` returns an error, `out`
//!   is left as it was; completions already harvested stay in the engine
//!   for the next call and the completion fd is signalled again.
//! * **The completion fd.** An engine that completes asynchronously returns
//!   an eventfd from [`IoEngine::completion_fd`], the same one from creation
//!   on (usable before the first request). It is signalled for every
//!   completion that becomes ready, including requests the engine completed
//!   inline during `submit`. The device never reads it: `reap` clears it
//!   *before* harvesting, so a completion that arrives afterwards signals it
//!   again and cannot be missed. The device must tolerate a wake-up that
//!   yields no completion (a completion harvested by the same `reap` that
//!   cleared the fd may have signalled it again). An engine without a
//!   completion fd has finished everything by the time `submit` returns.
//! * **Quiescing.** [`IoEngine::reap_timeout`] bounds the wait, so a device
//!   can log a stuck engine every few seconds while waiting for every I/O;
//!   [`IoEngine::cancel_all`] asks the storage to abandon what it still
//!   has. Cancelled requests still come back through `reap` (with
//!   `ECANCELED`, or their real result if they finished first).

mod backend;
mod engine;
mod file;
#[cfg(test)]
mod fua_tests;
mod mem;
mod null;
#[cfg(any(test, feature = "test-util"))]
pub mod pagecache;
mod size;
mod sync_engine;
mod sync_io;
#[cfg(feature = "test-util")]
pub mod testing;
#[cfg(test)]
pub(crate) mod testutil;
pub mod uring;

pub use backend::{resize_needs_file, Backend, BlockSizes};
pub use engine::{IoCompletion, IoEngine, IoOp, IoRequest, Token, IOV_MAX};
pub use file::{CacheMode, FileBackend, FileOptions};
pub use mem::MemBackend;
pub use null::NullBackend;
pub use size::{check_size, parse_size};
pub use sync_engine::SyncEngine;
pub use sync_io::{advance_iovecs, skip_iovecs, AlignedBuf};
