//! The running xlb: it owns the data plane of one interface and keeps its maps equal to the
//! config, the health verdicts and the VRRP roles; it answers signals and the control socket.
//!
//! Start-up checks everything it can before touching anything: the config, the interface, the
//! BPF filesystem, then the instance lock. Only the lock holder adopts, replaces or removes pins.

mod changes;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::programs::XdpMode;
use lb_config::Config;
use lb_health::{HealthEvent, HealthSupervisor};
use log::{error, info, warn};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

pub use changes::{describe as describe_changes, service_name};

use crate::{
    control::{ControlSocket, Incoming, Request, Response},
    dataplane::{
        Dataplane, LoadOptions,
        pins::{self, Bpffs},
    },
    instance::{InstanceLock, InstancePaths},
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
/// After a health event, how long to wait for more before recomputing (a start-up or a reload
/// brings thousands at once), and at most how many times.
const EVENT_SETTLE: Duration = Duration::from_millis(5);
const EVENT_SETTLE_ROUNDS: usize = 10;

/// Which backends to look up in the kernel's routes and neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolve {
    Nothing,
    /// Only those not resolved yet (after a reload: the rest wait for the next tick).
    New,
    All,
}

/// A reload whose config takes longer than this to read is refused (the running config stays).
/// Reading is bounded by lb-config's limits; this is the backstop.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

pub struct DaemonOptions {
    pub config: PathBuf,
    pub paths: InstancePaths,
    pub mode: XdpMode,
    pub hash_seed: u32,
    pub flow_table_size: u32,
    pub tcp_idle: Duration,
    pub udp_idle: Duration,
}

/// `xlb run`: validates, claims the interface, serves until SIGTERM or SIGINT.
pub async fn run(opts: DaemonOptions) -> Result<()> {
    let checked = crate::cli::load_config(&opts.config)?;
    let ifindex = interface_index(opts.paths.interface.as_str())?;
    let bpffs = Bpffs::ensure(&opts.paths.bpffs)?;
    let result = run_on_bpffs(&opts, checked.loaded.config, ifindex).await;
    bpffs.release();
    result
}

async fn run_on_bpffs(opts: &DaemonOptions, config: Config, ifindex: u32) -> Result<()> {
    let lock = InstanceLock::acquire(&opts.paths.pin_dir)?;
    let result = match write_pidfile(&opts.paths.pidfile) {
        Ok(()) => {
            let result = run_locked(opts, config, ifindex).await;
            remove_pidfile(&opts.paths.pidfile);
            result
        }
        Err(e) => Err(e),
    };
    pins::remove_empty_parents(lock.path(), &opts.paths.bpffs);
    drop(lock);
    result
}

async fn run_locked(opts: &DaemonOptions, config: Config, ifindex: u32) -> Result<()> {
    let pin_dir = &opts.paths.pin_dir;
    if let Some(why) = pins::foreign_pin_set(pin_dir, ifindex) {
        warn!(
            "not adopting the pins in {}: {why}; starting clean",
            pin_dir.display()
        );
        pins::remove_pin_set(pin_dir)?;
    }
    let mut dp = Dataplane::load(
        Some(pin_dir),
        LoadOptions {
            flow_table_size: opts.flow_table_size,
            maglev_size: config.global_defs.xlb_maglev_table_size,
        },
    )?;
    let (events_tx, events) = mpsc::channel(1024);
    let mut health = HealthSupervisor::new(events_tx);
    let (requests_tx, requests) = mpsc::channel(16);
    let result = match ControlSocket::serve(&opts.paths.socket, requests_tx) {
        Ok(socket) => {
            let result = serve(opts, &mut dp, config, &mut health, events, requests).await;
            drop(socket);
            result
        }
        Err(e) => Err(e),
    };
    info!(
        "stopping: detaching from {} and removing {}",
        opts.paths.interface,
        pin_dir.display()
    );
    // keepalived's omega: notify_down and quorum_down scripts of what was up.
    health.shutdown().await;
    let cleanup = dp.shutdown();
    result.and(cleanup)
}

fn interface_index(name: &str) -> Result<u32> {
    let c_name = std::ffi::CString::new(name).context("interface name contains a NUL byte")?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        bail!("there is no interface {name} in this network namespace");
    }
    Ok(index)
}

