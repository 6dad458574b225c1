//! All the monitors of a configuration, and reloads.
//!
//! On [`HealthSupervisor::apply`] of a new configuration, like keepalived's
//! reload (check_daemon.c `reload_check_thread`, ipwrapper.c `clear_diff_*`
//! and `migrate_checkers`):
//! - a real server (same virtual server address, port and protocol, same
//!   address and port) whose checkers are unchanged keeps its monitor and
//!   state; a new weight, inhibit_on_failure or notify script is taken live;
//! - a real server whose checkers changed is checked afresh;
//! - a new real server gets a monitor;
//! - a removed real server's monitor stops; if it was up it is logged as
//!   removed and its notify_down runs, as keepalived does when a reload
//!   takes an alive server out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use lb_config::{Checker, Config, NotifyScript, ScriptUser, TrackFile, VirtualServer};
use log::{info, warn};
use tokio::sync::mpsc;

use crate::check::{CheckContext, TlsClient};
use crate::monitor::{
    HealthCell, HealthCells, HealthEvent, NOTIFY_TIMEOUT, RealServerHealth, RealServerMonitor,
    run_notify, spawn_notify,
};
use crate::quorum::{EffectiveVs, QuorumState, QuorumTransition, effective_backends_of};
use crate::script::ScriptRunner;
use crate::track_file::{self, FileValues};
use crate::{RsKey, VsKey, monitor::MonitorReport, service_trio};

/// How long notify scripts run at shutdown may take (keepalived gives
/// them one second before SIGKILL).
pub const SHUTDOWN_NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

/// Every real server's health, by virtual server.
pub type HealthSnapshot = HashMap<VsKey, HashMap<RsKey, RealServerHealth>>;

struct VsEntry {
    /// Boxed: the map of thousands of entries stays small enough to stay in cache, for the
    /// walk over every virtual server that each recomputation makes.
    config: Box<VirtualServer>,
    quorum: QuorumState,
    /// Each configured real server and its monitor's health, in configuration order (for a
    /// real server configured twice, its first's): read on every recomputation without a
    /// lookup.
    real_servers: Vec<(RsKey, Option<HealthCell>)>,
}

impl VsEntry {
    /// Its real servers' health, in configuration order.
    fn healths(&self) -> Vec<Option<RealServerHealth>> {
        self.real_servers
            .iter()
            .map(|(_, cell)| cell.as_ref().map(HealthCell::load))
            .collect()
    }
}

/// Owns the monitors of the current configuration.
pub struct HealthSupervisor {
    events: mpsc::Sender<HealthEvent>,
    scripts: Arc<ScriptRunner>,
    script_settings: (bool, Option<ScriptUser>),
    tls: TlsClient,
    monitors: HashMap<(VsKey, RsKey), RealServerMonitor, foldhash::fast::RandomState>,
    /// Where the monitors keep their health.
    cells: HealthCells,
    /// The track_files FILE_CHECKs follow, and their values.
    track_files: Vec<TrackFile>,
    files: FileValues,
    /// Whether a configuration was applied already: `init_file` is for start-up only.
    started: bool,
    virtual_servers: HashMap<VsKey, VsEntry, foldhash::fast::RandomState>,
    /// Virtual servers in configuration order.
    order: Vec<VsKey>,
}

impl HealthSupervisor {
    /// Events of every monitor go to `events`.
    pub fn new(events: mpsc::Sender<HealthEvent>) -> Self {
        HealthSupervisor {
            events,
            scripts: Arc::new(ScriptRunner::new(false, None)),
            script_settings: (false, None),
            tls: TlsClient::new(),
            monitors: HashMap::default(),
            cells: HealthCells::default(),
            track_files: Vec::new(),
            files: FileValues::default(),
            started: false,
            virtual_servers: HashMap::default(),
            order: Vec::new(),
        }
    }

    /// The script runner of the current configuration (for VRRP scripts too).
    pub fn scripts(&self) -> Arc<ScriptRunner> {
        self.scripts.clone()
    }

