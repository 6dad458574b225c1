//! The edge director at full size, with the real daemon: 4,096 virtual services on 64 real
//! servers (neighbours entered by hand, no hosts needed). Start-up until every service forwards,
//! a reload that removes one real server until no new connection reaches it, and the kernel
//! memory of the maps as the kernel counts it (`memlock` in fdinfo) beside xlb's estimate.
//!
//! "Forwards" and "reaches" are read off the pinned program itself: BPF_PROG_TEST_RUN of a SYN
//! to each service, from this process.

use std::{
    collections::BTreeSet,
    fs,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    maps::MapData,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use aya_obj::programs::XdpAttachType;
use lb_common::names;
use lb_userspace::{capacity, dataplane::pins::MAP_NAMES};
use xlb_tests::{
    edge,
    lab::{Netns, Process, unique_name},
    packet::{L4, PacketSpec},
};

const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

fn mac_of_real(r: usize) -> [u8; 6] {
    [0x02, 0xbe, 0, 0, 0, r as u8]
}

/// A SYN from `client_port` to VIP `i`'s service `port`.
fn syn(i: usize, port: u16, proto: &str, client_port: u16) -> Vec<u8> {
    let l4 = if proto == "TCP" { L4::Tcp } else { L4::Udp };
    PacketSpec::new(
        "198.18.0.7",
        &edge::vip(i).to_string(),
        client_port,
        port,
        l4,
    )
    .build()
}

/// Where the program sends a frame: the destination MAC, if it forwards it.
fn forwarded(prog: &Xdp, frame: &[u8]) -> Result<Option<[u8; 6]>> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok(matches!(r.return_value, XDP_TX | XDP_REDIRECT)
        .then(|| out[..6].try_into().unwrap_or_default()))
}

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
    let ns = Netns::new(unique_name("edge"))?;
    ns.run(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
    ])?;
    ns.run(&["ip", "addr", "add", "10.200.0.254/24", "dev", "eth0"])?;
    ns.run(&["ip", "link", "set", "eth0", "up"])?;
    ns.run(&["ip", "link", "set", "peer0", "up"])?;
    for r in 0..edge::REALS {
        let mac = mac_of_real(r)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        ns.run(&[
            "ip",
            "neigh",
            "replace",
            &edge::real(r).to_string(),
            "lladdr",
            &mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])?;
    }
    let dir = std::env::temp_dir().join(&ns.name);
    fs::create_dir_all(&dir)?;
    let config = dir.join("edge.conf");
    fs::write(&config, edge::config(&[]))?;
    let bpffs = Path::new("/sys/fs/bpf").join(&ns.name);
    let pin_dir = ns.pin_dir(&bpffs, "eth0")?;
    let log = fs::File::create(dir.join("xlb.log"))?;
    let started = Instant::now();
    let mut cmd = ns.command(xlb.to_str().context("xlb path")?);
    cmd.args(["run", "-f"])
        .arg(&config)
        .args(["-i", "eth0", "--flow-table-size", "65536", "--bpffs"])
        .arg(&bpffs)
        .arg("--pidfile")
        .arg(dir.join("xlb.pid"))
        .stdout(Stdio::null())
        .stderr(log);
    let mut daemon = Process {
        child: cmd.spawn().context("starting xlb")?,
        what: "xlb".into(),
    };
    let result = measure(&daemon, &pin_dir, &config, started);
    daemon.stop(Duration::from_secs(10));
    let _ = fs::remove_dir_all(&bpffs);
    if result.is_err() {
        eprintln!(
            "xlb log:\n{}",
            fs::read_to_string(dir.join("xlb.log")).unwrap_or_default()
        );
    }
    let _ = fs::remove_dir_all(&dir);
    result
}

fn measure(daemon: &Process, pin_dir: &Path, config: &Path, started: Instant) -> Result<()> {
    // Start-up: until a SYN to every one of the 4,096 services is forwarded.
    let deadline = started + Duration::from_secs(60);
    let prog = loop {
        if let Ok(p) = Xdp::from_pin(pin_dir.join("prog"), XdpAttachType::Interface) {
            break p;
        }
        if Instant::now() > deadline {
            bail!("xlb pinned no program within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let services: Vec<(usize, u16, &str)> = (0..edge::VIPS)
        .flat_map(|i| edge::PORTS.iter().map(move |(p, proto)| (i, *p, *proto)))
        .collect();
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
    let mut kernel = 0u64;
    for name in MAP_NAMES.iter().filter(|n| **n != names::FLOWS) {
        kernel += memlock(&pin_dir.join(name))?;
    }
    let flows = memlock(&pin_dir.join(names::FLOWS))?;
    let cpus = aya::util::nr_cpus().map(|n| n.max(1)).unwrap_or(1);
    let estimate = capacity::memory(lb_common::DEFAULT_MAGLEV_TABLE_SIZE, cpus, 65536);

    // A reload that removes one real server: SYNs that went to it, until none does.
    let removed = 5usize;
    let gone = mac_of_real(removed);
    let mut probes = Vec::new();
    // TCP only: a UDP "probe" is a flow the table remembers, which keeps its (draining) real
    // server as it should.
    'find: for &(i, port, proto) in &services {
        if !edge::reals_of(i).contains(&removed) || proto != "TCP" {
            continue;
        }
        for client_port in 1024..1124 {
            let frame = syn(i, port, proto, client_port);
            if forwarded(&prog, &frame)? == Some(gone) {
                probes.push(frame);
                if probes.len() >= 64 {
                    break 'find;
                }
                break;
            }
        }
    }
    if probes.is_empty() {
        bail!("no SYN reached real server {removed}");
    }
    fs::write(config, edge::config(&[removed]))?;
    let asked = Instant::now();
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(daemon.pid(), libc::SIGHUP) };
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
    }
    let reload = asked.elapsed();
    let affected: BTreeSet<usize> = (0..edge::VIPS)
        .filter(|i| edge::reals_of(*i).contains(&removed))
        .collect();

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
        "  reload removing one real server (from {} services), \n    SIGHUP until no new SYN reaches it                   {:>9.0} ms   (goal 100 ms)",
        4 * affected.len(),
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
