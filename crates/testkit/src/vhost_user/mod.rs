//! A vhost-user front end: connect, negotiate, share guest memory (memfd),
//! set up and kick a ring, wait for its used entries — on rust-vmm
//! `vhost`'s frontend API — plus [`RawConn`], which sends any message
//! verbatim (bad sizes, unknown requests, missing or wrong descriptors) on
//! the same connection, for what that API refuses to send.
//!
//! Every wait has a deadline: a daemon that stops answering or dies makes
//! a call fail, never hang.
//!
//! One job a file: `wire` (request codes, header flags, message bodies),
//! `raw` ([`RawConn`], [`Reply`]), `deadline` ([`connect_timeout`], the
//! watchdog behind [`Fe`]), `driver` ([`Options`], [`Driver`]: negotiate),
//! `setup` (memory table, ring 0, [`Driver::connect`]), `requests` (submit,
//! wait, [`Done`]) and `packed` (the same over a packed ring).

mod deadline;
mod driver;
mod packed;
mod raw;
mod requests;
mod setup;
mod wire;

pub use deadline::{connect_timeout, Fe};
pub use driver::{Driver, Options};
pub use packed::RING_PACKED;
pub use raw::{RawConn, Reply};
pub use requests::Done;
pub use wire::{
    mem_table_bytes, region_bytes, req, state_bytes, vring_addr_bytes, FLAG_NEED_REPLY, FLAG_REPLY,
    FLAG_VERSION,
};
