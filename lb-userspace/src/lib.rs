//! xlb's control plane: the config it serves, the data plane it drives, and the pieces between.
//!
//! Inputs (config, health checks, neighbour resolution) become a desired state ([`health`],
//! [`service`]); one reconciler ([`reconcile`]) writes the difference into the XDP program's
//! maps ([`dataplane`]).

pub mod announce;
pub mod capacity;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod ethtool;
pub mod health;
pub mod instance;
pub mod logging;
pub mod metrics;
pub mod netlink;
pub mod notify;
pub mod reconcile;
pub mod routing;
pub mod service;
pub mod status;
pub mod tables;
pub mod vrrp;
