//! Each kind of mistake is reported at its exact file:line:col, and all of
//! them in one run.

mod common;

use common::*;

/// A minimal valid instance and DR virtual server, for tests to break.
const BASE: &str = "\
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        10.0.0.1
    }
}
";

fn with_base(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn wrong_value_names_the_place_what_was_found_and_what_was_expected() {
    let e = parse_err("vrrp_instance VI_1 {\n    virtual_router_id 51\n    priority 300\n}\n");
    assert_eq!(
        only_error(&e).to_string(),
        "test.conf:3:14: error: found `300` after `priority`, expected an integer 1..255"
    );
    for (line, expected) in [
        ("state master", "MASTER or BACKUP"),
        ("advert_int fast", "a number of seconds 0.01..255"),
        ("unicast_src_ip 10.0.0.300", "an IPv4 or IPv6 address"),
        ("preempt_delay 1001", "an integer 0..1000"),
    ] {
        let e = parse_err(&format!(
            "vrrp_instance VI_1 {{\n    virtual_router_id 51\n    {line}\n}}\n"
        ));
        let d = only_error(&e);
        assert_eq!(d.line, 3);
        assert!(d.message.ends_with(expected), "{d}");
    }
}

#[test]
fn missing_values_and_missing_required_keywords() {
    let e = parse_err("vrrp_instance VI_1 {\n    priority\n}\n");
    assert_eq!(
        e.errors().map(|d| d.to_string()).collect::<Vec<_>>(),
        vec![
            "test.conf:1:1: error: found no `virtual_router_id` in `vrrp_instance VI_1`, expected one (an integer 1..255)",
            "test.conf:2:5: error: found end of line after `priority`, expected an integer 1..255",
        ]
    );
    // keepalived removes a vrrp_script without script, and reads on.
    let l = parse_ok("vrrp_script chk {\n    interval 2\n}\n");
    assert!(l.config.vrrp_scripts.is_empty());
    assert_eq!((l.warnings[0].line, l.warnings[0].col), (1, 1));
    let e = parse_err(&with_base("virtual_server 10.0.0.1 {\n    lb_kind DR\n}\n"));
    assert_eq!(error_positions(&e), vec![(8, 1)]);
    assert!(only_error(&e).message.contains("expected a port"));
}

#[test]
fn duplicate_vrid_on_one_interface() {
    let text = with_base(
        "vrrp_instance VI_2 {\n    interface eth0\n    virtual_router_id 51\n    virtual_ipaddress {\n        10.0.0.2\n    }\n}\n",
    );
    let d = only_error(&parse_err(&text)).clone();
    assert_eq!((d.line, d.col), (10, 5));
    assert!(
        d.message
            .starts_with("found a second `virtual_router_id 51` on interface eth0"),
        "{d}"
    );
    assert!(d.message.contains("first at test.conf:3:5"), "{d}");

    // Another interface, another family or another VRRP version is another router.
    for (iface, vip, version) in [
        ("eth1", "10.0.0.2", 2),
        ("eth0", "fe80::2/64", 2),
        ("eth0", "10.0.0.2", 3),
    ] {
        parse_ok(&with_base(&format!(
            "vrrp_instance VI_2 {{\n    interface {iface}\n    version {version}\n    virtual_router_id 51\n    virtual_ipaddress {{\n        {vip}\n    }}\n}}\n"
        )));
    }
}

#[test]
fn unknown_block_in_a_block_is_an_error_unknown_keyword_a_warning() {
    // At the top level keepalived ignores an unknown block whole: so does xlb.
    let l = parse_ok(&with_base(
        "vrrp_bogus X {\n    vrrp_instance {\n    }\n}\n",
    ));
    assert_eq!(l.config.vrrp_instances.len(), 1);
    assert_eq!((l.warnings[0].line, l.warnings[0].col), (8, 1));
    // Inside a block keepalived would end the enclosing block at its `}`.
    let e = parse_err(
        "vrrp_instance VI_1 {\n    virtual_router_id 1\n    frobnicate {\n        x\n    }\n}\n",
    );
    assert_eq!(error_positions(&e), vec![(3, 5)]);
    assert!(
        only_error(&e)
            .message
            .contains("unknown block `frobnicate`")
    );

    let l = parse_ok(
        "vrrp_instance VI_1 {\n    virtual_router_id 1\n    frobnicate 3\n    virtual_ipaddress {\n        10.0.0.1\n    }\n}\n",
    );
    let w = &l.warnings[0];
    assert_eq!((w.line, w.col), (3, 5));
    assert_eq!(
        w.to_string(),
        "test.conf:3:5: warning: unknown keyword `frobnicate` in vrrp_instance VI_1, ignored as keepalived does"
    );
}

#[test]
fn duplicate_real_server_and_virtual_server() {
    let e = parse_err(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind DR\n    real_server 10.0.0.11 80 {\n    }\n    real_server 10.0.0.11 80 {\n    }\n}\nvirtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind DR\n}\n",
    ));
    let errors: Vec<String> = e.errors().map(|d| d.to_string()).collect();
    assert_eq!(errors.len(), 2, "{e}");
    assert!(
        errors[0].starts_with("test.conf:13:5: error: found a second `real_server 10.0.0.11 80`")
    );
    assert!(
        errors[1].starts_with(
            "test.conf:16:1: error: found a second `virtual_server 10.0.0.1 80` (TCP)"
        )
    );
    // Same address and port over UDP is another service.
    parse_ok(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind DR\n}\nvirtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind DR\n    protocol UDP\n}\n",
    ));
}

