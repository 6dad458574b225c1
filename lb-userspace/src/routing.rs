//! Routes and rules of the config over rtnetlink: `static_routes`/`static_rules` (and
//! `static_ipaddress`), added when xlb starts and removed when it stops, as keepalived does,
//! and an instance's `virtual_routes`/`virtual_rules`, which the VRRP thread adds on becoming
//! MASTER and removes on leaving it.
//!
//! Adding is idempotent (a restart finds its routes and rules in place): a route replaces the
//! one of the same destination, table, metric and type; a rule already there is kept. Removing
//! what is not there is fine.

use std::net::IpAddr;

use anyhow::{Context as _, Result};
use lb_config::{Config, Route, RouteType, Rule, RuleAction, VirtualIpAddress};
use log::{error, info};
use rtnetlink::{
    RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        route::{RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType as Kind},
        rule::{RuleAction as Action, RuleAttribute, RuleMessage},
    },
};

use crate::netlink::Netlink;

/// keepalived's protocol number on the routes and rules it tracks (RTPROT_KEEPALIVED), so
/// `ip route show proto keepalived` lists them; `no_track` ones are left `boot`, as `ip` adds.
const PROTOCOL_KEEPALIVED: u8 = 18;

fn protocol(no_track: bool) -> RouteProtocol {
    if no_track {
        RouteProtocol::Boot
    } else {
        RouteProtocol::Other(PROTOCOL_KEEPALIVED)
    }
}

async fn route_message(netlink: &Netlink, r: &Route) -> Result<RouteMessage> {
    let invalid = |e| anyhow::anyhow!("route {r}: {e}");
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dest.address, r.dest.len)
        .map_err(invalid)?
        .table_id(r.table)
        .protocol(protocol(r.no_track))
        .kind(match r.kind {
            RouteType::Unicast => Kind::Unicast,
            RouteType::Blackhole => Kind::BlackHole,
            RouteType::Unreachable => Kind::Unreachable,
            RouteType::Prohibit => Kind::Prohibit,
            RouteType::Throw => Kind::Throw,
        });
    if let Some(via) = r.via {
        b = b.gateway(via).map_err(invalid)?;
    }
    if let Some(dev) = &r.dev {
        let index = netlink.interface(dev).await?.index;
        b = b.output_interface(index);
    }
    if let Some(src) = r.src {
        b = b.pref_source(src).map_err(invalid)?;
    }
    if let Some(m) = r.metric {
        b = b.priority(m);
    }
    if let Some(scope) = r.scope {
        b = b.scope(RouteScope::from(scope));
    }
    if r.onlink {
        b = b.onlink();
    }
    Ok(b.build())
}

/// `ip route replace ...`.
pub async fn add_route(netlink: &Netlink, r: &Route) -> Result<()> {
    let msg = route_message(netlink, r).await?;
    netlink
        .handle()
        .route()
        .add(msg)
        .replace()
        .execute()
        .await
        .with_context(|| format!("adding route {r}"))
}

/// `ip route del ...`; already gone is fine.
pub async fn remove_route(netlink: &Netlink, r: &Route) -> Result<()> {
    let msg = route_message(netlink, r).await?;
    match netlink.handle().route().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ESRCH) || is_errno(&e, libc::ENODEV) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing route {r}")),
    }
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| c.get()) == Some(-errno))
}

