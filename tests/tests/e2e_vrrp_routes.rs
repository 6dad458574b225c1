//! keepalived's routes, rules and static addresses end to end: two xlb directors, d1 (priority
//! 150, tracking a file) and d2 (priority 100), each with static_ipaddress, static_routes and
//! static_rules, and an instance with virtual_routes, virtual_rules and
//! virtual_ipaddress_excluded. The static ones are on both directors from the start, whatever
//! their state; the virtual ones (the excluded address too) are on the MASTER only, and follow
//! it when d1 steps down (the file lowers its priority), comes back, and stops. A clean stop removes the static ones too, as keepalived does. Each check reads
//! `ip route` / `ip rule` inside the director's namespace.

use std::{fs, time::Duration};

use xlb_tests::ha_lab::{HaLab, VrrpSpec};
use xlb_tests::lab::{wait_for, xlb_binary};

const HIGH: u8 = 150;
const LOW: u8 = 100;

/// What the kernel shows, as `ip` prints it: (command, a line that must be there).
fn virtual_entries(vip: &str) -> Vec<(Vec<String>, String)> {
    let v = |args: &[&str], line: &str| {
        (
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            line.to_string(),
        )
    };
    vec![
        v(
            &["ip", "route", "show", "table", "101"],
            "10.50.0.0/24 via 10.99.0.10 dev eth0",
        ),
        v(&["ip", "route", "show"], "blackhole 10.51.0.0/24"),
        v(&["ip", "-6", "route", "show"], "blackhole 2001:db8:51::/48"),
        v(
            &["ip", "-6", "rule", "show"],
            "1004:\tfrom 2001:db8:53::/48 lookup 101",
        ),
        v(&["ip", "route", "show"], "10.52.0.0/24 dev eth0 "),
        v(
            &["ip", "route", "show"],
            &format!("scope link src {vip} metric 5"),
        ),
        v(
            &["ip", "-4", "addr", "show", "dev", "eth0"],
            "inet 10.99.0.150/32",
        ),
        v(
            &["ip", "rule", "show"],
            "1001:\tfrom 10.53.0.0/24 lookup 101",
        ),
        v(
            &["ip", "rule", "show"],
            "1002:\tfrom all fwmark 0x7 lookup 101",
        ),
        v(
            &["ip", "rule", "show"],
            "1003:\tfrom all to 10.54.0.0/24 iif eth0 lookup 101",
        ),
    ]
}

fn static_entries(d: usize) -> Vec<(Vec<String>, String)> {
    let v = |args: &[&str], line: String| {
        (args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), line)
    };
    vec![
        v(
            &["ip", "-4", "addr", "show", "dev", "eth0"],
            format!("inet 10.77.0.{}/32", d + 1),
        ),
        v(
            &["ip", "route", "show", "table", "100"],
            "blackhole 10.60.0.0/24".into(),
        ),
        v(
            &["ip", "rule", "show"],
            "1000:\tfrom 10.62.0.0/24 lookup 100".into(),
        ),
    ]
}

const VIRTUAL: &str = "virtual_ipaddress_excluded {
10.99.0.150/32 dev eth0
}
virtual_routes {
10.50.0.0/24 via 10.99.0.10 dev eth0 table 101
blackhole 2001:db8:51::/48
blackhole 10.51.0.0/24
10.52.0.0/24 dev eth0 src VIP metric 5 scope link
}
virtual_rules {
from 10.53.0.0/24 table 101 priority 1001
fwmark 7 table 101 priority 1002
to 10.54.0.0/24 iif eth0 table 101 priority 1003
from 2001:db8:53::/48 table 101 priority 1004
}";

fn statics(d: usize) -> String {
    format!(
        "static_ipaddress {{\n    10.77.0.{}/32 dev eth0\n}}\n\
         static_routes {{\n    blackhole 10.60.0.0/24 table 100\n}}\n\
         static_rules {{\n    from 10.62.0.0/24 table 100 priority 1000\n}}\n",
        d + 1
    )
}

/// The routing tables and rules of director `d` as `ip` prints them.
fn kernel_tables(lab: &HaLab, d: usize) -> Vec<String> {
    [
        vec!["ip", "rule", "show"],
        vec!["ip", "-6", "rule", "show"],
        vec!["ip", "route", "show"],
        vec!["ip", "-6", "route", "show"],
        vec!["ip", "route", "show", "table", "100"],
        vec!["ip", "route", "show", "table", "101"],
    ]
    .iter()
    .map(|argv| {
        let shown = lab.directors[d].run(argv).unwrap();
        // The director's own address (in its subnet's route) is the one difference.
        let shown = shown.replace(&format!("src {} ", lab.director_ips[d]), "src SELF ");
        format!("{}:\n{shown}", argv.join(" "))
    })
    .collect()
}

