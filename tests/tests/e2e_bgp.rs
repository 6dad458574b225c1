//! Active-active directors behind ECMP, announced through BIRD 2: a router running BIRD with
//! `merge paths`, two directors each running xlb (DR, `xlb_announce`) and BIRD, three
//! backends, a client behind the router.
//!
//! (a) the router's route to the VIP has both directors as next hops and 200 long-lived
//! connections spread over both; (b) `kill -9` of one xlb takes its next hop away within
//! [`KILL_BOUND`] and none of the 200 connections breaks or changes backend (the survivor places
//! the dead director's flows by Maglev, with the same table); (c) a director whose real servers
//! fall below quorum withdraws, and announces again when they recover; (d) SIGTERM withdraws,
//! waits, then stops: no request of a loop fails.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use xlb_tests::{
    bgp_lab::{ANNOUNCE_TABLE, BgpLab, HTTP6_PORT, VIP6},
    lab::{ECHO_PORT, converse, start_load_from, wait_for, xlb_binary},
};

/// From `kill -9` of xlb to the router's route without that director: the TUN device goes with
/// the process, the kernel flushes its routes, BIRD withdraws over BGP and the router's BIRD
/// rewrites the multipath route. Measured at tens of milliseconds; the bound leaves room for a
/// loaded machine.
const KILL_BOUND: Duration = Duration::from_secs(1);
/// A director's quorum lost (MISC_CHECK every second, no retry) to its next hop gone.
const QUORUM_BOUND: Duration = Duration::from_secs(5);
/// How long a clean stop waits after withdrawing (`xlb_announce_drain`).
const DRAIN: &str = "2";
const CONNECTIONS: usize = 200;

