//! The running xlb: it owns the data plane of one interface and keeps its maps equal to the
//! config, the health verdicts and the VRRP roles; it answers signals and the control socket.
//!
//! Start-up checks everything it can before touching anything: the config, the interface, the
//! BPF filesystem, then the instance lock. Only the lock holder adopts, replaces or removes pins.

mod changes;
mod paths;
mod reload;
mod serve;
mod status;
mod tx_errors;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, bail};
use aya::programs::XdpMode;
use lb_config::Config;
use lb_health::HealthSupervisor;
use log::{info, warn};
use tokio::sync::{mpsc, oneshot, watch};

pub use changes::{describe as describe_changes, service_name};

use crate::{
    control::{ControlSocket, Response},
    dataplane::{
        Dataplane, LoadOptions, Observer,
        pins::{self, Bpffs},
    },
    instance::{InstanceLock, InstancePaths},
    netlink::{Interface, Netlink},
    reconcile::Reconciler,
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

pub struct DaemonOptions {
    /// The file, and the config id every reload reads it with.
    pub config: crate::cli::ConfigFile,
    pub paths: InstancePaths,
    pub mode: XdpMode,
    pub hash_seed: u32,
    pub flow_table_size: u32,
    pub tcp_idle: Duration,
    pub udp_idle: Duration,
    /// Where to serve Prometheus `/metrics` (none: not served).
    pub metrics_address: Option<SocketAddr>,
    /// Interfaces served besides `paths.interface` (a NAT director's server side).
    pub also: Vec<crate::instance::InterfaceName>,
}

impl DaemonOptions {
    /// Every interface served, the instance's own first.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.paths.interface.as_str()).chain(self.also.iter().map(|i| i.as_str()))
    }
}

/// `xlb run`: validates, claims the interface, serves until SIGTERM or SIGINT.
pub async fn run(opts: DaemonOptions) -> Result<()> {
    let checked = crate::cli::load_config(&opts.config)?;
    let served: Vec<&str> = opts.interfaces().collect();
    refuse_other_interfaces(&checked.loaded.config, &served)?;
    if let Some(missing) = nat_forwarding_missing(&checked.loaded.config) {
        bail!("{missing}");
    }
    let ifindex = interface_index(opts.paths.interface.as_str())?;
    for also in &opts.also {
        if also.as_str() == opts.paths.interface.as_str() {
            bail!("--also-interface {also}: it is -i already");
        }
        interface_index(also.as_str())?;
    }
    accept_translated_replies(&checked.loaded.config, &served);
    // Bound before anything runs: an address in use is an error now, not a surprise later.
    let metrics = match opts.metrics_address {
        Some(address) => Some(crate::metrics::bind(address).await?),
        None => None,
    };
    let bpffs = Bpffs::ensure(&opts.paths.bpffs)?;
    let result = run_on_bpffs(&opts, checked.loaded.config, ifindex, metrics).await;
    bpffs.release();
    result
}

async fn run_on_bpffs(
    opts: &DaemonOptions,
    config: Config,
    ifindex: u32,
    metrics: Option<tokio::net::TcpListener>,
) -> Result<()> {
    let lock = InstanceLock::acquire(&opts.paths.pin_dir)?;
    // The other interfaces are this instance's too: no xlb of their own may run on them.
    let mut others = Vec::new();
    for also in &opts.also {
        let paths = InstancePaths::new(&opts.paths.bpffs, also, None)?;
        match InstanceLock::acquire(&paths.pin_dir) {
            Ok(other) => others.push((other, paths.pin_dir)),
            Err(e) => {
                for (other, dir) in others {
                    drop(other);
                    let _ = std::fs::remove_dir(&dir);
                }
                pins::remove_empty_parents(lock.path(), &opts.paths.bpffs);
                return Err(e.context(format!("--also-interface {also}")));
            }
        }
    }
    let result = match write_pidfile(&opts.paths.pidfile) {
        Ok(()) => {
            let result = run_locked(opts, config, ifindex, metrics).await;
            remove_pidfile(&opts.paths.pidfile);
            result
        }
        Err(e) => Err(e),
    };
    for (other, dir) in others {
        drop(other);
        let _ = std::fs::remove_dir(&dir);
        pins::remove_empty_parents(&dir, &opts.paths.bpffs);
    }
    pins::remove_empty_parents(lock.path(), &opts.paths.bpffs);
    drop(lock);
    result
}

