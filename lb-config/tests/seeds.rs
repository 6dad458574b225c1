//! The keepalived.conf examples of the seed blog posts, extracted verbatim
//! (annotations included) into tests/fixtures/seeds/<seed>-<n>.conf.
//!
//! seed 000 (public cloud VIP + nginx) shows no keepalived.conf; 001 shows two
//! (node01 with LVS DR, node04's vrrp_instance), both annotated with `//`;
//! 002 and 004 show one each (nginx + VRRP, no LVS); 003 shows one LVS NAT
//! config whose numbers were lost when it was published.

mod common;

use common::*;
use lb_config::{LbAlgo, LbKind, VrrpState};

const S001: &str = "seeds/001_784bf6597049cfbe";
const S002: &str = "seeds/002_04ceca6c18e8ec77";
const S003: &str = "seeds/003_ccb64b949c0315f7";
const S004: &str = "seeds/004_b3eb95e07408a62b";

#[test]
fn fixtures_are_verbatim_extracts_of_the_seeds() {
    // shared/ sits beside the repository; it is not part of it, the fixtures are.
    let beside = fixtures().join("../../../../shared/seeds");
    let Some(seeds) = [beside.as_path(), std::path::Path::new("/work/shared/seeds")]
        .into_iter()
        .find(|p| p.is_dir())
    else {
        return;
    };
    for conf in files("seeds", ".conf") {
        let name = conf.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".clean.") || name.contains(".repaired.") {
            continue;
        }
        let seed = name.split('-').next().unwrap();
        let text = std::fs::read(seeds.join(format!("{seed}.txt"))).unwrap();
        let extract = std::fs::read(&conf).unwrap();
        let body = &extract[..extract.len() - 1]; // the extract adds the final newline
        assert!(
            text.windows(body.len()).any(|w| w == body),
            "{name} is not a verbatim extract"
        );
    }
}

#[test]
fn seed_001_node01_annotations_are_errors_at_their_exact_place() {
    let e = load_err(&fixture(&format!("{S001}-1.conf")));
    // Every `//` annotation, and nothing else.
    assert_eq!(
        error_positions(&e),
        vec![(24, 44), (28, 37), (36, 39), (41, 26), (48, 38)],
        "{e}"
    );
    for d in e.errors() {
        assert!(d.message.contains("keepalived has no `//` comments"), "{d}");
    }
    let first = e.errors().next().unwrap().to_string();
    assert!(
        first.ends_with(
            "001_784bf6597049cfbe-1.conf:24:44: error: found `// 配置vip`, expected end of line: \
             keepalived has no `//` comments, start a comment with `!` or `#`"
        ),
        "{first}"
    );
}

#[test]
fn seed_001_node01_cleaned_loads_as_dr() {
    let l = load_ok(&fixture(&format!("{S001}-1.clean.conf")));
    let c = &l.config;
    assert_eq!(c.global_defs.router_id.as_deref(), Some("LVS_DEVEL"));
    let vi = &c.vrrp_instances[0];
    assert_eq!(vi.state, VrrpState::Master);
    assert_eq!(vi.virtual_router_id, 51);
    assert_eq!(vi.virtual_ipaddress[0].label.as_deref(), Some("eth0:3"));
    assert_eq!(vi.virtual_ipaddress[0].prefix_len, 24);
    let vs = &c.virtual_servers[0];
    assert_eq!(vs.lb_kind, LbKind::Dr);
    assert_eq!(vs.lb_algo, LbAlgo::Rr);
    assert!(!vs.hash_on_source_only());
    assert_eq!(vs.real_servers.len(), 2);
    let timing = vs.real_servers[0].checkers[0]
        .timing()
        .expect("a polled checker");
    assert_eq!(timing.retry, 3); // nb_get_retry, keepalived's old name for retry
    // One warning for the scheduler, at the lb_algo line.
    let algo: Vec<_> = l
        .warnings
        .iter()
        .filter(|w| w.message.contains("Maglev"))
        .collect();
    assert_eq!(algo.len(), 1);
    assert_eq!((algo[0].line, algo[0].col), (30, 5));
    // nat_mask (obsolete) and the mail settings are warnings only.
    assert!(
        l.warnings
            .iter()
            .any(|w| w.line == 32 && w.message.contains("nat_mask"))
    );
    assert!(
        l.warnings
            .iter()
            .any(|w| w.line == 2 && w.message.contains("ignored by xlb"))
    );
}

