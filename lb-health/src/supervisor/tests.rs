//! Reloads, quorum notifications and shutdown, with real scripts and short timers.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use lb_config::{Config, SorryServer};

use super::*;
use crate::test_support::{
    LOCALHOST, TEST_DEADLINE, misc_checker, real_server, script_dir, timing, virtual_server,
    wait_until, write_script,
};

/// A MISC_CHECK script whose exit status is the content of a file.
fn switch(dir: &Path, name: &str, status: u8) -> (String, PathBuf) {
    let state = dir.join(format!("{name}.state"));
    fs::write(&state, format!("{status}\n")).expect("state");
    let script = write_script(dir, name, &format!("exit $(cat {})", state.display()));
    (script.to_string_lossy().into_owned(), state)
}

fn set(state: &Path, status: u8) {
    let tmp = state.with_extension("tmp");
    fs::write(&tmp, format!("{status}\n")).expect("write");
    fs::rename(&tmp, state).expect("rename");
}

fn recorder(dir: &Path, name: &str, file: &Path) -> NotifyScript {
    let script = write_script(dir, name, &format!("echo {name} >> {}", file.display()));
    NotifyScript {
        command: script.to_string_lossy().into_owned(),
        user: None,
    }
}

fn config(vs: Vec<lb_config::VirtualServer>) -> Config {
    Config {
        virtual_servers: vs,
        ..Config::default()
    }
}

fn health_of(sup: &HealthSupervisor, vs: &VsKey, port: u16) -> Option<RealServerHealth> {
    sup.snapshot()
        .get(vs)
        .and_then(|m| m.get(&(LOCALHOST, port)).cloned())
}

async fn wait_event(
    rx: &mut mpsc::Receiver<HealthEvent>,
    pred: impl Fn(&HealthEvent) -> bool,
) -> HealthEvent {
    let deadline = tokio::time::Instant::now() + TEST_DEADLINE;
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("event in time")
            .expect("channel open");
        if pred(&event) {
            return event;
        }
    }
}

#[tokio::test]
async fn apply_keeps_the_state_of_unchanged_real_servers() {
    let dir = script_dir();
    let (failing, _) = switch(dir.path(), "fail.sh", 1);
    let check = misc_checker(&failing, false, timing(50, 0, 20));
    let vs_a = virtual_server(vec![
        real_server(8001, 1, vec![check.clone()]),
        real_server(8002, 1, Vec::new()),
    ]);
    let key = VsKey::of(&vs_a);
    let (tx, mut rx) = mpsc::channel(256);
    let mut sup = HealthSupervisor::new(tx);
    sup.apply(&config(vec![vs_a.clone()]));
    wait_event(&mut rx, |e| e.real_server.1 == 8001 && !e.up).await;

    // Reload: 8001 unchanged but for its weight, 8002 removed, 8003 added.
    let mut vs_b = vs_a.clone();
    vs_b.real_servers[0].weight = 7;
    vs_b.real_servers.remove(1);
    vs_b.real_servers.push(real_server(8003, 1, Vec::new()));
    sup.apply(&config(vec![vs_b]));

    let kept = health_of(&sup, &key, 8001).expect("8001 still monitored");
    assert!(!kept.up, "a reload must not put a dead server back");
    assert!(health_of(&sup, &key, 8002).is_none());
    wait_event(&mut rx, |e| e.real_server.1 == 8003 && e.up).await;
    assert!(wait_until(|| health_of(&sup, &key, 8001).is_some_and(|h| h.weight == 7)).await);
    // No fresh start for 8001: a new monitor would first announce it up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(event) = rx.try_recv() {
        assert!(!(event.real_server.1 == 8001 && event.up), "{event:?}");
    }

    // Changed checkers: checked afresh, starting up again.
    let mut vs_c = vs_a.clone();
    vs_c.real_servers.truncate(1);
    vs_c.real_servers[0].checkers = vec![misc_checker(&failing, false, timing(60, 0, 20))];
    sup.apply(&config(vec![vs_c]));
    assert!(health_of(&sup, &key, 8001).is_some_and(|h| h.up));
    assert!(health_of(&sup, &key, 8003).is_none());
}

#[tokio::test]
async fn health_follows_the_callers_real_servers_before_a_reload_is_applied() {
    let dir = script_dir();
    let (failing, _) = switch(dir.path(), "fail.sh", 1);
    let check = misc_checker(&failing, false, timing(50, 0, 20));
    let vs = virtual_server(vec![
        real_server(8001, 1, vec![check]),
        real_server(8002, 3, Vec::new()),
    ]);
    let (tx, mut rx) = mpsc::channel(256);
    let mut sup = HealthSupervisor::new(tx);
    sup.apply(&config(vec![vs.clone()]));
    wait_event(&mut rx, |e| e.real_server.1 == 8001 && !e.up).await;
    let up = |h: &Option<RealServerHealth>| h.map(|h| (h.up, h.weight));

    let (_, healths) = sup.virtual_server_health(&vs).expect("known VS");
    assert_eq!(
        healths.iter().map(up).collect::<Vec<_>>(),
        [Some((false, 1)), Some((true, 3))]
    );

    // A reload read, not applied yet: 8001 removed, 8004 new, 8002 first. Each real server
    // gets its own health, not that of the one at its position in the applied config.
    let mut read = vs.clone();
    read.real_servers = vec![
        real_server(8002, 3, Vec::new()),
        real_server(8004, 1, Vec::new()),
    ];
    let (_, healths) = sup.virtual_server_health(&read).expect("known VS");
    assert_eq!(
        healths.iter().map(up).collect::<Vec<_>>(),
        [Some((true, 3)), None]
    );
}

