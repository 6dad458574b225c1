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
//!
//! Filling a table takes about M ln M probes, most of them when it is nearly full. The builder
//! keeps them cheap: taken entries are marked in a bitmap (16 KiB at most, in the L1 cache, where
//! the table itself is up to 512 KiB); a walk steps without dividing or branching on the wrap (two
//! cycles a step on x86-64), and two interleaved walks over alternate steps halve its dependency
//! chain; from 35% to 75% full, a walk's first four entries are probed together and the first free
//! one taken without a branch (the walk's end is otherwise a mispredicted branch about once a
//! turn); equal weights (the common case) skip the credit arithmetic, and with unequal ones the
//! rounds in which only the heaviest backends take turns are taken as runs, without visiting the
//! others. The last 3/4 sqrt(M) entries are not walked to at all: for each free entry, the number
//! of steps a backend's walk needs to reach it follows from the inverse of its stride, so the
//! nearest free entry, the one the walk would find, costs one multiply per free entry rather than
//! about M / free probes (and the inverses, one extended Euclid for all of them).

use crate::maps::{Addr, MAX_MAGLEV_TABLE_SIZE, MAX_MEMBERS, NO_BACKEND};

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

/// Words of the occupancy bitmap: one bit per entry of the largest table.
const OCCUPIED_WORDS: usize = (MAX_MAGLEV_TABLE_SIZE as usize).div_ceil(64);
// [`FastMod`] needs m < 2^17.
const _: () = assert!(MAX_MAGLEV_TABLE_SIZE < 1 << 17);

/// Entries of the largest table left for the endgame (see [`tail_len`]).
const MAX_TAIL: usize = tail_len(MAX_MAGLEV_TABLE_SIZE as usize);

/// One backend's walk through its permutation.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    /// The entry the walk looks at next.
    next: u32,
    skip: u32,
    /// Two steps at once, `2 skip mod m`, for the interleaved walks of [`claim`].
    skip2: u32,
    /// `m - skip` and `m - skip2`, for [`step`]: kept here rather than worked out in each
    /// claim, where a register fewer saves the walk a spill (2-4% of a build, measured).
    back: u32,
    back2: u32,
    id: u32,
    weight: u32,
    /// Below the largest weight between turns.
    credit: u32,
}

/// Working memory of [`build`], sized for the largest input it accepts ([`MAX_MEMBERS`]
/// backends, [`MAX_MAGLEV_TABLE_SIZE`] entries; about 212 KiB), so that building allocates
/// nothing. Keep one and reuse it; what it holds between builds does not matter.
#[derive(Clone)]
pub struct MaglevScratch {
    /// The backends in turn order: indices in the low 16 bits (see [`turn_order`]).
    order: [u64; MAX_MEMBERS as usize],
    cursors: [Cursor; MAX_MEMBERS as usize],
    /// The cursors of the backends of the largest weight, for rounds only they take turns in.
    heaviest: [u32; MAX_MEMBERS as usize],
    /// The endgame's cursors' `skip` inverted modulo the table size (0: not in the endgame).
    inverses: [u32; MAX_MEMBERS as usize],
    /// Which table entries are taken: 16 KiB that stay in the L1 cache, where probing the table
    /// itself would read up to 512 KiB.
    occupied: [u64; OCCUPIED_WORDS],
    /// The entries still free in the endgame.
    free: [u32; MAX_TAIL],
    /// The cursors that take the endgame's turns, in turn order.
    claimants: [u32; MAX_TAIL],
    /// The endgame's cursors, each once, and the products of their strides so far (mod m).
    listed: [u32; MAX_TAIL],
    products: [u32; MAX_TAIL],
}

impl MaglevScratch {
    pub const fn new() -> Self {
        MaglevScratch {
            order: [0; MAX_MEMBERS as usize],
            cursors: [Cursor {
                next: 0,
                skip: 0,
                skip2: 0,
                back: 0,
                back2: 0,
                id: 0,
                weight: 0,
                credit: 0,
            }; MAX_MEMBERS as usize],
            heaviest: [0; MAX_MEMBERS as usize],
            inverses: [0; MAX_MEMBERS as usize],
            occupied: [0; OCCUPIED_WORDS],
            free: [0; MAX_TAIL],
            claimants: [0; MAX_TAIL],
            listed: [0; MAX_TAIL],
            products: [0; MAX_TAIL],
        }
    }
}

impl Default for MaglevScratch {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaglevError {
    /// The table length must be a prime so that every permutation visits every entry.
    SizeNotPrime(usize),
    /// The table is longer than [`MAX_MAGLEV_TABLE_SIZE`].
    SizeTooLarge(usize),
    /// More backends than [`MAX_MEMBERS`].
    TooManyBackends(usize),
    /// Two backends with the same address and port would walk the same permutation.
    DuplicateBackend { addr: Addr, port: u16 },
}

impl core::fmt::Display for MaglevError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MaglevError::SizeNotPrime(n) => write!(f, "Maglev table size {n} is not a prime"),
            MaglevError::SizeTooLarge(n) => write!(
                f,
                "Maglev table size {n} is larger than {MAX_MAGLEV_TABLE_SIZE}"
            ),
            MaglevError::TooManyBackends(n) => {
                write!(f, "{n} backends, at most {MAX_MEMBERS} supported")
            }
            MaglevError::DuplicateBackend { port, .. } => {
                write!(f, "backend listed twice (port {port})")
            }
        }
    }
}

