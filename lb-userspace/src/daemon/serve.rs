//! The daemon's main loop: the only place its state changes. Health verdicts, VRRP reports,
//! signals, control-socket requests and reloads arrive here as typed events.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use lb_config::Config;
use lb_health::{HealthEvent, HealthSupervisor};
use log::{error, info, warn};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot, watch},
};

use super::{
    Daemon, DaemonOptions, EVENT_SETTLE, EVENT_SETTLE_ROUNDS, Resolve, VrrpState, changes,
    describe_changes,
    paths::{BackendPaths, backend_ips},
    reload::PendingReload,
    status::{self, Rates},
};
use crate::{
    announce::{self, Announcer, ServiceState, Withheld},
    control::{Incoming, Request, Response},
    dataplane::Dataplane,
    netlink::Netlink,
    reconcile::{FlowTimeouts, Reconciler},
    service::desired,
    vrrp,
};

/// Signals that would end the process by default and mean nothing to xlb: logged and ignored,
/// so that a stray one never leaves the interface attached with nobody renewing its claims.
const IGNORED_SIGNALS: [(libc::c_int, &str); 7] = [
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
];

/// Lines a change of the forwarding state logs at most (a reload of thousands of services says
/// how many more).
const MAX_CHANGE_LINES: usize = 100;

/// What a signal asks of the daemon.
enum Signalled {
    Reload,
    Stop(&'static str),
    DumpStatus,
    DumpStats,
}

impl<'a> Daemon<'a> {
    /// Attaches the data plane and adopts what a previous xlb left pinned; VRRP starts at the
    /// first turn of the loop, once the tables are warm.
    pub(super) async fn start(
        opts: &'a DaemonOptions,
        dp: &'a mut Dataplane,
        health: &'a mut HealthSupervisor,
        config: Config,
    ) -> Result<Self> {
        let netlink = Netlink::connect()?;
        let iface = netlink.interface(opts.paths.interface.as_str()).await?;
        dp.attach(opts.paths.interface.as_str(), opts.mode)?;
        info!(
            "XDP attached to {} (ifindex {}), {} virtual server(s)",
            iface.name,
            iface.index,
            config.virtual_servers.len()
        );
        // Replies and redirects may leave by any interface served: each is in the devmap.
        dp.add_tx_port(iface.index)?;
        let mut served = vec![iface.index];
        for also in &opts.also {
            let other = netlink.interface(also.as_str()).await?;
            dp.attach_also(also.as_str(), opts.mode, other.index)?;
            dp.add_tx_port(other.index)?;
            served.push(other.index);
            info!(
                "XDP attached to {} (ifindex {}) too",
                other.name, other.index
            );
        }
        let clock = dp.clock();
        let timeouts = FlowTimeouts {
            tcp_idle: clock.ticks(opts.tcp_idle),
            udp_idle: clock.ticks(opts.udp_idle),
            syn_window: clock.ticks(crate::reconcile::SYN_WINDOW),
            ticks_per_second: clock.ticks(std::time::Duration::from_secs(1)),
        };
        // A real server taken out of the config keeps the connections it has for as long as
        // an idle one would be remembered.
        let mut reconciler = Reconciler::new(opts.hash_seed, dp.maglev_size(), timeouts)
            .with_drain(opts.tcp_idle.max(opts.udp_idle));
        let pinned = dp.pinned_state()?;
        let live = pinned.control.live_vip_half() as usize * lb_common::VIP_SLOTS as usize;
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
        crate::routing::add_static(&netlink, &config).await;
        health.apply(&config);
        let claims_of = vrrp::assign_claims(&config, &BTreeMap::new());
        let claims = vrrp::claims_by_address(&config, &claims_of);
        let (report_tx, report) = watch::channel(vrrp::VrrpReport::default());
        let observer = Arc::new(Mutex::new(dp.observer()?));
        let rates = Arc::new(Mutex::new(Rates::default()));
        Ok(Self {
            opts,
            netlink,
            iface,
            reconciler,
            paths: BackendPaths::serving(served),
            vrrp: VrrpState {
                config: config.clone(),
                claims_of,
                claims,
                handle: None,
                fallback: None,
                report_tx,
                report,
                previous_states: BTreeMap::new(),
            },
            observer,
            rates,
            started: SystemTime::now(),
            forwarding: changes::Forwarding::new(),
            tx_errors: opts
                .interfaces()
                .map(super::tx_errors::TxErrorWatch::new)
                .collect(),
            dirty: true,
            resolve: Resolve::All,
            reload: None,
            reloaded: None,
            announcer: None,
            config,
            dp,
            health,
        })
    }