#[tokio::test]
async fn removing_a_live_real_server_runs_its_notify_down() {
    let dir = script_dir();
    let calls = dir.path().join("calls");
    let mut rs = real_server(8001, 1, Vec::new());
    rs.notify_down = Some(recorder(dir.path(), "down.sh", &calls));
    let vs = virtual_server(vec![rs]);
    let (tx, mut rx) = mpsc::channel(16);
    let mut sup = HealthSupervisor::new(tx);
    sup.apply(&config(vec![vs]));
    wait_event(&mut rx, |e| e.up).await;
    sup.apply(&config(Vec::new()));
    assert!(sup.snapshot().is_empty());
    assert!(wait_until(|| fs::read_to_string(&calls).is_ok_and(|c| c == "down.sh\n")).await);
}

#[tokio::test]
async fn quorum_changes_switch_to_the_sorry_server_and_notify() {
    let dir = script_dir();
    let calls = dir.path().join("calls");
    let (command, state) = switch(dir.path(), "rs.sh", 0);
    let mut vs = virtual_server(vec![real_server(
        8001,
        1,
        vec![misc_checker(&command, false, timing(50, 0, 20))],
    )]);
    let sorry = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));
    vs.sorry_server = Some(SorryServer {
        address: sorry,
        port: 80,
    });
    vs.quorum_up = Some(recorder(dir.path(), "quorum_up.sh", &calls));
    vs.quorum_down = Some(recorder(dir.path(), "quorum_down.sh", &calls));
    let key = VsKey::of(&vs);
    let (tx, mut rx) = mpsc::channel(16);
    let mut sup = HealthSupervisor::new(tx);
    sup.apply(&config(vec![vs]));

    wait_event(&mut rx, |e| e.up).await;
    let e = sup.effective_backends(&key).expect("known VS");
    assert!(e.quorum_up && !e.sorry);
    assert_eq!(e.backends.len(), 1);

    set(&state, 1);
    wait_event(&mut rx, |e| !e.up).await;
    let e = sup.effective_backends(&key).expect("known VS");
    assert_eq!(e.transition, Some(QuorumTransition::Lost));
    assert!(e.sorry);
    assert_eq!((e.backends[0].address, e.backends[0].port), (sorry, 80));
    assert!(wait_until(|| fs::read_to_string(&calls).is_ok_and(|c| c == "quorum_down.sh\n")).await);

    set(&state, 0);
    wait_event(&mut rx, |e| e.up).await;
    let e = sup.effective_backends(&key).expect("known VS");
    assert_eq!(e.transition, Some(QuorumTransition::Gained));
    assert!(
        wait_until(
            || fs::read_to_string(&calls).is_ok_and(|c| c == "quorum_down.sh\nquorum_up.sh\n")
        )
        .await
    );
    assert_eq!(sup.effective_all().len(), 1);
}

#[tokio::test]
async fn shutdown_with_omega_runs_the_down_notifiers() {
    let dir = script_dir();
    let calls = dir.path().join("calls");
    let mut rs = real_server(8001, 1, Vec::new());
    rs.notify_down = Some(recorder(dir.path(), "down.sh", &calls));
    let mut vs = virtual_server(vec![rs]);
    vs.quorum_down = Some(recorder(dir.path(), "quorum_down.sh", &calls));
    vs.omega = true;
    let (tx, mut rx) = mpsc::channel(16);
    let mut sup = HealthSupervisor::new(tx);
    sup.apply(&config(vec![vs.clone()]));
    wait_event(&mut rx, |e| e.up).await;
    sup.effective_backends(&VsKey::of(&vs));
    sup.shutdown().await;
    // shutdown waits for its scripts.
    let got = fs::read_to_string(&calls).expect("notified");
    let mut lines: Vec<&str> = got.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["down.sh", "quorum_down.sh"]);
}

#[tokio::test]
async fn shutdown_without_omega_runs_nothing() {
    let dir = script_dir();
    let calls = dir.path().join("calls");
    let mut rs = real_server(8001, 1, Vec::new());
    rs.notify_down = Some(recorder(dir.path(), "down.sh", &calls));
    let vs = virtual_server(vec![rs]);
    let (tx, mut rx) = mpsc::channel(16);
    let mut sup = HealthSupervisor::new(tx);
    sup.apply(&config(vec![vs]));
    wait_event(&mut rx, |e| e.up).await;
    sup.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!calls.exists());
}
