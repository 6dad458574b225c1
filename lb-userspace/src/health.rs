//! From the config and the health checks to the services the data plane serves.
//!
//! Every configured real server is listed, alive or not: a dead one is marked down (its
//! remembered connections are placed again) rather than left out, which would read as a removal
//! from the config and drain it. While a virtual server is below its quorum, its sorry server
//! takes the new connections and the live real servers keep the ones they have (weight 0).

use lb_config::{Config, VirtualServer};
use lb_health::{HealthSupervisor, RealServerHealth};

use lb_common::Forwarding;

use crate::service::{Protocol, RealServer, Service};

pub fn services(config: &Config, health: &mut HealthSupervisor) -> Vec<Service> {
    services_and_quorum(config, health)
        .into_iter()
        .map(|(service, _)| service)
        .collect()
}

/// As [`services`], with whether each virtual server has quorum (an announced VIP is
/// withdrawn while one of its services has not).
pub fn services_and_quorum(config: &Config, health: &mut HealthSupervisor) -> Vec<(Service, bool)> {
    config
        .virtual_servers
        .iter()
        .map(|vs| {
            // Each real server's monitor looked up once (tens of thousands per recomputation).
            let (sorry, quorum_up, healths) = match health.virtual_server_health(vs) {
                Some((effective, healths)) => (effective.sorry, effective.quorum_up, healths),
                None => (false, true, Vec::new()),
            };
            let state_of = |i: usize, _: &lb_config::RealServer| healths.get(i).copied().flatten();
            (service(vs, sorry, state_of), quorum_up)
        })
        .collect()
}

/// The services of a config as configured, before any health check has run: what the data
/// plane serves at start-up (and what packet tests drive).
pub fn configured(config: &Config) -> Vec<Service> {
    config
        .virtual_servers
        .iter()
        .map(|vs| service(vs, false, |_, _| None))
        .collect()
}

/// One virtual server as a [`Service`], given each real server's health by its position in the
/// config (`None`: not checked yet, so as configured) and whether the sorry server is in use.
fn service(
    vs: &VirtualServer,
    sorry: bool,
    state_of: impl Fn(usize, &lb_config::RealServer) -> Option<RealServerHealth>,
) -> Service {
    let mut real_servers: Vec<RealServer> = vs
        .real_servers
        .iter()
        .enumerate()
        .map(|(i, rs)| {
            let (alive, weight) = match state_of(i, rs) {
                // keepalived's inhibit_on_failure: weight 0 rather than removal, so the
                // connections it has carry on (IPVS keeps a weight-0 destination's).
                Some(h) if !h.up && h.inhibit_on_failure => (true, 0),
                Some(h) => (h.up, h.weight),
                None => (!vs.alpha || rs.checkers.is_empty(), rs.weight),
            };
            RealServer {
                addr: (rs.address, rs.port).into(),
                weight: if sorry { 0 } else { weight },
                alive,
            }
        })
        .collect();
    if let Some(sorry_server) = vs.sorry_server.as_ref().filter(|_| sorry) {
        let addr = (sorry_server.address, sorry_server.port).into();
        if !real_servers.iter().any(|rs| rs.addr == addr) {
            real_servers.push(RealServer {
                addr,
                weight: 1,
                alive: true,
            });
        }
    }
    Service {
        vip: (vs.address, vs.port).into(),
        protocol: Protocol::from(vs.protocol),
        source_hash: vs.hash_on_source_only(),
        persistence: vs.persistence_timeout,
        forwarding: match vs.lb_kind {
            lb_config::LbKind::Nat => Forwarding::Nat,
            // TUN is refused by the config check.
            lb_config::LbKind::Dr | lb_config::LbKind::Tun => Forwarding::DirectRouting,
        },
        real_servers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        lb_config::parse_str(text, "test.conf")
            .expect("valid config")
            .config
    }

    const VS: &str = "virtual_server 10.0.0.100 80 {\n  lb_algo mh\n  lb_kind DR\n  protocol TCP\n  sorry_server 10.0.0.50 80\n  real_server 10.0.0.11 80 {\n    weight 3\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n  real_server 10.0.0.12 80 {\n    weight 2\n  }\n}\n";

    #[test]
    fn dead_real_servers_are_listed_down() {
        let c = config(VS);
        let vs = &c.virtual_servers[0];
        let s = service(vs, false, |_, rs| {
            Some(RealServerHealth {
                up: rs.address.to_string() != "10.0.0.11",
                weight: rs.weight,
                inhibit_on_failure: false,
                failed_checkers: 0,
            })
        });
        assert_eq!(s.real_servers.len(), 2);
        assert!(!s.real_servers[0].alive);
        assert!(s.real_servers[1].alive);
        assert_eq!(s.real_servers[1].weight, 2);
    }

    #[test]
    fn inhibited_servers_stay_alive_at_weight_zero() {
        let c = config(VS);
        let s = service(&c.virtual_servers[0], false, |_, rs| {
            Some(RealServerHealth {
                up: false,
                weight: rs.weight,
                inhibit_on_failure: true,
                failed_checkers: 1,
            })
        });
        assert!(s.real_servers.iter().all(|rs| rs.alive && rs.weight == 0));
    }

    #[test]
    fn below_quorum_the_sorry_server_takes_new_connections() {
        let c = config(VS);
        let s = service(&c.virtual_servers[0], true, |_, _| None);
        assert_eq!(s.real_servers.len(), 3);
        assert!(
            s.real_servers[..2]
                .iter()
                .all(|rs| rs.weight == 0 && rs.alive)
        );
        assert_eq!(s.real_servers[2].addr, "10.0.0.50:80".parse().unwrap());
        assert_eq!(s.real_servers[2].weight, 1);
    }

    #[test]
    fn unchecked_servers_start_as_configured() {
        let alpha = VS.replace("protocol TCP", "protocol TCP\n  alpha");
        let c = config(&alpha);
        let s = service(&c.virtual_servers[0], false, |_, _| None);
        assert!(
            !s.real_servers[0].alive,
            "alpha: checked servers start down"
        );
        assert!(s.real_servers[1].alive, "no checkers: always up");
    }
}