#[test]
fn references_to_unknown_scripts_and_instances() {
    let e = parse_err(
        "vrrp_instance VI_1 {\n    virtual_router_id 1\n    track_script {\n        chk_missing weight 5\n    }\n}\n\
         vrrp_sync_group G1 {\n    group {\n        VI_1\n        VI_9\n    }\n}\n\
         vrrp_sync_group G2 {\n    group {\n        VI_1\n    }\n}\n",
    );
    // keepalived ignores a track_script it does not know ("not found").
    let warning = e.warnings().find(|w| w.line == 4).unwrap().to_string();
    assert_eq!(
        warning,
        "test.conf:4:9: warning: found `chk_missing` in track_script of `vrrp_instance VI_1`, \
         expected the name of a vrrp_script: keepalived ignores it (track script not found), \
         and so does xlb"
    );
    let errors: Vec<String> = e.errors().map(|d| d.to_string()).collect();
    assert_eq!(
        errors,
        vec![
            "test.conf:10:9: error: found `VI_9` in `vrrp_sync_group G1`, expected the name of a vrrp_instance",
            "test.conf:15:9: error: found `VI_1` in `vrrp_sync_group G2` although it is already in `G1`, expected an instance in one sync group only",
        ]
    );
}

#[test]
fn dr_and_nat_are_supported_tun_is_not_yet() {
    let e = parse_err(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind TUN\n}\n",
    ));
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (10, 5));
    assert_eq!(
        d.message,
        "found `lb_kind TUN`, expected `lb_kind DR` or `lb_kind NAT`: lb_kind TUN is not supported yet"
    );
    parse_ok(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind NAT\n}\n",
    ));
    // keepalived's default is NAT: without lb_kind, NAT it is, with a warning that says so.
    let loaded = parse_ok(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n}\n",
    ));
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.to_string().contains("keepalived's default NAT applies")),
        "{:?}",
        loaded.warnings
    );
    // A NAT real server serves one NAT service: replies are told apart by it.
    let e = parse_err(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind NAT\n    real_server 10.0.0.11 8080 {\n    }\n}\nvirtual_server 10.0.0.2 80 {\n    lb_algo mh\n    lb_kind NAT\n    real_server 10.0.0.11 8080 {\n    }\n}\n",
    ));
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (17, 5));
    assert!(
        d.message
            .contains("expected it in one: replies are translated by the real server's address"),
        "{d}"
    );
    // A real server may repeat its virtual server's method, not choose another.
    parse_ok(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind NAT\n    real_server 10.0.0.11 8080 {\n        lvs_method NAT\n    }\n}\n",
    ));
    let e = parse_err(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind NAT\n    real_server 10.0.0.11 8080 {\n        lvs_method DR\n    }\n}\n",
    ));
    assert!(
        only_error(&e)
            .message
            .contains("in a real_server whose virtual_server forwards by NAT"),
        "{e:?}"
    );
    // lvs_method is keepalived's newer name.
    parse_ok(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lvs_sched mh\n    lvs_method DR\n}\n",
    ));
}