/// Records this process's pid for operators and service managers. Another live xlb with the
/// same pidfile refuses the start; a stale file is replaced.
fn write_pidfile(path: &Path) -> Result<()> {
    if let Some(pid) = running_xlb(path) {
        bail!(
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
    if pid <= 1 || pid == std::process::id() as i32 {
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

/// A reload being read off the main loop, and who waits for its answer.
struct PendingReload {
    task: JoinHandle<Result<Config, Vec<String>>>,
    waiters: Vec<oneshot::Sender<Response>>,
}

/// Reads the config on a blocking thread, within [`RELOAD_DEADLINE`], and checks it against
/// the data plane's limits and the running table size.
fn start_reload(path: &Path, maglev_size: u32) -> JoinHandle<Result<Config, Vec<String>>> {
    let path = path.to_path_buf();
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        let read = tokio::task::spawn_blocking({
            let path = path.clone();
            move || {
                lb_config::load(&path).map(|loaded| {
                    let fits = crate::capacity::check(&loaded.config);
                    (loaded, fits)
                })
            }
        });
        match tokio::time::timeout(RELOAD_DEADLINE, read).await {
            Err(_) => Err(vec![format!(
                "{}: not read within {RELOAD_DEADLINE:?}",
                path.display()
            )]),
            Ok(Err(e)) => Err(vec![format!("{}: reading failed: {e}", path.display())]),
            // Already capped by lb-config, with a last line that counts the rest.
            Ok(Ok(Err(errors))) => Err(errors.errors().map(|d| d.to_string()).collect()),
            Ok(Ok(Ok((_, Err(over))))) => Err(over.iter().map(|e| e.to_string()).collect()),
            Ok(Ok(Ok((loaded, Ok(_))))) => {
                log::debug!(
                    "{} read and checked in {:?}",
                    path.display(),
                    started.elapsed()
                );
                let wanted = loaded.config.global_defs.xlb_maglev_table_size;
                if wanted != maglev_size {
                    let at = loaded
                        .config
                        .global_defs
                        .xlb_maglev_table_size_origin
                        .span()
                        .map(|s| format!("{s}: "))
                        .unwrap_or_default();
                    return Err(vec![format!(
                        "{at}error: found xlb_maglev_table_size {wanted}, expected {maglev_size}                          as running: a new table size moves most flows and needs a restart"
                    )]);
                }
                for w in &loaded.warnings {
                    warn!("{w}");
                }
                Ok(loaded.config)
            }
        }
    })
}

async fn serve(
    opts: &DaemonOptions,
    dp: &mut Dataplane,
    mut config: Config,
    health: &mut HealthSupervisor,
    mut events: mpsc::Receiver<HealthEvent>,
    mut requests: mpsc::Receiver<Incoming>,
) -> Result<()> {
    let netlink = Netlink::connect()?;
    let iface = netlink.interface(opts.paths.interface.as_str()).await?;
    dp.attach(opts.paths.interface.as_str(), opts.mode)?;
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
        syn_window: clock.ticks(crate::reconcile::SYN_WINDOW),
    };
    // A real server taken out of the config keeps the connections it has for as long as an idle
    // one would be remembered.
    let maglev_size = dp.maglev_size();
    let mut reconciler = Reconciler::new(opts.hash_seed, maglev_size, timeouts)
        .with_drain(opts.tcp_idle.max(opts.udp_idle));
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
    let mut resolve = Resolve::All;
    let mut reload: Option<PendingReload> = None;
    // Set when an input changed: the desired state is computed and applied only then (and at
    // every tick whose lookups changed a path or that ends a drain).
    let mut dirty = true;
    // A reload that reached the data plane: the running config it replaced, and who waits for
    // the answer. The health checks follow it once the data plane has it.
    let mut reloaded: Option<(Config, Vec<oneshot::Sender<Response>>)> = None;
    // systemd (crate::notify): READY=1 once the first apply is done and VRRP has started.
    let mut notified_ready = false;
    loop {
        if resolve != Resolve::Nothing {
            let only_new = resolve == Resolve::New;
            dirty |= refresh_paths(
                &netlink,
                &iface,
                &backend_ips(&config),
                &mut paths,
                only_new,
            )
            .await;
            resolve = Resolve::Nothing;
        }
        if dirty {
            dirty = false;
            let started = std::time::Instant::now();
            let services = crate::health::services(&config, health);
            let want = desired(&services, &paths, true).with_claims(&claims);
            let computed = started.elapsed();
            match reconciler.apply(dp, &want) {
                Ok(changes) if !changes.is_empty() => info!("data plane updated: {changes:?}"),
                Ok(_) => {}
                Err(e) => error!("updating the data plane: {e:#}"),
            }
            log::debug!(
                "desired state computed in {computed:?}, applied in {:?}",
                started.elapsed() - computed
            );
        }
        if let Some((old, waiters)) = reloaded.take() {
            // The data plane serves the new config; now the health checks follow it (new
            // monitors, quorum settings), and the answer says what changed.
            health.apply(&config);
            let changes = describe_changes(&old, &config);
            info!(
                "reloaded {}: {} virtual server(s), {} change(s)",
                opts.config.display(),
                config.virtual_servers.len(),
                changes.len()
            );
            for c in &changes {
                info!("  {c}");
            }
            crate::notify::ready_after_reload();
            crate::notify::status(&format!("reloaded: {} change(s)", changes.len()));
            for waiter in waiters {
                let _ = waiter.send(Response::Reloaded {
                    changes: changes.clone(),
                });
            }
            dirty = true;
            resolve = Resolve::All;
            continue;
        }
        if vrrp_handle.is_none() && !vrrp_config.vrrp_instances.is_empty() {
            let started = vrrp::spawn(vrrp::VrrpOptions {
                config: vrrp_config.clone(),
                claims_of: claims_of.clone(),
                claims: dp.claims_handle()?,
                clock: dp.jiffies_clock()?,
                scripts: health.scripts(),
                status_file: Some(opts.paths.pidfile.with_extension("vrrp")),
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
        if !notified_ready {
            notified_ready = true;
            crate::notify::ready();
            crate::notify::status(&format!(
                "serving {} virtual server(s) on {}",
                config.virtual_servers.len(),
                iface.name
            ));
        }
        tokio::select! {
            _ = ticker.tick() => {
                resolve = Resolve::All;
                dirty |= reconciler.drain_due(std::time::Instant::now());
            }
            Some(_) = events.recv() => {
                // One recomputation for a burst of state changes (thousands at start-up): wait
                // for the burst to end, within a bound.
                dirty = true;
                for _ in 0..EVENT_SETTLE_ROUNDS {
                    let mut more = false;
                    while events.try_recv().is_ok() {
                        more = true;
                    }
                    if !more {
                        break;
                    }
                    tokio::time::sleep(EVENT_SETTLE).await;
                }
            }
            _ = sighup.recv() => {
                match &reload {
                    Some(_) => info!("SIGHUP: a reload is already being read"),
                    None => {
                        info!("SIGHUP: reloading {}", opts.config.display());
                        crate::notify::reloading();
                        reload = Some(PendingReload {
                            task: start_reload(&opts.config, maglev_size),
                            waiters: Vec::new(),
                        });
                    }
                }
            }
            Some(incoming) = requests.recv() => match incoming.request {
                Request::Reload => match reload.as_mut() {
                    Some(pending) => pending.waiters.push(incoming.reply),
                    None => {
                        info!("reload asked on the control socket");
                        crate::notify::reloading();
                        reload = Some(PendingReload {
                            task: start_reload(&opts.config, maglev_size),
                            waiters: vec![incoming.reply],
                        });
                    }
                },
            },
            read = async { (&mut reload.as_mut().expect("guarded").task).await },
                if reload.is_some() =>
            {
                let waiters = reload.take().map(|p| p.waiters).unwrap_or_default();
                let read = read.unwrap_or_else(|e| Err(vec![format!("reading the config: {e}")]));
                let response = match read {
                    Err(errors) => {
                        for e in &errors {
                            error!("{e}");
                        }
                        error!(
                            "reload refused, the running config stays in force: {} error(s)",
                            errors.len()
                        );
                        crate::notify::ready_after_reload();
                        crate::notify::status(&format!(
                            "reload refused ({} error(s)), the running config stays",
                            errors.len()
                        ));
                        // lb-config keeps at most its first 100 errors, then counts.
                        Response::Refused { errors }
                    }
                    Ok(new) => {
                        if vrrp_parts(&new) != vrrp_parts(&vrrp_config) {
                            // The running thread steps aside leaving claims and addresses in
                            // place; its successor resumes every instance whose claim is live,
                            // with the new settings. Instances gone from the config withdraw.
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
                        // The data plane first: the next turn of the loop applies the new
                        // config (looking up only backends it has not resolved yet), then
                        // the health checks follow it and the waiters get their answer.
                        reloaded = Some((std::mem::replace(&mut config, new), waiters));
                        resolve = Resolve::New;
                        dirty = true;
                        continue;
                    }
                };
                for waiter in waiters {
                    let _ = waiter.send(response.clone());
                }
            }
            _ = sigterm.recv() => {
                crate::notify::stopping();
                break;
            }
            _ = sigint.recv() => {
                crate::notify::stopping();
                break;
            }
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

/// Looks backends up in the kernel's routes and neighbours (`only_new`: those not resolved
/// yet); whether any path changed.
async fn refresh_paths(
    netlink: &Netlink,
    iface: &Interface,
    ips: &BTreeSet<IpAddr>,
    paths: &mut HashMap<IpAddr, BackendPath>,
    only_new: bool,
) -> bool {
    let before = paths.clone();
    paths.retain(|ip, _| ips.contains(ip));
    for &ip in ips {
        if only_new && paths.contains_key(&ip) {
            continue;
        }
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
    *paths != before
}

fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
