//! Health checks end to end: a client keeps opening connections to the VIP while a backend's
//! server stops and starts again. xlb's checkers (keepalived's HTTP_GET and MISC_CHECK, with
//! keepalived's retry rules) must take a dead backend out of the Maglev table within the time
//! the check settings allow, put it back after one good check, and never let a connection to a
//! healthy backend fail. With `inhibit_on_failure` the dead backend is kept at weight 0 instead.

use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    thread,
    time::{Duration, Instant},
};

use xlb_tests::lab::xlb_binary;
use xlb_tests::{
    lab::{Answer, DrLab, ECHO_PORT, EchoConn, Load},
    placement::Placement,
};

// The check settings of every config here, in seconds.
const DELAY_LOOP: u64 = 1;
const CONNECT_TIMEOUT: u64 = 1;
const RETRY: u64 = 1;
const DELAY_BEFORE_RETRY: u64 = 1;

/// How long after its server stops a real server must be out of the table: the failure is seen
/// by the next check (within delay_loop), each of the retry+1 attempts may take connect_timeout,
/// the retries wait delay_before_retry, plus a second for everything else.
fn removal_bound() -> Duration {
    Duration::from_secs(DELAY_LOOP + (RETRY + 1) * CONNECT_TIMEOUT + RETRY * DELAY_BEFORE_RETRY + 1)
}

/// How long after its server is back a real server must be in the table again: one successful
/// check, due within delay_loop, plus a second, plus a second of margin.
fn readd_bound() -> Duration {
    Duration::from_secs(DELAY_LOOP + 1 + 1)
}

/// A connection started this long after the log line that announced a change is placed by the
/// new table: the line is logged just before the table is rewritten, and the test sees it within
/// 10 ms of polling.
const SETTLE: Duration = Duration::from_millis(300);

/// How long a failed backend stays failed once xlb has taken it out: long enough that a request
/// delayed by a SYN retransmission (1 s) leaves new connections to look at in between.
const DOWN_FOR: Duration = Duration::from_secs(2);

fn http_get_check() -> String {
    format!(
        "HTTP_GET {{
    url {{
        path /id
        status_code 200
    }}
    delay_loop {DELAY_LOOP}
    connect_timeout {CONNECT_TIMEOUT}
    retry {RETRY}
    delay_before_retry {DELAY_BEFORE_RETRY}
}}"
    )
}

fn trio(ip: impl std::fmt::Display, port: u16) -> String {
    format!("[{ip}]:tcp:{port}")
}

fn per_backend<'a>(answers: impl Iterator<Item = &'a Answer>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in answers {
        if let Ok(id) = &a.result {
            *counts.entry(id.clone()).or_default() += 1;
        }
    }
    counts
}

/// What a phase of load saw around a backend's failure.
struct Failover<'a> {
    lab: &'a DrLab,
    answers: &'a [Answer],
    /// Where SYNs went while every backend was in the table.
    before: &'a Placement,
    victim: usize,
    /// When the victim stopped passing its check (its server exited, its flag file appeared).
    failed: Instant,
    /// When the test saw xlb's log line taking it out.
    detected: Instant,
}

