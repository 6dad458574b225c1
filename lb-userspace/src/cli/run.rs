//! `xlb run`: load the data plane on an interface and keep its maps equal to the config.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::programs::XdpMode;
use log::{error, info, warn};
use tokio::signal::unix::{SignalKind, signal};

use lb_config::Config;
use lb_health::{HealthEvent, HealthSupervisor};
use tokio::sync::mpsc;

use crate::{
    dataplane::{self, Dataplane, LoadOptions},
    netlink::{Interface, Netlink},
    reconcile::{FlowTimeouts, Reconciler},
    service::{BackendPath, desired},
    vrrp,
};

/// Default flow-hash seed. Directors that share VIPs must agree on it, so it is a constant.
pub const DEFAULT_HASH_SEED: u32 = 0x786c_6221;
/// How often backends' routes and MACs are looked up again (a MAC can change; a missing one is
/// probed until the kernel learns it).
const RESOLVE_INTERVAL: Duration = Duration::from_secs(1);

pub struct RunOptions {
    pub config: PathBuf,
    pub interface: String,
    pub mode: XdpMode,
    pub bpffs: PathBuf,
    pub hash_seed: u32,
    pub pidfile: PathBuf,
    pub flow_table_size: u32,
    pub tcp_idle: Duration,
    pub udp_idle: Duration,
}

pub fn default_pidfile(interface: &str) -> PathBuf {
    Path::new("/run/xlb").join(format!("{interface}.pid"))
}

