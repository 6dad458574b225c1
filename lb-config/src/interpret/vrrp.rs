//! `vrrp_script`, `vrrp_sync_group` and `vrrp_instance`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::diagnostic::Pos;
use crate::model::{
    AddressFamily, AuthType, Authentication, GlobalDefs, NotifyScript, SyncGroupMember, TrackFile,
    TrackInterface, TrackObject, TrackScript, VirtualIpAddress, VrrpInstance, VrrpScript,
    VrrpState, VrrpSyncGroup, VrrpTrackProcess,
};
use crate::syntax::{Arg, Statement};

use super::Reader;
use super::track::{HasName, Named};
use super::values::{parse_timer, parse_uint};

/// What an instance's `track_file` and `track_process` entries may name.
pub(crate) struct Trackable<'a> {
    pub files: &'a Named<'a, TrackFile>,
    pub processes: &'a Named<'a, VrrpTrackProcess>,
}

const INSTANCE_BLOCKS: &[&str] = &[
    "authentication",
    "track_file",
    "track_process",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "unicast_peer",
    "track_script",
    "track_interface",
    "virtual_routes",
    "virtual_rules",
];

/// Instance keywords xlb accepts and does not act on, and why.
const INSTANCE_IGNORED: &[(&str, &str)] = &[
    (
        "use_vmac",
        "xlb sends adverts and gratuitous ARP from the interface's own MAC, not the VRRP \
         virtual MAC; neighbours learn each takeover from the gratuitous ARP",
    ),
    (
        "vmac_xmit_base",
        "xlb sends adverts from the interface itself (it makes no VRRP MAC interface)",
    ),
    (
        "native_ipv6",
        "xlb takes the family from the virtual addresses",
    ),
    (
        "dont_track_primary",
        "xlb tracks the interfaces listed in track_interface",
    ),
    (
        "skip_check_adv_addr",
        "xlb reads it in global_defs (`vrrp_skip_check_adv_addr`), for every instance",
    ),
    (
        "strict_mode",
        "xlb reads it in global_defs (`vrrp_strict`), for every instance",
    ),
    (
        "debug",
        "xlb logs every state change and its reason whatever the level",
    ),
    (
        "accept",
        "xlb forwards the virtual services in XDP and leaves other traffic to the VIPs to the \
         host, as accept mode does",
    ),
    (
        "no_accept",
        "xlb forwards the virtual services in XDP and leaves other traffic to the VIPs to the \
         host whatever the mode",
    ),
    (
        "garp_lower_prio_delay",
        "xlb sends gratuitous ARP on becoming MASTER and every garp_master_refresh, not on \
         hearing a lower priority",
    ),
    (
        "garp_lower_prio_repeat",
        "xlb sends gratuitous ARP on becoming MASTER and every garp_master_refresh, not on \
         hearing a lower priority",
    ),
    (
        "lower_prio_no_advert",
        "xlb's MASTER answers a lower priority advert with its own, as keepalived's default",
    ),
    (
        "higher_prio_send_advert",
        "xlb's MASTER yields to a higher priority advert without sending one first, as \
         keepalived's default",
    ),
    (
        "kernel_rx_buf_size",
        "xlb sizes its VRRP socket's buffer itself",
    ),
    (
        "unicast_ttl",
        "xlb sends every advert with TTL 255, unicast too (RFC 5798)",
    ),
    (
        "check_unicast_src",
        "xlb takes unicast adverts from any source that passes its other checks",
    ),
    (
        "linkbeat_use_polling",
        "xlb follows the link state of tracked interfaces itself",
    ),
    (
        "notify_master_rx_lower_pri",
        "xlb runs notify scripts on state changes only",
    ),
    (
        "notify_deleted",
        "xlb runs notify scripts on state changes only",
    ),
    (
        "down_timer_adverts",
        "xlb's Master_Down_Interval is RFC 5798's: three adverts and the skew time",
    ),
];

/// Instance blocks that would change what the instance does if dropped.
const INSTANCE_UNSUPPORTED: &[&str] = &["track_bfd"];

/// Sync-group keywords xlb accepts and does not act on, and why.
const SYNC_GROUP_IGNORED: &[(&str, &str)] = &[
    (
        "global_tracking",
        "xlb tracks in each instance (track_script, track_interface) and the group follows its \
         members",
    ),
    (
        "sync_group_tracking_weight",
        "xlb tracks in each instance (track_script, track_interface) and the group follows its \
         members",
    ),
    (
        "notify_priority_changes",
        "xlb runs notify scripts on state changes only",
    ),
];

