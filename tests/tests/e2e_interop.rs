//! xlb and keepalived 2.2 as peers on one VRRP instance: version 2 with `auth_type PASS` and
//! version 3, multicast and unicast, xlb as the first MASTER and keepalived as the first MASTER.
//! Each case: the two agree on one MASTER (the only VIP holder, the other BACKUP) and traffic
//! goes through it; kill -9 of the MASTER, the peer takes over and serves; the killed node comes
//! back and preempts (higher priority); SIGTERM of the MASTER, the peer takes over. Neither side
//! may drop or complain about the other's adverts.
//!
//! Traffic through an xlb MASTER is answered by a backend (b1, b2); through a keepalived MASTER
//! (VRRP only here) by the director's own servers (d1, d2).

use std::{
    thread,
    time::{Duration, Instant},
};

use xlb_tests::ha_lab::{Daemon, HaLab, VrrpSpec};
use xlb_tests::lab::xlb_binary;

const HIGH: u8 = 150;
const LOW: u8 = 100;

/// Whether `answer` came through director `d` running `daemon`.
fn through(lab: &HaLab, d: usize, daemon: Daemon, answer: &str) -> bool {
    match daemon {
        Daemon::Xlb => answer.starts_with('b'),
        Daemon::Keepalived => answer == lab.director_name(d),
    }
}

