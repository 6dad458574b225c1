//! Connection tracking end to end. A SYN is placed by weighted Maglev; every later packet of the
//! connection follows the backend its SYN went to while that backend is alive, whatever the
//! table says by then. So long-lived connections survive a backend being added, a weight change
//! and a drain, and a failed backend moves only the flows it had.

use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use xlb_tests::lab::{converse, xlb_binary};
use xlb_tests::{
    lab::{DrLab, ECHO_PORT, EchoConn, http_get_from},
    placement::Placement,
};

/// The config: the VIP on port 80 (HTTP) and on the echo port, over the same members.
fn config(lab: &DrLab, members: &[(usize, u32)]) -> String {
    lab.virtual_server(80, "", members, |_| String::new())
        + &lab.virtual_server(ECHO_PORT, "", members, |_| String::new())
}

fn placement(lab: &DrLab, port: u16, members: &[(usize, u32)]) -> Placement {
    let members: Vec<(Ipv4Addr, u16, u32)> = members
        .iter()
        .map(|(i, w)| (lab.backend_ips[*i], port, *w))
        .collect();
    Placement::new(lab.vip, port, &members)
}

fn name_of(lab: &DrLab, ip: Option<Ipv4Addr>) -> String {
    ip.and_then(|ip| lab.backend_of(ip))
        .map(|i| lab.backend_name(i))
        .unwrap_or_else(|| "none".into())
}

/// How many of `ports` two placements send to different backends.
fn moved(lab: &DrLab, a: &Placement, b: &Placement, ports: &[u16]) -> usize {
    ports
        .iter()
        .filter(|p| a.backend(lab.client_ip, **p) != b.backend(lab.client_ip, **p))
        .count()
}

fn counts<'a>(names: impl Iterator<Item = &'a String>) -> BTreeMap<&'a str, usize> {
    let mut c = BTreeMap::new();
    for n in names {
        *c.entry(n.as_str()).or_default() += 1;
    }
    c
}

const CONNECTIONS: usize = 200;

/// `n` new echo connections: (client port, backend named).
fn fresh_echo(lab: &DrLab, n: usize) -> Vec<(u16, String)> {
    let addr = SocketAddr::from((lab.vip, ECHO_PORT));
    lab.client
        .enter(move || -> anyhow::Result<Vec<(u16, String)>> {
            (0..n)
                .map(|_| {
                    let mut c = EchoConn::connect(addr, Duration::from_secs(2))?;
                    Ok((c.local_port, c.ask()?))
                })
                .collect()
        })
        .unwrap()
        .unwrap()
}

fn fresh_http(lab: &DrLab, n: usize) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for a in lab.get_many(n, Duration::from_secs(2)).unwrap() {
        *c.entry(a.unwrap_or_else(|e| format!("error: {e:#}")))
            .or_default() += 1;
    }
    c
}