fn name_of(r: &mut Reader<'_>, st: &Statement, what: &str) -> Option<String> {
    let Some(name) = st.args.first() else {
        r.missing(st, format_args!("the {what}'s name"));
        return None;
    };
    if what == "vrrp_script" {
        r.extra_args(st, 1);
    } else {
        // keepalived logs "must have a name" and skips the whole block.
        r.extra_args_refused(
            st,
            1,
            &format!(
                "keepalived skips a whole {what} whose name is followed by more words, which xlb \
                 refuses (write the name alone)"
            ),
        );
    }
    Some(name.text.to_string())
}

pub(super) fn vrrp_script(r: &mut Reader<'_>, st: &Statement) -> Option<VrrpScript> {
    if r.needs_block(st) {
        return None;
    }
    let name = name_of(r, st, "vrrp_script");
    let mut script = None;
    let mut interval = 1;
    let mut timeout = None;
    let mut weight = 0;
    let mut weight_reverse = false;
    let mut fall = 1;
    let mut rise = 1;
    let mut user = None;
    let context = format!("vrrp_script {}", name.as_deref().unwrap_or(""));
    for st in r.block(st) {
        match st.keyword {
            "script" => script = r.command(st).or(script),
            "interval" => interval = r.u32(st, 1, 86400).unwrap_or(interval),
            "timeout" => timeout = r.u32(st, 1, 86400).or(timeout),
            "weight" => {
                r.no_block(st);
                match st.args.first() {
                    None => r.missing(st, "an integer -253..253"),
                    Some(arg) => {
                        if let Some(w) = r.int_arg(st, arg, -253, 253) {
                            weight = w as i32;
                        }
                        match st.args.get(1).map(|a| a.text) {
                            Some("reverse") => {
                                weight_reverse = true;
                                r.extra_args(st, 2);
                            }
                            _ => r.extra_args(st, 1),
                        }
                    }
                }
            }
            "fall" => fall = r.u32(st, 1, 1000).unwrap_or(fall),
            "rise" => rise = r.u32(st, 1, 1000).unwrap_or(rise),
            "user" => {
                r.no_block(st);
                if st.args.is_empty() {
                    r.missing(st, "a user name");
                }
                user = r.script_user(st, &st.args).or(user);
            }
            "init_fail" => r.ignored(
                st,
                "xlb starts every vrrp_script as succeeding, until `fall` failures in a row",
            ),
            _ => r.unknown(st, &context),
        }
    }
    if script.is_none() {
        // keepalived removes it ("No script set") and ignores it where tracked.
        r.diags.tolerate(
            st.span,
            format!(
                "found no `script` in `{context}`, expected the command to run: keepalived \
                 removes this vrrp_script and ignores it in track_script, and so does xlb"
            ),
        );
    }
    Some(VrrpScript {
        name: name?,
        script: script?,
        interval,
        timeout: timeout.unwrap_or(interval),
        weight,
        weight_reverse,
        fall,
        rise,
        user,
        origin: r.origin(st.span),
    })
}

