//! The daemon's [`Status`]: the model is taken on the main loop (config, health verdicts, VRRP
//! report, claims, what the reconciler applied), the counters and the flow table are read on a
//! blocking thread, and rates come from a sampler that reads the counters every 2 s, as IPVS's
//! estimator does.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow};
use lb_common::{CLAIM_STATIC, Counters, PROTO_TCP, VipKey};
use lb_health::VsKey;

use super::Daemon;
use crate::{
    dataplane::{Observer, Stats},
    status::{
        CheckStatus, ClaimStatus, DataplaneStatus, RealServerStatus, ServiceStatus, Status,
        Traffic, unix_seconds,
    },
};

/// How often the rate sampler reads the counters.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// A remembered connection that sent a packet this recently counts as active.
const ACTIVE_WINDOW: Duration = Duration::from_secs(60);

/// The counters at two moments, for rates per second.
#[derive(Default)]
pub(super) struct Rates {
    previous: Option<(Instant, Sample)>,
    latest: Option<(Instant, Sample)>,
}

#[derive(Default)]
struct Sample {
    vips: HashMap<VipKey, Counters>,
    backends: HashMap<u32, Counters>,
}

impl Rates {
    fn push(&mut self, stats: &Stats) {
        let sample = Sample {
            vips: stats.vips.iter().map(|v| (v.key, v.counters)).collect(),
            backends: stats.backends.iter().map(|b| (b.id, b.counters)).collect(),
        };
        self.previous = self.latest.take();
        self.latest = Some((Instant::now(), sample));
    }

    /// Per second over the last interval: connections, packets and bytes in, packets and
    /// bytes out.
    fn rate(&self, pick: impl Fn(&Sample) -> Option<Counters>) -> [f64; 5] {
        let (Some((t0, s0)), Some((t1, s1))) = (&self.previous, &self.latest) else {
            return [0.0; 5];
        };
        let secs = t1.duration_since(*t0).as_secs_f64();
        let (Some(a), Some(b)) = (pick(s0), pick(s1)) else {
            return [0.0; 5];
        };
        if secs <= 0.0 {
            return [0.0; 5];
        }
        // A counter that went back (an id handed to another backend) reads as no traffic.
        let per_sec = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
        [
            per_sec(a.conns, b.conns),
            per_sec(a.packets, b.packets),
            per_sec(a.bytes, b.bytes),
            per_sec(a.out_packets, b.out_packets),
            per_sec(a.out_bytes, b.out_bytes),
        ]
    }
}

/// Reads the counters every [`SAMPLE_INTERVAL`] into `rates`, off the main loop.
pub(super) fn spawn_sampler(
    observer: Arc<Mutex<Observer>>,
    rates: Arc<Mutex<Rates>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
        loop {
            ticker.tick().await;
            let (observer, rates) = (observer.clone(), rates.clone());
            let sampled = tokio::task::spawn_blocking(move || {
                let stats = lock(&observer)?.stats()?;
                lock(&rates)?.push(&stats);
                Ok::<_, anyhow::Error>(())
            })
            .await;
            if let Ok(Err(e)) = sampled {
                log::debug!("sampling the counters for rates: {e:#}");
            }
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| anyhow!("a reader of the data plane panicked"))
}

fn traffic(counters: Counters, [cps, in_pps, in_bps, out_pps, out_bps]: [f64; 5]) -> Traffic {
    Traffic {
        conns: counters.conns,
        in_packets: counters.packets,
        in_bytes: counters.bytes,
        out_packets: counters.out_packets,
        out_bytes: counters.out_bytes,
        cps,
        in_pps,
        in_bps,
        out_pps,
        out_bps,
    }
}

/// The model without what the data plane counts: taken on the main loop, completed on a
/// blocking thread.
pub(super) struct Snapshot {
    status: Status,
    /// Each service's key in the data plane, in `status.services` order.
    keys: Vec<VipKey>,
    /// Backend id to (service, real server) positions in `status.services`, and the
    /// generation its flows carry.
    backends: HashMap<u32, (usize, usize, u32)>,
    /// The data plane's clock now, and the windows in its ticks.
    now: u64,
    active_ticks: u64,
    tcp_idle_ticks: u64,
    udp_idle_ticks: u64,
}