    /// Serves until a stop is asked (a signal or `xlb stop`), then hands VRRP over.
    pub(super) async fn serve(
        mut self,
        mut events: mpsc::Receiver<HealthEvent>,
        mut requests: mpsc::Receiver<Incoming>,
    ) -> Result<()> {
        let mut signals = Signals::install()?;
        let mut ticker = tokio::time::interval(super::RESOLVE_INTERVAL);
        let sampler = status::spawn_sampler(self.observer.clone(), self.rates.clone());
        let mut stopped_by: Option<oneshot::Sender<Response>> = None;
        // systemd (crate::notify): READY=1 once the first apply is done and VRRP has started.
        let mut notified_ready = false;
        loop {
            self.catch_up().await;
            if let Some((old, waiters)) = self.reloaded.take() {
                self.finish_reload(old, waiters);
                // A changed VRRP configuration left VRRP detached, and a MASTER sends no
                // adverts until its successor runs: that starts now, with the data plane and
                // the health checks following the new config, not after another pass over
                // the data plane (which resolves every backend again).
                if self.vrrp_to_start() {
                    self.start_vrrp()?;
                }
                continue;
            }
            if self.vrrp_to_start() {
                self.start_vrrp()?;
                continue;
            }
            if !notified_ready {
                notified_ready = true;
                crate::notify::ready();
                crate::notify::status(&format!(
                    "serving {} virtual server(s) on {}",
                    self.config.virtual_servers.len(),
                    self.iface.name
                ));
            }
            tokio::select! {
                _ = ticker.tick() => {
                    for watch in &mut self.tx_errors {
                        watch.check();
                    }
                    self.resolve = Resolve::All;
                    self.dirty |= self.reconciler.drain_due(Instant::now());
                    if let Some(announcer) = &mut self.announcer {
                        self.dirty |= announcer.wants_another_look();
                        self.dirty |= announcer.verify().await;
                    }
                }
                Some(_) = events.recv() => {
                    // One recomputation for a burst of state changes (thousands at start-up):
                    // wait for the burst to end, within a bound.
                    self.dirty = true;
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
                signalled = signals.next() => match signalled {
                    Signalled::Reload => self.ask_reload(None),
                    Signalled::Stop(name) => {
                        info!("{name}: stopping");
                        crate::notify::stopping();
                        break;
                    }
                    Signalled::DumpStatus => self.dump(|s| {
                        crate::status::render_status(s, crate::status::Columns::Connections)
                    }),
                    Signalled::DumpStats => self.dump(crate::status::render_stats),
                },
                Some(incoming) = requests.recv() => match incoming.request {
                    Request::Reload => self.ask_reload(Some(incoming.reply)),
                    Request::Status => self.answer_status(incoming.reply),
                    Request::Stop => {
                        info!("stop asked on the control socket: stopping");
                        crate::notify::stopping();
                        stopped_by = Some(incoming.reply);
                        break;
                    }
                },
                read = async {
                    (&mut self.reload.as_mut().expect("guarded").task).await
                }, if self.reload.is_some() => {
                    let read = read.unwrap_or_else(|e| Err(vec![format!("reading the config: {e}")]));
                    self.reload_read(read).await;
                }
            }
        }
        sampler.abort();
        // Answered first: `xlb stop` then waits for the pidfile to go, through the drain.
        if let Some(reply) = stopped_by {
            let _ = reply.send(Response::Stopping {
                pid: std::process::id(),
            });
        }
        self.withdraw_before_stopping().await;
        if let Some(handle) = self.vrrp.handle.take() {
            info!("stopping VRRP: handing over to a backup first");
            handle.shutdown().await;
        }
        // keepalived clears its static addresses, routes and rules when it stops.
        crate::routing::remove_static(&self.netlink, &self.config).await;
        Ok(())
    }

    /// Looks backends up and applies the desired state, as far as the inputs changed.
    async fn catch_up(&mut self) {
        if self.resolve != Resolve::Nothing {
            let only_new = self.resolve == Resolve::New;
            self.dirty |= self
                .paths
                .refresh(
                    &self.netlink,
                    &self.iface,
                    &backend_ips(&self.config),
                    only_new,
                )
                .await;
            self.resolve = Resolve::Nothing;
        }
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let started = Instant::now();
        let (services, quorum): (Vec<_>, Vec<_>) =
            crate::health::services_and_quorum(&self.config, self.health)
                .into_iter()
                .unzip();
        let want = desired(&services, self.paths.map(), true).with_claims(&self.vrrp.claims);
        let computed = started.elapsed();
        let applied = self.reconciler.apply(self.dp, &want);
        let update = applied.as_ref().map(|_| ()).map_err(|e| format!("{e:#}"));
        self.announce(
            &services,
            &quorum,
            update.as_ref().map(|_| ()).map_err(String::as_str),
        )
        .await;
        let changes = match applied {
            Ok(changes) => changes,
            Err(e) => {
                error!("updating the data plane: {e:#}");
                return;
            }
        };
        let forwarding = changes::forwarding(&services, |ip| self.paths.is_resolved(ip));
        if self.forwarding.is_empty() {
            info!(
                "data plane updated: forwarding {} virtual service(s)",
                forwarding.len()
            );
        } else {
            let lines = changes::describe_forwarding(&self.forwarding, &forwarding);
            match lines.len() {
                0 if changes.is_empty() => {}
                0 => info!("data plane updated: {changes}"),
                1..=3 => info!("data plane updated: {}", lines.join("; ")),
                n => {
                    info!("data plane updated: {n} changes");
                    for line in lines.iter().take(MAX_CHANGE_LINES) {
                        info!("  {line}");
                    }
                    if n > MAX_CHANGE_LINES {
                        info!("  ... and {} more", n - MAX_CHANGE_LINES);
                    }
                }
            }
        }
        self.forwarding = forwarding;
        log::debug!(
            "desired state computed in {computed:?}, applied in {:?}",
            started.elapsed() - computed
        );
    }

    /// Announces or withdraws each `xlb_announce` VIP after an update of the data plane.
    async fn announce(
        &mut self,
        services: &[crate::service::Service],
        quorum: &[bool],
        update: Result<(), &str>,
    ) {
        let g = &self.config.global_defs;
        if g.xlb_announce.is_empty() && self.announcer.is_none() {
            return;
        }
        if self.announcer.is_none() {
            match Announcer::start(self.netlink.clone(), g.xlb_announce_table).await {
                Ok(announcer) => self.announcer = Some(announcer),
                Err(e) => {
                    error!("announcing VIPs: {e:#}; nothing is announced");
                    return;
                }
            }
        }
        let announced: Vec<std::net::IpAddr> = g.xlb_announce.iter().map(|v| v.address).collect();
        let states: Vec<ServiceState> = services
            .iter()
            .zip(quorum)
            .zip(&self.config.virtual_servers)
            .map(|((service, quorum_up), vs)| ServiceState {
                service,
                quorum_up: *quorum_up,
                loaded: self.reconciler.serves(&service.key()),
                forwards: self.reconciler.forwards(&service.key()),
                // Asked only for announced VIPs: a config may have thousands of others.
                checked: !announced.contains(&vs.address) || {
                    let key = lb_health::VsKey::of(vs);
                    vs.real_servers
                        .iter()
                        .filter(|rs| !rs.checkers.is_empty())
                        .all(|rs| {
                            self.health
                                .real_server_report(&key, &(rs.address, rs.port))
                                .is_some_and(|r| r.last_check.is_some())
                        })
                },
            })
            .collect();
        // Announced VIPs are forwarded under the static claim (no VRRP instance holds them).
        let now = self.dp.now().unwrap_or_default();
        let claim_alive = self
            .dp
            .claim(lb_common::CLAIM_STATIC)
            .is_ok_and(|c| c.active != 0 && !c.forwarding_lapsed(now));
        let verdicts = announce::verdicts(&self.config, &states, update, claim_alive);
        let table = g.xlb_announce_table;
        if let Some(announcer) = &mut self.announcer {
            announcer.apply(table, verdicts).await;
        }
    }

    /// A clean stop, first step: withdraw every announced VIP and wait for the routers to
    /// move their traffic to the other directors, which still reaches this one meanwhile (the
    /// data plane is detached last).
    async fn withdraw_before_stopping(&mut self) {
        let Some(announcer) = &mut self.announcer else {
            return;
        };
        if !announcer.any_announced() {
            return;
        }
        announcer.withdraw_all(Withheld::Stopping).await;
        let drain = self.config.global_defs.xlb_announce_drain.as_duration();
        info!("waiting {drain:?} (xlb_announce_drain) for routers to move traffic elsewhere");
        tokio::time::sleep(drain).await;
    }

    /// Whether the config has VRRP instances and no VRRP thread runs them (at start, or after
    /// a reload detached it).
    fn vrrp_to_start(&self) -> bool {
        self.vrrp.handle.is_none() && !self.vrrp.config.vrrp_instances.is_empty()
    }

    fn start_vrrp(&mut self) -> Result<()> {
        let started = vrrp::spawn(vrrp::VrrpOptions {
            config: self.vrrp.config.clone(),
            claims_of: self.vrrp.claims_of.clone(),
            claims: self.dp.claims_handle()?,
            clock: self.dp.jiffies_clock()?,
            scripts: self.health.scripts(),
            report: self.vrrp.report_tx.clone(),
            previous_states: std::mem::take(&mut self.vrrp.previous_states),
        });
        match (started, self.vrrp.fallback.take()) {
            (Ok(handle), _) => self.vrrp.handle = Some(handle),
            (Err(e), Some((old, old_claims))) => {
                error!(
                    "the reloaded VRRP configuration does not start, keeping the running one: {e:#}"
                );
                self.vrrp.config = old;
                self.vrrp.claims_of = old_claims;
                self.vrrp.claims = vrrp::claims_by_address(&self.vrrp.config, &self.vrrp.claims_of);
                self.dirty = true;
            }
            (Err(e), None) => return Err(e),
        }
        Ok(())
    }

    /// Starts reading the config, or adds a waiter to the read under way.
    fn ask_reload(&mut self, reply: Option<oneshot::Sender<Response>>) {
        let from = if reply.is_some() {
            "the control socket"
        } else {
            "SIGHUP"
        };
        match &mut self.reload {
            Some(pending) => {
                info!("{from}: a reload is already being read");
                pending.waiters.extend(reply);
            }
            None => {
                info!("{from}: reloading {}", self.opts.config.display());
                crate::notify::reloading();
                let mut pending = PendingReload::start(
                    &self.opts.config,
                    self.opts.interfaces().map(str::to_string).collect(),
                    self.dp.maglev_size(),
                );
                pending.waiters.extend(reply);
                self.reload = Some(pending);
            }
        }
    }

    /// The reload's config was read: refused, or handed to the data plane first.
    async fn reload_read(&mut self, read: Result<Config, Vec<String>>) {
        let waiters = self.reload.take().map(|p| p.waiters).unwrap_or_default();
        let new = match read {
            Ok(new) => new,
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
                let response = Response::Refused { errors };
                for waiter in waiters {
                    let _ = waiter.send(response.clone());
                }
                return;
            }
        };
        if vrrp_parts(&new) != vrrp_parts(&self.vrrp.config) {
            // The running thread steps aside leaving claims and addresses in place; its
            // successor resumes every instance whose claim is live, with the new settings.
            // Instances gone from the config withdraw.
            info!("VRRP configuration changed: restarting VRRP in place");
            self.vrrp.previous_states = self
                .vrrp
                .report
                .borrow()
                .instances
                .iter()
                .map(|i| (i.name.clone(), i.state.clone()))
                .collect();
            if let Some(handle) = self.vrrp.handle.take() {
                handle.detach().await;
            }
            let new_claims = vrrp::assign_claims(&new, &self.vrrp.claims_of);
            for vi in &self.vrrp.config.vrrp_instances {
                if !new_claims.contains_key(&vi.name) {
                    withdraw_instance(self.dp, &self.netlink, vi, self.vrrp.claims_of[&vi.name])
                        .await;
                } else if let Some(kept) = new.vrrp_instance(&vi.name) {
                    // The successor adds the new routes and rules if MASTER; those gone from
                    // the config are removed here, whatever the state.
                    let routes: Vec<_> = vi
                        .virtual_routes
                        .iter()
                        .filter(|r| !kept.virtual_routes.contains(r))
                        .cloned()
                        .collect();
                    let rules: Vec<_> = vi
                        .virtual_rules
                        .iter()
                        .filter(|r| !kept.virtual_rules.contains(r))
                        .cloned()
                        .collect();
                    crate::routing::remove_all(
                        &self.netlink,
                        &format!("({})", vi.name),
                        &routes,
                        &rules,
                    )
                    .await;
                }
            }
            let old = std::mem::replace(&mut self.vrrp.config, new.clone());
            let old_claims = std::mem::replace(&mut self.vrrp.claims_of, new_claims);
            self.vrrp.fallback = (!new.vrrp_instances.is_empty()).then_some((old, old_claims));
            self.vrrp.claims = vrrp::claims_by_address(&self.vrrp.config, &self.vrrp.claims_of);
        }
        crate::routing::reload_static(&self.netlink, &self.config, &new).await;
        // The data plane first: the next turn of the loop applies the new config (looking up
        // only backends it has not resolved yet), then the health checks follow it and the
        // waiters get their answer.
        self.reloaded = Some((std::mem::replace(&mut self.config, new), waiters));
        self.resolve = Resolve::New;
        self.dirty = true;
    }

