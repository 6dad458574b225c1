//! PING_CHECK, UDP_CHECK, DNS_CHECK, SMTP_CHECK, FILE_CHECK, track_file and
//! vrrp_track_process: each keyword read with keepalived's defaults, printed back and read
//! again to the same value, and impossible settings refused where they are written.

mod common;

use common::*;
use lb_config::{Checker, Config, DnsType, ParamMatch, Timer};

/// A real server whose block is `body`, after two track_file and one vrrp_track_process
/// blocks that checkers and instances may name.
fn with_checker(body: &str) -> String {
    format!(
        "track_file flag {{
    file /tmp/xlb-flag
    weight 3 reverse
}}
vrrp_track_process web {{
    process nginx
    weight 7
}}
virtual_server 10.0.0.1 53 {{
    lb_algo mh
    lb_kind DR
    delay_loop 4
    real_server 10.0.0.11 53 {{
{body}
    }}
}}
"
    )
}

fn first_checker(c: &Config) -> &Checker {
    &c.virtual_servers[0].real_servers[0].checkers[0]
}

/// Parses, prints, parses the print: both configurations are equal.
fn round_trip(text: &str) -> Config {
    let config = parse_ok(text).config;
    let printed = config.to_keepalived_string();
    let again = lb_config::parse_str(&printed, "printed.conf")
        .unwrap_or_else(|e| panic!("printed config does not parse:\n{e}\n{printed}"))
        .config;
    assert_eq!(config, again, "{printed}");
    config
}

#[test]
fn each_checker_keyword_is_read_printed_and_read_back() {
    type Probe = fn(&Checker) -> String;
    let cases: &[(&str, Probe, &str)] = &[
        // PING_CHECK: the connection and timing keywords only, keepalived's defaults.
        (
            "PING_CHECK {\n}",
            |c| {
                format!(
                    "{:?}",
                    c.timing()
                        .map(|t| (t.retry, t.delay_before_retry, t.delay_loop))
                )
            },
            "Some((1, Timer { micros: 1000000 }, Timer { micros: 4000000 }))",
        ),
        (
            "PING_CHECK {\n connect_ip 10.0.0.99\n connect_timeout 0.5\n}",
            |c| {
                let co = c.connection().unwrap();
                format!("{} {}", co.connect_ip, co.connect_timeout)
            },
            "10.0.0.99 0.5",
        ),
        // UDP_CHECK
        (
            "UDP_CHECK {\n}",
            |c| match c {
                Checker::Udp(u) => format!(
                    "{:?} {} {} {}",
                    u.payload, u.require_reply, u.min_reply_length, u.max_reply_length
                ),
                _ => "not udp".into(),
            },
            "None false 0 255",
        ),
        (
            "UDP_CHECK {\n payload Ab12f 3\n}",
            |c| match c {
                Checker::Udp(u) => format!("{:02x?}", u.payload.as_ref().unwrap().data),
                _ => "not udp".into(),
            },
            "[ab, 12, 0f, 03]",
        ),
        (
            "UDP_CHECK {\n require_reply 1X ff\n min_reply_length 2\n max_reply_length 9\n}",
            |c| match c {
                Checker::Udp(u) => {
                    let r = u.reply.as_ref().unwrap();
                    format!(
                        "{} {:02x?} {:02x?} {} {}",
                        u.require_reply, r.data, r.mask, u.min_reply_length, u.max_reply_length
                    )
                }
                _ => "not udp".into(),
            },
            "true [10, ff] [0f, 00] 2 9",
        ),
        (
            "UDP_CHECK {\n require_reply\n}",
            |c| match c {
                Checker::Udp(u) => format!("{} {:?}", u.require_reply, u.reply),
                _ => "not udp".into(),
            },
            "true None",
        ),
        // DNS_CHECK: retry 3 and delay_before_retry of a delay_loop by default.
        (
            "DNS_CHECK {\n}",
            |c| match c {
                Checker::Dns(d) => format!(
                    "{} {} {} {}",
                    d.query_type.name(),
                    d.name,
                    d.timing.retry,
                    d.timing.delay_before_retry
                ),
                _ => "not dns".into(),
            },
            "SOA . 3 4",
        ),
        (
            "DNS_CHECK {\n type aaaa\n name www.example.com\n retry 0\n}",
            |c| match c {
                Checker::Dns(d) => format!("{:?} {} {}", d.query_type, d.name, d.timing.retry),
                _ => "not dns".into(),
            },
            "Aaaa www.example.com 0",
        ),
        // SMTP_CHECK
        (
            "SMTP_CHECK {\n}",
            |c| match c {
                Checker::Smtp(s) => format!("{} {}", s.helo_name, s.connection.connect_port),
                _ => "not smtp".into(),
            },
            "smtpchecker.keepalived.org 53",
        ),
        (
            "SMTP_CHECK {\n helo_name \"mx.example.com\"\n connect_port 25\n}",
            |c| match c {
                Checker::Smtp(s) => format!("{} {}", s.helo_name, s.connection.connect_port),
                _ => "not smtp".into(),
            },
            "mx.example.com 25",
        ),
        // FILE_CHECK: the track_file's weight by default, or its own.
        (
            "FILE_CHECK {\n track_file flag\n}",
            |c| match c {
                Checker::File(f) => format!(
                    "{} {} {} {:?}",
                    f.track_file,
                    f.weight,
                    f.reverse,
                    c.timing()
                ),
                _ => "not file".into(),
            },
            "flag 3 true None",
        ),
        (
            "FILE_CHECK {\n track_file flag\n weight -2000000 noreverse\n}",
            |c| match c {
                Checker::File(f) => format!("{} {}", f.weight, f.reverse),
                _ => "not file".into(),
            },
            "-2000000 false",
        ),
    ];
    for (body, probe, expected) in cases {
        let config = round_trip(&with_checker(body));
        assert_eq!(probe(first_checker(&config)), *expected, "{body}");
    }
}

