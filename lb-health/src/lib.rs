//! keepalived-compatible health checking of real servers for xlb.
//!
//! xlb reads the `virtual_server` blocks of keepalived.conf; this crate does
//! what keepalived's checker process does with them, without IPVS:
//!
//! - [`script`]: runs a command line the way keepalived does (argv split with
//!   keepalived's quoting, own process group, `user`/`script_user`,
//!   `enable_script_security`, SIGTERM then SIGKILL on timeout). Shared by
//!   MISC_CHECK, notify scripts and, later, vrrp_script.
//! - [`check`]: one attempt of TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK,
//!   PING_CHECK, UDP_CHECK, DNS_CHECK or SMTP_CHECK.
//! - [`track_file`]: track_file values (FILE_CHECK and vrrp_instances follow them).
//! - [`track_process`]: vrrp_track_process quorums.
//! - [`monitor`]: one task per real server applying keepalived's retry,
//!   warmup and alpha rules, logging like keepalived, running notify_up /
//!   notify_down and sending [`HealthEvent`]s.
//! - [`quorum`]: what the data plane should forward to for a virtual server
//!   (down servers removed or inhibited, quorum with hysteresis, sorry server).
//! - [`supervisor`]: owns every monitor and applies configuration reloads,
//!   keeping the state of real servers whose checks did not change.
//!
//! The expected wiring:
//!
//! ```no_run
//! # async fn wire(config: lb_config::Config) {
//! let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
//! let mut health = lb_health::HealthSupervisor::new(tx);
//! health.apply(&config);
//! while let Some(event) = rx.recv().await {
//!     if let Some(effective) = health.effective_backends(&event.virtual_server) {
//!         // program effective.backends for event.virtual_server into the data plane
//!         let _ = effective;
//!     }
//! }
//! # }
//! ```

pub mod check;
pub mod monitor;
pub mod quorum;
pub mod script;
pub mod supervisor;
pub mod track_file;
pub mod track_process;

#[cfg(test)]
mod test_support;

use std::fmt;
use std::net::IpAddr;

use lb_config::{Protocol, VirtualServer};

pub use monitor::{CheckRecord, HealthEvent, MonitorReport, RealServerHealth, RealServerMonitor};
pub use quorum::{Backend, EffectiveVs, QuorumState, QuorumTransition, effective_backends};
pub use script::{ScriptError, ScriptOutcome, ScriptRunner};
pub use supervisor::{HealthSnapshot, HealthSupervisor};

/// Identifies a virtual server: keepalived's `virtual_server IP PORT` plus its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VsKey {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl VsKey {
    pub fn of(vs: &VirtualServer) -> Self {
        VsKey {
            address: vs.address,
            port: vs.port,
            protocol: vs.protocol,
        }
    }
}

impl fmt::Display for VsKey {
    /// keepalived's FMT_VS: `[10.0.0.100]:tcp:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&service_trio(self.address, self.port, self.protocol))
    }
}

/// A real server of a virtual server: its address and port.
pub type RsKey = (IpAddr, u16);

/// keepalived's `inet_sockaddrtotrio`: `[addr]:proto:port`, the form every
/// checker log line uses for real and virtual servers.
pub fn service_trio(address: IpAddr, port: u16, protocol: Protocol) -> String {
    let proto = match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    format!("[{address}]:{proto}:{port}")
}
