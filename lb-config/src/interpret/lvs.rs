//! `virtual_server`, `real_server` and their health checkers.

use std::fmt;
use std::net::IpAddr;

use crate::diagnostic::Pos;
use crate::model::{
    CheckTiming, Checker, Connection, HttpCheck, LbAlgo, LbKind, MiscCheck, Origin, Protocol,
    RealServer, SorryServer, StatusRange, TcpCheck, Timer, Url, VirtualServer,
};
use crate::syntax::Statement;

use super::checkers::{Options, TrackFiles, check_connection, file_check};
use super::values::{block_name, parse_uint};
use super::{Reader, unknown};
use crate::validate;

const CHECKERS: &[&str] = &[
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
];
const UNSUPPORTED_CHECKERS: &[&str] = &["BFD_CHECK"];
const VS_BLOCKS: &[&str] = &["real_server"];
const RS_BLOCKS: &[&str] = &[
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "SMTP_CHECK",
    "DNS_CHECK",
    "BFD_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
];

/// IPVS scheduler flags: xlb's scheduling is Maglev.
const SCHEDULER_FLAG_WHY: &str = "it is an IPVS scheduler flag; xlb places each new connection by \
     weighted consistent hashing (Maglev) over the real servers that are up, on the connection, \
     or on the client address with persistence or `lb_algo sh`";

/// Virtual-server keywords xlb accepts and does not act on, and why.
const VS_IGNORED: &[(&str, &str)] = &[
    (
        "ops",
        "xlb remembers UDP flows (`xlb run --udp-idle-timeout`) rather than scheduling each \
         packet",
    ),
    ("hashed", SCHEDULER_FLAG_WHY),
    ("flag-1", SCHEDULER_FLAG_WHY),
    ("flag-2", SCHEDULER_FLAG_WHY),
    ("flag-3", SCHEDULER_FLAG_WHY),
    ("sh-port", SCHEDULER_FLAG_WHY),
    ("sh-fallback", SCHEDULER_FLAG_WHY),
    ("mh-port", SCHEDULER_FLAG_WHY),
    ("mh-fallback", SCHEDULER_FLAG_WHY),
    (
        "persistence_engine",
        "IPVS persistence engines (SIP) are not in xlb; its persistence hashes the client \
         address",
    ),
    (
        "snmp_name",
        "xlb has no SNMP; it names services by address, port and protocol",
    ),
    (
        "ip_family",
        "xlb takes the family from the virtual server's address",
    ),
    (
        "sorry_server_inhibit",
        "xlb takes the sorry server out of the table as soon as a real server is up again",
    ),
    (
        "sorry_server_lvs_method",
        "xlb forwards to the sorry server by DR, as to every real server",
    ),
];

/// Real-server keywords xlb accepts and does not act on, and why.
const RS_IGNORED: &[(&str, &str)] = &[
    (
        "uthreshold",
        "xlb does not cap connections per real server; Maglev spreads new connections by weight",
    ),
    (
        "lthreshold",
        "xlb does not cap connections per real server; Maglev spreads new connections by weight",
    ),
    (
        "snmp_name",
        "xlb has no SNMP; it names real servers by address and port",
    ),
];

/// Checker keywords xlb accepts and does not act on, and why.
const CHECKER_IGNORED: &[(&str, &str)] = &[
    (
        "bind_if",
        "xlb's checks leave by the route to the real server (`bindto` sets their source)",
    ),
    ("fwmark", "xlb's checks carry no firewall mark"),
    (
        "log_all_failures",
        "xlb logs every check that changes a real server's state, with the reason",
    ),
    (
        "alpha",
        "write `alpha` on the virtual or real server, where xlb reads it",
    ),
    (
        "http_protocol",
        "xlb's HTTP checks send HTTP/1.0 requests, as keepalived's default",
    ),
    (
        "fast_recovery",
        "xlb checks a failed real server again after delay_before_retry, as keepalived's default",
    ),
    (
        "enable_sni",
        "xlb's SSL_GET always sends SNI: the virtualhost, or else the address checked",
    ),
    (
        "sni_name",
        "xlb's SSL_GET sends the virtualhost as SNI; set `virtualhost` instead",
    ),
    (
        "tls_compliant",
        "xlb's SSL_GET reads the whole answer and closes the TLS session cleanly",
    ),
];

/// Why body matching is ignored: it changes when a real server is up.
const REGEX_WHY: &str = "xlb checks `status_code` and `digest` only, so a real server whose answer \
     does not match is still up; match the body with a MISC_CHECK script";