/// Stops the talker however the test ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn active_active_directors_behind_ecmp() {
    let mut lab = BgpLab::new("bgp", 2, 3, &xlb_binary()).expect("building the lab");
    let (d1, d2) = (lab.director_ips[0], lab.director_ips[1]);
    let metrics_address: SocketAddr = "127.0.0.1:9650".parse().unwrap();
    lab.xlb_args = vec!["--metrics-address".to_string(), metrics_address.to_string()];
    lab.start_xlb(0, DRAIN).unwrap();
    lab.start_xlb(1, DRAIN).unwrap();
    let both = lab
        .wait_next_hops(&[d1, d2], Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\nd1:\n{}\nd2:\n{}", lab.log(0), lab.log(1)));
    let _ = both;

    // Both directors build the same tables: the checksums they report agree.
    let s1 = lab.xlb_status(0).unwrap();
    let s2 = lab.xlb_status(1).unwrap();
    let sums = |s: &lb_userspace::status::Status| -> Vec<Option<u32>> {
        s.services.iter().map(|svc| svc.table_checksum).collect()
    };
    assert_eq!(sums(&s1), sums(&s2), "the directors' Maglev tables differ");
    assert!(sums(&s1).iter().all(Option::is_some));
    let announce = s1.announce.as_ref().expect("announce status");
    assert!(announce.vips.iter().all(|v| v.announced), "{announce:?}");
    let session = announce
        .bird
        .iter()
        .find(|p| p.protocol == "BGP")
        .unwrap_or_else(|| panic!("no BGP protocol in {announce:?}"));
    assert!(session.established(), "{session:?}");
    let text = lab.xlb_command(0, &["status"]).unwrap();
    assert!(text.contains("Announced through BIRD"), "{text}");
    assert!(
        text.contains(&format!("{} announced since", lab.vip)),
        "{text}"
    );
    eprintln!("{text}");

    let metrics = lab.metrics(1, metrics_address).unwrap();
    for line in [
        format!("xlb_vip_announced{{address=\"{}\"}} 1", lab.vip),
        "xlb_bgp_session_established{protocol=\"router1\"} 1".to_string(),
        "xlb_bird_up 1".to_string(),
    ] {
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }

    // (a) 200 long-lived connections, spread over both directors.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
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
    ready
        .recv_timeout(Duration::from_secs(30))
        .expect("the 200 connections did not open");
    let before = [lab.forwarded(0).unwrap(), lab.forwarded(1).unwrap()];
    thread::sleep(Duration::from_secs(1));
    let after = [lab.forwarded(0).unwrap(), lab.forwarded(1).unwrap()];
    eprintln!(
        "packets forwarded in 1 s: d1 {}, d2 {}",
        after[0] - before[0],
        after[1] - before[1]
    );
    assert!(
        after[0] > before[0] + 100,
        "d1 carries little: {before:?} -> {after:?}"
    );
    assert!(
        after[1] > before[1] + 100,
        "d2 carries little: {before:?} -> {after:?}"
    );

    // (b) kill -9 of d1's xlb: its next hop goes; every connection keeps its backend.
    let killed = lab.kill9(0).unwrap();
    let gone = lab.wait_next_hops(&[d2], Duration::from_secs(10)).unwrap();
    let withdrawal = gone.duration_since(killed);
    eprintln!("kill -9: the router dropped d1's next hop {withdrawal:?} after the kill");
    assert!(withdrawal <= KILL_BOUND, "withdrawn after {withdrawal:?}");
    // Every connection now goes through d2: the dead director's data plane (still attached,
    // its counters pinned) sees nothing more.
    thread::sleep(Duration::from_millis(500));
    let before = [lab.forwarded(0).unwrap(), lab.forwarded(1).unwrap()];
    thread::sleep(Duration::from_secs(2));
    let after = [lab.forwarded(0).unwrap(), lab.forwarded(1).unwrap()];
    eprintln!(
        "after the kill, packets forwarded in 2 s: d1 {}, d2 {}",
        after[0] - before[0],
        after[1] - before[1]
    );
    assert_eq!(
        after[0], before[0],
        "the killed director still gets traffic"
    );
    assert!(
        after[1] > before[1] + 200,
        "d2 carries little: {before:?} -> {after:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let talked = talker
        .join()
        .expect("talker")
        .expect("setns")
        .expect("conversations");
    eprintln!(
        "{} connections, {} rounds, {} broken",
        talked.ports.len(),
        talked.rounds,
        talked.broken.len()
    );
    assert!(
        talked.broken.is_empty(),
        "{} of {CONNECTIONS} connections broke: {:?}",
        talked.broken.len(),
        talked.broken
    );
    let spread: std::collections::BTreeMap<&String, usize> =
        talked.first.iter().fold(Default::default(), |mut m, b| {
            *m.entry(b).or_default() += 1;
            m
        });
    eprintln!("connections per backend: {spread:?}");

    // d1 comes back once its pins are cleaned up and xlb starts again, announcing only after
    // its first health checks.
    lab.cleanup(0).unwrap();
    lab.start_xlb(0, DRAIN).unwrap();
    lab.wait_next_hops(&[d1, d2], Duration::from_secs(30))
        .unwrap();
    let log = lab.log(0);
    let first_check = log.find("Misc check for").expect("a check logged");
    let announced = log
        .find("10.96.0.100 announced")
        .expect("announcement logged");
    assert!(
        first_check < announced,
        "announced before any check:\n{log}"
    );

    // (c) d1's real servers fail its checks: it withdraws; they pass again: it returns.
    lab.set_healthy(0, false).unwrap();
    let failed = Instant::now();
    let withdrawn = lab.wait_next_hops(&[d2], Duration::from_secs(15)).unwrap();
    eprintln!(
        "quorum lost: d1 withdrawn {:?} after its checks began failing",
        withdrawn - failed
    );
    assert!(withdrawn - failed <= QUORUM_BOUND);
    let s1 = lab.xlb_status(0).unwrap();
    let vip = &s1.announce.as_ref().expect("announce").vips[0];
    assert!(!vip.announced);
    let why = vip.why_not.clone().unwrap_or_default();
    assert!(why.starts_with("below quorum"), "{why}");
    lab.set_healthy(0, true).unwrap();
    let recovered = Instant::now();
    let back = lab
        .wait_next_hops(&[d1, d2], Duration::from_secs(15))
        .unwrap();
    eprintln!(
        "quorum regained: d1 announced again {:?} later",
        back - recovered
    );

    // A reload that stops announcing the VIP withdraws it; one that announces it again
    // brings it back.
    let announced = lab.xlb_config(1, DRAIN);
    let quiet = announced.replace(&format!("    xlb_announce {}\n", lab.vip), "");
    assert_ne!(quiet, announced);
    lab.reload(1, &quiet).unwrap();
    lab.wait_next_hops(&[d1], Duration::from_secs(5)).unwrap();
    lab.reload(1, &announced).unwrap();
    lab.wait_next_hops(&[d1, d2], Duration::from_secs(10))
        .unwrap();

    // Routes or the device taken away behind xlb's back come back at its next tick.
    lab.directors[1]
        .run(&["ip", "route", "flush", "table", &ANNOUNCE_TABLE.to_string()])
        .unwrap();
    wait_for(Duration::from_secs(5), || {
        lab.log(1).contains("by someone else: adding it again")
    })
    .unwrap();
    lab.wait_next_hops(&[d1, d2], Duration::from_secs(10))
        .unwrap();
    lab.directors[1]
        .run(&["ip", "link", "del", "xlbvip0"])
        .unwrap();
    wait_for(Duration::from_secs(5), || {
        lab.log(1)
            .contains("was deleted under xlb: creating it again")
    })
    .unwrap();
    lab.wait_next_hops(&[d1, d2], Duration::from_secs(10))
        .unwrap();

    // (d) SIGTERM of d1 under a request loop: withdrawn first, then stopped; nothing fails.
    let load = start_load_from(&lab.client, SocketAddr::from((lab.vip, 80))).unwrap();
    thread::sleep(Duration::from_secs(1));
    let termed = lab.sigterm(0).unwrap();
    let moved = lab.wait_next_hops(&[d2], Duration::from_secs(5)).unwrap();
    let status = lab.wait_exit(0, Duration::from_secs(20)).unwrap();
    let exited = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let answers = load.finish();
    let failed: Vec<String> = answers
        .iter()
        .filter_map(|a| a.result.as_ref().err().cloned())
        .collect();
    eprintln!(
        "SIGTERM: next hop gone after {:?}, xlb exited after {:?} ({status}); {} requests, {} failed",
        moved - termed,
        exited - termed,
        answers.len(),
        failed.len()
    );
    assert!(status.success(), "{status}");
    assert!(answers.len() > 50, "only {} requests", answers.len());
    assert!(
        failed.is_empty(),
        "{} requests failed: {failed:?}",
        failed.len()
    );
    let log = lab.log(0);
    let withdrawn_at = log
        .find("withdrawn: xlb is stopping")
        .expect("withdrawal logged");
    let detached_at = log.find("stopping: detaching").expect("detach logged");
    assert!(withdrawn_at < detached_at, "{log}");
}

/// The same over IPv6: `/128` routes in the same table, learnt by BIRD's ipv6 kernel protocol
/// and announced over IPv6 sessions; the router's route to the IPv6 VIP has both directors and
/// loses the killed one within the bound; requests over IPv6 are answered before and after.
#[test]
fn an_ipv6_vip_is_announced_and_withdrawn_with_xlb() {
    let mut lab = BgpLab::dual_stack("bgp6", 2, 3, &xlb_binary()).expect("building the lab");
    lab.start_xlb(0, DRAIN).unwrap();
    lab.start_xlb(1, DRAIN).unwrap();
    lab.wait_next_hops6(2, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\nd1:\n{}\nd2:\n{}", lab.log(0), lab.log(1)));
    let vip6: std::net::Ipv6Addr = VIP6.parse().unwrap();
    let addr = SocketAddr::from((vip6, HTTP6_PORT));
    // The lab's HTTP helpers bind IPv4; this one asks over IPv6.
    let get = |lab: &BgpLab| -> anyhow::Result<String> {
        lab.client.enter(|| -> anyhow::Result<String> {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"GET /id HTTP/1.0\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
            body.ok_or_else(|| anyhow::anyhow!("no body in {text:?}"))
        })?
    };
    let answer = get(&lab).unwrap_or_else(|e| panic!("GET over IPv6: {e:#}\nd1:\n{}", lab.log(0)));
    eprintln!("GET [{VIP6}]:{HTTP6_PORT} answered by {answer}");

    let killed = lab.kill9(0).unwrap();
    let gone = lab.wait_next_hops6(1, Duration::from_secs(10)).unwrap();
    let withdrawal = gone.duration_since(killed);
    eprintln!("kill -9: the router dropped d1's IPv6 next hop {withdrawal:?} after the kill");
    assert!(withdrawal <= KILL_BOUND, "withdrawn after {withdrawal:?}");
    for _ in 0..10 {
        get(&lab).unwrap();
    }
}