impl Failover<'_> {
    /// Every failed connection went to the victim (by the Maglev table it was placed with), none
    /// started once the removal was applied, and the last one started within `bound` of the
    /// failure. Returns when, after the failure, the last failed connection started.
    fn check(&self, what: &str, bound: Duration) -> Option<Duration> {
        let victim_ip = self.lab.backend_ips[self.victim];
        let failures: Vec<&Answer> = self.answers.iter().filter(|a| a.result.is_err()).collect();
        let mut last = None;
        for f in &failures {
            let port = f
                .port
                .unwrap_or_else(|| panic!("{what}: a failure without a client port: {f:?}"));
            let went_to = self.before.backend(self.lab.client_ip, port);
            assert_eq!(
                went_to,
                Some(victim_ip),
                "{what}: a connection failed that went to a healthy backend \
                 ({:?} after the failure): {f:?}\nxlb log:\n{}",
                f.started.checked_duration_since(self.failed),
                self.lab.log()
            );
            assert!(
                f.started + Duration::from_secs(1) >= self.failed,
                "{what}: a connection failed before the backend did: {f:?}"
            );
            assert!(
                f.started <= self.detected + SETTLE,
                "{what}: a connection failed {:?} after xlb logged the removal: {f:?}\nxlb log:\n{}",
                f.started.duration_since(self.detected),
                self.lab.log()
            );
            let after = f.started.saturating_duration_since(self.failed);
            last = last.max(Some(after));
        }
        eprintln!(
            "{what}: {} connections, {} failed (all placed on {}); removal logged {:?} after \
             the failure, last failed connection started {:?} after it (bound {bound:?})",
            self.answers.len(),
            failures.len(),
            self.lab.backend_name(self.victim),
            self.detected.duration_since(self.failed),
            last
        );
        // Requests that waited for a retransmission: their first SYN (or another packet) was
        // dropped. Reported, not asserted: see drop_no_backend.
        let slow: Vec<String> = self
            .answers
            .iter()
            .filter(|a| a.took >= Duration::from_millis(900))
            .map(|a| {
                let placed = a
                    .port
                    .and_then(|p| self.before.backend(self.lab.client_ip, p))
                    .and_then(|ip| self.lab.backend_of(ip))
                    .map(|i| self.lab.backend_name(i));
                format!(
                    "started {:?} after the failure, {:?} after the removal was seen, took {:?}, \
                     placed on {placed:?} before the removal: {:?}",
                    a.started.checked_duration_since(self.failed),
                    a.started.checked_duration_since(self.detected),
                    a.took,
                    a.result
                )
            })
            .collect();
        if !slow.is_empty() {
            eprintln!("{what}: slow requests:\n  {}", slow.join("\n  "));
        }
        assert!(
            self.detected.duration_since(self.failed) <= bound,
            "{what}: removal took {:?}, more than {bound:?}\nxlb log:\n{}",
            self.detected.duration_since(self.failed),
            self.lab.log()
        );
        if let Some(last) = last {
            assert!(last <= bound, "{what}: failures went on for {last:?}");
        }
        last
    }

    /// No connection started between `from` and the moment the test saw the log line of the
    /// victim's return (`back`) reached the victim. That line is written before the table
    /// changes, but may be seen up to a poll (10 ms) later: the window ends 100 ms before it.
    fn assert_avoided(&self, what: &str, from: Instant, back: Instant) {
        let name = self.lab.backend_name(self.victim);
        let to = back - Duration::from_millis(100);
        let inside = |a: &&Answer| a.started >= from && a.started < to;
        let window = per_backend(self.answers.iter().filter(inside));
        let offenders: Vec<String> = self
            .answers
            .iter()
            .filter(inside)
            .filter(|a| a.result.as_ref().is_ok_and(|n| *n == name))
            .map(|a| {
                format!(
                    "port {:?} started {:?} after the removal was seen, {:?} before the return was",
                    a.port,
                    a.started.duration_since(self.detected),
                    back.duration_since(a.started)
                )
            })
            .collect();
        assert!(
            offenders.is_empty(),
            "{what}: {name} still got new connections after its removal: {window:?}\n{}\nxlb log:\n{}",
            offenders.join("\n"),
            self.lab.log()
        );
        let slow: Vec<String> = self
            .answers
            .iter()
            .filter(|a| a.took > Duration::from_millis(500))
            .map(|a| {
                format!(
                    "port {:?} started {:?} after the removal was seen, took {:?}: {:?}",
                    a.port,
                    a.started.checked_duration_since(self.detected),
                    a.took,
                    a.result
                )
            })
            .collect();
        assert!(
            window.len() >= 2,
            "{what}: too little traffic after the removal: {window:?}; slow requests:\n{}\nxlb log:\n{}",
            slow.join("\n"),
            self.lab.log()
        );
    }

    /// Connections started after `from` reached the victim again.
    fn assert_back(&self, what: &str, from: Instant) {
        let name = self.lab.backend_name(self.victim);
        let after = per_backend(self.answers.iter().filter(|a| a.started >= from));
        assert!(
            after.get(&name).is_some_and(|n| *n > 0),
            "{what}: {name} gets no connections after it was added back: {after:?}\nxlb log:\n{}",
            self.lab.log()
        );
        eprintln!("{what}: after {name} came back, connections per backend: {after:?}");
    }
}

