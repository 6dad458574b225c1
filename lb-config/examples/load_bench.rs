//! `cargo run --release -p lb-config --example load_bench [-- RUNS]`: how long
//! `lb_config::load` takes on the 4,096-service edge config (about 1 MB), which a
//! reload must read well within its 100 ms budget. Writes the config to a
//! temporary file and prints the min and median of RUNS loads (30 by default).

use std::time::{Duration, Instant};

#[path = "../tests/common/edge.rs"]
mod edge;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("RUNS is a number"))
        .unwrap_or(30)
        .max(1);
    let dir = std::env::temp_dir().join(format!("xlb-load-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("keepalived.conf");
    let text = edge::config();
    std::fs::write(&path, &text).expect("write config");

    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let loaded = lb_config::load(&path).expect("the edge config loads");
        times.push(start.elapsed());
        assert_eq!(loaded.config.virtual_servers.len(), edge::SERVICES);
        std::hint::black_box(loaded);
    }
    let _ = std::fs::remove_dir_all(&dir);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "load of {} bytes, {} services, {runs} runs: min {:.2} ms, median {:.2} ms",
        text.len(),
        edge::SERVICES,
        ms(times[0]),
        ms(times[runs / 2]),
    );
}