pub(super) fn vrrp_sync_group(r: &mut Reader<'_>, st: &Statement) -> Option<VrrpSyncGroup> {
    if r.needs_block(st) {
        return None;
    }
    let name = name_of(r, st, "vrrp_sync_group");
    let context = format!("vrrp_sync_group {}", name.as_deref().unwrap_or(""));
    let mut group = Vec::new();
    let mut saw_group = false;
    // Instance names written without `group { }`, as keepalived's own sample
    // keepalived.conf.vrrp.lvs_syncd does (no keepalived ever read them).
    let mut bare = Vec::new();
    let mut notify: [Option<NotifyScript>; 5] = Default::default();
    let mut smtp_alert = false;
    let block = r.block(st);
    let block = r.split_run_together(block, &["group"]);
    for st in &block {
        match st.keyword {
            "group" => {
                saw_group = true;
                r.extra_args(st, 0);
                for member in r.block(st) {
                    r.list_entry(member);
                    r.extra_args(member, 0);
                    group.push(SyncGroupMember {
                        name: member.keyword.to_string(),
                        origin: r.origin(member.span),
                    });
                }
            }
            kw
            @ ("notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify") => {
                let slot = notify_slot(kw);
                notify[slot] = r.notify_script(st).or(notify[slot].take());
            }
            "smtp_alert" => smtp_alert = r.flag(st),
            _ if r.ignored_from(st, SYNC_GROUP_IGNORED) => {}
            kw @ ("track_script" | "track_interface" | "track_file" | "track_process"
            | "track_bfd") => r.diags.error(
                st.span,
                format!(
                    "found `{kw}` in `{context}`, expected it in each vrrp_instance: \
                     tracking on a sync group is not supported by xlb"
                ),
            ),
            _ if st.args.is_empty() && st.block.is_none() => bare.push(st),
            _ => r.unknown(st, &context),
        }
    }
    if !saw_group || group.is_empty() {
        // keepalived: "Sync group G has no virtual router(s). removing".
        let names: Vec<&str> = bare.iter().map(|st| st.keyword).collect();
        let found = if names.is_empty() {
            format!("found no instance in `{context}`")
        } else {
            format!(
                "found {} in `{context}` outside `group {{ }}`, where keepalived never read \
                 instances (it ignores these lines)",
                names.join(", ")
            )
        };
        let write = if names.is_empty() {
            "INSTANCE...".to_string()
        } else {
            names.join(" ")
        };
        r.diags.tolerate(
            st.span,
            format!(
                "{found}: keepalived removes the sync group, so no instance is synchronised, and \
                 so does xlb (write `group {{ {write} }}` to synchronise them)"
            ),
        );
        return None;
    }
    for st in bare {
        r.unknown(st, &context);
    }
    let [
        notify_master,
        notify_backup,
        notify_fault,
        notify_stop,
        notify,
    ] = notify;
    Some(VrrpSyncGroup {
        name: name?,
        group,
        notify_master,
        notify_backup,
        notify_fault,
        notify_stop,
        notify,
        smtp_alert,
        origin: r.origin(st.span),
    })
}

fn notify_slot(keyword: &str) -> usize {
    match keyword {
        "notify_master" => 0,
        "notify_backup" => 1,
        "notify_fault" => 2,
        "notify_stop" => 3,
        _ => 4,
    }
}

/// A `static_ipaddress` line: an address without a dev goes on `default_interface`, as in
/// keepalived.
pub(super) fn static_address(
    r: &mut Reader<'_>,
    st: &Statement,
    default_interface: &str,
) -> Option<VirtualIpAddress> {
    let mut p = virtual_ipaddress(r, st)?;
    if !p.dev_written {
        p.vip.dev = default_interface.to_string();
    }
    Some(p.vip)
}

/// A `virtual_ipaddress` line before the instance's interface is known.
struct PendingVip {
    vip: VirtualIpAddress,
    dev_written: bool,
    span: Pos,
}

