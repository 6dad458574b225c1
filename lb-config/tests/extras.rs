//! virtual_server_group, static_ipaddress, static_routes/static_rules and an instance's
//! virtual_routes/virtual_rules: each form read, printed back and read again to the same
//! configuration; what xlb does not add is an error at the word, saying what is supported.

mod common;

use common::*;
use lb_config::{Config, FwMark, RouteType, RuleAction};

const INSTANCE: &str = "vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        10.0.0.100/24
    }
";

/// Parses, prints, parses the print: both configurations are equal, and printing is a
/// fixed point.
fn round_trip(text: &str) -> Config {
    let config = parse_ok(text).config;
    let printed = config.to_keepalived_string();
    let again = lb_config::parse_str(&printed, "printed.conf")
        .unwrap_or_else(|e| panic!("printed config does not parse:\n{e}\n{printed}"))
        .config;
    assert_eq!(config, again, "{printed}");
    assert_eq!(printed, again.to_string());
    config
}

fn virtual_routes(lines: &str) -> Config {
    round_trip(&format!(
        "{INSTANCE}    virtual_routes {{\n{lines}\n    }}\n}}\n"
    ))
}

#[test]
fn each_route_form_is_read_printed_and_read_back() {
    type Probe = fn(&lb_config::Route) -> String;
    let cases: &[(&str, Probe, &str)] = &[
        (
            "192.168.2.0/24 via 10.0.0.254 dev eth0",
            |r| format!("{} {:?} {:?} {}", r.dest, r.via, r.dev, r.table),
            "192.168.2.0/24 Some(10.0.0.254) Some(\"eth0\") 254",
        ),
        (
            "src 10.0.0.100 to 192.168.9.0/24 gw 10.0.0.254 metric 7 table 100",
            |r| format!("{} {:?} {:?} {}", r.dest, r.src, r.metric, r.table),
            "192.168.9.0/24 Some(10.0.0.100) Some(7) 100",
        ),
        (
            "blackhole 192.168.114.0/24",
            |r| format!("{:?} {}", r.kind, r.dest),
            "Blackhole 192.168.114.0/24",
        ),
        (
            "unreachable 10.9.0.0/16 table 7",
            |r| format!("{:?} {}", r.kind, r.table),
            "Unreachable 7",
        ),
        (
            "default via 10.0.0.1 table 100",
            |r| format!("{} {:?}", r.dest, r.via),
            "0.0.0.0/0 Some(10.0.0.1)",
        ),
        (
            "10.1.0.0/16 dev eth1 scope link no_track",
            |r| format!("{:?} {}", r.scope, r.no_track),
            "Some(253) true",
        ),
        (
            "2001:db8::/64 via fe80::1 dev eth0 onlink",
            |r| format!("{} {}", r.dest, r.onlink),
            "2001:db8::/64 true",
        ),
        (
            "inet6 default dev eth0 table main",
            |r| format!("{} {}", r.dest, r.table),
            "::/0 254",
        ),
        ("10.0.0.7 dev eth0", |r| r.dest.to_string(), "10.0.0.7/32"),
    ];
    for (line, probe, want) in cases {
        let c = virtual_routes(line);
        let routes = &c.vrrp_instances[0].virtual_routes;
        assert_eq!(routes.len(), 1, "{line}");
        assert_eq!(probe(&routes[0]), *want, "{line}");
        // The same line in static_routes.
        let c = round_trip(&format!("static_routes {{\n    {line}\n}}\n"));
        assert_eq!(probe(&c.static_routes[0]), *want, "static: {line}");
    }
    assert_eq!(
        virtual_routes("blackhole 10.2.0.0/16").vrrp_instances[0].virtual_routes[0].kind,
        RouteType::Blackhole
    );
}