/// `xlb reload`: SIGHUP to the xlb whose pid the pidfile holds.
pub fn reload_running(pidfile: &Path) -> Result<()> {
    let text = std::fs::read_to_string(pidfile)
        .with_context(|| format!("reading {} (is xlb running?)", pidfile.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", pidfile.display()))?;
    // SAFETY: kill with a pid read from our own pidfile and a valid signal.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("signalling xlb (pid {pid})"));
    }
    println!("asked xlb (pid {pid}) to reload");
    Ok(())
}

/// Claims the interface for this process: two xlbs on one interface would take each other's
/// pins away. A pidfile naming a live xlb refuses the start; a stale one is replaced.
fn write_pidfile(path: &Path) -> Result<()> {
    if let Some(pid) = running_xlb(path) {
        anyhow::bail!(
            "xlb (pid {pid}) is already running with pidfile {}; stop it first",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))
}

/// The pid in a pidfile, if that process is alive and is an xlb.
fn running_xlb(path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    if pid <= 0 || pid == std::process::id() as i32 {
        return None;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "xlb").then_some(pid)
}

/// Removes the pidfile if it is still ours.
fn remove_pidfile(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .is_ok_and(|text| text.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

pub async fn run(opts: RunOptions) -> Result<()> {
    let loaded = super::load_config(&opts.config)?;
    write_pidfile(&opts.pidfile)?;
    let result = run_claimed(&opts, loaded.config).await;
    remove_pidfile(&opts.pidfile);
    result
}

async fn run_claimed(opts: &RunOptions, config: Config) -> Result<()> {
    dataplane::ensure_bpffs(&opts.bpffs)?;
    let pin_dir = dataplane::pin_dir(&opts.bpffs, &opts.interface);
    let mut dp = Dataplane::load(
        Some(&pin_dir),
        LoadOptions {
            flow_table_size: opts.flow_table_size,
        },
    )?;
    let (events_tx, events) = mpsc::channel(1024);
    let mut health = HealthSupervisor::new(events_tx);
    let result = serve(opts, &mut dp, config, &mut health, events).await;
    info!(
        "stopping: detaching from {} and removing {}",
        opts.interface,
        pin_dir.display()
    );
    // keepalived's omega: notify_down and quorum_down scripts of what was up.
    health.shutdown().await;
    let cleanup = dp.shutdown();
    result.and(cleanup)
}

async fn serve(
    opts: &RunOptions,
    dp: &mut Dataplane,
    mut config: Config,
    health: &mut HealthSupervisor,
    mut events: mpsc::Receiver<HealthEvent>,
) -> Result<()> {
    let netlink = Netlink::connect()?;
    let iface = netlink.interface(&opts.interface).await?;
    dp.attach(&opts.interface, opts.mode)?;
    info!(
        "XDP attached to {} (ifindex {}), {} virtual server(s)",
        iface.name,
        iface.index,
        config.virtual_servers.len()
    );
    let clock = dp.clock();
    let timeouts = FlowTimeouts {
        tcp_idle: clock.ticks(opts.tcp_idle),
        udp_idle: clock.ticks(opts.udp_idle),
    };
    // A real server taken out of the config keeps the connections it has for as long as an idle
    // one would be remembered.
    let mut reconciler =
        Reconciler::new(opts.hash_seed, timeouts).with_drain(opts.tcp_idle.max(opts.udp_idle));
    let pinned = dp.pinned_state()?;
    let live = (pinned.control.vip_half & 1) as usize * lb_common::VIP_SLOTS as usize;
    let adopted = pinned
        .vip_slots
        .iter()
        .skip(live)
        .take(lb_common::VIP_SLOTS as usize)
        .filter(|s| s.key.proto != 0)
        .count();
    if adopted > 0 {
        info!("adopting {adopted} VIP(s) from the pinned maps of a previous xlb");
    }
    // Always: generations handed out before must not be handed out again.
    reconciler.adopt(pinned);

    health.apply(&config);
    let mut paths: HashMap<IpAddr, BackendPath> = HashMap::new();
    // VRRP starts once the tables are warm, so that becoming MASTER costs only the claim.
    let mut vrrp_config = config.clone();
    let mut claims_of = vrrp::assign_claims(&vrrp_config, &BTreeMap::new());
    let mut claims = vrrp::claims_by_address(&vrrp_config, &claims_of);
    let mut vrrp_handle: Option<vrrp::VrrpHandle> = None;
    // The VRRP configuration to go back to if a reloaded one cannot start.
    let mut vrrp_fallback: Option<(Config, BTreeMap<String, u32>)> = None;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut ticker = tokio::time::interval(RESOLVE_INTERVAL);
    let mut resolve = true;
    loop {
        let services = crate::health::services(&config, health);
        if resolve {
            refresh_paths(&netlink, &iface, &backend_ips(&config), &mut paths).await;
            resolve = false;
        }
        match reconciler.apply(dp, &desired(&services, &paths, true).with_claims(&claims)) {
            Ok(changes) if !changes.is_empty() => info!("data plane updated: {changes:?}"),
            Ok(_) => {}
            Err(e) => error!("updating the data plane: {e:#}"),
        }
        if vrrp_handle.is_none() && !vrrp_config.vrrp_instances.is_empty() {
            let started = vrrp::spawn(vrrp::VrrpOptions {
                config: vrrp_config.clone(),
                claims_of: claims_of.clone(),
                claims: dp.claims_handle()?,
                clock: dp.jiffies_clock()?,
                scripts: health.scripts(),
                status_file: Some(opts.pidfile.with_extension("vrrp")),
            });
            match (started, vrrp_fallback.take()) {
                (Ok(handle), _) => vrrp_handle = Some(handle),
                (Err(e), Some((old, old_claims))) => {
                    error!(
                        "the reloaded VRRP configuration does not start, keeping the running one: {e:#}"
                    );
                    vrrp_config = old;
                    claims_of = old_claims;
                    claims = vrrp::claims_by_address(&vrrp_config, &claims_of);
                    continue;
                }
                (Err(e), None) => return Err(e),
            }
        }
        tokio::select! {
            _ = ticker.tick() => resolve = true,
            Some(_) = events.recv() => {
                // One recomputation for a burst of state changes.
                while events.try_recv().is_ok() {}
            }
            _ = sighup.recv() => {
                if let Some(new) = reload(&opts.config) {
                    if vrrp_parts(&new) != vrrp_parts(&vrrp_config) {
                        // The running thread steps aside leaving claims and addresses in place;
                        // its successor resumes every instance whose claim is live, with the
                        // new settings. Instances gone from the config withdraw.
                        info!("VRRP configuration changed: restarting VRRP in place");
                        if let Some(handle) = vrrp_handle.take() {
                            handle.detach().await;
                        }
                        let new_claims = vrrp::assign_claims(&new, &claims_of);
                        for vi in &vrrp_config.vrrp_instances {
                            if !new_claims.contains_key(&vi.name) {
                                withdraw_instance(dp, &netlink, vi, claims_of[&vi.name]).await;
                            }
                        }
                        vrrp_fallback = (!new.vrrp_instances.is_empty())
                            .then_some((vrrp_config, claims_of));
                        vrrp_config = new.clone();
                        claims_of = new_claims;
                        claims = vrrp::claims_by_address(&vrrp_config, &claims_of);
                    }
                    config = new;
                    health.apply(&config);
                    resolve = true;
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    if let Some(handle) = vrrp_handle {
        info!("stopping VRRP: handing over to a backup first");
        handle.shutdown().await;
    }
    Ok(())
}

/// An instance removed by a reload: its claim dropped, its addresses removed.
async fn withdraw_instance(
    dp: &mut Dataplane,
    netlink: &Netlink,
    vi: &lb_config::VrrpInstance,
    claim: u32,
) {
    info!("({}) removed from the config: withdrawing", vi.name);
    if let Err(e) = dp.set_claim(claim, lb_common::Claim::default()) {
        error!("({}) dropping its claim: {e:#}", vi.name);
    }
    for vip in vi
        .virtual_ipaddress
        .iter()
        .chain(&vi.virtual_ipaddress_excluded)
    {
        let removed = match netlink.interface(&vip.dev).await {
            Ok(dev) => {
                netlink
                    .remove_address(dev.index, vip.address, vip.prefix_len)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            error!("({}) {e:#}", vi.name);
        }
    }
}

/// What of a config VRRP runs on.
fn vrrp_parts(
    c: &Config,
) -> (
    &[lb_config::VrrpInstance],
    &[lb_config::VrrpSyncGroup],
    &[lb_config::VrrpScript],
) {
    (&c.vrrp_instances, &c.vrrp_sync_groups, &c.vrrp_scripts)
}

/// Re-reads the config; an invalid file leaves the running config in force.
fn reload(path: &Path) -> Option<Config> {
    match super::load_config(path) {
        Ok(loaded) => {
            info!(
                "reloaded {}: {} virtual server(s)",
                path.display(),
                loaded.config.virtual_servers.len()
            );
            Some(loaded.config)
        }
        Err(e) => {
            error!("reload refused, the running config stays in force: {e:#}");
            None
        }
    }
}

/// Every address frames may have to reach: real servers and sorry servers, so that a sorry
/// server is ready before the quorum is lost.
fn backend_ips(config: &Config) -> BTreeSet<IpAddr> {
    config
        .virtual_servers
        .iter()
        .flat_map(|vs| {
            vs.real_servers
                .iter()
                .map(|rs| rs.address)
                .chain(vs.sorry_server.as_ref().map(|s| s.address))
        })
        .collect()
}

async fn refresh_paths(
    netlink: &Netlink,
    iface: &Interface,
    ips: &BTreeSet<IpAddr>,
    paths: &mut HashMap<IpAddr, BackendPath>,
) {
    paths.retain(|ip, _| ips.contains(ip));
    for &ip in ips {
        let path = match netlink.resolve(ip).await {
            Ok(Some(n)) => {
                let src_mac = if n.ifindex == iface.index {
                    Ok(iface.mac)
                } else {
                    netlink.interface_by_index(n.ifindex).await.map(|i| i.mac)
                };
                src_mac.map(|src_mac| {
                    Some(BackendPath {
                        ifindex: n.ifindex,
                        mac: n.mac,
                        src_mac,
                    })
                })
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match (path, paths.get(&ip).copied()) {
            (Ok(Some(new)), old) if old != Some(new) => {
                info!(
                    "backend {ip} is at {} on ifindex {}",
                    fmt_mac(&new.mac),
                    new.ifindex
                );
                paths.insert(ip, new);
            }
            (Ok(Some(_)), _) => {}
            (Ok(None), old) => {
                if old.is_some() || !paths.contains_key(&ip) {
                    warn!(
                        "backend {ip}: no neighbour entry yet, probing; it gets no traffic until resolved"
                    );
                }
                paths.remove(&ip);
            }
            (Err(e), _) => {
                if paths.remove(&ip).is_some() {
                    warn!("backend {ip} is unreachable, removing it: {e:#}");
                } else {
                    warn!("backend {ip} is unreachable: {e:#}");
                }
            }
        }
    }
}

fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