fn virtual_ipaddress(r: &mut Reader<'_>, st: &Statement) -> Option<PendingVip> {
    r.list_entry(st);
    let (addr_text, prefix_text) = match st.keyword.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (st.keyword, None),
    };
    let Ok(address) = addr_text.parse::<IpAddr>() else {
        r.diags.error(
            st.span,
            format!(
                "found `{}`, expected a virtual address such as `192.168.1.10/24` or `fe80::1/64`",
                st.keyword
            ),
        );
        return None;
    };
    let max_prefix: u8 = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix_text {
        None => max_prefix,
        Some(p) => match parse_uint(p) {
            Some(n) if n <= u64::from(max_prefix) => n as u8,
            _ => {
                r.diags.error(
                    st.span,
                    format!(
                        "found `/{p}` in `{}`, expected a prefix length 0..{max_prefix}",
                        st.keyword
                    ),
                );
                return None;
            }
        },
    };
    let mut vip = VirtualIpAddress {
        address,
        prefix_len,
        dev: String::new(),
        brd: None,
        scope: None,
        label: None,
        no_track: false,
    };
    let mut dev_written = false;
    let mut args = st.args.iter();
    while let Some(opt) = args.next() {
        let option = opt.text;
        let takes_value = matches!(option, "dev" | "label" | "brd" | "broadcast" | "scope");
        let value = if takes_value {
            match args.next() {
                Some(v) => Some(v),
                None => {
                    r.diags.error(
                        opt.span,
                        format!("found end of line after `{option}`, expected its value"),
                    );
                    return None;
                }
            }
        } else {
            None
        };
        match (option, value) {
            ("dev", Some(v)) => {
                vip.dev = v.text.to_string();
                dev_written = !v.text.is_empty();
            }
            ("label", Some(v)) => vip.label = Some(v.text.to_string()),
            ("brd" | "broadcast", Some(v)) => match v.text.parse::<IpAddr>() {
                Ok(b) if b.is_ipv4() && address.is_ipv4() => vip.brd = Some(b),
                _ => {
                    r.diags.error(
                        v.span,
                        format!(
                            "found `{}` after `{option}`, expected an IPv4 broadcast address",
                            v.text
                        ),
                    );
                    return None;
                }
            },
            ("scope", Some(v)) => {
                let ok = matches!(v.text, "global" | "site" | "link" | "host" | "nowhere")
                    || parse_uint(v.text).is_some_and(|n| n <= 255);
                if !ok {
                    r.diags.error(
                        v.span,
                        format!(
                            "found `{}` after `scope`, expected global, site, link, host, nowhere or 0..255",
                            v.text
                        ),
                    );
                    return None;
                }
                vip.scope = Some(v.text.to_string());
            }
            ("no_track", None) => vip.no_track = true,
            ("home" | "-nodad" | "nodad" | "noprefixroute" | "autojoin", None) => {
                r.diags.warn(
                    opt.span,
                    format!(
                        "virtual address option `{option}` is ignored by xlb: it adds the \
                         address with the kernel's defaults otherwise"
                    ),
                );
            }
            _ => {
                r.diags.error(
                    opt.span,
                    format!(
                        "found `{option}` in virtual address `{}`, expected dev, label, brd, scope or no_track",
                        st.keyword
                    ),
                );
                return None;
            }
        }
    }
    Some(PendingVip {
        vip,
        dev_written,
        span: st.span,
    })
}

/// `NAME [weight N [reverse|noreverse]]` in track_script / track_interface (weights
/// -253..253) and track_file / track_process (-254..254).
fn tracked(r: &mut Reader<'_>, st: &Statement, limit: i64) -> (Option<i32>, bool) {
    r.list_entry(st);
    let Some(first) = st.args.first() else {
        return (None, false);
    };
    if first.text != "weight" {
        r.diags.error(
            first.span,
            format!(
                "found `{}` after `{}`, expected `weight N` or end of line",
                first.text, st.keyword
            ),
        );
        return (None, false);
    }
    if st.args.len() < 2 {
        r.diags.error(
            first.span,
            format!(
                "found end of line after `weight`, expected an integer {}..{limit}",
                -limit
            ),
        );
        return (None, false);
    }
    match weight_and_reverse(r, st, &st.args[1..], -limit, limit) {
        Some((w, reverse)) => (Some(w), reverse),
        None => (None, false),
    }
}

/// `W [reverse|noreverse]` from `args`: the weight in `lo..=hi` and whether it is reversed.
pub(super) fn weight_and_reverse(
    r: &mut Reader<'_>,
    st: &Statement,
    args: &[crate::syntax::Arg],
    lo: i64,
    hi: i64,
) -> Option<(i32, bool)> {
    let Some(value) = args.first() else {
        r.missing(st, format_args!("an integer {lo}..{hi}"));
        return None;
    };
    let weight = r
        .int_arg(st, value, lo, hi)
        .and_then(|w| i32::try_from(w).ok());
    let reverse = match args.get(1).map(|a| a.text) {
        None => false,
        Some("reverse") => true,
        Some("noreverse" | "no_reverse") => false,
        Some(other) => {
            r.diags.error(
                args[1].span,
                format!(
                    "found `{other}` after the weight of `{}`, expected reverse, noreverse or end of line",
                    st.keyword
                ),
            );
            false
        }
    };
    if let Some(extra) = args.get(2) {
        r.diags.error(
            extra.span,
            format!(
                "found `{}`, expected end of line after the weight",
                extra.text
            ),
        );
    }
    weight.map(|w| (w, reverse))
}

