//! The keywords of PING_CHECK, UDP_CHECK, DNS_CHECK and SMTP_CHECK beyond the ones every
//! checker shares (those are read by `lvs::checker`), and FILE_CHECK, which shares none.
//!
//! Settings keepalived would drop or that can never pass (`min_reply_length` above
//! `max_reply_length`, an empty DNS label, an unknown record type, bad hex) are errors here,
//! where they are written, rather than a checker that fails at run time.

use crate::diagnostic::Pos;
use crate::model::{
    CheckTiming, Checker, Connection, DnsCheck, DnsType, FileCheck, HexBytes, PingCheck, SmtpCheck,
    TrackFile, UdpCheck,
};
use crate::syntax::Statement;

use super::Reader;
use super::track::Named;
use super::vrrp::weight_and_reverse;

/// keepalived's HELO name when none is written (check_smtp.h).
pub const SMTP_DEFAULT_HELO: &str = "smtpchecker.keepalived.org";

/// The longest name a DNS query can carry, and its longest label (RFC 1035).
const DNS_MAX_NAME: usize = 255;
const DNS_MAX_LABEL: usize = 63;

/// The track_file blocks a FILE_CHECK or a vrrp_instance may name.
pub(crate) type TrackFiles<'a> = Named<'a, TrackFile>;

/// What a checker kind adds to the shared keywords.
pub(super) enum Options {
    Ping,
    Udp(UdpOptions),
    Dns(DnsOptions),
    Smtp(SmtpOptions),
}

#[derive(Default)]
pub(super) struct UdpOptions {
    payload: Option<HexBytes>,
    require_reply: bool,
    reply: Option<HexBytes>,
    min_reply_length: Option<u16>,
    max_reply_length: Option<u16>,
}

#[derive(Default)]
pub(super) struct DnsOptions {
    query_type: Option<DnsType>,
    name: Option<String>,
}

#[derive(Default)]
pub(super) struct SmtpOptions {
    helo_name: Option<String>,
    hosts: Vec<Host>,
}

/// A deprecated SMTP_CHECK `host { ... }` block: one more checker, of this connection.
struct Host {
    connect_ip: Option<std::net::IpAddr>,
    connect_port: Option<u16>,
    bindto: Option<std::net::IpAddr>,
    bind_port: Option<u16>,
    connect_timeout: Option<crate::model::Timer>,
}

impl Options {
    pub fn for_kind(kind: &str) -> Option<Options> {
        match kind {
            "PING_CHECK" => Some(Options::Ping),
            "UDP_CHECK" => Some(Options::Udp(UdpOptions::default())),
            "DNS_CHECK" => Some(Options::Dns(DnsOptions::default())),
            "SMTP_CHECK" => Some(Options::Smtp(SmtpOptions::default())),
            _ => None,
        }
    }

    /// Block keywords of the kind, so that one run onto another line is split off.
    pub fn block_keywords(kind: &str) -> &'static [&'static str] {
        if kind == "SMTP_CHECK" { &["host"] } else { &[] }
    }

    /// keepalived's retry when none is written: DNS_CHECK retries 3 times.
    pub fn default_retry(&self) -> u32 {
        match self {
            Options::Dns(_) => 3,
            _ => 1,
        }
    }

    /// keepalived's delay_before_retry when none is written: DNS_CHECK waits a delay_loop.
    pub fn default_delay_before_retry(
        &self,
        delay_loop: crate::model::Timer,
    ) -> crate::model::Timer {
        match self {
            Options::Dns(_) => delay_loop,
            _ => crate::model::Timer::from_secs(1),
        }
    }

    /// Reads one kind-specific keyword; false if `st` is not one.
    pub fn read(&mut self, r: &mut Reader<'_>, st: &Statement) -> bool {
        match self {
            Options::Ping => false,
            Options::Udp(o) => o.read(r, st),
            Options::Dns(o) => o.read(r, st),
            Options::Smtp(o) => o.read(r, st),
        }
    }

    /// The checkers of the block: one, or with SMTP_CHECK `host` blocks one per host.
    /// `connection_written` says whether any connection keyword was on the checker itself.
    pub fn finish(
        self,
        r: &mut Reader<'_>,
        st: &Statement,
        connection: Connection,
        connection_written: bool,
        timing: CheckTiming,
    ) -> Vec<Checker> {
        match self {
            Options::Ping => vec![Checker::Ping(PingCheck { connection, timing })],
            Options::Udp(o) => o.finish(r, st, connection, timing),
            Options::Dns(o) => vec![Checker::Dns(DnsCheck {
                connection,
                timing,
                query_type: o.query_type.unwrap_or(DnsType::Soa),
                name: o.name.unwrap_or_else(|| ".".to_string()),
            })],
            Options::Smtp(o) => o.finish(r, st, connection, connection_written, timing),
        }
    }
}

