//! `static_routes`/`virtual_routes` and `static_rules`/`virtual_rules`: keepalived's `ip route`
//! and `ip rule` syntax, the part of it xlb adds over rtnetlink. Anything else of that syntax
//! is an error saying what is supported: a route added without an option it was written with
//! would send traffic elsewhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::diagnostic::Pos;
use crate::model::{AddressFamily, FwMark, Prefix, Route, RouteType, Rule, RuleAction, TABLE_MAIN};
use crate::syntax::Statement;

use super::Reader;
use super::values::parse_uint;

/// keepalived's first preference for a rule written without one; the next gets one less.
pub(crate) const FIRST_RULE_PRIORITY: u32 = 16384;

const ROUTE_SUPPORTED: &str = "[blackhole|unreachable|prohibit|throw] DEST[/LEN] [via|gw ADDR] \
     [dev|oif IF] [src ADDR] [metric|priority|preference N] [table N|main|local|default] \
     [scope global|site|link|host|nowhere|N] [onlink] [no_track] [inet|inet6]";

const RULE_SUPPORTED: &str = "[from ADDR[/LEN]] [to ADDR[/LEN]] [fwmark N[/MASK]] [iif|dev IF] \
     [oif IF] [priority|preference|order N] [no_track] [inet|inet6], then table|lookup N \
     or blackhole, unreachable, prohibit";

/// One word of a route or rule line, the keyword included.
#[derive(Clone, Copy)]
struct Word<'a> {
    text: &'a str,
    at: Pos,
}

fn words<'a>(st: &'a Statement) -> Vec<Word<'a>> {
    std::iter::once(Word {
        text: st.keyword,
        at: st.span,
    })
    .chain(st.args.iter().map(|a| Word {
        text: a.text,
        at: a.span,
    }))
    .collect()
}

/// The value after `option`, or an error at the option.
fn value<'a>(
    r: &mut Reader<'_>,
    words: &mut impl Iterator<Item = Word<'a>>,
    option: Word<'a>,
    expected: &str,
) -> Option<Word<'a>> {
    let v = words.next();
    if v.is_none() {
        r.diags.error(
            option.at,
            format!(
                "found end of line after `{}`, expected {expected}",
                option.text
            ),
        );
    }
    v
}

