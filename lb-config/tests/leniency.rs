//! What keepalived reads past, logging a line, xlb reads past too, to the
//! same effective configuration, with one warning at the line that is wrong;
//! `--strict` (`LoadOptions::strict`) makes each of those warnings an error.
//!
//! Each case is a slip seen in real files. Where keepalived is installed, the
//! same file is given to `keepalived --config-test` (which starts nothing and
//! changes no interface): the lines keepalived complains about are lines xlb
//! warns about, and what keepalived says shows the effective value it took.

mod common;

use common::*;
use lb_config::{Config, LbKind, LoadOptions};

/// A valid instance, to track scripts and synchronise.
const INSTANCE: &str = "\
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        10.0.0.1
    }
}
";

struct Case {
    name: &'static str,
    text: String,
    /// xlb's warnings: line, column, words in the message.
    warnings: &'static [(u32, u32, &'static str)],
    /// The effective configuration, as keepalived runs it.
    check: fn(&Config),
    /// What `keepalived --config-test` says: at which line (0: none), what,
    /// and the line where xlb says it (0: nowhere, keepalived saying nothing
    /// about the file's lines).
    keepalived: &'static [(u32, &'static str, u32)],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "nopreempt with a value",
            text: "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    \
                   nopreempt 0\n    virtual_ipaddress {\n        10.0.0.1\n    }\n}\n"
                .into(),
            warnings: &[(4, 15, "keepalived ignores the value and sets nopreempt")],
            check: |c| assert!(c.vrrp_instances[0].nopreempt),
            keepalived: &[],
        },
        Case {
            name: "nopreempt 1 with state MASTER: set, then cleared as keepalived does",
            text: "vrrp_instance VI_1 {\n    state MASTER\n    priority 100\n    interface eth0\n    \
                   virtual_router_id 51\n    nopreempt 1\n    virtual_ipaddress {\n        \
                   10.0.0.1\n    }\n}\n"
                .into(),
            warnings: &[
                (6, 5, "nopreempt does not work with `state MASTER`"),
                (6, 15, "keepalived ignores the value and sets nopreempt"),
            ],
            check: |c| assert!(!c.vrrp_instances[0].nopreempt),
            keepalived: &[(0, "nopreempt will not work with initial state MASTER", 6)],
        },
        Case {
            name: "extra words after virtual_server ADDR PORT",
            text: "virtual_server 10.0.0.1 80 extra words {\n    lb_algo mh\n    lb_kind DR\n    \
                   protocol TCP\n    real_server 10.0.0.2 80 {\n    }\n}\n"
                .into(),
            warnings: &[(1, 28, "found `extra` after `virtual_server 10.0.0.1 80`")],
            check: |c| {
                let vs = &c.virtual_servers[0];
                assert_eq!((vs.port, vs.real_servers.len()), (80, 1));
            },
            keepalived: &[],
        },
        Case {
            name: "extra words after auth_pass, and a password over 8 characters",
            text: "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    \
                   authentication {\n        auth_type PASS\n        auth_pass 0123456789 extra\n    \
                   }\n    virtual_ipaddress {\n        10.0.0.1\n    }\n}\n"
                .into(),
            warnings: &[
                (6, 19, "keepalived uses `01234567`"),
                (6, 30, "found `extra` after `auth_pass 0123456789`"),
            ],
            check: |c| {
                let auth = c.vrrp_instances[0].authentication.as_ref().unwrap();
                assert_eq!(auth.auth_pass, "01234567");
            },
            keepalived: &[(6, "Truncating auth_pass to 8 characters", 6)],
        },
        Case {
            name: "a comment character inside a word",
            text: "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    \
                   authentication {\n        auth_type PASS\n        auth_pass abcdefgh#ij\n    \
                   }\n    virtual_ipaddress {\n        10.0.0.1\n    }\n}\n"
                .into(),
            // keepalived says nothing: the comment leaves 8 characters.
            warnings: &[(6, 27, "starts a comment, so the word is `abcdefgh`")],
            check: |c| {
                let auth = c.vrrp_instances[0].authentication.as_ref().unwrap();
                assert_eq!(auth.auth_pass, "abcdefgh");
            },
            keepalived: &[],
        },
        Case {
            name: "no-break spaces indenting a vrrp_script",
            text: format!(
                "vrrp_script chk {{\n\u{a0}\u{a0}\u{a0}\u{a0}script \"/bin/true\"\n    interval 2\n}}\n{}",
                INSTANCE.replace(
                    "    virtual_ipaddress",
                    "    track_script {\n        chk\n    }\n    virtual_ipaddress"
                )
            ),
            warnings: &[
                (1, 1, "found no `script` in `vrrp_script chk`"),
                (2, 1, "found U+00A0 (no-break space) in `script"),
            ],
            check: |c| {
                assert!(c.vrrp_scripts.is_empty());
                assert!(c.vrrp_instances[0].track_script.is_empty());
            },
            keepalived: &[
                (2, "Unknown keyword", 2),
                (4, "No script set for vrrp_script chk - removing", 1),
                (9, "track script chk not found, ignoring", 1),
            ],
        },
        Case {
            name: "empty static_ipaddress and static_routes, as OpenWrt writes them",
            text: format!("static_ipaddress {{\n}}\nstatic_routes {{}}\n{INSTANCE}"),
            warnings: &[],
            check: |c| assert_eq!(c.vrrp_instances.len(), 1),
            keepalived: &[],
        },
        Case {
            name: "a rule without preference, and one without action",
            text: format!(
                "static_rules {{\n    from 10.1.0.0/16 table 100\n    from 10.2.0.0/16 priority 5\n}}\n{INSTANCE}"
            ),
            warnings: &[
                (2, 5, "keepalived gives it 16384"),
                (3, 5, "keepalived ignores this rule"),
            ],
            check: |c| {
                let p: Vec<u32> = c.static_rules.iter().map(|r| r.priority).collect();
                assert_eq!(p, [16384]);
            },
            keepalived: &[
                (2, "Rule has no preference specified - setting to 16384", 2),
                (3, "No action specified for rule - ignoring", 3),
            ],
        },
        Case {
            name: "a route with the deprecated gw",
            text: format!("static_routes {{\n    10.9.0.0/16 gw 10.0.0.1 dev eth0\n}}\n{INSTANCE}"),
            warnings: &[(2, 17, "keepalived reads the deprecated `gw` as `via`")],
            check: |c| assert_eq!(c.static_routes[0].via, Some("10.0.0.1".parse().unwrap())),
            keepalived: &[(2, "\"gw\" for routes is deprecated", 2)],
        },
        Case {
            name: "an empty virtual_server_group",
            text: format!("virtual_server_group web {{\n}}\n{INSTANCE}"),
            warnings: &[(1, 1, "keepalived removes the group")],
            check: |c| assert!(c.virtual_server_groups.is_empty()),
            keepalived: &[(2, "virtual server group web has no entries - removing", 1)],
        },
        Case {
            name: "a missing `{` after virtual_server",
            text: "virtual_server 10.0.0.1 80\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n    \
                   real_server 10.0.0.2 80 {\n    }\n}\nvirtual_server 10.0.0.1 443 {\n    lb_algo mh\n    \
                   lb_kind DR\n    protocol TCP\n}\n"
                .into(),
            warnings: &[(1, 1, "found `virtual_server 10.0.0.1 80` without `{`")],
            check: |c| {
                let vs: Vec<(u16, usize)> = c
                    .virtual_servers
                    .iter()
                    .map(|vs| (vs.port, vs.real_servers.len()))
                    .collect();
                assert_eq!(vs, [(80, 1), (443, 0)]);
            },
            keepalived: &[(2, "Missing '{' at beginning of configuration block", 1)],
        },
        Case {
            name: "misspelt top-level blocks",
            text: format!(
                "bal_defs {{\n    router_id x\n}}\nvvrp_script chk {{\n    script /bin/true\n}}\n{INSTANCE}"
            ),
            warnings: &[
                (1, 1, "unknown block `bal_defs` at the top level (did you mean `global_defs`?)"),
                (4, 1, "unknown block `vvrp_script` at the top level (did you mean `vrrp_script`?)"),
            ],
            check: |c| {
                assert_eq!(c.global_defs.router_id, None);
                assert!(c.vrrp_scripts.is_empty());
            },
            keepalived: &[
                (1, "Unknown keyword 'bal_defs'", 1),
                (4, "Unknown keyword 'vvrp_script'", 4),
            ],
        },
        Case {
            name: "a second vrrp_instance of one name",
            text: format!(
                "{INSTANCE}{}",
                INSTANCE.replace("virtual_router_id 51", "virtual_router_id 52")
            ),
            warnings: &[(8, 1, "found a second `vrrp_instance VI_1` (first at test.conf:1:1)")],
            check: |c| {
                assert_eq!(c.vrrp_instances.len(), 1);
                assert_eq!(c.vrrp_instances[0].virtual_router_id, 51);
            },
            keepalived: &[(8, "vrrp instance VI_1 already defined", 8)],
        },
        Case {
            name: "instances listed outside group { } in a sync group",
            text: format!("vrrp_sync_group VG1 {{\n    VI_1\n}}\n{INSTANCE}"),
            warnings: &[(1, 1, "found VI_1 in `vrrp_sync_group VG1` outside `group { }`")],
            check: |c| assert!(c.vrrp_sync_groups.is_empty()),
            keepalived: &[
                (2, "Unknown keyword 'VI_1'", 1),
                (0, "Sync group VG1 has no virtual router(s). removing", 1),
            ],
        },
        Case {
            name: "a keyword keepalived does not know",
            text: INSTANCE.replace("    interface eth0\n", "    interface eth0\n    priorty 150\n"),
            warnings: &[(3, 5, "unknown keyword `priorty` in vrrp_instance VI_1")],
            check: |c| assert_eq!(c.vrrp_instances[0].priority, 100),
            keepalived: &[(3, "Unknown keyword 'priorty'", 3)],
        },
        Case {
            name: "an include that matches no file",
            text: format!("include /nonexistent/xlb/*.conf\n{INSTANCE}"),
            warnings: &[(1, 9, "keepalived's `include` reads on without it")],
            check: |c| assert_eq!(c.vrrp_instances.len(), 1),
            keepalived: &[],
        },
    ]
}

