//! Active-active directors behind ECMP: each VIP of `xlb_announce` is announced to the routers
//! by BIRD while this director serves it well, and withdrawn otherwise.
//!
//! xlb speaks no BGP. It keeps one host route per announceable VIP in a kernel routing table of
//! its own (`xlb_announce_table`), through a TUN device it holds open ([`device`]); BIRD's kernel
//! protocol learns that table and its BGP protocols export it with `next hop self`. A VIP is
//! announceable while every one of its virtual services has quorum, the data plane serves it,
//! and the claim it is forwarded under is alive. A `kill -9` of xlb closes the device: the kernel
//! flushes its routes and BIRD withdraws within its netlink round trip. A clean stop withdraws
//! first and waits `xlb_announce_drain` before the data plane is detached.

pub mod bird;
pub mod device;

use std::{collections::BTreeMap, fmt, net::IpAddr, time::SystemTime};

use anyhow::Result;
use lb_config::Config;
use log::{error, info, warn};
use serde::{Deserialize, Serialize};

use crate::{netlink::Netlink, service::Service};
use device::RouteDevice;

/// The `proto` of VIP routes. BIRD's kernel protocol does not learn routes whose protocol is
/// `kernel` (2) or `bird` (12); 201 is unassigned in iproute2's rt_protos.
pub const ROUTE_PROTOCOL: u8 = 201;

/// Why a VIP is not announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// These virtual services of the VIP are below their quorum.
    BelowQuorum(Vec<String>),
    /// The data plane does not serve it (the last update failed, or it has no table yet).
    NotLoaded(String),
    /// Health checks of these virtual services have not all run once yet: a starting
    /// director takes keepalived's view (up until checked) for forwarding, but attracts no
    /// traffic on it.
    NotChecked(Vec<String>),
    /// The claim it is forwarded under is not alive.
    ClaimNotAlive,
    /// These virtual services have no real server the data plane can forward to (every one
    /// is down, drained or not resolved to a MAC yet).
    NothingToForwardTo(Vec<String>),
    /// A clean stop is under way.
    Stopping,
    /// The route could not be added.
    RouteFailed(String),
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Withheld::BelowQuorum(services) => {
                write!(f, "below quorum: {}", services.join(", "))
            }
            Withheld::NotLoaded(why) => write!(f, "not in the data plane: {why}"),
            Withheld::NotChecked(services) => {
                write!(
                    f,
                    "waiting for the first health checks of {}",
                    services.join(", ")
                )
            }
            Withheld::NothingToForwardTo(services) => {
                write!(f, "no real server to forward to in {}", services.join(", "))
            }
            Withheld::ClaimNotAlive => f.write_str("the data plane's claim is not alive"),
            Withheld::Stopping => f.write_str("xlb is stopping"),
            Withheld::RouteFailed(why) => write!(f, "the route could not be added: {why}"),
        }
    }
}

/// Whether a VIP should be announced now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Announce,
    Withhold(Withheld),
}

/// What the daemon knows of one virtual service, for the verdicts.
pub struct ServiceState<'a> {
    pub service: &'a Service,
    pub quorum_up: bool,
    /// The data plane holds it.
    pub loaded: bool,
    /// Every real server with checkers has been checked at least once.
    pub checked: bool,
    /// Its table has a real server to forward to.
    pub forwards: bool,
}

