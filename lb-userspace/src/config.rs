//! From the keepalived.conf model to the services the data plane serves.

use lb_config::{Config, Protocol as ConfigProtocol};

use crate::service::{Protocol, RealServer, Service};

/// Every `virtual_server` as a [`Service`]. Validation (lb-config) has already refused what
/// xlb cannot forward (NAT, TUN, fwmark), so this cannot fail.
pub fn services(config: &Config) -> Vec<Service> {
    config
        .virtual_servers
        .iter()
        .map(|vs| Service {
            vip: (vs.address, vs.port).into(),
            protocol: match vs.protocol {
                ConfigProtocol::Tcp => Protocol::Tcp,
                ConfigProtocol::Udp => Protocol::Udp,
            },
            source_hash: vs.hash_on_source_only(),
            real_servers: vs
                .real_servers
                .iter()
                .map(|rs| RealServer {
                    addr: (rs.address, rs.port).into(),
                    weight: rs.weight,
                    // Until its checkers say otherwise (`alpha` starts it down).
                    alive: !vs.alpha || rs.checkers.is_empty(),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_servers_become_services() {
        let text = "virtual_server 10.0.0.100 80 {\n  lb_algo sh\n  lb_kind DR\n  protocol TCP\n  real_server 10.0.0.11 80 {\n    weight 3\n  }\n  real_server 10.0.0.12 80 {\n  }\n}\n";
        let loaded = lb_config::parse_str(text, "test.conf").expect("valid config");
        let s = services(&loaded.config);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].vip, "10.0.0.100:80".parse().unwrap());
        assert!(s[0].source_hash);
        assert_eq!(s[0].real_servers[0].weight, 3);
        assert_eq!(s[0].real_servers[1].weight, 1);
    }
}