impl UdpOptions {
    fn read(&mut self, r: &mut Reader<'_>, st: &Statement) -> bool {
        match st.keyword {
            "payload" => {
                r.no_block(st);
                if st.args.is_empty() {
                    r.missing(st, "the payload in hex, such as `0a 1b2c`");
                } else if let Some(bytes) = hex_arg(r, st, false) {
                    self.payload = Some(bytes);
                }
            }
            "require_reply" => {
                r.no_block(st);
                self.require_reply = true;
                if !st.args.is_empty() {
                    self.reply = hex_arg(r, st, true).or(self.reply.take());
                }
            }
            "min_reply_length" => {
                self.min_reply_length = r
                    .uint(st, 0, u64::from(u16::MAX))
                    .map(|n| n as u16)
                    .or(self.min_reply_length)
            }
            "max_reply_length" => {
                self.max_reply_length = r
                    .uint(st, 0, u64::from(u16::MAX))
                    .map(|n| n as u16)
                    .or(self.max_reply_length)
            }
            _ => return false,
        }
        true
    }

    fn finish(
        self,
        r: &mut Reader<'_>,
        st: &Statement,
        connection: Connection,
        timing: CheckTiming,
    ) -> Vec<Checker> {
        // keepalived: "between 0 and 255 by default".
        let min = self.min_reply_length.unwrap_or(0);
        let max = self.max_reply_length.unwrap_or(u16::from(u8::MAX));
        if min > max {
            r.diags.error(
                st.span,
                format!(
                    "found min_reply_length {min} above max_reply_length {max} in `UDP_CHECK`, \
                     expected min_reply_length <= max_reply_length (no reply could pass)"
                ),
            );
        }
        vec![Checker::Udp(UdpCheck {
            connection,
            timing,
            payload: self.payload,
            require_reply: self.require_reply,
            reply: self.reply,
            min_reply_length: min,
            max_reply_length: max,
        })]
    }
}

/// The arguments of `st` joined as keepalived joins them, read as hex.
fn hex_arg(r: &mut Reader<'_>, st: &Statement, wildcards: bool) -> Option<HexBytes> {
    let text = st.args.iter().map(|a| a.text).collect::<Vec<_>>().join(" ");
    let parsed = parse_hex(&text, wildcards);
    if parsed.is_none() {
        let expected = if wildcards {
            "hex digits, X for a digit that is not compared, and spaces, such as `0a 1b2X`"
        } else {
            "hex digits and spaces, such as `0a 1b2c`"
        };
        r.diags.error(
            st.args[0].span,
            format!("found `{text}` after `{}`, expected {expected}", st.keyword),
        );
    }
    parsed
}

/// keepalived's `read_hex_str`: pairs of hex digits, a lone digit before a space or the end
/// being a byte of its own (`Ab12f 3` is AB 12 0F 03); with `wildcards`, `X` or `x` is a digit
/// that matches anything. `None` if a character is not hex or nothing is written.
pub fn parse_hex(text: &str, wildcards: bool) -> Option<HexBytes> {
    let nibble = |c: u8| -> Option<(u8, u8)> {
        match c {
            b'0'..=b'9' => Some((c - b'0', 0)),
            b'a'..=b'f' => Some((c - b'a' + 10, 0)),
            b'A'..=b'F' => Some((c - b'A' + 10, 0)),
            b'x' | b'X' if wildcards => Some((0, 0x0f)),
            _ => None,
        }
    };
    let bytes = text.as_bytes();
    let (mut data, mut mask) = (Vec::new(), Vec::new());
    let mut i = 0;
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let (mut value, mut m) = nibble(bytes[i])?;
        i += 1;
        if i < bytes.len() && bytes[i] != b' ' {
            let (low, low_mask) = nibble(bytes[i])?;
            i += 1;
            value = value << 4 | low;
            m = m << 4 | low_mask;
        }
        data.push(value);
        mask.push(m);
    }
    if data.is_empty() {
        return None;
    }
    if mask.iter().all(|m| *m == 0) {
        mask.clear();
    }
    Some(HexBytes { data, mask })
}