/// `scripts` are the vrrp_scripts by name (the first of a name, as
/// [`crate::Config::vrrp_script`] finds it), so that many instances tracking many
/// scripts take time in proportion to what is written.
pub(super) fn vrrp_instance(
    r: &mut Reader<'_>,
    st: &Statement,
    global_defs: &GlobalDefs,
    scripts: &HashMap<&str, &VrrpScript>,
    trackable: &Trackable<'_>,
    declared_scripts: &HashSet<String>,
) -> Option<VrrpInstance> {
    if r.needs_block(st) {
        return None;
    }
    let name = name_of(r, st, "vrrp_instance");
    let context = format!("vrrp_instance {}", name.as_deref().unwrap_or(""));
    let g = global_defs;
    let mut state = VrrpState::Backup;
    let mut interface = None;
    let mut vrid: Option<(u8, Pos)> = None;
    let mut vrid_written = false;
    let mut priority = 100u8;
    let mut advert: Option<(u32, Pos)> = None;
    let mut version = None;
    let mut nopreempt = false;
    let mut nopreempt_at = None;
    let mut preempt_delay = 0;
    let mut preempt_delay_at = None;
    let mut authentication: Option<(Authentication, Pos)> = None;
    let mut vips = Vec::new();
    let mut excluded = Vec::new();
    let mut unicast_src_ip = None;
    let mut unicast_peer = Vec::new();
    let mut mcast_src_ip = None;
    let mut track_script = Vec::new();
    let mut track_interface = Vec::new();
    let mut track_file = Vec::new();
    let mut track_process = Vec::new();
    let mut virtual_routes = Vec::new();
    let mut virtual_rules = Vec::new();
    let mut garp_master_delay = g.vrrp_garp_master_delay;
    let mut garp_master_repeat = g.vrrp_garp_master_repeat;
    let mut garp_master_refresh = g.vrrp_garp_master_refresh;
    let mut garp_master_refresh_repeat = g.vrrp_garp_master_refresh_repeat;
    let mut notify: [Option<NotifyScript>; 5] = Default::default();
    let mut smtp_alert = false;

    let block = r.block(st);
    let block = r.split_run_together(block, INSTANCE_BLOCKS);
    for st in &block {
        let kw = st.keyword;
        match kw {
            "state" => {
                if let Some(arg) = r.value(st, "MASTER or BACKUP") {
                    match arg.text {
                        "MASTER" => state = VrrpState::Master,
                        "BACKUP" => state = VrrpState::Backup,
                        _ => r.bad(st, arg, "MASTER or BACKUP"),
                    }
                }
            }
            "interface" => interface = r.string(st, "an interface name").or(interface),
            "virtual_router_id" => {
                vrid_written = true;
                if let Some(n) = r.uint(st, 1, 255) {
                    vrid = Some((n as u8, st.span));
                }
            }
            "priority" => priority = r.uint(st, 1, 255).map(|n| n as u8).unwrap_or(priority),
            "advert_int" => {
                let expected = "a number of seconds 0.01..255";
                if let Some(arg) = r.value(st, expected) {
                    match parse_timer(arg.text).map(|t| t.as_micros()) {
                        Some(us) if (10_000..=255_000_000).contains(&us) => {
                            let centis = ((us + 5_000) / 10_000) as u32;
                            if us % 10_000 != 0 {
                                r.diags.tolerate(
                                    arg.span,
                                    format!(
                                        "advert_int {} is not a multiple of 0.01s, rounded as keepalived does",
                                        arg.text
                                    ),
                                );
                            }
                            advert = Some((centis, st.span));
                        }
                        _ => r.bad(st, arg, expected),
                    }
                }
            }
            "version" => version = r.uint(st, 2, 3).map(|v| v as u8).or(version),
            "nopreempt" => {
                // keepalived takes no value here: `nopreempt 0` still sets it.
                r.no_block(st);
                if let Some(arg) = st.args.first() {
                    r.diags.tolerate(
                        arg.span,
                        format!(
                            "found `{}` after `nopreempt`, expected end of line: keepalived \
                             ignores the value and sets nopreempt, and so does xlb{}",
                            arg.text,
                            if matches!(
                                arg.text.to_ascii_lowercase().as_str(),
                                "0" | "false" | "no" | "off"
                            ) {
                                " (remove the line to let this instance preempt)"
                            } else {
                                ""
                            }
                        ),
                    );
                }
                nopreempt = true;
                nopreempt_at = Some(st.span);
            }
            "preempt_delay" => {
                preempt_delay = r.u32(st, 0, 1000).unwrap_or(preempt_delay);
                preempt_delay_at = Some(st.span);
            }
            "authentication" => {
                r.extra_args(st, 0);
                if let Some(auth) = authentication_block(r, st) {
                    authentication = Some((auth, st.span));
                }
            }
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                r.extra_args(st, 0);
                let list = if kw == "virtual_ipaddress" {
                    &mut vips
                } else {
                    &mut excluded
                };
                for entry in r.block(st) {
                    if let Some(v) = virtual_ipaddress(r, entry) {
                        list.push(v);
                    }
                }
            }
            "unicast_src_ip" => unicast_src_ip = r.ip(st).or(unicast_src_ip),
            "mcast_src_ip" => mcast_src_ip = r.ip(st).or(mcast_src_ip),
            "unicast_peer" => {
                r.extra_args(st, 0);
                for peer in r.block(st) {
                    r.list_entry(peer);
                    match peer.keyword.parse::<IpAddr>() {
                        Ok(ip) => unicast_peer.push(ip),
                        Err(_) => r.diags.error(
                            peer.span,
                            format!(
                                "found `{}`, expected a peer IPv4 or IPv6 address",
                                peer.keyword
                            ),
                        ),
                    }
                    if let Some(opt) = peer.args.first() {
                        if matches!(opt.text, "min_ttl" | "max_ttl") {
                            r.diags.warn(
                                opt.span,
                                format!(
                                    "`{}` is ignored by xlb: it takes unicast adverts whatever \
                                     their TTL (it checks TTL 255 on multicast adverts only)",
                                    opt.text
                                ),
                            );
                        } else {
                            r.extra_args(peer, 0);
                        }
                    }
                }
            }
            "track_script" => {
                r.extra_args(st, 0);
                for entry in r.block(st) {
                    let (weight, reverse) = tracked(r, entry, 253);
                    if !scripts.contains_key(entry.keyword) {
                        // A vrrp_script removed or refused is reported where it
                        // is written; keepalived ignores a name it does not know.
                        if !declared_scripts.contains(entry.keyword) {
                            r.diags.tolerate(
                                entry.span,
                                format!(
                                    "found `{}` in track_script of `{context}`, expected the \
                                     name of a vrrp_script: keepalived ignores it (track script \
                                     not found), and so does xlb",
                                    entry.keyword
                                ),
                            );
                        }
                        continue;
                    }
                    // The script's own weight applies unless this line overrides it.
                    let weight = weight
                        .or_else(|| scripts.get(entry.keyword).map(|s| s.weight))
                        .unwrap_or(0);
                    let reverse = reverse
                        || scripts
                            .get(entry.keyword)
                            .is_some_and(|s| s.weight_reverse && entry.args.is_empty());
                    track_script.push(TrackScript {
                        name: entry.keyword.to_string(),
                        weight,
                        reverse,
                        origin: r.origin(entry.span),
                    });
                }
            }
            "track_interface" => {
                r.extra_args(st, 0);
                for entry in r.block(st) {
                    let (weight, reverse) = tracked(r, entry, 253);
                    track_interface.push(TrackInterface {
                        name: entry.keyword.to_string(),
                        weight,
                        reverse,
                    });
                }
            }
            "track_file" => {
                r.extra_args(st, 0);
                track_file.extend(track_objects(r, st, trackable.files, "track_file", |f| {
                    (f.weight, f.weight_reverse)
                }));
            }
            "track_process" => {
                r.extra_args(st, 0);
                track_process.extend(track_objects(
                    r,
                    st,
                    trackable.processes,
                    "track_process",
                    |p| (p.weight, p.weight_reverse),
                ));
            }
            "garp_master_delay" => {
                garp_master_delay = r.u32(st, 0, 86400).unwrap_or(garp_master_delay)
            }
            "garp_master_repeat" => {
                garp_master_repeat = r.u32(st, 0, 10000).unwrap_or(garp_master_repeat)
            }
            "garp_master_refresh" => {
                garp_master_refresh = r.u32(st, 0, 86400).unwrap_or(garp_master_refresh)
            }
            "garp_master_refresh_repeat" => {
                garp_master_refresh_repeat =
                    r.u32(st, 1, 10000).unwrap_or(garp_master_refresh_repeat)
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
                let slot = notify_slot(kw);
                notify[slot] = r.notify_script(st).or(notify[slot].take());
            }
            "smtp_alert" => smtp_alert = r.flag(st),
            "preempt" => {
                // keepalived's older spelling of the default: it clears nopreempt.
                r.no_block(st);
                r.extra_args(st, 0);
                nopreempt = false;
                nopreempt_at = None;
            }
            _ if r.ignored_from(st, INSTANCE_IGNORED) => {}
            "virtual_routes" => {
                r.extra_args(st, 0);
                for entry in r.block(st) {
                    virtual_routes.extend(super::routes::route(r, entry, &context));
                }
            }
            "virtual_rules" => {
                r.extra_args(st, 0);
                for entry in r.block(st) {
                    virtual_rules.extend(super::routes::rule(r, entry, &context));
                }
            }
            _ if INSTANCE_UNSUPPORTED.contains(&kw) => r.diags.error(
                st.span,
                format!(
                    "found `{kw}` in `{context}`, expected the keywords of a vrrp_instance xlb \
                     runs: `{kw}` is not supported by xlb (it tracks with track_script, \
                     track_interface, track_file and track_process)"
                ),
            ),
            _ => r.unknown(st, &context),
        }
    }

    if !vrid_written {
        r.diags.error(
            st.span,
            format!(
                "found no `virtual_router_id` in `{context}`, expected one (an integer 1..255)"
            ),
        );
    }
    // keepalived clears these, with a warning, where they cannot work.
    if let Some(span) = nopreempt_at.filter(|_| nopreempt)
        && (state == VrrpState::Master || priority == 255)
    {
        r.diags.tolerate(
                span,
                "nopreempt does not work with `state MASTER` or priority 255, cleared as keepalived does",
            );
        nopreempt = false;
    }
    if let Some(span) = preempt_delay_at.filter(|_| preempt_delay > 0)
        && state == VrrpState::Master
    {
        r.diags.tolerate(
            span,
            "preempt_delay does not work with `state MASTER`, cleared as keepalived does",
        );
        preempt_delay = 0;
    }
    let version = version.unwrap_or(g.vrrp_version);
    let mut advert_int_centis = advert.as_ref().map(|(c, _)| *c).unwrap_or(100);
    if let Some((centis, span)) = advert {
        if version == 2 && centis % 100 != 0 {
            advert_int_centis = (((centis + 50) / 100) * 100).max(100);
            r.diags.tolerate(
                span,
                format!(
                    "VRRPv2 advert_int must be whole seconds, rounded to {} as keepalived does \
                     (use `version 3` for fractions)",
                    advert_int_centis / 100
                ),
            );
        }
        if version == 3 && centis > 4095 {
            r.diags.error(
                span,
                format!(
                    "found advert_int {}.{:02}, expected at most 40.95 seconds with VRRPv3",
                    centis / 100,
                    centis % 100
                ),
            );
        }
    }
    let authentication = match authentication {
        Some((_, span)) if version == 3 => {
            r.diags.tolerate(
                span,
                "VRRPv3 has no authentication, ignored as keepalived does",
            );
            None
        }
        other => other.map(|(a, _)| a),
    };
    let interface = interface.unwrap_or_else(|| g.default_interface.clone());
    let fill = |list: Vec<PendingVip>| -> Vec<(VirtualIpAddress, Pos)> {
        list.into_iter()
            .map(|mut p| {
                if !p.dev_written {
                    p.vip.dev = interface.clone();
                }
                (p.vip, p.span)
            })
            .collect()
    };
    let vips = fill(vips);
    if let Some((first, _)) = vips.first() {
        let family = AddressFamily::of(&first.address);
        for (vip, span) in &vips[1..] {
            if AddressFamily::of(&vip.address) != family {
                r.diags.error(
                    *span,
                    format!(
                        "found {} in `{context}` whose first virtual address is {}, expected one \
                         address family per instance (put the others in virtual_ipaddress_excluded)",
                        vip.address, first.address
                    ),
                );
            }
        }
    }
    let virtual_ipaddress_excluded = fill(excluded).into_iter().map(|(v, _)| v).collect();
    let [
        notify_master,
        notify_backup,
        notify_fault,
        notify_stop,
        notify,
    ] = notify;
    let (virtual_router_id, vrid_span) = vrid?;
    Some(VrrpInstance {
        name: name?,
        state,
        interface,
        virtual_router_id,
        priority,
        advert_int_centis,
        version,
        nopreempt,
        preempt_delay,
        authentication,
        virtual_ipaddress: vips.into_iter().map(|(v, _)| v).collect(),
        virtual_ipaddress_excluded,
        unicast_src_ip,
        unicast_peer,
        mcast_src_ip,
        track_script,
        track_interface,
        track_file,
        track_process,
        virtual_routes,
        virtual_rules,
        garp_master_delay,
        garp_master_repeat,
        garp_master_refresh,
        garp_master_refresh_repeat,
        notify_master,
        notify_backup,
        notify_fault,
        notify_stop,
        notify,
        smtp_alert,
        origin: r.origin(st.span),
        virtual_router_id_origin: r.origin(vrid_span),
    })
}

