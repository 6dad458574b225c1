//! Prints the effective configuration in keepalived syntax.
//!
//! Every value is written out, defaults included, so the output shows exactly
//! what xlb will do, and reading it back gives an equal `Config`.

use std::fmt::{self, Write};

use crate::model::{
    CheckTiming, Checker, Config, Connection, GlobalDefs, HexBytes, NotifyScript, ParamMatch,
    RealServer, Route, RouteType, Rule, RuleAction, ScriptUser, StatusRange, TrackFile,
    TrackObject, Url, VirtualIpAddress, VirtualServer, VirtualServerGroup, VrrpInstance,
    VrrpScript, VrrpState, VrrpSyncGroup, VrrpTrackProcess, scope_name,
};
use crate::syntax::lexer::{INCLUDE_KEYWORDS, is_space};

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut p = Printer {
            out: String::new(),
            depth: 0,
            omit_connect_port: false,
        };
        p.config(self);
        f.write_str(&p.out)
    }
}

impl Config {
    /// The effective configuration in keepalived.conf syntax.
    pub fn to_keepalived_string(&self) -> String {
        self.to_string()
    }
}

/// A value as one keepalived token: quoted when it would otherwise split,
/// start a comment (anywhere in a word) or a block, or, at the start of a
/// line, be read as a conditional, a definition, a sequence or an include.
fn word(s: &str) -> String {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| is_space(c) || matches!(c, '{' | '}' | '"' | '!' | '#'))
        && !s.starts_with(['@', '$', '~'])
        && !s.starts_with("//")
        && !INCLUDE_KEYWORDS.contains(&s);
    if plain { s.to_string() } else { quoted(s) }
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

fn centis(c: u32) -> String {
    if c.is_multiple_of(100) {
        (c / 100).to_string()
    } else {
        let s = format!("{}.{:02}", c / 100, c % 100);
        s.trim_end_matches('0').to_string()
    }
}

fn user(u: &ScriptUser) -> String {
    match &u.group {
        Some(g) => format!("{} {}", word(&u.user), word(g)),
        None => word(&u.user),
    }
}

fn status(ranges: &[StatusRange]) -> String {
    ranges
        .iter()
        .map(|r| {
            if r.from == r.to {
                r.from.to_string()
            } else {
                format!("{}-{}", r.from, r.to)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes in keepalived's hex format, two digits each, `X` for a digit not compared.
fn hex(b: &HexBytes) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(b.data.len() * 3);
    for (i, byte) in b.data.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let mask = b.mask.get(i).copied().unwrap_or(0);
        for shift in [4, 0] {
            if (mask >> shift) & 0x0f == 0x0f {
                out.push('X');
            } else {
                out.push(DIGITS[usize::from((byte >> shift) & 0x0f)] as char);
            }
        }
    }
    out
}

fn weight_reverse(weight: i32, reverse: bool) -> String {
    if reverse {
        format!("{weight} reverse")
    } else {
        weight.to_string()
    }
}

struct Printer {
    out: String,
    depth: usize,
    /// The checker printed leaves its connect_port out: a group's check whose port follows
    /// its real server's in every service of the group.
    omit_connect_port: bool,
}

/// Which ports of a `virtual_server group` block follow each service's port in every service
/// of the group (one per address and port): those are printed without a port, so that each
/// service reads its own back; a port written that differs in one service is printed.
struct Follows {
    sorry_server: bool,
    /// Per real server (by position): its port, and per check its connect_port.
    real_servers: Vec<(bool, Vec<bool>)>,
}

impl Follows {
    fn of(services: &[&VirtualServer]) -> Follows {
        let Some(first) = services.first() else {
            return Follows {
                sorry_server: false,
                real_servers: Vec::new(),
            };
        };
        let sorry_server = services
            .iter()
            .all(|vs| vs.sorry_server.as_ref().is_some_and(|s| s.port == vs.port));
        let real_servers = (0..first.real_servers.len())
            .map(|i| {
                let port = services
                    .iter()
                    .all(|vs| vs.real_servers.get(i).is_some_and(|rs| rs.port == vs.port));
                let checks = (0..first.real_servers[i].checkers.len())
                    .map(|j| {
                        services.iter().all(|vs| {
                            vs.real_servers.get(i).is_some_and(|rs| {
                                rs.checkers.get(j).is_some_and(|c| {
                                    // Only TCP and HTTP checks default to the real server's port.
                                    matches!(c, Checker::Tcp(_) | Checker::Http(_))
                                        && c.connection()
                                            .is_some_and(|co| co.connect_port == rs.port)
                                })
                            })
                        })
                    })
                    .collect();
                (port, checks)
            })
            .collect();
        Follows {
            sorry_server,
            real_servers,
        }
    }
}

impl fmt::Display for Route {
    /// keepalived's (and `ip route`'s) words, as in `static_routes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&route(self))
    }
}

impl fmt::Display for Rule {
    /// keepalived's (and `ip rule`'s) words, as in `static_rules`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rule(self))
    }
}

