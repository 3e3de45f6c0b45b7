//! Test helpers: register access at three levels (the function itself,
//! the vfio-user backend, a real vfio-user client over the socket), guest
//! RAM in a memfd, a split ring the test fills like a driver, and Linux's
//! probe sequences.
#![allow(dead_code)]

// Where each helper lives: register access over the function, the
// vfio-user backend or a vfio-user client (`regs`); guest RAM in a memfd
// and eventfds (`guest`); the split ring the test fills (`ring`); Linux's
// probe sequences (`probe`); a device on a memory backend and its counters
// (`device`).
mod device;
mod guest;
mod probe;
mod regs;
mod ring;

// Each test binary uses a subset of the helpers (as with `dead_code`).
#[allow(unused_imports)]
pub use {device::*, guest::*, probe::*, regs::*, ring::*};