#[test]
fn each_rule_form_is_read_printed_and_read_back() {
    type Probe = fn(&lb_config::Rule) -> String;
    let cases: &[(&str, Probe, &str)] = &[
        (
            "from 192.168.2.0/24 table 1 priority 100",
            |r| format!("{:?} {:?} {}", r.from, r.action, r.priority),
            "Some(Prefix { address: 192.168.2.0, len: 24 }) Table(1) 100",
        ),
        (
            "to 192.168.3.0/24 lookup 2 preference 101",
            |r| format!("{:?} {:?}", r.to, r.action),
            "Some(Prefix { address: 192.168.3.0, len: 24 }) Table(2)",
        ),
        (
            "fwmark 0x10/0xff table 3 order 5",
            |r| format!("{:?}", r.fwmark),
            "Some(FwMark { mark: 16, mask: Some(255) })",
        ),
        (
            "iif eth1 oif eth2 blackhole priority 6",
            |r| format!("{:?} {:?} {:?}", r.iif, r.oif, r.action),
            "Some(\"eth1\") Some(\"eth2\") Blackhole",
        ),
        (
            "from 2001:db8::/64 table 4 priority 7 no_track",
            |r| format!("{:?} {}", r.family, r.no_track),
            "Ipv6 true",
        ),
        (
            "inet6 fwmark 4 prohibit priority 8",
            |r| format!("{:?} {:?}", r.family, r.action),
            "Ipv6 Prohibit",
        ),
    ];
    for (line, probe, want) in cases {
        let c = round_trip(&format!(
            "{INSTANCE}    virtual_rules {{\n        {line}\n    }}\n}}\n"
        ));
        let rules = &c.vrrp_instances[0].virtual_rules;
        assert_eq!(rules.len(), 1, "{line}");
        assert_eq!(probe(&rules[0]), *want, "{line}");
        let c = round_trip(&format!("static_rules {{\n    {line}\n}}\n"));
        assert_eq!(probe(&c.static_rules[0]), *want, "static: {line}");
    }
    let c = parse_ok("static_rules {\n    fwmark 7 table 9 priority 1\n}\n").config;
    assert_eq!(
        c.static_rules[0].fwmark,
        Some(FwMark {
            mark: 7,
            mask: None
        })
    );
    assert_eq!(c.static_rules[0].action, RuleAction::Table(9));
}

#[test]
fn a_rule_without_preference_gets_keepalived_s_with_a_warning() {
    let text = "static_rules {\n    from 10.0.0.0/8 table 1\n    to 10.1.0.0/16 table 2\n    from 2001:db8::/32 table 3\n}\n";
    let l = parse_ok(text);
    let p: Vec<u32> = l.config.static_rules.iter().map(|r| r.priority).collect();
    // Counting down from 16384 in reading order, one count per family.
    assert_eq!(p, [16384, 16383, 16384]);
    let lines: Vec<u32> = l.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [2, 3, 4]);
    assert!(
        l.warnings[0].message.contains("keepalived gives it 16384"),
        "{}",
        l.warnings[0]
    );
    // --strict refuses it.
    let strict = lb_config::LoadOptions {
        strict: true,
        ..Default::default()
    };
    assert!(lb_config::parse_str_with(text, "k.conf", &strict).is_err());
    round_trip(text);
}

#[test]
fn gw_is_read_as_via_with_keepalived_s_warning() {
    let l = parse_ok("static_routes {\n    10.9.0.0/16 gw 10.0.0.1\n}\n");
    assert_eq!(
        l.config.static_routes[0].via,
        Some("10.0.0.1".parse().unwrap())
    );
    assert_eq!(l.warnings.len(), 1);
    assert_eq!((l.warnings[0].line, l.warnings[0].col), (2, 17));
    assert!(
        l.warnings[0].message.contains("deprecated"),
        "{}",
        l.warnings[0]
    );
}

#[test]
fn static_addresses_take_the_default_interface() {
    let c = round_trip(
        "global_defs {\n    default_interface eth7\n}\nstatic_ipaddress {\n    192.168.1.1/24 dev eth0 scope global\n    192.168.9.1/24\n}\n",
    );
    let devs: Vec<&str> = c.static_ipaddress.iter().map(|a| a.dev.as_str()).collect();
    assert_eq!(devs, ["eth0", "eth7"]);
    assert_eq!(c.static_ipaddress[0].prefix_len, 24);
}