fn strict() -> LoadOptions {
    LoadOptions {
        strict: true,
        ..LoadOptions::default()
    }
}

#[test]
fn each_slip_is_read_as_keepalived_reads_it_with_one_warning() {
    for case in cases() {
        let loaded = match lb_config::parse_str(&case.text, "test.conf") {
            Ok(l) => l,
            Err(e) => panic!("{}: should load:\n{e}", case.name),
        };
        let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            loaded.warnings.len(),
            case.warnings.len(),
            "{}: {warnings:#?}",
            case.name
        );
        for (w, (line, col, words)) in loaded.warnings.iter().zip(case.warnings) {
            assert_eq!((w.line, w.col), (*line, *col), "{}: {w}", case.name);
            assert!(w.message.contains(words), "{}: {w}", case.name);
        }
        (case.check)(&loaded.config);
        // And the effective config prints and reads back.
        let printed = loaded.config.to_keepalived_string();
        let again = lb_config::parse_str(&printed, "printed.conf").expect("printed config reads");
        assert_eq!(loaded.config, again.config, "{}", case.name);

        // --strict: the same places, as errors.
        match lb_config::parse_str_with(&case.text, "test.conf", &strict()) {
            Ok(_) => assert!(
                case.warnings.is_empty(),
                "{}: loads with --strict",
                case.name
            ),
            Err(e) => {
                let at: Vec<(u32, u32)> = e.errors().map(|d| (d.line, d.col)).collect();
                let expected: Vec<(u32, u32)> =
                    case.warnings.iter().map(|(l, c, _)| (*l, *c)).collect();
                assert_eq!(at, expected, "{}: {e}", case.name);
                assert!(
                    e.errors()
                        .all(|d| d.message.ends_with("(refused by --strict)"))
                );
            }
        }
    }
}

