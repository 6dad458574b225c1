//! `virtual_server_group NAME { ... }` and `virtual_server group NAME { ... }`: one virtual
//! service per address and port of the group, each with the virtual_server's settings, so the
//! rest of xlb sees ordinary virtual servers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{GroupEntry, VirtualServer, VirtualServerGroup, ip_number};
use crate::syntax::Statement;

use super::Reader;
use super::checkers::TrackFiles;
use super::lvs::{self, FWMARK_WHY};
use super::unknown;
use super::values::parse_uint;

/// Addresses of one group at most: a service each, and xlb serves no more services than this
/// (`lb_common::MAX_SERVICES`); a larger range (a /16) is a mistake, refused before it is
/// expanded.
pub(crate) const MAX_GROUP_ADDRESSES: u128 = lb_common::MAX_SERVICES as u128;

const ENTRY_EXPECTED: &str = "`IP PORT`, `IP-LAST PORT` (10.0.0.1-10 or 10.0.0.1-10.0.0.10) or \
     `IP/LEN PORT`";

pub(super) fn virtual_server_group(
    r: &mut Reader<'_>,
    st: &Statement,
) -> Option<VirtualServerGroup> {
    if r.needs_block(st) {
        return None;
    }
    let Some(name) = st.args.first() else {
        r.missing(st, "the virtual_server_group's name");
        return None;
    };
    r.extra_args(st, 1);
    let context = format!("virtual_server_group {}", name.text);
    let mut entries = Vec::new();
    let mut total: u128 = 0;
    for entry in r.block(st) {
        r.list_entry(entry);
        if entry.keyword == "fwmark" {
            r.diags.error(
                entry.span,
                format!("found `fwmark` in `{context}`, expected {ENTRY_EXPECTED}: {FWMARK_WHY}"),
            );
            continue;
        }
        let Some(e) = group_entry(r, entry, &context) else {
            continue;
        };
        total = total.saturating_add(e.count());
        if total > MAX_GROUP_ADDRESSES {
            r.diags.error(
                entry.span,
                format!(
                    "found `{context}` holding {total} addresses so far, expected at most \
                     {MAX_GROUP_ADDRESSES}: each is a virtual service, and xlb serves at most \
                     {MAX_GROUP_ADDRESSES}"
                ),
            );
            return None;
        }
        entries.push(e);
    }
    if entries.is_empty() {
        // keepalived: "virtual server group %s has no entries - removing".
        r.diags.tolerate(
            st.span,
            format!(
                "found no entry in `{context}`, expected {ENTRY_EXPECTED}: keepalived removes \
                 the group, and so does xlb"
            ),
        );
        return None;
    }
    Some(VirtualServerGroup {
        name: name.text.to_string(),
        entries,
        origin: r.origin(st.span),
    })
}

/// One line of a group, keepalived's three forms of a range: `A.B.C.D-E` (the last byte, or
/// with IPv6 the last 16-bit group in hex), `FIRST-LAST`, and `NET/LEN` (every address of the
/// prefix, host bits clear).
fn group_entry(r: &mut Reader<'_>, st: &Statement, context: &str) -> Option<GroupEntry> {
    let text = st.keyword;
    let bad = |r: &mut Reader<'_>, why: &str| {
        r.diags.error(
            st.span,
            format!("found `{text}` in `{context}`, expected {ENTRY_EXPECTED}{why}"),
        );
    };
    let (first, last) = if let Some((addr, len)) = text.split_once('/') {
        let Ok(first) = addr.parse::<IpAddr>() else {
            bad(r, "");
            return None;
        };
        let max: u32 = if first.is_ipv4() { 32 } else { 128 };
        let Some(len) = parse_uint(len)
            .and_then(|l| u32::try_from(l).ok())
            .filter(|l| (1..=max).contains(l))
        else {
            bad(r, &format!(": a prefix length 1..{max}"));
            return None;
        };
        let host_bits = if len == max {
            0
        } else {
            u128::MAX >> (128 - (max - len))
        };
        if ip_number(first) & host_bits != 0 {
            bad(
                r,
                ": the address of a prefix has its host bits clear, as keepalived requires",
            );
            return None;
        }
        (first, from_number(first, ip_number(first) | host_bits))
    } else if let Some((addr, end)) = text.split_once('-') {
        let Ok(first) = addr.parse::<IpAddr>() else {
            bad(r, "");
            return None;
        };
        let full = if first.is_ipv4() {
            end.contains('.')
        } else {
            end.contains(':')
        };
        let last = if full {
            match end.parse::<IpAddr>() {
                Ok(l) if l.is_ipv4() == first.is_ipv4() => l,
                _ => {
                    bad(r, ": both ends of one family");
                    return None;
                }
            }
        } else {
            // The last byte (IPv4, decimal) or 16-bit group (IPv6, hex) replaced.
            let (value, low_bits) = if first.is_ipv4() {
                (parse_uint(end).filter(|v| *v <= 255), 8)
            } else {
                (
                    u64::from_str_radix(end, 16).ok().filter(|v| *v <= 0xffff),
                    16,
                )
            };
            let Some(value) = value else {
                bad(r, "");
                return None;
            };
            let base = ip_number(first) & !((1u128 << low_bits) - 1);
            from_number(first, base | u128::from(value))
        };
        if ip_number(last) <= ip_number(first) {
            bad(r, ": a range end after its start, as keepalived requires");
            return None;
        }
        (first, last)
    } else {
        match text.parse::<IpAddr>() {
            Ok(ip) => (ip, ip),
            Err(_) => {
                bad(r, "");
                return None;
            }
        }
    };
    let port = match st.args.first() {
        Some(p) => match parse_uint(p.text).and_then(|n| u16::try_from(n).ok()) {
            Some(0) | None => {
                r.diags.error(
                    p.span,
                    format!(
                        "found `{}` after `{text}`, expected a port 1..65535: xlb does not balance \
                         all ports of an address",
                        p.text
                    ),
                );
                return None;
            }
            Some(port) => port,
        },
        None => {
            r.diags.error(
                st.span,
                format!(
                    "found end of line after `{text}`, expected a port: xlb does not balance all \
                     ports of an address"
                ),
            );
            return None;
        }
    };
    r.extra_args(st, 1);
    Some(GroupEntry {
        first,
        last,
        port,
        origin: r.origin(st.span),
    })
}