/// `ADDR[/LEN]`, `default` or `all` (the family's whole space); the host bits must be clear
/// (the kernel refuses a route to `10.0.0.1/8`).
fn prefix(r: &mut Reader<'_>, w: Word<'_>, family: Option<AddressFamily>) -> Option<Prefix> {
    if matches!(w.text, "default" | "all" | "any") {
        let address = match family {
            Some(AddressFamily::Ipv6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        return Some(Prefix { address, len: 0 });
    }
    let (addr, len) = match w.text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (w.text, None),
    };
    let Ok(address) = addr.parse::<IpAddr>() else {
        r.diags.error(
            w.at,
            format!(
                "found `{}`, expected an address or prefix such as 10.0.0.0/24",
                w.text
            ),
        );
        return None;
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match parse_uint(l) {
            Some(n) if n <= u64::from(max) => n as u8,
            _ => {
                r.diags.error(
                    w.at,
                    format!(
                        "found `/{l}` in `{}`, expected a prefix length 0..{max}",
                        w.text
                    ),
                );
                return None;
            }
        },
    };
    let network = network_of(address, len);
    if network != address {
        r.diags.error(
            w.at,
            format!(
                "found `{}`, expected the network address `{network}/{len}`: the kernel refuses \
                 a prefix with host bits set",
                w.text
            ),
        );
        return None;
    }
    Some(Prefix { address, len })
}

fn network_of(address: IpAddr, len: u8) -> IpAddr {
    match address {
        IpAddr::V4(a) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// Checks that `ip`'s family is the line's, fixing it if not set yet.
fn same_family(
    r: &mut Reader<'_>,
    family: &mut Option<AddressFamily>,
    ip: IpAddr,
    at: Pos,
    what: &str,
) -> bool {
    let f = AddressFamily::of(&ip);
    match family {
        None => {
            *family = Some(f);
            true
        }
        Some(known) if *known == f => true,
        Some(_) => {
            r.diags.error(
                at,
                format!(
                    "found {ip}, expected an address of the {what}'s family: keepalived \
                     cannot mix IPv4 and IPv6 in one {what}"
                ),
            );
            false
        }
    }
}

/// `inet`/`inet6` on a line.
fn family_word(
    r: &mut Reader<'_>,
    family: &mut Option<AddressFamily>,
    w: Word<'_>,
    what: &str,
) -> bool {
    let f = if w.text == "inet6" {
        AddressFamily::Ipv6
    } else {
        AddressFamily::Ipv4
    };
    match family {
        Some(known) if *known != f => {
            r.diags.error(
                w.at,
                format!(
                    "found `{}` in an {} {what}, expected one family",
                    w.text,
                    match known {
                        AddressFamily::Ipv4 => "IPv4",
                        AddressFamily::Ipv6 => "IPv6",
                    }
                ),
            );
            false
        }
        _ => {
            *family = Some(f);
            true
        }
    }
}

/// A routing table: a number 1.. or main, local, default (iproute2's names).
fn table(r: &mut Reader<'_>, w: Word<'_>) -> Option<u32> {
    let t = match w.text {
        "main" => Some(TABLE_MAIN),
        "local" => Some(255),
        "default" => Some(253),
        text => parse_uint(text)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0),
    };
    if t.is_none() {
        r.diags.error(
            w.at,
            format!(
                "found `{}` after `table`, expected a table number 1..4294967295 or main, local, \
                 default (xlb does not read /etc/iproute2/rt_tables)",
                w.text
            ),
        );
    }
    t
}

fn u32_value(r: &mut Reader<'_>, w: Word<'_>, after: &str) -> Option<u32> {
    let n = parse_uint(w.text).and_then(|n| u32::try_from(n).ok());
    if n.is_none() {
        r.diags.error(
            w.at,
            format!(
                "found `{}` after `{after}`, expected an integer 0..4294967295",
                w.text
            ),
        );
    }
    n
}

fn scope(r: &mut Reader<'_>, w: Word<'_>) -> Option<u8> {
    let s = match w.text {
        "global" | "universe" => Some(0),
        "site" => Some(200),
        "link" => Some(253),
        "host" => Some(254),
        "nowhere" => Some(255),
        text => parse_uint(text).and_then(|n| u8::try_from(n).ok()),
    };
    if s.is_none() {
        r.diags.error(
            w.at,
            format!(
                "found `{}` after `scope`, expected global, site, link, host, nowhere or 0..255",
                w.text
            ),
        );
    }
    s
}

fn route_type(text: &str) -> Option<RouteType> {
    RouteType::ALL.into_iter().find(|t| t.name() == text)
}

/// Route options of `ip route` (and keepalived) that xlb does not add.
const ROUTE_OPTIONS_REFUSED: &[&str] = &[
    "tos",
    "dsfield",
    "protocol",
    "mtu",
    "hoplimit",
    "advmss",
    "rtt",
    "rttvar",
    "reordering",
    "window",
    "cwnd",
    "ssthresh",
    "realms",
    "rto_min",
    "initcwnd",
    "initrwnd",
    "features",
    "quickack",
    "congctl",
    "pref",
    "ttl-propagate",
    "fastopen_no_cookie",
    "add",
    "prepend",
    "append",
    "or",
    "nexthop",
    "track_group",
    "vrf",
    "encap",
    "expires",
    "from",
    "as",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "nat",
    "weight",
];

/// One line of a routes block, `None` (with errors) if xlb cannot add it as written.
pub(super) fn route(r: &mut Reader<'_>, st: &Statement, block: &str) -> Option<Route> {
    r.list_entry(st);
    let all = words(st);
    let mut it = all.iter().copied();
    let mut family = None;
    let mut kind = RouteType::Unicast;
    let mut dest: Option<Word> = None;
    let mut via: Option<(IpAddr, Pos)> = None;
    let mut src: Option<(IpAddr, Pos)> = None;
    let mut dev = None;
    let mut metric = None;
    let mut table_id = TABLE_MAIN;
    let mut scope_id = None;
    let mut onlink = false;
    let mut no_track = false;
    let mut ok = true;
    while let Some(w) = it.next() {
        match w.text {
            "inet" | "inet6" => ok &= family_word(r, &mut family, w, "route"),
            "via" | "gw" => match value(r, &mut it, w, "a gateway address") {
                Some(v) if w.text == "gw" && v.text.parse::<IpAddr>().is_ok() => {
                    // keepalived: "\"gw\" for routes is deprecated. Please use \"via\"".
                    r.diags.tolerate(
                        w.at,
                        "found `gw` in a route, expected `via`: keepalived reads the deprecated \
                         `gw` as `via`, and so does xlb",
                    );
                    via = v.text.parse::<IpAddr>().ok().map(|ip| (ip, v.at));
                }
                Some(v) => match v.text.parse::<IpAddr>() {
                    Ok(ip) => via = Some((ip, v.at)),
                    Err(_) => {
                        r.diags.error(
                            v.at,
                            format!(
                                "found `{}` after `{}`, expected a gateway address",
                                v.text, w.text
                            ),
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            },
            "src" => match value(r, &mut it, w, "a source address") {
                Some(v) => match v.text.parse::<IpAddr>() {
                    Ok(ip) => src = Some((ip, v.at)),
                    Err(_) => {
                        r.diags.error(
                            v.at,
                            format!("found `{}` after `src`, expected a source address", v.text),
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            },
            "dev" | "oif" => match value(r, &mut it, w, "an interface name") {
                Some(v) => dev = Some(v.text.to_string()),
                None => ok = false,
            },
            "metric" | "priority" | "preference" => {
                match value(r, &mut it, w, "an integer").and_then(|v| u32_value(r, v, w.text)) {
                    Some(m) => metric = Some(m),
                    None => ok = false,
                }
            }
            "table" => match value(r, &mut it, w, "a table number").and_then(|v| table(r, v)) {
                Some(t) => table_id = t,
                None => ok = false,
            },
            "scope" => match value(r, &mut it, w, "a scope").and_then(|v| scope(r, v)) {
                Some(s) => scope_id = Some(s),
                None => ok = false,
            },
            "onlink" => onlink = true,
            "no_track" => no_track = true,
            "to" => {}
            text if ROUTE_OPTIONS_REFUSED.contains(&text) => {
                r.diags.error(
                    w.at,
                    format!(
                        "found `{text}` in a route of `{block}`, expected {ROUTE_SUPPORTED}: \
                         xlb does not add routes with `{text}`"
                    ),
                );
                // What follows may be its values: nothing more to say about the line.
                return None;
            }
            text => {
                if let Some(t) = route_type(text) {
                    kind = t;
                    continue;
                }
                if let Some(first) = dest {
                    r.diags.error(
                        w.at,
                        format!(
                            "found `{text}` after the destination `{}`, expected {ROUTE_SUPPORTED}",
                            first.text
                        ),
                    );
                    ok = false;
                } else {
                    dest = Some(w);
                }
            }
        }
    }
    let Some(dest_word) = dest else {
        r.diags.error(
            st.span,
            format!("found no destination in a route of `{block}`, expected {ROUTE_SUPPORTED}"),
        );
        return None;
    };
    // The destination's family decides unless inet/inet6 or an address came first.
    if !matches!(dest_word.text, "default" | "all" | "any")
        && let Ok(p) = dest_word
            .text
            .split('/')
            .next()
            .unwrap_or("")
            .parse::<IpAddr>()
    {
        ok &= same_family(r, &mut family, p, dest_word.at, "route");
    }
    if family.is_none() {
        family = via.or(src).map(|(ip, _)| AddressFamily::of(&ip));
    }
    let dest = prefix(r, dest_word, family)?;
    let family = family.unwrap_or(AddressFamily::of(&dest.address));
    let mut family = Some(family);
    for (ip, at) in via.iter().chain(src.iter()) {
        ok &= same_family(r, &mut family, *ip, *at, "route");
    }
    if kind != RouteType::Unicast
        && let Some((ip, at)) = via
    {
        r.diags.error(
            at,
            format!(
                "found `via {ip}` in a {} route, expected none: such a route has no gateway",
                kind.name()
            ),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(Route {
        kind,
        dest,
        via: via.map(|(ip, _)| ip),
        dev,
        src: src.map(|(ip, _)| ip),
        metric,
        table: table_id,
        scope: scope_id,
        onlink,
        no_track,
        origin: r.origin(st.span),
    })
}

/// Rule options of `ip rule` (and keepalived) that xlb does not add.
const RULE_OPTIONS_REFUSED: &[&str] = &[
    "not",
    "tos",
    "dsfield",
    "realms",
    "suppress_prefixlength",
    "sup_pl",
    "suppress_ifgroup",
    "sup_group",
    "tunnel-id",
    "uidrange",
    "l3mdev",
    "protocol",
    "ipproto",
    "sport",
    "dport",
    "track_group",
    "goto",
    "nop",
    "type",
];

/// keepalived's `fwmark`: strtoul with base 0 (decimal, 0x hex, 0 octal), then `/MASK`.
fn fw_number(text: &str) -> Option<u32> {
    let n = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()?
    } else if text.len() > 1 && text.starts_with('0') {
        u64::from_str_radix(&text[1..], 8).ok()?
    } else {
        parse_uint(text)?
    };
    u32::try_from(n).ok()
}

fn fwmark(r: &mut Reader<'_>, w: Word<'_>) -> Option<FwMark> {
    let (mark, mask) = match w.text.split_once('/') {
        Some((m, k)) => (fw_number(m), Some(fw_number(k))),
        None => (fw_number(w.text), None),
    };
    match (mark, mask) {
        (Some(mark), None) => Some(FwMark { mark, mask: None }),
        (Some(mark), Some(Some(mask))) => Some(FwMark {
            mark,
            mask: Some(mask),
        }),
        _ => {
            r.diags.error(
                w.at,
                format!(
                    "found `{}` after `fwmark`, expected MARK or MARK/MASK (integers 0..4294967295)",
                    w.text
                ),
            );
            None
        }
    }
}

/// One line of a rules block, `None` (with a diagnostic) if xlb does not add it.
pub(super) fn rule(r: &mut Reader<'_>, st: &Statement, block: &str) -> Option<Rule> {
    r.list_entry(st);
    let all = words(st);
    let mut it = all.iter().copied();
    let mut family = None;
    let mut from = None;
    let mut to = None;
    let mut action: Option<RuleAction> = None;
    let mut priority = None;
    let mut mark = None;
    let mut iif = None;
    let mut oif = None;
    let mut no_track = false;
    let mut ok = true;
    while let Some(w) = it.next() {
        match w.text {
            "inet" | "inet6" => ok &= family_word(r, &mut family, w, "rule"),
            "from" | "to" => match value(r, &mut it, w, "an address or prefix") {
                Some(v) => {
                    if let Ok(ip) = v.text.split('/').next().unwrap_or("").parse::<IpAddr>() {
                        ok &= same_family(r, &mut family, ip, v.at, "rule");
                    }
                    match prefix(r, v, family) {
                        Some(p) if w.text == "from" => from = Some(p),
                        Some(p) => to = Some(p),
                        None => ok = false,
                    }
                }
                None => ok = false,
            },
            "table" | "lookup" => {
                match value(r, &mut it, w, "a table number").and_then(|v| table(r, v)) {
                    Some(t) => {
                        if action.is_some() {
                            r.diags.error(
                            w.at,
                            "found a second action in a rule, expected one of table, blackhole, \
                             unreachable, prohibit",
                        );
                            ok = false;
                        }
                        action = Some(RuleAction::Table(t));
                    }
                    None => ok = false,
                }
            }
            "blackhole" | "unreachable" | "prohibit" => {
                if action.is_some() {
                    r.diags.error(
                        w.at,
                        "found a second action in a rule, expected one of table, blackhole, \
                         unreachable, prohibit",
                    );
                    ok = false;
                }
                action = Some(match w.text {
                    "blackhole" => RuleAction::Blackhole,
                    "unreachable" => RuleAction::Unreachable,
                    _ => RuleAction::Prohibit,
                });
            }
            "priority" | "preference" | "order" => {
                match value(r, &mut it, w, "an integer").and_then(|v| u32_value(r, v, w.text)) {
                    Some(p) => priority = Some(p),
                    None => ok = false,
                }
            }
            "fwmark" => match value(r, &mut it, w, "MARK[/MASK]").and_then(|v| fwmark(r, v)) {
                Some(m) => mark = Some(m),
                None => ok = false,
            },
            "iif" | "dev" => match value(r, &mut it, w, "an interface name") {
                Some(v) => iif = Some(v.text.to_string()),
                None => ok = false,
            },
            "oif" => match value(r, &mut it, w, "an interface name") {
                Some(v) => oif = Some(v.text.to_string()),
                None => ok = false,
            },
            "no_track" => no_track = true,
            text if RULE_OPTIONS_REFUSED.contains(&text) => {
                r.diags.error(
                    w.at,
                    format!(
                        "found `{text}` in a rule of `{block}`, expected {RULE_SUPPORTED}: xlb \
                         does not add rules with `{text}`"
                    ),
                );
                return None;
            }
            text => {
                r.diags.error(
                    w.at,
                    format!("found `{text}` in a rule of `{block}`, expected {RULE_SUPPORTED}"),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    let Some(action) = action else {
        // keepalived: "No action specified for rule - ignoring".
        r.diags.tolerate(
            st.span,
            format!(
                "found no action in a rule of `{block}`, expected table N (or blackhole, \
                 unreachable, prohibit): keepalived ignores this rule, and so does xlb"
            ),
        );
        return None;
    };
    let family = family.unwrap_or(AddressFamily::Ipv4);
    let priority = match priority {
        Some(p) => p,
        None => {
            let slot = &mut r.next_rule_priority[usize::from(family == AddressFamily::Ipv6)];
            let given = *slot;
            *slot = slot.saturating_sub(1);
            r.diags.tolerate(
                st.span,
                format!(
                    "found no preference in a rule of `{block}`, expected `priority N`: \
                     keepalived gives it {given} (counting down from {FIRST_RULE_PRIORITY} in \
                     reading order), and so does xlb"
                ),
            );
            given
        }
    };
    Some(Rule {
        family,
        from,
        to,
        action,
        priority,
        fwmark: mark,
        iif,
        oif,
        no_track,
        origin: r.origin(st.span),
    })
}
