//! `global_defs { ... }`.

use crate::model::{AnnouncedVip, GlobalDefs, Timer};
use crate::syntax::Statement;

use super::Reader;

/// Why mail and SNMP settings are ignored.
const NOTIFICATION_WHY: &str = "xlb reports state changes in its log and as Prometheus metrics \
     (`xlb run --metrics-address`), not by mail or SNMP";

/// Mail and SNMP notification settings (and any `notification_*`, `smtp_*`).
const NOTIFICATION: &[&str] = &[
    "email_faults",
    "enable_traps",
    "enable_snmp_vrrp",
    "enable_snmp_checker",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "snmp_socket",
];

/// keepalived tuning that has no counterpart in xlb, and why.
const IGNORED: &[(&str, &str)] = &[
    (
        "lvs_flush",
        "xlb does not use IPVS; its data plane holds the configured services only",
    ),
    (
        "lvs_flush_on_stop",
        "xlb does not use IPVS; a clean stop removes its data plane",
    ),
    (
        "lvs_sync_daemon",
        "xlb does not use IPVS connection sync: directors sharing a VIP place flows alike by \
         consistent hashing (Maglev, same `--hash-seed`)",
    ),
    (
        "lvs_timeouts",
        "xlb does not use IPVS; its flow timeouts are `xlb run --tcp-idle-timeout` and \
         `--udp-idle-timeout`",
    ),
    (
        "vrrp_iptables",
        "xlb adds no firewall rules (keepalived's drop traffic to VIPs it does not own with \
         vrrp_strict); the data plane only forwards VIPs of a live claim",
    ),
    (
        "vrrp_ipsets",
        "xlb adds no firewall rules (keepalived's drop traffic to VIPs it does not own with \
         vrrp_strict); the data plane only forwards VIPs of a live claim",
    ),
    (
        "nftables",
        "xlb adds no firewall rules (keepalived's drop traffic to VIPs it does not own with \
         vrrp_strict); the data plane only forwards VIPs of a live claim",
    ),
    (
        "vrrp_check_unicast_src",
        "xlb takes unicast adverts from any source that passes its other checks",
    ),
    (
        "vrrp_lower_prio_no_advert",
        "xlb's MASTER answers a lower priority advert with its own, as keepalived's default",
    ),
    (
        "vrrp_higher_prio_send_advert",
        "xlb's MASTER yields to a higher priority advert without sending one first, as \
         keepalived's default",
    ),
    (
        "vrrp_no_swap",
        "it tunes keepalived's processes; xlb is one process (set its limits in a systemd drop-in)",
    ),
    (
        "checker_no_swap",
        "it tunes keepalived's processes; xlb is one process (set its limits in a systemd drop-in)",
    ),
    (
        "vrrp_priority",
        "it tunes keepalived's processes; xlb is one process (set Nice= in a systemd drop-in)",
    ),
    (
        "checker_priority",
        "it tunes keepalived's processes; xlb is one process (set Nice= in a systemd drop-in)",
    ),
    (
        "max_auto_priority",
        "it tunes keepalived's processes; xlb is one process (set Nice= in a systemd drop-in)",
    ),
    (
        "dynamic_interfaces",
        "xlb serves the one interface of `xlb run -i`, which must exist when it starts",
    ),
    (
        "script_max_wait",
        "xlb stops each script at its own timeout and kills what is left at exit",
    ),
];

/// keepalived's multicast groups for adverts: xlb uses the RFC's only.
const MCAST_GROUPS: &[(&str, &str)] = &[
    ("vrrp_mcast_group4", "224.0.0.18"),
    ("vrrp_mcast_group6", "ff02::12"),
];

