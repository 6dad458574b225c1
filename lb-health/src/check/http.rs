//! HTTP_GET and SSL_GET (keepalived's check_http.c and check_ssl.c).
//!
//! For each url in turn: connect, send keepalived's request
//!
//! ```text
//! GET <path> HTTP/1.0\r\n
//! User-Agent: KeepAliveClient\r\n
//! Host: <virtualhost, or connect_ip:connect_port>\r\n
//! \r\n
//! ```
//!
//! read the response, and require its status to be in `status_code` and,
//! with `digest`, the MD5 of its body (at most Content-Length bytes, as
//! keepalived hashes) to match. Every url must pass. SSL_GET does the same
//! over TLS without verifying the certificate, as keepalived does by default.
//!
//! Timing: the TCP connect, the TLS handshake and the request/response
//! exchange each get connect_timeout. keepalived restarts its timer on
//! every read; bounding the whole exchange keeps an attempt's duration
//! bounded even against a server that trickles bytes.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use lb_config::{HttpCheck, Url};
use md5::{Digest, Md5};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::CheckFailure;
use super::tcp::{ConnectError, connect};

/// Response headers larger than this are not a health check answer.
const MAX_HEADER_LEN: usize = 64 * 1024;

/// The TLS client of SSL_GET: no certificate verification (keepalived
/// verifies nothing unless told to, and real servers usually present
/// certificates for the service name, not their own address), but the
/// handshake signatures are still checked.
#[derive(Clone)]
pub struct TlsClient {
    connector: Result<TlsConnector, String>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("ready", &self.connector.is_ok())
            .finish()
    }
}

impl Default for TlsClient {
    fn default() -> Self {
        Self::new()
    }
}

impl TlsClient {
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let connector = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|builder| {
                let config = builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
                    .with_no_client_auth();
                TlsConnector::from(Arc::new(config))
            })
            .map_err(|e| format!("cannot set up TLS: {e}"));
        TlsClient { connector }
    }
}

#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One HTTP_GET/SSL_GET attempt: every url must pass.
pub async fn check_http(check: &HttpCheck, tls: &TlsClient) -> Result<(), CheckFailure> {
    for url in &check.urls {
        check_url(check, url, tls).await?;
    }
    Ok(())
}

async fn check_url(check: &HttpCheck, url: &Url, tls: &TlsClient) -> Result<(), CheckFailure> {
    let conn = &check.connection;
    let timeout = conn.connect_timeout.as_duration();
    let vhost = url.virtualhost.as_deref().or(check.virtualhost.as_deref());
    let request = request(&url.path, vhost, conn.connect_ip, conn.connect_port);

    let stream = connect(conn).await.map_err(|e| match e {
        ConnectError::Timeout => CheckFailure::http("Timeout connecting", "TCP connect timed out"),
        ConnectError::Bind(e) => {
            CheckFailure::http("HTTP/SSL_CHECK - network unreachable", format!("bind: {e}"))
        }
        ConnectError::Failed(e) => CheckFailure::http("Error connecting", e.to_string()),
    })?;

    if !check.tls {
        return exchange(stream, &request, url, timeout).await;
    }
    let connector = tls
        .connector
        .as_ref()
        .map_err(|e| CheckFailure::http("SSL handshake/communication error connecting to", e))?;
    let name = server_name(vhost, conn.connect_ip);
    let stream = match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(CheckFailure::http(
                "SSL handshake/communication error connecting to",
                e.to_string(),
            ));
        }
        Err(_) => {
            return Err(CheckFailure::http(
                "Timeout connecting",
                "TLS handshake timed out",
            ));
        }
    };
    exchange(stream, &request, url, timeout).await
}

/// keepalived's request_template: HTTP/1.0, its User-Agent, and a Host of
/// the virtualhost or else the address and port connected to.
pub fn request(path: &str, vhost: Option<&str>, ip: IpAddr, port: u16) -> String {
    let host = match (vhost, ip) {
        (Some(v), _) => v.to_string(),
        (None, IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        (None, IpAddr::V4(v4)) => format!("{v4}:{port}"),
    };
    format!("GET {path} HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: {host}\r\n\r\n")
}

/// SNI: the virtualhost (without a port) when it is a DNS name; otherwise
/// the address, for which rustls sends no SNI.
fn server_name(vhost: Option<&str>, ip: IpAddr) -> ServerName<'static> {
    if let Some(v) = vhost {
        let host = match v.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => v,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(name) = ServerName::try_from(host.to_string()) {
            return name;
        }
    }
    ServerName::IpAddress(ip.into())
}

