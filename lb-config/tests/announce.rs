//! `xlb_announce` and its settings: read, printed back, and refused where a VIP would be served
//! both by VRRP and by announcement, or announced without a virtual_server.

mod common;

use common::*;

const SERVICE: &str = "\
virtual_server 10.96.0.100 80 {
    lb_algo mh
    lb_kind DR
    protocol TCP
    real_server 10.99.0.11 80 {
    }
}
";

#[test]
fn announce_settings_are_read_with_defaults_and_printed_back() {
    let l = parse_ok(&format!(
        "global_defs {{\n    xlb_announce 10.96.0.100\n}}\n{SERVICE}"
    ));
    let g = &l.config.global_defs;
    assert_eq!(g.xlb_announce.len(), 1);
    assert_eq!(g.xlb_announce_table, 100);
    assert_eq!(g.xlb_announce_drain.to_string(), "3");
    assert_eq!(g.xlb_bird_socket, "/run/bird/bird.ctl");

    let text = format!(
        "global_defs {{\n    xlb_announce 10.96.0.100\n    xlb_announce_table 4242\n    \
         xlb_announce_drain 1.5\n    xlb_bird_socket /tmp/b.ctl\n}}\n{SERVICE}"
    );
    let l = parse_ok(&text);
    let g = &l.config.global_defs;
    assert_eq!(g.xlb_announce_table, 4242);
    assert_eq!(g.xlb_announce_drain.to_string(), "1.5");
    assert_eq!(g.xlb_bird_socket, "/tmp/b.ctl");
    let printed = l.config.to_keepalived_string();
    assert!(printed.contains("xlb_announce 10.96.0.100\n"), "{printed}");
    assert_eq!(parse_ok(&printed).config, l.config);
}

#[test]
fn announce_mistakes_are_located() {
    for (line, col, expected) in [
        ("xlb_announce 10.96.0.300", 18, "an IPv4 or IPv6 address"),
        (
            "xlb_announce_table 254",
            24,
            "253 to 255 are the kernel's default, main and local)",
        ),
        ("xlb_announce_drain 61", 24, "60"),
    ] {
        let e = parse_err(&format!("global_defs {{\n    {line}\n}}\n{SERVICE}"));
        let d = only_error(&e);
        assert_eq!((d.line, d.col), (2, col), "{d}");
        assert!(d.message.contains(expected), "{d}");
    }
    let e = parse_err(&format!(
        "global_defs {{\n    xlb_announce 10.96.0.100 10.96.0.7\n}}\n{SERVICE}"
    ));
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (2, 30), "{d}");
    assert!(
        d.message
            .contains("expected the address of a virtual_server"),
        "{d}"
    );
}

#[test]
fn a_vip_is_served_by_vrrp_or_by_announcement_not_both() {
    let text = format!(
        "global_defs {{\n    xlb_announce 10.96.0.100\n}}\n\
         vrrp_instance VI_1 {{\n    interface eth0\n    virtual_router_id 51\n    \
         virtual_ipaddress {{\n        10.96.0.100\n    }}\n}}\n{SERVICE}"
    );
    let e = parse_err(&text);
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (2, 18), "{d}");
    assert!(
        d.message.contains("vrrp_instance VI_1 (at test.conf:4:1)"),
        "{d}"
    );
    assert!(d.message.contains("not both"), "{d}");
}
