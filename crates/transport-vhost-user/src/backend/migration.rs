//! Live migration messages on the connection: dirty logging on and off
//! (`VHOST_F_LOG_ALL`) and the log itself (SET_LOG_BASE).

use std::fs::File;

use vhost::vhost_user::message::VhostUserLog;
use vhost::vhost_user::Result as VuResult;

use super::{Conn, Res};
use crate::dirty_log::LogMap;

impl Conn {
    /// "To start/stop logging of data/used ring writes, the front-end may
    /// send messages VHOST_USER_SET_FEATURES with VHOST_F_LOG_ALL ..."
    pub(super) fn set_logging(&mut self, on: bool) {
        let was = self.dirty.set_enabled(on);
        if on && !was {
            // A request records what it must log when it is popped: wait
            // for every request popped before logging was on, so that none
            // completes unlogged after this message is answered. (Their
            // writes are done by then, before the migration copies memory.)
            drop(self.runners.pause_all());
            if self.dirty.log_len() == 0 {
                log::warn!("dirty logging on without a log (SET_LOG_BASE): writes are not logged");
            }
            log::info!("dirty logging on ({} bytes of log)", self.dirty.log_len());
        } else if was && !on {
            log::info!(
                "dirty logging off ({} page writes could not be logged)",
                self.dirty.unlogged()
            );
        }
    }

    /// SET_LOG_BASE: "The log memory fd is provided in the ancillary data
    /// of VHOST_USER_SET_LOG_BASE message when the back-end has
    /// VHOST_USER_PROTOCOL_F_LOG_SHMFD protocol feature." The new log
    /// replaces the old one once no queue writes into it; the reply (sent
    /// by the library after this returns) tells the front end it may read
    /// and free the old one.
    pub(super) fn install_log(&mut self, msg: &VhostUserLog, file: File) -> Res<()> {
        let (size, offset) = (msg.mmap_size, msg.mmap_offset);
        let map = LogMap::map(file, size, offset)?;
        log::debug!("dirty log: {size} bytes at offset {offset:#x}");
        self.dirty.replace(Some(map));
        Ok(())
    }

    pub(super) fn on_set_log_base(&mut self, log: &VhostUserLog, file: File) -> VuResult<()> {
        // The library answers only on success (the front end waits for
        // that reply): a log that cannot be used drops the connection.
        match self.install_log(log, file) {
            Ok(()) => Ok(()),
            Err(e) => self.fatal("SET_LOG_BASE", e),
        }
    }
}