    /// Starts, keeps or stops monitors to match `config`. Must be called
    /// within a tokio runtime.
    pub fn apply(&mut self, config: &Config) {
        let settings = (
            config.global_defs.enable_script_security,
            config.global_defs.script_user.clone(),
        );
        if settings != self.script_settings {
            self.scripts = Arc::new(ScriptRunner::from_global(&config.global_defs));
            self.script_settings = settings;
        }
        self.audit_scripts(config);
        if !self.started {
            track_file::initialise(&config.track_files);
            self.started = true;
        }
        let files_changed = self.follow_files(config);

        let mut old = std::mem::take(&mut self.monitors);
        let mut old_vs = std::mem::take(&mut self.virtual_servers);
        self.order.clear();
        for vs in &config.virtual_servers {
            let vs_key = VsKey::of(vs);
            if self.virtual_servers.contains_key(&vs_key) {
                warn!("Virtual server {vs_key} is configured twice - using the first");
                continue;
            }
            warn_clamped_quorum(vs, &vs_key);
            let mut real_servers = Vec::with_capacity(vs.real_servers.len());
            for rs in &vs.real_servers {
                let key = (vs_key, (rs.address, rs.port));
                if self.monitors.contains_key(&key) {
                    warn!(
                        "Real server {} of VS {vs_key} is configured twice - using the first",
                        service_trio(rs.address, rs.port, vs.protocol)
                    );
                    let first = self.monitors.get(&key).map(RealServerMonitor::health_cell);
                    real_servers.push((key.1, first));
                    continue;
                }
                // A FILE_CHECK whose file is watched anew needs the new watch.
                let keep = |m: &RealServerMonitor| {
                    m.checkers() == rs.checkers.as_slice()
                        && !(files_changed
                            && m.checkers().iter().any(|c| matches!(c, Checker::File(_))))
                };
                let monitor = match old.remove(&key) {
                    Some(mut m) if keep(&m) => {
                        m.update(rs, self.scripts.clone());
                        m
                    }
                    previous => {
                        if let Some(previous) = previous {
                            info!(
                                "Checkers of service {} of VS {vs_key} changed - restarting its health checks",
                                service_trio(rs.address, rs.port, vs.protocol)
                            );
                            // Dropped at the end of this block, which stops its task; a
                            // last write the task may still make to the cell is lost.
                            self.cells.give_back(&previous.health_cell());
                        }
                        RealServerMonitor::spawn_in(
                            vs,
                            rs,
                            self.context(),
                            self.events.clone(),
                            &mut self.cells,
                        )
                    }
                };
                real_servers.push((key.1, Some(monitor.health_cell())));
                self.monitors.insert(key, monitor);
            }
            let quorum = old_vs.remove(&vs_key).map(|e| e.quorum).unwrap_or_default();
            self.virtual_servers.insert(
                vs_key,
                VsEntry {
                    config: Box::new(vs.clone()),
                    quorum,
                    real_servers,
                },
            );
            self.order.push(vs_key);
        }

        for ((vs_key, rs_key), monitor) in old {
            self.cells.give_back(&monitor.health_cell());
            let health = monitor.stop();
            if !health.up {
                continue;
            }
            let protocol = vs_key.protocol;
            info!(
                "Removing service {} from VS {vs_key}",
                service_trio(rs_key.0, rs_key.1, protocol)
            );
            let notify_down = old_vs.get(&vs_key).and_then(|e| {
                e.config
                    .real_servers
                    .iter()
                    .find(|rs| (rs.address, rs.port) == rs_key)
                    .and_then(|rs| rs.notify_down.clone())
            });
            if let Some(script) = notify_down {
                spawn_notify(self.scripts.clone(), script, NOTIFY_TIMEOUT);
            }
        }
    }

    /// Watches the track_files that FILE_CHECKs name; true if they changed.
    fn follow_files(&mut self, config: &Config) -> bool {
        let named: std::collections::BTreeSet<&str> = config
            .virtual_servers
            .iter()
            .flat_map(|vs| &vs.real_servers)
            .flat_map(|rs| &rs.checkers)
            .filter_map(|c| match c {
                Checker::File(f) => Some(f.track_file.as_str()),
                _ => None,
            })
            .collect();
        let needed: Vec<TrackFile> = config
            .track_files
            .iter()
            .filter(|f| named.contains(f.name.as_str()))
            .cloned()
            .collect();
        if needed == self.track_files {
            return false;
        }
        self.files = track_file::watch_files(&needed);
        self.track_files = needed;
        true
    }