impl DnsOptions {
    fn read(&mut self, r: &mut Reader<'_>, st: &Statement) -> bool {
        match st.keyword {
            "type" => {
                let expected =
                    "a DNS record type: A, NS, CNAME, SOA, MX, TXT, AAAA, RRSIG or DNSKEY";
                if let Some(arg) = r.value(st, expected) {
                    match DnsType::from_name(arg.text) {
                        Some(t) => self.query_type = Some(t),
                        None => r.bad(st, arg, expected),
                    }
                }
            }
            "name" => {
                if let Some(arg) = r.value(st, "a domain name such as example.com") {
                    if self.name.is_some() {
                        // keepalived keeps the first: "DNS_CHECK name already specified".
                        r.diags.warn(
                            arg.span,
                            "DNS_CHECK name already specified - ignoring, as keepalived does",
                        );
                    } else {
                        match dns_name_problem(arg.text) {
                            None => self.name = Some(arg.text.to_string()),
                            Some(why) => r.bad(st, arg, why),
                        }
                    }
                }
            }
            _ => return false,
        }
        true
    }
}

/// Why a DNS_CHECK name cannot be sent, if it cannot: keepalived refuses an empty label
/// (`a..b`, `.a`); a label or name too long for the wire cannot be encoded either.
pub fn dns_name_problem(name: &str) -> Option<&'static str> {
    if name == "." {
        return None;
    }
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.split('.').any(str::is_empty) {
        return Some("a domain name without an empty label");
    }
    if trimmed.split('.').any(|l| l.len() > DNS_MAX_LABEL) {
        return Some("a domain name whose labels have at most 63 characters");
    }
    if trimmed.len() + 2 > DNS_MAX_NAME {
        return Some("a domain name of at most 253 characters");
    }
    None
}

impl SmtpOptions {
    fn read(&mut self, r: &mut Reader<'_>, st: &Statement) -> bool {
        match st.keyword {
            "helo_name" => {
                if let Some(name) = r.string(st, "the name to send in HELO") {
                    if self.helo_name.is_some() {
                        r.diags.warn(
                            st.span,
                            "SMTP_CHECK helo name already specified - the last one is used, as keepalived does",
                        );
                    }
                    self.helo_name = Some(name);
                }
            }
            "host" => {
                r.extra_args(st, 0);
                if !r.needs_block(st) {
                    self.hosts.push(host(r, st));
                }
            }
            _ => return false,
        }
        true
    }

    fn finish(
        self,
        r: &mut Reader<'_>,
        st: &Statement,
        connection: Connection,
        connection_written: bool,
        timing: CheckTiming,
    ) -> Vec<Checker> {
        let helo_name = self
            .helo_name
            .unwrap_or_else(|| SMTP_DEFAULT_HELO.to_string());
        if !self.hosts.is_empty() {
            r.diags.warn(
                st.span,
                "The SMTP_CHECK host block is deprecated. Please define additional checkers. \
                 (each host is read as one more SMTP_CHECK)",
            );
        }
        let of_host = |h: &Host| Connection {
            connect_ip: h.connect_ip.unwrap_or(connection.connect_ip),
            connect_port: h.connect_port.unwrap_or(connection.connect_port),
            bindto: h.bindto.or(connection.bindto),
            bind_port: h.bind_port.or(connection.bind_port),
            connect_timeout: h.connect_timeout.unwrap_or(connection.connect_timeout),
        };
        let mut connections = Vec::with_capacity(self.hosts.len() + 1);
        // keepalived checks the checker's own connection when it has connection settings or
        // no hosts; otherwise the first host takes its place.
        if connection_written || self.hosts.is_empty() {
            connections.push(connection.clone());
        }
        connections.extend(self.hosts.iter().map(of_host));
        connections
            .into_iter()
            .map(|connection| {
                Checker::Smtp(SmtpCheck {
                    connection,
                    timing: timing.clone(),
                    helo_name: helo_name.clone(),
                })
            })
            .collect()
    }
}

fn host(r: &mut Reader<'_>, st: &Statement) -> Host {
    let mut h = Host {
        connect_ip: None,
        connect_port: None,
        bindto: None,
        bind_port: None,
        connect_timeout: None,
    };
    for st in r.block(st) {
        match st.keyword {
            "connect_ip" => h.connect_ip = r.ip(st).or(h.connect_ip),
            "connect_port" => h.connect_port = r.port(st).or(h.connect_port),
            "bindto" => h.bindto = r.ip(st).or(h.bindto),
            "bind_port" => h.bind_port = r.port(st).or(h.bind_port),
            "connect_timeout" => {
                h.connect_timeout = r
                    .timer(st, crate::model::Timer::from_micros(1), None)
                    .or(h.connect_timeout)
            }
            "retry" | "delay_before_retry" | "warmup" | "delay_loop" | "alpha"
            | "log_all_failures" | "bind_if" | "fwmark" => r.diags.warn(
                st.span,
                format!(
                    "`{}` in an SMTP_CHECK host block is ignored by xlb: write it in the SMTP_CHECK",
                    st.keyword
                ),
            ),
            _ => r.unknown(st, "SMTP_CHECK host"),
        }
    }
    h
}

