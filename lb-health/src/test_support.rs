//! Helpers for the tests: configuration pieces, scripts in temporary
//! directories, and tiny local servers on 127.0.0.1 with ephemeral ports.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lb_config::{
    CheckTiming, Checker, Connection, LbAlgo, LbKind, MiscCheck, Origin, Protocol, RealServer,
    TcpCheck, Timer, VirtualServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Upper bound for any wait in a test.
pub const TEST_DEADLINE: Duration = Duration::from_secs(10);

pub fn ms(n: u64) -> Timer {
    Timer::from_micros(n * 1000)
}

pub fn connection(port: u16, timeout_ms: u64) -> Connection {
    Connection {
        connect_ip: LOCALHOST,
        connect_port: port,
        bindto: None,
        bind_port: None,
        connect_timeout: ms(timeout_ms),
    }
}

pub fn timing(delay_loop_ms: u64, retry: u32, delay_before_retry_ms: u64) -> CheckTiming {
    CheckTiming {
        delay_loop: ms(delay_loop_ms),
        retry,
        delay_before_retry: ms(delay_before_retry_ms),
        warmup: Timer::default(),
    }
}

pub fn tcp_checker(port: u16, timing: CheckTiming) -> Checker {
    Checker::Tcp(TcpCheck {
        connection: connection(port, 200),
        timing,
    })
}

pub fn misc_checker(command: &str, dynamic: bool, timing: CheckTiming) -> Checker {
    Checker::Misc(MiscCheck {
        timing,
        misc_path: command.to_string(),
        misc_timeout: Timer::from_secs(5),
        misc_dynamic: dynamic,
        user: None,
    })
}

pub fn real_server(port: u16, weight: u32, checkers: Vec<Checker>) -> RealServer {
    RealServer {
        address: LOCALHOST,
        port,
        weight,
        inhibit_on_failure: false,
        notify_up: None,
        notify_down: None,
        checkers,
        origin: Origin::default(),
    }
}

pub fn virtual_server(real_servers: Vec<RealServer>) -> VirtualServer {
    VirtualServer {
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
        port: 80,
        protocol: Protocol::Tcp,
        delay_loop: Timer::from_secs(60),
        lb_algo: LbAlgo::Mh,
        lb_kind: LbKind::Dr,
        persistence_timeout: 0,
        persistence_granularity: None,
        virtualhost: None,
        sorry_server: None,
        quorum: 1,
        hysteresis: 0,
        quorum_up: None,
        quorum_down: None,
        alpha: false,
        omega: false,
        inhibit_on_failure: false,
        ha_suspend: false,
        real_servers,
        group: None,
        origin: Origin::default(),
        lb_algo_origin: Origin::default(),
        lb_kind_origin: Origin::default(),
    }
}

/// A directory for test scripts that any user may enter (tempdir makes
/// 0700 directories, which `nobody` could not traverse).
pub fn script_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    dir
}

/// Writes an executable shell script.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    path
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `pid` has exited: gone, or a zombie nobody reaped yet (an
/// orphaned grandchild waits for init, which may not reap in a container).
pub fn process_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Waits (bounded) until `cond` holds.
pub async fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let start = tokio::time::Instant::now();
    while start.elapsed() < TEST_DEADLINE {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// A local server task, stopped when dropped.
pub struct TestServer {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP server answering every request with `response` after `delay`,
/// for at most 1000 connections.
pub async fn http_server(response: Vec<u8>, delay: Duration) -> TestServer {
    let listener = TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let response = Arc::new(response);
    let task = tokio::spawn(async move {
        for _ in 0..1000 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                let _ = read_request(&mut stream).await;
                tokio::time::sleep(delay).await;
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    TestServer {
        port,
        connections,
        task,
    }
}

/// Reads up to the end of a request's header (bounded).
pub async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while request.len() < 64 * 1024 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    request
}

pub fn http_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A port with nothing listening: bound, then released.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}
