//! NAT's cost per packet in each direction, beside the floor and DR.
//!
//! Each direction is timed leaving by the interface it came in on (XDP_TX: a one-armed
//! director) and by the other one (XDP_REDIRECT: seed 003's two-armed director). A redirect
//! costs a helper call the TX floor does not make, so redirected packets are also shown beside
//! the redirect floor, which makes the same call.
//!
//! BPF_PROG_TEST_RUN does not restore the packet between repetitions, and a NAT rewrite is not
//! idempotent: after one repetition the packet is no longer to the VIP, nor from the real
//! server. Two ways round that, both printed:
//!
//! - **Short repeats on a self-mapped service** (the figures the goal is read from): a NAT
//!   service whose real server is its own VIP address and port. Its translation rewrites every
//!   field it would for any real server, with the values they already hold, so each repetition
//!   takes the whole path again; only the TTL changes, so a run stops at 200 repetitions (the
//!   frame starts at TTL 255). The timer's cost is spread over them, as for the floor.
//! - **Single runs on fresh frames** of an ordinary service: one repetition each, its timer's
//!   cost (the floor at one repetition less the floor at many) taken off. Each run starts with
//!   caches the syscall has cooled, so these read high: DR's established hit is timed both
//!   ways to show by how much.

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

use crate::{REPEAT, floor_of, ns_per_packet, reconciler, summary};

/// Single runs per program and round.
const RUNS: usize = 1_000;
const ROUNDS: usize = 9;
/// Repetitions of a self-mapped frame per run, few and many (its TTL, 255, allows 254), and
/// runs of each per round.
const SHORT_REPEATS: (u32, u32) = (50, 250);
const SHORT_RUNS: usize = 30;

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

/// The cost of one more repetition of `prog` on `frame` arriving on `ifindex`, in ns: the
/// difference between runs of many and of few repetitions ([`SHORT_REPEATS`]) over the
/// repetitions it adds. A run's first repetition finds the program's code, its maps and their
/// TLB entries cold after the syscall (several microseconds in a VM); the difference leaves
/// that out, as many repetitions do.
fn marginal_cost(prog: &mut Xdp, frame: &[u8], ifindex: u32) -> Result<f64> {
    let (few, many) = SHORT_REPEATS;
    let t_few = median_of_short_repeats(prog, frame, ifindex, few)? * f64::from(few);
    let t_many = median_of_short_repeats(prog, frame, ifindex, many)? * f64::from(many);
    Ok((t_many - t_few) / f64::from(many - few))
}

/// `repeat` repetitions of `prog` on `frame` arriving on `ifindex`, `SHORT_RUNS` times: the
/// median of the kernel's mean duration of one repetition, in ns.
fn median_of_short_repeats(prog: &mut Xdp, frame: &[u8], ifindex: u32, repeat: u32) -> Result<f64> {
    let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut out = vec![0u8; frame.len() + 512];
    let mut runs = Vec::with_capacity(SHORT_RUNS);
    for _ in 0..SHORT_RUNS {
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                repeat,
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
        runs.push(r.duration.as_nanos() as f64);
    }
    Ok(summary(runs).1)
}

fn median_of_runs(prog: &mut Xdp, frame: &[u8], ifindex: u32) -> Result<f64> {
    let runs = (0..RUNS)
        .map(|_| one_run(prog, frame, ifindex))
        .collect::<Result<Vec<f64>>>()?;
    Ok(summary(runs).1)
}

/// A namespace whose FIB routes replies: the real servers behind `srv`, one client behind `cli`
/// and one behind `srv` (replies to it leave the way they came), each with a permanent
/// neighbour entry.
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
        "ip neigh replace 10.0.2.7 lladdr 02:c1:00:00:00:17 dev srv nud permanent",
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

