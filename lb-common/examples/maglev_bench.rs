//! Times Maglev table builds, median of many runs:
//! `cargo run --release -p lb-common --example maglev_bench [runs]`.
//!
//! "before" is the builder as it was before the occupancy bitmap (it probes the table itself and
//! hashed backends with five flow-hash runs rather than one MurmurHash3), kept here so that both run under
//! the same conditions, alternately, each after the other has evicted its data from the caches.
use std::time::Instant;

use lb_common::{
    NO_BACKEND,
    hash::{flow_hash_v4, slot_in},
    maglev::{self, MaglevBackend, MaglevScratch},
    maps::v4_mapped,
};

fn backends(n: usize, weight: fn(usize) -> u32) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| MaglevBackend {
            addr: v4_mapped(u32::from_ne_bytes([10, 2, (i >> 8) as u8, i as u8])),
            port: 80,
            weight: weight(i),
            id: i as u32,
        })
        .collect()
}

fn backend_hash(b: &MaglevBackend, seed: u32) -> u32 {
    let mut h = seed;
    for w in b.addr {
        h = flow_hash_v4(h, w, 0, 0, 0);
    }
    flow_hash_v4(h, u32::from(b.port), 0, 0, 0)
}

/// The builder before the occupancy bitmap.
fn build_before(
    backends: &mut [MaglevBackend],
    cursors: &mut [(u32, u32, u64)],
    table: &mut [u32],
) {
    let m = table.len() as u32;
    backends.sort_unstable_by_key(|b| (b.addr, b.port));
    table.fill(NO_BACKEND);
    let max_weight = backends.iter().map(|b| b.weight).max().unwrap_or(0);
    for (b, c) in backends.iter().zip(cursors.iter_mut()) {
        *c = (
            backend_hash(b, 0x6d61_676c) % m,
            backend_hash(b, 0x6576_3031) % (m - 1) + 1,
            0,
        );
    }
    let mut filled = 0usize;
    loop {
        for (b, (next, skip, credit)) in backends.iter().zip(cursors.iter_mut()) {
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
                *next += *skip;
                if *next >= m {
                    *next -= m;
                }
                if table[slot] == NO_BACKEND {
                    table[slot] = b.id;
                    break;
                }
            }
            filled += 1;
            if filled == table.len() {
                return;
            }
        }
    }
}

/// Nanoseconds per slot for `slot` over `hashes`, best of 21 rounds: independent slots
/// (throughput), and slots that each wait on the one before (latency).
fn time_slots(hashes: &[u32], slot: impl Fn(u32) -> u32) -> (f64, f64) {
    fn best(hashes: &[u32], f: impl Fn() -> u32) -> f64 {
        (0..21)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_secs_f64() * 1e9 / hashes.len() as f64
            })
            .fold(f64::MAX, f64::min)
    }
    let hashes = std::hint::black_box(hashes);
    let throughput = best(hashes, || {
        hashes
            .iter()
            .fold(0u32, |sum, &h| sum.wrapping_add(slot(h)))
    });
    let latency = best(hashes, || {
        hashes.iter().fold(0u32, |prev, &h| slot(h ^ prev))
    });
    (throughput, latency)
}

/// (min, median)
fn summary(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[0], times[times.len() / 2])
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(301);
    let mut scratch = Box::new(MaglevScratch::new());
    println!("{runs} runs, ms");
    println!(
        "{:<8} {:>8} {:>8} {:>19} {:>19}",
        "M", "backends", "weights", "before: min median", "after: min median"
    );
    let equal: fn(usize) -> u32 = |_| 1;
    let mixed: fn(usize) -> u32 = |i| 1 + i as u32 % 4;
    let skewed: fn(usize) -> u32 = |i| if i == 0 { 100 } else { 1 };
    let cases = [
        (65537, 10, "1", equal),
        (65537, 100, "1", equal),
        (65537, 1000, "1", equal),
        (65537, 1000, "1-4", mixed),
        (65537, 100, "1, 100", skewed),
        (16381, 1000, "1", equal),
        (65521, 1000, "1", equal),
        (131071, 1000, "1", equal),
    ];
    for (m, n, weights, weight) in cases {
        let bs = backends(n, weight);
        let mut cursors = vec![(0, 0, 0); n];
        let (mut before, mut after) = (vec![0u32; m], vec![0u32; m]);
        let shares = |table: &[u32]| {
            let mut counts = vec![0usize; n];
            table.iter().for_each(|&id| counts[id as usize] += 1);
            counts
        };
        let (mut t_before, mut t_after) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let mut b = bs.clone();
            let t = Instant::now();
            build_before(&mut b, &mut cursors, &mut before);
            t_before.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            maglev::build(&bs, &mut scratch, &mut after).unwrap();
            t_after.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // Other permutations, the same shares to within an entry per unit of weight.
        for (b, a) in shares(&before).into_iter().zip(shares(&after)) {
            assert!(
                b.abs_diff(a) <= 4,
                "M = {m}, {n} backends: {b} entries before, {a} after"
            );
        }

        let ((b_min, b_med), (a_min, a_med)) = (summary(t_before), summary(t_after));
        println!(
            "{m:<8} {n:>8} {weights:>8} {b_min:>9.3} {b_med:>9.3} {a_min:>9.3} {a_med:>9.3}   after/before {:.2}",
            a_med / b_med
        );
    }

    // Hash to table entry: `%` against the multiply-shift of `hash::slot_in`.
    println!();
    println!("hash to entry, ns per hash: throughput, latency");
    let hashes: Vec<u32> = (0..1u32 << 20)
        .map(|i| flow_hash_v4(7, 0x0100_000a, 0x6400_000a, i, 6))
        .collect();
    let m = 65537u32;
    let runtime_m = std::hint::black_box(m);
    let rows = [
        ("hash % 65537 (constant)", time_slots(&hashes, |h| h % m)),
        (
            "hash % m (m at run time)",
            time_slots(&hashes, |h| h % runtime_m),
        ),
        (
            "slot_in(hash, 65537)",
            time_slots(&hashes, |h| slot_in(h, m)),
        ),
        (
            "slot_in(hash, m)",
            time_slots(&hashes, |h| slot_in(h, runtime_m)),
        ),
    ];
    for (name, (throughput, latency)) in rows {
        println!("{name:<26} {throughput:>6.2} {latency:>6.2}");
    }
}
