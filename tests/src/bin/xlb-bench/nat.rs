//! NAT's cost per packet in each direction, beside the floor and DR.
//!
//! BPF_PROG_TEST_RUN does not restore the packet between repetitions, and a NAT rewrite is not
//! idempotent (after one repetition the packet is no longer to the VIP, nor from the real
//! server), so NAT cannot be timed with `repeat`. Each run here is one repetition on a fresh
//! copy of the frame; the kernel times just that repetition, with its timer's own cost inside.
//! That cost is the floor at one repetition less the floor at many, and is taken off every
//! single-run median. DR's established hit is timed both ways, which shows the method agrees
//! with `repeat`.

use std::{collections::HashMap, net::IpAddr};

use anyhow::{Context as _, Result};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use lb_common::{DEFAULT_MAGLEV_TABLE_SIZE, Forwarding};
use lb_userspace::{
    dataplane::{Dataplane, LoadOptions},
    service::{BackendPath, Protocol, RealServer, Service, desired},
};
use xlb_tests::{
    lab::{Netns, unique_name},
    packet::{DIRECTOR_MAC, L4, PacketSpec, TCP_ACK},
};

use crate::{REPEAT, ns_per_packet, reconciler, summary};

/// Single runs per program and round.
const RUNS: usize = 2_000;
const ROUNDS: usize = 9;

/// One repetition of `prog` on `frame` arriving on `ifindex`: the kernel's duration in ns.
fn one_run(prog: &mut Xdp, frame: &[u8], ifindex: u32) -> Result<f64> {
    let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut out = vec![0u8; frame.len() + 512];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat: 1,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok(r.duration.as_nanos() as f64)
}

fn median_of_runs(prog: &mut Xdp, frame: &[u8], ifindex: u32) -> Result<f64> {
    let runs = (0..RUNS)
        .map(|_| one_run(prog, frame, ifindex))
        .collect::<Result<Vec<f64>>>()?;
    Ok(summary(runs).1)
}

/// A namespace whose FIB routes replies: the real servers behind `srv`, the client behind
/// `cli` with a permanent neighbour entry.
fn reply_net() -> Result<(Netns, u32, u32)> {
    let ns = Netns::new(unique_name("bnat"))?;
    for argv in [
        "ip link add srv type veth peer name srvp",
        "ip link add cli type veth peer name clip",
        "ip addr add 10.0.2.254/24 dev srv",
        "ip addr add 192.0.2.254/24 dev cli",
        "sysctl -qw net.ipv4.ip_forward=1",
        "ip link set srv up",
        "ip link set srvp up",
        "ip link set cli up",
        "ip link set clip up",
        "ip neigh replace 192.0.2.7 lladdr 02:c1:00:00:00:07 dev cli nud permanent",
    ] {
        ns.run(&argv.split(' ').collect::<Vec<_>>())?;
    }
    let index = |dev: &str| -> Result<u32> {
        let line = ns.run(&["ip", "-o", "link", "show", "dev", dev])?;
        line.split(':')
            .next()
            .and_then(|i| i.trim().parse().ok())
            .context("an ifindex")
    };
    let (srv, cli) = (index("srv")?, index("cli")?);
    Ok((ns, srv, cli))
}