fn rule_message(r: &Rule) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = match r.family {
        lb_config::AddressFamily::Ipv4 => AddressFamily::Inet,
        lb_config::AddressFamily::Ipv6 => AddressFamily::Inet6,
    };
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    if let Some(from) = &r.from {
        msg.header.src_len = from.len;
        msg.attributes.push(RuleAttribute::Source(from.address));
    }
    if let Some(to) = &r.to {
        msg.header.dst_len = to.len;
        msg.attributes.push(RuleAttribute::Destination(to.address));
    }
    msg.header.action = match r.action {
        RuleAction::Table(t) => {
            // Tables above 255 only fit the attribute; the kernel reads it first anyway.
            match u8::try_from(t) {
                Ok(small) => msg.header.table = small,
                Err(_) => msg.attributes.push(RuleAttribute::Table(t)),
            }
            Action::ToTable
        }
        RuleAction::Blackhole => Action::Blackhole,
        RuleAction::Unreachable => Action::Unreachable,
        RuleAction::Prohibit => Action::Prohibit,
    };
    msg.attributes.push(RuleAttribute::Priority(r.priority));
    if let Some(m) = &r.fwmark {
        msg.attributes.push(RuleAttribute::FwMark(m.mark));
        if let Some(mask) = m.mask {
            msg.attributes.push(RuleAttribute::FwMask(mask));
        }
    }
    if let Some(i) = &r.iif {
        msg.attributes.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(o) = &r.oif {
        msg.attributes.push(RuleAttribute::Oifname(o.clone()));
    }
    msg.attributes
        .push(RuleAttribute::Protocol(protocol(r.no_track)));
    msg
}

/// `ip rule add ...`; the same rule already there is kept (the kernel would add a second one
/// without NLM_F_EXCL, so the request is exclusive and EEXIST is success).
pub async fn add_rule(netlink: &Netlink, r: &Rule) -> Result<()> {
    let mut req = netlink.handle().rule().add();
    *req.message_mut() = rule_message(r);
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("adding rule {r}")),
    }
}

/// `ip rule del ...`; already gone is fine.
pub async fn remove_rule(netlink: &Netlink, r: &Rule) -> Result<()> {
    match netlink.handle().rule().del(rule_message(r)).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENOENT) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing rule {r}")),
    }
}

/// Adds routes then rules (a rule may send traffic to a table the routes fill); errors are
/// logged with `who` and the rest still added, as keepalived does.
pub async fn add_all(netlink: &Netlink, who: &str, routes: &[Route], rules: &[Rule]) {
    for r in routes {
        if let Err(e) = add_route(netlink, r).await {
            error!("{who} {e:#}");
        }
    }
    for r in rules {
        if let Err(e) = add_rule(netlink, r).await {
            error!("{who} {e:#}");
        }
    }
}

/// Removes rules then routes, the reverse of [`add_all`].
pub async fn remove_all(netlink: &Netlink, who: &str, routes: &[Route], rules: &[Rule]) {
    for r in rules {
        if let Err(e) = remove_rule(netlink, r).await {
            error!("{who} {e:#}");
        }
    }
    for r in routes {
        if let Err(e) = remove_route(netlink, r).await {
            error!("{who} {e:#}");
        }
    }
}

