//! Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4).
//!
//! Each backend walks its own permutation of the table, derived from its address and port alone,
//! and claims the next free entry on its turn. Weights decide how often a backend gets a turn: in
//! every round each backend adds its weight to a credit and takes a turn when the credit reaches
//! the largest weight (Katran's "Maglev v2" scheme). Shares are therefore proportional to weights
//! whatever their scale, so weights 1 and 10 give 1:10 rather than the 1:1 split a
//! turn-per-weight-unit scheme gives on small tables.
//!
//! Backends are sorted by (address, port) before building, so directors that list the same
//! backends in different orders build byte-identical tables: a failover keeps every flow on its
//! backend.

use crate::maps::{Addr, NO_BACKEND};

/// A backend as the table builder sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevBackend {
    pub addr: Addr,
    /// Host byte order.
    pub port: u16,
    /// 0 means drained: the backend gets no entry.
    pub weight: u32,
    /// What the table stores for this backend (the backend map index).
    pub id: u32,
}

/// Per-backend walking state; callers provide one per backend so that building allocates nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaglevCursor {
    next: u32,
    skip: u32,
    credit: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaglevError {
    /// The table length must be a prime so that every permutation visits every entry.
    SizeNotPrime(usize),
    /// Fewer cursors than backends.
    ScratchTooSmall { backends: usize, cursors: usize },
    /// Two backends with the same address and port would walk the same permutation.
    DuplicateBackend { addr: Addr, port: u16 },
}

impl core::fmt::Display for MaglevError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MaglevError::SizeNotPrime(n) => write!(f, "Maglev table size {n} is not a prime"),
            MaglevError::ScratchTooSmall { backends, cursors } => {
                write!(f, "{backends} backends but only {cursors} cursors")
            }
            MaglevError::DuplicateBackend { port, .. } => {
                write!(f, "backend listed twice (port {port})")
            }
        }
    }
}

const OFFSET_SEED: u32 = 0x6d61_676c; // "magl"
const SKIP_SEED: u32 = 0x6576_3031; // "ev01"

fn backend_hash(b: &MaglevBackend, seed: u32) -> u32 {
    let mut h = seed;
    for w in b.addr {
        h = crate::hash::flow_hash_v4(h, w, 0, 0, 0);
    }
    crate::hash::flow_hash_v4(h, u32::from(b.port), 0, 0, 0)
}