/// Connection settings no checker can use: a `bindto` of the other address family than the
/// address checked (keepalived drops the connect_ip), or an IPv6 link-local address to check,
/// which needs the interface (`bind_if`) xlb does not read.
pub(super) fn check_connection(
    r: &mut Reader<'_>,
    c: &Connection,
    connect_ip_at: Option<Pos>,
    bindto_at: Option<Pos>,
    checker_at: Pos,
) {
    if let (Some(bindto), Some(at)) = (c.bindto, bindto_at)
        && bindto.is_ipv4() != c.connect_ip.is_ipv4()
    {
        r.diags.error(
            at,
            format!(
                "found bindto {bindto} for checking {}, expected an address of the same family",
                c.connect_ip
            ),
        );
    }
    if let std::net::IpAddr::V6(v6) = c.connect_ip
        && v6.is_unicast_link_local()
    {
        r.diags.error(
            connect_ip_at.unwrap_or(checker_at),
            format!(
                "found link-local address {v6} to check, expected a global address: a link-local \
                 one needs `bind_if`, which xlb does not support"
            ),
        );
    }
}

/// `FILE_CHECK { track_file NAME  weight W [reverse|noreverse] }`.
pub(super) fn file_check(
    r: &mut Reader<'_>,
    st: &Statement,
    files: &TrackFiles<'_>,
) -> Option<FileCheck> {
    if r.needs_block(st) {
        return None;
    }
    r.extra_args(st, 0);
    let mut name: Option<(String, Pos)> = None;
    let mut weight: Option<(i32, bool)> = None;
    for st in r.block(st) {
        match st.keyword {
            "track_file" => {
                if let Some(arg) = r.value(st, "the name of a track_file") {
                    name = Some((arg.text.to_string(), arg.span));
                }
            }
            "weight" => {
                r.no_block(st);
                weight =
                    weight_and_reverse(r, st, &st.args, i64::from(-i32::MAX), i64::from(i32::MAX))
                        .or(weight);
            }
            // Documented by keepalived's man page, but its parser has no such keyword.
            "dynamic" => r.diags.warn(
                st.span,
                "`dynamic` is not read by keepalived's FILE_CHECK and is ignored",
            ),
            _ => r.unknown(st, "FILE_CHECK"),
        }
    }
    let Some((name, at)) = name else {
        r.diags.error(
            st.span,
            "found no `track_file` in `FILE_CHECK`, expected `track_file NAME`",
        );
        return None;
    };
    let file = files.resolve(
        r,
        &name,
        at,
        "after `track_file` in FILE_CHECK",
        "a track_file",
    )?;
    let (weight, reverse) = weight.unwrap_or((file.weight, file.weight_reverse));
    Some(FileCheck {
        track_file: name,
        weight,
        reverse,
        origin: r.origin(st.span),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_strings_read_as_keepalived_reads_them() {
        /// (text, X allowed, the bytes and mask read)
        type Case<'a> = (&'a str, bool, Option<(&'a [u8], &'a [u8])>);
        let cases: &[Case] = &[
            // keepalived.conf(5)'s own example.
            (
                "Ab12f 3 456 546443123",
                false,
                Some((
                    &[
                        0xab, 0x12, 0x0f, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03,
                    ],
                    &[],
                )),
            ),
            ("00", false, Some((&[0], &[]))),
            ("  0a\t1b ", false, Some((&[0x0a, 0x1b], &[]))),
            ("1X", true, Some((&[0x10], &[0x0f]))),
            ("x 2", true, Some((&[0x00, 0x02], &[0x0f, 0x00]))),
            ("1X", false, None),
            ("zz", false, None),
            ("", false, None),
            ("   ", true, None),
        ];
        for (text, wildcards, expected) in cases {
            let got = parse_hex(text, *wildcards);
            let want = expected.map(|(d, m)| HexBytes {
                data: d.to_vec(),
                mask: m.to_vec(),
            });
            assert_eq!(got, want, "{text:?} wildcards={wildcards}");
        }
    }

    #[test]
    fn dns_names() {
        for (name, ok) in [
            (".", true),
            ("example.com", true),
            ("example.com.", true),
            ("a..b", false),
            (".a", false),
            ("..", false),
            (&*"a".repeat(64), false),
            (&*format!("{}.com", "a".repeat(63)), true),
        ] {
            assert_eq!(dns_name_problem(name).is_none(), ok, "{name}");
        }
    }
}