    /// The data plane serves the reloaded config; now the health checks follow it (new
    /// monitors, quorum settings), and the answer says what changed.
    fn finish_reload(&mut self, old: Config, waiters: Vec<oneshot::Sender<Response>>) {
        self.health.apply(&self.config);
        let changes = describe_changes(&old, &self.config);
        info!(
            "reloaded {}: {} virtual server(s), {} change(s)",
            self.opts.config.display(),
            self.config.virtual_servers.len(),
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
        self.dirty = true;
        self.resolve = Resolve::All;
    }

    /// Answers a status request: the model is taken here, the counters and the flow table
    /// are read on a blocking thread, so the loop never waits for them.
    fn answer_status(&mut self, reply: oneshot::Sender<Response>) {
        let snapshot = self.snapshot();
        let (observer, rates) = (self.observer.clone(), self.rates.clone());
        tokio::spawn(async move {
            let done =
                tokio::task::spawn_blocking(move || snapshot.complete(&observer, &rates)).await;
            let response = match done {
                Ok(Ok(status)) => Response::Status(Box::new(status)),
                Ok(Err(e)) => Response::Refused {
                    errors: vec![format!("reading the data plane: {e:#}")],
                },
                Err(e) => Response::Refused {
                    errors: vec![format!("reading the data plane: {e}")],
                },
            };
            let _ = reply.send(response);
        });
    }

    /// keepalived's habit: a signal dumps the state to the log.
    fn dump(&mut self, render: fn(&crate::status::Status) -> String) {
        let snapshot = self.snapshot();
        let (observer, rates) = (self.observer.clone(), self.rates.clone());
        tokio::task::spawn_blocking(move || match snapshot.complete(&observer, &rates) {
            Ok(status) => {
                for line in render(&status).lines() {
                    info!("{line}");
                }
            }
            Err(e) => warn!("reading the data plane for the dump: {e:#}"),
        });
    }
}

/// The signals xlb acts on, and those it only logs.
struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        let on = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("installing the {name} handler"))
        };
        for (number, name) in IGNORED_SIGNALS {
            let mut stream = on(SignalKind::from_raw(number), name)?;
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    warn!(
                        "{name} received and ignored: xlb stops on SIGTERM, SIGINT or SIGQUIT, \
                         reloads on SIGHUP, logs its status on SIGUSR1 and counters on SIGUSR2"
                    );
                }
            });
        }
        Ok(Self {
            hangup: on(SignalKind::hangup(), "SIGHUP")?,
            terminate: on(SignalKind::terminate(), "SIGTERM")?,
            interrupt: on(SignalKind::interrupt(), "SIGINT")?,
            quit: on(SignalKind::quit(), "SIGQUIT")?,
            user1: on(SignalKind::user_defined1(), "SIGUSR1")?,
            user2: on(SignalKind::user_defined2(), "SIGUSR2")?,
        })
    }

    async fn next(&mut self) -> Signalled {
        tokio::select! {
            _ = self.hangup.recv() => Signalled::Reload,
            _ = self.terminate.recv() => Signalled::Stop("SIGTERM"),
            _ = self.interrupt.recv() => Signalled::Stop("SIGINT"),
            _ = self.quit.recv() => Signalled::Stop("SIGQUIT"),
            _ = self.user1.recv() => Signalled::DumpStatus,
            _ = self.user2.recv() => Signalled::DumpStats,
        }
    }
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
    crate::routing::remove_all(
        netlink,
        &format!("({})", vi.name),
        &vi.virtual_routes,
        &vi.virtual_rules,
    )
    .await;
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