/// A route in keepalived's (and `ip route`'s) words.
fn route(rt: &Route) -> String {
    let mut text = String::new();
    if rt.kind != RouteType::Unicast {
        let _ = write!(text, "{} ", rt.kind.name());
    }
    let _ = write!(text, "{}", rt.dest);
    if let Some(v) = &rt.via {
        let _ = write!(text, " via {v}");
    }
    if let Some(d) = &rt.dev {
        let _ = write!(text, " dev {}", word(d));
    }
    if let Some(s) = &rt.src {
        let _ = write!(text, " src {s}");
    }
    if let Some(m) = rt.metric {
        let _ = write!(text, " metric {m}");
    }
    let _ = write!(text, " table {}", rt.table);
    if let Some(s) = rt.scope {
        match scope_name(s) {
            Some(name) => {
                let _ = write!(text, " scope {name}");
            }
            None => {
                let _ = write!(text, " scope {s}");
            }
        }
    }
    if rt.onlink {
        text.push_str(" onlink");
    }
    if rt.no_track {
        text.push_str(" no_track");
    }
    text
}

/// A rule in keepalived's (and `ip rule`'s) words.
fn rule(ru: &Rule) -> String {
    let mut text = String::new();
    if ru.family == crate::model::AddressFamily::Ipv6 {
        text.push_str("inet6 ");
    }
    if let Some(f) = &ru.from {
        let _ = write!(text, "from {f} ");
    }
    if let Some(t) = &ru.to {
        let _ = write!(text, "to {t} ");
    }
    if let Some(m) = &ru.fwmark {
        match m.mask {
            Some(mask) => {
                let _ = write!(text, "fwmark {:#x}/{mask:#x} ", m.mark);
            }
            None => {
                let _ = write!(text, "fwmark {:#x} ", m.mark);
            }
        }
    }
    if let Some(i) = &ru.iif {
        let _ = write!(text, "iif {} ", word(i));
    }
    if let Some(o) = &ru.oif {
        let _ = write!(text, "oif {} ", word(o));
    }
    let _ = write!(text, "priority {} ", ru.priority);
    match ru.action {
        RuleAction::Table(t) => {
            let _ = write!(text, "table {t}");
        }
        RuleAction::Blackhole => text.push_str("blackhole"),
        RuleAction::Unreachable => text.push_str("unreachable"),
        RuleAction::Prohibit => text.push_str("prohibit"),
    }
    if ru.no_track {
        text.push_str(" no_track");
    }
    text
}

