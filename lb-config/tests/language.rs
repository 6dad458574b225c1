//! keepalived's configuration language above keywords: conditional lines
//! (`@ID`, `@^ID` with `--config-id`), parameters (`$NAME=VALUE`, `$NAME`,
//! `${NAME}`, multi-line values) and comments anywhere in a line. Each
//! construct is read, printed back as the effective configuration (no
//! parameter nor condition left) and read again to the same `Config`.

mod common;

use common::*;
use lb_config::{LoadOptions, Loaded, VrrpState};

fn with_id(id: &str) -> LoadOptions {
    LoadOptions {
        config_id: Some(id.to_string()),
        ..LoadOptions::default()
    }
}

fn parse_with(text: &str, options: &LoadOptions) -> Loaded {
    match lb_config::parse_str_with(text, "test.conf", options) {
        Ok(l) => l,
        Err(e) => panic!("should parse:\n{e}"),
    }
}

/// Printed and read again, the effective configuration is the same.
fn round_trips(loaded: &Loaded) {
    let printed = loaded.config.to_keepalived_string();
    let again = lb_config::parse_str(&printed, "printed.conf")
        .unwrap_or_else(|e| panic!("printed config does not parse:\n{e}\n{printed}"));
    assert_eq!(loaded.config, again.config, "{printed}");
    assert!(!printed.contains(['$', '@']), "{printed}");
}

/// One file for two directors, as keepalived.conf(5) shows it.
const TWO_DIRECTORS: &str = "\
global_defs {
    @main   router_id main_router
    @backup router_id backup_router
}
@main   $PRIORITY=150
@backup $PRIORITY=100
vrrp_instance VI_1 {
    @main   state MASTER
    @^main  state BACKUP
    interface eth0
    virtual_router_id 51
    priority $PRIORITY
    @main   unicast_src_ip 10.0.0.1
    @backup unicast_src_ip 10.0.0.2
    unicast_peer {
        @^main   10.0.0.1
        @^backup 10.0.0.2
    }
    virtual_ipaddress {
        10.0.0.100/24
    }
}
";

