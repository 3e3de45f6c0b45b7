//! The kinds of vblk threads, each with its own allow-list.

/// The kinds of threads, each with its own allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThreadKind {
    /// The main thread before a transport narrows it; its filter is
    /// inherited by every thread started afterwards, so it allows the
    /// union of all the lists.
    Main,
    /// The signal thread and the `--control` statistics thread.
    Control,
    /// The thread serving vhost-user messages (the main thread).
    VhostUser,
    /// The vfio-user server thread (and the INTx watcher threads it starts).
    VfioUser,
    /// A queue runner: rings, eventfds, storage I/O.
    Queue,
    /// An NBD connection's reply thread (`vblk-nbd-N`): reads replies,
    /// reconnects (TCP or UNIX `socket` + `connect`). Started before the
    /// main filter, so it is not part of `Main`.
    Nbd,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [ThreadKind; 6] = [
        ThreadKind::Main,
        ThreadKind::Control,
        ThreadKind::VhostUser,
        ThreadKind::VfioUser,
        ThreadKind::Queue,
        ThreadKind::Nbd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Main => "main",
            ThreadKind::Control => "control",
            ThreadKind::VhostUser => "vhost-user",
            ThreadKind::VfioUser => "vfio-user",
            ThreadKind::Queue => "queue",
            ThreadKind::Nbd => "nbd",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
