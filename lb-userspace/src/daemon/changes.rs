//! What a reload changes, in the operator's words (one line per change), for the log and for
//! `xlb reload`'s answer.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
};

use lb_config::{Config, RealServer, VirtualServer, VrrpInstance};

/// How a virtual service is named: `TCP 10.0.0.100:80`, as ipvsadm lists it.
pub fn service_name(vs: &VirtualServer) -> String {
    format!(
        "{} {}",
        vs.protocol.name(),
        SocketAddr::new(vs.address, vs.port)
    )
}

fn real_server_name(rs: &RealServer) -> String {
    SocketAddr::new(rs.address, rs.port).to_string()
}

/// Every difference between the running config and a reloaded one that changes what xlb does,
/// services in the new config's order (then the removed ones). Services compare whole first:
/// a reload of thousands of services that changes a few costs little more than a lookup each.
pub fn describe(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    type Key = (&'static str, SocketAddr);
    let key =
        |vs: &VirtualServer| -> Key { (vs.protocol.name(), SocketAddr::new(vs.address, vs.port)) };
    let before: HashMap<Key, &VirtualServer> =
        old.virtual_servers.iter().map(|vs| (key(vs), vs)).collect();
    let after: HashSet<Key> = new.virtual_servers.iter().map(key).collect();
    for vs in &new.virtual_servers {
        match before.get(&key(vs)) {
            None => out.push(format!(
                "virtual service {} added with {} real server(s)",
                service_name(vs),
                vs.real_servers.len()
            )),
            Some(was) if *was == vs => {}
            Some(was) => describe_service(&service_name(vs), was, vs, &mut out),
        }
    }
    for vs in old
        .virtual_servers
        .iter()
        .filter(|vs| !after.contains(&key(vs)))
    {
        out.push(format!("virtual service {} removed", service_name(vs)));
    }

    let instances = |c: &Config| -> BTreeMap<String, VrrpInstance> {
        c.vrrp_instances
            .iter()
            .map(|vi| (vi.name.clone(), vi.clone()))
            .collect()
    };
    let (before, after) = (instances(old), instances(new));
    for (name, vi) in &after {
        match before.get(name) {
            None => out.push(format!("VRRP instance {name} added")),
            Some(was) if was.priority != vi.priority => out.push(format!(
                "priority of VRRP instance {name} {} -> {}",
                was.priority, vi.priority
            )),
            Some(was) if was != vi => out.push(format!("settings of VRRP instance {name} changed")),
            Some(_) => {}
        }
    }
    for name in before.keys().filter(|n| !after.contains_key(*n)) {
        out.push(format!("VRRP instance {name} removed"));
    }
    if old.vrrp_sync_groups != new.vrrp_sync_groups {
        out.push("VRRP sync groups changed".into());
    }
    if old.vrrp_scripts != new.vrrp_scripts {
        out.push("VRRP scripts changed".into());
    }
    if old.global_defs != new.global_defs {
        out.push("global_defs changed".into());
    }
    describe_static(old, new, &mut out);
    out
}

/// Static routes, rules and addresses added and removed, in `ip` words.
fn describe_static(old: &Config, new: &Config, out: &mut Vec<String>) {
    fn diff<T: PartialEq>(
        old: &[T],
        new: &[T],
        what: &str,
        name: impl Fn(&T) -> String,
        out: &mut Vec<String>,
    ) {
        for t in new.iter().filter(|t| !old.contains(t)) {
            out.push(format!("{what} {} added", name(t)));
        }
        for t in old.iter().filter(|t| !new.contains(t)) {
            out.push(format!("{what} {} removed", name(t)));
        }
    }
    diff(
        &old.static_ipaddress,
        &new.static_ipaddress,
        "static address",
        |a| format!("{}/{} dev {}", a.address, a.prefix_len, a.dev),
        out,
    );
    diff(
        &old.static_routes,
        &new.static_routes,
        "static route",
        |r| r.to_string(),
        out,
    );
    diff(
        &old.static_rules,
        &new.static_rules,
        "static rule",
        |r| r.to_string(),
        out,
    );
}

fn describe_service(name: &str, was: &VirtualServer, vs: &VirtualServer, out: &mut Vec<String>) {
    let reals = |v: &VirtualServer| -> BTreeMap<String, RealServer> {
        v.real_servers
            .iter()
            .map(|rs| (real_server_name(rs), rs.clone()))
            .collect()
    };
    let (before, after) = (reals(was), reals(vs));
    for (rs_name, rs) in &after {
        match before.get(rs_name) {
            None => out.push(format!(
                "real server {rs_name} added to {name} with weight {}",
                rs.weight
            )),
            Some(old) => {
                if old.weight != rs.weight {
                    out.push(format!(
                        "weight of {rs_name} in {name} {} -> {}",
                        old.weight, rs.weight
                    ));
                }
                let same_but_weight = RealServer {
                    weight: rs.weight,
                    ..old.clone()
                };
                if same_but_weight != *rs {
                    out.push(format!(
                        "settings of real server {rs_name} in {name} changed"
                    ));
                }
            }
        }
    }
    for rs_name in before.keys().filter(|n| !after.contains_key(*n)) {
        out.push(format!("real server {rs_name} removed from {name}"));
    }
    let settings = |v: &VirtualServer| VirtualServer {
        real_servers: Vec::new(),
        ..v.clone()
    };
    if settings(was) != settings(vs) {
        out.push(format!("settings of virtual service {name} changed"));
    }
}

/// What the data plane forwards: for each service, each real server's weight in its table
/// (0: down, unresolved or drained).
pub type Forwarding = BTreeMap<(crate::service::Protocol, SocketAddr), BTreeMap<SocketAddr, u32>>;

/// What the data plane forwards for these services, given which backends are resolved.
pub fn forwarding(
    services: &[crate::service::Service],
    resolved: impl Fn(&std::net::IpAddr) -> bool,
) -> Forwarding {
    services
        .iter()
        .map(|svc| {
            let weights = svc
                .real_servers
                .iter()
                .map(|rs| {
                    let weight = if rs.alive && resolved(&rs.addr.ip()) {
                        rs.weight
                    } else {
                        0
                    };
                    (rs.addr, weight)
                })
                .collect();
            ((svc.protocol, svc.vip), weights)
        })
        .collect()
}

/// The differences between two [`Forwarding`]s, one line each:
/// `weight of 10.0.0.13:80 in TCP 10.0.0.100:80 100 -> 0`.
pub fn describe_forwarding(old: &Forwarding, new: &Forwarding) -> Vec<String> {
    let mut out = Vec::new();
    for ((protocol, vip), weights) in new {
        let Some(before) = old.get(&(*protocol, *vip)) else {
            out.push(format!("{protocol} {vip} now forwarded"));
            continue;
        };
        for (rs, weight) in weights {
            match before.get(rs) {
                Some(was) if was != weight => out.push(format!(
                    "weight of {rs} in {protocol} {vip} {was} -> {weight}"
                )),
                Some(_) => {}
                None => out.push(format!(
                    "{rs} added to {protocol} {vip} with weight {weight}"
                )),
            }
        }
        for rs in before.keys().filter(|rs| !weights.contains_key(rs)) {
            out.push(format!("{rs} removed from {protocol} {vip}"));
        }
    }
    for (protocol, vip) in old.keys().filter(|k| !new.contains_key(k)) {
        out.push(format!("{protocol} {vip} no longer forwarded"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        lb_config::parse_str(text, "k.conf").expect("valid").config
    }

    #[test]
    fn changes_are_named_as_an_operator_would() {
        let old = config(
            "virtual_server 10.0.0.100 80 {\n lb_kind DR\n\
             real_server 10.0.0.11 80 {\n weight 100\n}\n\
             real_server 10.0.0.12 80 {\n}\n}\n\
             virtual_server 10.0.0.101 80 {\n lb_kind DR\n}\n",
        );
        let new = config(
            "virtual_server 10.0.0.100 80 {\n lb_kind DR\n\
             real_server 10.0.0.11 80 {\n weight 0\n}\n\
             real_server 10.0.0.13 80 {\n}\n}\n\
             virtual_server 10.0.0.102 53 {\n lb_kind DR\n protocol UDP\n}\n",
        );
        assert_eq!(
            describe(&old, &new),
            vec![
                "weight of 10.0.0.11:80 in TCP 10.0.0.100:80 100 -> 0",
                "real server 10.0.0.13:80 added to TCP 10.0.0.100:80 with weight 1",
                "real server 10.0.0.12:80 removed from TCP 10.0.0.100:80",
                "virtual service UDP 10.0.0.102:53 added with 0 real server(s)",
                "virtual service TCP 10.0.0.101:80 removed",
            ]
        );
        assert!(describe(&new, &new).is_empty());
    }
}
