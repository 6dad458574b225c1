//! Checks that need the whole configuration: references between blocks,
//! duplicates, and what xlb can and cannot forward.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use crate::diagnostic::{Diags, Span};
use crate::interpret::Declared;
use crate::model::{AddressFamily, Config, LbAlgo, LbKind, Origin, VirtualServer};

pub(crate) fn validate(config: &Config, declared: &Declared, diags: &mut Diags) {
    unique_names(config, diags);
    vrrp_references(config, declared, diags);
    unique_vrids(config, diags);
    unique_servers(config, diags);
    nat_real_servers_serve_one_service(config, diags);
    schedulers(config, diags);
    nat_gateway(config, diags);
    announced_vips(config, diags);
}

/// A NAT real server's replies must come back through the director that holds the VIP: with
/// VRRP, its default gateway is a virtual address that moves with the VIP (seed 003's second
/// instance on the real servers' side, in a sync group). A config whose VRRP addresses are all
/// virtual servers' own has no such gateway: said once, at the first NAT virtual server.
fn nat_gateway(config: &Config, diags: &mut Diags) {
    let Some(first) = config
        .virtual_servers
        .iter()
        .find(|vs| vs.lb_kind == LbKind::Nat)
    else {
        return;
    };
    if config.vrrp_instances.is_empty() {
        return;
    }
    let services: std::collections::BTreeSet<IpAddr> =
        config.virtual_servers.iter().map(|vs| vs.address).collect();
    let gateway = config.vrrp_instances.iter().any(|i| {
        i.virtual_ipaddress
            .iter()
            .chain(&i.virtual_ipaddress_excluded)
            .any(|a| !services.contains(&a.address))
    });
    if gateway {
        return;
    }
    if let Some(span) = at(&first.origin) {
        diags.warn(
            span,
            format!(
                "found NAT `virtual_server {} {}` and no VRRP virtual address besides the virtual \
                 servers' own: NAT real servers must send replies through the director that \
                 holds the VIP, so their default gateway should be a virtual_ipaddress that moves \
                 with it (a vrrp_instance on the real servers' side, in a vrrp_sync_group with \
                 the VIP's); with a fixed gateway, replies after a failover reach a director that \
                 no longer serves",
                first.address, first.port
            ),
        );
    }
}

/// Every scheduler is served by weighted Maglev: said once per file, at its first virtual
/// server with another `lb_algo` (written, or keepalived's default), naming the others.
fn schedulers(config: &Config, diags: &mut Diags) {
    let mut by_file: BTreeMap<&str, Vec<&VirtualServer>> = BTreeMap::new();
    for vs in config
        .virtual_servers
        .iter()
        .filter(|vs| vs.lb_algo != LbAlgo::Mh)
    {
        let file = at(&vs.lb_algo_origin)
            .or(at(&vs.origin))
            .map(|s| &*s.file)
            .unwrap_or_default();
        by_file.entry(file).or_default().push(vs);
    }
    for servers in by_file.values() {
        let first = servers[0];
        let Some(span) = at(&first.lb_algo_origin).or(at(&first.origin)) else {
            continue;
        };
        let what = if first.lb_algo_origin.span().is_some() {
            format!("`lb_algo {}`", first.lb_algo.name())
        } else {
            format!("keepalived's default `lb_algo {}`", first.lb_algo.name())
        };
        let others = match servers.len() - 1 {
            0 => String::new(),
            1 => " (and that of 1 more virtual server in this file)".to_string(),
            n => format!(" (and those of {n} more virtual servers in this file)"),
        };
        diags.warn(
            span,
            format!(
                "{what}{others} is served by weighted consistent hashing (Maglev) in xlb: on the \
                 connection, or on the client address with persistence_timeout or lb_algo sh; \
                 write `lb_algo mh` to silence this"
            ),
        );
    }
}

/// An announced VIP (`xlb_announce`) is served active-active: every director that announces it
/// gets a share of its flows from the routers. VRRP serves a VIP active-standby, by one
/// director: both at once would have the standby's share of flows arrive where its claim is
/// off, so a VIP is one or the other. And announcing an address no virtual_server serves would
/// attract traffic the data plane passes to the kernel.
fn announced_vips(config: &Config, diags: &mut Diags) {
    let mut seen: BTreeMap<IpAddr, &Origin> = BTreeMap::new();
    for vip in &config.global_defs.xlb_announce {
        let Some(span) = at(&vip.origin) else {
            continue;
        };
        if let Some(first) = seen.get(&vip.address) {
            let where_first = at(first).map(|s| format!(" (at {s})")).unwrap_or_default();
            diags.error(
                span,
                format!(
                    "found `xlb_announce {}` a second time{where_first}, expected each VIP once",
                    vip.address
                ),
            );
            continue;
        }
        seen.insert(vip.address, &vip.origin);
        let holder = config.vrrp_instances.iter().find(|vi| {
            vi.virtual_ipaddress
                .iter()
                .chain(&vi.virtual_ipaddress_excluded)
                .any(|a| a.address == vip.address)
        });
        if let Some(vi) = holder {
            let where_vi = at(&vi.origin)
                .map(|s| format!(" (at {s})"))
                .unwrap_or_default();
            diags.error(
                span,
                format!(
                    "found `xlb_announce {}` and the same address in vrrp_instance {}{where_vi}, \
                     expected one of them: a VIP is served either by VRRP (one director, \
                     active-standby) or by announcing it to routers (every healthy director, \
                     active-active), not both",
                    vip.address, vi.name
                ),
            );
            continue;
        }
        if !config
            .virtual_servers
            .iter()
            .any(|vs| vs.address == vip.address)
        {
            diags.error(
                span,
                format!(
                    "found `xlb_announce {}`, expected the address of a virtual_server: routers \
                     would send this director traffic it does not forward",
                    vip.address
                ),
            );
        }
    }
}