#[test]
fn seed_001_node04_annotations_are_errors_and_cleaned_loads() {
    let e = load_err(&fixture(&format!("{S001}-2.conf")));
    assert_eq!(error_positions(&e), vec![(2, 18), (5, 18)], "{e}");
    let l = load_ok(&fixture(&format!("{S001}-2.clean.conf")));
    let vi = &l.config.vrrp_instances[0];
    assert_eq!(vi.state, VrrpState::Backup);
    assert_eq!(vi.priority, 50);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn seed_002_aliyun_havip_loads() {
    let l = load_ok(&fixture(&format!("{S002}-1.conf")));
    let c = &l.config;
    let chk = c.vrrp_script("chk_nginx").unwrap();
    assert_eq!(chk.script, "/etc/keepalived/ck_ng.sh");
    assert_eq!(
        (chk.interval, chk.weight, chk.fall, chk.rise),
        (2, -5, 3, 2)
    );
    let vi = c.vrrp_instance("VI_1").unwrap();
    assert_eq!(vi.mcast_src_ip, Some("192.168.1.1".parse().unwrap()));
    assert_eq!((vi.virtual_router_id, vi.priority), (55, 101));
    assert_eq!(vi.authentication.as_ref().unwrap().auth_pass, "aliyun");
    assert_eq!(vi.track_script[0].name, "chk_nginx");
    assert_eq!(vi.track_script[0].weight, -5); // the script's weight
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn seed_004_nginx_keepalived_loads() {
    let l = load_ok(&fixture(&format!("{S004}-1.conf")));
    let vi = l.config.vrrp_instance("VI_1").unwrap();
    assert_eq!(vi.interface, "enp0s3");
    assert_eq!(vi.advert_int_centis, 200);
    assert_eq!(
        l.config.vrrp_script("chk_svr").unwrap().script,
        "killall -0 node"
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

/// The post lost every number when it was published: keywords are left
/// without values and `protocol TCP` ran into the first `real_server` line.
/// Each damaged line gets its own error; nothing panics.
#[test]
fn seed_003_without_numbers_reports_every_damaged_line() {
    let e = load_err(&fixture(&format!("{S003}-1.conf")));
    let lines: Vec<u32> = e.errors().map(|d| d.line).collect();
    assert_eq!(
        lines,
        vec![
            10, // smtp_connect_timeout
            25, 26, 28,
            31, // VI_To_client: virtual_router_id, priority, advert_int, auth_pass
            41, 42, 44, 47, // VI_To_server: the same
            54, // virtual_server without port
            55, // delay_loop
            59, // `protocol TCP real_server 10.0.0.102 {`: two statements run together
            60, 62, // weight, connect_timeout
            65, 67, // the second real_server's weight, connect_timeout
        ],
        "{e}"
    );
    // `persistence_timeout` alone is valid: keepalived reads it as 360 s. And
    // `} real_server 10.0.0.103 {` (line 64) is valid: keepalived splits lines at braces.
    let run_together = e.errors().find(|d| d.line == 59).unwrap();
    assert_eq!(run_together.col, 14);
    assert!(
        run_together
            .message
            .contains("`real_server` on the line of `protocol TCP`")
    );
    let vrid = e.errors().find(|d| d.line == 25).unwrap();
    assert_eq!(
        vrid.message,
        "found end of line after `virtual_router_id`, expected an integer 1..255"
    );
}

/// The same config with plausible numbers put back: the two-armed NAT director, which
/// loads: a sync group of the client-side VIP and the real servers' gateway, NAT with
/// persistence and TCP_CHECK.
#[test]
fn seed_003_repaired_is_a_nat_director() {
    let l = load_ok(&fixture(&format!("{S003}-1.repaired.conf")));
    let c = &l.config;
    assert_eq!(c.vrrp_sync_groups[0].group.len(), 2);
    let vs = &c.virtual_servers[0];
    assert_eq!(vs.lb_kind, lb_config::LbKind::Nat);
    assert!(vs.persistence_timeout > 0);
    assert_eq!(vs.real_servers.len(), 2);
}