/// The entries of an instance's `track_file` or `track_process` block, each
/// `NAME [weight W [reverse|noreverse]]` (-254..254), the object's own weight by default.
fn track_objects<T: HasName>(
    r: &mut Reader<'_>,
    st: &Statement,
    named: &Named<'_, T>,
    keyword: &str,
    own_weight: impl Fn(&T) -> (i32, bool),
) -> Vec<TrackObject> {
    let mut out: Vec<TrackObject> = Vec::new();
    let what = if keyword == "track_file" {
        "a track_file"
    } else {
        "a vrrp_track_process"
    };
    for entry in r.block(st) {
        let (weight, reverse) = tracked(r, entry, 254);
        let Some(object) =
            named.resolve(r, entry.keyword, entry.span, &format!("in {keyword}"), what)
        else {
            continue;
        };
        if out.iter().any(|t| t.name == entry.keyword) {
            // keepalived: "duplicate track_file %s - ignoring".
            r.diags.warn(
                entry.span,
                format!(
                    "duplicate {keyword} {} - ignoring, as keepalived does",
                    entry.keyword
                ),
            );
            continue;
        }
        let (own, own_reverse) = own_weight(object);
        out.push(TrackObject {
            name: entry.keyword.to_string(),
            weight: weight.unwrap_or(own),
            // keepalived keeps the object's reverse unless this line says reverse or noreverse.
            reverse: if entry.args.len() >= 3 {
                reverse
            } else {
                own_reverse
            },
            origin: r.origin(entry.span),
        });
    }
    out
}