pub fn run(floor: &mut Xdp) -> Result<()> {
    let (ns, srv, cli) = reply_net()?;
    let mut dp = Dataplane::load(
        None,
        LoadOptions {
            flow_table_size: 1 << 16,
            maglev_size: DEFAULT_MAGLEV_TABLE_SIZE,
        },
    )
    .context("loading xlb (run as root)")?;
    let service = |port: u16, forwarding, rs: &str, rs_port: u16| -> Result<Service> {
        Ok(Service {
            vip: ("10.0.0.100".parse::<IpAddr>()?, port).into(),
            protocol: Protocol::Tcp,
            source_hash: false,
            persistence: 0,
            forwarding,
            real_servers: vec![RealServer {
                addr: (rs.parse::<IpAddr>()?, rs_port).into(),
                weight: 1,
                alive: true,
            }],
        })
    };
    let services = vec![
        service(80, Forwarding::Nat, "10.0.2.1", 8080)?,
        service(81, Forwarding::DirectRouting, "10.0.1.1", 81)?,
    ];
    let paths: HashMap<IpAddr, BackendPath> = ["10.0.2.1", "10.0.1.1"]
        .iter()
        .map(|a| {
            (
                a.parse().expect("an address"),
                BackendPath {
                    ifindex: 1,
                    mac: [2, 0xbe, 0, 0, 0, 1],
                    src_mac: DIRECTOR_MAC,
                },
            )
        })
        .collect();
    reconciler().apply(&mut dp, &desired(&services, &paths, true))?;
    ns.enter(|| dp.add_tx_port(cli))??;

    let request = PacketSpec::new("192.0.2.7", "10.0.0.100", 40000, 80, L4::Tcp)
        .established()
        .build();
    let mut reply = PacketSpec::new("10.0.2.1", "192.0.2.7", 8080, 40000, L4::Tcp);
    reply.tcp_flags = TCP_ACK;
    let reply = reply.build();
    let dr_hit = PacketSpec::new("192.0.2.7", "10.0.0.100", 40000, 81, L4::Tcp)
        .established()
        .build();
    // A real server's answer to the director itself (a health check's): the route lookup says
    // local and the packet passes untranslated, so this is the lookup's cost.
    let mut local = PacketSpec::new("10.0.2.1", "10.0.2.254", 8080, 40000, L4::Tcp);
    local.tcp_flags = TCP_ACK;
    let local = local.build();
    // From a real server's address, but no service's port: the NAT source lookup, then pass.
    let mut other = PacketSpec::new("10.0.2.1", "192.0.2.7", 9999, 40000, L4::Tcp);
    other.tcp_flags = TCP_ACK;
    let other = other.build();

    let mut floor_many = Vec::new();
    let mut floor_one = Vec::new();
    let mut dr_many = Vec::new();
    let mut dr_one = Vec::new();
    let mut nat_in = Vec::new();
    let mut nat_out = Vec::new();
    let mut dr_on_srv = Vec::new();
    let mut route_only = Vec::new();
    let mut source_only = Vec::new();
    ns.enter(|| -> Result<()> {
        for _ in 0..ROUNDS {
            floor_many.push(ns_per_packet(floor, &request)?);
            floor_one.push(median_of_runs(floor, &request, 1)?);
            let prog = dp.program()?;
            dr_many.push(ns_per_packet(prog, &dr_hit)?);
            dr_one.push(median_of_runs(prog, &dr_hit, 1)?);
            nat_in.push(median_of_runs(prog, &request, 1)?);
            nat_out.push(median_of_runs(prog, &reply, srv)?);
            dr_on_srv.push(median_of_runs(prog, &dr_hit, srv)?);
            route_only.push(median_of_runs(prog, &local, srv)?);
            source_only.push(median_of_runs(prog, &other, srv)?);
        }
        Ok(())
    })??;

    // The timer's own cost in a single run, per round.
    let timer: Vec<f64> = floor_one
        .iter()
        .zip(&floor_many)
        .map(|(o, m)| o - m)
        .collect();
    let net = |v: &[f64]| -> Vec<f64> { v.iter().zip(&timer).map(|(x, t)| x - t).collect() };
    let ratio =
        |v: &[f64]| -> f64 { summary(v.iter().zip(&floor_many).map(|(x, f)| x / f).collect()).1 };
    println!();
    println!(
        "NAT cost per packet: {ROUNDS} rounds of {RUNS} single runs on fresh frames, less the \
         timer's own cost"
    );
    println!(
        "(timer: floor at 1 repetition - floor at {REPEAT}; median {:.1} ns)",
        summary(timer.clone()).1
    );
    println!(
        "{:<36} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "program", "min ns", "median", "max ns", "ratio", "goal"
    );
    let (min, med, max) = summary(floor_many.clone());
    println!(
        "{:<36} {min:>8.1} {med:>8.1} {max:>8.1} {:>8.2}",
        "floor (repeat)", 1.0
    );
    for (name, v, goal) in [
        ("xlb DR hit (repeat)", dr_many.clone(), ""),
        ("xlb DR hit (single runs)", net(&dr_one), ""),
        (
            "xlb NAT client->RS hit (single runs)",
            net(&nat_in),
            "<= 3.00",
        ),
        (
            "xlb NAT RS->client reply (single)",
            net(&nat_out),
            "<= 3.00",
        ),
        ("  DR hit arriving on srv (single)", net(&dr_on_srv), ""),
        (
            "  reply to the director (lookup only)",
            net(&route_only),
            "",
        ),
        ("  not a reply (source lookup only)", net(&source_only), ""),
    ] {
        let (min, med, max) = summary(v.clone());
        println!(
            "{name:<36} {min:>8.1} {med:>8.1} {max:>8.1} {:>8.2} {goal:>8}",
            ratio(&v)
        );
    }
    Ok(())
}