#[test]
fn lb_kind_keepalived_does_not_know_is_one_warning_saying_nat_follows() {
    for (line, col, text) in [(3, 13, "    lb_kind dr\n"), (3, 5, "    lb-kind DR\n")] {
        let conf =
            format!("virtual_server 10.0.0.1 80 {{\n    lb_algo mh\n{text}    protocol TCP\n}}\n");
        // keepalived forwards this service with NAT, and so does xlb, saying so once.
        let l = parse_ok(&conf);
        assert_eq!(l.config.virtual_servers[0].lb_kind, LbKind::Nat);
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        let d = &l.warnings[0];
        assert_eq!((d.line, d.col), (line, col), "{d}");
        assert!(d.message.contains("keepalived ignores"), "{d}");
        assert!(
            d.message
                .contains("so its default lb_kind NAT applies (replies must come back through"),
            "{d}"
        );
        assert!(
            d.message
                .ends_with("write `lb_kind DR` if direct routing was meant"),
            "{d}"
        );
        // With a valid lb_kind too, the slip is only what keepalived ignores.
        let l = parse_ok(&conf.replace("    protocol TCP", "    lb_kind DR\n    protocol TCP"));
        assert_eq!(l.config.virtual_servers[0].lb_kind, LbKind::Dr);
        assert!(
            l.warnings.iter().any(|w| w.line == line),
            "{:?}",
            l.warnings
        );
    }
}