const OFFSET_SEED: u32 = 0x6d61_676c; // "magl"
const SKIP_SEED: u32 = 0x6576_3031; // "ev01"

/// MurmurHash3 of the backend's address and port: where its walk starts (one seed) and its
/// stride (the other).
#[cfg(test)]
fn backend_hash(b: &MaglevBackend, seed: u32) -> u32 {
    backend_hash_after(prefix_hash(&b.addr, seed), b)
}

/// MurmurHash3's state after the first three words of `addr`. Backends in one /96 (every IPv4
/// backend) share it, so [`build`] works it out once for all of them.
fn prefix_hash(addr: &Addr, seed: u32) -> u32 {
    addr[..3].iter().fold(seed, |h, &w| mix(h, w))
}

/// The backend's hash from the state [`prefix_hash`] left.
#[inline(always)]
fn backend_hash_after(prefix: u32, b: &MaglevBackend) -> u32 {
    finish(mix(mix(prefix, b.addr[3]), u32::from(b.port)), 5)
}

/// MurmurHash3 (x86_32)'s block step.
const fn mix(h: u32, k: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// MurmurHash3 (x86_32)'s finalisation of `words` blocks.
const fn finish(h: u32, words: u32) -> u32 {
    crate::hash::avalanche(h ^ (words * 4))
}

/// The order backends take their turns in: by address, then port.
fn order(b: &MaglevBackend) -> (Addr, u16) {
    (b.addr, b.port)
}

/// Bits of a turn-order key below the backend's index.
const INDEX_BITS: u32 = 16;
const _: () = assert!(MAX_MEMBERS <= 1 << INDEX_BITS);

/// The backend index a turn-order key holds.
const fn index_of(key: u64) -> usize {
    (key & ((1 << INDEX_BITS) - 1)) as usize
}

/// Fills `keys` (as long as `backends`) with the backends' indices in turn order ([`order`]),
/// each in the low [`INDEX_BITS`] bits of its key, and tells whether the backends share their
/// address's first three words.
///
/// IPv4 backends (and IPv6 ones in one /96) differ only in their last address word, so the key
/// is that word, the port and the index, and sorting plain integers is about four times faster
/// than comparing addresses (which matters only to configs that list backends out of order:
/// the daemon passes them in order).
fn turn_order(backends: &[MaglevBackend], keys: &mut [u64]) -> Result<bool, MaglevError> {
    let same_prefix = backends
        .windows(2)
        .all(|w| w[0].addr[..3] == w[1].addr[..3]);
    if same_prefix {
        for (i, (k, b)) in keys.iter_mut().zip(backends).enumerate() {
            *k = u64::from(b.addr[3]) << 32 | u64::from(b.port) << INDEX_BITS | i as u64;
        }
        keys.sort_unstable();
    } else {
        for (i, k) in keys.iter_mut().enumerate() {
            *k = i as u64;
        }
        keys.sort_unstable_by_key(|&k| order(&backends[index_of(k)]));
    }
    match keys
        .windows(2)
        .map(|w| (&backends[index_of(w[0])], &backends[index_of(w[1])]))
        .find(|(a, b)| order(a) == order(b))
    {
        Some((b, _)) => Err(MaglevError::DuplicateBackend {
            addr: b.addr,
            port: b.port,
        }),
        None => Ok(same_prefix),
    }
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

/// Fills `table` (its length is the Maglev table size M, a prime no larger than
/// [`MAX_MAGLEV_TABLE_SIZE`]) with backend ids, using `scratch` as working memory.
///
/// The order of `backends` does not matter. Entries are [`NO_BACKEND`] only when every weight
/// is 0. 1,000 backends fill a table of 65537 entries in about 1 ms.
pub fn build(
    backends: &[MaglevBackend],
    scratch: &mut MaglevScratch,
    table: &mut [u32],
) -> Result<(), MaglevError> {
    let size = table.len();
    if size > MAX_MAGLEV_TABLE_SIZE as usize {
        return Err(MaglevError::SizeTooLarge(size));
    }
    if !is_prime(size) {
        return Err(MaglevError::SizeNotPrime(size));
    }
    if backends.len() > MAX_MEMBERS as usize {
        return Err(MaglevError::TooManyBackends(backends.len()));
    }
    let keys = &mut scratch.order[..backends.len()];
    let same_prefix = turn_order(backends, keys)?;

    // Drained backends never take a turn: only the others get a cursor, in turn order.
    let m = size as u32;
    let (modulo, modulo_less_one) = (FastMod::new(m), FastMod::new(m - 1));
    let mut active = 0;
    let (mut min_weight, mut max_weight) = (u32::MAX, 0);
    let prefixes = |b: &MaglevBackend| {
        (
            prefix_hash(&b.addr, OFFSET_SEED),
            prefix_hash(&b.addr, SKIP_SEED),
        )
    };
    let shared = match backends.first() {
        Some(b) if same_prefix => Some(prefixes(b)),
        _ => None,
    };
    for &key in keys.iter() {
        let b = &backends[index_of(key)];
        if b.weight == 0 {
            continue;
        }
        let (offset_prefix, skip_prefix) = shared.unwrap_or_else(|| prefixes(b));
        let skip = modulo_less_one.reduce(backend_hash_after(skip_prefix, b).into()) + 1;
        let skip2 = step(skip, skip, m - skip);
        scratch.cursors[active] = Cursor {
            next: modulo.reduce(backend_hash_after(offset_prefix, b).into()),
            skip,
            skip2,
            back: m - skip,
            back2: m - skip2,
            id: b.id,
            weight: b.weight,
            credit: 0,
        };
        active += 1;
        min_weight = min_weight.min(b.weight);
        max_weight = max_weight.max(b.weight);
    }
    if active == 0 {
        table.fill(NO_BACKEND);
        return Ok(());
    }
    let cursors = &mut scratch.cursors[..active];
    let mut turns = Turns { at: 0, max_weight };

    // Every turn fills one entry. Most turns walk the backend's permutation to its next free
    // entry.
    let tail = tail_len(size);
    let walked = size - tail;
    let occupied = &mut scratch.occupied;
    occupied[..size.div_ceil(64)].fill(0);
    if min_weight == max_weight {
        // Every backend takes a turn in every round.
        for round in 0..walked / active {
            if in_window_band(round * active, size) {
                for c in cursors.iter_mut() {
                    claim_in_window(c, m, occupied, table);
                }
            } else {
                for c in cursors.iter_mut() {
                    claim(c, m, occupied, table);
                }
            }
        }
        for c in &mut cursors[..walked % active] {
            claim(c, m, occupied, table);
        }
        turns.at = walked % active;
    } else if walked > 0 {
        turns.at = walk_weighted(
            cursors,
            &mut scratch.heaviest,
            walked,
            size,
            max_weight,
            occupied,
            table,
        );
    }

    // The endgame: with few entries free, a walk would pass about `size / free` taken entries to
    // reach one. Instead, work out how many steps of the walk each free entry is away and take
    // the nearest: the same entry, found in `free` steps.
    let mut free = 0;
    for (i, &word) in occupied[..size.div_ceil(64)].iter().enumerate() {
        let mut bits = !word;
        if (i + 1) * 64 > size {
            bits &= (1 << (size % 64)) - 1;
        }
        while bits != 0 {
            scratch.free[free] = (i * 64) as u32 + bits.trailing_zeros();
            free += 1;
            bits &= bits - 1;
        }
    }
    debug_assert_eq!(free, tail);
    // Who takes the endgame's turns, and the inverses of their strides: all of them from one
    // extended Euclid and three multiplications each (Montgomery's trick), not one Euclid each.
    let claimants = &mut scratch.claimants[..tail];
    for c in claimants.iter_mut() {
        *c = turns.next(cursors) as u32;
    }
    let inverses = &mut scratch.inverses[..active];
    inverses.fill(0);
    let mut distinct = 0;
    for &i in claimants.iter() {
        if inverses[i as usize] == 0 {
            // Marks the cursor as listed; its inverse replaces the mark below.
            inverses[i as usize] = 1;
            let skip = cursors[i as usize].skip;
            scratch.products[distinct] = match distinct {
                0 => skip,
                _ => modulo.reduce(u64::from(scratch.products[distinct - 1]) * u64::from(skip)),
            };
            scratch.listed[distinct] = i;
            distinct += 1;
        }
    }
    if distinct > 0 {
        // The inverse of the product of the first k + 1 strides, walked back one stride at a
        // time.
        let mut inverse_of_product = inverse(scratch.products[distinct - 1], m);
        for k in (0..distinct).rev() {
            let i = scratch.listed[k] as usize;
            let skip = cursors[i].skip;
            inverses[i] = match k {
                0 => inverse_of_product,
                _ => modulo
                    .reduce(u64::from(inverse_of_product) * u64::from(scratch.products[k - 1])),
            };
            inverse_of_product = modulo.reduce(u64::from(inverse_of_product) * u64::from(skip));
        }
    }
    for &i in claimants.iter() {
        let cur = &mut cursors[i as usize];
        // The entry `s` is `(s + m - next) * inverse mod m` steps ahead. The product is below
        // 2 m^2 < 2^35, so `FastMod::low` of it orders entries by that remainder, and it is
        // linear in `s`: one multiply and one add per free entry.
        let per_entry = modulo.low(inverses[i as usize].into());
        let base = per_entry.wrapping_mul((m - cur.next).into());
        let best = nearest(&scratch.free[..free], per_entry, base);
        let slot = scratch.free[best];
        free -= 1;
        scratch.free[best] = scratch.free[free];
        table[slot as usize] = cur.id;
        cur.next = step(slot, cur.skip, m - cur.skip);
    }
    Ok(())
}

/// The `walked` turns before the endgame when weights differ (see [`Turns`]); returns the
/// cursor the endgame's turns start at.
///
/// The heaviest backends take a turn in every round, the others only in the rounds their
/// credit reaches the largest weight. Rounds in which none of the others does are taken as a
/// run of the heaviest backends' turns, without visiting the others: one backend of weight
/// 65535 beside 999 of weight 1 would otherwise visit all 1,000 in each of about 65,000 rounds
/// (60 ms), to place one entry a round. Not inlined into [`build`], whose equal-weight walk
/// reads 2% slower with it there (code layout, measured).
#[inline(never)]
fn walk_weighted(
    cursors: &mut [Cursor],
    heaviest_scratch: &mut [u32; MAX_MEMBERS as usize],
    walked: usize,
    size: usize,
    max_weight: u32,
    occupied: &mut [u64; OCCUPIED_WORDS],
    table: &mut [u32],
) -> usize {
    let max = u64::from(max_weight);
    let (mut heaviest, mut lighter_weight) = (0, 0);
    for (i, c) in cursors.iter().enumerate() {
        if c.weight == max_weight {
            heaviest_scratch[heaviest] = i as u32;
            heaviest += 1;
        } else {
            lighter_weight = lighter_weight.max(u64::from(c.weight));
        }
    }
    let heaviest = &heaviest_scratch[..heaviest];
    let mut left = walked;
    loop {
        // A round in which every backend adds its weight to its credit.
        let mut lighter_credit = 0;
        for (i, c) in cursors.iter_mut().enumerate() {
            let credit = u64::from(c.credit) + u64::from(c.weight);
            let turn = credit >= max;
            c.credit = (credit - if turn { max } else { 0 }) as u32;
            let lighter = c.weight != max_weight;
            lighter_credit = lighter_credit.max(if lighter { c.credit } else { 0 });
            if !turn {
                continue;
            }
            claim_turn(c, walked - left, size, occupied, table);
            left -= 1;
            if left == 0 {
                return if i + 1 == cursors.len() { 0 } else { i + 1 };
            }
        }
        // Rounds before any lighter backend can take a turn: a backend with credit c and
        // weight w takes its next in the (max - c - 1) / w + 1-th round from now, and the
        // largest credit and weight of the lighter ones bound that from below (most rounds
        // of mixed weights have none). Whole rounds only: a round the walk ends in is taken
        // above, where it may end midway.
        if u64::from(lighter_credit) + lighter_weight >= max {
            continue;
        }
        let quiet = ((max - u64::from(lighter_credit) - 1) / lighter_weight)
            .min((left / heaviest.len()) as u64);
        for _ in 0..quiet {
            for &i in heaviest {
                claim_turn(
                    &mut cursors[i as usize],
                    walked - left,
                    size,
                    occupied,
                    table,
                );
                left -= 1;
            }
        }
        for c in cursors.iter_mut().filter(|c| c.weight != max_weight) {
            c.credit = (u64::from(c.credit) + quiet * u64::from(c.weight)) as u32;
        }
        if left == 0 {
            // The walk ended with a whole round: the endgame starts the next.
            return 0;
        }
    }
}

/// The index in `free` (not empty) of the entry whose key `per_entry * s + base` is the
/// smallest. Keys of entries a different number of steps ahead differ by more than 2^46 (the
/// remainders of `FastMod::low`), so the index can replace a key's low bits: the smallest key then
/// names its entry, and four running minima need no branch and do not wait on each other.
#[inline(always)]
fn nearest(free: &[u32], per_entry: u64, base: u64) -> usize {
    const INDEX: u64 = (MAX_TAIL as u64).next_power_of_two() - 1;
    let key =
        |k: usize, s: u32| per_entry.wrapping_mul(s.into()).wrapping_add(base) & !INDEX | k as u64;
    let mut least = [u64::MAX; 4];
    let chunks = free.chunks_exact(4);
    let rest = chunks.remainder();
    for (j, chunk) in chunks.enumerate() {
        for (l, &s) in chunk.iter().enumerate() {
            least[l] = least[l].min(key(4 * j + l, s));
        }
    }
    for (l, &s) in rest.iter().enumerate() {
        least[l] = least[l].min(key(free.len() - rest.len() + l, s));
    }
    (least[0].min(least[1]).min(least[2].min(least[3])) & INDEX) as usize
}

/// How many entries of a table of `size` the endgame of [`build`] fills. Taking the next free
/// entry costs about `size / free` probes by walking and `free` steps by searching the free
/// entries, so the endgame starts when `free` is near the square root of `size`: a little
/// below it, because a probe costs less than a step (measured at 65,537 entries: 1-2% faster
/// than at the square root, and slower at half or one and a half times it).
const fn tail_len(size: usize) -> usize {
    size.isqrt() * 3 / 4
}

/// Whose turn it is. Each round a backend adds its weight to its credit and takes a turn when
/// the credit reaches the largest weight.
struct Turns {
    /// The cursor to look at next.
    at: usize,
    max_weight: u32,
}

impl Turns {
    /// The index of the cursor whose turn it is.
    #[inline(always)]
    fn next(&mut self, cursors: &mut [Cursor]) -> usize {
        loop {
            let i = self.at;
            self.at = if i + 1 == cursors.len() { 0 } else { i + 1 };
            let c = &mut cursors[i];
            let credit = u64::from(c.credit) + u64::from(c.weight);
            if credit >= u64::from(self.max_weight) {
                c.credit = (credit - u64::from(self.max_weight)) as u32;
                return i;
            }
            c.credit = credit as u32;
        }
    }
}

/// Walks `c`'s permutation to its next free entry and gives it to `c`'s backend. The walk ends:
/// the permutation visits every entry and at least one is free.
///
/// `m` is at most `table.len()` (and so at most [`MAX_MAGLEV_TABLE_SIZE`]), and every entry a
/// walk visits is below `m`: walks start below it and [`step`] stays below it. The probes and
/// the claim index unchecked on that ground: a bounds check is a tenth of a probe's
/// instructions, and probes are most of a build.
#[inline(always)]
fn claim(c: &mut Cursor, m: u32, occupied: &mut [u64; OCCUPIED_WORDS], table: &mut [u32]) {
    debug_assert!(m as usize <= table.len() && c.next < m);
    let a = c.next;
    let slot = if is_free(occupied, a) {
        a
    } else {
        walk_on(a, step(a, c.skip, c.back), c, occupied)
    };
    take(c, slot, m, occupied, table);
}

/// Whether entry `s` (below the table size, see [`claim`]) is free.
#[inline(always)]
fn is_free(occupied: &[u64; OCCUPIED_WORDS], s: u32) -> bool {
    // SAFETY: s < m <= MAX_MAGLEV_TABLE_SIZE <= 64 OCCUPIED_WORDS (see `claim`).
    let word = unsafe { *occupied.get_unchecked((s >> 6) as usize) };
    word >> (s & 63) & 1 == 0
}

/// The first free entry of `c`'s walk from `next`, the step after the taken entry `taken`.
/// Two interleaved walks over the even and odd steps: each step waits on the one two before
/// it, not on the one just before.
#[inline(always)]
fn walk_on(mut taken: u32, mut next: u32, c: &Cursor, occupied: &[u64; OCCUPIED_WORDS]) -> u32 {
    let (skip2, back2) = (c.skip2, c.back2);
    loop {
        taken = step(taken, skip2, back2);
        if is_free(occupied, next) {
            break next;
        }
        next = step(next, skip2, back2);
        if is_free(occupied, taken) {
            break taken;
        }
    }
}

/// Gives entry `slot` (free, below `m`) to `c`'s backend; `c`'s walk goes on after it.
#[inline(always)]
fn take(
    c: &mut Cursor,
    slot: u32,
    m: u32,
    occupied: &mut [u64; OCCUPIED_WORDS],
    table: &mut [u32],
) {
    debug_assert!(slot < m);
    // SAFETY: slot < m <= table.len() and m <= 64 OCCUPIED_WORDS (see `claim`).
    unsafe {
        *occupied.get_unchecked_mut((slot >> 6) as usize) |= 1u64.rotate_left(slot);
        *table.get_unchecked_mut(slot as usize) = c.id;
    }
    c.next = step(slot, c.skip, c.back);
}

/// Entries [`claim_in_window`] looks at together.
const WINDOW: usize = 4;

/// Whether turns taken with `claimed` of `size` entries filled look at a [`WINDOW`] of entries
/// at once: from 35% to 75% full, where the first free entry of a walk is among its first four
/// (at 75%, 68% of the time) but often not the first (at 35%, 35% of the time). Below, most
/// walks end at the first entry; above, most go further than four. (Measured at 1,000
/// backends, M = 65,537: 2-4% faster than from 45% to 70%; windows of two below and of six or
/// eight above gained 1% more at most, within the noise.)
#[inline(always)]
fn in_window_band(claimed: usize, size: usize) -> bool {
    (size * 35..size * 75).contains(&(claimed * 100))
}

/// As [`claim`], but the walk's first [`WINDOW`] entries are probed together, without a branch,
/// and the first free one of them taken: the walk's end, which [`claim`] finds with a branch
/// the CPU mispredicts about once a turn at these fills (a few dozen cycles, more than three
/// extra probes), is a chain of conditional moves here. Only a window with no free entry walks
/// on. Measured at 1,000 backends, M = 65,537: 2-4% off a build, and the moves 2-4% more than
/// gathering the free entries in a bit mask and taking its lowest bit.
#[inline(always)]
fn claim_in_window(
    c: &mut Cursor,
    m: u32,
    occupied: &mut [u64; OCCUPIED_WORDS],
    table: &mut [u32],
) {
    debug_assert!(m as usize <= table.len() && c.next < m);
    let (skip2, back2) = (c.skip2, c.back2);
    // Two interleaved walks, as in `walk_on`: `a` on the even steps, `b` on the odd.
    let mut a = c.next;
    let mut b = step(a, c.skip, c.back);
    let mut window = [0u32; WINDOW];
    for j in (0..WINDOW).step_by(2) {
        window[j] = a;
        window[j + 1] = b;
        a = step(a, skip2, back2);
        b = step(b, skip2, back2);
    }
    // The first free entry of the window, by conditional moves from its end; `m` if none is.
    let mut slot = m;
    for &s in window.iter().rev() {
        slot = core::hint::select_unpredictable(is_free(occupied, s), s, slot);
    }
    if slot == m {
        // The window's last entry was taken; the walk goes on from the one after it.
        slot = walk_on(window[WINDOW - 1], a, c, occupied);
    }
    take(c, slot, m, occupied, table);
}

/// One turn of [`walk_weighted`], `claimed` of the table's `size` entries taken before it: by a
/// window in the fills [`in_window_band`] names.
#[inline(always)]
fn claim_turn(
    c: &mut Cursor,
    claimed: usize,
    size: usize,
    occupied: &mut [u64; OCCUPIED_WORDS],
    table: &mut [u32],
) {
    if in_window_band(claimed, size) {
        claim_in_window(c, size as u32, occupied, table);
    } else {
        claim(c, size as u32, occupied, table);
    }
}

/// `(slot + skip) % m` for `slot < m`, given `back = m - skip`. Whether the walk wraps is a coin
/// toss: a conditional move, not a branch.
///
/// A walk's steps form a chain, each waiting on the one before, so the chain's latency bounds
/// the walk. LLVM turns the select into `slot + (slot < back ? skip : -back)`: a compare, the
/// move, then the add, three cycles a step. On x86-64 the step is written out as two
/// independent operations and the move, two cycles: 7-9% off a build at 1,000 backends,
/// M = 65,537 (same-crate A/B, tables unchanged).
#[inline(always)]
fn step(slot: u32, skip: u32, back: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut slot = slot;
        // SAFETY: register arithmetic only. `lea` adds the whole registers, whose upper halves
        // may hold anything, but keeps the low 32 bits of the sum, which are `slot + skip`.
        unsafe {
            core::arch::asm!(
                "lea {ahead:e}, [{slot:r} + {skip:r}]",
                "sub {slot:e}, {back:e}",
                "cmovb {slot:e}, {ahead:e}",
                slot = inout(reg) slot,
                skip = in(reg) skip,
                back = in(reg) back,
                ahead = out(reg) _,
                options(pure, nomem, nostack),
            );
        }
        slot
    }
    #[cfg(not(target_arch = "x86_64"))]
    portable_step(slot, skip, back)
}

/// [`step`] as LLVM writes it: what other targets use, and what the x86-64 one is tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn portable_step(slot: u32, skip: u32, back: u32) -> u32 {
    core::hint::select_unpredictable(slot >= back, slot.wrapping_sub(back), slot + skip)
}