pub(super) fn global_defs(r: &mut Reader<'_>, st: &Statement, g: &mut GlobalDefs) {
    r.extra_args(st, 0);
    let block = r.block(st);
    for st in block {
        let kw = st.keyword;
        match kw {
            "router_id" | "lvs_id" => {
                if let Some(id) = r.string(st, "a router name") {
                    g.router_id = Some(id);
                }
            }
            "vrrp_version" => {
                if let Some(v) = r.uint(st, 2, 3) {
                    g.vrrp_version = if v == 3 { 3 } else { 2 };
                }
            }
            "script_user" => {
                r.no_block(st);
                match r.script_user(st, &st.args) {
                    Some(u) => g.script_user = Some(u),
                    None if st.args.is_empty() => r.missing(st, "a user name"),
                    None => {}
                }
            }
            "enable_script_security" => g.enable_script_security = r.flag(st),
            "default_interface" => {
                if let Some(i) = r.string(st, "an interface name") {
                    g.default_interface = i;
                }
            }
            "vrrp_skip_check_adv_addr" => g.vrrp_skip_check_adv_addr = r.flag(st),
            "vrrp_strict" => g.vrrp_strict = r.flag(st),
            "vrrp_garp_interval" => {
                if let Some(t) = r.timer(st, Timer::default(), Some(Timer::from_secs(1))) {
                    g.vrrp_garp_interval = t;
                }
            }
            "vrrp_gna_interval" => {
                if let Some(t) = r.timer(st, Timer::default(), Some(Timer::from_secs(1))) {
                    g.vrrp_gna_interval = t;
                }
            }
            "vrrp_garp_master_delay" => {
                if let Some(n) = r.u32(st, 0, 86400) {
                    g.vrrp_garp_master_delay = n;
                }
            }
            "vrrp_garp_master_repeat" => {
                if let Some(n) = r.u32(st, 0, 10000) {
                    g.vrrp_garp_master_repeat = n;
                }
            }
            "vrrp_garp_master_refresh" => {
                if let Some(n) = r.u32(st, 0, 86400) {
                    g.vrrp_garp_master_refresh = n;
                }
            }
            "vrrp_garp_master_refresh_repeat" => {
                if let Some(n) = r.u32(st, 1, 10000) {
                    g.vrrp_garp_master_refresh_repeat = n;
                }
            }
            // xlb's own: keepalived logs an unknown keyword and carries on.
            "xlb_maglev_table_size" => {
                let sizes = lb_common::MAGLEV_TABLE_SIZES
                    .map(|n| n.to_string())
                    .join(", ");
                let expected = format!("a Maglev table size (a prime: one of {sizes})");
                if let Some(arg) = r.value(st, &expected) {
                    match arg.text.parse::<u32>() {
                        Ok(n) if lb_common::MAGLEV_TABLE_SIZES.contains(&n) => {
                            g.xlb_maglev_table_size = n;
                            g.xlb_maglev_table_size_origin = r.origin(st.span);
                        }
                        _ => r.bad(st, arg, &expected),
                    }
                }
            }
            // xlb's own, for active-active directors: the VIPs a BGP speaker (BIRD) announces
            // for this director while they are healthy.
            "xlb_announce" => {
                r.no_block(st);
                if st.args.is_empty() {
                    r.missing(st, "one or more VIP addresses");
                }
                for arg in &st.args {
                    if let Some(address) = r.ip_arg(st, arg) {
                        g.xlb_announce.push(AnnouncedVip {
                            address,
                            origin: r.origin(arg.span),
                        });
                    }
                }
            }
            "xlb_announce_table" => {
                let expected = "a kernel routing table number (1 to 252, or 256 and up: \
                                253 to 255 are the kernel's default, main and local)";
                if let Some(arg) = r.value(st, expected) {
                    match super::values::parse_uint(arg.text) {
                        Some(n)
                            if (1..=u64::from(u32::MAX)).contains(&n)
                                && !(253..=255).contains(&n) =>
                        {
                            g.xlb_announce_table = n as u32;
                        }
                        _ => r.bad(st, arg, expected),
                    }
                }
            }
            // At most a minute: `xlb stop` waits that long, and the unit's TimeoutStopSec
            // (20 s) must be raised past it for a longer one.
            "xlb_announce_drain" => {
                if let Some(t) = r.timer(st, Timer::default(), Some(Timer::from_secs(60))) {
                    g.xlb_announce_drain = t;
                }
            }
            "xlb_bird_socket" => {
                if let Some(path) = r.string(st, "the path of BIRD's control socket") {
                    g.xlb_bird_socket = path;
                }
            }
            // Still checked: a missing number here is the same slip as anywhere else.
            "smtp_connect_timeout" => {
                r.ignored(st, NOTIFICATION_WHY);
                r.uint(st, 1, 3600);
            }
            _ if NOTIFICATION.contains(&kw)
                || kw.starts_with("notification_")
                || kw.starts_with("smtp_") =>
            {
                r.ignored(st, NOTIFICATION_WHY)
            }
            _ if r.ignored_from(st, IGNORED) => {}
            _ if let Some((_, group)) = MCAST_GROUPS.iter().find(|(k, _)| *k == kw) => {
                mcast_group(r, st, group)
            }
            _ => r.unknown(st, "global_defs"),
        }
    }
}

/// `vrrp_mcast_group4/6 ADDRESS`: xlb sends and listens on `group`, the
/// RFC's; another one would split the routers, so it is refused.
fn mcast_group(r: &mut Reader<'_>, st: &Statement, group: &str) {
    let Some(arg) = r.value(st, "a multicast address") else {
        return;
    };
    match arg.text.parse::<std::net::IpAddr>() {
        Ok(ip) if group.parse() == Ok(ip) => r.ignored(st, "it names the group xlb always uses"),
        _ => r.diags.error(
            arg.span,
            format!(
                "found `{} {}`, expected {group}: xlb sends and hears VRRP adverts on the RFC's \
                 group only (routers on another group would not hear each other); use \
                 `unicast_peer` for another path",
                st.keyword, arg.text
            ),
        ),
    }
}