/// `url` keywords xlb accepts and does not act on, and why.
const URL_IGNORED: &[(&str, &str)] = &[
    ("regex", REGEX_WHY),
    ("regex_no_match", REGEX_WHY),
    ("regex_options", REGEX_WHY),
    ("regex_stack", REGEX_WHY),
    ("regex_min_offset", REGEX_WHY),
    ("regex_max_offset", REGEX_WHY),
    (
        "tls_compliant",
        "xlb's SSL_GET reads the whole answer and closes the TLS session cleanly",
    ),
];

/// Longest timeout IPVS accepts (31 days), which keepalived enforces too.
const MAX_PERSISTENCE: u32 = 2_678_400;

/// Checker settings that may be given on the virtual server, the real server
/// or the checker, the nearest one winning.
#[derive(Clone, Default)]
struct CheckDefaults {
    connect_timeout: Option<Timer>,
    retry: Option<u32>,
    delay_before_retry: Option<Timer>,
    warmup: Option<Timer>,
    delay_loop: Option<Timer>,
    virtualhost: Option<String>,
}

impl CheckDefaults {
    /// Reads one of the shared keywords; false if `st` is not one of them.
    fn read(&mut self, r: &mut Reader<'_>, st: &Statement) -> bool {
        match st.keyword {
            "connect_timeout" => {
                self.connect_timeout = r
                    .timer(st, Timer::from_micros(1), None)
                    .or(self.connect_timeout)
            }
            "retry" | "nb_get_retry" => {
                self.retry = r.u32(st, 0, 1_000_000).or(self.retry);
            }
            "delay_before_retry" => {
                self.delay_before_retry = r
                    .timer(st, Timer::default(), None)
                    .or(self.delay_before_retry)
            }
            "warmup" => self.warmup = r.timer(st, Timer::default(), None).or(self.warmup),
            "delay_loop" => {
                self.delay_loop = r.timer(st, Timer::from_micros(1), None).or(self.delay_loop)
            }
            "virtualhost" => {
                self.virtualhost = r.string(st, "a host name").or(self.virtualhost.take())
            }
            _ => return false,
        }
        true
    }

    /// `self` where set, otherwise `outer`.
    fn over(&self, outer: &CheckDefaults) -> CheckDefaults {
        CheckDefaults {
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
            warmup: self.warmup.or(outer.warmup),
            delay_loop: self.delay_loop.or(outer.delay_loop),
            virtualhost: self
                .virtualhost
                .clone()
                .or_else(|| outer.virtualhost.clone()),
        }
    }
}

fn address_and_port(
    r: &mut Reader<'_>,
    st: &Statement,
    port_required: bool,
) -> Option<(IpAddr, Option<u16>)> {
    let Some(addr) = st.args.first() else {
        r.missing(st, "an IP address and a port");
        return None;
    };
    let ip = r.ip_arg(st, addr);
    let port = match st.args.get(1) {
        Some(p) => r.port_arg(st, p),
        None if port_required => {
            r.diags.error(
                st.span,
                format!(
                    "found end of line after `{}`, expected a port: xlb does not balance all ports of an address",
                    st.text()
                ),
            );
            None
        }
        None => None,
    };
    r.extra_args(st, 2);
    Some((ip?, port))
}

/// Why `virtual_server fwmark` is refused, and what to write instead.
pub(super) const FWMARK_WHY: &str = "xlb forwards in XDP, before netfilter, where no packet \
     carries a firewall mark yet; write one `virtual_server IP PORT` per address and port, or \
     list them in a `virtual_server_group NAME { IP PORT ... }` used by `virtual_server group \
     NAME`";

