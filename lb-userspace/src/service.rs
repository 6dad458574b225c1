//! The desired state: what the maps should hold, as a pure function of the inputs.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::{IpAddr, SocketAddr},
};

use lb_common::{
    Addr, BACKEND_F_VALID, Backend, CLAIM_STATIC, Forwarding, PROTO_TCP, PROTO_UDP,
    VIP_ADDR_F_SERVICES, VIP_F_SOURCE_HASH, VipAddrValue, VipKey,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        }
    }
}

impl From<lb_config::Protocol> for Protocol {
    fn from(p: lb_config::Protocol) -> Self {
        match p {
            lb_config::Protocol::Tcp => Protocol::Tcp,
            lb_config::Protocol::Udp => Protocol::Udp,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// A virtual service: a VIP (address, port, protocol) and the real servers behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub vip: SocketAddr,
    pub protocol: Protocol,
    /// Hash on the client address only (`lb_algo sh` or `persistence_timeout`).
    pub source_hash: bool,
    /// keepalived's `persistence_timeout` in seconds (0: none): a client's new connections go
    /// to the real server of its last one for this long.
    pub persistence: u32,
    /// How packets reach the real servers (`lb_kind`).
    pub forwarding: Forwarding,
    pub real_servers: Vec<RealServer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServer {
    pub addr: SocketAddr,
    /// 0: drained (alive, keeps its connections, gets no new ones).
    pub weight: u32,
    /// Passing its health checks. A dead real server gets no table entries, and connections
    /// remembered for it are placed again.
    pub alive: bool,
}

impl Service {
    pub fn key(&self) -> VipKey {
        VipKey {
            addr: addr_words(self.vip.ip()),
            port: self.vip.port().to_be(),
            proto: self.protocol.number(),
            _pad: 0,
        }
    }
}

/// An address as the data plane stores it (see [`lb_common::maps`]).
pub fn addr_words(ip: IpAddr) -> Addr {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let o = v6.octets();
    core::array::from_fn(|i| {
        u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
    })
}

/// The inverse of [`addr_words`].
pub fn words_addr(words: &Addr) -> IpAddr {
    let mut o = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        o[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    let v6 = std::net::Ipv6Addr::from(o);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// How frames reach a backend: resolved from the kernel's routes and neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendPath {
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// The director's MAC on `ifindex`.
    pub src_mac: [u8; 6],
}

/// One real server of one VIP: what a backend id stands for. Its own id (rather than one per
/// address) gives each real server of each VIP its own liveness and counters, as IPVS does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendKey {
    pub vip: VipKey,
    pub real_server: SocketAddr,
}

impl BackendKey {
    /// The key's fields as integers: compared in one go, they order keys as comparing field
    /// by field does (the VIP's address words, port, protocol, then the real server's family,
    /// address and port), in a few instructions rather than a compare of each word and a match
    /// on each address. Reconciling walks tens of thousands of keys side by side.
    fn rank(&self) -> (u128, u32, u8, u128, u16) {
        let [a, b, c, d] = self.vip.addr.map(u128::from);
        let vip_addr = a << 96 | b << 64 | c << 32 | d;
        let vip_rest = u32::from(self.vip.port) << 16
            | u32::from(self.vip.proto) << 8
            | u32::from(self.vip._pad);
        let (family, ip) = match self.real_server.ip() {
            IpAddr::V4(ip) => (0, u128::from(ip.to_bits())),
            IpAddr::V6(ip) => (1, ip.to_bits()),
        };
        (vip_addr, vip_rest, family, ip, self.real_server.port())
    }
}

impl Ord for BackendKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank()
            .cmp(&other.rank())
            // IPv6 flow labels and scopes, which real servers do not have.
            .then_with(|| self.real_server.cmp(&other.real_server))
    }
}

impl PartialOrd for BackendKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What the data plane should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Forward VIP traffic (this director is MASTER, or runs without VRRP).
    pub active: bool,
    pub vips: BTreeMap<VipKey, DesiredVip>,
    /// Every live real server of every VIP; the generation is the reconciler's to fill in.
    pub backends: BTreeMap<BackendKey, Backend>,
    /// Every VIP address and VRRP virtual address, with its claim and flags.
    pub vip_addrs: BTreeMap<Addr, VipAddrValue>,
}

