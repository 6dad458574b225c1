//! One attempt of each keepalived checker.
//!
//! Each function makes a single attempt and says whether the real server
//! passed; retries, delays and state belong to [`crate::monitor`]. Failures
//! carry keepalived's wording ([`CheckFailure::log_line`]).

pub mod dns;
pub mod http;
pub mod misc;
pub mod ping;
pub mod smtp;
pub mod tcp;
pub mod udp;
pub mod words;

use std::sync::Arc;

use lb_config::Checker;

use crate::script::ScriptRunner;
use crate::track_file::FileValues;

pub use dns::check_dns;
pub use http::{TlsClient, check_http};
pub use misc::check_misc;
pub use ping::check_ping;
pub use smtp::check_smtp;
pub use tcp::check_tcp;
pub use udp::check_udp;
pub use words::{checker_label, failed_line, success_line};

/// A passed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckSuccess {
    /// The weight a `misc_dynamic` script asked for (exit status - 2);
    /// `None` means the configured weight.
    pub dynamic_weight: Option<u32>,
}

impl CheckSuccess {
    pub const PLAIN: CheckSuccess = CheckSuccess {
        dynamic_weight: None,
    };
}

/// How a MISC_CHECK script failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MiscFailure {
    /// Exited with a status that means down.
    Status(i32),
    /// Died of a signal we did not send.
    Signal(i32),
    /// Overran misc_timeout and was killed.
    TimedOut,
    /// Could not be run (insecure, not found, unknown user...).
    NotRun(String),
}

/// A failed attempt, with what keepalived would say about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    #[error("TCP connection timeout")]
    TcpTimeout,
    #[error("TCP connection failed: {0}")]
    TcpFailed(String),
    /// HTTP_GET/SSL_GET. `what` is keepalived's message (`HTTP status code
    /// error to`, `Timeout connecting`, `MD5 digest error to`...), `detail` ours.
    #[error("{what}: {detail}")]
    Http { what: &'static str, detail: String },
    #[error("misc check {script}: {failure:?}")]
    Misc {
        /// The script's first word, as keepalived names it.
        script: String,
        failure: MiscFailure,
    },
    #[error("ICMP echo timeout")]
    PingTimeout,
    #[error("ICMP echo failed: {0}")]
    PingFailed(String),
    #[error("UDP connection failed: {0}")]
    UdpFailed(String),
    #[error("UDP reply required, none came")]
    UdpNoReply,
    #[error("UDP reply data mismatch")]
    UdpMismatch,
    /// DNS_CHECK: keepalived's words after `DNS_CHECK ([rs])` (`read timeout from socket`).
    #[error("{0}")]
    Dns(String),
    /// SMTP_CHECK: keepalived's words after `SMTP_CHECK ` (`Bad HELO response from server ...`).
    #[error("{0}")]
    Smtp(String),
}

impl CheckFailure {
    pub(crate) fn http(what: &'static str, detail: impl Into<String>) -> Self {
        CheckFailure::Http {
            what,
            detail: detail.into(),
        }
    }

    /// The line keepalived logs for this failed attempt; `rs` and `vs` are
    /// `[ip]:proto:port`. `retry_note` is keepalived's retry phrase for
    /// MISC_CHECK (`, will do 2 retries`, ` on retry 1/2`, ` after 2 retries`,
    /// ` with retry disabled`).
    pub fn log_line(&self, rs: &str, vs: &str, retry_note: &str) -> String {
        match self {
            CheckFailure::TcpTimeout => format!("TCP connection to {rs} timeout."),
            CheckFailure::TcpFailed(_) => format!("TCP connection to {rs} failed."),
            CheckFailure::Http { what, .. } => format!("{what} server {rs}."),
            CheckFailure::PingTimeout => format!("ICMP connection to address {rs} timeout."),
            CheckFailure::PingFailed(_) => format!("ICMP connection to {rs} of {vs} failed."),
            CheckFailure::UdpFailed(_) | CheckFailure::UdpNoReply => {
                format!("UDP connection to {rs} failed.")
            }
            CheckFailure::UdpMismatch => format!("UDP check to {rs} reply data mismatch."),
            CheckFailure::Dns(what) => format!("DNS_CHECK ({rs}) {what}{retry_note}"),
            CheckFailure::Smtp(what) => format!("SMTP_CHECK {what}"),
            CheckFailure::Misc { script, failure } => {
                let head = format!("Misc check for [{rs} VS {vs}] by [{script}]");
                match failure {
                    MiscFailure::Status(code) => {
                        format!("{head} failed{retry_note} (exited with status {code}).")
                    }
                    MiscFailure::Signal(sig) => {
                        format!("{head} failed{retry_note} (due to signal {sig}).")
                    }
                    MiscFailure::TimedOut => format!("{head} timed out{retry_note}."),
                    MiscFailure::NotRun(why) => format!("{head} failed{retry_note} ({why})."),
                }
            }
        }
    }
}

/// What the checkers share: the script runner and the TLS client.
#[derive(Clone, Debug)]
pub struct CheckContext {
    pub scripts: Arc<ScriptRunner>,
    pub tls: TlsClient,
    /// The track_files FILE_CHECKs follow.
    pub files: FileValues,
}

impl CheckContext {
    pub fn new(scripts: Arc<ScriptRunner>) -> Self {
        CheckContext {
            scripts,
            tls: TlsClient::new(),
            files: FileValues::default(),
        }
    }

    /// A track_file's value now; 0 if it is not watched (as a missing file reads).
    pub fn file_value(&self, name: &str) -> i64 {
        self.files.get(name).map_or(0, |rx| *rx.borrow())
    }
}

/// One attempt of a polled checker. FILE_CHECK is not polled: the monitor follows its
/// file ([`crate::track_file`]) and never calls this for it.
pub async fn run_check(
    checker: &Checker,
    ctx: &CheckContext,
) -> Result<CheckSuccess, CheckFailure> {
    let plain = |r: Result<(), CheckFailure>| r.map(|()| CheckSuccess::PLAIN);
    match checker {
        Checker::Tcp(c) => plain(check_tcp(&c.connection).await),
        Checker::Http(c) => plain(check_http(c, &ctx.tls).await),
        Checker::Misc(c) => check_misc(c, &ctx.scripts).await,
        Checker::Ping(c) => plain(check_ping(&c.connection).await),
        Checker::Udp(c) => plain(check_udp(c).await),
        Checker::Dns(c) => plain(check_dns(c).await),
        Checker::Smtp(c) => plain(check_smtp(c).await),
        Checker::File(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