/// GETs until one is answered through `d` (at most `limit`); then 20 more must all be.
fn assert_traffic_through(lab: &HaLab, d: usize, daemon: Daemon, limit: Duration, when: &str) {
    let deadline = Instant::now() + limit;
    let mut last;
    loop {
        match lab.get(Duration::from_millis(500)) {
            Ok(a) if through(lab, d, daemon, &a) => break,
            Ok(a) => last = format!("answered by {a}"),
            Err(e) => last = format!("{e:#}"),
        }
        assert!(
            Instant::now() < deadline,
            "{when}: no answer through {} ({}) within {limit:?}; last: {last}\nlogs:\n{}",
            lab.director_name(d),
            daemon.name(),
            lab.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let answers = lab.get_many(20, Duration::from_secs(3)).unwrap();
    let bad: Vec<_> = answers
        .iter()
        .filter(|a| !a.as_ref().is_ok_and(|a| through(lab, d, daemon, a)))
        .collect();
    assert!(
        bad.is_empty(),
        "{when}: not through {} ({}): {bad:?}\nlogs:\n{}",
        lab.director_name(d),
        daemon.name(),
        lab.logs()
    );
}

/// Log lines in which one side complains about the other's adverts.
fn complaints(lab: &HaLab, d: usize) -> Vec<String> {
    const SIGNS: [&str; 8] = [
        "VRRP packet dropped",
        "bogus",
        "nvalid",
        "mismatch",
        "not present",
        "ropping",
        "wrong",
        "error",
    ];
    lab.all_logs(d)
        .lines()
        .filter(|l| SIGNS.iter().any(|s| l.contains(s)))
        .map(str::to_string)
        .collect()
}

/// One case: d1 runs `first` at priority 150, d2 runs the other daemon at 100.
fn case(tag: &str, spec: VrrpSpec, first: Daemon) {
    let second = match first {
        Daemon::Xlb => Daemon::Keepalived,
        Daemon::Keepalived => Daemon::Xlb,
    };
    let daemons = [first, second];
    let started = Instant::now();
    let mut lab = HaLab::new(tag, 2, 2, &xlb_binary()).expect("building the lab");
    let takeover = spec.master_down_interval(LOW) + Duration::from_secs(3);

    lab.start(0, first, &spec, HIGH).unwrap();
    lab.start(1, second, &spec, LOW).unwrap();
    lab.wait_master(
        0,
        spec.master_down_interval(HIGH) * 2 + Duration::from_secs(5),
    )
    .unwrap();
    lab.wait_state(1, "BACKUP", Duration::from_secs(2)).unwrap();
    assert_traffic_through(&lab, 0, first, Duration::from_secs(3), "first MASTER");
    // Agreement holds over several adverts: the BACKUP never takes over.
    thread::sleep(spec.interval() * 4);
    assert_eq!(lab.entered(1, "MASTER"), 0, "{}", lab.logs());
    assert_eq!(lab.holders().unwrap(), vec![0]);

    // kill -9 of the MASTER: the peer takes over and serves.
    let killed = lab.kill9(0).unwrap();
    let took_over = lab.wait_state(1, "MASTER", takeover).unwrap();
    assert!(lab.holders().unwrap().contains(&1));
    assert_traffic_through(&lab, 1, second, Duration::from_secs(3), "after kill -9");
    eprintln!(
        "{tag}: {} MASTER {:?} after kill -9 of {}",
        second.name(),
        took_over - killed,
        first.name()
    );
    if first == Daemon::Xlb {
        // Once the lease is over, the dead xlb's data plane stops answering ARP for the VIP
        // (a killed keepalived's kernel keeps answering: that is not checked).
        thread::sleep(
            (killed + spec.master_down_interval(HIGH) + Duration::from_millis(200))
                .saturating_duration_since(Instant::now()),
        );
        assert_eq!(
            lab.arp_responders(Duration::from_millis(300)).unwrap(),
            vec![1]
        );
    }

    // The killed node comes back and preempts.
    lab.start(0, first, &spec, HIGH).unwrap();
    lab.wait_master(0, takeover).unwrap();
    lab.wait_state(1, "BACKUP", Duration::from_secs(2)).unwrap();
    assert_traffic_through(&lab, 0, first, Duration::from_secs(3), "after the restart");
    assert_eq!(
        lab.arp_responders(Duration::from_millis(300)).unwrap(),
        vec![0]
    );
    thread::sleep(spec.interval() * 4);
    assert_eq!(lab.holders().unwrap(), vec![0]);
    assert_eq!(lab.state(1).as_deref(), Some("BACKUP"));

    // A clean stop of the MASTER: priority 0, the peer takes over at once (skew time). An xlb
    // MASTER keeps forwarding until it hears the peer.
    let masters = lab.entered(1, "MASTER");
    let stopped = lab.sigterm(0).unwrap();
    let took_over = lab
        .wait_for_log(1, "Entering MASTER STATE", masters, takeover)
        .unwrap();
    // The priority 0 advert was understood: the peer took over after its skew time, not a
    // Master_Down_Interval.
    assert!(
        took_over - stopped < spec.master_down_interval(LOW) - spec.interval(),
        "{} took over {:?} after SIGTERM of {}\n{}",
        second.name(),
        took_over - stopped,
        first.name(),
        lab.logs()
    );
    let status = lab
        .wait_exit(0, spec.master_down_interval(LOW) + Duration::from_secs(5))
        .unwrap();
    assert!(status.success(), "{} exited with {status}", first.name());
    lab.wait_master(1, takeover).unwrap();
    assert_traffic_through(&lab, 1, second, Duration::from_secs(3), "after SIGTERM");
    if first == Daemon::Xlb {
        assert!(
            lab.log(0)
                .contains("new MASTER 10.99.0.3 heard: withdrawing"),
            "{}",
            lab.logs()
        );
    }

    for (d, daemon) in daemons.iter().enumerate() {
        let c = complaints(&lab, d);
        assert!(
            c.is_empty(),
            "{} on {} complains: {c:#?}\nlogs:\n{}",
            daemon.name(),
            lab.director_name(d),
            lab.logs()
        );
    }
    eprintln!("{tag}: {:?}", started.elapsed());
}

#[test]
fn v2_auth_multicast_xlb_master() {
    case("i2mx", VrrpSpec::v2(1, Some("s3cret")), Daemon::Xlb);
}

#[test]
fn v2_auth_multicast_keepalived_master() {
    case("i2mk", VrrpSpec::v2(1, Some("s3cret")), Daemon::Keepalived);
}

#[test]
fn v2_auth_unicast_xlb_master() {
    case(
        "i2ux",
        VrrpSpec::v2(1, Some("s3cret")).unicast(),
        Daemon::Xlb,
    );
}

#[test]
fn v2_auth_unicast_keepalived_master() {
    case(
        "i2uk",
        VrrpSpec::v2(1, Some("longer-than-8")).unicast(),
        Daemon::Keepalived,
    );
}

#[test]
fn v3_multicast_xlb_master() {
    case("i3mx", VrrpSpec::v3("0.2"), Daemon::Xlb);
}

#[test]
fn v3_multicast_keepalived_master() {
    case("i3mk", VrrpSpec::v3("0.2"), Daemon::Keepalived);
}

#[test]
fn v3_unicast_xlb_master() {
    case("i3ux", VrrpSpec::v3("0.2").unicast(), Daemon::Xlb);
}

#[test]
fn v3_unicast_keepalived_master() {
    case("i3uk", VrrpSpec::v3("0.2").unicast(), Daemon::Keepalived);
}