/// Which of `entries` director `d` shows now.
fn present(lab: &HaLab, d: usize, entries: &[(Vec<String>, String)]) -> Vec<bool> {
    entries
        .iter()
        .map(|(cmd, line)| {
            let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
            lab.directors[d]
                .run(&argv)
                .map(|out| out.lines().any(|l| l.trim_end().contains(line.as_str())))
                .unwrap_or(false)
        })
        .collect()
}

/// Waits (bounded) until director `d` shows all of `entries` (`want`) or none of them.
fn expect(lab: &HaLab, d: usize, entries: &[(Vec<String>, String)], want: bool, what: &str) {
    let started = std::time::Instant::now();
    let done = wait_for(Duration::from_secs(10), || {
        present(lab, d, entries).iter().all(|p| *p == want)
    });
    if done.is_err() {
        let shown: Vec<String> = [
            vec!["ip", "route", "show", "table", "all"],
            vec!["ip", "rule", "show"],
            vec!["ip", "addr", "show", "dev", "eth0"],
        ]
        .iter()
        .map(|argv| lab.directors[d].run(argv).unwrap_or_default())
        .collect();
        panic!(
            "{what}: d{} should {}show {:?}, shows {:?}\n{}\nlog:\n{}",
            d + 1,
            if want { "" } else { "not " },
            entries.iter().map(|e| &e.1).collect::<Vec<_>>(),
            present(lab, d, entries),
            shown.join("\n"),
            lab.log(d)
        );
    }
    eprintln!(
        "{what}: d{} {} {} entries within {:?}",
        d + 1,
        if want { "shows" } else { "no longer shows" },
        entries.len(),
        started.elapsed()
    );
}

#[test]
fn virtual_routes_and_rules_follow_the_master_static_ones_stay() {
    let spec = VrrpSpec::v3("0.1");
    let mut lab = HaLab::new("vroute", 2, 1, &xlb_binary()).expect("building the lab");
    let vip = lab.vip.to_string();
    let virtual_block = VIRTUAL.replace("VIP", &vip);
    let drain = lab.workdir.join("drain");
    let tracking = format!(
        "track_file drain {{\n    file \"{}\"\n    weight -100\n}}\n",
        drain.display()
    );
    let d1 = VrrpSpec {
        extra: format!("track_file {{\ndrain\n}}\n{virtual_block}"),
        ..spec.clone()
    };
    let d2 = VrrpSpec {
        extra: virtual_block.clone(),
        ..spec.clone()
    };
    lab.start_xlb(
        0,
        &format!("{tracking}{}{}", statics(0), lab.xlb_config(0, &d1, HIGH)),
    )
    .unwrap();
    lab.start_xlb(1, &format!("{}{}", statics(1), lab.xlb_config(1, &d2, LOW)))
        .unwrap();
    lab.wait_master(0, Duration::from_secs(10)).unwrap();
    let virtuals = virtual_entries(&vip);

    // From the start: static ones on both, virtual ones on the MASTER only.
    for d in 0..2 {
        expect(&lab, d, &static_entries(d), true, "at start");
    }
    expect(&lab, 0, &virtuals, true, "d1 MASTER");
    expect(&lab, 1, &virtuals, false, "d2 BACKUP");

    // d1 steps down (150 - 100 < 100): the virtual ones move to d2, the static ones stay.
    fs::write(&drain, "1\n").unwrap();
    lab.wait_master(1, Duration::from_secs(10)).unwrap();
    expect(&lab, 1, &virtuals, true, "d2 MASTER");
    expect(&lab, 0, &virtuals, false, "d1 BACKUP");
    for d in 0..2 {
        expect(&lab, d, &static_entries(d), true, "after a handover");
    }

    // d1 takes over again (preempt).
    fs::write(&drain, "0\n").unwrap();
    lab.wait_master(0, Duration::from_secs(10)).unwrap();
    expect(&lab, 0, &virtuals, true, "d1 MASTER again");
    expect(&lab, 1, &virtuals, false, "d2 BACKUP again");

    // A clean stop of d1: d2 takes the virtual ones; d1 keeps nothing, static ones included.
    lab.sigterm(0).unwrap();
    lab.wait_exit(0, Duration::from_secs(10)).unwrap();
    lab.wait_master(1, Duration::from_secs(10)).unwrap();
    expect(&lab, 1, &virtuals, true, "d2 MASTER after d1 stopped");
    expect(&lab, 0, &virtuals, false, "d1 stopped");
    expect(&lab, 0, &static_entries(0), false, "d1 stopped");
    expect(&lab, 1, &static_entries(1), true, "d2 still running");

    // A reload of the MASTER d2 that drops its static rule and moves a virtual route: what the
    // new config no longer has is removed, the rest stays, the new route is added.
    let moved = virtual_block.replace("10.50.0.0/24", "10.55.0.0/24");
    let without_rule = statics(1).replace(
        "static_rules {\n    from 10.62.0.0/24 table 100 priority 1000\n}\n",
        "",
    );
    let d2_moved = VrrpSpec {
        extra: moved,
        ..spec.clone()
    };
    let answer = lab
        .reload_xlb(
            1,
            &format!("{without_rule}{}", lab.xlb_config(1, &d2_moved, LOW)),
        )
        .unwrap();
    eprintln!("reload: {answer}");
    assert!(
        answer.contains("static rule from 10.62.0.0/24 priority 1000 table 100 removed"),
        "{answer}"
    );
    assert!(
        answer.contains("settings of VRRP instance VI_1 changed"),
        "{answer}"
    );
    let statics_d2 = static_entries(1);
    expect(&lab, 1, &statics_d2[..2], true, "kept by the reload");
    expect(&lab, 1, &statics_d2[2..], false, "dropped by the reload");
    let (table_101, rest) = virtuals.split_at(1);
    expect(&lab, 1, table_101, false, "the route moved away");
    expect(&lab, 1, rest, true, "the other virtual ones stay");
    let new_route = vec![(
        vec![
            "ip".into(),
            "route".into(),
            "show".into(),
            "table".into(),
            "101".into(),
        ],
        "10.55.0.0/24 via 10.99.0.10 dev eth0".to_string(),
    )];
    expect(&lab, 1, &new_route, true, "the route moved here");
    lab.wait_master(1, Duration::from_secs(5)).unwrap();
}

