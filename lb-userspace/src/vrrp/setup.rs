//! From keepalived's `vrrp_instance` and `vrrp_sync_group` blocks to lb-vrrp instances.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use anyhow::{Result, anyhow};
use lb_config::{AuthType, Config, VrrpInstance, VrrpState};
use lb_vrrp::{AnnounceConfig, Auth, InitialState, InstanceConfig, Version};

/// The claim index of each configured VRRP instance. An instance keeps the index it had
/// (`previous`, from before a reload): its claim in the data plane is live state. A new one
/// takes the lowest free index from 1 (claim 0 is for VIPs no instance holds).
pub fn assign_claims(config: &Config, previous: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for vi in &config.vrrp_instances {
        if let Some(&claim) = previous.get(&vi.name) {
            out.insert(vi.name.clone(), claim);
        }
    }
    for vi in &config.vrrp_instances {
        if !out.contains_key(&vi.name) {
            let used: std::collections::BTreeSet<u32> = out.values().copied().collect();
            let claim = (1..).find(|c| !used.contains(c)).unwrap_or(1);
            out.insert(vi.name.clone(), claim);
        }
    }
    out
}

/// Which claim serves each VRRP virtual address.
pub fn claims_by_address(config: &Config, claims: &BTreeMap<String, u32>) -> BTreeMap<IpAddr, u32> {
    let mut out = BTreeMap::new();
    for vi in &config.vrrp_instances {
        let Some(&claim) = claims.get(&vi.name) else {
            continue;
        };
        for vip in vi
            .virtual_ipaddress
            .iter()
            .chain(&vi.virtual_ipaddress_excluded)
        {
            out.entry(vip.address).or_insert(claim);
        }
    }
    out
}

/// Instances in groups: every sync group, then every instance in none, alone.
pub fn groups(config: &Config) -> Vec<(Option<String>, Vec<String>)> {
    let mut grouped = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for g in &config.vrrp_sync_groups {
        let members: Vec<String> = g
            .group
            .iter()
            .filter(|m| config.vrrp_instance(&m.name).is_some())
            .map(|m| m.name.clone())
            .collect();
        grouped.extend(members.iter().cloned());
        if !members.is_empty() {
            out.push((Some(g.name.clone()), members));
        }
    }
    for vi in &config.vrrp_instances {
        if !grouped.contains(&vi.name) {
            out.push((None, vec![vi.name.clone()]));
        }
    }
    out
}

/// The lb-vrrp configuration of one instance speaking from `primary`.
pub fn instance_config(vi: &VrrpInstance, primary: IpAddr) -> Result<InstanceConfig> {
    let addresses: Vec<IpAddr> = vi.virtual_ipaddress.iter().map(|v| v.address).collect();
    let mut cfg = InstanceConfig::new(vi.virtual_router_id, vi.priority, primary, addresses);
    cfg.version = if vi.version == 3 {
        Version::V3
    } else {
        Version::V2
    };
    cfg.advert_int = vi.advert_int();
    cfg.unicast_peers = vi.unicast_peer.clone();
    cfg.auth = match &vi.authentication {
        Some(a) if a.auth_type == AuthType::Pass && cfg.version == Version::V2 => {
            Auth::simple_password(a.auth_pass.as_bytes())
        }
        Some(a) if a.auth_type == AuthType::Ah => {
            return Err(anyhow!(
                "vrrp_instance {}: auth_type AH is not supported",
                vi.name
            ));
        }
        _ => Auth::None,
    };
    cfg.initial_state = Some(match vi.state {
        VrrpState::Master => InitialState::Master,
        VrrpState::Backup => InitialState::Backup,
    });
    cfg.nopreempt = vi.nopreempt;
    cfg.preempt_delay = Duration::from_secs(vi.preempt_delay.into());
    cfg.announce = AnnounceConfig {
        master_repeat: vi.garp_master_repeat,
        master_delay: Duration::from_secs(vi.garp_master_delay.into()),
        master_refresh: Duration::from_secs(vi.garp_master_refresh.into()),
        master_refresh_repeat: vi.garp_master_refresh_repeat,
        lower_prio_repeat: vi.garp_master_repeat,
        lower_prio_delay: Duration::from_secs(vi.garp_master_delay.into()),
    };
    cfg.validate()
        .map_err(|e| anyhow!("vrrp_instance {}: {e}", vi.name))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "vrrp_sync_group G {\n  group {\n    VI_1\n    VI_2\n  }\n}\nvrrp_instance VI_1 {\n  state MASTER\n  interface eth0\n  virtual_router_id 51\n  priority 150\n  advert_int 1\n  authentication {\n    auth_type PASS\n    auth_pass secret\n  }\n  virtual_ipaddress {\n    10.0.0.100/24 dev eth0\n  }\n}\nvrrp_instance VI_2 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 52\n  priority 100\n  virtual_ipaddress {\n    10.0.0.101\n  }\n}\nvrrp_instance VI_3 {\n  interface eth0\n  virtual_router_id 53\n  priority 100\n  version 3\n  advert_int 0.05\n  virtual_ipaddress {\n    10.0.0.102\n  }\n}\n";

    fn config() -> Config {
        lb_config::parse_str(CONF, "t.conf").expect("valid").config
    }

    #[test]
    fn instances_map_to_claims_and_groups() {
        let c = config();
        let claims = assign_claims(&c, &BTreeMap::new());
        let by_addr = claims_by_address(&c, &claims);
        assert_eq!(by_addr[&"10.0.0.100".parse::<IpAddr>().unwrap()], 1);
        assert_eq!(by_addr[&"10.0.0.102".parse::<IpAddr>().unwrap()], 3);
        let g = groups(&c);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].1, vec!["VI_1".to_string(), "VI_2".to_string()]);
        assert_eq!(g[1], (None, vec!["VI_3".to_string()]));
    }

    #[test]
    fn instances_keep_their_claims_across_a_reload() {
        let c = config();
        let before = BTreeMap::from([("VI_3".to_string(), 1), ("VI_9".to_string(), 2)]);
        let claims = assign_claims(&c, &before);
        assert_eq!(claims["VI_3"], 1);
        assert_eq!(claims["VI_1"], 2);
        assert_eq!(claims["VI_2"], 3);
    }

    #[test]
    fn keepalived_settings_carry_over() {
        let c = config();
        let primary = "10.0.0.2".parse().unwrap();
        let one = instance_config(&c.vrrp_instances[0], primary).unwrap();
        assert_eq!(one.vrid, 51);
        assert_eq!(one.auth, Auth::simple_password(b"secret"));
        assert_eq!(one.initial_state, Some(InitialState::Master));
        let three = instance_config(&c.vrrp_instances[2], primary).unwrap();
        assert_eq!(three.version, Version::V3);
        assert_eq!(three.advert_int, Duration::from_millis(50));
    }
}