    fn context(&self) -> CheckContext {
        CheckContext {
            scripts: self.scripts.clone(),
            tls: self.tls.clone(),
            files: self.files.clone(),
        }
    }

    /// keepalived checks every script when it loads the configuration
    /// (check_data.c `check_check_script_security`); doing the same says at
    /// once which scripts will not run rather than at their first run.
    fn audit_scripts(&self, config: &Config) {
        let report = |command: &str, user: Option<&ScriptUser>| {
            if let Err(e) = self.scripts.prepare(command, user, &[]) {
                warn!("{e}");
            }
        };
        for vs in &config.virtual_servers {
            for script in [&vs.quorum_up, &vs.quorum_down].into_iter().flatten() {
                report(&script.command, script.user.as_ref());
            }
            for rs in &vs.real_servers {
                for script in [&rs.notify_up, &rs.notify_down].into_iter().flatten() {
                    report(&script.command, script.user.as_ref());
                }
                for checker in &rs.checkers {
                    if let Checker::Misc(m) = checker {
                        report(&m.misc_path, m.user.as_ref());
                    }
                }
            }
        }
    }

    /// One real server's checks' recent history (`None`: not monitored).
    pub fn real_server_report(&self, vs: &VsKey, rs: &RsKey) -> Option<MonitorReport> {
        self.monitors.get(&(*vs, *rs)).map(|m| m.report())
    }

    /// One real server's current health (`None`: not monitored).
    pub fn real_server_health(&self, vs: &VsKey, rs: &RsKey) -> Option<RealServerHealth> {
        self.monitors.get(&(*vs, *rs)).map(|m| m.health())
    }

    /// Every real server's current health.
    pub fn snapshot(&self) -> HealthSnapshot {
        let mut snapshot: HealthSnapshot = HashMap::new();
        for ((vs, rs), monitor) in &self.monitors {
            snapshot
                .entry(*vs)
                .or_default()
                .insert(*rs, monitor.health());
        }
        snapshot
    }

    /// The virtual servers of the current configuration, in its order.
    pub fn virtual_servers(&self) -> &[VsKey] {
        &self.order
    }

    /// What `vs` forwards to now ([`crate::quorum`]). On a quorum change this
    /// logs as keepalived does and runs quorum_up or quorum_down. Call it
    /// after every [`HealthEvent`] of `vs` so that no transition is missed.
    pub fn effective_backends(&mut self, vs: &VsKey) -> Option<EffectiveVs> {
        let entry = self.virtual_servers.get_mut(vs)?;
        let healths = entry.healths();
        Some(quorum_step(
            &self.scripts,
            &entry.config,
            &healths,
            &mut entry.quorum,
        ))
    }

    /// [`Self::effective_backends`] of `vs`, and the health of each real server `vs` lists, in
    /// its order (`None`: not monitored). `vs` is the caller's config of the virtual server: a
    /// reload read but not applied here yet may list other real servers, or the same in
    /// another order, and other quorum settings, than the monitors follow; the answer is for
    /// `vs` as given.
    pub fn virtual_server_health(
        &mut self,
        vs: &VirtualServer,
    ) -> Option<(EffectiveVs, Vec<Option<RealServerHealth>>)> {
        let key = VsKey::of(vs);
        let entry = self.virtual_servers.get_mut(&key)?;
        // Thousands of virtual servers at a time: their monitors' cells in order, without a
        // lookup each, unless the lists differ.
        let same_order = entry.real_servers.len() == vs.real_servers.len()
            && entry
                .real_servers
                .iter()
                .zip(&vs.real_servers)
                .all(|((rs_key, _), rs)| *rs_key == (rs.address, rs.port));
        let healths: Vec<Option<RealServerHealth>> = if same_order {
            entry.healths()
        } else {
            vs.real_servers
                .iter()
                .map(|rs| {
                    self.monitors
                        .get(&(key, (rs.address, rs.port)))
                        .map(RealServerMonitor::health)
                })
                .collect()
        };
        let effective = quorum_step(&self.scripts, vs, &healths, &mut entry.quorum);
        Some((effective, healths))
    }