/// `virtual_server IP PORT { ... }`; with `header`, the block of a `virtual_server group`
/// read for one of its ports (the address is the first of the group's on that port).
pub(super) fn virtual_server(
    r: &mut Reader<'_>,
    st: &Statement,
    files: &TrackFiles<'_>,
    header: Option<(IpAddr, u16)>,
) -> Option<VirtualServer> {
    if r.needs_block(st) {
        return None;
    }
    if header.is_none()
        && let Some(first) = st.args.first()
        && first.text == "fwmark"
    {
        r.diags.error(
            first.span,
            format!(
                "found `virtual_server fwmark`, expected `virtual_server IP PORT`: {FWMARK_WHY}"
            ),
        );
        return None;
    }
    let header = match header {
        Some((ip, port)) => Some((ip, Some(port))),
        None => address_and_port(r, st, true),
    };
    let context = block_name("virtual_server", st);
    let mut protocol = Protocol::Tcp;
    // keepalived 2.2: "no scheduler set, setting default 'wlc'".
    let mut lb_algo = (LbAlgo::Wlc, Origin::default());
    let mut lb_kind = (LbKind::Nat, Origin::default());
    let mut persistence_timeout = 0;
    let mut persistence_granularity = None;
    let mut sorry_server = None;
    let mut quorum = 1;
    let mut hysteresis = 0;
    let mut quorum_up = None;
    let mut quorum_down = None;
    let mut alpha = false;
    let mut omega = false;
    let mut inhibit_on_failure = false;
    let mut ha_suspend = false;
    let mut defaults = CheckDefaults::default();
    // A line keepalived ignores that was meant to set the forwarding method
    // (`lb_kind dr`, `lb-kind DR`): where, and what keepalived makes of it.
    let mut kind_ignored: Option<(Pos, String)> = None;

    let block = r.block(st);
    let block = r.split_run_together(block, VS_BLOCKS);
    // Virtual-server settings first: real servers inherit them wherever they are written.
    for st in &block {
        let kw = st.keyword;
        if kw == "real_server" || defaults.read(r, st) {
            continue;
        }
        match kw {
            "lb_algo" | "lvs_sched" => {
                let expected = fmt::from_fn(|f| {
                    f.write_str("a scheduler: ")?;
                    for (i, algo) in LbAlgo::ALL.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        f.write_str(algo.name())?;
                    }
                    Ok(())
                });
                if let Some(arg) = r.value(st, &expected) {
                    match LbAlgo::from_name(arg.text) {
                        Some(a) => lb_algo = (a, r.origin(st.span)),
                        None => r.bad(st, arg, &expected),
                    }
                }
            }
            "lb_kind" | "lvs_method" => {
                if let Some(arg) = st.args.first() {
                    // TUN may be followed by its tunnel type; it is refused whole by validate.
                    if arg.text != "TUN" {
                        r.extra_args(st, 1);
                    }
                }
                r.no_block(st);
                match st.args.first() {
                    None => r.missing(st, "DR, NAT or TUN"),
                    Some(arg) => match arg.text {
                        "DR" => lb_kind = (LbKind::Dr, r.origin(st.span)),
                        "NAT" => lb_kind = (LbKind::Nat, r.origin(st.span)),
                        "TUN" => lb_kind = (LbKind::Tun, r.origin(st.span)),
                        // keepalived: "unknown [dr] routing method", line ignored.
                        _ => {
                            kind_ignored = Some((
                                arg.span,
                                format!(
                                    "found `{} {}`, expected DR, NAT or TUN (in capitals): \
                                     keepalived ignores this line",
                                    st.keyword, arg.text
                                ),
                            ))
                        }
                    },
                }
            }
            "persistence_timeout" => {
                r.no_block(st);
                // keepalived: the bare keyword means six minutes.
                persistence_timeout = match st.args.first() {
                    None => 360,
                    Some(arg) => {
                        r.extra_args(st, 1);
                        r.uint_arg(st, arg, 0, u64::from(MAX_PERSISTENCE))
                            .map(|n| n as u32)
                            .unwrap_or(persistence_timeout)
                    }
                };
            }
            "persistence_granularity" => {
                persistence_granularity = r.ip(st).or(persistence_granularity)
            }
            "protocol" => {
                if let Some(arg) = r.value(st, "TCP or UDP") {
                    match arg.text {
                        "TCP" => protocol = Protocol::Tcp,
                        "UDP" => protocol = Protocol::Udp,
                        "SCTP" => r.diags.error(
                            arg.span,
                            "found `SCTP` after `protocol`, expected TCP or UDP: SCTP is not supported by xlb",
                        ),
                        _ => r.bad(st, arg, "TCP or UDP"),
                    }
                }
            }
            "sorry_server" => {
                r.no_block(st);
                if let Some((address, port)) = address_and_port(r, st, false) {
                    let port = port.or(header.and_then(|h| h.1)).unwrap_or(0);
                    sorry_server = Some(SorryServer { address, port });
                }
            }
            "quorum" => quorum = r.u32(st, 1, u32::MAX).unwrap_or(quorum),
            "hysteresis" => hysteresis = r.u32(st, 0, u32::MAX).unwrap_or(hysteresis),
            "quorum_up" => quorum_up = r.notify_script(st).or(quorum_up),
            "quorum_down" => quorum_down = r.notify_script(st).or(quorum_down),
            "alpha" => alpha = r.flag(st),
            "omega" => omega = r.flag(st),
            "inhibit_on_failure" => inhibit_on_failure = r.flag(st),
            "ha_suspend" => ha_suspend = r.flag(st),
            "smtp_alert" => {
                r.flag(st);
            }
            "nat_mask" => r.ignored(
                st,
                "keepalived itself dropped it (obsolete), and xlb forwards by DR, with no NAT",
            ),
            _ if r.ignored_from(st, VS_IGNORED) => {}
            kw if unknown::closest(kw, &["lb_kind", "lvs_method"]).is_some() => {
                kind_ignored = Some((
                    st.span,
                    format!(
                        "found unknown keyword `{kw}`{}: keepalived ignores it",
                        unknown::did_you_mean(kw, &["lb_kind", "lvs_method"])
                    ),
                ))
            }
            _ => r.unknown(st, &context),
        }
    }
    let vs_port = header.and_then(|h| h.1);
    let mut real_servers = Vec::with_capacity(
        block
            .iter()
            .filter(|st| st.keyword == "real_server")
            .count(),
    );
    for st in &block {
        if st.keyword == "real_server"
            && let Some(rs) = real_server(
                r,
                st,
                vs_port,
                inhibit_on_failure,
                &defaults,
                lb_kind.0,
                files,
            )
        {
            real_servers.push(rs);
        }
    }
    let (address, port) = header?;
    let vs = VirtualServer {
        address,
        // Checked below: a virtual server without a port is not returned.
        port: port.unwrap_or(0),
        protocol,
        delay_loop: defaults.delay_loop.unwrap_or(Timer::from_secs(60)),
        lb_algo: lb_algo.0,
        lb_kind: lb_kind.0,
        persistence_timeout,
        persistence_granularity,
        virtualhost: defaults.virtualhost.clone(),
        sorry_server,
        quorum,
        hysteresis,
        quorum_up,
        quorum_down,
        alpha,
        omega,
        inhibit_on_failure,
        ha_suspend,
        real_servers,
        group: None,
        origin: r.origin(st.span),
        lb_algo_origin: lb_algo.1,
        lb_kind_origin: lb_kind.1,
    };
    // Said once, where it was meant to be set, when keepalived's default NAT
    // follows from it; else as any line keepalived ignores.
    let mut nat_said = false;
    if let Some((at, found)) = kind_ignored {
        if vs.lb_kind_origin.span().is_none() {
            nat_said = true;
            // Followed, and said: the forwarding method is not what the line meant.
            r.diags.tolerate(
                at,
                format!(
                    "{found}, so its default lb_kind NAT applies (replies must come back through \
                     this director), and so does xlb: write `lb_kind DR` if direct routing was \
                     meant"
                ),
            );
        } else {
            r.diags.tolerate(at, format!("{found}, and so does xlb"));
        }
    }
    // Judged even when the header is broken: the forwarding method is wrong regardless.
    validate::forwarding(&vs, r.diags, nat_said);
    port.map(|_| vs)
}