#[test]
fn schedulers_other_than_mh_are_said_once_per_file() {
    for algo in [
        "rr", "wrr", "wlc", "lc", "sh", "dh", "lblc", "lblcr", "sed", "nq", "fo", "ovf",
    ] {
        let l = parse_ok(&with_base(&format!(
            "virtual_server 10.0.0.1 80 {{\n    lb_algo {algo}\n    lb_kind DR\n}}\n"
        )));
        assert_eq!(l.warnings.len(), 1, "{algo}: {:?}", l.warnings);
        let w = &l.warnings[0];
        assert_eq!((w.line, w.col), (9, 5));
        assert!(
            w.message.contains("weighted consistent hashing (Maglev)"),
            "{w}"
        );
        assert_eq!(
            l.config.virtual_servers[0].hash_on_source_only(),
            algo == "sh"
        );
    }
    let l = parse_ok(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind DR\n}\n",
    ));
    assert!(l.warnings.is_empty());
    // Three virtual servers with other schedulers: one note, at the first, counting the rest.
    let l = parse_ok(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo rr\n    lb_kind DR\n}\n\
         virtual_server 10.0.0.1 81 {\n    lb_algo wlc\n    lb_kind DR\n}\n\
         virtual_server 10.0.0.1 82 {\n    lb_algo mh\n    lb_kind DR\n}\n\
         virtual_server 10.0.0.1 83 {\n    lb_algo sh\n    lb_kind DR\n}\n",
    ));
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert_eq!((l.warnings[0].line, l.warnings[0].col), (9, 5));
    assert!(
        l.warnings[0]
            .message
            .starts_with("`lb_algo rr` (and those of 2 more virtual servers in this file)"),
        "{}",
        l.warnings[0]
    );
    // Not written: keepalived's rr, warned at the virtual_server line.
    let l = parse_ok(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_kind DR\n}\n",
    ));
    assert_eq!((l.warnings[0].line, l.warnings[0].col), (8, 1));
    let e = parse_err(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo fastest\n    lb_kind DR\n}\n",
    ));
    assert_eq!(error_positions(&e), vec![(9, 13)]);
    // Persistence hashes on the client whatever the scheduler.
    let l = parse_ok(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind DR\n    persistence_timeout 50\n}\n",
    ));
    assert!(l.config.virtual_servers[0].hash_on_source_only());
}

#[test]
fn fwmark_virtual_servers_are_refused_and_groups_must_exist() {
    // XDP runs before netfilter: no mark to match on. The error says what to write.
    let e = parse_err(&with_base("virtual_server fwmark 1 {\n    lb_kind DR\n}\n"));
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (8, 16));
    assert!(d.message.contains("before netfilter"), "{d}");
    assert!(d.message.contains("virtual_server_group"), "{d}");
    // An unknown group, at its name, with the one probably meant.
    let e = parse_err(&with_base(
        "virtual_server_group webs {\n    10.0.0.1 80\n}\nvirtual_server group web {\n    lb_kind DR\n}\n",
    ));
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (11, 22));
    assert!(
        d.message
            .contains("expected the name of a virtual_server_group"),
        "{d}"
    );
    assert!(d.message.contains("webs"), "{d}");
    // fwmark inside a group: refused at its line, for the same reason.
    let e = parse_err(&with_base(
        "virtual_server_group web {\n    10.0.0.1 80\n    fwmark 3\n}\n",
    ));
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (10, 5));
    assert!(d.message.contains("before netfilter"), "{d}");
}

#[test]
fn every_error_of_a_file_is_reported_in_one_run() {
    let text = "\
global_defs {
    vrrp_version 4
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 0
    priority 101
    authentication {
        auth_type MD5
        auth_pass 1111
    }
    virtual_ipaddress {
        10.0.0.1/33
    }
}
virtual_server 10.0.0.1 80 {
    lb_algo rr
    lb_kind NAT
    real_server 10.0.0.11 http {
        weight heavy
        BFD_CHECK {
        }
    }
}
}
";
    let e = parse_err(text);
    assert_eq!(
        error_positions(&e),
        vec![
            (2, 18),
            (7, 23),
            (10, 19),
            (14, 9),
            (20, 27),
            (21, 16),
            (22, 9),
            (26, 1)
        ],
        "{e}"
    );
    // Warnings come along with the errors.
    assert!(
        e.warnings()
            .any(|w| w.line == 18 && w.message.contains("Maglev"))
    );
    assert!(e.to_string().ends_with("8 errors found"));
}

