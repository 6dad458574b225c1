//! One attempt of each keepalived checker.
//!
//! Each function makes a single attempt and says whether the real server
//! passed; retries, delays and state belong to [`crate::monitor`]. Failures
//! carry keepalived's wording ([`CheckFailure::log_line`]).

pub mod http;
pub mod misc;
pub mod tcp;

use std::sync::Arc;

use lb_config::Checker;

use crate::script::ScriptRunner;

pub use http::{TlsClient, check_http};
pub use misc::check_misc;
pub use tcp::check_tcp;

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
}

impl CheckContext {
    pub fn new(scripts: Arc<ScriptRunner>) -> Self {
        CheckContext {
            scripts,
            tls: TlsClient::new(),
        }
    }
}

/// One attempt of any checker.
pub async fn run_check(
    checker: &Checker,
    ctx: &CheckContext,
) -> Result<CheckSuccess, CheckFailure> {
    match checker {
        Checker::Tcp(c) => check_tcp(&c.connection).await.map(|()| CheckSuccess::PLAIN),
        Checker::Http(c) => check_http(c, &ctx.tls).await.map(|()| CheckSuccess::PLAIN),
        Checker::Misc(c) => check_misc(c, &ctx.scripts).await,
    }
}

/// keepalived's name for a checker in its summary lines
/// (`TCP_CHECK on service ... failed.`).
pub fn checker_label(checker: &Checker) -> &'static str {
    match checker {
        Checker::Tcp(_) => "TCP_CHECK",
        Checker::Http(c) if c.tls => "SSL_CHECK",
        Checker::Http(_) => "HTTP_CHECK",
        Checker::Misc(_) => "MISC_CHECK",
    }
}

#[cfg(test)]
mod tests;
