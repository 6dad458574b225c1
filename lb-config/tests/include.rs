//! `include`: globs relative to the including file, in name order, at any
//! level; missing files and cycles are errors, not hangs.

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
fn missing_includes_are_errors() {
    let e = load_err(&fixture("include-missing/keepalived.conf"));
    assert_eq!(error_positions(&e), vec![(4, 9), (5, 9)], "{e}");
    assert!(
        e.errors()
            .all(|d| d.message.starts_with("found no file matching"))
    );
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
    let e = load_err(&dir.join("zz/main.conf"));
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