impl Printer {
    fn line(&mut self, text: impl AsRef<str>) {
        for _ in 0..self.depth {
            self.out.push_str("    ");
        }
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    fn open(&mut self, header: impl AsRef<str>) {
        self.line(format!("{} {{", header.as_ref()));
        self.depth += 1;
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.line("}");
    }

    fn flag(&mut self, keyword: &str, on: bool) {
        if on {
            self.line(keyword);
        }
    }

    fn notify(&mut self, keyword: &str, script: &Option<NotifyScript>) {
        if let Some(s) = script {
            let mut text = format!("{keyword} {}", quoted(&s.command));
            if let Some(u) = &s.user {
                let _ = write!(text, " {}", user(u));
            }
            self.line(text);
        }
    }

    fn config(&mut self, c: &Config) {
        self.global_defs(&c.global_defs);
        if !c.static_ipaddress.is_empty() {
            self.out.push('\n');
            self.open("static_ipaddress");
            for v in &c.static_ipaddress {
                self.vip(v);
            }
            self.close();
        }
        self.lines("static_routes", c.static_routes.iter().map(route));
        self.lines("static_rules", c.static_rules.iter().map(rule));
        for s in &c.vrrp_scripts {
            self.out.push('\n');
            self.vrrp_script(s);
        }
        for f in &c.track_files {
            self.out.push('\n');
            self.track_file(f);
        }
        for p in &c.vrrp_track_processes {
            self.out.push('\n');
            self.track_process(p);
        }
        for g in &c.vrrp_sync_groups {
            self.out.push('\n');
            self.sync_group(g);
        }
        for i in &c.vrrp_instances {
            self.out.push('\n');
            self.instance(i);
        }
        for g in &c.virtual_server_groups {
            self.out.push('\n');
            self.virtual_server_group(g);
        }
        // A `virtual_server group` block is printed once, for its first service, leaving out
        // the ports that follow each service's in all of them.
        let mut groups_printed = std::collections::BTreeSet::new();
        for vs in &c.virtual_servers {
            let follows = match &vs.group {
                Some(g) => {
                    if !groups_printed.insert((g.as_str(), vs.protocol)) {
                        continue;
                    }
                    let expansions: Vec<&VirtualServer> = c
                        .virtual_servers
                        .iter()
                        .filter(|o| o.group == vs.group && o.protocol == vs.protocol)
                        .collect();
                    Some(Follows::of(&expansions))
                }
                None => None,
            };
            self.out.push('\n');
            self.virtual_server(vs, follows.as_ref());
        }
    }

    /// `keyword { line... }` when there is any line, with a blank line before.
    fn lines(&mut self, keyword: &str, lines: impl Iterator<Item = String>) {
        let mut lines = lines.peekable();
        if lines.peek().is_none() {
            return;
        }
        self.out.push('\n');
        self.open(keyword);
        for l in lines {
            self.line(l);
        }
        self.close();
    }

    fn virtual_server_group(&mut self, g: &VirtualServerGroup) {
        self.open(format!("virtual_server_group {}", word(&g.name)));
        for e in &g.entries {
            if e.first == e.last {
                self.line(format!("{} {}", e.first, e.port));
            } else {
                self.line(format!("{}-{} {}", e.first, e.last, e.port));
            }
        }
        self.close();
    }

    fn global_defs(&mut self, g: &GlobalDefs) {
        self.open("global_defs");
        if let Some(id) = &g.router_id {
            self.line(format!("router_id {}", word(id)));
        }
        self.line(format!("vrrp_version {}", g.vrrp_version));
        if let Some(u) = &g.script_user {
            self.line(format!("script_user {}", user(u)));
        }
        self.flag("enable_script_security", g.enable_script_security);
        self.line(format!("default_interface {}", word(&g.default_interface)));
        self.flag("vrrp_skip_check_adv_addr", g.vrrp_skip_check_adv_addr);
        self.flag("vrrp_strict", g.vrrp_strict);
        self.line(format!("vrrp_garp_interval {}", g.vrrp_garp_interval));
        self.line(format!("vrrp_gna_interval {}", g.vrrp_gna_interval));
        self.line(format!(
            "vrrp_garp_master_delay {}",
            g.vrrp_garp_master_delay
        ));
        self.line(format!(
            "vrrp_garp_master_repeat {}",
            g.vrrp_garp_master_repeat
        ));
        self.line(format!(
            "vrrp_garp_master_refresh {}",
            g.vrrp_garp_master_refresh
        ));
        self.line(format!(
            "vrrp_garp_master_refresh_repeat {}",
            g.vrrp_garp_master_refresh_repeat
        ));
        self.line(format!("xlb_maglev_table_size {}", g.xlb_maglev_table_size));
        if !g.xlb_announce.is_empty() {
            let vips: Vec<String> = g
                .xlb_announce
                .iter()
                .map(|v| v.address.to_string())
                .collect();
            self.line(format!("xlb_announce {}", vips.join(" ")));
        }
        self.line(format!("xlb_announce_table {}", g.xlb_announce_table));
        self.line(format!("xlb_announce_drain {}", g.xlb_announce_drain));
        self.line(format!("xlb_bird_socket {}", word(&g.xlb_bird_socket)));
        self.close();
    }

    fn vrrp_script(&mut self, s: &VrrpScript) {
        self.open(format!("vrrp_script {}", word(&s.name)));
        self.line(format!("script {}", quoted(&s.script)));
        self.line(format!("interval {}", s.interval));
        self.line(format!("timeout {}", s.timeout));
        self.line(format!(
            "weight {}{}",
            s.weight,
            if s.weight_reverse { " reverse" } else { "" }
        ));
        self.line(format!("fall {}", s.fall));
        self.line(format!("rise {}", s.rise));
        if let Some(u) = &s.user {
            self.line(format!("user {}", user(u)));
        }
        self.close();
    }

    fn track_file(&mut self, f: &TrackFile) {
        self.open(format!("track_file {}", word(&f.name)));
        self.line(format!("file {}", quoted(&f.file)));
        self.line(format!(
            "weight {}",
            weight_reverse(f.weight, f.weight_reverse)
        ));
        if let Some(init) = &f.init_file {
            self.line(format!(
                "init_file {}{}",
                init.value,
                if init.overwrite { " overwrite" } else { "" }
            ));
        }
        self.close();
    }

    fn track_process(&mut self, p: &VrrpTrackProcess) {
        self.open(format!("vrrp_track_process {}", word(&p.name)));
        let mut process = format!("process {}", quoted(&p.process));
        for param in &p.params {
            let _ = write!(process, " {}", quoted(param));
        }
        self.line(process);
        match p.param_match {
            ParamMatch::None => {}
            ParamMatch::Exact => self.line("param_match"),
            ParamMatch::Partial => self.line("param_match partial"),
            ParamMatch::Initial => self.line("param_match initial"),
        }
        self.flag("full_command", p.full_command);
        self.line(format!(
            "weight {}",
            weight_reverse(p.weight, p.weight_reverse)
        ));
        // `quorum_max 0` sets the quorum to 0, which `quorum` itself cannot be written as.
        if p.quorum_max != Some(0) {
            self.line(format!("quorum {}", p.quorum));
        }
        if let Some(max) = p.quorum_max {
            self.line(format!("quorum_max {max}"));
        }
        if p.fork_delay.as_micros() > 0 {
            self.line(format!("fork_delay {}", p.fork_delay));
        }
        if p.terminate_delay.as_micros() > 0 {
            self.line(format!("terminate_delay {}", p.terminate_delay));
        }
        self.close();
    }

    fn track_objects(&mut self, keyword: &str, objects: &[TrackObject]) {
        if objects.is_empty() {
            return;
        }
        self.open(keyword);
        for t in objects {
            self.line(format!(
                "{} weight {} {}",
                word(&t.name),
                t.weight,
                if t.reverse { "reverse" } else { "noreverse" }
            ));
        }
        self.close();
    }

    fn sync_group(&mut self, g: &VrrpSyncGroup) {
        self.open(format!("vrrp_sync_group {}", word(&g.name)));
        self.open("group");
        for m in &g.group {
            self.line(word(&m.name));
        }
        self.close();
        self.notify("notify_master", &g.notify_master);
        self.notify("notify_backup", &g.notify_backup);
        self.notify("notify_fault", &g.notify_fault);
        self.notify("notify_stop", &g.notify_stop);
        self.notify("notify", &g.notify);
        self.flag("smtp_alert", g.smtp_alert);
        self.close();
    }

    fn vip(&mut self, v: &VirtualIpAddress) {
        let mut text = format!("{}/{} dev {}", v.address, v.prefix_len, word(&v.dev));
        if let Some(b) = &v.brd {
            let _ = write!(text, " brd {b}");
        }
        if let Some(s) = &v.scope {
            let _ = write!(text, " scope {}", word(s));
        }
        if let Some(l) = &v.label {
            let _ = write!(text, " label {}", word(l));
        }
        if v.no_track {
            text.push_str(" no_track");
        }
        self.line(text);
    }

    fn instance(&mut self, i: &VrrpInstance) {
        self.open(format!("vrrp_instance {}", word(&i.name)));
        self.line(match i.state {
            VrrpState::Master => "state MASTER",
            VrrpState::Backup => "state BACKUP",
        });
        self.line(format!("interface {}", word(&i.interface)));
        self.line(format!("virtual_router_id {}", i.virtual_router_id));
        self.line(format!("priority {}", i.priority));
        self.line(format!("advert_int {}", centis(i.advert_int_centis)));
        self.line(format!("version {}", i.version));
        self.flag("nopreempt", i.nopreempt);
        self.line(format!("preempt_delay {}", i.preempt_delay));
        if let Some(a) = &i.authentication {
            self.open("authentication");
            self.line(match a.auth_type {
                crate::model::AuthType::Pass => "auth_type PASS",
                crate::model::AuthType::Ah => "auth_type AH",
            });
            self.line(format!("auth_pass {}", word(&a.auth_pass)));
            self.close();
        }
        self.open("virtual_ipaddress");
        for v in &i.virtual_ipaddress {
            self.vip(v);
        }
        self.close();
        if !i.virtual_ipaddress_excluded.is_empty() {
            self.open("virtual_ipaddress_excluded");
            for v in &i.virtual_ipaddress_excluded {
                self.vip(v);
            }
            self.close();
        }
        if let Some(ip) = &i.unicast_src_ip {
            self.line(format!("unicast_src_ip {ip}"));
        }
        if !i.unicast_peer.is_empty() {
            self.open("unicast_peer");
            for ip in &i.unicast_peer {
                self.line(ip.to_string());
            }
            self.close();
        }
        if let Some(ip) = &i.mcast_src_ip {
            self.line(format!("mcast_src_ip {ip}"));
        }
        if !i.track_script.is_empty() {
            self.open("track_script");
            for t in &i.track_script {
                self.line(format!(
                    "{} weight {}{}",
                    word(&t.name),
                    t.weight,
                    if t.reverse { " reverse" } else { "" }
                ));
            }
            self.close();
        }
        if !i.track_interface.is_empty() {
            self.open("track_interface");
            for t in &i.track_interface {
                match t.weight {
                    Some(w) => self.line(format!(
                        "{} weight {w}{}",
                        word(&t.name),
                        if t.reverse { " reverse" } else { "" }
                    )),
                    None => self.line(word(&t.name)),
                }
            }
            self.close();
        }
        self.track_objects("track_file", &i.track_file);
        self.track_objects("track_process", &i.track_process);
        if !i.virtual_routes.is_empty() {
            self.open("virtual_routes");
            for rt in &i.virtual_routes {
                self.line(route(rt));
            }
            self.close();
        }
        if !i.virtual_rules.is_empty() {
            self.open("virtual_rules");
            for ru in &i.virtual_rules {
                self.line(rule(ru));
            }
            self.close();
        }
        self.line(format!("garp_master_delay {}", i.garp_master_delay));
        self.line(format!("garp_master_repeat {}", i.garp_master_repeat));
        self.line(format!("garp_master_refresh {}", i.garp_master_refresh));
        self.line(format!(
            "garp_master_refresh_repeat {}",
            i.garp_master_refresh_repeat
        ));
        self.notify("notify_master", &i.notify_master);
        self.notify("notify_backup", &i.notify_backup);
        self.notify("notify_fault", &i.notify_fault);
        self.notify("notify_stop", &i.notify_stop);
        self.notify("notify", &i.notify);
        self.flag("smtp_alert", i.smtp_alert);
        self.close();
    }

    fn virtual_server(&mut self, vs: &VirtualServer, follows: Option<&Follows>) {
        match &vs.group {
            Some(g) => self.open(format!("virtual_server group {}", word(g))),
            None => self.open(format!("virtual_server {} {}", vs.address, vs.port)),
        }
        self.line(format!("protocol {}", vs.protocol.name()));
        self.line(format!("delay_loop {}", vs.delay_loop));
        self.line(format!("lb_algo {}", vs.lb_algo.name()));
        self.line(format!("lb_kind {}", vs.lb_kind.name()));
        self.line(format!("persistence_timeout {}", vs.persistence_timeout));
        if let Some(g) = &vs.persistence_granularity {
            self.line(format!("persistence_granularity {g}"));
        }
        if let Some(h) = &vs.virtualhost {
            self.line(format!("virtualhost {}", word(h)));
        }
        if let Some(s) = &vs.sorry_server {
            if follows.is_some_and(|f| f.sorry_server) {
                self.line(format!("sorry_server {}", s.address));
            } else {
                self.line(format!("sorry_server {} {}", s.address, s.port));
            }
        }
        self.line(format!("quorum {}", vs.quorum));
        self.line(format!("hysteresis {}", vs.hysteresis));
        self.notify("quorum_up", &vs.quorum_up);
        self.notify("quorum_down", &vs.quorum_down);
        self.flag("alpha", vs.alpha);
        self.flag("omega", vs.omega);
        self.flag("inhibit_on_failure", vs.inhibit_on_failure);
        self.flag("ha_suspend", vs.ha_suspend);
        for (i, rs) in vs.real_servers.iter().enumerate() {
            let follow = follows.and_then(|f| f.real_servers.get(i));
            self.real_server(rs, vs.inhibit_on_failure, follow);
        }
        self.close();
    }

    /// `follow`: in a group's block, whether the real server's port and each check's
    /// connect_port follow the service's and are left out.
    fn real_server(
        &mut self,
        rs: &RealServer,
        vs_inhibit: bool,
        follow: Option<&(bool, Vec<bool>)>,
    ) {
        if follow.is_some_and(|f| f.0) {
            self.open(format!("real_server {}", rs.address));
        } else {
            self.open(format!("real_server {} {}", rs.address, rs.port));
        }
        self.line(format!("weight {}", rs.weight));
        if rs.inhibit_on_failure {
            self.line("inhibit_on_failure");
        } else if vs_inhibit {
            // Would otherwise be inherited from the virtual server when read back.
            self.line("inhibit_on_failure false");
        }
        self.notify("notify_up", &rs.notify_up);
        self.notify("notify_down", &rs.notify_down);
        for (j, c) in rs.checkers.iter().enumerate() {
            self.omit_connect_port = follow.is_some_and(|f| f.1.get(j).copied().unwrap_or(false));
            self.checker(c);
        }
        self.omit_connect_port = false;
        self.close();
    }

    fn connection(&mut self, c: &Connection, port_may_follow: bool) {
        self.line(format!("connect_ip {}", c.connect_ip));
        if !(port_may_follow && self.omit_connect_port) {
            self.line(format!("connect_port {}", c.connect_port));
        }
        if let Some(b) = &c.bindto {
            self.line(format!("bindto {b}"));
        }
        if let Some(p) = c.bind_port {
            self.line(format!("bind_port {p}"));
        }
        self.line(format!("connect_timeout {}", c.connect_timeout));
    }

    fn timing(&mut self, t: &CheckTiming) {
        self.line(format!("delay_loop {}", t.delay_loop));
        self.line(format!("retry {}", t.retry));
        self.line(format!("delay_before_retry {}", t.delay_before_retry));
        self.line(format!("warmup {}", t.warmup));
    }

    fn url(&mut self, u: &Url) {
        self.open("url");
        self.line(format!("path {}", word(&u.path)));
        if let Some(d) = &u.digest {
            self.line(format!("digest {}", word(d)));
        }
        if !u.status_code.is_empty() {
            self.line(format!("status_code {}", status(&u.status_code)));
        }
        if let Some(h) = &u.virtualhost {
            self.line(format!("virtualhost {}", word(h)));
        }
        self.close();
    }

    fn checker(&mut self, c: &Checker) {
        match c {
            Checker::Tcp(t) => {
                self.open("TCP_CHECK");
                self.connection(&t.connection, true);
                self.timing(&t.timing);
            }
            Checker::Http(h) => {
                self.open(if h.tls { "SSL_GET" } else { "HTTP_GET" });
                self.connection(&h.connection, true);
                self.timing(&h.timing);
                if let Some(v) = &h.virtualhost {
                    self.line(format!("virtualhost {}", word(v)));
                }
                for u in &h.urls {
                    self.url(u);
                }
            }
            Checker::Misc(m) => {
                self.open("MISC_CHECK");
                self.line(format!("misc_path {}", quoted(&m.misc_path)));
                self.line(format!("misc_timeout {}", m.misc_timeout));
                self.flag("misc_dynamic", m.misc_dynamic);
                if let Some(u) = &m.user {
                    self.line(format!("user {}", user(u)));
                }
                self.timing(&m.timing);
            }
            Checker::Ping(p) => {
                self.open("PING_CHECK");
                self.connection(&p.connection, false);
                self.timing(&p.timing);
            }
            Checker::Udp(u) => {
                self.open("UDP_CHECK");
                self.connection(&u.connection, false);
                self.timing(&u.timing);
                if let Some(payload) = &u.payload {
                    self.line(format!("payload {}", hex(payload)));
                }
                if u.require_reply {
                    match &u.reply {
                        Some(reply) => self.line(format!("require_reply {}", hex(reply))),
                        None => self.line("require_reply"),
                    }
                }
                self.line(format!("min_reply_length {}", u.min_reply_length));
                self.line(format!("max_reply_length {}", u.max_reply_length));
            }
            Checker::Dns(d) => {
                self.open("DNS_CHECK");
                self.connection(&d.connection, false);
                self.timing(&d.timing);
                self.line(format!("type {}", d.query_type.name()));
                self.line(format!("name {}", word(&d.name)));
            }
            Checker::Smtp(s) => {
                self.open("SMTP_CHECK");
                self.connection(&s.connection, false);
                self.timing(&s.timing);
                self.line(format!("helo_name {}", word(&s.helo_name)));
            }
            Checker::File(f) => {
                self.open("FILE_CHECK");
                self.line(format!("track_file {}", word(&f.track_file)));
                self.line(format!("weight {}", weight_reverse(f.weight, f.reverse)));
            }
        }
        self.close();
    }
}
