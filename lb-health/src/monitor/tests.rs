//! Monitors with real short timers (tens of milliseconds), real scripts and
//! real listeners.

use std::fs;
use std::path::{Path, PathBuf};

use lb_config::{NotifyScript, VirtualServer};

use super::*;
use crate::test_support::{
    TEST_DEADLINE, misc_checker, real_server, script_dir, tcp_checker, timing, virtual_server,
    wait_until, write_script,
};

/// A MISC_CHECK script whose exit status is the content of `state`, and
/// which appends each status it returns to `attempts`.
struct Switch {
    dir: tempfile::TempDir,
    script: PathBuf,
}

impl Switch {
    fn new(status: u8) -> Self {
        let dir = script_dir();
        let state = dir.path().join("state");
        let attempts = dir.path().join("attempts");
        let script = write_script(
            dir.path(),
            "switch.sh",
            &format!(
                "code=$(cat {})\necho $code >> {}\nexit $code",
                state.display(),
                attempts.display()
            ),
        );
        let switch = Switch { dir, script };
        switch.set(status);
        switch
    }

    fn set(&self, status: u8) {
        let state = self.dir.path().join("state");
        let tmp = self.dir.path().join("state.tmp");
        fs::write(&tmp, format!("{status}\n")).expect("write state");
        fs::rename(&tmp, &state).expect("rename state");
    }