/// The inverse of `a` modulo the prime `m` (extended Euclid), for `0 < a < m`.
fn inverse(a: u32, m: u32) -> u32 {
    let (mut r0, mut r1) = (m as i32, a as i32);
    let (mut t0, mut t1) = (0i32, 1i32);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    debug_assert_eq!(r0, 1);
    if t0 < 0 {
        (t0 + m as i32) as u32
    } else {
        t0 as u32
    }
}

/// Remainders by a divisor `m < 2^17` without dividing (Lemire, Kaser and Kurz, "Faster
/// remainder by direct computation", 2019): with `c = ceil(2^64 / m)`, the remainder of
/// `x < 2^47` is `((c x mod 2^64) m) >> 64`, and it grows with `c x mod 2^64`.
struct FastMod {
    m: u64,
    c: u64,
}

impl FastMod {
    fn new(m: u32) -> Self {
        FastMod {
            m: m.into(),
            // 0 for m = 1, which makes every remainder 0 as it should be.
            c: (u64::MAX / u64::from(m)).wrapping_add(1),
        }
    }

    /// `c x mod 2^64`: orders numbers below 2^47 by their remainders.
    #[inline(always)]
    fn low(&self, x: u64) -> u64 {
        self.c.wrapping_mul(x)
    }

    /// `x mod m` for `x < 2^47`.
    #[inline(always)]
    fn reduce(&self, x: u64) -> u32 {
        ((u128::from(self.low(x)) * u128::from(self.m)) >> 64) as u32
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{boxed::Box, vec, vec::Vec};

    use rand::{Rng, SeedableRng, seq::SliceRandom};

    use super::*;
    use crate::maps::{MAGLEV_TABLE_SIZES, v4_mapped};

    const M: usize = 65537;

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

    fn table_of(bs: Vec<MaglevBackend>) -> Vec<u32> {
        sized_table_of(bs, M)
    }

    fn sized_table_of(bs: Vec<MaglevBackend>, size: usize) -> Vec<u32> {
        let mut scratch = Box::new(MaglevScratch::new());
        let mut table = vec![0; size];
        build(&bs, &mut scratch, &mut table).unwrap();
        table
    }

    /// The builder as the paper and Katran state it, probing the table itself: what [`build`]
    /// must agree with entry for entry.
    fn reference_table(mut bs: Vec<MaglevBackend>, size: usize) -> Vec<u32> {
        bs.sort_unstable_by_key(|b| (b.addr, b.port));
        let m = size as u32;
        let mut table = vec![NO_BACKEND; size];
        let max_weight = bs.iter().map(|b| b.weight).max().unwrap_or(0);
        if max_weight == 0 {
            return table;
        }
        let mut walks: Vec<(u32, u32, u64)> = bs
            .iter()
            .map(|b| {
                let next = backend_hash(b, OFFSET_SEED) % m;
                let skip = backend_hash(b, SKIP_SEED) % (m - 1) + 1;
                (next, skip, 0)
            })
            .collect();
        let mut filled = 0;
        loop {
            for (b, (next, skip, credit)) in bs.iter().zip(&mut walks) {
                if b.weight == 0 {
                    continue;
                }
                *credit += u64::from(b.weight);
                if *credit < u64::from(max_weight) {
                    continue;
                }
                *credit -= u64::from(max_weight);
                loop {
                    let slot = *next as usize;
                    *next = (*next + *skip) % m;
                    if table[slot] == NO_BACKEND {
                        table[slot] = b.id;
                        break;
                    }
                }
                filled += 1;
                if filled == size {
                    return table;
                }
            }
        }
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
        for (size, n) in [
            (M, 100),
            (251, 2),
            (4093, 40),
            (16381, 100),
            (65521, 655),
            (131071, 1000),
        ] {
            let table = sized_table_of(backends(&vec![1; n]), size);
            let fair = size as f64 / n as f64;
            for (i, c) in shares(&table, n).into_iter().enumerate() {
                assert!(
                    c as f64 <= fair * 1.015,
                    "M = {size}: backend {i} owns {c}, fair {fair}"
                );
            }
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
        for (size, n) in [
            (M, 100),
            (16381, 100),
            (4093, 20),
            (65521, 100),
            (131071, 300),
        ] {
            let all = backends(&vec![1; n]);
            let before = sized_table_of(all.clone(), size);
            let mut without = all.clone();
            let removed = without.remove(n * 3 / 8);
            let after = sized_table_of(without, size);
            let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let owned = before.iter().filter(|&&id| id == removed.id).count();
            assert!(
                changed <= 3 * owned,
                "M = {size}: {changed} entries changed, the removed backend owned {owned}"
            );
            assert_eq!(sized_table_of(all, size), before);
        }
    }

    #[test]
    fn matches_the_reference_builder() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let cases: &[(&str, usize, &[u32])] = &[
            ("smallest table", 2, &[1, 1, 1]),
            ("one backend", 13, &[1]),
            ("more backends than entries", 13, &[1; 20]),
            ("equal weights", 251, &[7; 10]),
            ("equal weights, some drained", 1021, &[2, 0, 2, 2, 0, 2]),
            ("weights 1 and 10", 4093, &[1, 10]),
            ("mixed weights", 16381, &[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]),
            ("large weights", 8191, &[u32::MAX, u32::MAX - 1, 1, 1 << 31]),
            ("equal weights, many", 65537, &[1; 1000]),
            ("largest table", 131071, &[1; 300]),
        ];
        for &(name, size, weights) in cases {
            let mut bs = backends(weights);
            bs.shuffle(&mut rng);
            assert!(
                sized_table_of(bs.clone(), size) == reference_table(bs, size),
                "{name}"
            );
        }
        // The heaviest backends beside lighter ones: runs of rounds that only the heaviest take
        // turns in, the walk ending within a run, at its end or in a round of every backend.
        for (heavy, heavies, light, lights) in [
            (65535, 1, 1, 999),
            (100, 1, 1, 99),
            (100, 2, 1, 50),
            (1000, 3, 7, 40),
            (9, 1, 2, 5),
        ] {
            let mut weights = vec![light; lights];
            weights.extend(core::iter::repeat_n(heavy, heavies));
            let mut bs = backends(&weights);
            for size in [13, 251, 1021, 4093, 65537] {
                bs.shuffle(&mut rng);
                assert!(
                    sized_table_of(bs.clone(), size) == reference_table(bs.clone(), size),
                    "{heavies} of weight {heavy} beside {lights} of {light} at {size}"
                );
            }
        }
        // Addresses that differ above their last word (IPv6 in several /96s, IPv4 beside
        // IPv6) and one address on several ports: turn order is still (address, port).
        fn v6(i: usize) -> Addr {
            [
                0x2001_0db8,
                (i % 3) as u32,
                (i % 5) as u32 * 0x10000,
                i as u32,
            ]
        }
        type Relabel = fn(&mut MaglevBackend, usize);
        let kinds: [(&str, Relabel); 3] = [
            ("IPv6 in several /96s", |b, i| b.addr = v6(i)),
            ("IPv4 beside IPv6", |b, i| {
                if i % 2 == 0 {
                    b.addr = v6(i);
                }
            }),
            ("one address, several ports", |b, i| {
                b.addr = v6(i / 4);
                b.port = 8000 - i as u16 % 4;
            }),
        ];
        for (name, kind) in kinds {
            let mut bs = backends(&[1, 2, 1, 3, 1, 1, 2, 1, 1, 1, 4, 1, 1, 1, 2, 1]);
            bs.iter_mut().enumerate().for_each(|(i, b)| kind(b, i));
            for size in [251, 65537] {
                bs.shuffle(&mut rng);
                assert!(
                    sized_table_of(bs.clone(), size) == reference_table(bs.clone(), size),
                    "{name} at {size}"
                );
            }
        }
        // Random weights, drains and sizes.
        for _ in 0..20 {
            let size = MAGLEV_TABLE_SIZES[rng.gen_range(0..6)] as usize;
            let n = rng.gen_range(1..200);
            let weights: Vec<u32> = (0..n).map(|_| rng.gen_range(0..5)).collect();
            let bs = backends(&weights);
            assert!(
                sized_table_of(bs.clone(), size) == reference_table(bs, size),
                "{weights:?} at {size}"
            );
        }
    }

    #[test]
    fn fast_remainders_are_exact() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for m in [1, 2, 3, 13, 251, 65536, 65537, 131071] {
            let f = FastMod::new(m);
            let mut xs: Vec<u64> = (0..2000).map(|_| rng.gen_range(0..1 << 47)).collect();
            xs.extend([0, 1, u64::from(m) - 1, u64::from(m), (1 << 47) - 1]);
            xs.extend((0..2000).map(|_| rng.gen_range(0..1 << 32)));
            for &x in &xs {
                assert_eq!(u64::from(f.reduce(x)), x % u64::from(m), "{x} mod {m}");
            }
            // `low` orders numbers by their remainders.
            xs.sort_by_key(|&x| f.low(x));
            assert!(
                xs.windows(2)
                    .all(|w| w[0] % u64::from(m) <= w[1] % u64::from(m))
            );
        }
    }