/// `floors` holds the floor programs, loaded (see `load_floor`).
pub fn run(floors: &mut aya::Ebpf) -> Result<()> {
    let (ns, srv, cli) = reply_net()?;
    ns.enter(|| -> Result<()> {
        let mut port: aya::maps::DevMap<_> = floors
            .map_mut("FLOOR_PORT")
            .context("no FLOOR_PORT")?
            .try_into()?;
        port.set(0, cli, None, 0)
            .context("setting the redirect floor's port")
    })??;
    let mut dp = Dataplane::load(
        None,
        LoadOptions {
            flow_table_size: 1 << 16,
            maglev_size: DEFAULT_MAGLEV_TABLE_SIZE,
        },
    )
    .context("loading xlb (run as root)")?;
    let service = |vip: &str, port: u16, forwarding, rs: &str, rs_port: u16| -> Result<Service> {
        Ok(Service {
            vip: (vip.parse::<IpAddr>()?, port).into(),
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
        service("10.0.0.100", 80, Forwarding::Nat, "10.0.2.1", 8080)?,
        service("10.0.0.100", 81, Forwarding::DirectRouting, "10.0.1.1", 81)?,
        // Self-mapped: its own VIP address and port are its real server's.
        service("10.0.0.101", 80, Forwarding::Nat, "10.0.0.101", 80)?,
    ];
    // The self-mapped service's real server is behind `srv`: its requests leave by XDP_TX when
    // they come in on `srv`, by redirect when they come in on `cli`.
    let paths: HashMap<IpAddr, BackendPath> =
        [("10.0.2.1", 1), ("10.0.1.1", 1), ("10.0.0.101", srv)]
            .iter()
            .map(|&(a, ifindex)| {
                (
                    a.parse().expect("an address"),
                    BackendPath {
                        ifindex,
                        mac: [2, 0xbe, 0, 0, 0, 1],
                        src_mac: DIRECTOR_MAC,
                    },
                )
            })
            .collect();
    reconciler().apply(&mut dp, &desired(&services, &paths, true))?;
    ns.enter(|| -> Result<()> {
        dp.add_tx_port(cli)?;
        dp.add_tx_port(srv)
    })??;

    let request = PacketSpec::new("192.0.2.7", "10.0.0.100", 40000, 80, L4::Tcp)
        .established()
        .build();
    let mut reply = PacketSpec::new("10.0.2.1", "192.0.2.7", 8080, 40000, L4::Tcp);
    reply.tcp_flags = TCP_ACK;
    let reply = reply.build();
    let self_request = PacketSpec::new("192.0.2.7", "10.0.0.101", 40000, 80, L4::Tcp)
        .established()
        .ttl(255)
        .build();
    let self_reply_to = |client: &str| {
        let mut reply = PacketSpec::new("10.0.0.101", client, 80, 40000, L4::Tcp).ttl(255);
        reply.tcp_flags = TCP_ACK;
        reply.build()
    };
    // To a client behind `cli` (redirected), and to one behind `srv` (XDP_TX).
    let self_reply = self_reply_to("192.0.2.7");
    let self_reply_back = self_reply_to("10.0.2.7");
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

    let floor_redirect: &mut Xdp = floors
        .program_mut("xdp_floor_redirect")
        .context("no xdp_floor_redirect")?
        .try_into()?;
    floor_redirect.load()?;
    let mut floor_many = Vec::new();
    let mut floor_short = Vec::new();
    let mut floor_one = Vec::new();
    let mut redirect_many = Vec::new();
    let mut redirect_short = Vec::new();
    let mut dr_many = Vec::new();
    let mut dr_short = Vec::new();
    let mut nat_in_tx = Vec::new();
    let mut nat_in_redirect = Vec::new();
    let mut nat_out_tx = Vec::new();
    let mut nat_out_redirect = Vec::new();
    let mut route_only = Vec::new();
    let mut source_only = Vec::new();
    let mut dr_one = Vec::new();
    let mut nat_in = Vec::new();
    let mut nat_out = Vec::new();
    ns.enter(|| -> Result<()> {
        for _ in 0..ROUNDS {
            let floor = floor_of(floors)?;
            floor_many.push(ns_per_packet(floor, &request)?);
            floor_short.push(marginal_cost(floor, &request, 1)?);
            floor_one.push(median_of_runs(floor, &request, 1)?);
            let floor_redirect: &mut Xdp = floors
                .program_mut("xdp_floor_redirect")
                .context("no xdp_floor_redirect")?
                .try_into()?;
            redirect_many.push(ns_per_packet(floor_redirect, &request)?);
            redirect_short.push(marginal_cost(floor_redirect, &request, 1)?);
            let prog = dp.program()?;
            dr_many.push(ns_per_packet(prog, &dr_hit)?);
            dr_short.push(marginal_cost(prog, &dr_hit, 1)?);
            nat_in_tx.push(marginal_cost(prog, &self_request, srv)?);
            nat_in_redirect.push(marginal_cost(prog, &self_request, cli)?);
            nat_out_tx.push(marginal_cost(prog, &self_reply_back, srv)?);
            nat_out_redirect.push(marginal_cost(prog, &self_reply, srv)?);
            route_only.push(marginal_cost(prog, &local, srv)?);
            source_only.push(marginal_cost(prog, &other, srv)?);
            dr_one.push(median_of_runs(prog, &dr_hit, 1)?);
            nat_in.push(median_of_runs(prog, &request, 1)?);
            nat_out.push(median_of_runs(prog, &reply, srv)?);
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
    // Medians of the per-round ratios to a floor.
    let ratio = |v: &[f64], floor: &[f64]| -> f64 {
        summary(v.iter().zip(floor).map(|(x, f)| x / f).collect()).1
    };
    let (few, many) = SHORT_REPEATS;
    println!();
    println!(
        "NAT cost per packet, beside the floors at {REPEAT} repeats, {ROUNDS} rounds: the cost \
         of one more repeat ({SHORT_RUNS} runs of {few} and of {many} repeats) of a self-mapped \
         service's frames (real server = its VIP: every repeat translates again), leaving by \
         the interface they came in on (XDP_TX) or by the other (redirect); and {RUNS} single \
         runs on an ordinary service's fresh frames less the timer's own cost (median {:.1} ns)",
        summary(timer.clone()).1
    );
    println!(
        "(ratios to the floors timed the same way; goal: at most 3x the floor that leaves the \
         same way, XDP_TX beside the floor, redirect beside the redirect floor)"
    );
    println!(
        "{:<48} {:>7} {:>7} {:>7} {:>7} {:>9} {:>10}",
        "program", "min ns", "median", "max ns", "x floor", "x redir.", "goal 3x"
    );
    /// Which floor a row's goal is read beside.
    enum Goal {
        None,
        Tx,
        Redirect,
    }
    // Each row's ratios are to the floors timed the same way: figures of one more repeat to
    // the floors' one more repeat (the same method, the same timer cost taken out), the others
    // to the floors at many repeats.
    let many = (floor_many.clone(), redirect_many.clone());
    let one_more = (floor_short.clone(), redirect_short.clone());
    let rows = [
        (
            format!("floor ({REPEAT} repeats)"),
            floor_many.clone(),
            &many,
            Goal::None,
        ),
        (
            "floor (one more repeat)".into(),
            floor_short,
            &one_more,
            Goal::None,
        ),
        (
            format!("redirect floor ({REPEAT} repeats)"),
            redirect_many,
            &many,
            Goal::None,
        ),
        (
            "redirect floor (one more repeat)".into(),
            redirect_short,
            &one_more,
            Goal::None,
        ),
        (
            format!("xlb DR hit ({REPEAT} repeats)"),
            dr_many,
            &many,
            Goal::None,
        ),
        (
            "xlb DR hit (one more repeat)".into(),
            dr_short,
            &one_more,
            Goal::None,
        ),
        (
            "xlb NAT client->RS, XDP_TX (one more repeat)".into(),
            nat_in_tx,
            &one_more,
            Goal::Tx,
        ),
        (
            "xlb NAT client->RS, redirect (one more repeat)".into(),
            nat_in_redirect,
            &one_more,
            Goal::Redirect,
        ),
        (
            "xlb NAT RS->client, XDP_TX (one more repeat)".into(),
            nat_out_tx,
            &one_more,
            Goal::Tx,
        ),
        (
            "xlb NAT RS->client, redirect (one more repeat)".into(),
            nat_out_redirect,
            &one_more,
            Goal::Redirect,
        ),
        (
            "  reply to the director (route lookup)".into(),
            route_only,
            &one_more,
            Goal::None,
        ),
        (
            "  not a reply (NAT source lookup)".into(),
            source_only,
            &one_more,
            Goal::None,
        ),
        (
            "xlb DR hit (single runs)".into(),
            net(&dr_one),
            &many,
            Goal::None,
        ),
        (
            "xlb NAT client->RS (single runs)".into(),
            net(&nat_in),
            &many,
            Goal::None,
        ),
        (
            "xlb NAT RS->client (single runs)".into(),
            net(&nat_out),
            &many,
            Goal::None,
        ),
    ];
    for (name, v, (floor, redirect), goal) in rows {
        let (min, med, max) = summary(v.clone());
        let (to_floor, to_redirect) = (ratio(&v, floor), ratio(&v, redirect));
        let judged = match goal {
            Goal::None => None,
            Goal::Tx => Some(to_floor),
            Goal::Redirect => Some(to_redirect),
        };
        let verdict = match judged {
            None => "",
            Some(r) if r <= 3.0 => "met",
            Some(_) => "over",
        };
        println!(
            "{name:<48} {min:>7.1} {med:>7.1} {max:>7.1} {to_floor:>7.2} {to_redirect:>9.2} \
             {verdict:>10}"
        );
    }
    Ok(())
}