impl Snapshot {
    /// Adds the counters, the rates and the flow table's connections.
    pub fn complete(mut self, observer: &Mutex<Observer>, rates: &Mutex<Rates>) -> Result<Status> {
        // BIRD first, with its own deadline, before the data plane's lock is taken.
        if let Some(announce) = &mut self.status.announce {
            let socket = std::path::Path::new(&announce.bird_socket);
            match crate::announce::bird::show_protocols(
                socket,
                crate::announce::bird::BIRD_DEADLINE,
            ) {
                Ok(protocols) => announce.bird = protocols,
                Err(e) => announce.bird_error = Some(format!("{e:#}")),
            }
        }
        let observer = lock(observer)?;
        let stats = observer.stats()?;
        let rates = lock(rates)?;
        let vip_counters: HashMap<VipKey, Counters> =
            stats.vips.iter().map(|v| (v.key, v.counters)).collect();
        let backend_counters: HashMap<u32, Counters> =
            stats.backends.iter().map(|b| (b.id, b.counters)).collect();
        for (svc, key) in self.status.services.iter_mut().zip(&self.keys) {
            let counters = vip_counters.get(key).copied().unwrap_or_default();
            svc.traffic = traffic(counters, rates.rate(|s| s.vips.get(key).copied()));
        }
        for (&id, &(si, ri, _)) in &self.backends {
            let counters = backend_counters.get(&id).copied().unwrap_or_default();
            self.status.services[si].real_servers[ri].traffic =
                traffic(counters, rates.rate(|s| s.backends.get(&id).copied()));
        }
        drop(rates);
        let mut entries = 0u64;
        observer.for_each_flow(|flow| {
            entries += 1;
            let Some(&(si, ri, generation)) = self.backends.get(&flow.value.backend_id) else {
                return;
            };
            if flow.value.generation != generation {
                return;
            }
            let svc = &mut self.status.services[si];
            let idle = if svc.protocol == "TCP" {
                self.tcp_idle_ticks
            } else {
                self.udp_idle_ticks
            };
            let age = self.now.saturating_sub(flow.value.last_seen);
            let rs = &mut svc.real_servers[ri];
            if age <= self.active_ticks {
                rs.active_conns += 1;
            } else if age <= idle {
                rs.inactive_conns += 1;
            }
        })?;
        let d = &mut self.status.dataplane;
        d.flow_table_entries = entries;
        d.flow_table_size = observer.flow_table_size();
        d.outcomes = stats
            .outcomes
            .iter()
            .map(|(o, n)| (o.name().to_string(), *n))
            .collect();
        d.flow_events = stats
            .flow_events
            .iter()
            .map(|(e, n)| (e.name().to_string(), *n))
            .collect();
        Ok(self.status)
    }
}