#[test]
fn what_xlb_does_not_add_is_an_error_at_the_word() {
    // (line, where, what the message says)
    let cases: &[(&str, (u32, u32), &str)] = &[
        (
            "static_routes {\n    10.0.0.0/8 via 10.0.0.1 mtu 1400\n}\n",
            (2, 29),
            "does not add routes with `mtu`",
        ),
        (
            "static_routes {\n    10.0.0.0/8 nexthop via 10.0.0.1\n}\n",
            (2, 16),
            "`nexthop`",
        ),
        (
            "static_routes {\n    10.0.0.1/8 dev eth0\n}\n",
            (2, 5),
            "expected the network address `10.0.0.0/8`",
        ),
        (
            "static_routes {\n    10.0.0.0/8 via 2001:db8::1\n}\n",
            (2, 20),
            "cannot mix IPv4 and IPv6",
        ),
        (
            "static_routes {\n    dev eth0\n}\n",
            (2, 5),
            "found no destination",
        ),
        (
            "static_routes {\n    10.0.0.0/8 table rt_web\n}\n",
            (2, 22),
            "rt_tables",
        ),
        (
            "static_routes {\n    blackhole 10.0.0.0/8 via 10.0.0.1\n}\n",
            (2, 30),
            "has no gateway",
        ),
        (
            "static_routes {\n    10.0.0.0/8 dev\n}\n",
            (2, 16),
            "expected an interface name",
        ),
        (
            "static_rules {\n    from 10.0.0.0/8 goto 100 priority 5\n}\n",
            (2, 21),
            "does not add rules with `goto`",
        ),
        (
            "static_rules {\n    not from 10.0.0.0/8 table 1 priority 5\n}\n",
            (2, 5),
            "`not`",
        ),
        (
            "static_rules {\n    from 10.0.0.0/8 table 1 blackhole priority 5\n}\n",
            (2, 29),
            "a second action",
        ),
        (
            "static_rules {\n    fwmark 1/x table 1 priority 5\n}\n",
            (2, 12),
            "MARK/MASK",
        ),
        (
            "static_rules {\n    from 10.0.0.0/8 to 2001:db8::/32 table 1 priority 5\n}\n",
            (2, 24),
            "cannot mix",
        ),
        (
            "static_rules {\n    from 10.0.0.0/8 table 0 priority 5\n}\n",
            (2, 27),
            "a table number 1..",
        ),
        (
            "virtual_server_group g {\n    10.0.0.10-5 80\n}\n",
            (2, 5),
            "a range end after its start",
        ),
        (
            "virtual_server_group g {\n    10.0.0.1/24 80\n}\n",
            (2, 5),
            "host bits clear",
        ),
        (
            "virtual_server_group g {\n    10.0.0.1\n}\n",
            (2, 5),
            "expected a port",
        ),
        (
            "virtual_server_group g {\n    10.0.0.0/8 80\n}\n",
            (2, 5),
            "expected at most 4096",
        ),
        (
            "virtual_server_group g {\n    ::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 80\n}\n",
            (2, 5),
            "expected at most 4096",
        ),
    ];
    for (text, at, says) in cases {
        let e = parse_err(text);
        let d = e
            .errors()
            .next()
            .unwrap_or_else(|| panic!("no error for {text}"));
        assert_eq!((d.line, d.col), *at, "{text}: {d}");
        assert!(d.message.contains(says), "{text}: {d}");
    }
    // In an instance too, where track_bfd stays refused.
    let e = parse_err(&format!(
        "{INSTANCE}    virtual_routes {{\n        10.0.0.0/8 realms 3\n    }}\n}}\n"
    ));
    assert_eq!(error_positions(&e), vec![(8, 20)]);
}

#[test]
fn a_rule_without_action_is_ignored_as_keepalived_does() {
    let l = parse_ok("static_rules {\n    from 10.0.0.0/8 priority 3\n}\n");
    assert!(l.config.static_rules.is_empty());
    assert_eq!(l.warnings.len(), 1);
    assert!(
        l.warnings[0]
            .message
            .contains("keepalived ignores this rule")
    );
}

const GROUP: &str = "virtual_server_group web {
    10.0.0.1-3 80
    10.0.1.5-10.0.1.6 80
    10.0.2.8/31 80
    10.0.0.9 8080
}
";