#[test]
fn keepalived_value_quirks() {
    // auth_pass longer than 8: truncated with a warning, as keepalived does.
    let l = parse_ok(
        "vrrp_instance VI_1 {\n    virtual_router_id 1\n    authentication {\n        auth_type PASS\n        auth_pass 0123456789\n    }\n}\n",
    );
    assert_eq!(
        l.config.vrrp_instances[0]
            .authentication
            .as_ref()
            .unwrap()
            .auth_pass,
        "01234567"
    );
    assert_eq!((l.warnings[0].line, l.warnings[0].col), (5, 19));

    // VRRPv2 cannot send fractional intervals: rounded with a warning.
    let l = parse_ok("vrrp_instance VI_1 {\n    virtual_router_id 1\n    advert_int 1.6\n}\n");
    assert_eq!(l.config.vrrp_instances[0].advert_int_centis, 200);
    assert_eq!(l.warnings[0].line, 3);
    let l = parse_ok(
        "vrrp_instance VI_1 {\n    version 3\n    virtual_router_id 1\n    advert_int 0.05\n}\n",
    );
    assert_eq!(l.config.vrrp_instances[0].advert_int_centis, 5);
    assert!(l.warnings.is_empty());
    let e = parse_err(
        "vrrp_instance VI_1 {\n    version 3\n    virtual_router_id 1\n    advert_int 41\n}\n",
    );
    assert_eq!(error_positions(&e), vec![(4, 5)]);

    // An unquoted script followed by a word: keepalived takes the word as a user.
    let l = parse_ok(
        "vrrp_instance VI_1 {\n    virtual_router_id 1\n    notify_master /bin/notify.sh master\n}\n",
    );
    let n = l.config.vrrp_instances[0].notify_master.as_ref().unwrap();
    assert_eq!(n.command, "/bin/notify.sh");
    assert_eq!(n.user.as_ref().unwrap().user, "master");
    assert_eq!((l.warnings[0].line, l.warnings[0].col), (3, 34));

    // One address family per instance.
    let e = parse_err(
        "vrrp_instance VI_1 {\n    virtual_router_id 1\n    virtual_ipaddress {\n        10.0.0.1\n        fe80::1\n    }\n}\n",
    );
    assert_eq!(error_positions(&e), vec![(5, 9)]);

    // Unknown virtual address option.
    let e = parse_err(
        "vrrp_instance VI_1 {\n    virtual_router_id 1\n    virtual_ipaddress {\n        10.0.0.1 dev eth0 color red\n    }\n}\n",
    );
    assert_eq!(error_positions(&e), vec![(4, 27)]);
}

#[test]
fn brace_mistakes() {
    let e = parse_err("vrrp_instance VI_1 {\n    virtual_router_id 1\n");
    assert_eq!(error_positions(&e), vec![(1, 20)]);
    assert!(
        only_error(&e)
            .message
            .contains("found end of file, expected `}`")
    );
    let e = parse_err("vrrp_instance VI_1 {\n    virtual_router_id 1\n}\n}\n");
    assert_eq!(error_positions(&e), vec![(4, 1)]);
    // No `{`: keepalived reads the block without it (one warning); here the
    // `}` is missing too, one error.
    let e = parse_err("vrrp_instance VI_1\n    virtual_router_id 1\n");
    assert_eq!(error_positions(&e), vec![(1, 1)], "{e}");
    assert!(
        e.errors()
            .all(|d| d.message.contains("(its `{` is missing too)"))
    );
    assert!(e.warnings().any(|w| (w.line, w.col) == (1, 1)));
    let e =
        parse_err("vrrp_instance VI_1 {\n    virtual_router_id 1\n    priority 100 {\n    }\n}\n");
    assert_eq!(error_positions(&e), vec![(3, 18)]);
    let e = parse_err("vrrp_script chk {\n    script \"/bin/true\n}\n");
    assert_eq!(error_positions(&e), vec![(2, 12)]);
}

#[test]
fn dr_real_server_on_another_port_is_a_warning() {
    let l = parse_ok(&with_base(
        "virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind DR\n    real_server 10.0.0.11 8080 {\n    }\n}\n",
    ));
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert_eq!((l.warnings[0].line, l.warnings[0].col), (11, 5));
    assert!(l.warnings[0].message.contains("health checks only"));
}

/// A NAT director with VRRP needs a floating gateway for its real servers: a config whose VRRP
/// addresses are only the virtual servers' own gets one warning, at the first NAT service.
#[test]
fn nat_without_a_floating_gateway_is_said_once() {
    let instance = |vips: &str| {
        format!(
            "vrrp_instance VI_1 {{\n    state MASTER\n    interface eth0\n    virtual_router_id 51\n    \
             priority 100\n    virtual_ipaddress {{\n{vips}    }}\n}}\n"
        )
    };
    let services = "virtual_server 10.0.0.100 80 {\n    lb_algo mh\n    lb_kind NAT\n    \
                    real_server 10.0.2.1 80 {\n    }\n}\n\
                    virtual_server 10.0.0.100 443 {\n    lb_algo mh\n    lb_kind NAT\n    \
                    real_server 10.0.2.1 443 {\n    }\n}\n";
    let l = parse_ok(&format!("{}{services}", instance("        10.0.0.100\n")));
    let said: Vec<_> = l
        .warnings
        .iter()
        .filter(|w| w.message.contains("default gateway"))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", l.warnings);
    assert_eq!((said[0].line, said[0].col), (10, 1));
    // Seed 003's shape: the real servers' gateway moves with the VIP.
    let l = parse_ok(&format!(
        "{}{services}",
        instance("        10.0.0.100\n        10.0.2.254\n")
    ));
    assert!(
        !l.warnings
            .iter()
            .any(|w| w.message.contains("default gateway")),
        "{:?}",
        l.warnings
    );
}