fn real_server(
    r: &mut Reader<'_>,
    st: &Statement,
    vs_port: Option<u16>,
    vs_inhibit: bool,
    vs_defaults: &CheckDefaults,
    vs_kind: LbKind,
    files: &TrackFiles<'_>,
) -> Option<RealServer> {
    if r.needs_block(st) {
        return None;
    }
    let header = address_and_port(r, st, false);
    let context = block_name("real_server", st);
    let mut weight = 1;
    let mut inhibit_on_failure = None;
    let mut notify_up = None;
    let mut notify_down = None;
    let mut own = CheckDefaults::default();
    let block = r.block(st);
    let block = r.split_run_together(block, RS_BLOCKS);
    for st in &block {
        let kw = st.keyword;
        if RS_BLOCKS.contains(&kw) || own.read(r, st) {
            continue;
        }
        match kw {
            "weight" => weight = r.u32(st, 0, 65535).unwrap_or(weight),
            "inhibit_on_failure" => inhibit_on_failure = Some(r.flag(st)),
            "notify_up" => notify_up = r.notify_script(st).or(notify_up),
            "notify_down" => notify_down = r.notify_script(st).or(notify_down),
            "lvs_method" | "lb_kind" => {
                // keepalived allows one per real server; xlb forwards a service one way, so a
                // real server may only repeat its virtual server's.
                if let Some(arg) = st.args.first()
                    && arg.text != vs_kind.name()
                {
                    r.diags.error(
                        arg.span,
                        format!(
                            "found `{} {}` in a real_server whose virtual_server forwards by {}, \
                             expected {}: xlb forwards every real server of a service the same way",
                            kw,
                            arg.text,
                            vs_kind.name(),
                            vs_kind.name()
                        ),
                    );
                }
                r.value(st, "DR");
            }
            "smtp_alert" | "alpha" => {
                r.flag(st);
            }
            _ if r.ignored_from(st, RS_IGNORED) => {}
            _ => r.unknown(st, &context),
        }
    }
    let defaults = own.over(vs_defaults);
    let (address, port) = header?;
    let port = port.or(vs_port).unwrap_or(0);
    let mut checkers = Vec::new();
    for st in &block {
        let kw = st.keyword;
        if CHECKERS.contains(&kw) {
            checkers.extend(checker(r, st, address, port, &defaults));
        } else if kw == "FILE_CHECK" {
            checkers.extend(file_check(r, st, files).map(Checker::File));
        } else if UNSUPPORTED_CHECKERS.contains(&kw) {
            r.diags.error(
                st.span,
                format!(
                    "found `{kw}`, expected TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, SMTP_CHECK, \
                     DNS_CHECK, UDP_CHECK, PING_CHECK or FILE_CHECK: `{kw}` is not supported by xlb"
                ),
            );
        }
    }
    Some(RealServer {
        address,
        port,
        weight,
        inhibit_on_failure: inhibit_on_failure.unwrap_or(vs_inhibit),
        notify_up,
        notify_down,
        checkers,
        origin: r.origin(st.span),
    })
}