    /// The statuses returned so far.
    fn attempts(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("attempts"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn command(&self) -> String {
        self.script.to_string_lossy().into_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn context() -> CheckContext {
    CheckContext::new(Arc::new(
        ScriptRunner::new(false, None).with_kill_grace(Duration::from_millis(200)),
    ))
}

async fn next_event(rx: &mut mpsc::Receiver<HealthEvent>) -> HealthEvent {
    tokio::time::timeout(TEST_DEADLINE, rx.recv())
        .await
        .expect("an event in time")
        .expect("channel open")
}

fn spawn(vs: &VirtualServer) -> (RealServerMonitor, mpsc::Receiver<HealthEvent>) {
    let (tx, rx) = mpsc::channel(64);
    let monitor = RealServerMonitor::spawn(vs, &vs.real_servers[0], context(), tx);
    (monitor, rx)
}

/// A notify script that records its calls in `file`.
fn recorder(dir: &Path, name: &str, file: &Path) -> NotifyScript {
    let script = write_script(dir, name, &format!("echo {name} >> {}", file.display()));
    NotifyScript {
        command: script.to_string_lossy().into_owned(),
        user: None,
    }
}

#[tokio::test]
async fn declares_down_after_the_retries_and_up_after_one_success() {
    let switch = Switch::new(0);
    // retry 2: three failed attempts, 20 ms apart, before down.
    let checker = misc_checker(&switch.command(), false, timing(300, 2, 20));
    let mut rs = real_server(8080, 3, vec![checker]);
    let calls = switch.path("calls");
    rs.notify_up = Some(recorder(switch.dir.path(), "up.sh", &calls));
    rs.notify_down = Some(recorder(switch.dir.path(), "down.sh", &calls));
    let vs = virtual_server(vec![rs]);
    let (monitor, mut rx) = spawn(&vs);

    let first = next_event(&mut rx).await;
    assert_eq!(
        first,
        HealthEvent {
            virtual_server: VsKey::of(&vs),
            real_server: (vs.real_servers[0].address, 8080),
            up: true,
            weight: 3,
        }
    );
    assert!(wait_until(|| !switch.attempts().is_empty()).await);
    assert!(monitor.health().up);

    switch.set(1);
    let down = next_event(&mut rx).await;
    assert!(!down.up);
    assert_eq!(down.weight, 0);
    let failed = switch.attempts().iter().filter(|s| *s == "1").count();
    assert_eq!(failed, 3, "attempts: {:?}", switch.attempts());
    assert_eq!(
        monitor.health(),
        RealServerHealth {
            up: false,
            weight: 3,
            inhibit_on_failure: false,
            failed_checkers: 1
        }
    );

    switch.set(0);
    let up = next_event(&mut rx).await;
    assert!(up.up);
    assert_eq!(up.weight, 3);
    let after: Vec<String> = switch
        .attempts()
        .into_iter()
        .skip_while(|s| s == "0")
        .skip_while(|s| s == "1")
        .collect();
    assert_eq!(after, ["0"], "one success is enough");

    assert!(
        wait_until(|| fs::read_to_string(&calls).is_ok_and(|c| c == "down.sh\nup.sh\n")).await,
        "notify calls: {:?}",
        fs::read_to_string(&calls)
    );
}

#[tokio::test]
async fn a_failing_first_check_is_not_retried() {
    let switch = Switch::new(1);
    let vs = virtual_server(vec![real_server(
        8080,
        1,
        vec![misc_checker(&switch.command(), false, timing(300, 3, 20))],
    )]);
    let (_monitor, mut rx) = spawn(&vs);
    assert!(next_event(&mut rx).await.up);
    assert!(!next_event(&mut rx).await.up);
    assert_eq!(switch.attempts(), ["1"]);
}

#[tokio::test]
async fn tcp_check_detects_a_closed_listener_within_the_bound() {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // delay_loop 100 ms, connect_timeout 200 ms, retry 1, delay_before_retry 30 ms.
    let vs = virtual_server(vec![real_server(
        port,
        1,
        vec![tcp_checker(port, timing(100, 1, 30))],
    )]);
    let (monitor, mut rx) = spawn(&vs);
    assert!(next_event(&mut rx).await.up);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(monitor.health().up);

    drop(listener);
    let closed = tokio::time::Instant::now();
    let down = next_event(&mut rx).await;
    assert!(!down.up);
    // delay_loop + (retry + 1) x connect_timeout + retry x delay_before_retry.
    let bound = Duration::from_millis(100 + 2 * 200 + 30);
    assert!(
        closed.elapsed() < bound + Duration::from_millis(300),
        "took {:?}",
        closed.elapsed()
    );
}

#[tokio::test]
async fn alpha_starts_down_until_the_first_success() {
    let switch = Switch::new(0);
    let mut vs = virtual_server(vec![real_server(
        8080,
        2,
        vec![misc_checker(&switch.command(), false, timing(1000, 1, 20))],
    )]);
    vs.alpha = true;
    let (monitor, mut rx) = spawn(&vs);
    let first = next_event(&mut rx).await;
    assert!(!first.up);
    assert_eq!(first.weight, 0);
    let up = next_event(&mut rx).await;
    assert!(up.up);
    assert_eq!(up.weight, 2);
    assert!(monitor.health().up);
}

#[tokio::test]
async fn alpha_with_a_failing_check_stays_down_and_notifies_down() {
    let switch = Switch::new(1);
    let calls = switch.path("calls");
    let mut rs = real_server(
        8080,
        2,
        vec![misc_checker(&switch.command(), false, timing(50, 0, 20))],
    );
    rs.notify_down = Some(recorder(switch.dir.path(), "down.sh", &calls));
    let mut vs = virtual_server(vec![rs]);
    vs.alpha = true;
    let (monitor, mut rx) = spawn(&vs);
    assert!(!next_event(&mut rx).await.up);
    assert!(wait_until(|| switch.attempts().len() >= 3).await);
    assert!(!monitor.health().up);
    assert!(rx.try_recv().is_err(), "no change, no event");
    // keepalived runs notify_down once, on the first result.
    assert_eq!(fs::read_to_string(&calls).expect("notified"), "down.sh\n");
}

#[tokio::test]
async fn inhibit_on_failure_forwards_with_weight_zero() {
    let switch = Switch::new(1);
    let mut rs = real_server(
        8080,
        4,
        vec![misc_checker(&switch.command(), false, timing(1000, 0, 20))],
    );
    rs.inhibit_on_failure = true;
    let vs = virtual_server(vec![rs]);
    let (monitor, mut rx) = spawn(&vs);
    assert!(next_event(&mut rx).await.up);
    let down = next_event(&mut rx).await;
    assert_eq!((down.up, down.weight), (false, 0));
    let health = monitor.health();
    assert!(health.inhibit_on_failure);
    let states = std::collections::HashMap::from([((rs_addr(&vs), 8080), health)]);
    let effective =
        crate::quorum::effective_backends(&vs, &states, &mut crate::QuorumState::default());
    assert_eq!(effective.backends.len(), 1);
    assert_eq!(effective.backends[0].weight, 0);
}

fn rs_addr(vs: &VirtualServer) -> std::net::IpAddr {
    vs.real_servers[0].address
}

#[tokio::test]
async fn misc_dynamic_exit_status_sets_the_weight() {
    let switch = Switch::new(7);
    let vs = virtual_server(vec![real_server(
        8080,
        1,
        vec![misc_checker(&switch.command(), true, timing(50, 0, 20))],
    )]);
    let (monitor, mut rx) = spawn(&vs);
    assert_eq!(next_event(&mut rx).await.weight, 1);
    let dynamic = next_event(&mut rx).await;
    assert_eq!((dynamic.up, dynamic.weight), (true, 5));
    // Exit 0 goes back to the configured weight.
    switch.set(0);
    let configured = next_event(&mut rx).await;
    assert_eq!((configured.up, configured.weight), (true, 1));
    // Exit 1 is down even with misc_dynamic.
    switch.set(1);
    assert!(!next_event(&mut rx).await.up);
    assert_eq!(monitor.health().weight, 1);
}

#[tokio::test]
async fn a_real_server_without_checkers_is_up() {
    let mut vs = virtual_server(vec![real_server(8080, 1, Vec::new())]);
    vs.alpha = true;
    let (monitor, mut rx) = spawn(&vs);
    assert!(next_event(&mut rx).await.up);
    assert!(monitor.health().up);
}

#[tokio::test]
async fn all_checkers_must_pass() {
    let good = Switch::new(0);
    let bad = Switch::new(0);
    let vs = virtual_server(vec![real_server(
        8080,
        1,
        vec![
            misc_checker(&good.command(), false, timing(50, 0, 20)),
            misc_checker(&bad.command(), false, timing(50, 0, 20)),
        ],
    )]);
    let (monitor, mut rx) = spawn(&vs);
    assert!(next_event(&mut rx).await.up);
    bad.set(1);
    assert!(!next_event(&mut rx).await.up);
    assert_eq!(monitor.health().failed_checkers, 1);
    bad.set(0);
    assert!(next_event(&mut rx).await.up);
}

#[tokio::test]
async fn stopping_kills_a_running_check_script() {
    let dir = script_dir();
    let pidfile = dir.path().join("pid");
    let script = write_script(
        dir.path(),
        "hang.sh",
        &format!(
            "echo $$ > {0}.tmp\nmv {0}.tmp {0}\nsleep 100",
            pidfile.display()
        ),
    );
    let vs = virtual_server(vec![real_server(
        8080,
        1,
        vec![misc_checker(
            &script.to_string_lossy(),
            false,
            timing(1000, 0, 20),
        )],
    )]);
    let (monitor, _rx) = spawn(&vs);
    assert!(wait_until(|| pidfile.exists()).await);
    let pid: i32 = fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    monitor.stop();
    assert!(wait_until(|| crate::test_support::process_gone(pid)).await);
}

/// SMTP_CHECK starts every round with its retries unspent (check_smtp.c resets retry_it at
/// each round): its first check is retried, unlike the others', and a down server is still
/// tried retry + 1 times each round. The server here accepts and closes at once (no banner).
#[tokio::test]
async fn smtp_check_retries_in_every_round_even_down() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let checker = Checker::Smtp(lb_config::SmtpCheck {
        connection: crate::test_support::connection(port, 200),
        timing: timing(400, 2, 20),
        helo_name: "test".into(),
    });
    let vs = virtual_server(vec![real_server(port, 1, vec![checker])]);
    let (_monitor, mut rx) = spawn(&vs);
    assert!(next_event(&mut rx).await.up, "non-alpha: up at start");
    let down = next_event(&mut rx).await;
    assert!(!down.up);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "the first round was retried twice before down"
    );
    assert!(wait_until(|| accepted.load(Ordering::SeqCst) >= 6).await);
    assert!(rx.try_recv().is_err(), "still down, nothing more sent");
    server.abort();
}

/// DNS_CHECK against a real UDP server on the loopback: an answer with the query's id and no
/// error is up; NXDOMAIN (RCODE 3) is down.
#[tokio::test]
async fn dns_check_follows_the_answer_code() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let rcode = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let code = rcode.clone();
    let server = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
            let mut answer = buf[..len].to_vec();
            // QR set, RD and RA, the RCODE asked for.
            answer[2] = 0x81;
            answer[3] = 0x80 | code.load(std::sync::atomic::Ordering::SeqCst);
            let _ = socket.send_to(&answer, peer).await;
        }
    });
    let checker = Checker::Dns(lb_config::DnsCheck {
        connection: crate::test_support::connection(port, 200),
        timing: timing(50, 0, 50),
        query_type: lb_config::DnsType::A,
        name: "www.example.test".into(),
    });
    let vs = virtual_server(vec![real_server(port, 1, vec![checker])]);
    let (monitor, mut rx) = spawn(&vs);
    assert!(next_event(&mut rx).await.up);
    assert!(wait_until(|| monitor.report().last_check.is_some()).await);
    assert!(monitor.health().up, "NOERROR is up");
    rcode.store(3, std::sync::atomic::Ordering::SeqCst);
    assert!(!next_event(&mut rx).await.up, "NXDOMAIN is down");
    rcode.store(0, std::sync::atomic::Ordering::SeqCst);
    assert!(
        next_event(&mut rx).await.up,
        "one good answer brings it back"
    );
    server.abort();
}