#[test]
fn long_lived_connections_keep_their_backend() {
    let mut lab = DrLab::new("ct", 4).expect("building the lab");
    let xlb = xlb_binary();
    let three = [(0, 1), (1, 1), (2, 1)];
    let four = [(0, 1), (1, 1), (2, 1), (3, 1)];
    let weighted = [(0, 3), (1, 1), (2, 1), (3, 1)];
    let drained = [(0, 3), (1, 0), (2, 1), (3, 1)];
    let path = lab.workdir.join("xlb.conf");
    fs::write(&path, config(&lab, &three)).unwrap();
    lab.start_director(&xlb, &path).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready) = mpsc::channel();
    let addr = SocketAddr::from((lab.vip, ECHO_PORT));
    let flag = stop.clone();
    let talker = lab
        .client
        .spawn(move || {
            converse(
                addr,
                CONNECTIONS,
                Duration::from_secs(2),
                (900, Duration::from_secs(90)),
                ready_tx,
                flag,
            )
        })
        .unwrap();
    // Stops the talker however this test ends.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_guard = StopOnDrop(stop.clone());
    ready
        .recv_timeout(Duration::from_secs(30))
        .expect("the 200 connections did not open");
    let settle = Duration::from_millis(1000);
    thread::sleep(settle);

    // A fourth backend; new connections reach it once xlb has resolved its MAC.
    let resolved = lab.log_count("backend 10.99.0.14 is at");
    lab.reload_with(&xlb, &path, &config(&lab, &four)).unwrap();
    lab.wait_for_log(
        "backend 10.99.0.14 is at",
        resolved,
        Duration::from_secs(10),
    )
    .unwrap();
    thread::sleep(Duration::from_millis(300));
    let http = fresh_http(&lab, 60);
    let echo = fresh_echo(&lab, 60);
    thread::sleep(settle);

    // A weight change, then b2 drained to weight 0.
    lab.reload_with(&xlb, &path, &config(&lab, &weighted))
        .unwrap();
    thread::sleep(settle);
    lab.reload_with(&xlb, &path, &config(&lab, &drained))
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let http_drained = fresh_http(&lab, 60);
    thread::sleep(settle);

    stop.store(true, Ordering::Relaxed);
    let talk = talker
        .join()
        .expect("the talker panicked")
        .unwrap()
        .unwrap();

    // The model: where Maglev alone puts each flow, checked against where the kernel put it.
    let p3 = placement(&lab, ECHO_PORT, &three);
    let p4 = placement(&lab, ECHO_PORT, &four);
    let pw = placement(&lab, ECHO_PORT, &weighted);
    let pd = placement(&lab, ECHO_PORT, &drained);
    let mispredicted: Vec<String> = talk
        .ports
        .iter()
        .zip(&talk.first)
        .filter(|(p, name)| name_of(&lab, p3.backend(lab.client_ip, **p)) != **name)
        .map(|(p, name)| format!("port {p}: {name}"))
        .collect();
    assert!(
        mispredicted.is_empty(),
        "lb-common's Maglev disagrees with the data plane: {mispredicted:?}"
    );
    let fresh_mispredicted: Vec<String> = echo
        .iter()
        .filter(|(p, name)| name_of(&lab, p4.backend(lab.client_ip, *p)) != *name)
        .map(|(p, name)| format!("port {p}: {name}"))
        .collect();
    assert!(
        fresh_mispredicted.is_empty(),
        "with four backends, new connections went elsewhere than Maglev says: {fresh_mispredicted:?}"
    );

    let n = talk.ports.len();
    let pct = |k: usize| 100.0 * k as f64 / n as f64;
    let by_add = moved(&lab, &p3, &p4, &talk.ports);
    let by_weight = moved(&lab, &p3, &pw, &talk.ports);
    let by_drain = moved(&lab, &p3, &pd, &talk.ports);
    eprintln!(
        "{n} long-lived connections, {} exchanges each, per backend {:?}",
        talk.rounds,
        counts(talk.first.iter())
    );
    eprintln!(
        "Maglev alone would have moved {by_add} ({:.1}%) when b4 was added, {by_weight} ({:.1}%) \
         after the weight change, {by_drain} ({:.1}%) after the drain",
        pct(by_add),
        pct(by_weight),
        pct(by_drain)
    );
    eprintln!(
        "after b4 was added, new GETs per backend {http:?}, new echo connections {:?}",
        counts(echo.iter().map(|(_, n)| n))
    );
    eprintln!("after b2 was drained, new GETs per backend {http_drained:?}");

    assert!(
        talk.broken.is_empty(),
        "{} of {n} long-lived connections broke or changed backend:\n{}\nxlb log:\n{}",
        talk.broken.len(),
        talk.broken[..talk.broken.len().min(10)].join("\n"),
        lab.log()
    );
    assert!(
        talk.rounds >= 30,
        "too few exchanges to mean anything: {}",
        talk.rounds
    );
    assert!(
        pct(by_add) > 10.0,
        "adding a backend moves too few flows ({by_add}) for this test to tell"
    );
    assert!(
        http.get("b4").is_some_and(|k| *k > 0),
        "new GETs do not reach the added b4: {http:?}"
    );
    assert!(
        echo.iter().any(|(_, name)| name == "b4"),
        "new echo connections do not reach the added b4: {echo:?}"
    );
    assert!(
        http.keys().all(|k| k.starts_with('b')),
        "new GETs failed: {http:?}"
    );
    assert!(
        !http_drained.contains_key("b2") && http_drained.keys().all(|k| k.starts_with('b')),
        "after the drain: {http_drained:?}"
    );
}

