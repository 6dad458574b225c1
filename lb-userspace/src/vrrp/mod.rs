//! VRRP on a thread of its own: sockets, timers, VIP addresses, announcements, the data
//! plane's claims, tracking and notify scripts.
//!
//! The state machines are lb-vrrp's (sans-IO); this module carries out what they ask. A thread
//! with its own runtime (real-time priority where allowed) keeps adverts on time whatever the
//! rest of xlb is doing. Each instance writes only its own claim in the data plane, renewing
//! its lease with every advert it sends: if this thread stops, the claim lapses by itself.

mod report;
mod setup;
mod socket;
mod track;

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use lb_common::Claim;
use lb_config::{Config, NotifyScript, VirtualIpAddress, VrrpInstance};
use lb_health::ScriptRunner;
use lb_vrrp::{Action, DropReason, GroupAction, Instance, RxMeta, State, SyncGroup};
use log::{error, info, warn};
pub use report::{VrrpReport, reason_words};
pub use setup::{assign_claims, claims_by_address};
use socket::{FrameSocket, VrrpSocket};
use tokio::sync::{mpsc, oneshot};
use track::{TrackEvent, Tracked};

use crate::{
    dataplane::{ClaimWriter, JiffiesClock},
    netlink::Netlink,
};

/// What the VRRP thread needs.
pub struct VrrpOptions {
    pub config: Config,
    /// The claim index of each instance ([`assign_claims`]).
    pub claims_of: BTreeMap<String, u32>,
    pub claims: ClaimWriter,
    pub clock: JiffiesClock,
    pub scripts: Arc<ScriptRunner>,
    /// Where states and counters go, replaced whole after every change.
    pub report: tokio::sync::watch::Sender<VrrpReport>,
    /// After a reload: each instance's state under the thread this one succeeds. An instance
    /// that resumes in the same state has not changed state: its notify scripts do not run.
    pub previous_states: BTreeMap<String, String>,
}

/// The running VRRP thread.
pub struct VrrpHandle {
    stop: Option<oneshot::Sender<Stop>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// How the VRRP thread ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Masters hand over to a backup, then withdraw.
    HandOver,
    /// At once, leaving claims and addresses as they are, for a successor that resumes them
    /// (a reload of the VRRP configuration).
    Detach,
}

impl VrrpHandle {
    /// A clean stop: masters send priority 0 and keep forwarding until the new master is heard
    /// (or Master_Down_Interval passes), then withdraw. Returns when that is done.
    pub async fn shutdown(self) {
        self.stop_with(Stop::HandOver).await;
    }

    /// Stops at once and leaves every claim and address in place: the VRRP thread started next
    /// resumes as MASTER where a claim is live, as after a restart within the lease.
    pub async fn detach(self) {
        self.stop_with(Stop::Detach).await;
    }