#[test]
fn a_group_expands_into_one_service_per_address_and_port() {
    let text = format!(
        "{GROUP}virtual_server group web {{
    lb_algo mh
    lb_kind DR
    real_server 10.0.9.1 {{
        TCP_CHECK {{
            connect_timeout 2
        }}
    }}
    real_server 10.0.9.2 8443 {{
    }}
}}
"
    );
    let c = round_trip(&text);
    let got: Vec<String> = c
        .virtual_servers
        .iter()
        .map(|vs| format!("{} {}", vs.address, vs.port))
        .collect();
    assert_eq!(
        got,
        [
            "10.0.0.1 80",
            "10.0.0.2 80",
            "10.0.0.3 80",
            "10.0.1.5 80",
            "10.0.1.6 80",
            "10.0.2.8 80",
            "10.0.2.9 80",
            "10.0.0.9 8080",
        ]
    );
    for vs in &c.virtual_servers {
        assert_eq!(vs.group.as_deref(), Some("web"));
        assert_eq!(vs.lb_kind, lb_config::LbKind::Dr);
        // A real server without a port, and its check, take each entry's port.
        let rs = &vs.real_servers[0];
        assert_eq!(rs.port, vs.port);
        assert_eq!(rs.checkers[0].connection().unwrap().connect_port, vs.port);
        assert_eq!(vs.real_servers[1].port, 8443);
    }
    // Printed as the group and one virtual_server group block.
    let printed = c.to_keepalived_string();
    assert_eq!(
        printed.matches("virtual_server group web {").count(),
        1,
        "{printed}"
    );
    assert!(
        printed.contains("virtual_server_group web {\n    10.0.0.1-10.0.0.3 80\n"),
        "{printed}"
    );
    assert_eq!(c.virtual_server_groups[0].entries.len(), 4);
}

#[test]
fn a_group_of_several_ports_prints_back_the_ports_written() {
    // A real server written with port 80 serves port 8080 too; one without a port takes each
    // service's; a check's connect_port written equal to the first port is kept for all.
    let c = round_trip(&format!(
        "{GROUP}virtual_server group web {{
    lb_algo mh
    lb_kind DR
    sorry_server 10.0.9.9 80
    real_server 10.0.9.1 80 {{
        TCP_CHECK {{
            connect_port 80
        }}
    }}
    real_server 10.0.9.2 {{
        HTTP_GET {{
            url {{
                path /
            }}
        }}
    }}
}}
"
    ));
    let last = c.virtual_servers.last().unwrap();
    assert_eq!(last.port, 8080);
    assert_eq!(last.real_servers[0].port, 80);
    assert_eq!(last.sorry_server.as_ref().unwrap().port, 80);
    assert_eq!(last.real_servers[1].port, 8080);
    assert_eq!(
        last.real_servers[1].checkers[0]
            .connection()
            .unwrap()
            .connect_port,
        8080
    );
    let printed = c.to_keepalived_string();
    assert!(printed.contains("real_server 10.0.9.1 80 {"), "{printed}");
    assert!(printed.contains("real_server 10.0.9.2 {"), "{printed}");
}

#[test]
fn an_ipv6_range_and_a_family_mismatch() {
    let c = round_trip(
        "virtual_server_group v6 {\n    2001:db8::a-c 443\n}\nvirtual_server group v6 {\n    lb_algo mh\n    lb_kind DR\n    real_server 2001:db8::100 {\n    }\n}\n",
    );
    let got: Vec<String> = c
        .virtual_servers
        .iter()
        .map(|v| v.address.to_string())
        .collect();
    assert_eq!(got, ["2001:db8::a", "2001:db8::b", "2001:db8::c"]);
    // An IPv4 real server behind the group's IPv6 addresses is refused even when the first
    // entry is IPv4: the block is judged for each family.
    let e = parse_err(
        "virtual_server_group mix {\n    10.0.0.1 80\n    2001:db8::a 80\n}\nvirtual_server group mix {\n    lb_algo mh\n    lb_kind DR\n    real_server 10.0.9.1 {\n    }\n}\n",
    );
    assert_eq!(error_positions(&e), vec![(8, 5)]);
}

#[test]
fn a_group_s_services_are_ordinary_for_duplicates_and_diagnostics_are_said_once() {
    // The same address and port from the group and from a plain virtual_server: a duplicate,
    // reported at the group's line.
    let e = parse_err(&format!(
        "{GROUP}virtual_server group web {{\n    lb_kind DR\n}}\nvirtual_server 10.0.0.2 80 {{\n    lb_kind DR\n}}\n"
    ));
    let d = e.errors().next().unwrap();
    assert_eq!(d.line, 10, "{d}");
    assert!(d.message.contains("first at test.conf:2:5"), "{d}");
    // A warning of the block is said once, not once per port.
    let l = parse_ok(&format!(
        "{GROUP}virtual_server group web {{\n    lb_algo mh\n    lb_kind DR\n    frobnicate 1\n}}\n"
    ));
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    // TCP and UDP services of one group print back as two blocks.
    let c = round_trip(&format!(
        "{GROUP}virtual_server group web {{\n    lb_kind DR\n}}\nvirtual_server group web {{\n    lb_kind DR\n    protocol UDP\n}}\n"
    ));
    assert_eq!(c.virtual_servers.len(), 16);
}