/// Whether `n` is prime (trial division; table sizes are small enough).
pub const fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// Fills `table` (its length is the Maglev table size M, a prime) with backend ids.
///
/// `backends` is sorted in place. Entries are [`NO_BACKEND`] only when every weight is 0.
pub fn build(
    backends: &mut [MaglevBackend],
    cursors: &mut [MaglevCursor],
    table: &mut [u32],
) -> Result<(), MaglevError> {
    let size = table.len();
    if !is_prime(size) || size > u32::MAX as usize {
        return Err(MaglevError::SizeNotPrime(size));
    }
    if cursors.len() < backends.len() {
        return Err(MaglevError::ScratchTooSmall {
            backends: backends.len(),
            cursors: cursors.len(),
        });
    }
    backends.sort_unstable_by_key(|b| (b.addr, b.port));
    if let Some(w) = backends
        .windows(2)
        .find(|w| (w[0].addr, w[0].port) == (w[1].addr, w[1].port))
    {
        return Err(MaglevError::DuplicateBackend {
            addr: w[0].addr,
            port: w[0].port,
        });
    }

    table.fill(NO_BACKEND);
    let m = size as u32;
    let max_weight = backends.iter().map(|b| b.weight).max().unwrap_or(0);
    if max_weight == 0 {
        return Ok(());
    }
    for (b, c) in backends.iter().zip(cursors.iter_mut()) {
        *c = MaglevCursor {
            next: backend_hash(b, OFFSET_SEED) % m,
            skip: backend_hash(b, SKIP_SEED) % (m - 1) + 1,
            credit: 0,
        };
    }

    let mut filled = 0usize;
    loop {
        for (b, c) in backends.iter().zip(cursors.iter_mut()) {
            if b.weight == 0 {
                continue;
            }
            c.credit += u64::from(b.weight);
            if c.credit < u64::from(max_weight) {
                continue;
            }
            c.credit -= u64::from(max_weight);
            // Walk this backend's permutation to its next free entry. The walk ends: the
            // permutation visits every entry and at least one is free.
            loop {
                let slot = c.next as usize;
                c.next += c.skip;
                if c.next >= m {
                    c.next -= m;
                }
                if table[slot] == NO_BACKEND {
                    table[slot] = b.id;
                    break;
                }
            }
            filled += 1;
            if filled == size {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use rand::{SeedableRng, seq::SliceRandom};

    use super::*;
    use crate::maps::{MAGLEV_TABLE_SIZE, v4_mapped};

    const M: usize = MAGLEV_TABLE_SIZE;

    fn backends(weights: &[u32]) -> Vec<MaglevBackend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| MaglevBackend {
                addr: v4_mapped(u32::from_be_bytes([10, 1, (i >> 8) as u8, i as u8])),
                port: 80,
                weight,
                id: i as u32,
            })
            .collect()
    }

    fn table_of(mut bs: Vec<MaglevBackend>) -> Vec<u32> {
        let mut cursors = vec![MaglevCursor::default(); bs.len()];
        let mut table = vec![0; M];
        build(&mut bs, &mut cursors, &mut table).unwrap();
        table
    }

    fn shares(table: &[u32], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &id in table {
            counts[id as usize] += 1;
        }
        counts
    }

    #[test]
    fn equal_weights_share_evenly() {
        let table = table_of(backends(&[1; 100]));
        let fair = M as f64 / 100.0;
        for (i, c) in shares(&table, 100).into_iter().enumerate() {
            assert!(
                c as f64 <= fair * 1.015,
                "backend {i} owns {c}, fair {fair}"
            );
        }
    }

    #[test]
    fn weights_set_shares() {
        let table = table_of(backends(&[40, 30, 30]));
        for (c, want) in shares(&table, 3).into_iter().zip([0.40, 0.30, 0.30]) {
            let got = c as f64 / M as f64;
            assert!((got - want).abs() <= 0.01, "share {got}, want {want}");
        }
        // Katran's users saw 1:1 with weights 1 and 10 on small tables.
        let table = table_of(backends(&[1, 10]));
        let s = shares(&table, 2);
        assert!((s[1] as f64 / s[0] as f64 - 10.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn drained_backend_owns_nothing() {
        let table = table_of(backends(&[1, 0, 1]));
        assert_eq!(shares(&table, 3)[1], 0);
        assert!(table_of(backends(&[0, 0])).iter().all(|&e| e == NO_BACKEND));
    }

    #[test]
    fn listing_order_does_not_matter() {
        let bs = backends(&[3, 1, 4, 1, 5, 9, 2, 6]);
        let want = table_of(bs.clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..5 {
            let mut shuffled = bs.clone();
            shuffled.shuffle(&mut rng);
            assert_eq!(table_of(shuffled), want);
        }
    }

    #[test]
    fn removing_a_backend_moves_little_and_adding_it_back_restores() {
        let all = backends(&[1; 100]);
        let before = table_of(all.clone());
        let mut without = all.clone();
        let removed = without.remove(37);
        let after = table_of(without);
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let owned = before.iter().filter(|&&id| id == removed.id).count();
        assert!(
            changed <= 3 * owned,
            "{changed} entries changed, the removed backend owned {owned}"
        );
        assert_eq!(table_of(all), before);
    }

    #[test]
    fn rejects_bad_input() {
        let mut bs = backends(&[1, 1]);
        let mut cursors = vec![MaglevCursor::default(); 2];
        let mut table = vec![0; 65536];
        assert_eq!(
            build(&mut bs, &mut cursors, &mut table),
            Err(MaglevError::SizeNotPrime(65536))
        );
        let mut table = vec![0; 13];
        bs[1].addr = bs[0].addr;
        assert!(matches!(
            build(&mut bs, &mut cursors, &mut table),
            Err(MaglevError::DuplicateBackend { .. })
        ));
        assert!(matches!(
            build(&mut bs, &mut cursors[..1], &mut table),
            Err(MaglevError::ScratchTooSmall { .. })
        ));
    }
}
