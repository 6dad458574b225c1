//! The edge director at full size, with the real daemon: 4,096 virtual services on 64 real
//! servers (neighbours entered by hand, no hosts needed). Start-up until every service forwards,
//! a reload that removes one real server until no new connection reaches it, and the kernel
//! memory of the maps as the kernel counts it (`memlock` in fdinfo) beside xlb's estimate.
//!
//! "Forwards" and "reaches" are read off the pinned program itself: BPF_PROG_TEST_RUN of a SYN
//! to each service, from this process.

use std::{
    fs,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::MapData;
use lb_common::names;
use lb_userspace::{capacity, dataplane::pins::MAP_NAMES};
use xlb_tests::edge::{self, EdgeLab, forwarded, mac_of_real, syn, syns_reaching};

/// Kernel memory of a pinned map, as its fdinfo says.
fn memlock(path: &Path) -> Result<u64> {
    let map = MapData::from_pin(path).with_context(|| format!("opening {}", path.display()))?;
    let fd = map.fd().as_fd().as_raw_fd();
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no memlock in fdinfo")
}

pub fn run(xlb: &Path) -> Result<()> {
    let mut lab = EdgeLab::new("edge")?;
    let started = Instant::now();
    lab.start(xlb)?;
    let result = measure(&lab, started);
    if result.is_err() {
        eprintln!("xlb log:\n{}", lab.log());
    }
    result
}

fn measure(lab: &EdgeLab, started: Instant) -> Result<()> {
    // Start-up: until a SYN to every one of the 4,096 services is forwarded.
    let deadline = started + Duration::from_secs(60);
    let prog = lab.program(Duration::from_secs(60))?;
    let services = edge::services();
    let mut waiting: Vec<usize> = (0..services.len()).collect();
    while !waiting.is_empty() {
        if Instant::now() > deadline {
            bail!("{} services still not forwarded after 60 s", waiting.len());
        }
        let mut still = Vec::new();
        for s in waiting {
            let (i, port, proto) = services[s];
            if forwarded(&prog, &syn(i, port, proto, 40000))?.is_none() {
                still.push(s);
            }
        }
        waiting = still;
    }
    let startup = started.elapsed();

    // Memory, as the kernel counts it, beside the estimate.
    let pin_dir = lab.ns.pin_dir(&lab.bpffs, "eth0")?;
    let mut kernel = 0u64;
    for name in MAP_NAMES.iter().filter(|n| **n != names::FLOWS) {
        kernel += memlock(&pin_dir.join(name))?;
    }
    let flows = memlock(&pin_dir.join(names::FLOWS))?;
    let cpus = aya::util::nr_cpus().map(|n| n.max(1)).unwrap_or(1);
    let estimate = capacity::memory(lb_common::DEFAULT_MAGLEV_TABLE_SIZE, cpus, 65536);

    // A reload that removes one real server: SYNs that went to it, until none does. Measured
    // on a settled daemon, as an operator's reload is: start-up's last recomputations (as the
    // neighbours resolve) would otherwise be counted in.
    std::thread::sleep(Duration::from_secs(3));
    let removed = 5usize;
    let gone = mac_of_real(removed);
    let probes = syns_reaching(&prog, removed, 64)?;
    if probes.is_empty() {
        bail!("no SYN reached real server {removed}");
    }
    // From the signal: writing the config (a megabyte) is the operator's part.
    let asked = lab.reload_without(&[removed])?;
    let limit = asked + Duration::from_secs(30);
    loop {
        let mut reaching = 0;
        for frame in &probes {
            if forwarded(&prog, frame)? == Some(gone) {
                reaching += 1;
            }
        }
        if reaching == 0 {
            break;
        }
        if Instant::now() > limit {
            bail!("{reaching} SYNs still reach the removed real server after 30 s");
        }
        // Asked every millisecond, not without pause: on a machine of two CPUs the probing
        // would otherwise take one of them from the daemon it times (this reads ~1 ms late
        // at most).
        std::thread::sleep(Duration::from_millis(1));
    }
    let reload = asked.elapsed();
    // With RUST_LOG=debug, where the reload's time went, as the daemon logged it.
    let log = lab.log();
    let phases: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("read and checked in") || l.contains("desired state computed in"))
        .collect();
    if let Some(last) = phases.rchunks(1).next() {
        for line in phases.iter().rev().take(3).rev().chain(last.iter().take(0)) {
            eprintln!("  xlb: {line}");
        }
    }
    let affected = (0..edge::VIPS)
        .filter(|i| edge::reals_of(*i).contains(&removed))
        .count();

    println!();
    println!(
        "Edge director: 4,096 virtual services ({} VIPs x 4 ports) on {} real servers, the real daemon",
        edge::VIPS,
        edge::REALS
    );
    println!(
        "  start-up, until a SYN to every service is forwarded   {:>9.0} ms   (goal 5000 ms)",
        startup.as_secs_f64() * 1e3
    );
    println!(
        "  reload removing one real server (from {} services),\n    SIGHUP until no new SYN reaches it                   {:>9.0} ms   (goal 100 ms)",
        4 * affected,
        reload.as_secs_f64() * 1e3
    );
    println!(
        "  kernel memory of the maps but the flow table: {} measured (memlock), {} estimated by xlb check ({cpus} CPUs; goal 256 MiB)",
        capacity::mib(kernel),
        capacity::mib(estimate.without_flows())
    );
    println!(
        "  flow table of 65,536 connections: {} measured, {} estimated",
        capacity::mib(flows),
        capacity::mib(estimate.flows)
    );
    Ok(())
}
