//! How frames reach each backend: looked up in the kernel's routes and neighbours, again at
//! every tick (a MAC can change; a missing one is probed until the kernel learns it).

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_config::Config;
use log::{info, warn};

use crate::{
    netlink::{Interface, Netlink},
    service::BackendPath,
};

/// A backend that stays unresolved is reported again this often, not at every lookup.
const UNRESOLVED_REPEAT: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(super) struct BackendPaths {
    paths: HashMap<IpAddr, BackendPath>,
    /// When each unresolved backend was last reported.
    reported: HashMap<IpAddr, Instant>,
    /// The interfaces served (XDP attached, in the devmap).
    served: Vec<u32>,
}

impl BackendPaths {
    /// Paths out of the interfaces (ifindexes) this xlb serves: the only ones its frames can
    /// leave by.
    pub fn serving(served: Vec<u32>) -> Self {
        Self {
            served,
            ..Self::default()
        }
    }

    pub fn map(&self) -> &HashMap<IpAddr, BackendPath> {
        &self.paths
    }

    pub fn is_resolved(&self, ip: &IpAddr) -> bool {
        self.paths.contains_key(ip)
    }

    /// Looks backends up (`only_new`: those not resolved yet); whether any path changed.
    pub async fn refresh(
        &mut self,
        netlink: &Netlink,
        iface: &Interface,
        ips: &BTreeSet<IpAddr>,
        only_new: bool,
    ) -> bool {
        let before = self.paths.clone();
        self.paths.retain(|ip, _| ips.contains(ip));
        self.reported.retain(|ip, _| ips.contains(ip));
        for &ip in ips {
            if only_new && self.paths.contains_key(&ip) {
                continue;
            }
            let path = lookup(netlink, iface, &self.served, ip).await;
            match (path, self.paths.get(&ip).copied()) {
                (Ok(Some(new)), old) if old != Some(new) => {
                    info!(
                        "backend {ip} is at {} on ifindex {}",
                        fmt_mac(&new.mac),
                        new.ifindex
                    );
                    self.paths.insert(ip, new);
                    self.reported.remove(&ip);
                }
                (Ok(Some(_)), _) => {}
                (Ok(None), old) => {
                    if old.is_some() || self.due(ip) {
                        warn!(
                            "backend {ip}: no neighbour entry yet, probing; it gets no traffic \
                             until resolved (repeated every {} s while it lasts)",
                            UNRESOLVED_REPEAT.as_secs()
                        );
                    }
                    self.paths.remove(&ip);
                }
                (Err(e), old) => {
                    if old.is_some() {
                        warn!("backend {ip} is unreachable, removing it: {e:#}");
                    } else if self.due(ip) {
                        warn!("backend {ip} is unreachable: {e:#}");
                    }
                    self.paths.remove(&ip);
                }
            }
        }
        self.paths != before
    }

    /// Whether an unresolved backend is to be reported now (first time, or again after
    /// [`UNRESOLVED_REPEAT`]).
    fn due(&mut self, ip: IpAddr) -> bool {
        let now = Instant::now();
        match self.reported.get(&ip) {
            Some(at) if now.duration_since(*at) < UNRESOLVED_REPEAT => false,
            _ => {
                self.reported.insert(ip, now);
                true
            }
        }
    }
}

async fn lookup(
    netlink: &Netlink,
    iface: &Interface,
    served: &[u32],
    ip: IpAddr,
) -> anyhow::Result<Option<BackendPath>> {
    let Some(n) = netlink.resolve(ip).await? else {
        return Ok(None);
    };
    // Frames for it could only be dropped at the redirect (the devmap has no such port).
    if !served.is_empty() && !served.contains(&n.ifindex) {
        let name = netlink
            .interface_by_index(n.ifindex)
            .await
            .map(|i| i.name)
            .unwrap_or_else(|_| format!("ifindex {}", n.ifindex));
        anyhow::bail!(
            "its route leaves by {name}, which this xlb does not serve; it gets no traffic \
             (add `--also-interface {name}`, or route it through a served interface)"
        );
    }
    let src_mac = if n.ifindex == iface.index {
        iface.mac
    } else {
        netlink.interface_by_index(n.ifindex).await?.mac
    };
    Ok(Some(BackendPath {
        ifindex: n.ifindex,
        mac: n.mac,
        src_mac,
    }))
}

/// Every address frames may have to reach: real servers and sorry servers, so that a sorry
/// server is ready before the quorum is lost.
pub(super) fn backend_ips(config: &Config) -> BTreeSet<IpAddr> {
    config
        .virtual_servers
        .iter()
        .flat_map(|vs| {
            vs.real_servers
                .iter()
                .map(|rs| rs.address)
                .chain(vs.sorry_server.as_ref().map(|s| s.address))
        })
        .collect()
}

fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