    /// [`Self::effective_backends`] of every virtual server, in configuration order.
    pub fn effective_all(&mut self) -> Vec<(VsKey, EffectiveVs)> {
        let keys = self.order.clone();
        keys.into_iter()
            .filter_map(|k| self.effective_backends(&k).map(|e| (k, e)))
            .collect()
    }

    /// Stops every monitor. For virtual servers with `omega`, runs the
    /// notify_down of each live real server and quorum_down if the quorum was
    /// up, waiting for them (keepalived's clear_services on shutdown).
    pub async fn shutdown(mut self) {
        let mut scripts: Vec<NotifyScript> = Vec::new();
        for vs_key in std::mem::take(&mut self.order) {
            let Some(entry) = self.virtual_servers.remove(&vs_key) else {
                continue;
            };
            for rs in &entry.config.real_servers {
                let Some(monitor) = self.monitors.remove(&(vs_key, (rs.address, rs.port))) else {
                    continue;
                };
                let health = monitor.stop();
                if !health.up {
                    continue;
                }
                info!(
                    "Shutting down service {} from VS {vs_key}",
                    service_trio(rs.address, rs.port, vs_key.protocol)
                );
                if entry.config.omega
                    && let Some(s) = &rs.notify_down
                {
                    scripts.push(s.clone());
                }
            }
            if entry.config.omega
                && entry.quorum.is_up() != Some(false)
                && let Some(s) = &entry.config.quorum_down
            {
                scripts.push(s.clone());
            }
        }
        self.monitors.clear();
        let runner = self.scripts.clone();
        join_all(
            scripts
                .iter()
                .map(|s| run_notify(&runner, s, SHUTDOWN_NOTIFY_TIMEOUT)),
        )
        .await;
    }
}

/// keepalived's load-time warning when the quorum cannot be reached.
fn warn_clamped_quorum(vs: &VirtualServer, key: &VsKey) {
    let total: u64 = vs.real_servers.iter().map(|rs| u64::from(rs.weight)).sum();
    if u64::from(vs.quorum) > total {
        warn!(
            "Warning - quorum {} for {key} exceeds total weight of real servers {total}, reducing quorum to {total}",
            vs.quorum
        );
    }
    let quorum = u64::from(vs.quorum).min(total);
    if u64::from(vs.hysteresis) >= quorum && vs.hysteresis > 0 {
        warn!(
            "Virtual server {key}: hysteresis {} >= quorum {quorum}; setting hysteresis to {}",
            vs.hysteresis,
            quorum.saturating_sub(1)
        );
    }
}

/// [`effective_backends_of`], logging a quorum change as keepalived does and running its
/// quorum_up or quorum_down.
fn quorum_step(
    scripts: &Arc<ScriptRunner>,
    vs: &VirtualServer,
    healths: &[Option<RealServerHealth>],
    quorum: &mut QuorumState,
) -> EffectiveVs {
    let effective = effective_backends_of(vs, healths, quorum);
    let Some(transition) = effective.transition else {
        return effective;
    };
    let name = VsKey::of(vs).to_string();
    if let Some(line) = effective.transition_line(&name) {
        info!("{line}");
    }
    if let Some(sorry) = &vs.sorry_server {
        let sorry_name = service_trio(sorry.address, sorry.port, vs.protocol);
        match transition {
            QuorumTransition::Gained => {
                info!("Removing sorry server {sorry_name} from VS {name}");
                info!("Adding alive servers to the pool for VS {name}");
            }
            QuorumTransition::Lost | QuorumTransition::StartedDown => {
                info!("Removing alive servers from the pool for VS {name}");
                info!("Adding sorry server {sorry_name} to VS {name}");
            }
        }
    }
    let script = match transition {
        QuorumTransition::Gained => &vs.quorum_up,
        QuorumTransition::Lost | QuorumTransition::StartedDown => &vs.quorum_down,
    };
    if let Some(script) = script {
        spawn_notify(scripts.clone(), script.clone(), NOTIFY_TIMEOUT);
    }
    effective
}

#[cfg(test)]
mod tests;
