//! Times Maglev table builds: `cargo run --release -p lb-common --example maglev_bench [runs]`.
use std::time::Instant;

use lb_common::{
    maglev::{self, MaglevBackend, MaglevCursor},
    maps::v4_mapped,
};

fn backends(n: usize) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| MaglevBackend {
            addr: v4_mapped(u32::from_ne_bytes([10, 2, (i >> 8) as u8, i as u8])),
            port: 80,
            weight: 1,
            id: i as u32,
        })
        .collect()
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(301);
    println!("{:<8} {:>7} {:>9} {:>9} {:>9}", "M", "backends", "min ms", "median", "max ms");
    for (m, n) in [(65537, 10), (65537, 100), (65537, 1000), (16381, 1000), (131071, 1000)] {
        let bs = backends(n);
        let mut cursors = vec![MaglevCursor::default(); n];
        let mut table = vec![0u32; m];
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let mut b = bs.clone();
            let t = Instant::now();
            maglev::build(&mut b, &mut cursors, &mut table).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{m:<8} {n:>7} {:>9.3} {:>9.3} {:>9.3}",
            times[0],
            times[runs / 2],
            times[runs - 1]
        );
    }
}