/// keepalived's PASS password: the first 8 bytes of `arg`.
fn password(r: &mut Reader<'_>, arg: &Arg) -> Option<String> {
    const MAX: usize = 8;
    let text = arg.text;
    if text.len() <= MAX {
        return Some(text.to_string());
    }
    if !text.is_char_boundary(MAX) {
        r.diags.error(
            arg.span,
            format!(
                "found `{text}` after `auth_pass`, expected at most 8 bytes: keepalived cuts it \
                 to its first 8 bytes, inside a character here, which xlb cannot send alike \
                 (write an ASCII password)"
            ),
        );
        return None;
    }
    let kept = &text[..MAX];
    r.diags.tolerate(
        arg.span,
        format!(
            "found `{text}` after `auth_pass`, expected at most 8 characters: keepalived uses \
             `{kept}`, and so does xlb"
        ),
    );
    Some(kept.to_string())
}

fn authentication_block(r: &mut Reader<'_>, st: &Statement) -> Option<Authentication> {
    if r.needs_block(st) {
        return None;
    }
    let mut auth_type = None;
    let mut auth_pass = None;
    let mut type_written = false;
    let mut pass_written = false;
    for st in r.block(st) {
        match st.keyword {
            "auth_type" => {
                type_written = true;
                if let Some(arg) = r.value(st, "PASS or AH") {
                    match arg.text {
                        "PASS" => auth_type = Some(AuthType::Pass),
                        "AH" => auth_type = Some(AuthType::Ah),
                        _ => r.bad(st, arg, "PASS or AH"),
                    }
                }
            }
            "auth_pass" => {
                pass_written = true;
                // keepalived takes the first word and ignores the rest.
                if let Some(arg) = r.value(st, "a password of up to 8 characters") {
                    auth_pass = password(r, arg).or(auth_pass);
                }
            }
            _ => r.unknown(st, "authentication"),
        }
    }
    if !type_written {
        r.diags.error(
            st.span,
            "found no `auth_type` in `authentication`, expected `auth_type PASS` or `auth_type AH`",
        );
    }
    if !pass_written {
        r.diags.error(
            st.span,
            "found no `auth_pass` in `authentication`, expected `auth_pass PASSWORD`",
        );
    }
    Some(Authentication {
        auth_type: auth_type?,
        auth_pass: auth_pass?,
    })
}