/// A NAT director tells replies apart by the real server's address, port and protocol alone
/// (so that a director that takes over translates replies of connections it never saw): a real
/// server of two NAT services could not be answered for.
fn nat_real_servers_serve_one_service(config: &Config, diags: &mut Diags) {
    let mut first: BTreeMap<(IpAddr, u16, crate::model::Protocol), (&VirtualServer, &Origin)> =
        BTreeMap::new();
    for vs in config
        .virtual_servers
        .iter()
        .filter(|vs| vs.lb_kind == LbKind::Nat)
    {
        for rs in &vs.real_servers {
            match first.entry((rs.address, rs.port, vs.protocol)) {
                Entry::Vacant(slot) => {
                    slot.insert((vs, &rs.origin));
                }
                Entry::Occupied(seen) => {
                    let (other, other_at) = *seen.get();
                    if std::ptr::eq(other, vs) {
                        continue; // a duplicate real server, reported as such
                    }
                    if let Some(span) = at(&rs.origin) {
                        let where_first = at(other_at)
                            .map(|s| format!(" (at {s})"))
                            .unwrap_or_default();
                        diags.error(
                            span,
                            format!(
                                "found `real_server {} {}` in NAT `virtual_server {} {}` and in \
                                 NAT `virtual_server {} {}`{where_first}, expected it in one: \
                                 replies are translated by the real server's address and port \
                                 alone; give it another port for one of them",
                                rs.address, rs.port, vs.address, vs.port, other.address, other.port
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn at(origin: &Origin) -> Option<&Span> {
    origin.span()
}

/// Reports every item whose key was already seen, naming the first one.
///
/// `what` names an item in the message; it is displayed only for a duplicate,
/// so callers pass a [`fmt::from_fn`] rather than format one for every item.
///
/// Keys are kept ordered rather than hashed: the keys are small (an address
/// and a port), a B-tree compares them in a few nanoseconds where SipHash
/// takes longer, and a small map (the real servers of one service) is one
/// allocation. Unlike a fast non-keyed hash, no key set written into a
/// configuration can make it quadratic.
fn report_duplicates<'a, K: Ord, D: fmt::Display>(
    items: impl Iterator<Item = (K, &'a Origin, D)>,
    diags: &mut Diags,
) {
    let mut seen: BTreeMap<K, Option<&Span>> = BTreeMap::new();
    for (key, origin, what) in items {
        match seen.entry(key) {
            Entry::Occupied(first) => {
                if let Some(span) = at(origin) {
                    let first = first
                        .get()
                        .map(|s| format!(" (first at {s})"))
                        .unwrap_or_default();
                    diags.error(
                        span,
                        format!("found a second {what}, expected it once{first}"),
                    );
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(at(origin));
            }
        }
    }
}

fn unique_names(config: &Config, diags: &mut Diags) {
    report_duplicates(
        config.vrrp_scripts.iter().map(|s| {
            (
                s.name.as_str(),
                &s.origin,
                format!("`vrrp_script {}`", s.name),
            )
        }),
        diags,
    );
    report_duplicates(
        config.vrrp_instances.iter().map(|i| {
            (
                i.name.as_str(),
                &i.origin,
                format!("`vrrp_instance {}`", i.name),
            )
        }),
        diags,
    );
    report_duplicates(
        config.vrrp_sync_groups.iter().map(|g| {
            (
                g.name.as_str(),
                &g.origin,
                format!("`vrrp_sync_group {}`", g.name),
            )
        }),
        diags,
    );
    report_duplicates(
        config.virtual_server_groups.iter().map(|g| {
            (
                g.name.as_str(),
                &g.origin,
                format!("`virtual_server_group {}`", g.name),
            )
        }),
        diags,
    );
}

fn vrrp_references(config: &Config, declared: &Declared, diags: &mut Diags) {
    for instance in &config.vrrp_instances {
        for track in &instance.track_script {
            if !declared.vrrp_scripts.contains(&track.name)
                && let Some(span) = at(&track.origin)
            {
                diags.error(
                        span,
                        format!(
                            "found `{}` in track_script of `vrrp_instance {}`, expected the name of a vrrp_script",
                            track.name, instance.name
                        ),
                    );
            }
        }
    }
    // keepalived allows an instance in one sync group only.
    let mut member_of: HashMap<&str, &str> = HashMap::new();
    for group in &config.vrrp_sync_groups {
        for member in &group.group {
            let Some(span) = at(&member.origin) else {
                continue;
            };
            if !declared.vrrp_instances.contains(&member.name) {
                diags.error(
                    span,
                    format!(
                        "found `{}` in `vrrp_sync_group {}`, expected the name of a vrrp_instance",
                        member.name, group.name
                    ),
                );
            } else if let Some(other) = member_of.insert(&member.name, &group.name) {
                diags.error(
                    span,
                    format!(
                        "found `{}` in `vrrp_sync_group {}` although it is already in `{other}`, \
                         expected an instance in one sync group only",
                        member.name, group.name
                    ),
                );
            }
        }
    }
}

/// Two instances with one VRID on one link would answer each other's adverts.
fn unique_vrids(config: &Config, diags: &mut Diags) {
    report_duplicates(
        config.vrrp_instances.iter().map(|i| {
            let family = match i.family() {
                AddressFamily::Ipv4 => "IPv4",
                AddressFamily::Ipv6 => "IPv6",
            };
            (
                (i.interface.as_str(), i.family(), i.version, i.virtual_router_id),
                &i.virtual_router_id_origin,
                format!(
                    "`virtual_router_id {}` on interface {} for {family} VRRPv{} (in `vrrp_instance {}`)",
                    i.virtual_router_id, i.interface, i.version, i.name
                ),
            )
        }),
        diags,
    );
}

/// What xlb can forward: DR and NAT (not TUN), and always Maglev hashing. Called by the
/// interpreter for every virtual server, even one whose header has errors; `nat_said` when
/// it already said why keepalived's default NAT applies.
pub(crate) fn forwarding(vs: &VirtualServer, diags: &mut Diags, nat_said: bool) {
    let kind_at = at(&vs.lb_kind_origin).or(at(&vs.origin));
    if let Some(span) = kind_at.filter(|_| !nat_said) {
        let explicit = vs.lb_kind_origin.span().is_some();
        match vs.lb_kind {
            LbKind::Dr => {}
            LbKind::Nat if explicit => {}
            LbKind::Nat => diags.warn(
                span,
                format!(
                    "found no `lb_kind` in `virtual_server {} {}`: keepalived's default NAT \
                     applies (replies must come back through this director); write `lb_kind \
                     NAT` or `lb_kind DR` to silence this",
                    vs.address, vs.port
                ),
            ),
            kind if explicit => diags.error(
                span,
                format!(
                    "found `lb_kind {}`, expected `lb_kind DR` or `lb_kind NAT`: lb_kind {} \
                     is not supported yet",
                    kind.name(),
                    kind.name()
                ),
            ),
            kind => diags.error(
                span,
                format!(
                    "found no `lb_kind` in `virtual_server {} {}`, so keepalived's default {} \
                     applies; expected `lb_kind DR` or `lb_kind NAT`: lb_kind {} is not \
                     supported yet",
                    vs.address,
                    vs.port,
                    kind.name(),
                    kind.name()
                ),
            ),
        }
    }
}

fn unique_servers(config: &Config, diags: &mut Diags) {
    report_duplicates(
        config.virtual_servers.iter().map(|vs| {
            (
                (vs.address, vs.port, vs.protocol),
                &vs.origin,
                fmt::from_fn(move |f| {
                    write!(
                        f,
                        "`virtual_server {} {}` ({})",
                        vs.address,
                        vs.port,
                        vs.protocol.name()
                    )
                }),
            )
        }),
        diags,
    );
    for vs in &config.virtual_servers {
        report_duplicates(
            vs.real_servers.iter().map(|rs| {
                (
                    (rs.address, rs.port),
                    &rs.origin,
                    fmt::from_fn(move |f| {
                        write!(
                            f,
                            "`real_server {} {}` in `virtual_server {} {}`",
                            rs.address, rs.port, vs.address, vs.port
                        )
                    }),
                )
            }),
            diags,
        );
        let family = AddressFamily::of(&vs.address);
        for rs in &vs.real_servers {
            // DR rewrites only the MAC address: the packet keeps the VIP's port.
            if vs.lb_kind == LbKind::Dr
                && rs.port != vs.port
                && let Some(span) = at(&rs.origin)
            {
                diags.warn(
                        span,
                        format!(
                            "`real_server {} {}` in `virtual_server {} {}`: with DR forwarding \
                             clients reach port {} of the real server; port {} is used by health checks only",
                            rs.address, rs.port, vs.address, vs.port, vs.port, rs.port
                        ),
                    );
            }
            if AddressFamily::of(&rs.address) != family
                && let Some(span) = at(&rs.origin)
            {
                diags.error(
                    span,
                    format!(
                        "found {} real server {} in `virtual_server {} {}`, expected {}: \
                             xlb keeps the packet's address family",
                        family_name(&rs.address),
                        rs.address,
                        vs.address,
                        vs.port,
                        family_name(&vs.address)
                    ),
                );
            }
        }
    }
}

fn family_name(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "an IPv4" } else { "an IPv6" }
}