impl DesiredState {
    /// Hands the VIPs on addresses a VRRP instance holds to that instance's claim, and lists
    /// every VRRP virtual address (so that ARP for it is dropped when the claim lapses).
    pub fn with_claims(mut self, claims: &BTreeMap<IpAddr, u32>) -> Self {
        for (key, vip) in self.vips.iter_mut() {
            if let Some(claim) = claims.get(&words_addr(&key.addr)) {
                vip.claim = *claim;
            }
        }
        for (ip, claim) in claims {
            let value = self.vip_addrs.entry(addr_words(*ip)).or_insert(0);
            *value = (*value & !lb_common::VIP_ADDR_CLAIM_MASK) | claim;
        }
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredVip {
    pub flags: u32,
    /// persistence_timeout, seconds.
    pub persistence: u32,
    /// (backend address, port, weight): the Maglev table's input.
    pub members: Vec<(IpAddr, u16, u32)>,
    /// The [`lb_common::Claim`] that says whether this director serves the VIP.
    pub claim: u32,
}

/// The desired state of the data plane. Every real server of every service has a backend entry;
/// one that is dead, or whose path is not resolved (it cannot be reached), is marked down: no
/// table entries, and its remembered connections are placed again.
pub fn desired(
    services: &[Service],
    paths: &HashMap<IpAddr, BackendPath>,
    active: bool,
) -> DesiredState {
    // Gathered in lists and each map built at once from them (sorted, then filled in order):
    // tens of thousands of inserts into a growing map cost several times more. A key given
    // twice keeps its last value, as inserting would.
    //
    // The lists are made in key order (services by key, each one's real servers by address),
    // so building a map finds them sorted already: a sort of the whole list by its large keys
    // cost more than the rest of this function.
    let mut in_order: Vec<(VipKey, &Service)> = services.iter().map(|s| (s.key(), s)).collect();
    in_order.sort_by_key(|(key, _)| *key);
    let mut backends = Vec::with_capacity(services.iter().map(|s| s.real_servers.len()).sum());
    let mut vips = Vec::with_capacity(services.len());
    for (key, service) in in_order {
        let mut members = Vec::new();
        let first = backends.len();
        for rs in &service.real_servers {
            let path = paths.get(&rs.addr.ip()).filter(|_| rs.alive);
            let backend = match path {
                Some(path) => Backend {
                    mac: path.mac,
                    src_mac: path.src_mac,
                    ifindex: path.ifindex,
                    flags: BACKEND_F_VALID,
                    ..Backend::default()
                },
                None => Backend::default(),
            };
            backends.push((
                BackendKey {
                    vip: key,
                    real_server: rs.addr,
                },
                Backend {
                    vip: key,
                    real_server: addr_words(rs.addr.ip()),
                    real_server_port: rs.addr.port(),
                    ..backend
                },
            ));
            if path.is_some() {
                members.push((rs.addr.ip(), rs.addr.port(), rs.weight));
            }
        }
        backends[first..].sort_by_key(|(k, _)| k.real_server);
        members.sort();
        let hashing = if service.source_hash {
            VIP_F_SOURCE_HASH
        } else {
            0
        };
        let flags = hashing | service.forwarding.flags();
        vips.push((
            key,
            DesiredVip {
                flags,
                persistence: service.persistence,
                members,
                claim: CLAIM_STATIC,
            },
        ));
    }
    let vip_addrs = vips
        .iter()
        .map(|(key, _)| (key.addr, VIP_ADDR_F_SERVICES | CLAIM_STATIC))
        .collect();
    DesiredState {
        active,
        backends: backends.into_iter().collect(),
        vips: vips.into_iter().collect(),
        vip_addrs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(vip: &str, rs: &[(&str, u32)]) -> Service {
        Service {
            vip: vip.parse().unwrap(),
            protocol: Protocol::Tcp,
            source_hash: false,
            persistence: 0,
            forwarding: Forwarding::DirectRouting,
            real_servers: rs
                .iter()
                .map(|(a, w)| RealServer {
                    addr: a.parse().unwrap(),
                    weight: *w,
                    alive: true,
                })
                .collect(),
        }
    }

    #[test]
    fn backend_keys_order_as_their_fields_do() {
        let vips = [
            "10.0.0.1:80",
            "10.0.0.1:443",
            "10.0.1.0:80",
            "[2001:db8::1]:80",
            "[::1]:53",
        ];
        let reals = [
            "10.0.0.9:80",
            "10.0.0.10:80",
            "10.0.0.9:8080",
            "[2001:db8::9]:80",
            "[::ffff:10.0.0.9]:80",
        ];
        let mut keys = Vec::new();
        for (i, vip) in vips.iter().enumerate() {
            for proto in [6, 17] {
                let addr: SocketAddr = vip.parse().unwrap();
                let vip = VipKey {
                    proto,
                    ..VipKey {
                        addr: addr_words(addr.ip()),
                        port: addr.port().to_be(),
                        proto: 0,
                        _pad: i as u8 % 2,
                    }
                };
                for rs in reals {
                    keys.push(BackendKey {
                        vip,
                        real_server: rs.parse().unwrap(),
                    });
                }
            }
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(
                    a.cmp(b),
                    (a.vip, a.real_server).cmp(&(b.vip, b.real_server)),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn ipv4_is_stored_mapped_in_network_order() {
        let w = addr_words("10.0.0.1".parse().unwrap());
        assert_eq!(w[3].to_ne_bytes(), [10, 0, 0, 1]);
        assert!(lb_common::is_v4_mapped(&w));
        assert!(!lb_common::is_v4_mapped(&addr_words(
            "2001:db8::1".parse().unwrap()
        )));
    }

    #[test]
    fn addresses_round_trip_through_words() {
        for ip in ["10.0.0.1", "::1", "2001:db8::7", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            let back = words_addr(&addr_words(ip));
            assert_eq!(back, ip.to_canonical());
        }
    }

    #[test]
    fn unresolved_and_dead_backends_are_marked_down() {
        let s = service("10.0.0.100:80", &[("10.0.0.1:80", 1), ("10.0.0.2:80", 2)]);
        let path = BackendPath {
            ifindex: 2,
            mac: [2, 0, 0, 0, 0, 1],
            src_mac: [2, 0, 0, 0, 0, 9],
        };
        let paths = HashMap::from([("10.0.0.1".parse().unwrap(), path)]);
        let d = desired(std::slice::from_ref(&s), &paths, true);
        let valid = |d: &DesiredState| {
            d.backends
                .values()
                .filter(|b| b.flags & BACKEND_F_VALID != 0)
                .count()
        };
        assert_eq!(d.backends.len(), 2);
        assert_eq!(valid(&d), 1);
        assert_eq!(
            d.vips[&s.key()].members,
            vec![("10.0.0.1".parse().unwrap(), 80, 1)]
        );
        let mut dead = s.clone();
        dead.real_servers[0].alive = false;
        let d = desired(&[dead], &paths, true);
        assert_eq!(valid(&d), 0);
        assert!(d.vips[&s.key()].members.is_empty());
    }
}
