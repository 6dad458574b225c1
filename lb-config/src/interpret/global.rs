//! `global_defs { ... }`.

use crate::model::{GlobalDefs, Timer};
use crate::syntax::Statement;

use super::Reader;

/// Mail and SNMP notification settings: xlb reports through its own logs and
/// metrics, so these are accepted and ignored.
const NOTIFICATION: &[&str] = &[
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_helo_name",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "email_faults",
    "enable_traps",
    "enable_snmp_vrrp",
    "enable_snmp_checker",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "snmp_socket",
];

/// keepalived tuning that has no counterpart in xlb.
const IGNORED: &[&str] = &[
    "lvs_flush",
    "lvs_flush_on_stop",
    "lvs_sync_daemon",
    "lvs_timeouts",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
    "vrrp_check_unicast_src",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "vrrp_no_swap",
    "checker_no_swap",
    "vrrp_priority",
    "checker_priority",
    "max_auto_priority",
    "dynamic_interfaces",
    "script_max_wait",
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
            // Still checked: a missing number here is the same slip as anywhere else.
            "smtp_connect_timeout" => {
                r.ignored(st);
                r.uint(st, 1, 3600);
            }
            _ if NOTIFICATION.contains(&kw)
                || kw.starts_with("notification_")
                || kw.starts_with("smtp_")
                || IGNORED.contains(&kw) =>
            {
                r.ignored(st)
            }
            _ => r.unknown(st, "global_defs"),
        }
    }
}