    async fn stop_with(mut self, how: Stop) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Starts VRRP for every `vrrp_instance` of the config.
pub fn spawn(options: VrrpOptions) -> Result<VrrpHandle> {
    let (stop_tx, stop_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = thread::Builder::new()
        .name("xlb-vrrp".into())
        .spawn(move || {
            raise_priority();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!("VRRP runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut vrrp = match Vrrp::new(options).await {
                    Ok(v) => {
                        let _ = ready_tx.send(Ok(()));
                        v
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                vrrp.run(stop_rx).await;
            });
        })
        .context("starting the VRRP thread")?;
    ready_rx
        .recv()
        .map_err(|_| anyhow!("the VRRP thread died while starting"))??;
    Ok(VrrpHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Real-time scheduling keeps adverts on time on a busy machine (keepalived's
/// `vrrp_rt_priority`); without the privilege, the default class will do.
fn raise_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: plain syscall on the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        warn!(
            "VRRP thread keeps normal scheduling: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// One VRRP instance as this thread runs it.
struct Member {
    config: VrrpInstance,
    claim: u32,
    primary: IpAddr,
    socket: (String, bool),
    /// Every address it holds, with the interface index each goes on.
    addresses: Vec<(VirtualIpAddress, u32)>,
    /// Stopping as master: until when to keep forwarding while waiting for the new master.
    handing_over: Option<Duration>,
    /// Last applied tracking.
    fault: bool,
    delta: i32,
    counters: Counters,
}

/// One instance's counters, for the report.
#[derive(Clone, Debug, Default)]
struct Counters {
    transitions: u64,
    become_master: u64,
    release_master: u64,
    adverts_sent: u64,
    adverts_received: u64,
    priority_zero_sent: u64,
    priority_zero_received: u64,
    dropped: BTreeMap<&'static str, u64>,
    master_since: Option<std::time::SystemTime>,
}

struct Group {
    name: Option<String>,
    sync: SyncGroup,
    members: Vec<Member>,
}

/// A received packet, from a socket's reader task.
struct Received {
    socket: (String, bool),
    at: Instant,
    packet: Result<(RxMeta, Vec<u8>), DropReason>,
}

struct Vrrp {
    groups: Vec<Group>,
    /// (interface, IPv6, VRID) to (group, member).
    routes: HashMap<(String, bool, u8), (usize, usize)>,
    sockets: HashMap<(String, bool), Arc<VrrpSocket>>,
    frames: HashMap<u32, (FrameSocket, [u8; 6])>,
    received: mpsc::UnboundedReceiver<Received>,
    tracking: mpsc::UnboundedReceiver<TrackEvent>,
    tracked: Tracked,
    netlink: Netlink,
    claims: ClaimWriter,
    clock: JiffiesClock,
    scripts: Arc<ScriptRunner>,
    config: Config,
    epoch: Instant,
    drops: BTreeMap<DropReason, u64>,
    drops_logged: Option<Instant>,
    report: tokio::sync::watch::Sender<VrrpReport>,
    /// Something the report shows changed since it was last sent.
    report_due: bool,
    previous_states: BTreeMap<String, String>,
}

/// How long a stopping master keeps forwarding after hearing its successor: clients learn the
/// new MAC from its gratuitous ARPs meanwhile, so packets sent to the old one still arrive.
const HANDOVER_LINGER: Duration = Duration::from_millis(200);

/// Drop counters are logged at most this often (the first of each reason at once).
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Vrrp {
    async fn new(options: VrrpOptions) -> Result<Self> {
        let netlink = Netlink::connect()?;
        let config = options.config;
        let claims_of = options.claims_of;
        let (received_tx, received) = mpsc::unbounded_channel();
        let (tracking_tx, tracking) = mpsc::unbounded_channel();
        let mut sockets: HashMap<(String, bool), Arc<VrrpSocket>> = HashMap::new();
        let mut frames = HashMap::new();
        let mut groups = Vec::new();
        let mut routes = HashMap::new();
        let mut link_names = Vec::new();
        for (name, member_names) in setup::groups(&config) {
            let mut instances = Vec::new();
            let mut members = Vec::new();
            for member_name in member_names {
                let vi = config
                    .vrrp_instance(&member_name)
                    .ok_or_else(|| anyhow!("no vrrp_instance {member_name}"))?
                    .clone();
                let iface = netlink
                    .interface(&vi.interface)
                    .await
                    .with_context(|| format!("vrrp_instance {}", vi.name))?;
                let v6 = vi.family() == lb_config::AddressFamily::Ipv6;
                let primary = match vi.unicast_src_ip.or(vi.mcast_src_ip) {
                    Some(ip) => ip,
                    None => netlink
                        .first_address(iface.index, v6)
                        .await?
                        .ok_or_else(|| {
                            anyhow!(
                                "vrrp_instance {}: {} has no {} address to speak from",
                                vi.name,
                                vi.interface,
                                if v6 { "link-local IPv6" } else { "IPv4" }
                            )
                        })?,
                };
                let key = (vi.interface.clone(), v6);
                if !sockets.contains_key(&key) {
                    let socket = VrrpSocket::open(&vi.interface, iface.index, v6)
                        .with_context(|| format!("VRRP socket on {}", vi.interface))?;
                    if let IpAddr::V6(src) = primary {
                        socket
                            .bind_v6(src)
                            .with_context(|| format!("binding the VRRP socket to {src}"))?;
                    }
                    let socket = Arc::new(socket);
                    tokio::spawn(read_socket(
                        key.clone(),
                        socket.clone(),
                        received_tx.clone(),
                    ));
                    sockets.insert(key.clone(), socket);
                }
                let mut addresses = Vec::new();
                for vip in vi
                    .virtual_ipaddress
                    .iter()
                    .chain(&vi.virtual_ipaddress_excluded)
                {
                    let dev = netlink
                        .interface(&vip.dev)
                        .await
                        .with_context(|| format!("vrrp_instance {}: {}", vi.name, vip.address))?;
                    if let std::collections::hash_map::Entry::Vacant(e) = frames.entry(dev.index) {
                        e.insert((
                            FrameSocket::open(dev.index).context("a packet socket")?,
                            dev.mac,
                        ));
                    }
                    addresses.push((vip.clone(), dev.index));
                }
                let cfg = setup::instance_config(&vi, primary)?;
                instances.push(
                    Instance::new(cfg).map_err(|e| anyhow!("vrrp_instance {}: {e}", vi.name))?,
                );
                routes.insert(
                    (vi.interface.clone(), v6, vi.virtual_router_id),
                    (groups.len(), members.len()),
                );
                link_names.push(vi.interface.clone());
                link_names.extend(vi.track_interface.iter().map(|t| t.name.clone()));
                members.push(Member {
                    claim: *claims_of
                        .get(&vi.name)
                        .ok_or_else(|| anyhow!("vrrp_instance {} has no claim", vi.name))?,
                    primary,
                    socket: key,
                    addresses,
                    handing_over: None,
                    fault: false,
                    delta: 0,
                    counters: Counters::default(),
                    config: vi,
                });
            }
            groups.push(Group {
                name,
                sync: SyncGroup::new(instances),
                members,
            });
        }
        link_names.sort();
        link_names.dedup();
        tokio::spawn(track::watch_links(
            link_names,
            netlink.clone(),
            tracking_tx.clone(),
        ));
        let used: std::collections::BTreeSet<&str> = config
            .vrrp_instances
            .iter()
            .flat_map(|vi| vi.track_script.iter().map(|t| t.name.as_str()))
            .collect();
        for script in config
            .vrrp_scripts
            .iter()
            .filter(|s| used.contains(s.name.as_str()))
        {
            tokio::spawn(track::watch_script(
                script.clone(),
                options.scripts.clone(),
                tracking_tx.clone(),
            ));
        }
        // track_file and vrrp_track_process: watched only if an instance names them.
        let named = |names: fn(&VrrpInstance) -> &[lb_config::TrackObject]| {
            config
                .vrrp_instances
                .iter()
                .flat_map(|vi| names(vi).iter().map(|t| t.name.clone()))
                .collect::<std::collections::BTreeSet<String>>()
        };
        let files = named(|vi| &vi.track_file);
        let files: Vec<_> = config
            .track_files
            .iter()
            .filter(|f| files.contains(&f.name))
            .cloned()
            .collect();
        if !files.is_empty() {
            tokio::spawn(track::watch_track_files(files, tracking_tx.clone()));
        }
        let processes = named(|vi| &vi.track_process);
        let processes: Vec<_> = config
            .vrrp_track_processes
            .iter()
            .filter(|p| processes.contains(&p.name))
            .cloned()
            .collect();
        if !processes.is_empty() {
            tokio::spawn(track::watch_track_processes(processes, tracking_tx.clone()));
        }
        Ok(Self {
            groups,
            routes,
            sockets,
            frames,
            received,
            tracking,
            tracked: Tracked::default(),
            netlink,
            claims: options.claims,
            clock: options.clock,
            scripts: options.scripts,
            config,
            epoch: Instant::now(),
            drops: BTreeMap::new(),
            drops_logged: None,
            report: options.report,
            report_due: true,
            previous_states: options.previous_states,
        })
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(&mut self, mut stop: oneshot::Receiver<Stop>) {
        self.start().await;
        let mut stopping = false;
        loop {
            let deadline = self.next_deadline();
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
                self.epoch + deadline.unwrap_or(Duration::from_secs(3600)),
            ));
            tokio::select! {
                Some(r) = self.received.recv() => self.on_received(r).await,
                Some(event) = self.tracking.recv() => {
                    self.tracked.apply(event);
                    self.report_due = true;
                    self.apply_tracking().await;
                }
                _ = sleep => self.on_timer().await,
                how = &mut stop, if !stopping => {
                    stopping = true;
                    match how {
                        Ok(Stop::Detach) => {
                            self.advertise_masters();
                            info!("VRRP detached: claims and addresses left to its successor");
                            return;
                        }
                        Ok(Stop::HandOver) | Err(_) => self.begin_shutdown().await,
                    }
                }
            }
            self.send_report();
            if stopping && self.handovers_pending() == 0 {
                break;
            }
        }
        self.send_report();
        info!("VRRP stopped");
    }

    /// Resumes as master where the data plane still holds a live claim (a restart within the
    /// lease: no gap); otherwise starts as backup, first removing addresses a crashed
    /// predecessor may have left.
    async fn start(&mut self) {
        let now = self.now();
        let jiffies = self.clock.now();
        for gi in 0..self.groups.len() {
            let live = self.groups[gi].members.iter().all(|m| {
                self.claims
                    .get(m.claim)
                    .is_ok_and(|c| c.active != 0 && !c.lapsed(jiffies))
            });
            let actions = if live {
                info!(
                    "{}: the data plane's claim is live: resuming as MASTER",
                    self.group_label(gi)
                );
                self.groups[gi].sync.resume_master(now)
            } else {
                for mi in 0..self.groups[gi].members.len() {
                    self.withdraw(gi, mi).await;
                }
                self.groups[gi].sync.start(now)
            };
            self.act(gi, actions).await;
        }
    }

    fn group_label(&self, gi: usize) -> String {
        let g = &self.groups[gi];
        match &g.name {
            Some(name) => format!("VRRP_Group({name})"),
            None => format!("({})", g.members[0].config.name),
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.sync
                    .next_deadline()
                    .into_iter()
                    .chain(g.members.iter().filter_map(|m| m.handing_over))
            })
            .min()
    }

    fn handovers_pending(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| &g.members)
            .filter(|m| m.handing_over.is_some())
            .count()
    }

    async fn on_timer(&mut self) {
        let now = self.now();
        for gi in 0..self.groups.len() {
            for mi in 0..self.groups[gi].members.len() {
                if self.groups[gi].members[mi]
                    .handing_over
                    .is_some_and(|until| until <= now)
                {
                    info!("({}) withdrawing", self.groups[gi].members[mi].config.name);
                    self.finish_handover(gi, mi).await;
                }
            }
            let actions = self.groups[gi].sync.on_timer(now);
            self.act(gi, actions).await;
        }
    }

    async fn on_received(&mut self, r: Received) {
        let now = r.at.saturating_duration_since(self.epoch);
        let (meta, payload) = match r.packet {
            Ok(p) => p,
            Err(reason) => return self.dropped(reason, None),
        };
        let Some(vrid) = payload.get(1).copied() else {
            return self.dropped(DropReason::BadLength, Some(&meta));
        };
        let Some(&(gi, mi)) = self.routes.get(&(r.socket.0.clone(), r.socket.1, vrid)) else {
            return self.dropped(DropReason::WrongVrid, Some(&meta));
        };
        if self.groups[gi].members[mi].handing_over.is_some() {
            // Stopping: only listening for the master that takes over.
            let taken_over = lb_vrrp::decode(&payload, &meta).is_ok_and(|advert| {
                advert.priority > 0 && meta.src != self.groups[gi].members[mi].primary
            });
            let member = &mut self.groups[gi].members[mi];
            let linger = now + HANDOVER_LINGER;
            if taken_over && member.handing_over.is_some_and(|until| until > linger) {
                info!(
                    "({}) new MASTER {} heard: withdrawing in {HANDOVER_LINGER:?}",
                    member.config.name, meta.src
                );
                member.handing_over = Some(linger);
            }
            return;
        }
        let priority = payload.get(2).copied();
        match self.groups[gi].sync.on_packet(now, mi, &payload, &meta) {
            Ok(actions) => {
                let counters = &mut self.groups[gi].members[mi].counters;
                counters.adverts_received += 1;
                if priority == Some(0) {
                    counters.priority_zero_received += 1;
                }
                self.report_due = true;
                self.act(gi, actions).await
            }
            Err(reason) => {
                *self.groups[gi].members[mi]
                    .counters
                    .dropped
                    .entry(reason.name())
                    .or_default() += 1;
                self.dropped(reason, Some(&meta))
            }
        }
    }

    fn dropped(&mut self, reason: DropReason, meta: Option<&RxMeta>) {
        let count = {
            let count = self.drops.entry(reason).or_default();
            *count += 1;
            *count
        };
        let first = count == 1;
        let due = self
            .drops_logged
            .is_none_or(|at| at.elapsed() >= DROP_LOG_INTERVAL);
        if first || due {
            let from = meta.map(|m| format!(" from {}", m.src)).unwrap_or_default();
            warn!(
                "VRRP packet dropped{from}: {reason} ({} so far; dropped by reason: {})",
                count,
                self.drops
                    .iter()
                    .map(|(r, n)| format!("{}={n}", r.name()))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            self.drops_logged = Some(Instant::now());
        }
    }

    async fn apply_tracking(&mut self) {
        let now = self.now();
        for gi in 0..self.groups.len() {
            for mi in 0..self.groups[gi].members.len() {
                let (fault, delta) = self.tracked.fault_and_delta(
                    &self.groups[gi].members[mi].config,
                    &self.config.vrrp_scripts,
                );
                let member = &mut self.groups[gi].members[mi];
                let mut actions = Vec::new();
                if fault != member.fault {
                    member.fault = fault;
                    actions.extend(self.groups[gi].sync.set_fault(now, mi, fault));
                }
                let member = &mut self.groups[gi].members[mi];
                if delta != member.delta {
                    member.delta = delta;
                    actions.extend(self.groups[gi].sync.set_priority_delta(now, mi, delta));
                }
                self.act(gi, actions).await;
            }
        }
    }

    async fn act(&mut self, gi: usize, actions: Vec<GroupAction>) {
        for GroupAction { member: mi, action } in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(gi, mi, priority),
                Action::AddAddresses => self.install(gi, mi).await,
                Action::RemoveAddresses => self.withdraw(gi, mi).await,
                Action::AnnounceAddresses { repeat } => self.announce(gi, mi, repeat),
                Action::StateChanged { from, to, reason } => {
                    self.state_changed(gi, mi, from, to, reason)
                }
                Action::PriorityChanged { from, to } => info!(
                    "({}) Changing effective priority from {from} to {to}",
                    self.groups[gi].members[mi].config.name
                ),
            }
        }
    }

    /// One advert from every instance that is MASTER, off its timer: on detaching, so that
    /// the backups' Master_Down_Interval counts from here, not from the last timed advert,
    /// while the successor starts (after the reload is applied). It renews the claims too.
    fn advertise_masters(&mut self) {
        for gi in 0..self.groups.len() {
            for mi in 0..self.groups[gi].members.len() {
                let instance = &self.groups[gi].sync.members()[mi];
                if instance.state() == State::Master {
                    let priority = instance.effective_priority();
                    self.send_advert(gi, mi, priority);
                }
            }
        }
    }

    fn send_advert(&mut self, gi: usize, mi: usize, priority: u8) {
        let instance = &self.groups[gi].sync.members()[mi];
        let member = &self.groups[gi].members[mi];
        if priority > 0 && instance.state() == State::Master {
            let claim = self.lease(instance, Duration::ZERO);
            if let Err(e) = self.claims.set(member.claim, claim) {
                error!("({}) renewing the claim: {e:#}", member.config.name);
            }
        }
        let adverts = match instance.encode_adverts(priority) {
            Ok(a) => a,
            Err(e) => {
                error!("({}) encoding an advert: {e}", member.config.name);
                return;
            }
        };
        let Some(socket) = self.sockets.get(&member.socket) else {
            return;
        };
        let mut sent = 0;
        for advert in adverts {
            match socket.send(member.primary, advert.dst, &advert.payload) {
                Ok(()) => sent += 1,
                Err(e) => warn!(
                    "({}) sending an advert to {}: {e}",
                    member.config.name, advert.dst
                ),
            }
        }
        let counters = &mut self.groups[gi].members[mi].counters;
        counters.adverts_sent += sent;
        if priority == 0 {
            counters.priority_zero_sent += sent;
        }
        self.report_due = true;
    }

    /// A master's claim from now on (plus `extra`): it answers for the VIPs until a backup may
    /// take over (Master_Down_Interval with its own priority) and forwards until the slowest
    /// backup must have (priority 1): after a crash, clients still sending here are served
    /// until the new master's gratuitous ARPs reach them.
    fn lease(&self, instance: &Instance, extra: Duration) -> Claim {
        let cfg = instance.config();
        let interval = instance.master_advert_interval();
        let slowest_skew = match cfg.version {
            lb_vrrp::Version::V2 => Duration::from_secs(1) * 255 / 256,
            lb_vrrp::Version::V3 => interval * 255 / 256,
        };
        let ticks = |d: Duration| self.clock.clock.ticks(d + extra) + 1;
        let now = self.clock.now();
        Claim {
            active: 1,
            _pad: 0,
            until: now + ticks(instance.master_down_interval()),
            forward_until: now + ticks(3 * interval + slowest_skew),
        }
    }

    /// Addresses first, then virtual_routes (whose `src` may be a VIP) and virtual_rules.
    async fn install(&mut self, gi: usize, mi: usize) {
        let member = &self.groups[gi].members[mi];
        for (vip, ifindex) in &member.addresses {
            if let Err(e) = self
                .netlink
                .add_address(*ifindex, vip.address, vip.prefix_len, vip.label.as_deref())
                .await
            {
                error!("({}) {e:#}", member.config.name);
            }
        }
        let vi = &member.config;
        crate::routing::add_all(
            &self.netlink,
            &format!("({})", vi.name),
            &vi.virtual_routes,
            &vi.virtual_rules,
        )
        .await;
    }

    /// Stops claiming in the data plane first, then removes rules, routes and addresses.
    async fn withdraw(&mut self, gi: usize, mi: usize) {
        let member = &self.groups[gi].members[mi];
        if member.handing_over.is_some() {
            return;
        }
        if let Err(e) = self.claims.set(member.claim, Claim::default()) {
            error!("({}) dropping the claim: {e:#}", member.config.name);
        }
        let vi = &member.config;
        crate::routing::remove_all(
            &self.netlink,
            &format!("({})", vi.name),
            &vi.virtual_routes,
            &vi.virtual_rules,
        )
        .await;
        for (vip, ifindex) in &member.addresses {
            if let Err(e) = self
                .netlink
                .remove_address(*ifindex, vip.address, vip.prefix_len)
                .await
            {
                error!("({}) {e:#}", member.config.name);
            }
        }
    }

    fn announce(&mut self, gi: usize, mi: usize, repeat: u32) {
        let member = &self.groups[gi].members[mi];
        for _ in 0..repeat {
            for (vip, ifindex) in &member.addresses {
                let Some((socket, mac)) = self.frames.get(ifindex) else {
                    continue;
                };
                let sent = match vip.address {
                    IpAddr::V4(ip) => socket.send(&lb_vrrp::packet::gratuitous_arp(*mac, ip)),
                    IpAddr::V6(ip) => socket.send(&lb_vrrp::packet::unsolicited_neighbour_advert(
                        *mac, ip, false,
                    )),
                };
                if let Err(e) = sent {
                    warn!("({}) announcing {}: {e}", member.config.name, vip.address);
                }
            }
        }
    }

    fn state_changed(
        &mut self,
        gi: usize,
        mi: usize,
        from: State,
        to: State,
        reason: lb_vrrp::TransitionReason,
    ) {
        let priority = self.groups[gi].sync.members()[mi].effective_priority();
        let member = &mut self.groups[gi].members[mi];
        let name = member.config.name.clone();
        let counters = &mut member.counters;
        counters.transitions += 1;
        if to == State::Master {
            counters.become_master += 1;
            counters.master_since = Some(std::time::SystemTime::now());
        } else if from == State::Master {
            counters.release_master += 1;
            counters.master_since = None;
        }
        self.report_due = true;
        info!(
            "({name}) Entering {} STATE: {} (was {})",
            state_name(to),
            reason_words(reason),
            state_name(from)
        );
        // A reload's successor resuming the state its predecessor had: no transition for the
        // scripts (keepalived runs notify scripts on transitions only).
        if self.previous_states.remove(&name).as_deref() == Some(state_name(to)) {
            info!("({name}) still {} across the reload", state_name(to));
            return;
        }
        let member = &self.groups[gi].members[mi];
        let vi = &member.config;
        let (specific, word) = match to {
            State::Master => (&vi.notify_master, "MASTER"),
            State::Backup => (&vi.notify_backup, "BACKUP"),
            State::Fault => (&vi.notify_fault, "FAULT"),
            State::Init => (&vi.notify_stop, "STOP"),
        };
        self.notify(specific.clone(), Vec::new());
        self.notify(
            vi.notify.clone(),
            vec![
                "INSTANCE".into(),
                name.clone(),
                word.into(),
                priority.to_string(),
            ],
        );
        // The group's scripts, once per group transition (when its first member moves).
        if let Some(group_name) = self.groups[gi].name.clone()
            && mi == 0
            && let Some(g) = self
                .config
                .vrrp_sync_groups
                .iter()
                .find(|g| g.name == group_name)
        {
            let specific = match to {
                State::Master => &g.notify_master,
                State::Backup => &g.notify_backup,
                State::Fault => &g.notify_fault,
                State::Init => &g.notify_stop,
            };
            self.notify(specific.clone(), Vec::new());
            self.notify(
                g.notify.clone(),
                vec!["GROUP".into(), group_name, word.into(), "0".into()],
            );
        }
    }

    fn notify(&self, script: Option<NotifyScript>, args: Vec<String>) {
        let Some(script) = script else {
            return;
        };
        let runner = self.scripts.clone();
        tokio::spawn(async move {
            let outcome = runner
                .run(
                    &script.command,
                    script.user.as_ref(),
                    lb_health::monitor::NOTIFY_TIMEOUT,
                    &args,
                )
                .await;
            if !matches!(outcome, lb_health::ScriptOutcome::Exited(0)) {
                warn!("notify script {} ended {outcome:?}", script.command);
            }
        });
    }

    async fn begin_shutdown(&mut self) {
        let now = self.now();
        for gi in 0..self.groups.len() {
            let was_master = self.groups[gi].sync.state() == State::Master;
            let actions = self.groups[gi].sync.shutdown(now);
            if !was_master {
                self.act(gi, actions).await;
                continue;
            }
            // Keep forwarding (claim and addresses stay) until the new master is heard.
            for mi in 0..self.groups[gi].members.len() {
                let instance = &self.groups[gi].sync.members()[mi];
                let mdi = instance.master_down_interval();
                let claim = self.lease(instance, mdi);
                let member = &mut self.groups[gi].members[mi];
                member.handing_over = Some(now + mdi);
                if let Err(e) = self.claims.set(member.claim, claim) {
                    error!("({}) extending the claim: {e:#}", member.config.name);
                }
            }
            let kept: Vec<GroupAction> = actions
                .into_iter()
                .filter(|a| a.action != Action::RemoveAddresses)
                .collect();
            self.act(gi, kept).await;
        }
    }

    async fn finish_handover(&mut self, gi: usize, mi: usize) {
        self.groups[gi].members[mi].handing_over = None;
        self.withdraw(gi, mi).await;
    }

    /// Sends the report if anything in it changed. Never waits: a watch channel keeps only the
    /// latest value.
    fn send_report(&mut self) {
        if !self.report_due {
            return;
        }
        self.report_due = false;
        let mut report = VrrpReport {
            instances: Vec::new(),
            // Every reason, counted or not: a counter that exists from the start.
            dropped: DropReason::ALL
                .iter()
                .map(|r| {
                    (
                        r.name().to_string(),
                        self.drops.get(r).copied().unwrap_or(0),
                    )
                })
                .collect(),
            // Every tracked script, good until it fails (keepalived without init_fail).
            scripts: self
                .groups
                .iter()
                .flat_map(|g| &g.members)
                .flat_map(|m| &m.config.track_script)
                .map(|t| {
                    let ok = self.tracked.scripts.get(&t.name).copied().unwrap_or(true);
                    (t.name.clone(), ok)
                })
                .collect(),
        };
        for g in &self.groups {
            for (m, instance) in g.members.iter().zip(g.sync.members()) {
                let c = &m.counters;
                report.instances.push(crate::status::VrrpStatus {
                    name: m.config.name.clone(),
                    interface: m.config.interface.clone(),
                    vrid: m.config.virtual_router_id,
                    version: m.config.version,
                    state: state_name(instance.state()).to_string(),
                    priority: instance.base_priority(),
                    effective_priority: instance.effective_priority(),
                    master_since: c.master_since.map(crate::status::unix_seconds),
                    master_address: instance.master_address(),
                    transitions: c.transitions,
                    become_master: c.become_master,
                    release_master: c.release_master,
                    adverts_sent: c.adverts_sent,
                    adverts_received: c.adverts_received,
                    priority_zero_sent: c.priority_zero_sent,
                    priority_zero_received: c.priority_zero_received,
                    dropped: c.dropped.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
                    vips: m
                        .addresses
                        .iter()
                        .map(|(vip, _)| format!("{}/{}", vip.address, vip.prefix_len))
                        .collect(),
                    claim: m.claim,
                });
            }
        }
        self.report.send_replace(report);
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Init => "INIT",
        State::Backup => "BACKUP",
        State::Master => "MASTER",
        State::Fault => "FAULT",
    }
}

/// Reads every packet a socket receives and hands it to the VRRP loop, stamped on arrival.
async fn read_socket(
    key: (String, bool),
    socket: Arc<VrrpSocket>,
    out: mpsc::UnboundedSender<Received>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        if let Err(e) = socket.readable().await {
            error!("VRRP socket on {}: {e}", key.0);
            return;
        }
        loop {
            let packet = match socket.try_recv(&mut buf) {
                Ok(None) => break,
                Ok(Some(p)) => p.map(|(meta, payload)| (meta, payload.to_vec())),
                Err(e) => {
                    warn!("VRRP socket on {}: {e}", key.0);
                    break;
                }
            };
            let received = Received {
                socket: key.clone(),
                at: Instant::now(),
                packet,
            };
            if out.send(received).is_err() {
                return;
            }
        }
    }
}
