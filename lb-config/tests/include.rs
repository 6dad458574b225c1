//! `include`: globs relative to the including file, in name order, at any
//! level; a pattern that matches nothing is skipped with a warning as
//! keepalived's `include` skips it (an error with `includea` and the other
//! checking variants, or `--strict`); cycles are errors, not hangs.

mod common;

use common::*;

#[test]
fn glob_include_relative_to_the_including_file() {
    // Loaded from another working directory on purpose: paths follow the file.
    let l = load_ok(&fixture("include/keepalived.conf"));
    let c = &l.config;
    assert_eq!(c.global_defs.router_id.as_deref(), Some("inc-01"));
    assert_eq!(c.vrrp_scripts[0].name, "chk");
    assert_eq!(c.vrrp_instances[0].virtual_router_id, 7);
    let rs: Vec<String> = c.virtual_servers[0]
        .real_servers
        .iter()
        .map(|r| r.address.to_string())
        .collect();
    assert_eq!(
        rs,
        vec!["10.1.0.11", "10.1.0.12"],
        "in name order, inside the block"
    );
    let names: Vec<String> = l
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            "keepalived.conf",
            "10-scripts.conf",
            "20-instance.conf",
            "real-1.conf",
            "real-2.conf"
        ]
    );
}

#[test]
fn diagnostics_in_included_files_name_that_file() {
    let dir = std::env::temp_dir().join(format!("lb-config-inc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.conf"), "include sub.conf\n").unwrap();
    std::fs::write(
        dir.join("sub.conf"),
        "\nvrrp_instance X {\n    priority 300\n}\n",
    )
    .unwrap();
    let e = load_err(&dir.join("main.conf"));
    let d = e.errors().find(|d| d.message.contains("priority")).unwrap();
    assert!(d.file.ends_with("sub.conf"), "{d}");
    assert_eq!((d.line, d.col), (3, 14));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn include_cycle_is_an_error_not_a_hang() {
    let e = load_err(&fixture("include-cycle/a.conf"));
    let d = only_error(&e);
    assert!(d.file.ends_with("b.conf"), "{d}");
    assert_eq!((d.line, d.col), (1, 9));
    assert!(d.message.contains("include cycle"), "{d}");

    let e = load_err(&fixture("include-cycle/self.conf"));
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (2, 9));
}

#[test]
fn missing_includes_are_skipped_as_keepalived_does() {
    let path = fixture("include-missing/keepalived.conf");
    let l = load_ok(&path);
    assert_eq!(l.config.global_defs.router_id.as_deref(), Some("x"));
    let at: Vec<(u32, u32)> = l.warnings.iter().map(|d| (d.line, d.col)).collect();
    assert_eq!(at, vec![(4, 9), (5, 9)], "{:?}", l.warnings);
    assert!(l.warnings.iter().all(|d| {
        d.message.starts_with("found no file matching")
            && d.message
                .contains("keepalived's `include` reads on without it")
    }));
    let strict = lb_config::LoadOptions {
        strict: true,
        ..Default::default()
    };
    let e = lb_config::load_with(&path, &strict).unwrap_err();
    assert_eq!(error_positions(&e), vec![(4, 9), (5, 9)], "{e}");
    assert!(
        e.errors()
            .all(|d| d.message.ends_with("(refused by --strict)"))
    );
}

#[test]
fn checking_include_variants_make_a_missing_file_an_error() {
    for keyword in ["includea", "includer", "includem", "includew", "includeb"] {
        let e = parse_err(&format!("{keyword} /nonexistent/dir/*.conf\n"));
        let d = only_error(&e);
        assert_eq!((d.line, d.col), (1, keyword.len() as u32 + 2));
        assert!(
            d.message.contains(&format!("(`{keyword}` checks it)")),
            "{d}"
        );
    }
}

#[test]
fn brace_patterns_and_names_with_spaces() {
    let dir = TempDir::new("braces");
    let main = dir.write(
        "main.conf",
        "include conf.d/{b,a}.conf  # b before a, as glob(3) with GLOB_BRACE\ninclude my file.conf\n",
    );
    for (name, weight) in [("a", "1"), ("b", "2")] {
        dir.write(
            &format!("conf.d/{name}.conf"),
            &format!("vrrp_script chk_{name} {{\n    script /bin/true\n    weight {weight}\n}}\n"),
        );
    }
    dir.write("my file.conf", "global_defs {\n    router_id spaced\n}\n");
    let l = load_ok(&main);
    let names: Vec<&str> = l
        .config
        .vrrp_scripts
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["chk_b", "chk_a"]);
    assert_eq!(l.config.global_defs.router_id.as_deref(), Some("spaced"));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn missing_main_file_is_an_error() {
    let e = load_err(&fixture("does-not-exist.conf"));
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (0, 0));
    assert!(
        d.to_string()
            .contains("does-not-exist.conf: error: cannot read file"),
        "{d}"
    );
}

#[test]
fn diagnostics_follow_reading_order_across_files() {
    let dir = std::env::temp_dir().join(format!("lb-config-order-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("zz")).unwrap();
    std::fs::write(
        dir.join("zz/main.conf"),
        "bogus_block {\n}\ninclude ../aa.conf\nlast_block {\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("aa.conf"), "middle_block {\n}\n").unwrap();
    // Unknown blocks are warnings, keepalived ignoring them; errors with --strict.
    let strict = lb_config::LoadOptions {
        strict: true,
        ..Default::default()
    };
    let e = lb_config::load_with(&dir.join("zz/main.conf"), &strict).unwrap_err();
    let order: Vec<(String, u32)> = e
        .errors()
        .map(|d| (d.file.rsplit('/').next().unwrap().to_string(), d.line))
        .collect();
    assert_eq!(
        order,
        vec![
            ("main.conf".into(), 1),
            ("main.conf".into(), 4),
            ("aa.conf".into(), 1)
        ]
    );
    std::fs::remove_dir_all(&dir).ok();
}