/// One checker block; SMTP_CHECK with `host` blocks gives one checker per host.
fn checker(
    r: &mut Reader<'_>,
    st: &Statement,
    rs_ip: IpAddr,
    rs_port: u16,
    outer: &CheckDefaults,
) -> Vec<Checker> {
    if r.needs_block(st) {
        return Vec::new();
    }
    let kind = st.keyword;
    r.extra_args(st, 0);
    let mut own = CheckDefaults::default();
    let mut connect_ip: Option<(IpAddr, Pos)> = None;
    let mut connect_port = None;
    let mut bindto: Option<(IpAddr, Pos)> = None;
    let mut bind_port = None;
    let mut options = Options::for_kind(kind);
    let mut urls = Vec::new();
    let mut misc_path = None;
    let mut misc_timeout = None;
    let mut misc_dynamic = false;
    let mut user = None;
    let is_http = matches!(kind, "HTTP_GET" | "SSL_GET");
    let is_misc = kind == "MISC_CHECK";
    let block = r.block(st);
    let block = r.split_run_together(
        block,
        if is_http {
            &["url"]
        } else {
            Options::block_keywords(kind)
        },
    );
    for st in &block {
        let kw = st.keyword;
        if own.read(r, st) || options.as_mut().is_some_and(|o| o.read(r, st)) {
            continue;
        }
        match kw {
            "connect_ip" if !is_misc => {
                connect_ip = r.ip(st).map(|ip| (ip, st.span)).or(connect_ip)
            }
            "connect_port" if !is_misc => connect_port = r.port(st).or(connect_port),
            "bindto" if !is_misc => bindto = r.ip(st).map(|ip| (ip, st.span)).or(bindto),
            "bind_port" if !is_misc => bind_port = r.port(st).or(bind_port),
            "url" if is_http => {
                r.extra_args(st, 0);
                if let Some(u) = url(r, st) {
                    urls.push(u);
                }
            }
            "misc_path" if is_misc => misc_path = r.command(st).or(misc_path),
            "misc_timeout" if is_misc => {
                misc_timeout = r.timer(st, Timer::from_micros(1), None).or(misc_timeout)
            }
            "misc_dynamic" if is_misc => misc_dynamic = r.flag(st),
            "user" if is_misc => {
                r.no_block(st);
                if st.args.is_empty() {
                    r.missing(st, "a user name");
                }
                user = r.script_user(st, &st.args).or(user);
            }
            _ if r.ignored_from(st, CHECKER_IGNORED) => {}
            _ => r.unknown(st, kind),
        }
    }
    let d = own.over(outer);
    let delay_loop = d.delay_loop.unwrap_or(Timer::from_secs(60));
    // keepalived 2.2: MISC_CHECK does not retry unless told to, DNS_CHECK retries 3 times
    // and waits a delay_loop between; HTTP waits longer.
    let default_retry = match &options {
        Some(o) => o.default_retry(),
        None if is_misc => 0,
        None => 1,
    };
    let default_delay_before_retry = match &options {
        Some(o) => o.default_delay_before_retry(delay_loop),
        None => Timer::from_secs(if is_http { 3 } else { 1 }),
    };
    let timing = CheckTiming {
        delay_loop,
        retry: d.retry.unwrap_or(default_retry),
        delay_before_retry: d.delay_before_retry.unwrap_or(default_delay_before_retry),
        warmup: d.warmup.unwrap_or(delay_loop),
    };
    let connection_written = connect_ip.is_some()
        || connect_port.is_some()
        || bindto.is_some()
        || bind_port.is_some()
        || own.connect_timeout.is_some();
    let connection = Connection {
        connect_ip: connect_ip.map(|c| c.0).unwrap_or(rs_ip),
        connect_port: connect_port.unwrap_or(rs_port),
        bindto: bindto.map(|b| b.0),
        bind_port,
        connect_timeout: d.connect_timeout.unwrap_or(Timer::from_secs(5)),
    };
    if !is_misc {
        check_connection(
            r,
            &connection,
            connect_ip.map(|c| c.1),
            bindto.map(|b| b.1),
            st.span,
        );
    }
    if let Some(options) = options {
        return options.finish(r, st, connection, connection_written, timing);
    }
    let one = match kind {
        "TCP_CHECK" => Some(Checker::Tcp(TcpCheck { connection, timing })),
        "HTTP_GET" | "SSL_GET" => {
            if urls.is_empty() {
                r.diags.error(
                    st.span,
                    format!("found no `url` in `{kind}`, expected `url {{ path ... }}`"),
                );
            }
            for u in &mut urls {
                if u.virtualhost.is_none() {
                    u.virtualhost = d.virtualhost.clone();
                }
            }
            Some(Checker::Http(HttpCheck {
                tls: kind == "SSL_GET",
                connection,
                timing,
                urls,
                virtualhost: d.virtualhost,
            }))
        }
        _ => {
            if misc_path.is_none() {
                r.diags.error(
                    st.span,
                    "found no `misc_path` in `MISC_CHECK`, expected the command to run",
                );
            }
            misc_path.map(|misc_path| {
                Checker::Misc(MiscCheck {
                    misc_timeout: misc_timeout.unwrap_or(timing.delay_loop),
                    timing,
                    misc_path,
                    misc_dynamic,
                    user,
                })
            })
        }
    };
    one.into_iter().collect()
}

