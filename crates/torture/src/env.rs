//! What every part shares: the options of a run ([`Config`]), a case
//! ([`Case`], [`Need`]), what the back end offers ([`Info`]), a case's
//! context ([`Env`]) and a case's result ([`Outcome`]).

use std::path::PathBuf;
use std::time::Duration;

use vblk_testkit::vhost_user::{Driver, Options};
use vhost::vhost_user::message::VhostUserProtocolFeatures as P;

/// Command-line options of `vblk torture`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The back end's vhost-user socket.
    pub sock: PathBuf,
    /// Disk size in bytes when the back end does not tell (no CONFIG).
    pub size: Option<u64>,
    /// Run only the cases whose name contains one of these (comma-separated).
    pub cases: Option<String>,
    /// JSON instead of a table.
    pub json: bool,
    /// List the cases and exit.
    pub list: bool,
    /// Deadline of every single wait.
    pub timeout: Duration,
}

/// What a case needs from the back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Nothing,
    Protocol(P),
    Feature(u64),
}

/// One hostile case.
pub struct Case {
    pub name: &'static str,
    pub about: &'static str,
    pub need: Need,
    pub run: fn(&Env) -> String,
}

/// What the back end offers, learnt once at the start.
#[derive(Debug, Clone)]
pub struct Info {
    pub features: u64,
    pub protocol: P,
    pub capacity: u64,
}

/// A case's context: where to connect, how, what the back end offers.
pub struct Env {
    pub sock: PathBuf,
    pub opts: Options,
    pub info: Info,
}

impl Env {
    /// A fully set up connection (memory table, ring 0 running).
    pub fn conn(&self) -> Result<Driver, String> {
        Driver::connect(&self.sock, self.opts.clone())
    }

    /// A negotiated connection without memory table or ring.
    pub fn bare(&self) -> Result<Driver, String> {
        Driver::negotiate(&self.sock, self.opts.clone())
    }

    /// Sectors of the disk.
    pub fn sectors(&self) -> u64 {
        self.info.capacity / 512
    }
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub verdict: &'static str,
    /// What the back end did.
    pub did: String,
    /// The integrity probe's result.
    pub probe: String,
    pub ms: u128,
}