/// The same blocks given to keepalived: d1 runs xlb, d2 keepalived 2.2. Whichever is MASTER
/// shows the same `ip route` / `ip rule` lines, and both show their static ones: xlb reads
/// these keywords as keepalived does.
#[test]
fn keepalived_adds_the_same_routes_and_rules_as_xlb() {
    let spec = VrrpSpec::v3("0.1");
    let mut lab = HaLab::new("vroutek", 2, 1, &xlb_binary()).expect("building the lab");
    let vip = lab.vip.to_string();
    let virtual_block = VIRTUAL.replace("VIP", &vip);
    let drain = lab.workdir.join("drain");
    let tracking = format!(
        "track_file drain {{\n    file \"{}\"\n    weight -100\n}}\n",
        drain.display()
    );
    let d1 = VrrpSpec {
        extra: format!("track_file {{\ndrain\n}}\n{virtual_block}"),
        ..spec.clone()
    };
    let d2 = VrrpSpec {
        extra: virtual_block.clone(),
        ..spec.clone()
    };
    lab.start_xlb(
        0,
        &format!("{tracking}{}{}", statics(0), lab.xlb_config(0, &d1, HIGH)),
    )
    .unwrap();
    lab.start_keepalived(
        1,
        &format!("{}{}", statics(1), lab.keepalived_config(1, &d2, LOW)),
    )
    .unwrap();
    lab.wait_master(0, Duration::from_secs(10)).unwrap();
    let virtuals = virtual_entries(&vip);
    for d in 0..2 {
        expect(&lab, d, &static_entries(d), true, "at start");
    }
    expect(&lab, 0, &virtuals, true, "xlb MASTER");
    expect(&lab, 1, &virtuals, false, "keepalived BACKUP");
    let under_xlb = kernel_tables(&lab, 0);

    fs::write(&drain, "1\n").unwrap();
    lab.wait_master(1, Duration::from_secs(10)).unwrap();
    expect(&lab, 1, &virtuals, true, "keepalived MASTER");
    expect(&lab, 0, &virtuals, false, "xlb BACKUP");
    // Every route and rule, not only those looked for: the same, line for line.
    let under_keepalived = kernel_tables(&lab, 1);
    assert_eq!(under_xlb, under_keepalived);

    fs::write(&drain, "0\n").unwrap();
    lab.wait_master(0, Duration::from_secs(10)).unwrap();
    expect(&lab, 0, &virtuals, true, "xlb MASTER again");
    expect(&lab, 1, &virtuals, false, "keepalived BACKUP again");
}