#[test]
fn ignored_keywords_say_why_and_refused_ones_what_instead() {
    let l = parse_ok(&format!(
        "global_defs {{\n    lvs_sync_daemon eth0 VI_1\n    notification_email {{\n        a@b\n    \
         }}\n}}\n{INSTANCE}"
    ));
    let why: Vec<&str> = l.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        why[0].starts_with("`lvs_sync_daemon` is ignored by xlb: "),
        "{why:?}"
    );
    assert!(why[0].contains("Maglev"), "{why:?}");
    assert!(why[1].contains("Prometheus"), "{why:?}");
    // A multicast group xlb does not use would split the routers.
    let e = parse_err(&format!(
        "global_defs {{\n    vrrp_mcast_group4 224.0.0.19\n}}\n{INSTANCE}"
    ));
    assert!(
        only_error(&e).message.contains("expected 224.0.0.18"),
        "{e}"
    );
    let e = parse_err(&INSTANCE.replace(
        "    interface eth0\n",
        "    interface eth0\n    track_bfd {\n    }\n",
    ));
    assert!(
        only_error(&e)
            .message
            .contains("track_script, track_interface, track_file and track_process"),
        "{e}"
    );
}

#[test]
fn keepalived_complains_where_xlb_warns() {
    let dir = TempDir::new("keepalived");
    for (i, case) in cases().iter().enumerate() {
        let path = dir.write(&format!("case{i}.conf"), &case.text);
        let Some(said) = keepalived_config_test(&path, &[]) else {
            eprintln!("keepalived is not installed: skipping the comparison with it");
            return;
        };
        let xlb = match lb_config::parse_str(&case.text, "test.conf") {
            Ok(l) => l.warnings,
            Err(e) => e.diagnostics,
        };
        for (line, words, xlb_line) in case.keepalived {
            let at = format!("Line {line}) ");
            let found = said
                .iter()
                .any(|l| l.contains(words) && (*line == 0 || l.contains(&at)));
            assert!(
                found,
                "{}: keepalived does not say {words:?} at line {line}: {said:#?}",
                case.name
            );
            assert!(
                xlb.iter().any(|d| d.line == *xlb_line),
                "{}: keepalived says {words:?}, xlb says nothing at line {xlb_line}: {xlb:?}",
                case.name
            );
        }
    }
}