#[test]
fn smtp_host_blocks_are_checkers_of_their_own() {
    let cases: &[(&str, &[&str])] = &[
        // Hosts and no connection setting on the checker: one checker per host.
        (
            "SMTP_CHECK {\n host {\n connect_ip 10.0.0.21\n }\n host {\n connect_port 2525\n }\n}",
            &["10.0.0.21:53", "10.0.0.11:2525"],
        ),
        // A connection setting on the checker keeps its own check too.
        (
            "SMTP_CHECK {\n connect_port 25\n host {\n connect_ip 10.0.0.21\n }\n}",
            &["10.0.0.11:25", "10.0.0.21:25"],
        ),
    ];
    for (body, expected) in cases {
        let loaded = parse_ok(&with_checker(body));
        assert!(
            warnings_of(&loaded)
                .iter()
                .any(|w| w.message.contains("host block is deprecated")),
            "{body}"
        );
        let got: Vec<String> = loaded.config.virtual_servers[0].real_servers[0]
            .checkers
            .iter()
            .map(|c| {
                let co = c.connection().unwrap();
                format!("{}:{}", co.connect_ip, co.connect_port)
            })
            .collect();
        assert_eq!(got, *expected, "{body}");
        round_trip(&with_checker(body));
    }
}

#[test]
fn track_blocks_are_read_with_keepalived_defaults() {
    let text = "track_file a {
    file /tmp/a
}
vrrp_track_file b {
    file \"/tmp/b c\"
    weight -254
    init_file overwrite
}
vrrp_track_process p {
    process haproxy
}
vrrp_track_process q {
    process /usr/bin/python3 -m http.server
    param_match initial
    weight -5 reverse
    quorum 2
    quorum_max 3
    fork_delay 0.25
}
vrrp_track_process none {
    process sshd
    quorum_max 0
    delay 1.5
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {
        10.0.0.1
    }
    track_file {
        a
        b weight 10
    }
    track_process {
        p weight 254
        q
        none weight 0 reverse
    }
}
";
    let loaded = parse_ok(text);
    assert!(
        warnings_of(&loaded)
            .iter()
            .any(|w| w.line == 4 && w.message.contains("deprecated"))
    );
    let c = round_trip(text);
    let a = c.track_file("a").unwrap();
    assert_eq!((a.weight, a.weight_reverse, a.init_file), (1, false, None));
    let b = c.track_file("b").unwrap();
    assert_eq!(b.file, "/tmp/b c");
    assert_eq!(b.weight, -254);
    assert_eq!(b.init_file.map(|i| (i.value, i.overwrite)), Some((0, true)));

    let p = c.vrrp_track_process("p").unwrap();
    assert_eq!(
        (
            p.weight,
            p.quorum,
            p.quorum_max,
            p.param_match,
            p.full_command
        ),
        (0, 1, None, ParamMatch::None, false)
    );
    let q = c.vrrp_track_process("q").unwrap();
    assert_eq!(q.params, ["-m", "http.server"]);
    assert_eq!(
        (q.param_match, q.full_command, q.weight, q.weight_reverse),
        (ParamMatch::Initial, true, -5, true)
    );
    assert_eq!((q.quorum, q.quorum_max), (2, Some(3)));
    assert_eq!(
        (q.fork_delay, q.terminate_delay),
        (Timer::from_micros(250_000), Timer::default())
    );
    let none = c.vrrp_track_process("none").unwrap();
    assert_eq!((none.quorum, none.quorum_max), (0, Some(0)));
    assert_eq!(none.terminate_delay, Timer::from_micros(1_500_000));

    let vi = &c.vrrp_instances[0];
    let files: Vec<(&str, i32, bool)> = vi
        .track_file
        .iter()
        .map(|t| (t.name.as_str(), t.weight, t.reverse))
        .collect();
    assert_eq!(files, [("a", 1, false), ("b", 10, false)]);
    let processes: Vec<(&str, i32, bool)> = vi
        .track_process
        .iter()
        .map(|t| (t.name.as_str(), t.weight, t.reverse))
        .collect();
    assert_eq!(
        processes,
        [("p", 254, false), ("q", -5, true), ("none", 0, true)]
    );
}