/// The verdict of every announced VIP of `config`: announce while every virtual service of
/// the VIP has quorum, the data plane holds them all (`update` is the last update's outcome),
/// and the claim is alive.
pub fn verdicts(
    config: &Config,
    services: &[ServiceState<'_>],
    update: Result<(), &str>,
    claim_alive: bool,
) -> BTreeMap<IpAddr, Verdict> {
    config
        .global_defs
        .xlb_announce
        .iter()
        .map(|vip| {
            let address = vip.address;
            let own: Vec<&ServiceState> = services
                .iter()
                .filter(|s| s.service.vip.ip() == address)
                .collect();
            let name = |s: &ServiceState| format!("{} {}", s.service.protocol, s.service.vip);
            let verdict = if !claim_alive {
                Verdict::Withhold(Withheld::ClaimNotAlive)
            } else if let Err(e) = update {
                Verdict::Withhold(Withheld::NotLoaded(e.to_string()))
            } else if let Some(missing) = own.iter().find(|s| !s.loaded) {
                Verdict::Withhold(Withheld::NotLoaded(format!("{} not loaded", name(missing))))
            } else if own.iter().any(|s| !s.checked) {
                Verdict::Withhold(Withheld::NotChecked(
                    own.iter().filter(|s| !s.checked).map(|s| name(s)).collect(),
                ))
            } else if own.iter().any(|s| !s.quorum_up) {
                Verdict::Withhold(Withheld::BelowQuorum(
                    own.iter()
                        .filter(|s| !s.quorum_up)
                        .map(|s| name(s))
                        .collect(),
                ))
            } else if own.iter().any(|s| !s.forwards) {
                Verdict::Withhold(Withheld::NothingToForwardTo(
                    own.iter()
                        .filter(|s| !s.forwards)
                        .map(|s| name(s))
                        .collect(),
                ))
            } else if own.is_empty() {
                // `xlb check` refuses this; a reload keeps it refused.
                Verdict::Withhold(Withheld::NotLoaded("no virtual_server".to_string()))
            } else {
                Verdict::Announce
            };
            (address, verdict)
        })
        .collect()
}

/// One VIP as announced now.
#[derive(Clone, Debug)]
struct VipState {
    verdict: Verdict,
    /// The route is in the table.
    announced: bool,
    since: SystemTime,
}

impl VipState {
    /// Its route went behind xlb's back: not announced, with a verdict the next apply
    /// replaces (an announcing one adds the route again).
    fn lost(&mut self, why: &str) {
        if self.announced {
            self.announced = false;
            self.since = SystemTime::now();
            self.verdict = Verdict::Withhold(Withheld::RouteFailed(why.to_string()));
        }
    }
}

/// The announced VIPs' routes, through the device it holds open.
pub struct Announcer {
    netlink: Netlink,
    device: RouteDevice,
    table: u32,
    vips: BTreeMap<IpAddr, VipState>,
}

impl Announcer {
    /// Creates the route device and brings it up; nothing is announced yet.
    pub async fn start(netlink: Netlink, table: u32) -> Result<Self> {
        let device = RouteDevice::create()?;
        netlink.set_link_up(device.index).await?;
        info!(
            "announcing VIPs through {}: host routes in table {table}, proto {ROUTE_PROTOCOL}, \
             for BIRD's kernel protocol to learn",
            device.name
        );
        Ok(Self {
            netlink,
            device,
            table,
            vips: BTreeMap::new(),
        })
    }

    /// Brings the routes in line with the verdicts; a VIP not among them is withdrawn. A
    /// changed table moves every route.
    pub async fn apply(&mut self, table: u32, verdicts: BTreeMap<IpAddr, Verdict>) {
        if table != self.table {
            self.withdraw_all(Withheld::NotLoaded(format!("moving to table {table}")))
                .await;
            self.vips.clear();
            self.table = table;
        }
        let gone: Vec<IpAddr> = self
            .vips
            .keys()
            .filter(|a| !verdicts.contains_key(a))
            .copied()
            .collect();
        for address in gone {
            self.set(
                address,
                Verdict::Withhold(Withheld::NotLoaded("no longer in xlb_announce".to_string())),
            )
            .await;
            self.vips.remove(&address);
        }
        for (address, verdict) in verdicts {
            self.set(address, verdict).await;
        }
    }

    /// Withdraws every VIP (a clean stop, or a table change).
    pub async fn withdraw_all(&mut self, why: Withheld) {
        let addresses: Vec<IpAddr> = self.vips.keys().copied().collect();
        for address in addresses {
            self.set(address, Verdict::Withhold(why.clone())).await;
        }
    }

    /// Whether a verdict may change with no event to say so: a VIP waiting for its first
    /// health checks (a check that finds what was assumed sends none), or one whose route
    /// could not be added. The daemon looks again at its next tick.
    pub fn wants_another_look(&self) -> bool {
        self.vips.values().any(|v| {
            matches!(
                v.verdict,
                Verdict::Withhold(Withheld::NotChecked(_) | Withheld::RouteFailed(_))
            )
        })
    }

    /// Checks that what it announced is still in place: the device (an operator may delete
    /// it) and the routes (a `ip route flush table N` removes them). What is missing is
    /// marked not announced, and true returned so that the daemon applies its verdicts again,
    /// which adds it back.
    pub async fn verify(&mut self) -> bool {
        // The device first, announced or not: an add through a deleted one would fail forever.
        if !self.device.exists() {
            warn!(
                "{} was deleted under xlb: creating it again",
                self.device.name
            );
            match RouteDevice::create() {
                Ok(device) => {
                    if let Err(e) = self.netlink.set_link_up(device.index).await {
                        error!("{}: {e:#}", device.name);
                    }
                    self.device = device;
                }
                Err(e) => error!("{e:#}"),
            }
            for v in self.vips.values_mut() {
                v.lost("its device was deleted");
            }
            return true;
        }
        if !self.any_announced() {
            return false;
        }
        let present = match self.netlink.routes_via(self.device.index, self.table).await {
            Ok(present) => present,
            Err(e) => {
                warn!("checking the VIP routes: {e:#}");
                return false;
            }
        };
        let mut lost = false;
        for (address, v) in &mut self.vips {
            if v.announced && !present.contains(address) {
                warn!(
                    "the route to {address} was removed from table {} by someone else: adding \
                     it again",
                    self.table
                );
                v.lost("its route was removed");
                lost = true;
            }
        }
        lost
    }

    /// Whether any VIP is announced.
    pub fn any_announced(&self) -> bool {
        self.vips.values().any(|v| v.announced)
    }

    async fn set(&mut self, address: IpAddr, verdict: Verdict) {
        let current = self.vips.get(&address);
        let announced = current.is_some_and(|v| v.announced);
        if current.is_some_and(|v| v.verdict == verdict) {
            return;
        }
        let (index, table) = (self.device.index, self.table);
        let (verdict, now_announced) = match &verdict {
            Verdict::Announce => {
                match self
                    .netlink
                    .replace_host_route(address, index, table, ROUTE_PROTOCOL)
                    .await
                {
                    Ok(()) => {
                        info!(
                            "{address} announced: route in table {table} via {}",
                            self.device.name
                        );
                        (verdict, true)
                    }
                    Err(e) => {
                        error!("{address} not announced: {e:#}");
                        (
                            Verdict::Withhold(Withheld::RouteFailed(format!("{e:#}"))),
                            false,
                        )
                    }
                }
            }
            Verdict::Withhold(why) => {
                if announced {
                    match self
                        .netlink
                        .remove_host_route(address, index, table, ROUTE_PROTOCOL)
                        .await
                    {
                        Ok(()) => info!("{address} withdrawn: {why}"),
                        // The device goes with xlb anyway, and the route with it.
                        Err(e) => error!("{address} withdrawing ({why}): {e:#}"),
                    }
                } else if current.is_none() {
                    info!("{address} not announced: {why}");
                } else {
                    info!("{address} still not announced: {why}");
                }
                (verdict, false)
            }
        };
        let since = match current {
            Some(v) if v.announced == now_announced => v.since,
            _ => SystemTime::now(),
        };
        self.vips.insert(
            address,
            VipState {
                verdict,
                announced: now_announced,
                since,
            },
        );
    }

    /// What the status shows: each VIP, whether it is announced, and why not.
    pub fn status(&self, bird_socket: &str) -> AnnounceStatus {
        AnnounceStatus {
            table: self.table,
            device: self.device.name.clone(),
            route_protocol: ROUTE_PROTOCOL,
            bird_socket: bird_socket.to_string(),
            vips: self
                .vips
                .iter()
                .map(|(address, v)| AnnouncedVipStatus {
                    address: *address,
                    announced: v.announced,
                    why_not: match &v.verdict {
                        Verdict::Announce => None,
                        Verdict::Withhold(why) => Some(why.to_string()),
                    },
                    since: crate::status::unix_seconds(v.since),
                })
                .collect(),
            bird: Vec::new(),
            bird_error: None,
        }
    }
}

/// The announcement as `xlb status --json` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnnounceStatus {
    pub table: u32,
    /// The TUN device the routes go through (it lives as long as xlb).
    pub device: String,
    pub route_protocol: u8,
    pub bird_socket: String,
    pub vips: Vec<AnnouncedVipStatus>,
    /// BIRD's protocols, as `birdc show protocols` lists them.
    pub bird: Vec<bird::BirdProtocol>,
    /// Why BIRD could not be asked.
    pub bird_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnouncedVipStatus {
    pub address: IpAddr,
    pub announced: bool,
    /// Why it is not announced.
    pub why_not: Option<String>,
    /// Seconds since the epoch of the last change between announced and not.
    pub since: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "global_defs {\n  xlb_announce 10.96.0.100\n}\n\
        virtual_server 10.96.0.100 80 {\n  lb_kind DR\n  protocol TCP\n  real_server 10.0.0.11 80 {\n  }\n}\n\
        virtual_server 10.96.0.100 443 {\n  lb_kind DR\n  protocol TCP\n  real_server 10.0.0.11 443 {\n  }\n}\n\
        virtual_server 10.96.0.200 80 {\n  lb_kind DR\n  protocol TCP\n  real_server 10.0.0.11 80 {\n  }\n}\n";

    fn verdict_with(
        quorum: [bool; 3],
        loaded: [bool; 3],
        checked: [bool; 3],
        update: Result<(), &str>,
        claim_alive: bool,
    ) -> Verdict {
        verdict_forwarding(quorum, loaded, checked, [true; 3], update, claim_alive)
    }

    fn verdict_forwarding(
        quorum: [bool; 3],
        loaded: [bool; 3],
        checked: [bool; 3],
        forwards: [bool; 3],
        update: Result<(), &str>,
        claim_alive: bool,
    ) -> Verdict {
        let config = lb_config::parse_str(CONFIG, "test.conf")
            .expect("valid config")
            .config;
        let services = crate::health::configured(&config);
        let states: Vec<ServiceState> = services
            .iter()
            .enumerate()
            .map(|(i, service)| ServiceState {
                service,
                quorum_up: quorum[i],
                loaded: loaded[i],
                checked: checked[i],
                forwards: forwards[i],
            })
            .collect();
        let verdicts = verdicts(&config, &states, update, claim_alive);
        assert_eq!(verdicts.len(), 1, "only announced VIPs get a verdict");
        verdicts
            .into_values()
            .next()
            .expect("the announced VIP's verdict")
    }

    #[test]
    fn a_vip_is_announced_while_every_service_of_it_is_healthy_loaded_and_claimed() {
        let all = [true; 3];
        assert_eq!(verdict_with(all, all, all, Ok(()), true), Verdict::Announce);
        // Another VIP's service below quorum does not matter.
        assert_eq!(
            verdict_with([true, true, false], all, all, Ok(()), true),
            Verdict::Announce
        );
        assert_eq!(
            verdict_with([true, false, true], all, all, Ok(()), true),
            Verdict::Withhold(Withheld::BelowQuorum(vec!["TCP 10.96.0.100:443".into()]))
        );
        assert_eq!(
            verdict_with(all, [false, true, true], all, Ok(()), true),
            Verdict::Withhold(Withheld::NotLoaded("TCP 10.96.0.100:80 not loaded".into()))
        );
        assert_eq!(
            verdict_with(all, all, [true, false, true], Ok(()), true),
            Verdict::Withhold(Withheld::NotChecked(vec!["TCP 10.96.0.100:443".into()]))
        );
        assert_eq!(
            verdict_with(all, all, all, Err("map full"), true),
            Verdict::Withhold(Withheld::NotLoaded("map full".into()))
        );
        assert_eq!(
            verdict_with(all, all, all, Ok(()), false),
            Verdict::Withhold(Withheld::ClaimNotAlive)
        );
        assert_eq!(
            verdict_forwarding(all, all, all, [false, true, true], Ok(()), true),
            Verdict::Withhold(Withheld::NothingToForwardTo(vec![
                "TCP 10.96.0.100:80".into()
            ]))
        );
    }
}
