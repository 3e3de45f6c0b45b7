//! Host-side integration: a real vhost-user front end (libblkio's
//! `virtio-blk-vhost-user` driver, no VM) against `vblk serve`.

mod io;
mod lifecycle;
mod metrics;
mod queues;

use std::path::Path;

#[path = "../common/mod.rs"]
mod common;
use common::blkio::{pattern, Client};
use common::{vblk, Daemon};

/// `vblk serve --image <image> --vhost-user ... --control ... <extra>`.
fn serve(image: &Path, extra: &[&str]) -> Daemon {
    Daemon::vhost_user(image).control().args(extra).start()
}

const SIZE: u64 = 16 << 20;