/// What has been read of a response so far.
#[derive(Default)]
struct Response {
    received: usize,
    head: Vec<u8>,
    status: Option<u16>,
    content_length: Option<usize>,
    header_done: bool,
    body_len: usize,
    md5: Md5,
}

impl Response {
    fn feed_body(&mut self, bytes: &[u8]) {
        // keepalived hashes at most Content-Length bytes of the body.
        let take = match self.content_length {
            Some(cl) => bytes.len().min(cl.saturating_sub(self.body_len)),
            None => bytes.len(),
        };
        self.md5.update(&bytes[..take]);
        self.body_len += bytes.len();
    }

    fn complete(&self) -> bool {
        self.header_done && self.content_length.is_some_and(|cl| self.body_len >= cl)
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), CheckFailure> {
        self.received += bytes.len();
        if self.header_done {
            self.feed_body(bytes);
            return Ok(());
        }
        self.head.extend_from_slice(bytes);
        if let Some(end) = find(&self.head, b"\r\n\r\n") {
            let head = std::mem::take(&mut self.head);
            let (header, body) = head.split_at(end + 4);
            self.status = status_code(header);
            self.content_length = content_length(header);
            self.header_done = true;
            self.feed_body(body);
            self.head = header.to_vec();
        } else if self.head.len() > MAX_HEADER_LEN {
            return Err(CheckFailure::http(
                "Read error with",
                format!("no end of HTTP header in {MAX_HEADER_LEN} bytes"),
            ));
        }
        Ok(())
    }
}

async fn read_response<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &str,
    response: &mut Response,
) -> Result<(), CheckFailure> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| CheckFailure::http("Cannot send get request to", e.to_string()))?;
    stream
        .flush()
        .await
        .map_err(|e| CheckFailure::http("Cannot send get request to", e.to_string()))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer closing without close_notify: keepalived sets quiet
            // shutdown and takes it as the end of the response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(CheckFailure::http("Read error with", e.to_string())),
        };
        if n == 0 {
            return Ok(());
        }
        response.feed(&buf[..n])?;
        // HTTP/1.0 servers close after the response; one that keeps the
        // connection open has said all it will once Content-Length is met.
        if response.complete() {
            return Ok(());
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
    url: &Url,
    timeout: std::time::Duration,
) -> Result<(), CheckFailure> {
    let mut response = Response::default();
    match tokio::time::timeout(timeout, read_response(&mut stream, request, &mut response)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            let what = if response.received == 0 {
                "Timeout WEB read"
            } else {
                "Timeout HTTP read"
            };
            return Err(CheckFailure::http(
                what,
                format!("no complete response within {timeout:?}"),
            ));
        }
    }
    if !response.header_done {
        return Err(CheckFailure::http(
            "Read, no data received from",
            format!("connection closed after {} bytes", response.received),
        ));
    }
    let status = response.status.unwrap_or(0);
    // lb-config leaves status_code empty only when a digest is written
    // without status codes: the digest alone decides then.
    if !url.status_code.is_empty()
        && !url
            .status_code
            .iter()
            .any(|r| (r.from..=r.to).contains(&status))
    {
        return Err(CheckFailure::http(
            "HTTP status code error to",
            format!("status {status}"),
        ));
    }
    if let Some(expected) = &url.digest {
        let got = hex(&response.md5.finalize());
        if !got.eq_ignore_ascii_case(expected.trim()) {
            return Err(CheckFailure::http(
                "MD5 digest error to",
                format!("body digest {got}, expected {expected}"),
            ));
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status of the status line (`HTTP/1.1 200 OK`), like keepalived's
/// `extract_status_code`: the three digits after the first space.
fn status_code(header: &[u8]) -> Option<u16> {
    let line_end = find(header, b"\r\n").unwrap_or(header.len());
    let line = &header[..line_end];
    let space = line.iter().position(|&b| b == b' ')?;
    let rest = &line[space + 1..];
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn content_length(header: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(header);
    text.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