/// Packets the data plane dropped because the table named a backend that was not valid.
fn no_backend_drops(lab: &DrLab, xlb: &std::path::Path) -> u64 {
    let stats = lab.stats(xlb).unwrap();
    DrLab::counter(&stats, "drop_no_backend").unwrap_or_else(|| panic!("no counter in {stats}"))
}

fn finish(load: Load, what: &str) -> Vec<Answer> {
    let answers = load.finish();
    assert!(
        answers.len() > 100,
        "{what}: too little traffic ({} connections)",
        answers.len()
    );
    answers
}

/// Waits for `n` more log lines containing `needle` (bounded by `limit` in all).
fn wait_lines(lab: &DrLab, needle: &str, before: usize, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    for k in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        lab.wait_for_log(needle, before + k, left)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}

#[test]
fn dead_backends_leave_the_table_and_come_back() {
    let mut lab = DrLab::new("health", 3).expect("building the lab");
    let xlb = xlb_binary();
    let vip = lab.vip;
    let all = [(0, 1), (1, 1), (2, 1)];
    let placement = Placement::new(
        vip,
        80,
        &lab.backend_ips
            .iter()
            .map(|ip| (*ip, 80, 1))
            .collect::<Vec<_>>(),
    );
    let config = lab.workdir.join("xlb.conf");
    fs::write(
        &config,
        lab.virtual_server(80, "", &all, |_| http_get_check()),
    )
    .unwrap();
    lab.start_director(&xlb, &config).unwrap();
    // Every checker has run once (a random warmup within delay_loop comes first).
    wait_lines(
        &lab,
        "succeed on service",
        0,
        3,
        Duration::from_secs(DELAY_LOOP + 5),
    );
    let vs = trio(vip, 80);
    let mut drops = no_backend_drops(&lab, &xlb);

    // HTTP_GET: b1's server stops; b1 leaves the table; it starts again and comes back.
    let b1 = trio(lab.backend_ips[0], 80);
    let removing = format!("Removing service {b1} from VS {vs}");
    let adding = format!("Adding service {b1} to VS {vs}");
    let load = lab.start_load().unwrap();
    thread::sleep(Duration::from_millis(500));
    let stopped = lab.stop_http(0).unwrap();
    let detected = lab
        .wait_for_log(&removing, 0, removal_bound() + Duration::from_secs(5))
        .unwrap();
    thread::sleep(DOWN_FOR);
    let restarted = lab.start_http(0).unwrap();
    let readded = lab
        .wait_for_log(&adding, 0, readd_bound() + Duration::from_secs(5))
        .unwrap();
    thread::sleep(Duration::from_millis(1500));
    let answers = finish(load, "HTTP_GET");
    let dropped = no_backend_drops(&lab, &xlb);
    eprintln!(
        "HTTP_GET: the data plane dropped {} packets for want of a valid backend",
        dropped - drops
    );
    drops = dropped;
    let phase = Failover {
        lab: &lab,
        answers: &answers,
        before: &placement,
        victim: 0,
        failed: stopped,
        detected,
    };
    phase.check("HTTP_GET", removal_bound());
    phase.assert_avoided("HTTP_GET", detected + SETTLE, readded);
    let readd = readded.duration_since(restarted);
    eprintln!("HTTP_GET: b1 added back {readd:?} after its server listened again");
    assert!(
        readd <= readd_bound(),
        "b1 came back after {readd:?}, more than {:?}",
        readd_bound()
    );
    phase.assert_back("HTTP_GET", readded + SETTLE);

    // inhibit_on_failure: the same checks, b2 kept at weight 0 ("Disabling"), not removed.
    let inhibit = lab.virtual_server(80, "", &all, |_| {
        format!("inhibit_on_failure\n{}", http_get_check())
    });
    lab.reload_expecting(&xlb, &config, &inhibit, "reloaded ")
        .unwrap();
    let b2 = trio(lab.backend_ips[1], 80);
    let disabling = format!("Disabling service {b2} of VS {vs}");
    let enabling = format!("Enabling service {b2} of VS {vs}");
    let load = lab.start_load().unwrap();
    thread::sleep(Duration::from_millis(500));
    let stopped = lab.stop_http(1).unwrap();
    let detected = lab
        .wait_for_log(&disabling, 0, removal_bound() + Duration::from_secs(5))
        .unwrap();
    thread::sleep(DOWN_FOR);
    let restarted = lab.start_http(1).unwrap();
    let readded = lab
        .wait_for_log(&enabling, 0, readd_bound() + Duration::from_secs(5))
        .unwrap();
    thread::sleep(Duration::from_millis(1500));
    let answers = finish(load, "inhibit_on_failure");
    let dropped = no_backend_drops(&lab, &xlb);
    eprintln!(
        "inhibit_on_failure: the data plane dropped {} packets for want of a valid backend",
        dropped - drops
    );
    drops = dropped;
    let log = lab.log();
    assert!(
        !log.contains(&format!("Removing service {b2}")),
        "an inhibited server is disabled, not removed:\n{log}"
    );
    let phase = Failover {
        lab: &lab,
        answers: &answers,
        before: &placement,
        victim: 1,
        failed: stopped,
        detected,
    };
    phase.check("inhibit_on_failure", removal_bound());
    phase.assert_avoided("inhibit_on_failure", detected + SETTLE, readded);
    let readd = readded.duration_since(restarted);
    eprintln!("inhibit_on_failure: b2 enabled again {readd:?} after its server listened again");
    assert!(readd <= readd_bound(), "b2 came back after {readd:?}");
    phase.assert_back("inhibit_on_failure", readded + SETTLE);

    // MISC_CHECK: a script that fails while a flag file exists. b3's server keeps running, so
    // connections it has finish; new ones avoid it while the flag is there.
    let script = lab.workdir.join("check.sh");
    fs::write(
        &script,
        "#!/bin/sh\n# Healthy unless the flag file down-NAME exists.\ntest ! -e \"$(dirname \"$0\")/down-$1\"\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let misc = |i: usize| {
        format!(
            "MISC_CHECK {{\n    misc_path \"{} b{}\"\n    misc_timeout 1\n    delay_loop {DELAY_LOOP}\n}}",
            script.display(),
            i + 1
        )
    };
    let succeeded = lab.log_count("Misc check for");
    lab.reload_expecting(
        &xlb,
        &config,
        &lab.virtual_server(80, "", &all, misc),
        "reloaded ",
    )
    .unwrap();
    wait_lines(
        &lab,
        "Misc check for",
        succeeded,
        3,
        Duration::from_secs(DELAY_LOOP + 5),
    );
    let b3 = trio(lab.backend_ips[2], 80);
    let removing = format!("Removing service {b3} from VS {vs}");
    let adding = format!("Adding service {b3} to VS {vs}");
    // MISC_CHECK does not retry by default: one failed run, which takes no time, is enough.
    let misc_bound = Duration::from_secs(DELAY_LOOP + 1 + 1);
    let load = lab.start_load().unwrap();
    thread::sleep(Duration::from_millis(500));
    let flag = lab.workdir.join("down-b3");
    fs::write(&flag, "").unwrap();
    let flagged = Instant::now();
    let detected = lab
        .wait_for_log(&removing, 0, misc_bound + Duration::from_secs(5))
        .unwrap();
    thread::sleep(DOWN_FOR);
    fs::remove_file(&flag).unwrap();
    let cleared = Instant::now();
    let readded = lab
        .wait_for_log(&adding, 0, readd_bound() + Duration::from_secs(5))
        .unwrap();
    thread::sleep(Duration::from_millis(1500));
    let answers = finish(load, "MISC_CHECK");
    let dropped = no_backend_drops(&lab, &xlb);
    eprintln!(
        "MISC_CHECK: the data plane dropped {} packets for want of a valid backend",
        dropped - drops
    );
    let phase = Failover {
        lab: &lab,
        answers: &answers,
        before: &placement,
        victim: 2,
        failed: flagged,
        detected,
    };
    phase.check("MISC_CHECK", misc_bound);
    phase.assert_avoided("MISC_CHECK", detected + SETTLE, readded);
    let readd = readded.duration_since(cleared);
    eprintln!("MISC_CHECK: b3 added back {readd:?} after its flag file was removed");
    assert!(readd <= readd_bound(), "b3 came back after {readd:?}");
    phase.assert_back("MISC_CHECK", readded + SETTLE);
}