#[test]
fn a_failed_backend_moves_only_its_own_flows() {
    const FLOWS: u16 = 300;
    const FIRST_PORT: u16 = 20000;
    let mut lab = DrLab::new("ctfail", 3).expect("building the lab");
    let xlb = xlb_binary();
    let members = [(0, 1), (1, 1), (2, 1)];
    let path = lab.workdir.join("xlb.conf");
    let check = "TCP_CHECK {\n    delay_loop 1\n    connect_timeout 1\n    retry 1\n    delay_before_retry 1\n}";
    fs::write(
        &path,
        lab.virtual_server(80, "", &members, |_| check.to_string()),
    )
    .unwrap();
    lab.start_director(&xlb, &path).unwrap();

    let client = lab.client_ip;
    let vip = SocketAddr::from((lab.vip, 80));
    let ports: Vec<u16> = (FIRST_PORT..FIRST_PORT + FLOWS).collect();
    let round = |lab: &DrLab| -> Vec<String> {
        let ports = ports.clone();
        lab.client
            .enter(move || {
                ports
                    .iter()
                    .map(|p| {
                        let local = SocketAddr::from((client, *p));
                        match http_get_from(Some(local), vip, Duration::from_secs(3)) {
                            (_, Ok(name)) => name,
                            (_, Err(e)) => format!("error from port {p}: {e:#}"),
                        }
                    })
                    .collect()
            })
            .unwrap()
    };
    let before = round(&lab);
    assert!(
        before.iter().all(|n| n.starts_with('b')),
        "{:?}",
        before
            .iter()
            .filter(|n| !n.starts_with('b'))
            .collect::<Vec<_>>()
    );
    let p3 = placement(&lab, 80, &members);
    let p2 = placement(&lab, 80, &[(0, 1), (2, 1)]);
    let mispredicted = ports
        .iter()
        .zip(&before)
        .filter(|(p, n)| name_of(&lab, p3.backend(client, **p)) != **n)
        .count();
    assert_eq!(
        mispredicted, 0,
        "lb-common's Maglev disagrees with the data plane"
    );

    // b2 fails its check; once xlb has taken it out, the same flows again.
    let victim = "b2";
    lab.stop_http(1).unwrap();
    lab.wait_for_log(
        "Removing service [10.99.0.12]:tcp:80 from VS [10.99.0.100]:tcp:80",
        0,
        Duration::from_secs(10),
    )
    .unwrap();
    thread::sleep(Duration::from_millis(300));
    let after = round(&lab);
    assert!(
        after.iter().all(|n| n.starts_with('b') && n != victim),
        "{:?}\nxlb log:\n{}",
        after
            .iter()
            .filter(|n| !n.starts_with('b') || *n == victim)
            .collect::<Vec<_>>(),
        lab.log()
    );

    let n = f64::from(FLOWS);
    let share = before.iter().filter(|b| *b == victim).count();
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    let maglev = moved(&lab, &p3, &p2, &ports);
    let share_pct = 100.0 * share as f64 / n;
    let changed_pct = 100.0 * changed as f64 / n;
    eprintln!(
        "{FLOWS} flows from fixed ports: {victim} had {share} ({share_pct:.1}%); after it failed \
         {changed} ({changed_pct:.1}%) changed backend (Maglev's own prediction: {maglev}); per \
         backend before {:?}, after {:?}",
        counts(before.iter()),
        counts(after.iter())
    );
    assert!(
        changed_pct <= share_pct + 2.0,
        "{changed_pct:.1}% of the flows moved; only {victim}'s {share_pct:.1}% (+2) should have"
    );
}
