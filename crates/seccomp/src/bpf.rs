//! The BPF program builder: an allow-list (system call numbers, each with
//! the argument conditions under which it is allowed) compiled into a
//! seccomp-bpf program by `seccompiler`.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::action::Action;
use crate::error::Error;
use crate::thread_kind::ThreadKind;

/// One condition on one argument; a syscall allowed under conditions is
/// allowed when any one of them holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Cond {
    /// The low 32 bits of the argument equal the value.
    Eq(u8, u64),
    /// The argument (64 bits) is 0.
    Null(u8),
    /// None of these bits is set in the low 32 bits.
    Clear(u8, u64),
    /// All of these bits are set (64 bits).
    Set(u8, u64),
}

impl Cond {
    fn rule(self) -> Result<SeccompRule, seccompiler::BackendError> {
        use SeccompCmpArgLen::{Dword, Qword};
        let c = match self {
            Cond::Eq(a, v) => SeccompCondition::new(a, Dword, SeccompCmpOp::Eq, v)?,
            Cond::Null(a) => SeccompCondition::new(a, Qword, SeccompCmpOp::Eq, 0)?,
            Cond::Clear(a, m) => SeccompCondition::new(a, Dword, SeccompCmpOp::MaskedEq(m), 0)?,
            Cond::Set(a, m) => SeccompCondition::new(a, Qword, SeccompCmpOp::MaskedEq(m), m)?,
        };
        SeccompRule::new(vec![c])
    }
}

/// `None`: any arguments; `Some(conds)`: one of them must hold.
type Args = Option<Vec<Cond>>;

#[derive(Clone, Debug, Default)]
pub(crate) struct List(pub(crate) BTreeMap<i64, (&'static str, Args)>);

impl List {
    pub(crate) fn allow(&mut self, (nr, name): (i64, &'static str)) {
        self.0.insert(nr, (name, None));
    }

    pub(crate) fn allow_if(&mut self, (nr, name): (i64, &'static str), conds: &[Cond]) {
        let e = self.0.entry(nr).or_insert((name, Some(Vec::new())));
        if let Some(v) = &mut e.1 {
            v.extend_from_slice(conds);
            v.sort_unstable();
            v.dedup();
        }
    }

    pub(crate) fn add(&mut self, other: &List) {
        for (&nr, (name, args)) in &other.0 {
            match args {
                None => self.allow((nr, name)),
                Some(c) => self.allow_if((nr, name), c),
            }
        }
    }

    /// Does every call this list allows also pass `wider`?
    pub(crate) fn within(&self, wider: &List) -> Result<(), String> {
        for (nr, (name, args)) in &self.0 {
            match (args, wider.0.get(nr)) {
                (_, None) => return Err(format!("{name} is not allowed at all")),
                (_, Some((_, None))) => {}
                (None, Some((_, Some(_)))) => {
                    return Err(format!("{name}: any arguments, but only some there"))
                }
                (Some(c), Some((_, Some(w)))) => {
                    if let Some(x) = c.iter().find(|x| !w.contains(x)) {
                        return Err(format!("{name}: {x:?} is not allowed there"));
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn filter(&self, kind: ThreadKind, action: Action) -> Result<BpfProgram, Error> {
        let bad = |e: String| Error::Build(kind, e);
        let mut rules = BTreeMap::new();
        for (&nr, (_, args)) in &self.0 {
            let r = match args {
                None => Vec::new(),
                Some(c) => c
                    .iter()
                    .map(|c| c.rule())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(e.to_string()))?,
            };
            rules.insert(nr, r);
        }
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| bad(e.to_string()))?;
        let f = SeccompFilter::new(rules, action.into(), SeccompAction::Allow, arch)
            .map_err(|e| bad(e.to_string()))?;
        BpfProgram::try_from(f).map_err(|e| bad(e.to_string()))
    }
}