async fn run_locked(
    opts: &DaemonOptions,
    config: Config,
    ifindex: u32,
    metrics: Option<tokio::net::TcpListener>,
) -> Result<()> {
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
    if let Some(listener) = metrics {
        crate::metrics::serve(listener, requests_tx.clone());
    }
    let result = match ControlSocket::serve(&opts.paths.socket, requests_tx) {
        Ok(socket) => {
            let result = match Daemon::start(opts, &mut dp, &mut health, config).await {
                Ok(daemon) => daemon.serve(events, requests).await,
                Err(e) => Err(e),
            };
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

/// One xlb serves one interface: a VRRP instance on another would run once per xlb sharing
/// the config. Each one refused is an error with where it is written.
fn other_interface_errors(config: &Config, served: &[&str]) -> Vec<String> {
    let interface = served.join(", ");
    config
        .vrrp_instances
        .iter()
        .filter(|vi| !served.contains(&vi.interface.as_str()))
        .map(|vi| {
            let at = vi
                .origin
                .span()
                .map(|s| format!("{s}: "))
                .unwrap_or_default();
            format!(
                "{at}error: vrrp_instance {} runs on {}, this xlb serves {interface}: run one \
                 xlb per interface, each with a config of its own instances",
                vi.name, vi.interface
            )
        })
        .collect()
}

/// What NAT needs of the kernel and does not find, if anything: IP forwarding (the kernel
/// forwards the replies xlb hands it translated when their next hop is not resolved yet, and
/// XDP's route lookups answer only where forwarding is on), as IPVS's NAT needs it.
fn nat_forwarding_missing(config: &Config) -> Option<String> {
    let nat = config
        .virtual_servers
        .iter()
        .filter(|vs| vs.lb_kind == lb_config::LbKind::Nat);
    let (mut v4, mut v6) = (false, false);
    for vs in nat {
        v4 |= vs.address.is_ipv4();
        v6 |= vs.address.is_ipv6();
    }
    let off = |path: &str| std::fs::read_to_string(path).map_or(true, |v| v.trim() != "1");
    let mut missing = Vec::new();
    if v4 && off("/proc/sys/net/ipv4/ip_forward") {
        missing.push("sysctl -w net.ipv4.ip_forward=1");
    }
    if v6 && off("/proc/sys/net/ipv6/conf/all/forwarding") {
        missing.push("sysctl -w net.ipv6.conf.all.forwarding=1");
    }
    (!missing.is_empty()).then(|| {
        format!(
            "lb_kind NAT needs IP forwarding, as IPVS's NAT does, and it is off: {}",
            missing.join(" and ")
        )
    })
}

/// A reply handed to the kernel translated has the VIP, one of this host's addresses, as its
/// source: the kernel drops such packets as martians unless the interface accepts local
/// sources. Set on every interface served when NAT services are configured.
fn accept_translated_replies(config: &Config, served: &[&str]) {
    let nat4 = config
        .virtual_servers
        .iter()
        .any(|vs| vs.lb_kind == lb_config::LbKind::Nat && vs.address.is_ipv4());
    if !nat4 {
        return;
    }
    for interface in served {
        let path = format!("/proc/sys/net/ipv4/conf/{interface}/accept_local");
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        match std::fs::write(&path, "1") {
            Ok(()) => info!(
                "{interface}: accept_local set to 1, so that the kernel forwards the NAT replies \
                 xlb hands it translated (their source is the VIP, a local address)"
            ),
            Err(e) => warn!(
                "{interface}: setting accept_local: {e}; NAT replies to clients not resolved \
                 yet will be dropped by the kernel"
            ),
        }
    }
}

fn refuse_other_interfaces(config: &Config, served: &[&str]) -> Result<()> {
    let errors = other_interface_errors(config, served);
    if errors.is_empty() {
        return Ok(());
    }
    let prefix = crate::logging::stderr_prefix(log::Level::Error);
    for line in &errors {
        eprintln!("{prefix}{line}");
    }
    bail!(
        "{} VRRP instance(s) on another interface than -i {}",
        errors.len(),
        served.join(" --also-interface ")
    )
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

/// The running daemon's state: one typed model of what it serves, changed only on its main
/// loop (`serve.rs`), read for status requests (`status.rs`).
struct Daemon<'a> {
    opts: &'a DaemonOptions,
    dp: &'a mut Dataplane,
    health: &'a mut HealthSupervisor,
    netlink: Netlink,
    iface: Interface,
    config: Config,
    reconciler: Reconciler,
    paths: paths::BackendPaths,
    vrrp: VrrpState,
    /// Reads counters and the flow table off the main loop.
    observer: Arc<Mutex<Observer>>,
    rates: Arc<Mutex<status::Rates>>,
    started: SystemTime,
    tx_errors: Vec<tx_errors::TxErrorWatch>,
    /// What the data plane forwards, as last applied (to log what changes).
    forwarding: changes::Forwarding,
    /// Set when an input changed: the desired state is computed and applied only then (and at
    /// every tick whose lookups changed a path or that ends a drain).
    dirty: bool,
    resolve: Resolve,
    reload: Option<reload::PendingReload>,
    /// A reload that reached the data plane: the running config it replaced, and who waits
    /// for the answer. The health checks follow it once the data plane has it.
    reloaded: Option<(Config, Vec<oneshot::Sender<Response>>)>,
    /// The routes of `xlb_announce` VIPs, once the config has any.
    announcer: Option<crate::announce::Announcer>,
}

/// The VRRP side: the configuration the thread runs, the claim of each instance, and what the
/// thread reports.
struct VrrpState {
    config: Config,
    /// Instance name to claim index.
    claims_of: BTreeMap<String, u32>,
    /// VIP address to claim index.
    claims: BTreeMap<IpAddr, u32>,
    handle: Option<vrrp::VrrpHandle>,
    /// The configuration to go back to if a reloaded one cannot start.
    fallback: Option<(Config, BTreeMap<String, u32>)>,
    report_tx: watch::Sender<vrrp::VrrpReport>,
    report: watch::Receiver<vrrp::VrrpReport>,
    /// For a thread started after a reload: each instance's state under its predecessor.
    previous_states: BTreeMap<String, String>,
}