#[test]
fn one_file_two_config_ids_two_effective_configs() {
    let main = parse_with(TWO_DIRECTORS, &with_id("main"));
    let backup = parse_with(TWO_DIRECTORS, &with_id("backup"));
    for (loaded, router, state, priority, src, peer) in [
        (
            &main,
            "main_router",
            VrrpState::Master,
            150,
            "10.0.0.1",
            "10.0.0.2",
        ),
        (
            &backup,
            "backup_router",
            VrrpState::Backup,
            100,
            "10.0.0.2",
            "10.0.0.1",
        ),
    ] {
        let c = &loaded.config;
        assert_eq!(c.global_defs.router_id.as_deref(), Some(router));
        let vi = &c.vrrp_instances[0];
        assert_eq!((vi.state, vi.priority), (state, priority));
        assert_eq!(vi.unicast_src_ip, Some(src.parse().unwrap()));
        assert_eq!(
            vi.unicast_peer,
            vec![peer.parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        round_trips(loaded);
    }
    assert_ne!(main.config, backup.config);
    // No id: no `@ID` line, every `@^ID` line; $PRIORITY stays undefined.
    let e = parse_err(TWO_DIRECTORS);
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (12, 14));
    assert!(
        d.message.starts_with("found `$PRIORITY` after `priority`"),
        "{d}"
    );
}

#[test]
fn parameters_as_keepalived_conf_5_describes_them() {
    // (text, what the effective config shows)
    let cases: &[(&str, &str)] = &[
        (
            "$VIP=10.0.0.100\nvirtual_server $VIP 80 {\n    lb_algo mh\n    lb_kind DR\n}\n",
            "virtual_server 10.0.0.100 80 {",
        ),
        (
            "$NET=10.0.${SUB}\n$SUB=7\nvirtual_server ${NET}.1 443 {\n    lb_algo mh\n    lb_kind DR\n}\n",
            "virtual_server 10.0.7.1 443 {",
        ),
        (
            "$CHECK=\\\nTCP_CHECK { \\\n    connect_timeout ${TIMEOUT} \\\n}\n$TIMEOUT=3\n\
             virtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind DR\n    \
             real_server 10.0.0.2 80 {\n        $CHECK\n    }\n}\n",
            "connect_timeout 3",
        ),
        (
            "vrrp_script chk {\n    script \"/bin/check ${_HASH}1 ${_INSTANCE}\"\n}\n",
            "script \"/bin/check #1 node7\"",
        ),
        (
            "vrrp_script chk {\n    script \"/bin/check $1\"\n}\n",
            "script \"/bin/check $1\"",
        ),
    ];
    for (text, shown) in cases {
        let loaded = parse_with(text, &with_id("node7"));
        let printed = loaded.config.to_keepalived_string();
        assert!(printed.contains(shown), "{text}\n---\n{printed}");
        assert!(
            loaded.warnings.iter().all(|w| !w.message.contains('$')),
            "{:?}",
            loaded.warnings
        );
        if !shown.contains('$') {
            round_trips(&loaded);
        }
    }
}

#[test]
fn multi_line_values_make_whole_blocks() {
    let text = "\
$RS= \\
    real_server 10.0.${N}.${RS_NUM} 80 { \\
        weight ${RS_NUM} \\
    }
$VS= \\
virtual_server 10.0.${N}.1 80 { \\
    lb_algo mh \\
    lb_kind DR \\
    $RS_NUM=1 \\
    $RS \\
    $RS_NUM=2 \\
    $RS \\
}

$N=0
$VS
$N=1
$VS
";
    let loaded = parse_with(text, &LoadOptions::default());
    let vs: Vec<String> = loaded
        .config
        .virtual_servers
        .iter()
        .map(|vs| {
            let rs: Vec<String> = vs
                .real_servers
                .iter()
                .map(|rs| format!("{}w{}", rs.address, rs.weight))
                .collect();
            format!("{}: {}", vs.address, rs.join(" "))
        })
        .collect();
    assert_eq!(
        vs,
        [
            "10.0.0.1: 10.0.0.1w1 10.0.0.2w2",
            "10.0.1.1: 10.0.1.1w1 10.0.1.2w2"
        ]
    );
    round_trips(&loaded);
}

#[test]
fn an_error_in_a_value_points_at_the_value_and_names_the_use() {
    let text = "$PRIO=300\nvrrp_instance VI_1 {\n    virtual_router_id 1\n    priority $PRIO\n}\n";
    let d = only_error(&parse_err(text)).to_string();
    assert_eq!(
        d,
        "test.conf:1:7: error: found `300` after `priority`, expected an integer 1..255 \
         (in `$PRIO` at test.conf:4:14)"
    );
    // Nested: each substitution is named, innermost first.
    let text = "$B=30${C}\n$C=0\n$A=${B}\nvrrp_instance VI_1 {\n    virtual_router_id 1\n    priority ${A}\n}\n";
    let d = only_error(&parse_err(text)).to_string();
    assert_eq!(
        d,
        "test.conf:1:4: error: found `300` after `priority`, expected an integer 1..255 \
         (in `$B` at test.conf:3:4, in `$A` at test.conf:6:14)"
    );
}

#[test]
fn substitution_is_bounded() {
    // A value that uses itself: one error where it is used.
    let e = parse_err("$A=x ${A}\nvrrp_instance ${A} {\n}\n");
    let d = e.errors().next().unwrap();
    assert_eq!((d.line, d.col), (2, 15));
    assert!(d.message.contains("nested more than"), "{d}");
    // Doubling values, or a line of many: the work is bounded, and said
    // where the line uses the parameter.
    let mut text = String::from("$A0=xxxxxxxxxxxxxxxx\n");
    for i in 1..=16 {
        text.push_str(&format!("$A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
    }
    text.push_str("router_id ${A16}\n");
    let started = std::time::Instant::now();
    let e = parse_err(&text);
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (18, 11), "{d}");
    assert!(d.message.contains("(limit)"), "{d}");
    let many = format!("$A=x\nrouter_id {}\n", "${A}".repeat(12_000));
    let e = parse_err(&many);
    assert_eq!(only_error(&e).line, 2);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn conditional_includes_follow_the_config_id() {
    let dir = TempDir::new("conditional-include");
    let main = dir.write(
        "keepalived.conf",
        "@main include main.conf\n@^main include other.conf\n$DIR=conf.d\ninclude ${DIR}/*.conf\n",
    );
    dir.write("main.conf", "global_defs {\n    router_id main\n}\n");
    dir.write("other.conf", "global_defs {\n    router_id other\n}\n");
    dir.write(
        "conf.d/a.conf",
        "vrrp_script chk {\n    script /bin/true\n}\n",
    );
    for (id, router) in [("main", "main"), ("backup", "other")] {
        let l = lb_config::load_with(&main, &with_id(id)).unwrap();
        assert_eq!(l.config.global_defs.router_id.as_deref(), Some(router));
        assert_eq!(l.config.vrrp_scripts.len(), 1);
    }
    // A parameter an included file defines applies after the include.
    let main = dir.write(
        "params.conf",
        "include vars.conf\nvrrp_script chk {\n    script /bin/true\n    weight $W\n}\n",
    );
    dir.write("vars.conf", "$W=-20\n");
    let l = load_ok(&main);
    assert_eq!(l.config.vrrp_scripts[0].weight, -20);
}

#[test]
fn sequences_and_random_values_are_refused_with_what_to_write() {
    for (text, col) in [("~SEQ(i, 1, 1, 3) x\n", 1), ("router_id ${_RANDOM}\n", 11)] {
        let e = parse_err(text);
        let d = only_error(&e);
        assert_eq!((d.line, d.col), (1, col), "{d}");
        assert!(
            d.message.contains("not supported by xlb") || d.message.contains("instead"),
            "{d}"
        );
    }
}

#[test]
fn keepalived_reads_conditions_and_parameters_alike() {
    let text = "\
@main $PRIORITY=300
@backup $PRIORITY=200
$NET=10.0.${SUB}
$SUB=7
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority $PRIORITY
    virtual_ipaddress {
        ${NET}.300
    }
}
";
    let dir = TempDir::new("keepalived-language");
    let path = dir.write("keepalived.conf", text);
    for (id, priority_refused) in [("main", true), ("backup", false)] {
        let Some(said) = keepalived_config_test(&path, &["--config-id", id]) else {
            eprintln!("keepalived is not installed: skipping the comparison with it");
            return;
        };
        // keepalived names the values it substituted, at the line using them.
        let says = |line: u32, words: &str| {
            said.iter()
                .any(|l| l.contains(&format!("Line {line})")) && l.contains(words))
        };
        assert!(says(10, "invalid IP 10.0.7.300"), "{said:#?}");
        assert_eq!(
            says(8, "number '300' outside range"),
            priority_refused,
            "{said:#?}"
        );

        let e = lb_config::load_with(&path, &with_id(id)).unwrap_err();
        let errors: Vec<String> = e.errors().map(|d| d.to_string()).collect();
        let vip = errors
            .iter()
            .find(|d| d.contains("found `10.0.7.300`"))
            .unwrap_or_else(|| panic!("{errors:#?}"));
        assert!(vip.contains("(in `$NET` at "), "{vip}");
        assert!(vip.contains("keepalived.conf:10:9)"), "{vip}");
        let priority = errors
            .iter()
            .find(|d| d.contains("found `300` after `priority`"));
        assert_eq!(priority.is_some(), priority_refused, "{errors:#?}");
        if let Some(priority) = priority {
            assert!(
                priority.contains("keepalived.conf:1:17: error:"),
                "{priority}"
            );
            assert!(
                priority.contains("(in `$PRIORITY` at ")
                    && priority.contains("keepalived.conf:8:14)"),
                "{priority}"
            );
        }
    }
}
