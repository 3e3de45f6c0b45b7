//! The faults a mapping has contained: SIGBUS (its file shrunk under it)
//! and SIGSEGV (a device write to a read-only region).

/// Faults contained in one mapping since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults(pub(crate) u32);

pub(crate) const FAULT_BUS: u32 = 1;
pub(crate) const FAULT_SEGV: u32 = 2;

impl Faults {
    /// None so far: the mapping is intact.
    pub fn none(self) -> bool {
        self.0 == 0
    }
    /// SIGBUS: the file was shrunk under the mapping.
    pub fn past_eof(self) -> bool {
        self.0 & FAULT_BUS != 0
    }
    /// SIGSEGV: an access the mapping does not allow (a device write to a
    /// read-only region).
    pub fn protection(self) -> bool {
        self.0 & FAULT_SEGV != 0
    }
}

impl std::fmt::Display for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.past_eof(), self.protection()) {
            (false, false) => write!(f, "intact"),
            (true, false) => write!(f, "its file was shrunk under it"),
            (false, true) => write!(f, "the device wrote to it while it is read-only"),
            (true, true) => write!(f, "its file was shrunk and it was written while read-only"),
        }
    }
}