fn url(r: &mut Reader<'_>, st: &Statement) -> Option<Url> {
    if r.needs_block(st) {
        return None;
    }
    let mut path = None;
    let mut digest = None;
    let mut status_code = Vec::new();
    let mut virtualhost = None;
    for st in r.block(st) {
        match st.keyword {
            "path" => path = r.string(st, "a URL path such as /").or(path),
            "digest" => digest = r.string(st, "an MD5 digest from genhash").or(digest),
            "status_code" => {
                r.no_block(st);
                if st.args.is_empty() {
                    r.missing(st, "an HTTP status code or range such as 200 or 200-299");
                }
                status_code.clear();
                for arg in &st.args {
                    let range = match arg.text.split_once('-') {
                        Some((a, b)) => parse_uint(a).zip(parse_uint(b)),
                        None => parse_uint(arg.text).map(|n| (n, n)),
                    };
                    match range {
                        Some((a, b)) if (100..=599).contains(&a) && (a..=599).contains(&b) => {
                            status_code.push(StatusRange {
                                from: a as u16,
                                to: b as u16,
                            })
                        }
                        _ => r.bad(
                            st,
                            arg,
                            "an HTTP status code 100..599 or a range such as 200-299",
                        ),
                    }
                }
            }
            "virtualhost" => virtualhost = r.string(st, "a host name").or(virtualhost),
            _ if r.ignored_from(st, URL_IGNORED) => {}
            _ => r.unknown(st, "url"),
        }
    }
    let Some(path) = path else {
        r.diags.error(
            st.span,
            "found no `path` in `url`, expected `path /some/path`",
        );
        return None;
    };
    if status_code.is_empty() && digest.is_none() {
        status_code.push(StatusRange { from: 200, to: 299 });
    }
    Some(Url {
        path,
        digest,
        status_code,
        virtualhost,
    })
}
