//! Texts kept for a whole load, lent out while more are added.
//!
//! The statement tree borrows every word from the text it was read in (no
//! allocation per word). Those texts are the files read and, when a line was
//! rewritten (a parameter substituted, a conditional prefix removed), the
//! line as rewritten; both are found while earlier ones are borrowed. Each
//! goes into a slot of its own, set once, in chunks that double in size and
//! never move, so a `&str` handed out stays valid for as long as the arena
//! and no `unsafe` is needed.

use std::cell::{Cell, OnceCell};

/// Slots in the first chunk; chunk `k` has `FIRST << k`.
const FIRST: usize = 64;
/// Enough chunks for 64 × (2³⁰ − 1) texts, far beyond what the limits of one
/// load let through.
const CHUNKS: usize = 30;

pub(crate) struct Arena {
    chunks: [OnceCell<Box<[OnceCell<String>]>>; CHUNKS],
    used: Cell<usize>,
}

impl Arena {
    pub fn new() -> Self {
        Arena {
            chunks: std::array::from_fn(|_| OnceCell::new()),
            used: Cell::new(0),
        }
    }

    /// Keeps `text` until the arena is dropped; None once every slot is
    /// taken, which the limits of a load keep far away.
    pub fn keep(&self, text: String) -> Option<&str> {
        let n = self.used.get();
        // Slot n is in chunk k where FIRST × (2^k − 1) <= n < FIRST × (2^(k+1) − 1).
        let k = usize::BITS - 1 - (n / FIRST + 1).leading_zeros();
        let k = usize::try_from(k).ok()?;
        let first_of_chunk = FIRST * ((1 << k) - 1);
        let chunk = self
            .chunks
            .get(k)?
            .get_or_init(|| (0..FIRST << k).map(|_| OnceCell::new()).collect());
        let slot = chunk.get(n - first_of_chunk)?;
        self.used.set(n + 1);
        Some(slot.get_or_init(|| text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_stay_where_they_were_lent() {
        let arena = Arena::new();
        let kept: Vec<&str> = (0..1000)
            .map(|i| arena.keep(format!("line {i}")).expect("room"))
            .collect();
        for (i, text) in kept.iter().enumerate() {
            assert_eq!(*text, format!("line {i}"));
        }
    }
}
