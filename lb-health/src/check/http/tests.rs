//! HTTP_GET and SSL_GET against tiny local servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lb_config::{StatusRange, Url};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::test_support::{
    LOCALHOST, TestServer, closed_port, connection, http_response, http_server, read_request,
    timing,
};

fn url(path: &str, status: &[(u16, u16)], digest: Option<&str>) -> Url {
    Url {
        path: path.to_string(),
        digest: digest.map(str::to_string),
        status_code: status
            .iter()
            .map(|&(from, to)| StatusRange { from, to })
            .collect(),
        virtualhost: None,
    }
}

fn http_check(port: u16, tls: bool, urls: Vec<Url>) -> HttpCheck {
    HttpCheck {
        tls,
        connection: connection(port, 300),
        timing: timing(1000, 1, 100),
        urls,
        virtualhost: None,
    }
}

fn ok_url() -> Url {
    url("/health", &[(200, 299)], None)
}

fn md5_hex(body: &str) -> String {
    hex(&Md5::digest(body.as_bytes()))
}

async fn what_failed(check: &HttpCheck) -> &'static str {
    match check_http(check, &TlsClient::new()).await {
        Err(CheckFailure::Http { what, .. }) => what,
        other => panic!("expected an HTTP failure, got {other:?}"),
    }
}

#[tokio::test]
async fn passes_on_200() {
    let server = http_server(http_response("200 OK", "alive"), Duration::ZERO).await;
    let check = http_check(server.port, false, vec![ok_url()]);
    assert_eq!(check_http(&check, &TlsClient::new()).await, Ok(()));
}

#[tokio::test]
async fn fails_on_500() {
    let server = http_server(
        http_response("500 Internal Server Error", "oops"),
        Duration::ZERO,
    )
    .await;
    let check = http_check(server.port, false, vec![ok_url()]);
    assert_eq!(what_failed(&check).await, "HTTP status code error to");
    // An explicit status_code accepting 500 passes.
    let check = http_check(server.port, false, vec![url("/", &[(500, 500)], None)]);
    assert_eq!(check_http(&check, &TlsClient::new()).await, Ok(()));
}

#[tokio::test]
async fn digest_must_match_the_body() {
    let server = http_server(http_response("200 OK", "expected body"), Duration::ZERO).await;
    let right = md5_hex("expected body");
    let check = http_check(server.port, false, vec![url("/", &[], Some(&right))]);
    assert_eq!(check_http(&check, &TlsClient::new()).await, Ok(()));
    // Upper-case hex, as some genhash users write it, is the same digest.
    let upper = right.to_uppercase();
    let check = http_check(server.port, false, vec![url("/", &[], Some(&upper))]);
    assert_eq!(check_http(&check, &TlsClient::new()).await, Ok(()));

    let wrong = md5_hex("another body");
    let check = http_check(server.port, false, vec![url("/", &[], Some(&wrong))]);
    assert_eq!(what_failed(&check).await, "MD5 digest error to");
}

#[tokio::test]
async fn digest_covers_content_length_only() {
    // keepalived hashes at most Content-Length bytes of the body.
    let response = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA".to_vec();
    let server = http_server(response, Duration::ZERO).await;
    let check = http_check(
        server.port,
        false,
        vec![url("/", &[], Some(&md5_hex("hello")))],
    );
    assert_eq!(check_http(&check, &TlsClient::new()).await, Ok(()));
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let server = http_server(http_response("200 OK", "late"), Duration::from_secs(2)).await;
    let check = http_check(server.port, false, vec![ok_url()]);
    let started = std::time::Instant::now();
    assert_eq!(what_failed(&check).await, "Timeout WEB read");
    // connect_timeout is 300 ms.
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn a_closed_port_fails_to_connect() {
    let port = closed_port().await;
    let check = http_check(port, false, vec![ok_url()]);
    let failure = check_http(&check, &TlsClient::new())
        .await
        .expect_err("nothing listens");
    assert_eq!(
        failure.log_line("[127.0.0.1]:tcp:80", "[10.0.0.100]:tcp:80", ""),
        "Error connecting server [127.0.0.1]:tcp:80."
    );
}

#[tokio::test]
async fn no_response_is_a_failure() {
    let server = http_server(Vec::new(), Duration::ZERO).await;
    let check = http_check(server.port, false, vec![ok_url()]);
    assert_eq!(what_failed(&check).await, "Read, no data received from");
}

#[tokio::test]
async fn every_url_must_pass() {
    let ok = http_server(http_response("200 OK", "fine"), Duration::ZERO).await;
    let check = http_check(
        ok.port,
        false,
        vec![
            ok_url(),
            url("/other", &[(200, 200)], Some(&md5_hex("not fine"))),
        ],
    );
    assert_eq!(what_failed(&check).await, "MD5 digest error to");
    assert!(ok.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

/// What a recording server saw of one request.
#[derive(Debug)]
struct Seen {
    request: String,
    sni: Option<String>,
}

/// A server that answers `response` and reports each request, over TLS
/// when `tls` is given. At most 100 connections.
async fn recording_server(
    tls: Option<TlsAcceptor>,
    response: Vec<u8>,
) -> (
    u16,
    mpsc::UnboundedReceiver<Seen>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        for _ in 0..100 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let response = response.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        let Ok(mut s) = acceptor.accept(stream).await else {
                            return;
                        };
                        let sni = s.get_ref().1.server_name().map(str::to_string);
                        let request = read_request(&mut s).await;
                        let _ = tx.send(Seen {
                            request: String::from_utf8_lossy(&request).into_owned(),
                            sni,
                        });
                        let _ = s.write_all(&response).await;
                        let _ = s.shutdown().await;
                    }
                    None => {
                        let mut s = stream;
                        let request = read_request(&mut s).await;
                        let _ = tx.send(Seen {
                            request: String::from_utf8_lossy(&request).into_owned(),
                            sni: None,
                        });
                        let _ = s.write_all(&response).await;
                        let _ = s.shutdown().await;
                    }
                }
            });
        }
    });
    (port, rx, task)
}