#[test]
fn dns_type_names_ignore_case() {
    for t in DnsType::ALL {
        assert_eq!(DnsType::from_name(&t.name().to_lowercase()), Some(t));
    }
    assert_eq!(DnsType::from_name("PTR"), None);
}

#[test]
fn impossible_settings_are_located_errors() {
    // (real server body, line, column, what the message says)
    let cases: &[(&str, u32, u32, &str)] = &[
        (
            "UDP_CHECK {\n min_reply_length 10\n max_reply_length 9\n}",
            14,
            1,
            "min_reply_length 10 above max_reply_length 9",
        ),
        ("UDP_CHECK {\n payload 0g\n}", 15, 10, "expected hex digits"),
        ("UDP_CHECK {\n payload 1X\n}", 15, 10, "expected hex digits"),
        (
            "UDP_CHECK {\n payload\n}",
            15,
            2,
            "expected the payload in hex",
        ),
        ("UDP_CHECK {\n require_reply 1Z\n}", 15, 16, "X for a digit"),
        (
            "UDP_CHECK {\n max_reply_length 70000\n}",
            15,
            19,
            "0..65535",
        ),
        ("DNS_CHECK {\n type PTR\n}", 15, 7, "a DNS record type"),
        (
            "DNS_CHECK {\n name a..b\n}",
            15,
            7,
            "without an empty label",
        ),
        ("DNS_CHECK {\n name .a\n}", 15, 7, "without an empty label"),
        ("FILE_CHECK {\n}", 14, 1, "found no `track_file`"),
        (
            "FILE_CHECK {\n track_file nosuch\n}",
            15,
            13,
            "expected the name of a track_file block",
        ),
        (
            "FILE_CHECK {\n track_file flag\n weight 1 sideways\n}",
            16,
            11,
            "reverse, noreverse",
        ),
        (
            "PING_CHECK {\n connect_ip fd00::1\n bindto 10.0.0.2\n}",
            16,
            2,
            "expected an address of the same family",
        ),
        (
            "PING_CHECK {\n connect_ip fe80::1\n}",
            15,
            2,
            "a link-local one needs `bind_if`",
        ),
        ("BFD_CHECK {\n}", 14, 1, "`BFD_CHECK` is not supported"),
    ];
    for (body, line, col, says) in cases {
        let e = parse_err(&with_checker(body));
        let d = only_error(&e);
        assert!(
            d.line == *line && d.col == *col && d.message.contains(says),
            "{body}: expected {line}:{col} {says:?}, got {d}"
        );
    }
}

#[test]
fn impossible_track_blocks_are_located_errors() {
    let cases: &[(&str, u32, u32, &str)] = &[
        ("track_file f {\n}\n", 1, 1, "found no `file`"),
        (
            "track_file f {\n file /x\n weight 255\n}\n",
            3,
            9,
            "-254..254",
        ),
        (
            "track_file f {\n file /x\n init_file many\n}\n",
            3,
            12,
            "-254..254",
        ),
        (
            "vrrp_track_process p {\n weight 3\n}\n",
            1,
            1,
            "found no `process`",
        ),
        (
            "vrrp_track_process p {\n process a\n quorum 3\n quorum_max 2\n}\n",
            3,
            2,
            "quorum 3 above quorum_max 2",
        ),
        (
            "vrrp_track_process p {\n process a\n quorum 0\n}\n",
            3,
            9,
            "1..65535",
        ),
        (
            "vrrp_track_process p {\n process a\n delay 0\n}\n",
            3,
            8,
            "0.000001..3600",
        ),
        (
            "vrrp_track_process p {\n process a\n param_match all\n}\n",
            3,
            14,
            "initial, partial",
        ),
        (
            "vrrp_instance V {\n virtual_router_id 1\n track_file {\n nosuch\n }\n}\n",
            4,
            2,
            "expected the name of a track_file block",
        ),
        (
            "vrrp_instance V {\n virtual_router_id 1\n track_process {\n nosuch weight 1\n }\n}\n",
            4,
            2,
            "expected the name of a vrrp_track_process block",
        ),
        (
            "vrrp_track_process p {\n process a\n}\nvrrp_instance V {\n virtual_router_id 1\n track_process {\n p weight 255\n }\n}\n",
            7,
            11,
            "-254..254",
        ),
    ];
    for (text, line, col, says) in cases {
        let e = parse_err(text);
        let d = only_error(&e);
        assert!(
            d.line == *line && d.col == *col && d.message.contains(says),
            "{text}: expected {line}:{col} {says:?}, got {d}"
        );
    }
}