fn from_number(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// `virtual_server group NAME { ... }`: the block read once per port of the group (a real
/// server or checker without a port takes each port's; a diagnostic is said once, unless its
/// words differ from port to port), then one service per address on each port, in the
/// group's order. Each service's
/// origin is its group line, where a limit or a duplicate is reported.
pub(super) fn expand(
    r: &mut Reader<'_>,
    st: &Statement,
    files: &TrackFiles<'_>,
    groups: &[VirtualServerGroup],
    declared: &[String],
    expanded_so_far: usize,
) -> Vec<VirtualServer> {
    let Some(name) = st.args.get(1) else {
        r.needs_block(st);
        r.diags.error(
            st.args.first().map(|a| a.span).unwrap_or(st.span),
            "found end of line after `virtual_server group`, expected the name of a \
             virtual_server_group",
        );
        return Vec::new();
    };
    r.extra_args(st, 2);
    let Some(group) = groups.iter().find(|g| g.name == name.text) else {
        if !declared.iter().any(|d| d == name.text) {
            let known: Vec<&str> = declared.iter().map(String::as_str).collect();
            r.needs_block(st);
            r.diags.error(
                name.span,
                format!(
                    "found `group {}`, expected the name of a virtual_server_group{}",
                    name.text,
                    unknown::did_you_mean(name.text, &known)
                ),
            );
        }
        // A group declared with errors: reported there.
        return Vec::new();
    };
    // Per port and family: real servers and checks are judged against the address family.
    let mut by_port: BTreeMap<(u16, bool), Option<VirtualServer>> = BTreeMap::new();
    r.diags.say_once();
    for entry in &group.entries {
        let key = (entry.port, entry.first.is_ipv6());
        if by_port.contains_key(&key) {
            continue;
        }
        let vs = lvs::virtual_server(r, st, files, Some((entry.first, entry.port)));
        by_port.insert(key, vs);
    }
    r.diags.say_repeats();
    let mut out = Vec::new();
    for entry in &group.entries {
        let Some(Some(template)) = by_port.get(&(entry.port, entry.first.is_ipv6())) else {
            continue;
        };
        for address in entry.addresses() {
            // Bounded whatever the number of `virtual_server group` blocks: beyond xlb's limit
            // nothing could be served, and copies would only fill memory.
            if expanded_so_far + out.len() >= MAX_GROUP_ADDRESSES as usize {
                r.diags.error(
                    name.span,
                    format!(
                        "found more than {MAX_GROUP_ADDRESSES} virtual services from \
                         `virtual_server group`s (`{}` here), expected at most \
                         {MAX_GROUP_ADDRESSES}: xlb's limit",
                        group.name
                    ),
                );
                return out;
            }
            let mut vs = template.clone();
            vs.address = address;
            vs.group = Some(group.name.clone());
            vs.origin = entry.origin.clone();
            out.push(vs);
        }
    }
    out
}