impl Daemon<'_> {
    /// Everything the main loop knows, at this moment.
    pub(super) fn snapshot(&mut self) -> Snapshot {
        let clock = *self.dp.clock();
        let now = self.dp.now().unwrap_or_default();
        let seconds_left = |until: u64| -> Option<f64> {
            (until != 0).then(|| until.saturating_sub(now) as f64 / f64::from(clock.hz().max(1)))
        };
        let mut status = Status::default();
        status.daemon = crate::status::Daemon {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            interface: self.opts.paths.interface.to_string(),
            config: self.opts.config.display().to_string(),
            started: unix_seconds(self.started),
            maglev_table_size: self.dp.maglev_size(),
            hash_seed: self.opts.hash_seed,
        };

        // Claims: which instance owns each, whether it is active, its lease.
        let owner: HashMap<u32, &str> = self
            .vrrp
            .claims_of
            .iter()
            .map(|(name, claim)| (*claim, name.as_str()))
            .collect();
        let mut claim_indices: Vec<u32> = self.vrrp.claims_of.values().copied().collect();
        claim_indices.push(CLAIM_STATIC);
        claim_indices.sort_unstable();
        claim_indices.dedup();
        let mut active_claims: HashMap<u32, bool> = HashMap::new();
        for index in claim_indices {
            let claim = self.dp.claim(index).unwrap_or_default();
            let active = claim.active != 0 && !claim.forwarding_lapsed(now);
            active_claims.insert(index, active);
            status.claims.push(ClaimStatus {
                index,
                instance: owner.get(&index).map(|s| s.to_string()),
                active,
                answer_seconds_left: seconds_left(claim.until),
                forward_seconds_left: seconds_left(claim.forward_until),
            });
        }

        // Services and real servers.
        let services = crate::health::services(&self.config, self.health);
        let mut keys = Vec::new();
        let mut backends = HashMap::new();
        let mut draining: HashMap<VipKey, Vec<(SocketAddr, u32, u32)>> = HashMap::new();
        let mut generations: HashMap<u32, u32> = HashMap::new();
        for (key, id, backend, is_draining) in self.reconciler.backend_entries() {
            generations.insert(id, backend.generation);
            if is_draining {
                draining.entry(key.vip).or_default().push((
                    key.real_server,
                    id,
                    backend.generation,
                ));
            }
        }
        for (vs, svc) in self.config.virtual_servers.iter().zip(&services) {
            let key = svc.key();
            let vs_key = VsKey::of(vs);
            let (effective, healths) = match self.health.virtual_server_health(vs) {
                Some((effective, healths)) => (Some(effective), healths),
                None => (None, Vec::new()),
            };
            let sorry_active = effective.as_ref().is_some_and(|e| e.sorry);
            let quorum_up = effective.as_ref().is_none_or(|e| e.quorum_up);
            let claim = self
                .vrrp
                .claims
                .get(&vs.address)
                .copied()
                .unwrap_or(CLAIM_STATIC);
            let si = status.services.len();
            let mut flags = Vec::new();
            if vs.persistence_timeout > 0 {
                flags.push(format!("persistent {}", vs.persistence_timeout));
            } else if vs.hash_on_source_only() {
                flags.push("source-hash".to_string());
            }
            let forward = match vs.lb_kind {
                lb_config::LbKind::Dr => "Route",
                lb_config::LbKind::Nat => "Masq",
                lb_config::LbKind::Tun => "Tunnel",
            };
            let mut real_servers = Vec::new();
            // The service lists the configured real servers in order, then the sorry server.
            for (i, rs) in svc.real_servers.iter().enumerate() {
                let configured = vs.real_servers.get(i);
                let rs_key = (rs.addr.ip(), rs.addr.port());
                let health = healths.get(i).copied().flatten();
                let report = self.health.real_server_report(&vs_key, &rs_key);
                let resolved = self.paths.is_resolved(&rs.addr.ip());
                let state = match configured {
                    // Only the sorry server is in the list without being configured.
                    None => "sorry",
                    Some(_) if health.is_some_and(|h| !h.up) || !rs.alive => "down",
                    Some(_) if !resolved => "unresolved",
                    Some(_) => "up",
                };
                let effective_weight = if rs.alive && resolved { rs.weight } else { 0 };
                if let Some(id) = self.reconciler.backend_id(&key, rs.addr) {
                    let generation = generations.get(&id).copied().unwrap_or_default();
                    backends.insert(id, (si, real_servers.len(), generation));
                }
                real_servers.push(RealServerStatus {
                    address: rs.addr.ip(),
                    port: rs.addr.port(),
                    forward: forward.to_string(),
                    weight: configured.map_or(1, |c| c.weight),
                    effective_weight,
                    state: state.to_string(),
                    since: report.as_ref().and_then(|r| r.since).map(unix_seconds),
                    last_check: report.and_then(|r| r.last_check).map(|c| CheckStatus {
                        checker: c.checker,
                        at: unix_seconds(c.at),
                        duration_seconds: c.duration.as_secs_f64(),
                        failure: c.failure,
                    }),
                    active_conns: 0,
                    inactive_conns: 0,
                    traffic: Traffic::default(),
                });
            }
            for (addr, id, generation) in draining.remove(&key).unwrap_or_default() {
                backends.insert(id, (si, real_servers.len(), generation));
                real_servers.push(RealServerStatus {
                    address: addr.ip(),
                    port: addr.port(),
                    forward: forward.to_string(),
                    weight: 0,
                    effective_weight: 0,
                    state: "draining".to_string(),
                    since: None,
                    last_check: None,
                    active_conns: 0,
                    inactive_conns: 0,
                    traffic: Traffic::default(),
                });
            }
            status.services.push(ServiceStatus {
                protocol: if key.proto == PROTO_TCP { "TCP" } else { "UDP" }.to_string(),
                address: vs.address,
                port: vs.port,
                scheduler: "mh".to_string(),
                lb_algo: vs.lb_algo.name().to_string(),
                flags,
                forward: forward.to_string(),
                vrrp_instance: owner.get(&claim).map(|s| s.to_string()),
                active: active_claims.get(&claim).copied().unwrap_or(false),
                quorum_up,
                sorry_server: vs
                    .sorry_server
                    .as_ref()
                    .map(|s| SocketAddr::new(s.address, s.port).to_string()),
                sorry_active,
                traffic: Traffic::default(),
                table_checksum: self.reconciler.table_checksum(&key),
                real_servers,
            });
            keys.push(key);
        }

        status.announce = self
            .announcer
            .as_ref()
            .map(|a| a.status(&self.config.global_defs.xlb_bird_socket));

        // VRRP, as its thread last reported.
        let report = self.vrrp.report.borrow();
        status.vrrp = report.instances.clone();
        status.vrrp_scripts = report.scripts.clone();
        status.dataplane = DataplaneStatus {
            vrrp_dropped: report.dropped.clone(),
            ..DataplaneStatus::default()
        };
        drop(report);

        Snapshot {
            status,
            keys,
            backends,
            now,
            active_ticks: clock.ticks(ACTIVE_WINDOW),
            tcp_idle_ticks: clock.ticks(self.opts.tcp_idle),
            udp_idle_ticks: clock.ticks(self.opts.udp_idle),
        }
    }
}