#[test]
fn health_cell_keeps_every_field() {
    let mut cells = HealthCells::default();
    for health in [
        RealServerHealth {
            up: true,
            weight: u32::MAX,
            inhibit_on_failure: false,
            failed_checkers: 0,
        },
        RealServerHealth {
            up: false,
            weight: 0,
            inhibit_on_failure: true,
            failed_checkers: 3,
        },
    ] {
        let cell = cells.take(health);
        assert_eq!(cell.load(), health);
        let flipped = RealServerHealth {
            up: !health.up,
            ..health
        };
        cell.store(flipped);
        assert_eq!(cell.load(), flipped);
    }
}

#[test]
fn a_given_back_cell_ignores_its_previous_monitor() {
    let mut cells = HealthCells::default();
    let down = RealServerHealth {
        up: false,
        weight: 1,
        inhibit_on_failure: false,
        failed_checkers: 1,
    };
    let up = RealServerHealth {
        up: true,
        weight: 5,
        inhibit_on_failure: false,
        failed_checkers: 0,
    };
    // Enough cells to fill a block and start another.
    let many: Vec<HealthCell> = (0..CELLS_PER_BLOCK + 3).map(|_| cells.take(down)).collect();
    let old = many[CELLS_PER_BLOCK + 1].clone();
    cells.give_back(&old);
    let new = cells.take(up);
    assert_eq!((new.index, new.slot), (old.index, old.slot));
    // The stopped monitor's task, still running for a moment, writes once more: lost.
    old.store(down);
    assert_eq!(new.load(), up);
    assert!(
        many.iter()
            .all(|c| c.index == old.index || c.load() == down)
    );
}
