//! The table of requests (and storage operations) in flight.
//!
//! Each entry is named by a generation-tagged [`Token`]: the low 32 bits
//! are the slot, the high 32 bits the slot's generation, bumped whenever
//! the slot is freed. A completion that arrives for a slot that has since
//! been reused carries an old generation and finds nothing, instead of
//! completing somebody else's request.

/// Names one entry of a [`Table`].
pub type Token = u64;

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// A slab of entries with generation-tagged tokens.
#[derive(Debug)]
pub struct Table<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

fn split(token: Token) -> (usize, u32) {
    ((token & 0xffff_ffff) as usize, (token >> 32) as u32)
}

impl<T> Table<T> {
    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Store `value`; returns its token.
    pub fn insert(&mut self, value: T) -> Token {
        self.len += 1;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                // More than 2^32 entries cannot be in flight: a queue has at
                // most 32768 chains and each a bounded number of operations.
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.value = Some(value);
        (u64::from(slot.generation) << 32) | u64::from(index)
    }

    /// The entry named by `token`, if it is still there.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        let (i, g) = split(token);
        let slot = self.slots.get_mut(i)?;
        if slot.generation != g {
            return None;
        }
        slot.value.as_mut()
    }

    /// Take the entry named by `token` out; its slot's generation moves on.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        let (i, g) = split(token);
        let slot = self.slots.get_mut(i)?;
        if slot.generation != g {
            return None;
        }
        let v = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(i as u32);
        self.len -= 1;
        Some(v)
    }

    /// Tokens of every entry (for draining).
    pub fn tokens(&self) -> Vec<Token> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| (u64::from(s.generation) << 32) | i as u64)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_token_finds_nothing_after_reuse() {
        let mut t = Table::default();
        let a = t.insert("a");
        assert_eq!(t.remove(a), Some("a"));
        let b = t.insert("b");
        // Same slot, new generation.
        assert_eq!(a & 0xffff_ffff, b & 0xffff_ffff);
        assert_ne!(a, b);
        assert_eq!(t.get_mut(a), None);
        assert_eq!(t.remove(a), None);
        assert_eq!(t.remove(b), Some("b"));
        assert!(t.is_empty());
    }

    #[test]
    fn tokens_list_live_entries() {
        let mut t = Table::default();
        let toks: Vec<_> = (0..5).map(|i| t.insert(i)).collect();
        t.remove(toks[1]);
        t.remove(toks[3]);
        let mut live = t.tokens();
        live.sort();
        assert_eq!(live, vec![toks[0], toks[2], toks[4]]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.remove(u64::MAX), None);
    }
}
