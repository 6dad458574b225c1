//! `cargo xtask bench`: the XDP program's cost per packet beside a floor program, measured in the
//! same run, the Maglev table build time, and the edge director at full size (start-up, reload,
//! kernel memory). Prints min/median/max and ratios; asserts nothing.

mod edge;
mod nat;
mod natlab;

use std::{collections::HashMap, net::IpAddr, time::Instant};

use anyhow::{Context as _, Result};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use lb_common::{
    DEFAULT_MAGLEV_TABLE_SIZE,
    maglev::{self, MaglevBackend, MaglevScratch},
    v4_mapped,
};

/// The table size the Maglev paper times builds at.
const MAGLEV_TABLE_SIZE: usize = 65537;
use lb_userspace::{
    dataplane::{Dataplane, FLOOR_OBJECT, LoadOptions},
    reconcile::{FlowTimeouts, Reconciler},
    service::{BackendPath, Protocol, RealServer, Service, desired},
};
use xlb_tests::packet::{DIRECTOR_MAC, L4, PacketSpec};

const ROUNDS: usize = 15;
const REPEAT: u32 = 200_000;
/// Maglev builds timed per size, in [`BATCHES`] batches a pause apart: on a shared host the
/// machine's throughput changes by the second (a busy SMT sibling halves it while the clock
/// stays; the same build then reads about a third dearer), and one batch would time one speed
/// only.
const BUILDS: usize = 105;
const BATCHES: usize = 5;
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

fn ns_per_packet(prog: &mut Xdp, frame: &[u8]) -> Result<f64> {
    let mut out = vec![0u8; frame.len() + 512];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: REPEAT,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    // The kernel reports the mean duration of one repetition.
    Ok(r.duration.as_nanos() as f64)
}

/// The floor programs' object, `xdp_floor` loaded: it swaps the MACs and sends the frame back
/// (XDP_TX). (`nat` loads `xdp_floor_redirect`.)
fn load_floor() -> Result<aya::Ebpf> {
    let mut obj = aya::Ebpf::load(FLOOR_OBJECT)?;
    let floor: &mut Xdp = obj
        .program_mut("xdp_floor")
        .context("no xdp_floor")?
        .try_into()?;
    floor.load()?;
    Ok(obj)
}

fn floor_of(obj: &mut aya::Ebpf) -> Result<&mut Xdp> {
    Ok(obj
        .program_mut("xdp_floor")
        .context("no xdp_floor")?
        .try_into()?)
}

/// A reconciler whose flows never idle out while a bench runs.
fn reconciler() -> Reconciler {
    Reconciler::new(
        1,
        DEFAULT_MAGLEV_TABLE_SIZE,
        FlowTimeouts {
            tcp_idle: 1 << 40,
            udp_idle: 1 << 40,
            syn_window: 1 << 40,
            ticks_per_second: 250,
        },
    )
}

fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() -> Result<()> {
    // `xlb-bench edge`: only the edge director (start-up, reload, memory); `nat`: only NAT;
    // `natcost`: only NAT's cost per packet; `natlab`: only NAT's live comparison with the
    // kernel's; `maglev`: only the table builds; `packets`: only the per-packet table.
    let only_packets = std::env::args().nth(1).as_deref() == Some("packets");
    match std::env::args().nth(1).as_deref() {
        Some("edge") => return edge::run(&xlb_beside()?),
        Some("nat") => {
            let mut floor_obj = load_floor()?;
            nat::run(&mut floor_obj)?;
            return natlab::run(&xlb_beside()?);
        }
        Some("natcost") => {
            let mut floor_obj = load_floor()?;
            return nat::run(&mut floor_obj);
        }
        Some("natlab") => return natlab::run(&xlb_beside()?),
        Some("maglev") => return maglev_builds(),
        _ => {}
    }
    let mut dp = Dataplane::load(
        None,
        LoadOptions {
            flow_table_size: 1 << 16,
            maglev_size: DEFAULT_MAGLEV_TABLE_SIZE,
        },
    )
    .context("loading xlb (run as root)")?;
    let mut services = Vec::new();
    for (vip, backends) in [
        ("10.0.0.100", ["10.0.1.1", "10.0.1.2", "10.0.1.3"]),
        (
            "2001:db8::100",
            ["2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"],
        ),
    ] {
        services.push(Service {
            vip: (vip.parse::<IpAddr>()?, 80).into(),
            protocol: Protocol::Tcp,
            source_hash: false,
            persistence: 0,
            forwarding: lb_common::Forwarding::DirectRouting,
            real_servers: backends
                .iter()
                .map(|b| {
                    Ok(RealServer {
                        addr: (b.parse::<IpAddr>()?, 80).into(),
                        weight: 1,
                        alive: true,
                    })
                })
                .collect::<Result<_>>()?,
        });
    }
    let paths: HashMap<IpAddr, BackendPath> = services
        .iter()
        .flat_map(|s| s.real_servers.iter())
        .enumerate()
        .map(|(i, rs)| {
            (
                rs.addr.ip(),
                BackendPath {
                    ifindex: 1,
                    mac: [2, 0xbe, 0, 0, 0, i as u8],
                    src_mac: DIRECTOR_MAC,
                },
            )
        })
        .collect();
    reconciler().apply(&mut dp, &desired(&services, &paths, true))?;

    let mut floor_obj = load_floor()?;
    let floor = floor_of(&mut floor_obj)?;

    // "Hit": a segment of an established connection, found in the flow table (every repeat
    // after the first). "SYN": a new connection, placed by Maglev and recorded each time.
    let cases = [
        (
            "IPv4 TCP VIP hit",
            PacketSpec::new("192.0.2.7", "10.0.0.100", 40000, 80, L4::Tcp)
                .established()
                .build(),
        ),
        (
            "IPv6 TCP VIP hit",
            PacketSpec::new("2001:db8:ff::7", "2001:db8::100", 40000, 80, L4::Tcp)
                .established()
                .build(),
        ),
        (
            "IPv4 TCP VIP SYN",
            PacketSpec::new("192.0.2.7", "10.0.0.100", 40001, 80, L4::Tcp).build(),
        ),
        (
            "non-VIP pass",
            PacketSpec::new("192.0.2.7", "10.0.0.99", 40000, 80, L4::Tcp).build(),
        ),
    ];
    let floor_frame = &cases[0].1;
    let mut floor_ns = Vec::new();
    let mut xlb_ns = vec![Vec::new(); cases.len()];
    // Interleaved, so drift in machine load hits every program alike.
    for _ in 0..ROUNDS {
        floor_ns.push(ns_per_packet(floor, floor_frame)?);
        for (i, (_, frame)) in cases.iter().enumerate() {
            xlb_ns[i].push(ns_per_packet(dp.program()?, frame)?);
        }
    }
    println!(
        "XDP cost per packet, BPF_PROG_TEST_RUN, {ROUNDS} interleaved rounds x {REPEAT} repeats"
    );
    println!("(ratio: the median over rounds of each round's cost over that round's floor)");
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "program", "min ns", "median", "max ns", "ratio", "goal"
    );
    let ratios = |ns: &[f64], of: &[f64]| -> f64 {
        summary(ns.iter().zip(of).map(|(x, f)| x / f).collect()).1
    };
    let (fmin, fmed, fmax) = summary(floor_ns.clone());
    println!(
        "{:<28} {fmin:>8.1} {fmed:>8.1} {fmax:>8.1} {:>8.2}",
        "floor (swap MACs, XDP_TX)", 1.0
    );
    let goals = ["<= 2.50", "", "<= 1.5 hit", "<= 1.30"];
    for (((name, _), ns), goal) in cases.iter().zip(&xlb_ns).zip(goals) {
        let (min, med, max) = summary(ns.clone());
        println!(
            "{:<28} {min:>8.1} {med:>8.1} {max:>8.1} {:>8.2} {goal:>8}",
            format!("xlb {name}"),
            ratios(ns, &floor_ns)
        );
    }
    println!(
        "{:<28} {:>44.2} {:>8}",
        "xlb SYN / xlb IPv4 hit",
        ratios(&xlb_ns[2], &xlb_ns[0]),
        "<= 1.50"
    );

    if only_packets {
        return Ok(());
    }
    nat::run(&mut floor_obj)?;
    natlab::run(&xlb_beside()?)?;

    maglev_builds()?;

    edge::run(&xlb_beside()?)
}

/// Maglev table builds of 10, 100 and 1,000 backends, [`BUILDS`] of each in [`BATCHES`]
/// batches: min, median and max of all, and each batch's median.
fn maglev_builds() -> Result<()> {
    println!();
    println!(
        "Maglev table build, M = {MAGLEV_TABLE_SIZE}, {BUILDS} runs in {BATCHES} batches {} ms \
         apart (paper: 1.8 ms for 1000 backends; goal 1 ms)",
        BATCH_PAUSE.as_millis()
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10}   batch medians",
        "backends", "min ms", "median", "max ms"
    );
    let mut table = vec![0u32; MAGLEV_TABLE_SIZE];
    for n in [10usize, 100, 1000] {
        let backends: Vec<MaglevBackend> = (0..n)
            .map(|i| MaglevBackend {
                addr: v4_mapped(u32::from_ne_bytes([10, 2, (i >> 8) as u8, i as u8])),
                port: 80,
                weight: 1,
                id: i as u32,
            })
            .collect();
        let mut scratch = Box::new(MaglevScratch::new());
        let mut times = Vec::new();
        let mut batch_medians = Vec::new();
        for batch in 0..BATCHES {
            if batch > 0 {
                std::thread::sleep(BATCH_PAUSE);
            }
            let mut batch_times = Vec::new();
            for _ in 0..BUILDS / BATCHES {
                let t = Instant::now();
                maglev::build(&backends, &mut scratch, &mut table)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                batch_times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            times.extend_from_slice(&batch_times);
            batch_medians.push(format!("{:.3}", summary(batch_times).1));
        }
        let (min, med, max) = summary(times);
        println!(
            "{n:<12} {min:>10.3} {med:>10.3} {max:>10.3}   {}",
            batch_medians.join(" ")
        );
    }
    Ok(())
}

/// The release `xlb` beside this binary (`cargo xtask bench` builds it first).
fn xlb_beside() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("no target dir")?.join("xlb"))
}
