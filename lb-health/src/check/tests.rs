//! TCP_CHECK and MISC_CHECK against real local listeners and scripts.

use std::net::SocketAddr;
use std::time::Duration;

use lb_config::{MiscCheck, Timer};
use tokio::net::TcpListener;

use super::*;
use crate::test_support::{LOCALHOST, closed_port, connection, script_dir, timing, write_script};

#[tokio::test]
async fn tcp_check_passes_when_listening() {
    let listener = TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    assert_eq!(check_tcp(&connection(port, 500)).await, Ok(()));
}

#[tokio::test]
async fn tcp_check_fails_on_a_closed_port() {
    let port = closed_port().await;
    let failure = check_tcp(&connection(port, 500))
        .await
        .expect_err("nothing listens");
    assert!(matches!(failure, CheckFailure::TcpFailed(_)), "{failure:?}");
    assert_eq!(
        failure.log_line("[127.0.0.1]:tcp:80", "[10.0.0.100]:tcp:80", ""),
        "TCP connection to [127.0.0.1]:tcp:80 failed."
    );
}

#[tokio::test]
async fn tcp_check_binds_to_bindto_and_bind_port() {
    let listener = TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let source_port = closed_port().await;
    let mut conn = connection(port, 500);
    conn.bindto = Some(LOCALHOST);
    conn.bind_port = Some(source_port);
    let accept = tokio::spawn(async move { listener.accept().await.map(|(_, peer)| peer) });
    assert_eq!(check_tcp(&conn).await, Ok(()));
    let peer = tokio::time::timeout(Duration::from_secs(5), accept)
        .await
        .expect("accepted in time")
        .expect("task")
        .expect("accept");
    assert_eq!(peer, SocketAddr::new(LOCALHOST, source_port));
}

fn misc(command: &str, dynamic: bool, timeout_ms: u64) -> MiscCheck {
    MiscCheck {
        timing: timing(1000, 0, 100),
        misc_path: command.to_string(),
        misc_timeout: Timer::from_micros(timeout_ms * 1000),
        misc_dynamic: dynamic,
        user: None,
    }
}

fn runner() -> ScriptRunner {
    ScriptRunner::new(false, None).with_kill_grace(Duration::from_millis(200))
}

#[tokio::test]
async fn misc_check_exit_status_decides() {
    let dir = script_dir();
    let up = write_script(dir.path(), "up.sh", "exit 0");
    let down = write_script(dir.path(), "down.sh", "exit 1");
    let seven = write_script(dir.path(), "seven.sh", "exit 7");
    let runner = runner();
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();

    assert_eq!(
        check_misc(&misc(&path(&up), false, 5000), &runner).await,
        Ok(CheckSuccess::PLAIN)
    );
    let failure = check_misc(&misc(&path(&down), false, 5000), &runner)
        .await
        .expect_err("exit 1 is down");
    assert_eq!(
        failure,
        CheckFailure::Misc {
            script: path(&down),
            failure: MiscFailure::Status(1)
        }
    );
    assert_eq!(
        failure.log_line(
            "[127.0.0.1]:tcp:80",
            "[10.0.0.100]:tcp:80",
            " with retry disabled"
        ),
        format!(
            "Misc check for [[127.0.0.1]:tcp:80 VS [10.0.0.100]:tcp:80] by [{}] failed with retry disabled (exited with status 1).",
            path(&down)
        )
    );
    // Without misc_dynamic any non-zero status is down.
    assert!(matches!(
        check_misc(&misc(&path(&seven), false, 5000), &runner).await,
        Err(CheckFailure::Misc {
            failure: MiscFailure::Status(7),
            ..
        })
    ));
}

#[tokio::test]
async fn misc_dynamic_sets_weight_from_exit_status() {
    let dir = script_dir();
    let seven = write_script(dir.path(), "seven.sh", "exit 7");
    let two = write_script(dir.path(), "two.sh", "exit 2");
    let up = write_script(dir.path(), "up.sh", "exit 0");
    let down = write_script(dir.path(), "down.sh", "exit 1");
    let runner = runner();
    let run = |p: std::path::PathBuf| {
        let runner = &runner;
        async move { check_misc(&misc(&p.to_string_lossy(), true, 5000), runner).await }
    };
    assert_eq!(
        run(seven).await,
        Ok(CheckSuccess {
            dynamic_weight: Some(5)
        })
    );
    assert_eq!(
        run(two).await,
        Ok(CheckSuccess {
            dynamic_weight: Some(0)
        })
    );
    // Exit 0 keeps the configured weight; exit 1 is still down.
    assert_eq!(run(up).await, Ok(CheckSuccess::PLAIN));
    assert!(run(down).await.is_err());
}

#[tokio::test]
async fn misc_check_times_out_and_is_down() {
    let runner = runner();
    let started = std::time::Instant::now();
    let failure = check_misc(&misc("sleep 100", false, 150), &runner)
        .await
        .expect_err("timed out");
    assert_eq!(
        failure,
        CheckFailure::Misc {
            script: "sleep".to_string(),
            failure: MiscFailure::TimedOut
        }
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn misc_check_that_cannot_run_is_down() {
    let runner = runner();
    let failure = check_misc(&misc("/nonexistent/check.sh", false, 1000), &runner)
        .await
        .expect_err("not run");
    assert!(matches!(
        failure,
        CheckFailure::Misc {
            failure: MiscFailure::NotRun(_),
            ..
        }
    ));
}