    #[test]
    fn steps_wrap_like_the_portable_step() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for m in [2u32, 3, 13, 251, 65537, 131071] {
            let skips = (1..m).step_by((m as usize / 100).max(1)).chain([1, m - 1]);
            for skip in skips {
                let slots = (0..m).step_by((m as usize / 500).max(1));
                for slot in slots.chain([0, m - skip - 1, m - skip, m - 1]) {
                    let want = (slot + skip) % m;
                    assert_eq!(step(slot, skip, m - skip), want, "{slot} + {skip} mod {m}");
                    assert_eq!(portable_step(slot, skip, m - skip), want);
                }
            }
            for _ in 0..1000 {
                let (skip, slot) = (rng.gen_range(1..m), rng.gen_range(0..m));
                assert_eq!(step(slot, skip, m - skip), (slot + skip) % m);
            }
        }
    }

    #[test]
    fn inverses_invert() {
        for m in [2u32, 3, 13, 251, 65537, 131071] {
            for a in (1..m).step_by((m as usize / 1000).max(1)).chain([m - 1]) {
                let inv = inverse(a, m);
                assert!(inv < m);
                assert_eq!(
                    u64::from(a) * u64::from(inv) % u64::from(m),
                    1,
                    "{a} mod {m}"
                );
            }
        }
    }

    #[test]
    fn builds_every_supported_size() {
        for size in MAGLEV_TABLE_SIZES {
            let size = size as usize;
            let table = sized_table_of(backends(&[1; 3]), size);
            for (i, c) in shares(&table, 3).into_iter().enumerate() {
                assert!(c.abs_diff(size / 3) <= 1, "{size}: backend {i} owns {c}");
            }
        }
    }

    #[test]
    fn murmur3_matches_reference() {
        // MurmurHash3_x86_32 of the 4 bytes 0x00000000 with seed 0 is 0x2362f9de.
        assert_eq!(finish(mix(0, 0), 1), 0x2362_f9de);
    }

    #[test]
    fn rejects_bad_input() {
        let mut scratch = Box::new(MaglevScratch::new());
        let mut bs = backends(&[1, 1]);
        let cases: &[(usize, MaglevError)] = &[
            (65536, MaglevError::SizeNotPrime(65536)),
            (0, MaglevError::SizeNotPrime(0)),
            (1, MaglevError::SizeNotPrime(1)),
            (131101, MaglevError::SizeTooLarge(131101)),
        ];
        for &(size, err) in cases {
            let mut table = vec![0; size];
            assert_eq!(build(&bs, &mut scratch, &mut table), Err(err));
        }
        let mut table = vec![0; 13];
        let many = backends(&[1; MAX_MEMBERS as usize + 1]);
        assert_eq!(
            build(&many, &mut scratch, &mut table),
            Err(MaglevError::TooManyBackends(MAX_MEMBERS as usize + 1))
        );
        bs[1].addr = bs[0].addr;
        assert!(matches!(
            build(&bs, &mut scratch, &mut table),
            Err(MaglevError::DuplicateBackend { .. })
        ));
        // The same, among addresses that differ above their last word.
        let mut mixed = backends(&[1; 4]);
        mixed[2].addr = [0x2001_0db8, 0, 0, 1];
        mixed[3].addr = mixed[2].addr;
        assert_eq!(
            build(&mixed, &mut scratch, &mut table),
            Err(MaglevError::DuplicateBackend {
                addr: mixed[2].addr,
                port: 80
            })
        );
    }
}
