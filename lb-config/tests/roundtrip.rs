//! The effective configuration printed in keepalived syntax reads back as the
//! same `Config`, for every fixture that loads.

mod common;

use std::path::PathBuf;

use common::*;

fn valid_fixtures() -> Vec<PathBuf> {
    let mut all = files("valid", ".conf");
    all.extend(files("seeds", ".clean.conf"));
    all.push(fixture("seeds/002_04ceca6c18e8ec77-1.conf"));
    all.push(fixture("seeds/004_b3eb95e07408a62b-1.conf"));
    all.push(fixture("include/keepalived.conf"));
    all
}

#[test]
fn printed_config_reads_back_identical() {
    let all = valid_fixtures();
    assert!(all.len() >= 6);
    for path in all {
        let original = load_ok(&path).config;
        let printed = original.to_keepalived_string();
        let reread = match lb_config::parse_str(&printed, "printed.conf") {
            Ok(l) => l.config,
            Err(e) => panic!(
                "{}: printed config does not parse:\n{e}\n{printed}",
                path.display()
            ),
        };
        assert_eq!(original, reread, "{}:\n{printed}", path.display());
        // Printing is a fixed point too.
        assert_eq!(printed, reread.to_string(), "{}", path.display());
    }
}

#[test]
fn full_fixture_has_keepalived_defaults_filled_in() {
    let c = load_ok(&fixture("valid/full.conf")).config;
    let api = c.vrrp_script("chk_api").unwrap();
    assert_eq!(
        (api.interval, api.timeout, api.weight, api.fall, api.rise),
        (1, 3, 0, 1, 1)
    );
    let nginx = c.vrrp_script("chk_nginx").unwrap();
    assert_eq!(nginx.timeout, 2, "timeout defaults to interval");

    let v4 = c.vrrp_instance("VI_4").unwrap();
    assert_eq!(v4.version, 2);
    assert_eq!(v4.garp_master_delay, 10, "from vrrp_garp_master_delay");
    assert_eq!(v4.garp_master_repeat, 5);
    assert_eq!(v4.garp_master_refresh, 60);
    assert_eq!(
        v4.virtual_ipaddress[1].dev, "eth0",
        "dev defaults to the interface"
    );
    assert_eq!(v4.virtual_ipaddress[1].prefix_len, 32);
    assert_eq!(v4.track_script[0].weight, -20, "the script's weight");
    assert_eq!(v4.track_script[1].weight, 10, "overridden in track_script");
    assert_eq!(v4.track_interface[0].weight, None);
    assert_eq!(
        v4.notify_fault.as_ref().unwrap().command,
        "/etc/keepalived/fault.sh now"
    );

    let v6 = c.vrrp_instance("VI_6").unwrap();
    assert_eq!((v6.version, v6.advert_int_centis), (3, 5));
    assert_eq!(v6.advert_int(), std::time::Duration::from_millis(50));
    assert!(v6.nopreempt);
    assert_eq!(v6.preempt_delay, 30);
    assert_eq!(v6.family(), lb_config::AddressFamily::Ipv6);

    let vs = &c.virtual_servers[0];
    assert_eq!(vs.persistence_timeout, 360, "bare persistence_timeout");
    assert!(vs.hash_on_source_only());
    let rs3 = &vs.real_servers[2];
    assert_eq!(rs3.port, 80, "port defaults to the virtual server's");
    let lb_config::Checker::Misc(misc) = &rs3.checkers[0] else {
        panic!()
    };
    assert_eq!(misc.timing.retry, 2, "virtual-server retry");
    let rs2 = &vs.real_servers[1];
    assert!(!rs2.inhibit_on_failure);
    let lb_config::Checker::Tcp(tcp) = &rs2.checkers[0] else {
        panic!()
    };
    assert_eq!(tcp.connection.connect_ip, rs2.address);
    assert_eq!(tcp.connection.connect_port, 8080);
    assert_eq!(
        tcp.connection.connect_timeout,
        lb_config::Timer::from_secs(2),
        "real-server default"
    );
    let lb_config::Checker::Http(ssl) = &rs2.checkers[1] else {
        panic!()
    };
    assert!(ssl.tls);
    assert_eq!(
        ssl.timing.delay_before_retry,
        lb_config::Timer::from_secs(3),
        "HTTP default"
    );
    assert_eq!(ssl.urls[0].virtualhost.as_deref(), Some("api.example.com"));
    assert_eq!(ssl.urls[0].status_code[0].from, 200);
    assert_eq!(ssl.urls[0].status_code[0].to, 299);

    let v6vs = &c.virtual_servers[1];
    assert_eq!(v6vs.delay_loop, lb_config::Timer::from_secs(60));
    assert_eq!(v6vs.protocol, lb_config::Protocol::Udp);
    assert!(v6vs.hash_on_source_only(), "sh hashes on the source");
}

#[test]
fn serializes_to_json() {
    let c = load_ok(&fixture("valid/full.conf")).config;
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["vrrp_instances"][0]["state"], "MASTER");
    assert_eq!(
        json["vrrp_instances"][1]["virtual_ipaddress"][0]["address"],
        "fe80::1"
    );
    assert_eq!(json["virtual_servers"][0]["lb_kind"], "DR");
    assert_eq!(json["virtual_servers"][0]["delay_loop"], 6.0);
    assert_eq!(
        json["virtual_servers"][0]["real_servers"][0]["checkers"][0]["type"],
        "HTTP_GET"
    );
    let errors = lb_config::parse_str("garp_group g {\n}\n", "x.conf").unwrap_err();
    let json = serde_json::to_value(&errors).unwrap();
    assert_eq!(json["diagnostics"][0]["severity"], "error");
    assert_eq!(json["diagnostics"][0]["line"], 1);
}