/// keepalived's inhibit_on_failure sets a failed real server's IPVS weight to 0 instead of
/// removing it, and IPVS keeps forwarding the connections a weight-0 server has: only new
/// connections avoid it. The same must hold here: an inhibited server is drained, not dead.
#[test]
fn an_inhibited_backend_keeps_its_connections() {
    let mut lab = DrLab::new("inhibit", 3).expect("building the lab");
    let xlb = xlb_binary();
    let script = lab.workdir.join("check.sh");
    fs::write(
        &script,
        "#!/bin/sh\ntest ! -e \"$(dirname \"$0\")/down-$1\"\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let config = lab.workdir.join("xlb.conf");
    let text = lab.virtual_server(ECHO_PORT, "", &[(0, 1), (1, 1), (2, 1)], |i| {
        format!(
            "inhibit_on_failure\nMISC_CHECK {{\n    misc_path \"{} b{}\"\n    delay_loop {DELAY_LOOP}\n}}",
            script.display(),
            i + 1
        )
    });
    fs::write(&config, text).unwrap();
    lab.start_director(&xlb, &config).unwrap();
    wait_lines(
        &lab,
        "Misc check for",
        0,
        3,
        Duration::from_secs(DELAY_LOOP + 5),
    );

    let addr = SocketAddr::from((lab.vip, ECHO_PORT));
    let timeout = Duration::from_secs(2);
    let (mut conns, first) = lab
        .client
        .enter(move || -> anyhow::Result<(Vec<EchoConn>, Vec<String>)> {
            let mut conns = Vec::new();
            let mut first = Vec::new();
            for _ in 0..30 {
                let mut c = EchoConn::connect(addr, timeout)?;
                first.push(c.ask()?);
                conns.push(c);
            }
            Ok((conns, first))
        })
        .unwrap()
        .unwrap();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for name in &first {
        *counts.entry(name).or_default() += 1;
    }
    let (victim_name, held) = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(name, n)| (name.to_string(), *n))
        .unwrap();
    let victim = (0..3)
        .find(|i| lab.backend_name(*i) == victim_name)
        .unwrap();
    eprintln!("30 echo connections per backend: {counts:?}; {victim_name} fails its check");

    fs::write(lab.workdir.join(format!("down-{victim_name}")), "").unwrap();
    let disabling = format!(
        "Disabling service {} of VS {}",
        trio(lab.backend_ips[victim], ECHO_PORT),
        trio(lab.vip, ECHO_PORT)
    );
    lab.wait_for_log(&disabling, 0, Duration::from_secs(DELAY_LOOP + 5))
        .unwrap();
    thread::sleep(SETTLE);

    // New connections avoid the inhibited backend.
    let fresh = lab
        .client
        .enter(move || -> anyhow::Result<Vec<String>> {
            (0..30)
                .map(|_| EchoConn::connect(addr, timeout)?.ask())
                .collect()
        })
        .unwrap()
        .unwrap();
    assert!(
        !fresh.contains(&victim_name),
        "new connections still reach the inhibited {victim_name}: {fresh:?}"
    );

    // The ones it had go on, five exchanges 100 ms apart.
    let rounds = lab
        .client
        .enter(move || {
            let mut seen: Vec<Vec<Result<String, String>>> = Vec::new();
            for _ in 0..5 {
                seen.push(
                    conns
                        .iter_mut()
                        .map(|c| c.ask().map_err(|e| format!("{e:#}")))
                        .collect(),
                );
                thread::sleep(Duration::from_millis(100));
            }
            seen
        })
        .unwrap();
    // Each connection's first answer that is not its backend's name.
    let broken: Vec<String> = (0..first.len())
        .filter_map(|i| {
            rounds.iter().enumerate().find_map(|(round, answers)| {
                let a = &answers[i];
                (a.as_ref().ok() != Some(&first[i]))
                    .then(|| format!("connection {i} (on {}), exchange {round}: {a:?}", first[i]))
            })
        })
        .collect();
    let on_victim = broken
        .iter()
        .filter(|b| b.contains(&format!("(on {victim_name})")))
        .count();
    eprintln!(
        "after {victim_name} was inhibited: {} of 30 connections broke or moved, {on_victim} of \
         the {held} it had",
        broken.len()
    );
    assert!(
        broken.is_empty(),
        "{} of 30 connections broke or moved once {victim_name} was inhibited, {on_victim} of \
         the {held} it had (weight 0 keeps a server's connections):\n{}\nxlb log:\n{}",
        broken.len(),
        broken[..broken.len().min(10)].join("\n"),
        tail(&lab.log(), 30)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
