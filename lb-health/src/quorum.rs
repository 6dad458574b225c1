//! What a virtual server forwards to, given its real servers' health:
//! keepalived's ipwrapper.c (`update_quorum_state`, `perform_svr_state`,
//! `perform_quorum_state`, `weigh_live_realservers`) and ipvswrapper.c
//! (inhibit_on_failure keeps a dead server at weight 0), without IPVS.
//!
//! - Live real servers are forwarded to with their effective weight; dead
//!   ones are left out, or kept at weight 0 with inhibit_on_failure.
//! - The quorum is up while the live weight sum is high enough, with
//!   hysteresis: it is gained when the sum reaches `quorum + hysteresis` and
//!   lost when it drops below `quorum - hysteresis` (or to 0).
//! - With the quorum down and a sorry_server, the sorry server takes the
//!   traffic: live servers are removed (inhibited ones stay at weight 0).
//!   Without a sorry server a lost quorum changes nothing but the
//!   quorum_down notification, as in keepalived.
//!
//! keepalived also clamps the configuration at load (check_data.c): a quorum
//! above the real servers' total weight becomes that total, and a hysteresis
//! not below the quorum becomes quorum - 1. The same is applied here.

use std::collections::HashMap;
use std::net::IpAddr;

use lb_config::VirtualServer;

use crate::RsKey;
use crate::monitor::RealServerHealth;

/// The weight of the sorry server (keepalived gives it weight 1).
pub const SORRY_SERVER_WEIGHT: u32 = 1;

/// A virtual server's quorum state, kept between evaluations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumState {
    up: Option<bool>,
}

impl QuorumState {
    /// `None` before the first evaluation.
    pub fn is_up(&self) -> Option<bool> {
        self.up
    }
}

/// A quorum change, on which keepalived runs quorum_up or quorum_down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumTransition {
    /// First evaluation found too little weight and there is a sorry server:
    /// keepalived starts with the sorry server and runs quorum_down
    /// (`Starting with quorum down`).
    StartedDown,
    /// quorum_up runs.
    Gained,
    /// quorum_down runs.
    Lost,
}

/// One forwarding target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
}

/// What a virtual server forwards to now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveVs {
    pub backends: Vec<Backend>,
    /// The sorry server is in use.
    pub sorry: bool,
    pub quorum_up: bool,
    /// Sum of the live real servers' weights.
    pub weight_sum: u64,
    /// The quorum and hysteresis in force (after keepalived's clamping).
    pub quorum: u64,
    pub hysteresis: u64,
    /// The threshold the sum was compared with.
    pub threshold: u64,
    pub transition: Option<QuorumTransition>,
}

impl EffectiveVs {
    /// keepalived's log line for the transition, if any.
    pub fn transition_line(&self, vs_name: &str) -> Option<String> {
        let t = self.transition?;
        Some(match t {
            QuorumTransition::Gained => format!(
                "Gained quorum {}+{}={} <= {} for VS {vs_name}",
                self.quorum, self.hysteresis, self.threshold, self.weight_sum
            ),
            QuorumTransition::Lost | QuorumTransition::StartedDown => format!(
                "{} {}-{}={} > {} for VS {vs_name}",
                if t == QuorumTransition::Lost {
                    "Lost quorum"
                } else {
                    "Starting with quorum down"
                },
                self.quorum,
                self.hysteresis,
                self.threshold,
                self.weight_sum
            ),
        })
    }
}

/// Computes what `vs` forwards to from its real servers' `states` and moves
/// `quorum` along. A real server missing from `states` counts as down.
/// Where [`effective_backends`] reads each real server's health: a map, or a lookup that
/// builds none (the supervisor's, for thousands of virtual servers at a time).
pub trait RsStates {
    fn state(&self, address: IpAddr, port: u16) -> Option<RealServerHealth>;
}

impl RsStates for HashMap<RsKey, RealServerHealth> {
    fn state(&self, address: IpAddr, port: u16) -> Option<RealServerHealth> {
        self.get(&(address, port)).copied()
    }
}

impl<F: Fn(IpAddr, u16) -> Option<RealServerHealth>> RsStates for F {
    fn state(&self, address: IpAddr, port: u16) -> Option<RealServerHealth> {
        self(address, port)
    }
}

pub fn effective_backends(
    vs: &VirtualServer,
    states: &impl RsStates,
    quorum: &mut QuorumState,
) -> EffectiveVs {
    let healths: Vec<Option<RealServerHealth>> = vs
        .real_servers
        .iter()
        .map(|rs| states.state(rs.address, rs.port))
        .collect();
    effective_backends_of(vs, &healths, quorum)
}

/// [`effective_backends`] given each real server's health in configuration order.
pub fn effective_backends_of(
    vs: &VirtualServer,
    healths: &[Option<RealServerHealth>],
    quorum: &mut QuorumState,
) -> EffectiveVs {
    let total: u64 = vs.real_servers.iter().map(|rs| u64::from(rs.weight)).sum();
    let q = u64::from(vs.quorum).min(total);
    let mut h = u64::from(vs.hysteresis);
    if h >= q {
        h = q.saturating_sub(1);
    }

    let weight_sum: u64 = healths
        .iter()
        .flatten()
        .filter(|s| s.up)
        .map(|s| u64::from(s.weight))
        .sum();

    let init = quorum.up.is_none();
    let mut up = quorum.up.unwrap_or(weight_sum >= q + h);
    let threshold = if up { q - h } else { q + h };
    let transition = if !up && weight_sum >= threshold {
        up = true;
        Some(QuorumTransition::Gained)
    } else if up && (weight_sum == 0 || weight_sum < threshold) {
        up = false;
        Some(if init {
            QuorumTransition::StartedDown
        } else {
            QuorumTransition::Lost
        })
    } else if init && !up && vs.sorry_server.is_some() {
        Some(QuorumTransition::StartedDown)
    } else {
        None
    };
    quorum.up = Some(up);

    let sorry = (!up).then_some(vs.sorry_server.as_ref()).flatten();
    let mut backends = Vec::new();
    for (rs, state) in vs.real_servers.iter().zip(healths) {
        let state = *state;
        let alive = state.is_some_and(|s| s.up);
        let weight = state.map_or(rs.weight, |s| s.weight);
        let target = |weight| Backend {
            address: rs.address,
            port: rs.port,
            weight,
        };
        if sorry.is_some() {
            // keepalived's perform_quorum_state removes the live servers;
            // with inhibit_on_failure "removing" sets weight 0.
            if rs.inhibit_on_failure {
                backends.push(target(0));
            }
        } else if alive {
            backends.push(target(weight));
        } else if rs.inhibit_on_failure {
            backends.push(target(0));
        }
    }
    if let Some(s) = sorry {
        backends.retain(|b| (b.address, b.port) != (s.address, s.port));
        backends.push(Backend {
            address: s.address,
            port: s.port,
            weight: SORRY_SERVER_WEIGHT,
        });
    }

    EffectiveVs {
        backends,
        sorry: sorry.is_some(),
        quorum_up: up,
        weight_sum,
        quorum: q,
        hysteresis: h,
        threshold,
        transition,
    }
}

#[cfg(test)]
mod tests;