async fn add_addresses(netlink: &Netlink, addresses: &[VirtualIpAddress]) {
    for a in addresses {
        let added = match netlink.interface(&a.dev).await {
            Ok(dev) => {
                netlink
                    .add_address(dev.index, a.address, a.prefix_len, a.label.as_deref())
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = added {
            error!("static_ipaddress {}/{}: {e:#}", a.address, a.prefix_len);
        }
    }
}

async fn remove_addresses(netlink: &Netlink, addresses: &[VirtualIpAddress]) {
    for a in addresses {
        let removed = match netlink.interface(&a.dev).await {
            Ok(dev) => {
                netlink
                    .remove_address(dev.index, a.address, a.prefix_len)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            error!("static_ipaddress {}/{}: {e:#}", a.address, a.prefix_len);
        }
    }
}

fn has_static(c: &Config) -> bool {
    !(c.static_ipaddress.is_empty() && c.static_routes.is_empty() && c.static_rules.is_empty())
}

/// At start: static addresses, then routes (their `src` may be one of the addresses), then
/// rules.
pub async fn add_static(netlink: &Netlink, c: &Config) {
    if !has_static(c) {
        return;
    }
    info!(
        "adding {} static address(es), {} static route(s), {} static rule(s)",
        c.static_ipaddress.len(),
        c.static_routes.len(),
        c.static_rules.len()
    );
    apply_static(netlink, c).await;
}

async fn apply_static(netlink: &Netlink, c: &Config) {
    add_addresses(netlink, &c.static_ipaddress).await;
    add_all(netlink, "static:", &c.static_routes, &c.static_rules).await;
}

/// At a clean stop, as keepalived: rules, routes, then addresses.
pub async fn remove_static(netlink: &Netlink, c: &Config) {
    if !has_static(c) {
        return;
    }
    info!("removing the static addresses, routes and rules");
    remove_all(netlink, "static:", &c.static_routes, &c.static_rules).await;
    remove_addresses(netlink, &c.static_ipaddress).await;
}

/// At a reload, as keepalived: what the new config no longer has is removed, the rest added
/// again (already there is fine).
pub async fn reload_static(netlink: &Netlink, old: &Config, new: &Config) {
    let gone_rules: Vec<Rule> = old
        .static_rules
        .iter()
        .filter(|r| !new.static_rules.contains(r))
        .cloned()
        .collect();
    let gone_routes: Vec<Route> = old
        .static_routes
        .iter()
        .filter(|r| !new.static_routes.contains(r))
        .cloned()
        .collect();
    let gone_addresses: Vec<VirtualIpAddress> = old
        .static_ipaddress
        .iter()
        .filter(|a| !new.static_ipaddress.contains(a))
        .cloned()
        .collect();
    remove_all(netlink, "static:", &gone_routes, &gone_rules).await;
    remove_addresses(netlink, &gone_addresses).await;
    // All of them again, not only the new ones: one deleted by hand since comes back, as
    // keepalived's reload does. The reload's answer lists what changed.
    apply_static(netlink, new).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        let conf = format!("static_rules {{\n    {text}\n}}\n");
        lb_config::parse_str(&conf, "k.conf")
            .expect("valid")
            .config
            .static_rules
            .remove(0)
    }

    #[test]
    fn rules_carry_their_table_where_the_kernel_reads_it() {
        let small = rule_message(&rule("from 10.0.0.0/8 table 7 priority 5"));
        assert_eq!(small.header.table, 7);
        assert_eq!(small.header.src_len, 8);
        assert_eq!(small.header.action, Action::ToTable);
        assert!(
            !small
                .attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Table(_)))
        );
        // Tables above 255 fit the attribute only.
        let large = rule_message(&rule("to 10.1.0.0/16 table 1000 priority 6"));
        assert_eq!(large.header.table, RouteHeader::RT_TABLE_UNSPEC);
        assert_eq!(large.header.dst_len, 16);
        assert!(large.attributes.contains(&RuleAttribute::Table(1000)));
    }

    #[test]
    fn rules_say_who_added_them_and_match_marks_and_interfaces() {
        let m = rule_message(&rule(
            "fwmark 0x10/0xff iif eth1 oif eth2 blackhole priority 9",
        ));
        assert_eq!(m.header.action, Action::Blackhole);
        for attr in [
            RuleAttribute::FwMark(16),
            RuleAttribute::FwMask(255),
            RuleAttribute::Iifname("eth1".into()),
            RuleAttribute::Oifname("eth2".into()),
            RuleAttribute::Priority(9),
            RuleAttribute::Protocol(RouteProtocol::Other(PROTOCOL_KEEPALIVED)),
        ] {
            assert!(m.attributes.contains(&attr), "{attr:?} in {m:?}");
        }
        let untracked = rule_message(&rule("inet6 fwmark 1 table 3 priority 2 no_track"));
        assert_eq!(untracked.header.family, AddressFamily::Inet6);
        assert!(
            untracked
                .attributes
                .contains(&RuleAttribute::Protocol(RouteProtocol::Boot))
        );
    }
}