#[tokio::test]
async fn sends_keepalived_request() {
    let (port, mut seen, task) = recording_server(None, http_response("200 OK", "ok")).await;
    let check = http_check(port, false, vec![ok_url()]);
    assert_eq!(check_http(&check, &TlsClient::new()).await, Ok(()));
    let first = seen.recv().await.expect("request seen");
    assert_eq!(
        first.request,
        format!(
            "GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
    );

    let mut with_vhost = ok_url();
    with_vhost.virtualhost = Some("www.example.com".to_string());
    let check = http_check(port, false, vec![with_vhost]);
    assert_eq!(check_http(&check, &TlsClient::new()).await, Ok(()));
    let second = seen.recv().await.expect("request seen");
    assert!(
        second.request.contains("\r\nHost: www.example.com\r\n"),
        "{}",
        second.request
    );
    task.abort();
}

#[test]
fn request_brackets_ipv6_hosts() {
    let ip: IpAddr = "2001:db8::1".parse().expect("ip");
    assert!(request("/", None, ip, 8080).contains("\r\nHost: [2001:db8::1]:8080\r\n"));
}

#[test]
fn parses_status_lines() {
    assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
    assert_eq!(
        status_code(b"HTTP/1.0 503 Service Unavailable\r\n"),
        Some(503)
    );
    assert_eq!(status_code(b"garbage\r\n"), None);
    assert_eq!(
        content_length(b"HTTP/1.0 200 OK\r\ncontent-length: 12\r\n\r\n"),
        Some(12)
    );
}

fn tls_acceptor() -> TlsAcceptor {
    let certified = rcgen::generate_simple_self_signed(vec!["backend.example".to_string()])
        .expect("self-signed certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server certificate");
    TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn ssl_get_accepts_a_self_signed_certificate() {
    let (port, mut seen, task) =
        recording_server(Some(tls_acceptor()), http_response("200 OK", "secure")).await;
    let check = http_check(
        port,
        true,
        vec![url("/", &[(200, 200)], Some(&md5_hex("secure")))],
    );
    assert_eq!(check_http(&check, &TlsClient::new()).await, Ok(()));
    let first = seen.recv().await.expect("request seen");
    // No virtualhost: no SNI, as for a bare address.
    assert_eq!(first.sni, None);

    let mut named = http_check(port, true, vec![ok_url()]);
    named.virtualhost = Some("www.example.com".to_string());
    assert_eq!(check_http(&named, &TlsClient::new()).await, Ok(()));
    let second = seen.recv().await.expect("request seen");
    assert_eq!(second.sni.as_deref(), Some("www.example.com"));
    assert!(second.request.contains("\r\nHost: www.example.com\r\n"));
    task.abort();
}

#[tokio::test]
async fn ssl_get_checks_status_and_digest() {
    let (port, _seen, task) = recording_server(
        Some(tls_acceptor()),
        http_response("503 Service Unavailable", "busy"),
    )
    .await;
    let check = http_check(port, true, vec![ok_url()]);
    assert_eq!(what_failed(&check).await, "HTTP status code error to");
    let check = http_check(port, true, vec![url("/", &[], Some(&md5_hex("idle")))]);
    assert_eq!(what_failed(&check).await, "MD5 digest error to");
    task.abort();
}

#[tokio::test]
async fn ssl_get_against_plain_http_fails_the_handshake() {
    // A plain HTTP server that talks first: the TLS client gets no ServerHello.
    let listener = TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(&http_response("200 OK", "plain")).await;
            let _ = s.shutdown().await;
        }
    });
    let check = http_check(port, true, vec![ok_url()]);
    assert_eq!(
        what_failed(&check).await,
        "SSL handshake/communication error connecting to"
    );
    server.abort();
}

#[tokio::test]
async fn ssl_get_against_a_silent_server_times_out() {
    // A plain server waiting for a request never answers the ClientHello.
    let server: TestServer = http_server(http_response("200 OK", "plain"), Duration::ZERO).await;
    let check = http_check(server.port, true, vec![ok_url()]);
    assert_eq!(what_failed(&check).await, "Timeout connecting");
}
